"""The frame index: ChromaDB collections of frame embeddings, one per model identity and frame strategy.

Records are ``<video_id>:<frame_index>``, written with ``upsert``; a video counts as indexed once all its
``frames_in_video`` frames are in. The collection's metadata names the model, the embedding size, the
frame strategy and the ``schema_version`` checked on open.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from core.ground import IndexUnavailableError, now_iso, plural
from core.requests import SOURCE_ANNOTATIONS as SOURCE_ANNOTATIONS
from core.requests import SOURCE_VIDEOS as SOURCE_VIDEOS
from core.requests import ModelSpec
from core.store.chroma import ChromaServer as ChromaServer
from core.store.chroma import connect as connect
from core.store.chroma import store_call

if TYPE_CHECKING:  # chromadb is imported where a store is opened (`core.store.chroma.connect`), not here
    import chromadb

    # the type of `configuration["hnsw"]`; chromadb does not export it at the top
    from chromadb.api.collection_configuration import CreateHNSWConfiguration

COLLECTION_PREFIX = "frames"
# The layout of ids, record metadata and collection metadata (the index contract). Raise it when that
# layout changes, and then either migrate older collections in `FrameIndex.check_schema` or keep
# refusing them there. Every collection this tool ever wrote says 1; none recorded means another tool.
SCHEMA_VERSION = 1
# HNSW settings chosen on the benchmark's recall and insertion figures (benchmarks/README.md, "Figures
# behind settings in the code"): larger ones cost insertion time and gain no recall.
HNSW_CONFIG: CreateHNSWConfiguration = {
    "space": "cosine",
    "ef_construction": 100,
    "ef_search": 100,
    "max_neighbors": 16,
}
_PAGE = 5000


def version_key(count: int, built_at: str) -> str:
    """What caches of an index's content are keyed by: it changes with new records and finished builds."""
    return f"{count}|{built_at}"


def cosine_similarities(vectors: np.ndarray, query: np.ndarray) -> np.ndarray:
    """The cosine of each row of `vectors` with `query`, unclamped (float64, so the same inputs give the same
    figures wherever they are computed)."""
    rows = np.asarray(vectors, dtype=np.float64).reshape(len(vectors), -1)
    q = np.asarray(query, dtype=np.float64).reshape(-1)
    norms = np.linalg.norm(rows, axis=1) * np.linalg.norm(q)
    return np.divide(rows @ q, norms, out=np.zeros(len(rows)), where=norms > 0)


def collection_name(spec: ModelSpec, frames: str) -> str:
    # Chroma's own naming rule, not a file name (core.ground): it must stay exactly as it is, since a
    # build finds its collection again by this name.
    safe_model = "".join(c if c.isalnum() or c in "-_." else "-" for c in spec.name)[:60].strip("-_.")
    safe_frames = frames.replace(":", "")
    return f"{COLLECTION_PREFIX}-{safe_model}-{safe_frames}-{spec.identity()}"


@dataclass(frozen=True)
class ShardInfo:
    """One collection of a sharded index: its name, where it lives and how many records it holds."""

    name: str
    where: str
    count: int


@dataclass
class IndexInfo:
    """What a collection (or a sharded index's set of collections) holds and how it was built."""

    name: str
    spec: ModelSpec
    frames: str
    embed_dim: int
    created_at: str
    built_at: str
    count: int
    schema_version: int = SCHEMA_VERSION
    source_videos: str = ""  # the videos folder it was built from ("" when not recorded)
    source_annotations: str = ""  # and its annotations file, if any
    shards: list[ShardInfo] = field(default_factory=list)  # empty: one collection

    @property
    def version(self) -> str:
        return version_key(self.count, self.built_at)

    def describe(self) -> str:
        when = self.built_at or self.created_at
        shards = f" in {plural(len(self.shards), 'shard')}" if self.shards else ""
        return f"{self.spec.describe()}, frames {self.frames}, {plural(self.count, 'frame')}{shards}, built {when}"


@dataclass
class IndexContents:
    """Every record of a collection, as arrays (frames sorted by video, then frame index)."""

    ids: list[str]
    embeddings: np.ndarray
    video_ids: np.ndarray
    labels: np.ndarray
    frame_index: np.ndarray
    timestamp_s: np.ndarray
    frame_paths: np.ndarray
    video_paths: np.ndarray
    frames_in_video: np.ndarray
    video_frames: np.ndarray
    extra: list[dict[str, Any]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.ids)


Hit = tuple[str, float, dict[str, Any]]  # (record id, cosine similarity, metadata)


def rank_hits(hits: Iterable[Hit], k: int | None = None) -> list[Hit]:
    """Hits most similar first, equal scores by id (the same order however the records are spread over
    collections), the first `k` when given."""
    ranked = sorted(hits, key=lambda hit: (-hit[1], hit[0]))
    return ranked if k is None else ranked[:k]


def frame_counts(metadatas: Iterable[Mapping[str, Any]]) -> dict[str, tuple[int, int]]:
    """video_id → (frames present, frames expected) over records' metadata."""
    present: Counter[str] = Counter()
    expected: dict[str, int] = {}
    for meta in metadatas:
        vid = str(meta["video_id"])
        present[vid] += 1
        expected[vid] = int(meta.get("frames_in_video", 1))
    return {vid: (present[vid], expected[vid]) for vid in present}


def complete_video_ids(counts: Mapping[str, tuple[int, int]]) -> set[str]:
    """The one rule for "this video is indexed": every frame it contributes is in the index.

    A build killed mid-video leaves some of its frames; such a video is neither evaluated nor skipped
    by the next build, which writes it again under the same ids.
    """
    return {vid for vid, (have, want) in counts.items() if have >= want}


def index_contents(
    ids: list[str], matrix: np.ndarray, metas: list[dict[str, Any]], complete_only: bool = True
) -> IndexContents:
    """Records (of one collection, or of every shard of an index) as `IndexContents`: sorted by (video_id,
    frame_index), with only complete videos' frames when `complete_only`."""
    if complete_only and metas:
        complete = complete_video_ids(frame_counts(metas))
        keep = [i for i, m in enumerate(metas) if str(m["video_id"]) in complete]
        ids, matrix, metas = [ids[i] for i in keep], matrix[keep], [metas[i] for i in keep]
    order = sorted(range(len(ids)), key=lambda i: (str(metas[i]["video_id"]), int(metas[i]["frame_index"])))
    metas = [metas[i] for i in order]

    def column(key: str, dtype: Any, default: Any) -> np.ndarray:
        return np.array([m.get(key, default) for m in metas], dtype=dtype)

    return IndexContents(
        ids=[ids[i] for i in order],
        embeddings=matrix[order] if len(order) else matrix,
        video_ids=column("video_id", object, ""),
        labels=column("label", object, ""),
        frame_index=column("frame_index", np.int64, 0),
        timestamp_s=column("timestamp_s", np.float64, 0.0),
        frame_paths=column("frame_path", object, ""),
        video_paths=column("video_path", object, ""),
        frames_in_video=column("frames_in_video", np.int64, 1),
        video_frames=column("video_frames", np.int64, 0),
        extra=metas,
    )


def is_frame_collection(meta: Mapping[str, Any] | None) -> bool:
    return meta is not None and "model_name" in meta and "frames" in meta


class FrameIndex:
    """One collection of frame embeddings and what it knows about itself."""

    def __init__(self, client: chromadb.ClientAPI, collection: Any) -> None:
        self.client = client
        self.collection = collection

    @property
    def name(self) -> str:
        return self.collection.name

    @property
    def metadata(self) -> dict[str, Any]:
        return dict(self.collection.metadata or {})

    @property
    def spec(self) -> ModelSpec:
        return ModelSpec.from_metadata(self.metadata)

    @property
    def frames(self) -> str:
        return str(self.metadata.get("frames", "middle"))

    def info(self) -> IndexInfo:
        return self._info(self.count())

    def _info(self, count: int) -> IndexInfo:
        meta = self.metadata
        return IndexInfo(
            name=self.name,
            spec=self.spec,
            frames=self.frames,
            embed_dim=int(meta.get("embed_dim", 0)),
            created_at=str(meta.get("created_at", "")),
            built_at=str(meta.get("built_at", "")),
            count=count,
            schema_version=self.schema_version,
            source_videos=str(meta.get(SOURCE_VIDEOS, "")),
            source_annotations=str(meta.get(SOURCE_ANNOTATIONS, "")),
        )

    @property
    def schema_version(self) -> int:
        """The schema the collection was written with (0: none recorded, i.e. not written by this tool)."""
        try:
            return int(self.metadata.get("schema_version", 0))
        except (TypeError, ValueError):
            return 0

    def schema_problem(self) -> str:
        """Why this tool cannot use the collection, in one sentence; '' when it can."""
        version = self.schema_version
        if version > SCHEMA_VERSION:
            return (
                f"The collection {self.name} was written by a newer version of this tool (index schema {version}; "
                f"this one reads {SCHEMA_VERSION}): update the tool to use it, or pick another collection."
            )
        if version < SCHEMA_VERSION:
            return (
                f"The collection {self.name} has index schema {version or 'none'}, older than the {SCHEMA_VERSION} "
                "this tool reads: build the videos again into a new index folder."
            )
        return ""

    def check_schema(self) -> FrameIndex:
        """This index, or `IndexUnavailableError` when its schema is not the one this tool reads."""
        problem = self.schema_problem()
        if problem:
            raise IndexUnavailableError(problem)
        return self

    @store_call
    def count(self) -> int:
        return int(self.collection.count())

    def version(self) -> str:
        """Changes whenever the collection's content may have changed (new records, a finished build)."""
        return version_key(self.count(), str(self.metadata.get("built_at", "")))

    @store_call
    def mark_built(self, when: str | None = None) -> None:
        meta = self.metadata
        meta["built_at"] = when or now_iso()
        self.collection.modify(metadata=meta)

    @property
    def shard_count(self) -> int:
        """How many collections the index is (a sharded one: its shards)."""
        return 1

    def close(self) -> None:
        """What a build's index releases when the build ends (a sharded one's writers); a collection holds none."""

    @store_call
    def upsert(self, ids: list[str], embeddings: np.ndarray, metadatas: list[dict[str, Any]]) -> None:
        limit = max(1, int(self.client.get_max_batch_size()))
        for start in range(0, len(ids), limit):
            stop = start + limit
            self.collection.upsert(
                ids=ids[start:stop], embeddings=embeddings[start:stop], metadatas=metadatas[start:stop]
            )

    def _pages(self, include: list[str], where: dict | None = None) -> Iterator[dict]:
        offset = 0
        while True:
            page = self.collection.get(include=include, where=where, limit=_PAGE, offset=offset)
            if not page["ids"]:
                return
            yield page
            offset += len(page["ids"])
            if len(page["ids"]) < _PAGE:
                return

    @store_call
    def video_frame_counts(self) -> dict[str, tuple[int, int]]:
        """video_id → (frames present, frames expected)."""
        return frame_counts(meta for page in self._pages(include=["metadatas"]) for meta in page["metadatas"])

    def complete_videos(self) -> set[str]:
        """Videos whose frames are all in (a build killed mid-video leaves some that are not)."""
        return complete_video_ids(self.video_frame_counts())

    @store_call
    def records(self) -> tuple[list[str], np.ndarray, list[dict[str, Any]]]:
        """Every record as Chroma keeps it: ids, embeddings (float32) and metadata, in Chroma's order."""
        ids: list[str] = []
        embeddings: list[np.ndarray] = []
        metas: list[dict[str, Any]] = []
        for page in self._pages(include=["embeddings", "metadatas"]):
            ids.extend(page["ids"])
            embeddings.append(np.asarray(page["embeddings"], dtype=np.float32))
            metas.extend(page["metadatas"])
        dim = int(self.metadata.get("embed_dim", 0))
        return ids, np.concatenate(embeddings) if embeddings else np.zeros((0, dim), np.float32), metas

    def contents(self, complete_only: bool = True) -> IndexContents:
        """All records with their embeddings, sorted by (video_id, frame_index)."""
        ids, matrix, metas = self.records()
        return index_contents(ids, matrix, metas, complete_only)

    @store_call
    def query(
        self, embedding: np.ndarray, k: int, where: dict | None = None
    ) -> list[tuple[str, float, dict[str, Any]]]:
        """Nearest frames to `embedding`: (id, cosine similarity, metadata), most similar first.

        The cosine is computed from the vectors Chroma gives back, not taken from its float32 distances,
        which depend on how Chroma stored each vector: an exported and imported index scores the same.

        Asking for more than the collection holds returns all of it (no count first: a round trip
        saved on every search)."""
        if int(k) <= 0:
            return []
        query = np.asarray(embedding, dtype=np.float32).reshape(1, -1)
        result = self.collection.query(
            query_embeddings=query, n_results=int(k), where=where, include=["metadatas", "embeddings"]
        )
        ids, metas = result["ids"][0], result["metadatas"][0]
        if not ids:
            return []
        scores = cosine_similarities(np.asarray(result["embeddings"][0], dtype=np.float32), query)
        return rank_hits([(ids[i], float(scores[i]), metas[i] or {}) for i in range(len(ids))])

    @store_call
    def labels(self) -> list[str]:
        labels: set[str] = set()
        for page in self._pages(include=["metadatas"]):
            labels.update(str(m.get("label", "")) for m in page["metadatas"])
        return sorted(labels)


@store_call
def open_for_build(
    client: chromadb.ClientAPI,
    spec: ModelSpec,
    embed_dim: int,
    frames: str,
    source: dict[str, str] | None = None,
    name: str | None = None,
    extra: dict[str, Any] | None = None,
) -> FrameIndex:
    """The collection a build writes to, created on first use with its model, strategy and `source`
    (the `SOURCE_VIDEOS` and `SOURCE_ANNOTATIONS` keys) recorded; `name` (default: the model's and the
    strategy's) and `extra` metadata for one shard of a sharded index."""
    meta: dict[str, Any] = {
        **spec.to_metadata(),
        "embed_dim": int(embed_dim),
        "frames": frames,
        "created_at": now_iso(),
        "schema_version": SCHEMA_VERSION,
        **(source or {}),
        **(extra or {}),
    }
    collection = client.get_or_create_collection(
        name=name or collection_name(spec, frames),
        metadata=meta,
        configuration={"hnsw": HNSW_CONFIG.copy()},
        embedding_function=None,
    )
    FrameIndex(client, collection).check_schema()  # an existing collection of another schema is not written into
    existing = int((collection.metadata or {}).get("embed_dim", embed_dim))
    if existing != int(embed_dim):
        raise IndexUnavailableError(
            f"The collection {collection.name} holds {existing}-dimensional vectors but the model gives "
            f"{embed_dim}; build into another --db."
        )
    index = FrameIndex(client, collection)
    if source and SOURCE_VIDEOS not in index.metadata:  # made before sources were recorded: this one is
        index.collection.modify(metadata={**index.metadata, **source})
    return index


class PendingIndex(FrameIndex):
    """The collection a build writes to, made only when its first records arrive.

    A build in which every video turns out unusable leaves no empty collection behind (the sidebar
    would otherwise select it). An existing collection is opened at once, so a schema or dimension
    mismatch is refused before any work.
    """

    def __init__(
        self,
        client: chromadb.ClientAPI,
        spec: ModelSpec,
        embed_dim: int,
        frames: str,
        source: dict[str, str] | None = None,
        name: str | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        self.client = client
        self._spec, self._embed_dim, self._frames, self._source = spec, int(embed_dim), frames, source
        self._name, self._extra = name or collection_name(spec, frames), extra
        self._opened: FrameIndex | None = None
        if any(c.name == self._name for c in client.list_collections()):
            self._opened = self._open()

    def _open(self) -> FrameIndex:
        return open_for_build(self.client, self._spec, self._embed_dim, self._frames, self._source, self._name,
                              self._extra)  # fmt: skip

    @property  # a plain attribute in FrameIndex; here it is made on first use
    def collection(self) -> Any:
        if self._opened is None:
            self._opened = self._open()
        return self._opened.collection

    @property
    def created(self) -> bool:
        return self._opened is not None

    @property
    def name(self) -> str:
        return self._name

    def count(self) -> int:
        return super().count() if self.created else 0

    def complete_videos(self) -> set[str]:
        return super().complete_videos() if self.created else set()

    def mark_built(self, when: str | None = None) -> None:
        if self.created:
            super().mark_built(when)
