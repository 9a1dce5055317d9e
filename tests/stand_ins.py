"""Small, obvious stand-ins for the model's text side and for an index, for tests that check
evaluation, runs and search against naive references without training a model or opening Chroma."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Any

import numpy as np

from core.model.embed import ModelSpec
from core.store.index import IndexContents


def unit_vector(text: str, dim: int) -> np.ndarray:
    """A fixed pseudo-random unit vector per text: equal texts embed equally, different ones differently."""
    seed = int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "little")
    v = np.random.default_rng(seed).standard_normal(dim)
    return (v / np.linalg.norm(v)).astype(np.float32)


class TextModel:
    """The text side of a CLIP model: `encode_texts` only, and it records every batch it was given."""

    def __init__(self, dim: int = 16, spec: ModelSpec | None = None) -> None:
        self.embed_dim = dim
        self.spec = spec or ModelSpec(name="ViT-B-32", pretrained="none")
        self.batches: list[list[str]] = []

    def encode_texts(self, texts: Iterable[str]) -> np.ndarray:
        texts = list(texts)
        assert all(isinstance(t, str) for t in texts), texts
        self.batches.append(texts)
        if not texts:
            return np.zeros((0, self.embed_dim), np.float32)
        return np.stack([unit_vector(t, self.embed_dim) for t in texts])

    def context_cut(self, texts: Iterable[str]) -> int | None:
        return None  # it reads every text whole

    def encode_images(self, *_: Any, **__: Any) -> np.ndarray:
        raise AssertionError("frames must never be re-encoded here")

    def encode_rgb(self, *_: Any, **__: Any) -> np.ndarray:
        raise AssertionError("a text model encodes no images")


def make_contents(
    embeddings: np.ndarray, videos: list[str], frames: list[int], labels: list[str], video_frames: int = 30
) -> IndexContents:
    """What an index returns from `contents()`, with distinct paths and timestamps per frame."""
    n = len(videos)
    return IndexContents(
        ids=[f"{v}:{f}" for v, f in zip(videos, frames, strict=True)],
        embeddings=np.asarray(embeddings, dtype=np.float32),
        video_ids=np.array(videos, dtype=object),
        labels=np.array(labels, dtype=object),
        frame_index=np.array(frames, dtype=np.int64),
        timestamp_s=np.array([f / 10 for f in frames], dtype=float),
        frame_paths=np.array([f"/frames/{v}/{f}.jpg" for v, f in zip(videos, frames, strict=True)], dtype=object),
        video_paths=np.array([f"/videos/{v}.mp4" for v in videos], dtype=object),
        frames_in_video=np.array([videos.count(v) for v in videos], dtype=np.int64),
        video_frames=np.full(n, video_frames, dtype=np.int64),
    )


class MemoryIndex:
    """A frame index held in a list, answering `query` by brute force (the obvious reference).

    Records are (id, unit embedding, metadata). `query` follows `FrameIndex.query`'s contract: the
    `k` most similar (cosine) matching `where`, most similar first; all of them when `k` is larger.
    It counts its queries and refuses more than `max_queries`, so a search that never stops fails."""

    def __init__(
        self,
        records: list[tuple[str, np.ndarray, dict[str, Any]]],
        name: str = "frames-test",
        frames: str = "uniform:3",
        spec: ModelSpec | None = None,
        contents: IndexContents | None = None,
        max_queries: int = 50,
    ) -> None:
        self.records = records
        self.name = name
        self.frames = frames
        self.spec = spec or ModelSpec(name="ViT-B-32", pretrained="none")
        self._contents = contents
        self.queries: list[int] = []
        self.max_queries = max_queries

    def count(self) -> int:
        return len(self.records)

    def version(self) -> str:
        return f"{len(self.records)}|built"

    def contents(self) -> IndexContents:
        assert self._contents is not None
        return self._contents

    def query(self, embedding: np.ndarray, k: int, where: dict | None = None) -> list[tuple[str, float, dict]]:
        self.queries.append(k)
        assert len(self.queries) <= self.max_queries, "the search keeps querying"
        if int(k) <= 0:
            return []
        matching = [r for r in self.records if all(r[2].get(key) == value for key, value in (where or {}).items())]
        scored = sorted(((float(np.dot(e, embedding)), rid, meta) for rid, e, meta in matching), reverse=True)
        return [(rid, sim, dict(meta)) for sim, rid, meta in scored[: int(k)]]
