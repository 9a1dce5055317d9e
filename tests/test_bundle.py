"""Bundles: `export` then `import` re-creates a collection bit for bit (embedded and through a Chroma server),
gives the same search and evaluation, adds nothing the second time, and refuses a bad bundle in one sentence."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import zipfile
from pathlib import Path
from typing import Any

import chromadb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from core.app import EvalSettings, Explorer, IndexRef
from core.cli import main
from tests.helpers import ChromaProcess, free_port, run_cli

QUERY = "a video of a person juggling fire."


def _records(db: Path | None = None, port: int | None = None, name: str | None = None) -> dict[str, Any]:
    """Every record of a collection straight from Chroma: id → (embedding bytes, metadata), and its metadata."""
    client = chromadb.HttpClient(host="127.0.0.1", port=port) if port else chromadb.PersistentClient(path=str(db))
    collection = client.get_collection(name) if name else client.list_collections()[0]
    got = collection.get(include=["embeddings", "metadatas"])
    rows = {
        rid: (bytes(memoryview(emb.astype("float32"))), meta)
        for rid, emb, meta in zip(got["ids"], got["embeddings"], got["metadatas"], strict=True)
    }
    return {"name": collection.name, "metadata": dict(collection.metadata), "rows": rows}


@pytest.fixture()
def original(built_index, tmp_path: Path) -> dict[str, Any]:
    """A copy of the built index with one saved run (the session's index stays read-only)."""
    db = tmp_path / "db"
    shutil.copytree(built_index["db"], db)
    explorer = Explorer(output=tmp_path / "out")
    explorer.evaluate(IndexRef(db=str(db)), EvalSettings(), save=True)
    return {"db": db, "name": _records(db)["name"]}


def _cli_json(*args: str) -> Any:
    """The JSON a command writes to stdout, from a subprocess (the CLI as users run it)."""
    result = run_cli(*args, "--json", "-")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def _json(capsys: pytest.CaptureFixture[str], *args: str) -> Any:
    """The same in this process (cheaper: no interpreter to start)."""
    capsys.readouterr()
    assert main([*args, "--json", "-"]) == 0
    return json.loads(capsys.readouterr().out)


def test_export_import_gives_the_same_records_search_and_evaluation(original, tmp_path: Path) -> None:
    bundle = tmp_path / "my-index.zip"
    exported = _cli_json("export", "--out", str(bundle), "--db", str(original["db"]), "--include-model")
    assert exported["collection"] == original["name"] and exported["runs"] == 1 and exported["model"]["included"]
    with zipfile.ZipFile(bundle) as archive:
        names = set(archive.namelist())
        manifest = json.loads(archive.read("bundle.json"))
    assert {"bundle.json", "records.parquet", "runs.jsonl", "sweeps.jsonl", "model/tiny_clip.pt"} <= names
    assert manifest["format_version"] == 1 and manifest["counts"]["records"] == exported["records"] == 36
    assert set(manifest["files"]) == names - {"bundle.json"} and manifest["metadata"]["schema_version"] == 1

    result = run_cli("import", str(bundle), "--db", str(tmp_path / "db2"), "--output", str(tmp_path / "out2"))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == original["name"]  # the collection's name, alone on stdout
    before, after = _records(original["db"]), _records(tmp_path / "db2")
    assert after == before  # same name, collection metadata, ids, metadata and embedding bytes

    for command in (["search", QUERY, "--k", "8"], ["evaluate", "--no-save", "--pooling", "max"]):
        a = _cli_json(*command, "--db", str(original["db"]))
        b = _cli_json(*command, "--db", str(tmp_path / "db2"))
        assert a == b
    runs = Explorer().runs(IndexRef(db=str(tmp_path / "db2")))
    assert [r.id for r in runs] == [r.id for r in Explorer().runs(IndexRef(db=str(original["db"])))]

    # Importing the same bundle again adds nothing: no record, no run.
    assert main(["import", str(bundle), "--db", str(tmp_path / "db2"), "--output", str(tmp_path / "out2")]) == 0
    assert _records(tmp_path / "db2") == before
    assert len(Explorer().runs(IndexRef(db=str(tmp_path / "db2")))) == 1


def _rewrite(folder: Path, records: Any = None, **manifest_changes: Any) -> None:
    """Change a bundle folder as another machine would have made it, keeping its sha256s right."""
    manifest = json.loads((folder / "bundle.json").read_text())
    if records is not None:
        table = pq.read_table(folder / "records.parquet")
        metas = [json.dumps(records(json.loads(m))) for m in table.column("metadata").to_pylist()]
        table = table.set_column(table.schema.get_field_index("metadata"), "metadata", pa.array(metas, pa.string()))
        sink = io.BytesIO()
        pq.write_table(table, sink)
        (folder / "records.parquet").write_bytes(sink.getvalue())
        manifest["files"]["records.parquet"] = hashlib.sha256(sink.getvalue()).hexdigest()
    for key, change in manifest_changes.items():
        manifest[key] = change(manifest[key])
    (folder / "bundle.json").write_text(json.dumps(manifest))


def test_a_bundle_from_another_machine_brings_its_thumbnails_and_model(original, tmp_path: Path) -> None:
    """Paths that do not exist here (thumbnails, checkpoint, config) point at the imported copies."""
    bundle = tmp_path / "bundle"
    assert main(["export", "--out", str(bundle), "--db", str(original["db"]), "--include-model"]) == 0
    elsewhere = lambda m: {**m, "frame_path": "/elsewhere/" + Path(m["frame_path"]).name}  # noqa: E731
    moved = lambda meta: {**meta, "pretrained": "/elsewhere/tiny_clip.pt", "model_config": "/elsewhere/x.json"}  # noqa: E731
    _rewrite(bundle, records=elsewhere, metadata=moved)
    out = tmp_path / "out2"
    assert main(["import", str(bundle), "--db", str(tmp_path / "db2"), "--output", str(out)]) == 0
    imported = _records(tmp_path / "db2")
    assert Path(imported["metadata"]["pretrained"]).read_bytes() == (bundle / "model" / "tiny_clip.pt").read_bytes()
    assert Path(imported["metadata"]["pretrained"]).is_relative_to(out.resolve())
    assert Path(imported["metadata"]["model_config"]).read_text() == imported["metadata"]["model_config_json"]
    source = _records(original["db"])["rows"]
    for rid, (emb, meta) in imported["rows"].items():
        assert emb == source[rid][0]
        assert Path(meta["frame_path"]).read_bytes() == Path(source[rid][1]["frame_path"]).read_bytes()
        assert Path(meta["frame_path"]).is_relative_to(out.resolve())
        assert {k: v for k, v in meta.items() if k != "frame_path"} == {
            k: v for k, v in source[rid][1].items() if k != "frame_path"
        }
    a = Explorer().search(IndexRef(db=str(original["db"])), _query()).hits
    b = Explorer().search(IndexRef(db=str(tmp_path / "db2")), _query()).hits
    assert [(h.video_id, h.frame_index, h.similarity) for h in a] == [
        (h.video_id, h.frame_index, h.similarity) for h in b
    ]


def _query() -> Any:
    from core.app import SearchQuery

    return SearchQuery(text=QUERY, k=6)


def test_an_embedded_index_moves_to_a_server_and_back(
    original, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    chroma = ChromaProcess(tmp_path / "chroma-data", free_port())
    chroma.start()
    try:
        port = str(chroma.port)
        server = ["--chroma-host", "127.0.0.1", "--chroma-port", port, "--output", str(tmp_path / "srv-out")]
        bundle = tmp_path / "b.zip"
        assert main(["export", "--out", str(bundle), "--db", str(original["db"])]) == 0
        assert main(["import", str(bundle), *server]) == 0
        assert _records(port=chroma.port) == _records(original["db"])
        srv = _json(capsys, "search", QUERY, "--k", "8", "--chroma-host", "127.0.0.1", "--chroma-port", port)
        assert srv == _json(capsys, "search", QUERY, "--k", "8", "--db", str(original["db"]))
        evaluated = [
            _json(capsys, "evaluate", "--no-save", *where)
            for where in (["--db", str(original["db"])], ["--chroma-host", "127.0.0.1", "--chroma-port", port])
        ]
        assert evaluated[0] == evaluated[1]
        assert main(["import", str(bundle), *server]) == 0  # again: nothing added
        assert _records(port=chroma.port) == _records(original["db"])

        back = tmp_path / "back"
        assert main(["export", "--out", str(back), *server]) == 0  # a folder this time
        assert json.loads((back / "bundle.json").read_text())["counts"]["runs"] == 1  # runs came along
        assert main(["import", str(back), "--db", str(tmp_path / "db3"), "--output", str(tmp_path / "o3")]) == 0
        assert _records(tmp_path / "db3") == _records(original["db"])
    finally:
        chroma.stop()


def _truncated(bundle: Path, work: Path) -> Path:
    data = bundle.read_bytes()
    (work / "cut.zip").write_bytes(data[: len(data) // 2])
    return work / "cut.zip"


def _wrong_sha(bundle: Path, work: Path) -> Path:
    folder = work / "tampered"
    with zipfile.ZipFile(bundle) as archive:
        archive.extractall(folder)
    with (folder / "runs.jsonl").open("a") as fh:
        fh.write("\n")
    return folder


def _newer(bundle: Path, work: Path) -> Path:
    folder = work / "newer"
    with zipfile.ZipFile(bundle) as archive:
        archive.extractall(folder)
    _rewrite(folder, format_version=lambda v: v + 1)
    return folder


def _missing_checkpoint(bundle: Path, work: Path) -> Path:
    folder = work / "no-model"
    with zipfile.ZipFile(bundle) as archive:
        archive.extractall(folder)
    _rewrite(folder, metadata=lambda meta: {**meta, "pretrained": "/elsewhere/tiny_clip.pt"})
    return folder


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (_truncated, "is damaged (not a complete zip file"),
        (_wrong_sha, "is damaged (the sha256 of runs.jsonl differs"),
        (_newer, "has format 2, newer than the 1 this tool reads"),
        (_missing_checkpoint, "needs the checkpoint tiny_clip.pt (sha256"),
    ],
    ids=["truncated zip", "wrong sha256", "newer format", "missing checkpoint"],
)
def test_a_bad_bundle_is_refused_in_one_sentence_and_leaves_nothing(
    make, expected: str, original, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bundle = tmp_path / "good.zip"
    assert main(["export", "--out", str(bundle), "--db", str(original["db"])]) == 0  # no --include-model
    capsys.readouterr()
    bad = make(bundle, tmp_path)
    db = tmp_path / "target"
    assert main(["import", str(bad), "--db", str(db), "--output", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert expected in err and err.count("\n") == 0 and err.startswith("error: ") and err.endswith(".")
    assert not db.exists() or chromadb.PersistentClient(path=str(db)).list_collections() == []
    assert not (tmp_path / "o").exists()


def test_the_checkpoint_given_by_hand_is_checked_against_its_sha256(original, tmp_path: Path, tiny_checkpoint) -> None:
    bundle = tmp_path / "good.zip"
    assert main(["export", "--out", str(bundle), "--db", str(original["db"])]) == 0
    folder = _missing_checkpoint(bundle, tmp_path)
    wrong = tmp_path / "other.pt"
    wrong.write_bytes(tiny_checkpoint.read_bytes() + b"\0")  # other bytes, same file name
    target = ["--db", str(tmp_path / "t"), "--output", str(tmp_path / "o")]
    assert main(["import", str(folder), *target, "--pretrained", str(wrong)]) == 2
    assert main(["import", str(folder), *target, "--pretrained", str(tiny_checkpoint)]) == 0
    assert _records(tmp_path / "t")["metadata"]["pretrained"] == str(tiny_checkpoint.resolve())
