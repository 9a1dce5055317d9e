"""Bundles: the portable form of one collection, written by `export` and read by `import` and share mode.

A bundle is a folder, or the same files in one ``.zip``: ``bundle.json`` (format and tool version, the
collection's metadata, counts, the model, a sha256 per file), ``records.parquet``, ``thumbnails/``,
``runs.jsonl``, ``sweeps.jsonl`` and, with `include_model`, ``model/``.
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import tempfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

import core
from core.ground import UserError, atomic_path, confine, now_iso, sha256_file, write_bytes_atomic
from core.media.thumbnails import thumbnail_path
from core.store.index import HNSW_CONFIG, FrameIndex, IndexContents
from core.store.jsonlines import JsonLinesStore, json_lines
from core.store.runs import RUNS_FILENAME, SWEEPS_FILENAME, Run, RunStore, SweepRow, SweepStore

if TYPE_CHECKING:  # imported where a store is opened (`core.store.chroma.connect`), not with this module
    import chromadb

BUNDLE_FORMAT = 1
MANIFEST = "bundle.json"
RECORDS = "records.parquet"
RUNS = RUNS_FILENAME
SWEEPS = SWEEPS_FILENAME
THUMBNAILS = "thumbnails"
MODEL_DIR = "model"
MODELS_DIRNAME = "models"  # where an import puts a bundle's checkpoint and config, under the output folder
_DOWNLOAD_BLOCK = 1 << 20


class BundleError(UserError):
    """A bundle that cannot be read or used as it is (damaged, newer, incomplete)."""


@dataclass(frozen=True)
class BundleModel:
    """The model a bundle's embeddings came from: a local checkpoint is named by file name and sha256."""

    name: str
    pretrained: str  # a pretrained tag, "none", or the checkpoint's path where the bundle was made
    checkpoint: str = ""  # the checkpoint's file name ("" for a tag or random weights)
    sha256: str = ""
    included: bool = False  # the checkpoint is in the bundle, under model/
    config: str = ""  # the custom config's path in the bundle ("" when none is included)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> BundleModel:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


@dataclass
class BundleSummary:
    """What an export wrote or an import re-created."""

    path: str
    collection: str
    records: int
    thumbnails: int
    runs: int
    sweeps: int
    model: BundleModel
    added: int = 0  # records new to the target collection (import; 0 when the same bundle is imported again)
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


# -- writing ------------------------------------------------------------------------------------
def _records_table(contents: IndexContents, thumbnails: Sequence[str]) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    dim = int(contents.embeddings.shape[1]) if contents.embeddings.ndim == 2 else 0
    flat = pa.array(np.ascontiguousarray(contents.embeddings, dtype=np.float32).reshape(-1), type=pa.float32())
    table = pa.table(
        {
            "id": pa.array(contents.ids, type=pa.string()),
            "embedding": pa.FixedSizeListArray.from_arrays(flat, dim),
            "metadata": pa.array([json.dumps(m, ensure_ascii=False) for m in contents.extra], type=pa.string()),
            "thumbnail": pa.array(list(thumbnails), type=pa.string()),
        }
    )
    sink = io.BytesIO()
    pq.write_table(table, sink)
    return sink.getvalue()


def _model_entry(index: FrameIndex, include_model: bool) -> tuple[BundleModel, list[tuple[str, Path | bytes]]]:
    spec = index.spec
    files: list[tuple[str, Path | bytes]] = []
    config = ""
    if include_model and spec.config_json:
        config = f"{MODEL_DIR}/{spec.name}.json"
        files.append((config, spec.config_json.encode("utf-8")))
    if not spec.is_checkpoint:
        return BundleModel(spec.name, spec.pretrained, config=config), files
    checkpoint = Path(spec.pretrained)
    if not checkpoint.is_file():
        raise BundleError(
            f"The checkpoint {checkpoint} of the collection {index.name} is no longer there: put it back, "
            "then export again."
        )
    if include_model:
        files.append((f"{MODEL_DIR}/{checkpoint.name}", checkpoint))
    model = BundleModel(
        spec.name, spec.pretrained, checkpoint.name, sha256_file(checkpoint), include_model, config=config
    )
    return model, files


def export_bundle(
    index: FrameIndex,
    out: Path | str,
    runs: Sequence[Run] = (),
    sweeps: Sequence[SweepRow] = (),
    include_model: bool = False,
) -> BundleSummary:
    """Write `index` (every record, complete videos or not), its thumbnails, `runs` and `sweeps` as a
    bundle at `out`: a zip when `out` ends in ``.zip``, else a folder (replaced when it is a bundle)."""
    out = Path(out).expanduser()
    as_zip = out.suffix.lower() == ".zip"
    if not as_zip and out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / MANIFEST).is_file())):
        raise BundleError(f"{out} exists and is not a bundle: choose another --out, or remove it first.")
    model, files = _model_entry(index, include_model)
    contents = index.contents(complete_only=False)
    thumbs: list[str] = []
    for meta in contents.extra:
        source = Path(str(meta.get("frame_path") or ""))
        if str(meta.get("frame_path") or "") and source.is_file():
            name = thumbnail_path(THUMBNAILS, str(meta["video_id"]), int(meta["frame_index"])).as_posix()
            files.append((name, source))
            thumbs.append(name)
        else:
            thumbs.append("")
    files.append((RECORDS, _records_table(contents, thumbs)))
    files.append((RUNS, json_lines(runs).encode("utf-8")))
    files.append((SWEEPS, json_lines(sweeps).encode("utf-8")))
    files = list(dict((name, data) for name, data in files).items())  # one entry per path
    digests = {name: _digest(data) for name, data in files}
    manifest = {
        "format_version": BUNDLE_FORMAT,
        "tool_version": core.__version__,
        "collection": index.name,
        "metadata": index.metadata,
        "counts": {
            "records": len(contents),
            "videos": len(set(contents.video_ids.tolist())),
            "thumbnails": sum(1 for t in thumbs if t),
            "runs": len(runs),
            "sweeps": len(sweeps),
        },
        "created_at": now_iso(),
        "model": asdict(model),
        "files": digests,
    }
    entries = [*files, (MANIFEST, json.dumps(manifest, indent=2, ensure_ascii=False).encode("utf-8"))]
    if as_zip:
        with atomic_path(out) as tmp, zipfile.ZipFile(tmp, "w") as archive:
            for name, data in entries:
                # JPEGs, Parquet and weights gain nothing from deflate; it would only cost time.
                stored = name.endswith((".jpg", ".parquet")) or name.startswith(f"{MODEL_DIR}/")
                kind = zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED
                if isinstance(data, Path):
                    archive.write(data, name, compress_type=kind)
                else:
                    archive.writestr(name, data, compress_type=kind)
    else:
        _write_folder(out, entries)
    n_thumbs = sum(1 for t in thumbs if t)
    return BundleSummary(str(out), index.name, len(contents), n_thumbs, len(runs), len(sweeps), model)


def _digest(data: Path | bytes) -> str:
    return sha256_file(data) if isinstance(data, Path) else hashlib.sha256(data).hexdigest()


def _write_folder(out: Path, entries: Sequence[tuple[str, Path | bytes]]) -> None:
    """The bundle's files in a hidden folder beside `out`, renamed to `out` when all are written."""
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        for name, data in entries:
            target = staging / name
            target.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(data, Path):
                shutil.copyfile(data, target)
            else:
                target.write_bytes(data)
        if out.exists():
            shutil.rmtree(out)
        staging.rename(out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


# -- reading ------------------------------------------------------------------------------------
@dataclass
class Bundle:
    """A checked bundle on disk: its folder and what its bundle.json says."""

    root: Path
    manifest: dict[str, Any]
    source: str  # what the user gave: a folder, a zip, a URL

    @property
    def collection(self) -> str:
        return str(self.manifest["collection"])

    @property
    def metadata(self) -> dict[str, Any]:
        return dict(self.manifest.get("metadata") or {})

    @property
    def model(self) -> BundleModel:
        return BundleModel.from_json(self.manifest.get("model") or {})

    def path(self, name: str) -> Path:
        return self.root / name

    def records(self) -> tuple[list[str], np.ndarray, list[dict[str, Any]], list[str]]:
        """ids, float32 embeddings (n × dim), metadata dicts and thumbnail paths, in the bundle's order."""
        import pyarrow.parquet as pq

        table = pq.read_table(self.path(RECORDS))
        dim = int(self.metadata.get("embed_dim", 0))
        column = table.column("embedding").combine_chunks()
        flat = column.flatten().to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
        embeddings = flat.reshape(len(table), column.type.list_size if len(table) else dim)
        metas = [json.loads(text) for text in table.column("metadata").to_pylist()]
        return table.column("id").to_pylist(), embeddings, metas, table.column("thumbnail").to_pylist()

    def runs(self) -> list[Run]:
        return JsonLinesStore(self.path(RUNS), Run).records()

    def sweeps(self) -> list[SweepRow]:
        return JsonLinesStore(self.path(SWEEPS), SweepRow).records()


def _damaged(source: str, what: str) -> BundleError:
    return BundleError(f"The bundle {source} is damaged ({what}): export it again, or download it again.")


def _extract(archive_path: Path, into: Path, source: str) -> None:
    """Unpack a bundle's zip into `into`, refusing a truncated or corrupt archive and any path leaving it."""
    try:
        with zipfile.ZipFile(archive_path) as archive:
            for member in archive.infolist():
                target = into / member.filename
                confine(target, [into], "A file of the bundle")  # a name with .. or / never leaves the folder
                if member.is_dir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                with archive.open(member) as src, target.open("wb") as dst:
                    shutil.copyfileobj(src, dst, _DOWNLOAD_BLOCK)
    except (zipfile.BadZipFile, EOFError, zipfile.LargeZipFile) as exc:
        raise _damaged(source, f"not a complete zip file: {exc}") from None
    except UserError:
        raise _damaged(source, "a file name points outside the bundle") from None


def open_bundle(path: Path | str, into: Path | str | None = None, source: str = "") -> Bundle:
    """The bundle at `path` (a folder or a zip, unpacked into `into` or a new temporary folder), with
    its format, every file's sha256 and every path checked, so that a damaged or newer bundle is refused
    in one sentence before anything is written."""
    path = Path(path).expanduser()
    source = source or str(path)
    if path.is_file():
        root = Path(into) if into is not None else Path(tempfile.mkdtemp(prefix="clip-bundle-"))
        root.mkdir(parents=True, exist_ok=True)
        _extract(path, root, source)
    elif path.is_dir():
        root = path
    else:
        raise BundleError(f"There is no bundle at {source}: give a bundle folder, a .zip file or an http(s) URL.")
    manifest_path = root / MANIFEST
    if not manifest_path.is_file():
        raise BundleError(f"{source} is not a bundle (it has no {MANIFEST}): give a folder or zip made by export.")
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        version, files = int(manifest["format_version"]), dict(manifest["files"])
        str(manifest["collection"])
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        raise _damaged(source, f"its {MANIFEST} is not readable") from None
    if version > BUNDLE_FORMAT:
        raise BundleError(
            f"The bundle {source} has format {version}, newer than the {BUNDLE_FORMAT} this tool reads "
            f"(made by version {manifest.get('tool_version', '?')}): update this tool to open it."
        )
    for name, digest in sorted(files.items()):
        try:
            file = confine(root / name, [root], "A file of the bundle")
        except UserError:
            raise _damaged(source, f"the file name {name} points outside the bundle") from None
        if not file.is_file():
            raise _damaged(source, f"{name} is missing")
        if sha256_file(file) != digest:
            raise _damaged(source, f"the sha256 of {name} differs from the one in {MANIFEST}")
    return Bundle(root, manifest, source)


def fetch_bundle(url: str, into: Path | str, progress: Callable[[int, int], None] | None = None) -> Path:
    """Download the zip at `url` to ``into/bundle.zip`` (`progress(bytes done, total or 0)` as it comes);
    an unreachable or failing URL is one sentence."""
    target = Path(into) / "bundle.zip"
    try:
        with urllib.request.urlopen(url, timeout=30) as response, atomic_path(target) as tmp, tmp.open("wb") as out:
            total, done = int(response.headers.get("Content-Length") or 0), 0
            while block := response.read(_DOWNLOAD_BLOCK):
                out.write(block)
                done += len(block)
                if progress is not None:
                    progress(done, total)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        cause = getattr(exc, "reason", None) or exc  # URLError wraps the socket's error
        reason = (
            f"HTTP {exc.code}"
            if isinstance(exc, urllib.error.HTTPError)
            else getattr(cause, "strerror", None) or str(cause) or exc.__class__.__name__
        )
        raise BundleError(
            f"The bundle at {url} could not be downloaded ({reason}): check the address and that it is reachable."
        ) from None
    return target


# -- importing ----------------------------------------------------------------------------------
def _cosine_round_trip(vectors: np.ndarray) -> np.ndarray:
    """What Chroma's cosine space gives back for `vectors`: it stores each one normalised (times the float32
    inverse of its norm, summed in order) and returns it times its norm, which may move the last bit."""
    f32 = np.float32
    squares = np.zeros(len(vectors), dtype=f32)
    for column in vectors.T:  # in order, in float32, as Chroma sums
        squares = (squares + column * column).astype(f32)
    norms = np.sqrt(squares).astype(f32)[:, None]
    return ((vectors * (f32(1) / norms).astype(f32)).astype(f32) * norms).astype(f32)


def chroma_preimage(stored: np.ndarray, tries: int = 64) -> np.ndarray:
    """Vectors that Chroma's cosine space gives back as exactly `stored` (what it gave when they were read).

    Writing `stored` itself would shift some vectors by one bit on every export and import, so an
    imported index would not read back as the original. Each vector is corrected by what the round
    trip changed, from itself or from itself scaled by a few units in the last place; a vector for
    which none of that works (not seen in practice) is written as it is.
    """
    f32 = np.float32
    stored = np.asarray(stored, dtype=f32)
    result = stored.copy()
    todo = np.arange(len(stored))
    for attempt in range(tries):
        if not len(todo):
            break
        target = stored[todo]
        step = (attempt + 1) // 2 * (1 if attempt % 2 else -1)
        guess = (target * f32(1 + step * 2.0**-23)).astype(f32)
        for _ in range(4):
            wrong = (_cosine_round_trip(guess) != target).any(axis=1)
            if not wrong.any():
                break
            guess[wrong] = (guess[wrong] + (target[wrong] - _cosine_round_trip(guess[wrong]))).astype(f32)
        found = ~(_cosine_round_trip(guess) != target).any(axis=1)
        result[todo[found]] = guess[found]
        todo = todo[~found]
    return result


def _same_file(path: Path, digest: str) -> bool:
    return path.is_file() and sha256_file(path) == digest


def _resolve_model(bundle: Bundle, output: Path, pretrained: str | None) -> dict[str, Any]:
    """The collection metadata to write: the bundle's, with the checkpoint and config pointed at files
    that exist here (the recorded ones when they still hold the same bytes). A checkpoint that is
    neither in the bundle nor here nor given is asked for in one sentence, before anything is written."""
    meta = bundle.metadata
    model = bundle.model
    if model.checkpoint:
        recorded = Path(str(meta.get("pretrained", "")))
        folder = output / MODELS_DIRNAME / model.sha256[:16]
        if _same_file(recorded, model.sha256):
            pass
        elif pretrained:
            given = Path(pretrained).expanduser().resolve()
            if not given.is_file():
                raise BundleError(f"The checkpoint {pretrained} does not exist: give the path of {model.checkpoint}.")
            if sha256_file(given) != model.sha256:
                raise BundleError(
                    f"The checkpoint {pretrained} is not the one the bundle was made with (its sha256 differs from "
                    f"{model.sha256[:12]}…): give the file {model.checkpoint} it was built with."
                )
            meta["pretrained"] = str(given)
        elif model.included:
            target = folder / model.checkpoint
            if not _same_file(target, model.sha256):
                with atomic_path(target) as tmp:
                    shutil.copyfile(bundle.path(f"{MODEL_DIR}/{model.checkpoint}"), tmp)
            meta["pretrained"] = str(target.resolve())
        else:
            raise BundleError(
                f"The bundle needs the checkpoint {model.checkpoint} (sha256 {model.sha256[:12]}…), which it does "
                "not hold: pass that file with --pretrained PATH."
            )
    config_json = str(meta.get("model_config_json") or "")
    config_path = Path(str(meta.get("model_config") or ""))
    if config_json and not (config_path.is_file() and config_path.read_text(encoding="utf-8") == config_json):
        folder = output / MODELS_DIRNAME / hashlib.sha256(config_json.encode("utf-8")).hexdigest()[:16]
        target = folder / f"{model.name}.json"
        if not (target.is_file() and target.read_text(encoding="utf-8") == config_json):
            write_bytes_atomic(target, config_json.encode("utf-8"))
        meta["model_config"] = str(target.resolve())
    return meta


def _place_thumbnails(bundle: Bundle, output: Path, metas: list[dict[str, Any]], thumbs: list[str]) -> int:
    """Copy the thumbnails where a build would write them, unless the recorded path holds the same file;
    each record's ``frame_path`` then names the file that exists here. Returns how many were copied."""
    copied = 0
    for meta, name in zip(metas, thumbs, strict=True):
        if not name:
            continue
        data = bundle.path(name).read_bytes()  # read once: compared with what is here, then written
        recorded = Path(str(meta.get("frame_path") or ""))
        if recorded.is_file() and recorded.read_bytes() == data:
            continue
        target = thumbnail_path(output, str(meta["video_id"]), int(meta["frame_index"]))
        if not (target.is_file() and target.read_bytes() == data):
            write_bytes_atomic(target, data)
            copied += 1
        meta["frame_path"] = str(target.resolve())
    return copied


def import_bundle(
    bundle: Bundle,
    client: chromadb.ClientAPI,
    output: Path | str,
    run_store: RunStore,
    collection: str | None = None,
    pretrained: str | None = None,
) -> BundleSummary:
    """Re-create the bundle's collection in `client` (as `collection` when given), its thumbnails under
    `output`, its runs in `run_store` and its sweeps beside them, with the same ids, metadata and
    embeddings; only paths that do not exist here (thumbnails, checkpoint, config) point at the imported
    copies. Importing the same bundle again adds nothing; a failure while writing the records removes the
    collection it had just made."""
    output = Path(output).expanduser().resolve()
    name = collection or bundle.collection
    meta = _resolve_model(bundle, output, pretrained)
    ids, embeddings, metas, thumbs = bundle.records()
    _place_thumbnails(bundle, output, metas, thumbs)
    existing = {c.name for c in client.list_collections()}
    created = name not in existing
    target = client.get_or_create_collection(
        name=name, metadata=meta, configuration={"hnsw": HNSW_CONFIG.copy()}, embedding_function=None
    )
    index = FrameIndex(client, target)
    before = index.count()
    if not created:
        index.check_schema()
        have = int(index.metadata.get("embed_dim", 0))
        if have != int(meta.get("embed_dim", 0)):
            raise BundleError(
                f"The collection {name} here holds {have}-dimensional vectors, the bundle's "
                f"{meta.get('embed_dim')}: import it under another name with --collection NAME."
            )
    try:
        index.upsert(ids, chroma_preimage(embeddings), metas)  # frame collections are cosine (HNSW_CONFIG)
    except BaseException:
        if created:
            client.delete_collection(name)
        raise
    runs = bundle.runs()
    for run in runs:
        run_store.add(Run(**{**asdict(run), "index": name}))
    sweeps = [SweepRow(**{**row.to_json(), "collection": name}) for row in bundle.sweeps()]
    sweep_store = SweepStore.beside(run_store.path)
    known = [row.to_json() for row in sweep_store.load()]
    sweep_store.add([row for row in sweeps if row.to_json() not in known])
    return BundleSummary(
        bundle.source, name, len(ids), sum(1 for t in thumbs if t), len(runs), len(sweeps), bundle.model,
        added=index.count() - before,
    )  # fmt: skip
