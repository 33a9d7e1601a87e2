"""dmlviz: watch feature-learning losses shape the feature space, live.

The library is usable without Streamlit: configure a run (:mod:`dmlviz.config`), load data
(:mod:`dmlviz.data`), train (:mod:`dmlviz.engine`), record (:mod:`dmlviz.store`) and run it in
the background (:mod:`dmlviz.runner`).
"""

__version__ = "0.1.0"
