"""The model layer: the CLIP model, prompt embeddings, and the offline demo model."""
