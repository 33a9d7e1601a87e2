"""Real-browser tests: the app served by Streamlit, driven by Playwright in Debian's Chromium."""
