"""CLIP video-frame explorer: the pipeline behind the dashboard and the ``python -m core`` CLI.

Modules, one job each:

- sources (input layouts → VideoRecord), frames (decoding by seeking; the one BGR→RGB), thumbnails,
  samples (synthetic clips), media (browser playability, H.264 copies);
- embed (the CLIP model: spec, loading, encoding), index (ChromaDB, embedded or server), build
  (the pipeline), locking (one build per index), jobs (background builds and downloads);
- prompts, metrics (pure numpy), evaluation (index → metrics), runs (saved evaluations), search,
  reports (HTML/PNG/CSV), plots (Plotly figures), loadtest;
- subset and download (the Kinetics-700 subset), uploads, paths, errors, cli.

Only core/resources.py imports Streamlit.
"""

__version__ = "0.1.0"
