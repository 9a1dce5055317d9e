"""The store layer: the frame index in ChromaDB, the build lock, saved runs and bundles."""
