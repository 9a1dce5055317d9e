"""The ChromaDB index, for real (a temporary PersistentClient): ids, similarity, completeness, refusal."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from core.ground import IndexUnavailableError
from core.model.embed import ModelSpec
from core.store.catalog import list_indexes, open_index
from core.store.index import SCHEMA_VERSION, FrameIndex, connect, open_for_build


def _unit(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    x = rng.standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _meta(video: str, frame: int, frames_in_video: int) -> dict:
    return {
        "video_id": video,
        "label": f"label of {video}",
        "frame_index": frame,
        "timestamp_s": frame / 10,
        "video_path": f"/v/{video}.mp4",
        "frame_path": f"/t/{video}/{frame}.jpg",
        "frames_in_video": frames_in_video,
        "video_frames": 100,
    }


@pytest.fixture()
def spec() -> ModelSpec:
    return ModelSpec(name="ViT-B-32-quickgelu", pretrained="openai")


def test_similarity_is_the_true_cosine(tmp_path: Path, spec: ModelSpec) -> None:
    rng = np.random.default_rng(0)
    index = open_for_build(connect(tmp_path), spec, 16, "middle")
    vectors = _unit(rng, 40, 16)
    index.upsert([f"v{i}:0" for i in range(40)], vectors, [_meta(f"v{i}", 0, 1) for i in range(40)])
    query = _unit(rng, 1, 16)[0]
    hits = index.query(query, 10)
    dots = vectors @ query
    assert [h[0] for h in hits] == [f"v{i}:0" for i in np.argsort(-dots)[:10]]
    for rid, sim, meta in hits:
        assert sim == pytest.approx(float(dots[int(rid[1:].split(":")[0])]), abs=1e-5)
        assert meta["frame_path"].endswith(".jpg")
    # Unclamped: the least similar frames really are negative.
    assert min(dots) < 0
    assert min(sim for _, sim, _ in index.query(query, 40)) == pytest.approx(float(min(dots)), abs=1e-5)


def test_upsert_is_idempotent_and_completeness(tmp_path: Path, spec: ModelSpec) -> None:
    rng = np.random.default_rng(1)
    index = open_for_build(connect(tmp_path), spec, 8, "uniform:3")
    metas = [_meta("a", f, 3) for f in (10, 20, 30)] + [_meta("b", f, 3) for f in (10, 20)]
    ids = [f"{m['video_id']}:{m['frame_index']}" for m in metas]
    index.upsert(ids, _unit(rng, 5, 8), metas)
    index.upsert(ids, _unit(rng, 5, 8), metas)
    assert index.count() == 5
    assert index.video_frame_counts() == {"a": (3, 3), "b": (2, 3)}
    assert index.complete_videos() == {"a"}
    contents = index.contents()
    assert list(contents.video_ids) == ["a", "a", "a"] and list(contents.frame_index) == [10, 20, 30]
    assert contents.embeddings.shape == (3, 8)
    assert len(index.contents(complete_only=False)) == 5


def test_collection_records_the_model_and_refuses_another(tmp_path: Path, spec: ModelSpec) -> None:
    client = connect(tmp_path)
    built = open_for_build(client, spec, 8, "middle")
    built.upsert(["x:0"], _unit(np.random.default_rng(2), 1, 8), [_meta("x", 0, 1)])
    built.mark_built()
    meta = built.metadata
    assert meta["model_name"] == "ViT-B-32-quickgelu" and meta["pretrained"] == "openai"
    assert meta["embed_dim"] == 8 and meta["frames"] == "middle" and meta["built_at"]
    assert open_index(client).name == built.name
    assert open_index(client, spec=spec).spec == spec
    other = replace(spec, pretrained="laion400m_e32")
    with pytest.raises(IndexUnavailableError, match="not ViT-B-32-quickgelu \\(laion400m_e32\\)"):
        open_index(client, spec=other)
    with pytest.raises(IndexUnavailableError, match="no collection 'nope'"):
        open_index(client, name="nope")
    assert [ix.name for ix in list_indexes(client)] == [built.name]


def test_empty_store_points_to_build(tmp_path: Path) -> None:
    with pytest.raises(IndexUnavailableError, match="build one first"):
        open_index(connect(tmp_path))


def _set_schema(index: FrameIndex, version: int | None) -> None:
    meta = index.metadata
    meta.pop("schema_version")
    if version is not None:
        meta["schema_version"] = version
    index.collection.modify(metadata=meta)


@pytest.mark.parametrize(
    ("version", "message"),
    [
        (SCHEMA_VERSION + 1, r"written by a newer version of this tool \(index schema 2; this one reads 1\): update"),
        (SCHEMA_VERSION - 1, r"has index schema none, older than the 1 this tool reads: build the videos again"),
        (None, r"has index schema none, older than the 1 this tool reads"),
    ],
)
def test_another_schema_is_listed_but_refused_on_open(
    tmp_path: Path, spec: ModelSpec, version: int | None, message: str
) -> None:
    client = connect(tmp_path)
    index = open_for_build(client, spec, 8, "middle")
    index.upsert(["x:0"], _unit(np.random.default_rng(3), 1, 8), [_meta("x", 0, 1)])
    assert index.metadata["schema_version"] == SCHEMA_VERSION and not index.schema_problem()
    assert open_index(client, name=index.name).name == open_for_build(client, spec, 8, "middle").name == index.name
    _set_schema(index, version)
    (listed,) = list_indexes(client)  # still listed, with the reason, for the app to show
    assert listed.info().schema_version == (version or 0) and re.search(message, listed.schema_problem())
    for opening in (
        lambda: open_index(client, name=index.name),
        lambda: open_index(client),
        lambda: open_index(client, spec=spec),
        lambda: open_for_build(client, spec, 8, "middle"),  # a build does not write into it either
    ):
        with pytest.raises(IndexUnavailableError, match=message) as info:
            opening()
        assert str(info.value).count(". ") == 0  # one sentence
    assert list_indexes(client)[0].schema_version == (version or 0) and index.count() == 1
    # Unnamed, the newest collection this tool can read is chosen.
    readable = open_for_build(client, spec, 8, "uniform:2")
    assert open_index(client).name == readable.name
