"""Streamlit glue shared by the pages: cached resources, the settings form and the live view.

The library (``dmlviz``) never imports Streamlit; everything here is thin and draws what the
library computes.
"""

import torch

# The server's own torch work (distances, projections) is small, and the training worker needs the
# cores: with two threads here, each fragment rerun would wait on a core the worker holds.
torch.set_num_threads(1)
