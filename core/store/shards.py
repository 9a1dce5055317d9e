"""A sharded index: one logical index held as N collections, ``<name>-s00`` … ``<name>-s{N-1}``.

A video lives in one shard, chosen by a stable hash of its id (`shard_for`), so a resume and a rebuild
write it where it was. Each shard's collection metadata records the set (`SHARD_OF`, `SHARD`, `SHARDS`).
Reads fan out to every shard at once and merge exactly: the top k of the union is the top k of the same
records in one collection, and contents are every shard's records in one order. A shard that is missing
or that cannot be read is one sentence naming it, never a partial answer.
"""

from __future__ import annotations

import functools
import hashlib
import threading
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import numpy as np

from core.ground import IndexUnavailableError, now_iso
from core.limits import MAX_SHARDS
from core.store.chroma import place_of
from core.store.index import (
    FrameIndex,
    Hit,
    IndexContents,
    IndexInfo,
    ShardInfo,
    complete_video_ids,
    index_contents,
    rank_hits,
    version_key,
)

SHARD_OF = "shard_of"  # the logical index a collection is a shard of
SHARD = "shard"  # its number, 0 … SHARDS-1
SHARDS = "shards"  # how many shards the index has
SHARD_KEYS = (SHARD_OF, SHARD, SHARDS)
# The model, strategy and size every shard of one index must agree on.
_SAME_IN_EVERY_SHARD = ("model_name", "pretrained", "model_config_json", "frames", "embed_dim", SHARDS)

T = TypeVar("T")
_FAN_OUT: ThreadPoolExecutor | None = None
_FAN_OUT_LOCK = threading.Lock()


def shard_name(index: str, shard: int) -> str:
    """The collection of shard `shard` of the index `index`."""
    return f"{index}-s{shard:02d}"


def shard_folder_name(shard: int) -> str:
    """The sub-folder of an embedded index folder that holds shard `shard` of its sharded indexes."""
    return f"shard-{shard:02d}"


def shard_for(video_id: str, shards: int) -> int:
    """The shard a video's frames go to: a stable hash of its id (the same in every process and release;
    Python's own `hash` of a string is salted per process)."""
    digest = hashlib.blake2b(str(video_id).encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "big") % max(1, int(shards))


def shard_metadata(index: str, shard: int, shards: int) -> dict[str, Any]:
    return {SHARD_OF: index, SHARD: int(shard), SHARDS: int(shards)}


def without_shard_keys(meta: dict[str, Any]) -> dict[str, Any]:
    """Collection metadata as one collection of the index would have it (a bundle, an import)."""
    return {key: value for key, value in meta.items() if key not in SHARD_KEYS}


def fan_out(calls: Sequence[Callable[[], T]]) -> list[T]:
    """Each call's result, the calls run at once (one per shard); the first failure is raised."""
    global _FAN_OUT
    if len(calls) <= 1:
        return [call() for call in calls]
    with _FAN_OUT_LOCK:  # made on first use: importing this module starts no thread
        if _FAN_OUT is None:
            _FAN_OUT = ThreadPoolExecutor(2 * MAX_SHARDS, thread_name_prefix="shard-read")
        pool = _FAN_OUT
    futures = [pool.submit(call) for call in calls]
    return [future.result() for future in futures]


class ShardedIndex(FrameIndex):
    """A sharded index read as one: every method of `FrameIndex` over all its shards.

    `shards[i]` is shard i's collection, or None when it was not found in any of `searched` (the folders or
    servers looked in); such an index is listed, with the reason, but not opened."""

    def __init__(self, name: str, shards: Sequence[FrameIndex | None], searched: Sequence[str]) -> None:
        present = [shard for shard in shards if shard is not None]
        if not present:
            raise ValueError("a sharded index needs at least one shard found")
        super().__init__(present[0].client, present[0].collection)
        self._name = name
        self.shards = list(shards)
        self.searched = list(searched)

    @property
    def name(self) -> str:
        return self._name

    @property
    def shard_count(self) -> int:
        return len(self.shards)

    @property
    def present(self) -> list[FrameIndex]:
        return [shard for shard in self.shards if shard is not None]

    @property
    def metadata(self) -> dict[str, Any]:
        """The first shard's metadata without its shard keys, built when the last shard was."""
        meta = without_shard_keys(self.present[0].metadata)
        built = [str(shard.metadata.get("built_at", "")) for shard in self.present]
        meta["built_at"] = max(built) if all(built) else ""
        return meta

    @property
    def schema_version(self) -> int:
        return min(shard.schema_version for shard in self.present)

    def missing(self) -> list[str]:
        return [shard_name(self.name, i) for i, shard in enumerate(self.shards) if shard is None]

    def schema_problem(self) -> str:
        missing = self.missing()
        if missing:
            on_servers = any(place.startswith(("http://", "https://")) for place in self.searched)
            remedy = (
                "give every server it was built on (--chroma-host a,b), or build it again"
                if on_servers
                else "put its shard folder back into the index folder, or build it again into a new one"
            )
            return (
                f"The index {self.name} has {len(self.shards)} shards, but {', '.join(missing)} "
                f"{'is' if len(missing) == 1 else 'are'} in none of {', '.join(self.searched)}: {remedy}."
            )
        for shard in self.present:
            problem = shard.schema_problem()
            if problem:
                return problem
        first = self.present[0].metadata
        for shard in self.present[1:]:
            differs = [key for key in _SAME_IN_EVERY_SHARD if shard.metadata.get(key) != first.get(key)]
            if differs:
                return (
                    f"The shard {shard.name} of {self.name} differs from {self.present[0].name} in "
                    f"{', '.join(differs)}: its collections are not one index; build it again into a new one."
                )
        return ""

    def _each(self, call: Callable[[FrameIndex], T]) -> list[T]:
        return fan_out([functools.partial(call, shard) for shard in self.present])

    def info(self) -> IndexInfo:
        counts = self._each(lambda shard: shard.count())
        info = self._info(sum(counts))  # the logical index's metadata, through the properties above
        info.shards = [ShardInfo(shard.name, place_of(shard.client), n)
                       for shard, n in zip(self.present, counts, strict=True)]  # fmt: skip
        return info

    def count(self) -> int:
        return sum(self._each(lambda shard: shard.count()))

    def version(self) -> str:
        return version_key(self.count(), str(self.metadata.get("built_at", "")))

    def mark_built(self, when: str | None = None) -> None:
        when = when or now_iso()
        self._each(lambda shard: shard.mark_built(when))

    def upsert(self, ids: list[str], embeddings: np.ndarray, metadatas: list[dict[str, Any]]) -> None:
        """Each record into the shard its video belongs to."""
        groups: dict[int, list[int]] = {}
        for row, meta in enumerate(metadatas):
            groups.setdefault(shard_for(str(meta["video_id"]), len(self.shards)), []).append(row)
        for shard, rows in groups.items():
            target = self.shards[shard]
            if target is None:
                raise IndexUnavailableError(self.schema_problem())
            target.upsert([ids[r] for r in rows], embeddings[rows], [metadatas[r] for r in rows])

    def video_frame_counts(self) -> dict[str, tuple[int, int]]:
        merged: dict[str, tuple[int, int]] = {}
        for counts in self._each(lambda shard: shard.video_frame_counts()):
            merged.update(counts)  # a video lives in one shard
        return merged

    def complete_videos(self) -> set[str]:
        return complete_video_ids(self.video_frame_counts())

    def contents(self, complete_only: bool = True) -> IndexContents:
        """Every shard's records as one collection's (a video's frames are all in one shard)."""
        parts = self._each(lambda shard: shard.records())
        matrices = [matrix for _, matrix, _ in parts]
        return index_contents([rid for ids, _, _ in parts for rid in ids], np.concatenate(matrices),
                              [meta for _, _, metas in parts for meta in metas], complete_only)  # fmt: skip

    def query(self, embedding: np.ndarray, k: int, where: dict | None = None) -> list[Hit]:
        """The top `k` of every shard's top `k`: exactly the top `k` of all records (see `rank_hits`)."""
        if int(k) <= 0:
            return []
        return rank_hits(_flatten(self._each(lambda shard: shard.query(embedding, k, where))), int(k))

    def labels(self) -> list[str]:
        return sorted({label for labels in self._each(lambda shard: shard.labels()) for label in labels})


def _flatten(lists: Iterable[list[Hit]]) -> list[Hit]:
    return [hit for hits in lists for hit in hits]
