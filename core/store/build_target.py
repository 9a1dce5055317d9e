"""The index a build writes to: one collection, or the shards of a sharded index.

A shard in an embedded folder is written by a process of its own (`ShardProcess`): Chroma's embedded
store serialises one process's writes, however many folders it has open (benchmarks/README.md, "Sharded
index"). A shard on a Chroma server is written from this process (`ServerShard`): the server does the work.
Either way a shard's collection is made with the index's first records, all shards at once, so that a
build in which every video fails leaves nothing behind and a finished one leaves every shard.
"""

from __future__ import annotations

import contextlib
import functools
import multiprocessing
import pickle
import signal
import threading
import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from core.ground import IndexUnavailableError, UserError, now_iso, plural
from core.limits import check_setting
from core.requests import ModelSpec
from core.runtime import main_module_hidden
from core.store.catalog import Store, list_indexes
from core.store.chroma import connect, forget_embedded, place_of
from core.store.index import FrameIndex, PendingIndex, collection_name
from core.store.locking import BuildLock
from core.store.shards import ShardedIndex, fan_out, shard_for, shard_metadata, shard_name

# How long a shard writer waits for the folder's lock: a writer orphaned by a killed build ends after the
# write it is in (it reads the end of its pipe), well within this.
ORPHAN_WAIT_S = 60.0


@dataclass(frozen=True)
class ShardSetup:
    """What every shard of a build's index is made with (sent to a shard writer process as it is)."""

    spec: ModelSpec
    embed_dim: int
    frames: str
    source: dict[str, str] | None = None

    def pending(self, client: Any, name: str, extra: dict[str, Any]) -> PendingIndex:
        return PendingIndex(client, self.spec, self.embed_dim, self.frames, self.source, name, extra)


class ShardTarget(Protocol):
    """One shard as a build writes it."""

    name: str
    where: str

    def complete_videos(self) -> set[str]: ...
    def create(self) -> None: ...
    def upsert(self, ids: list[str], embeddings: np.ndarray, metadatas: list[dict[str, Any]]) -> None: ...
    def mark_built(self, when: str) -> None: ...
    def close(self) -> None: ...


class ServerShard:
    """A shard on a Chroma server, written from this process."""

    def __init__(self, index: PendingIndex, where: str) -> None:
        self.index, self.name, self.where = index, index.name, where

    def complete_videos(self) -> set[str]:
        return self.index.complete_videos()

    def create(self) -> None:
        self.index.collection  # noqa: B018 (made on first use)

    def upsert(self, ids: list[str], embeddings: np.ndarray, metadatas: list[dict[str, Any]]) -> None:
        self.index.upsert(ids, embeddings, metadatas)

    def mark_built(self, when: str) -> None:
        self.index.mark_built(when)

    def close(self) -> None:
        pass


class ShardProcess:
    """A shard in an embedded folder, written by a process of its own that holds the folder's lock.

    Requests go over a pipe, one at a time; the process answers each with its result or its exception. It
    ends when asked, or when the pipe's other end closes (this process ended, however)."""

    def __init__(self, folder: Path, owner: str) -> None:
        self.name, self.where, self.folder = folder.name, str(folder), folder
        context = multiprocessing.get_context("spawn")  # the engine's fork server is left to the engine
        self._conn, theirs = context.Pipe()
        self._process = context.Process(target=serve_shard, args=(theirs, str(folder), owner),
                                        name=f"shard-writer-{folder.name}", daemon=True)  # fmt: skip
        with main_module_hidden():
            self._process.start()
        theirs.close()  # only the child holds its end: our end then reads EOF when it ends
        self._lock = threading.Lock()
        self._open = True
        self._ready = False

    def ready(self) -> None:
        """Wait until the process holds its folder (or say why it could not)."""
        with self._lock:
            if not self._ready:
                self._receive()
                self._ready = True

    def open(self, name: str, setup: ShardSetup, extra: dict[str, Any]) -> None:
        """Open (or make, with the first records) the shard's collection in the folder."""
        self.ready()
        self.name = name
        self._call("open", name, setup, extra)

    def _call(self, op: str, *args: Any) -> Any:
        with self._lock:
            self._conn.send((op, args))
            return self._receive()

    def _receive(self) -> Any:
        try:
            status, value = self._conn.recv()
        except (EOFError, OSError):
            self._process.join(5)
            raise RuntimeError(
                f"the writer process of shard {self.name} ended unexpectedly (exit code {self._process.exitcode})"
            ) from None
        if status == "error":
            raise value
        return value

    def complete_videos(self) -> set[str]:
        return set(self._call("complete_videos"))

    def create(self) -> None:
        self._call("create")

    def upsert(self, ids: list[str], embeddings: np.ndarray, metadatas: list[dict[str, Any]]) -> None:
        self._call("upsert", ids, np.ascontiguousarray(embeddings, dtype=np.float32), metadatas)

    def mark_built(self, when: str) -> None:
        self._call("mark_built", when)

    def close(self) -> None:
        if not self._open:
            return
        self._open = False
        try:
            if self._process.is_alive():
                with contextlib.suppress(Exception):  # its first answer, whatever it was, comes before "close"'s
                    self.ready()
                self._call("close")
        except Exception:
            pass  # it ended already; its error, if any, was raised where it happened
        finally:
            self._conn.close()
            self._process.join(30)
            if self._process.is_alive():
                self._process.kill()
                self._process.join()


def serve_shard(conn: Connection, folder: str, owner: str) -> None:
    """The shard writer process: take the folder's lock and open its store, then answer requests (the first
    opens the shard's collection) until asked to stop or until the build's end of the pipe closes."""
    # A terminal's Ctrl-C reaches the build's whole process group: the build decides what to stop, and this
    # process still writes what the build hands it before it closes.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    lock = BuildLock(folder, owner)
    try:
        lock.acquire(wait_s=ORPHAN_WAIT_S)
        client = connect(folder)
        conn.send(("ok", None))
    except BaseException as exc:
        conn.send(("error", _portable(exc)))
        lock.release()
        return
    index: PendingIndex | None = None
    try:
        while True:
            try:
                op, args = conn.recv()
            except (EOFError, OSError):  # the build ended without a word (killed): stop after the last write
                return
            try:
                result: Any = None
                if op == "open":
                    name, setup, extra = args
                    index = setup.pending(client, name, extra)
                elif op == "close":
                    pass
                elif index is None:
                    raise RuntimeError(f"shard request {op!r} before the shard was opened")
                elif op == "complete_videos":
                    result = sorted(index.complete_videos())
                elif op == "create":
                    index.collection  # noqa: B018 (made on first use)
                elif op == "upsert":
                    index.upsert(*args)
                elif op == "mark_built":
                    index.mark_built(*args)
                else:
                    raise ValueError(f"unknown shard request {op!r}")
                conn.send(("ok", result))
            except BaseException as exc:
                conn.send(("error", _portable(exc)))
            if op == "close":
                return
    finally:
        lock.release()


class _RemoteTraceback(Exception):
    """The traceback of an exception raised in a shard writer process, as text."""


def _portable(exc: BaseException) -> BaseException:
    """`exc` as it can cross the pipe: itself when it pickles (a user's one sentence keeps its class), else a
    RuntimeError with its text; a bug carries its traceback from the other process."""
    try:
        copy = pickle.loads(pickle.dumps(exc))
    except Exception:
        copy = RuntimeError(f"{exc.__class__.__name__}: {exc}")
    if not isinstance(exc, UserError):
        copy.__cause__ = _RemoteTraceback("".join(traceback.format_exception(exc)))
    return copy


class PendingShardedIndex:
    """A sharded index as a build writes it: its shards' writers, the videos already complete in any shard,
    and the shard each video goes to."""

    def __init__(self, name: str, targets: Sequence[ShardTarget], folders: Sequence[Path] = ()) -> None:
        self.name, self.targets, self.folders = name, list(targets), list(folders)
        self.created = False

    @property
    def shard_count(self) -> int:
        return len(self.targets)

    def shard_of(self, video_id: str) -> int:
        return shard_for(video_id, self.shard_count)

    def complete_videos(self) -> set[str]:
        return set().union(*fan_out([target.complete_videos for target in self.targets]))

    def create(self) -> None:
        """Make every shard's collection (with the first records: all of them or none)."""
        if not self.created:
            fan_out([target.create for target in self.targets])
            self.created = True

    def mark_built(self, when: str | None = None) -> None:
        when = when or now_iso()
        if self.created:
            fan_out([functools.partial(target.mark_built, when) for target in self.targets])

    def close(self) -> None:
        """Stop the shard writers; this process then reads the folders they wrote afresh."""
        try:
            fan_out([target.close for target in self.targets])
        finally:
            for folder in self.folders:
                forget_embedded(folder)


BuildIndex = FrameIndex | PendingShardedIndex  # what a build writes to (`close` it when the build ends)


def start_shard_writers(store: Store, shards: int | None, owner: str = "") -> list[ShardProcess]:
    """The writer processes of an embedded sharded build, started before its model is loaded (each takes a
    second or two to start): one per shard the request asks for, none otherwise."""
    if not store.embedded or not shards or shards <= 1:  # `shards` checked by the build (`check_build`)
        return []
    started: list[ShardProcess] = []
    try:
        for i in range(int(shards)):
            started.append(ShardProcess(store.shard_folder(i), owner))
    except BaseException:
        for process in started:
            process.close()
        raise
    return started


def resolve_shards(store: Store, name: str, shards: int | None) -> tuple[int, FrameIndex | None]:
    """How many shards the build of index `name` writes (`shards` None: the index's own, 1 for a new one), and
    the index as it exists; one sentence when the request contradicts it."""
    if shards is not None:
        check_setting("shards", shards)
    existing = next((ix for ix in list_indexes(store) if ix.name == name), None)
    if existing is None:
        return int(shards or 1), None
    have = existing.shard_count
    if shards is not None and int(shards) != have:
        raise UserError(
            f"The index {name} in {store.describe()} has {plural(have, 'shard')}, not {shards}: build it with "
            f"{have} (--shards {have}, or leave it out), or into another index folder or server."
        )
    return have, existing


def open_build_index(
    store: Store,
    spec: ModelSpec,
    embed_dim: int,
    frames: str,
    source: dict[str, str] | None = None,
    shards: int | None = None,
    owner: str = "",
    started: Sequence[ShardProcess] = (),
) -> BuildIndex:
    """The index a build writes to: one collection (made with its first records), or the shards of a sharded
    index (`shards` > 1, or an existing sharded index), each with a writer of its own. `started`: writer
    processes of an embedded folder's shards 0, 1, … started ahead (`start_shard_writers`); used here, or
    closed when the index turns out to need fewer (or none)."""
    name = collection_name(spec, frames)
    count, existing = resolve_shards(store, name, shards)
    if count == 1:
        client = existing.client if existing is not None else store.primary()
        return PendingIndex(client, spec, embed_dim, frames, source)
    found: dict[str, Any] = {}
    if isinstance(existing, ShardedIndex):
        missing = existing.missing()
        if missing and any(shard.count() for shard in existing.present):  # records would be lost from view
            raise IndexUnavailableError(existing.schema_problem())
        found = {shard.name: shard.client for shard in existing.present}
    setup = ShardSetup(spec, int(embed_dim), frames, source)
    targets: list[ShardTarget] = []
    folders: list[Path] = []
    spare = list(started)
    try:
        for i in range(count):
            shard = shard_name(name, i)
            extra = shard_metadata(name, i, count)
            if store.embedded:
                folder = store.shard_folder(i)
                folders.append(folder)
                process = spare.pop(0) if spare and spare[0].folder == folder else ShardProcess(folder, owner)
                targets.append(process)
            else:
                client = found.get(shard) or store.server_client(store.servers[i % len(store.servers)])
                targets.append(ServerShard(setup.pending(client, shard, extra), place_of(client)))
        fan_out([functools.partial(target.open, shard_name(name, i), setup, shard_metadata(name, i, count))
                 for i, target in enumerate(targets) if isinstance(target, ShardProcess)])  # fmt: skip
    except BaseException:
        for target in [*targets, *spare]:
            target.close()
        raise
    for process in spare:  # started for shards the index does not have
        process.close()
    return PendingShardedIndex(name, targets, folders)
