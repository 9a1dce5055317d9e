"""CLIP video-frame explorer: the pipeline behind the dashboard and the ``python -m core`` CLI.

The layers, each importing only from those below it:

- front doors: cli/ (``python -m core``), resources (Streamlit's caches; the only module that imports
  Streamlit), jobs (background builds and downloads), with the pages beside core/;
- the application layer: app (`Explorer`, the verbs), reader (what an Explorer reads, and where it may),
  share (the read-only Explorer over a bundle);
- engines/ (a build: local processes or Ray) and the parts: analysis/ (evaluation, metrics, search,
  cut-offs, moments, the lab, reports, plots) and kinetics/ (the Kinetics-700 subset, downloads, samples);
- store/ (the Chroma index, runs, bundles, build locks), model/ (CLIP: spec, loading, encoding, prompts),
  media/ (sources, frames, thumbnails, transcoding, uploads);
- the ground floor: requests (the values that cross layers), ground (errors, names, clock, files, paths),
  limits (the range of every number a user gives) and runtime.
"""

__version__ = "0.1.0"
