"""One build per index at a time (`core.store.locking`): where a build's lock lives, who holds it, and that
it goes with its holder however that process ends.

Nothing here waits for time to pass: processes report on pipes, and every wait has a bound only so that a
bug fails the test instead of hanging it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from core.ground import IndexLockedError, safe_name
from core.store.locking import LOCK_FILENAME, BuildLock, StoreLock
from tests.helpers import ROOT

WAIT_S = 120


HOLDER = """
import sys
from core.store.locking import BuildLock
BuildLock(sys.argv[1]).acquire()
print("held", flush=True)
sys.stdin.read()  # holds the lock until killed
"""


def test_the_lock_goes_with_a_holder_that_dies(tmp_path: Path) -> None:
    """Another process takes the lock and reports it on a pipe; while it lives the lock is refused
    here, and once it is killed (no clean-up runs) the lock is free again."""
    db = tmp_path / "db"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(db)], cwd=ROOT, env=env, text=True,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE)  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(IndexLockedError, match=f"process {holder.pid} on "):
            BuildLock(db).acquire()
    finally:
        holder.kill()
        holder.wait(timeout=WAIT_S)
    with BuildLock(db) as lock:
        assert lock.held


def test_a_build_locks_its_index_folder_or_with_a_server_a_folder_of_its_output(tmp_path: Path) -> None:
    db, out = tmp_path / "db", tmp_path / "out"
    assert BuildLock.for_store(db, out).path == db / LOCK_FILENAME
    server = "http://chroma.example:8000"
    assert BuildLock.for_store(db, out, server).path == out / ".locks" / safe_name(server) / LOCK_FILENAME
    with BuildLock.for_store(db, out, server, owner="a build on the server"):
        # The same server from this machine waits; the embedded folder and another server do not.
        with pytest.raises(IndexLockedError, match=r"Another build is already running on .*: wait for it"):
            BuildLock.for_store(tmp_path / "elsewhere", out, server).acquire()
        with BuildLock.for_store(db, out), BuildLock.for_store(db, out, "http://other:8000") as other:
            assert other.held


def test_the_holder_is_named_while_it_holds_and_forgotten_once_it_lets_go(tmp_path: Path) -> None:
    db = tmp_path / "db"
    lock = BuildLock(db, owner="python -m core build")
    with lock:
        holder = lock.holder()
        assert (holder["pid"], holder["owner"]) == (os.getpid(), "python -m core build")
        with pytest.raises(IndexLockedError, match=f"process {os.getpid()} on {holder['host']}, since "):
            BuildLock(db).refuse_if_held()
    assert not lock.held and lock.holder() == {}
    BuildLock(db).refuse_if_held()  # free again


def test_asking_whether_a_build_runs_creates_nothing(tmp_path: Path) -> None:
    BuildLock(tmp_path / "db").refuse_if_held()
    BuildLock.for_store(tmp_path / "db", tmp_path / "out", "http://chroma:8000").refuse_if_held()
    assert list(tmp_path.iterdir()) == []


def test_a_build_over_several_servers_holds_each_servers_lock_or_none(tmp_path: Path) -> None:
    db, out = tmp_path / "db", tmp_path / "out"
    a, b, c = "http://a:8000", "http://b:8001", "http://c:8002"
    with StoreLock.for_store(db, out, [a, b], owner="a sharded build"):
        # Any build that shares one of its servers is refused; one on other servers, or embedded, is not.
        with pytest.raises(IndexLockedError, match="Another build is already running"):
            StoreLock.for_store(db, out, [b, c]).refuse_if_held()
        first = "http://0.example:8000"  # taken before the held one, in the locks' (sorted) order
        with pytest.raises(IndexLockedError):
            StoreLock.for_store(db, out, [b, first]).acquire()
        assert BuildLock.for_store(db, out, first).path.exists()  # it was taken ...
        assert not BuildLock.for_store(db, out, first).holder()  # ... and let go with the refusal
        with StoreLock.for_store(db, out, [c]), StoreLock.for_store(db, out) as embedded:
            assert all(lock.held for lock in embedded.locks)
    StoreLock.for_store(db, out, [b, c]).refuse_if_held()  # free again
