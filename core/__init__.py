"""CLIP video-frame explorer: the pipeline behind the dashboard and the ``python -m core`` CLI.

Modules, one job each: sources (input layouts → VideoRecord), frames (decoding, RGB), thumbnails,
embed (the CLIP model), index (ChromaDB), build (the pipeline), prompts, metrics, evaluation,
search, locking, cli. Only core/resources.py may import Streamlit.
"""

__version__ = "0.1.0"
