"""Sharded indexes: one logical index as N collections, in sub-folders of an embedded folder (a writer process
each) or spread over several ``chroma run`` servers; reads fan out and merge exactly."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from core.analysis.evaluation import evaluate_index
from core.analysis.search import search
from core.ground import IndexUnavailableError, UserError
from core.store.catalog import Store, list_indexes, open_index
from core.store.index import HNSW_CONFIG, FrameIndex, cosine_similarities
from core.store.shards import ShardedIndex, shard_for, shard_name
from tests.helpers import ChromaProcess, build_into, free_port, run_cli
from tests.tiny_model import CONFIG

FRAMES = "uniform:3"
QUERIES = ("a video of a person juggling fire.", "playing drums", "swimming")


def test_a_video_goes_to_the_same_shard_in_every_process_and_the_shards_fill_evenly() -> None:
    # Fixed values: a change of the hash would send a resumed build's videos to other shards.
    assert [shard_for(f"video-{i}", 4) for i in range(8)] == [0, 0, 3, 0, 0, 2, 3, 3]
    assert shard_for("x", 1) == 0
    spread = np.bincount([shard_for(f"clip_{i:05d}", 4) for i in range(4000)], minlength=4)
    assert spread.min() > 900, spread


def _clustered(n: int, dim: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(12, dim))
    vectors = centres[rng.integers(0, 12, n)] + 0.4 * rng.normal(size=(n, dim))
    return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)


def _collection(folder: Path, name: str, meta: dict) -> FrameIndex:
    from core.store.chroma import connect

    client = connect(folder)
    collection = client.get_or_create_collection(name=name, metadata=meta, configuration={"hnsw": HNSW_CONFIG.copy()},
                                                 embedding_function=None)  # fmt: skip
    return FrameIndex(client, collection)


def test_merged_search_is_the_exact_top_k_and_contents_are_one_collections(tmp_path: Path) -> None:
    n, dim = 600, 16
    vectors = _clustered(n, dim, 0)
    metas = [{"video_id": f"v{i // 3:03d}", "frame_index": i % 3, "label": f"l{i % 5}", "frames_in_video": 3}
             for i in range(n)]  # fmt: skip
    ids = [f"{m['video_id']}:{m['frame_index']}" for m in metas]
    base = {"model_name": "m", "pretrained": "p", "frames": FRAMES, "embed_dim": dim, "schema_version": 1}
    one = _collection(tmp_path / "one", "frames-x", base)
    one.upsert(ids, vectors, metas)
    shards = [_collection(tmp_path / f"shard-{s:02d}", shard_name("frames-x", s),
                          {**base, "shard_of": "frames-x", "shard": s, "shards": 3}) for s in range(3)]  # fmt: skip
    sharded = ShardedIndex("frames-x", shards, ["here"])
    sharded.upsert(ids, vectors, metas)  # each record into its video's shard
    assert [s.count() for s in shards] == [sum(shard_for(m["video_id"], 3) == s for m in metas) for s in range(3)]
    assert sharded.count() == n and not sharded.schema_problem()
    queries = _clustered(20, dim, 1)
    for query in queries:
        exact = np.argsort(-cosine_similarities(vectors, query), kind="stable")[:10]
        merged = sharded.query(query, 10)
        assert [hit[0] for hit in merged] == [hit[0] for hit in one.query(query, 10)]
        assert {hit[0] for hit in merged} == {ids[i] for i in exact}  # against a brute-force reference
        assert [hit[1] for hit in merged] == pytest.approx([hit[1] for hit in one.query(query, 10)], abs=1e-6)
    filtered = sharded.query(queries[0], 5, where={"label": "l2"})
    assert [h[0] for h in filtered] == [h[0] for h in one.query(queries[0], 5, where={"label": "l2"})]
    a, b = one.contents(), sharded.contents()
    assert a.ids == b.ids and np.array_equal(a.embeddings, b.embeddings) and list(a.labels) == list(b.labels)
    assert sharded.labels() == one.labels() and sharded.complete_videos() == one.complete_videos()


@pytest.fixture(scope="module")
def sharded_build(tmp_path_factory: pytest.TempPathFactory, video_root: Path, tiny_model) -> dict:
    work = tmp_path_factory.mktemp("sharded")
    summary = build_into(video_root, work / "db", work / "out", frames=FRAMES, model=tiny_model, batch_size=8,
                         shards=4)  # fmt: skip
    return {"db": work / "db", "out": work / "out", "summary": summary}


def test_an_embedded_sharded_build_reads_as_the_unsharded_one(sharded_build: dict, built_index: dict, tiny_model):
    db = sharded_build["db"]
    assert sharded_build["summary"].videos_indexed == 12 and sharded_build["summary"].frames == 36
    # Each shard in a sub-folder of its own; nothing in the folder's own database.
    assert sorted(p.name for p in db.iterdir() if (p / "chroma.sqlite3").is_file()) == [f"shard-0{i}" for i in range(4)]
    assert not (db / "chroma.sqlite3").exists()
    sharded, plain = open_index(Store(db)), open_index(Store(built_index["db"]))
    assert isinstance(sharded, ShardedIndex) and sharded.name == plain.name
    info = sharded.info()
    assert [s.name for s in info.shards] == [shard_name(plain.name, i) for i in range(4)]
    assert sum(s.count for s in info.shards) == info.count == plain.count() == 36
    assert {s.where for s in info.shards} == {str(db / f"shard-0{i}") for i in range(4)}
    for text in QUERIES:
        got, want = search(tiny_model, sharded, text, k=10), search(tiny_model, plain, text, k=10)
        assert [(h.video_id, h.frame_index) for h in got] == [(h.video_id, h.frame_index) for h in want]
        assert [h.similarity for h in got] == pytest.approx([h.similarity for h in want], abs=1e-6)
    one_per_video = search(tiny_model, sharded, "fire", k=4, one_per_video=True)
    assert len({h.video_id for h in one_per_video}) == 4
    a, b = evaluate_index(sharded, tiny_model).report, evaluate_index(plain, tiny_model).report
    assert (a.precision_at_1, a.n_videos) == (b.precision_at_1, b.n_videos)


def test_a_sharded_index_is_rebuilt_in_place_and_refuses_another_shard_count(
    sharded_build: dict, video_root: Path, tiny_model, tmp_path: Path
) -> None:
    db = tmp_path / "db"
    shutil.copytree(sharded_build["db"], db)
    again = build_into(video_root, db, tmp_path / "out", frames=FRAMES, model=tiny_model, batch_size=8)
    assert again.videos_indexed == 0 and again.videos_already_indexed == 12  # --shards left out: the index's own
    with pytest.raises(UserError, match=r"has 4 shards, not 2: build it with 4 \(--shards 4, or leave it out\)"):
        build_into(video_root, db, tmp_path / "out", frames=FRAMES, model=tiny_model, shards=2)
    with pytest.raises(UserError, match="--shards"):
        build_into(video_root, db, tmp_path / "out", frames=FRAMES, model=tiny_model, shards=0)
    # A shard that is gone is named, for reading and for building; never a partial answer.
    shutil.move(db / "shard-02", tmp_path / "elsewhere")
    (listed,) = list_indexes(Store(db))
    assert "-s02" in listed.schema_problem() and "\n" not in listed.schema_problem()
    with pytest.raises(IndexUnavailableError, match=r"-s02 is in none of .*: put its shard folder back"):
        open_index(Store(db))
    with pytest.raises(IndexUnavailableError, match=r"-s02 is in none of"):
        build_into(video_root, db, tmp_path / "out", frames=FRAMES, model=tiny_model, batch_size=8)


@pytest.fixture()
def two_servers(tmp_path: Path):
    servers = [ChromaProcess(tmp_path / f"chroma-{i}", free_port()) for i in range(2)]
    for server in servers:
        server.start()
    yield servers
    for server in servers:
        server.stop()


def _model_flags(checkpoint: Path) -> list[str]:
    return ["--model-config", str(CONFIG), "--pretrained", str(checkpoint)]


def _json(*args: str) -> object:
    result = run_cli(*args, "--json", "-")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_four_shards_over_two_servers_answer_as_one_embedded_index(
    two_servers: list[ChromaProcess], tmp_path: Path, video_root: Path, tiny_checkpoint: Path
) -> None:
    hosts = ",".join(f"127.0.0.1:{server.port}" for server in two_servers)
    common = ["--videos", str(video_root), "--frames", FRAMES, "--batch-size", "8", *_model_flags(tiny_checkpoint),
              "--quiet"]  # fmt: skip
    plain = ["--db", str(tmp_path / "plain-db")]
    sharded = ["--chroma-host", hosts]
    built = _json("build", *common, *plain, "--output", str(tmp_path / "out-a"))
    built_sharded = _json("build", *common, *sharded, "--shards", "4", "--output", str(tmp_path / "out-b"))
    assert isinstance(built, dict) and isinstance(built_sharded, dict)
    assert built["frames"] == built_sharded["frames"] == 36 and (built["shards"], built_sharded["shards"]) == (1, 4)
    (info,) = _json("info", *sharded)  # type: ignore[misc]
    assert [s["where"] for s in info["shards"]] == [f"http://127.0.0.1:{two_servers[i % 2].port}" for i in range(4)]
    assert sum(s["count"] for s in info["shards"]) == info["count"] == 36
    for text in QUERIES:
        want, got = _json("search", text, "--k", "10", *plain), _json("search", text, "--k", "10", *sharded)
        assert isinstance(want, list) and isinstance(got, list) and len(got) == len(want) == 10
        assert _same_hits(got, want)
    want_eval = _json("evaluate", *plain)
    got_eval = _json("evaluate", *sharded)
    assert isinstance(want_eval, dict) and isinstance(got_eval, dict)
    settings = want_eval.pop("settings"), got_eval.pop("settings")
    assert want_eval == got_eval and want_eval["n_videos"] == 12  # every figure, exactly
    assert settings[0].get("index") == settings[1].get("index")
    # Half the servers: the shards that are not there are named, never half the answer.
    partial = run_cli("search", "fire", "--chroma-host", f"127.0.0.1:{two_servers[0].port}")
    assert partial.returncode != 0 and "-s01, " in partial.stderr and "-s03 are in none of" in partial.stderr
    assert "give every server it was built on" in partial.stderr and len(partial.stderr.strip().splitlines()) == 1
    # A stopped server is one sentence naming it, not the half of the index the other one holds.
    two_servers[1].stop()
    result = run_cli("search", "fire", *sharded)
    assert result.returncode != 0 and f"127.0.0.1:{two_servers[1].port}" in result.stderr
    assert "not answering" in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def _same_hits(got: list[dict], want: list[dict]) -> bool:
    """The same frames in the same order, with scores equal to float precision (the thumbnails' paths differ:
    each build wrote its own output folder)."""

    def rest(hits: list[dict]) -> list[dict]:
        return [{k: v for k, v in hit.items() if k not in ("frame_path", "thumbnail", "similarity")} for hit in hits]

    scores = [hit["similarity"] for hit in got]
    return rest(got) == rest(want) and scores == pytest.approx([hit["similarity"] for hit in want], abs=1e-6)


def test_a_sharded_index_travels_as_one_bundle(sharded_build: dict, built_index: dict, tmp_path: Path) -> None:
    from core.store.bundle import export_bundle, import_bundle, open_bundle
    from core.store.chroma import connect
    from core.store.runs import RunStore

    sharded = open_index(Store(sharded_build["db"]))
    assert "in 4 shards" in sharded.info().describe()
    summary = export_bundle(sharded, tmp_path / "bundle.zip")
    assert summary.records == 36 and summary.collection == sharded.name
    client = connect(tmp_path / "imported")
    import_bundle(open_bundle(tmp_path / "bundle.zip", tmp_path / "unpacked"), client, tmp_path / "out",
                  RunStore.for_db(tmp_path / "imported"))  # fmt: skip
    imported, plain = open_index(client), open_index(Store(built_index["db"]))
    assert not isinstance(imported, ShardedIndex) and "shard_of" not in imported.metadata
    a, b = imported.contents(), plain.contents()
    assert a.ids == b.ids and np.allclose(a.embeddings, b.embeddings, atol=1e-6)


def test_a_process_searches_what_its_own_sharded_build_just_added(video_root: Path, tiny_model, tmp_path: Path):
    """The shard writers are other processes: this one must not keep answering from the vectors it read before."""
    videos = tmp_path / "videos"
    labels = sorted(p for p in video_root.iterdir() if p.is_dir())
    for label in labels[:3]:
        shutil.copytree(label, videos / label.name)
    db, store = tmp_path / "db", Store(tmp_path / "db")
    build_into(videos, db, tmp_path / "out", frames="middle", model=tiny_model, batch_size=8, shards=2)
    before = open_index(store)
    vector = tiny_model.encode_texts(["a video of a person juggling fire."])[0]
    assert len(before.query(vector, 100)) == 6
    for label in labels[3:]:
        shutil.copytree(label, videos / label.name)
    build_into(videos, db, tmp_path / "out", frames="middle", model=tiny_model, batch_size=8)
    after = open_index(store)  # the same store object, as the app's process cache keeps it
    assert after.count() == 12 and len(after.query(vector, 100)) == 12


def test_the_build_page_writes_shards_and_the_app_searches_them_at_once(built_index: dict, tmp_path: Path,
                                                                         video_root: Path) -> None:  # fmt: skip
    from core.resources import get_build_manager
    from tests.test_app import _private_copy, make_app, run_page

    db = _private_copy(built_index, tmp_path)
    at = run_page(make_app(db, tmp_path / "out", roots=[tmp_path, video_root]), "pages/build.py")
    at.radio(key="form_strategy_input").set_value("middle").run()  # a new collection beside the index's
    at.selectbox(key="form_shards_input").set_value(2).run()
    next(b for b in at.button if b.label == "Start the build").click().run()
    job = get_build_manager().job(str(db))
    assert job is not None and job.thread is not None
    job.thread.join(timeout=120)
    assert job.state == "done", job.error
    sharded = [ix for ix in list_indexes(Store(db)) if isinstance(ix, ShardedIndex)]
    assert len(sharded) == 1 and len(sharded[0].shards) == 2 and sharded[0].count() == 12  # middle: 1 a video
    # The app, in the process that just built it, finds every record at once.
    at.session_state["collection"] = sharded[0].name
    at.switch_page("pages/search.py").run()
    at.text_input(key="query").input("a video of a person juggling fire.")
    at.form_submit_button[0].click().run()
    assert not at.exception and len(at.image) >= 2, [e.value for e in (*at.error, *at.warning, *at.info)]
    assert "2 shards" in [e.label for e in at.sidebar.expander]  # the sidebar says where the index lives


def test_each_shard_is_checked_and_shards_that_disagree_are_not_one_index(tmp_path: Path) -> None:
    base = {"model_name": "m", "pretrained": "p", "frames": FRAMES, "embed_dim": 4, "schema_version": 1}
    shards = [_collection(tmp_path / f"shard-0{s}", shard_name("frames-y", s),
                          {**base, "shard_of": "frames-y", "shard": s, "shards": 2}) for s in range(2)]  # fmt: skip
    assert not ShardedIndex("frames-y", shards, ["here"]).schema_problem()
    shards[1].collection.modify(metadata={**shards[1].metadata, "schema_version": 99})
    with pytest.raises(IndexUnavailableError, match=r"frames-y-s01 was written by a newer version"):
        open_index(Store(tmp_path))
    shards[1].collection.modify(metadata={**shards[1].metadata, "schema_version": 1, "model_name": "other"})
    with pytest.raises(IndexUnavailableError, match=r"frames-y-s01 of frames-y differs from .* in model_name"):
        open_index(Store(tmp_path))


def test_writers_started_ahead_end_with_a_build_whose_model_fails(video_root: Path, tmp_path: Path, tiny_spec) -> None:
    import multiprocessing

    from core.engines.build import run_build
    from core.requests import BuildRequest
    from core.store.locking import BuildLock

    def no_model():  # the model fails while the shard writers start beside it
        raise UserError("The model cannot be loaded here.")

    request = BuildRequest(videos=str(video_root), db=str(tmp_path / "db"), output=str(tmp_path / "out"), shards=3,
                           workers=1, spec=tiny_spec)  # fmt: skip
    with pytest.raises(UserError, match="cannot be loaded"):
        run_build(request, model=no_model)
    assert not [p for p in multiprocessing.active_children() if p.name.startswith("shard-writer")]
    for i in range(3):  # each had taken its folder's lock, and let it go
        assert (tmp_path / "db" / f"shard-0{i}").is_dir()
        BuildLock(tmp_path / "db" / f"shard-0{i}").refuse_if_held()
