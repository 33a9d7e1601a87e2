"""AppTest helpers for the page tests: open a page as a link would, find a sidebar widget."""

from __future__ import annotations

from streamlit.testing.v1 import AppTest


def page(name: str, query: dict[str, str] | None = None) -> AppTest:
    """The app opened at ``app_pages/<name>.py`` with ``query`` in its URL; it must render without an exception."""
    app = AppTest.from_file("../app.py", default_timeout=60)
    app.query_params.update(query or {})
    app.run()
    app.switch_page(f"app_pages/{name}.py").run()
    assert not app.exception, app.exception
    return app


def widget(app: AppTest, key: str):
    return next(w for w in app.sidebar if getattr(w, "key", None) == key)
