"""One build per index folder at a time, across processes, and appends that never interleave."""

from __future__ import annotations

import errno
import json
import os
import socket
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

from core.ground import IndexLockedError, StoreError, safe_name

LOCK_FILENAME = ".build.lock"

# A platform test rather than try/except ImportError, so that a type checker reads only the branch
# of the platform it checks.
if sys.platform == "win32":
    import msvcrt

    def _try_lock(fd: int) -> bool:
        try:
            os.lseek(fd, 0, os.SEEK_SET)
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
            return True
        except OSError:
            return False

    def _unlock(fd: int) -> None:
        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)

else:
    import fcntl

    def _try_lock(fd: int) -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            return False

    def _unlock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)


class BuildLock:
    """``with BuildLock(db_dir):`` — raises `IndexLockedError` if another build holds `db_dir`.

    An OS advisory lock on a file in the folder: the kernel drops it when the holder ends, however it
    ends (even SIGKILL), so a crash never leaves the index locked; the file names the holder for the
    refusal. It covers the whole embedded folder, since Chroma supports one writing process per folder.
    With a Chroma server the build locks a folder of its own under the output folder (builds from other
    machines are not seen)."""

    def __init__(self, folder: Path | str, owner: str = "") -> None:
        self.path = Path(folder) / LOCK_FILENAME
        self.owner = owner
        self._fd: int | None = None

    @classmethod
    def for_store(cls, db: Path | str, output: Path | str, server: str | None = None, owner: str = "") -> BuildLock:
        """The lock of a build into the embedded index folder `db`, or, with a Chroma server (`server`: its
        address), the lock of this machine's builds on that server, kept in the `output` folder."""
        folder = Path(db) if server is None else Path(output) / ".locks" / safe_name(server)
        return cls(folder, owner=owner)

    def holder(self) -> dict:
        try:
            return json.loads(self.path.read_text(encoding="utf-8") or "{}")
        except (OSError, ValueError):
            return {}

    def acquire(self, wait_s: float = 0.0) -> BuildLock:
        """Take the lock, or raise `IndexLockedError`; `wait_s`: keep trying that long first (a shard writer
        whose predecessor, orphaned by a killed build, is finishing its last write)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + wait_s
        while not _try_lock(fd):
            if time.monotonic() >= deadline:
                os.close(fd)
                raise self._refusal()
            time.sleep(0.05)
        info = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "since": time.strftime("%Y-%m-%d %H:%M:%S"),
            "owner": self.owner,
        }
        try:
            os.ftruncate(fd, 0)
            os.lseek(fd, 0, os.SEEK_SET)
            os.write(fd, json.dumps(info).encode("utf-8"))
        except OSError as exc:
            _unlock(fd)
            os.close(fd)
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):  # the build could write nothing there either
                raise StoreError.disk_full(f"the index folder {self.path.parent}") from None
            raise
        self._fd = fd
        return self

    def _refusal(self) -> IndexLockedError:
        who = self.holder()
        since = who.get("since", "")
        detail = f" (process {who.get('pid')} on {who.get('host')}, since {since})" if who else ""
        return IndexLockedError(
            f"Another build is already running on {self.path.parent}{detail}: wait for it to finish "
            "or use another index folder."
        )

    def refuse_if_held(self) -> None:
        """Raise `IndexLockedError` when a build holds this lock now, so that a second build is refused
        before it loads anything; creates nothing (where there is no lock file, no build runs)."""
        try:
            fd = os.open(self.path, os.O_RDWR)
        except OSError:  # no lock file (or no folder) yet: free; acquire() reports anything else
            return
        try:
            if not _try_lock(fd):
                raise self._refusal()
            _unlock(fd)
        finally:
            os.close(fd)

    def release(self) -> None:
        if self._fd is not None:
            try:
                os.ftruncate(self._fd, 0)
                _unlock(self._fd)
            finally:
                os.close(self._fd)
                self._fd = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def __enter__(self) -> BuildLock:
        return self.acquire()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()


class StoreLock:
    """The locks of one build's store, all held or none: the index folder's, or one per Chroma server (a
    sharded index spread over several servers is one index: no other build of this machine may write to
    any of them meanwhile)."""

    def __init__(self, locks: list[BuildLock]) -> None:
        self.locks = locks

    @classmethod
    def for_store(cls, db: Path | str, output: Path | str, servers: Sequence[str] = (), owner: str = "") -> StoreLock:
        if not servers:
            return cls([BuildLock.for_store(db, output, None, owner)])
        return cls([BuildLock.for_store(db, output, server, owner) for server in sorted(set(servers))])

    def refuse_if_held(self) -> None:
        for lock in self.locks:
            lock.refuse_if_held()

    def acquire(self) -> StoreLock:
        try:
            for lock in self.locks:
                lock.acquire()
        except BaseException:
            self.release()
            raise
        return self

    def release(self) -> None:
        for lock in self.locks:
            lock.release()

    def __enter__(self) -> StoreLock:
        return self.acquire()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()


def locked_append(path: Path | str, text: str) -> None:
    """Append `text` to a file while holding an exclusive lock on it (concurrent writers never interleave)."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        while not _try_lock(fd):
            time.sleep(0.01)
        try:
            os.write(fd, text.encode("utf-8"))
        finally:
            _unlock(fd)
    finally:
        os.close(fd)
