"""Builds that run in the background of a long-lived process (the dashboard).

A `BuildManager` starts `run_build` in a thread, keeps its live progress, and lets anyone holding the
manager read or cancel it, so a build survives page changes and is visible to every browser session
when the dashboard keeps one manager per process. One build per index folder: a second request is
refused here (same process) and by the index folder's lock (other processes).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from core.build import BuildProgress, BuildSummary, run_build
from core.embed import ClipModel, ModelSpec, load_model
from core.errors import IndexLockedError, UserError

log = logging.getLogger(__name__)

ModelLoader = Callable[[ModelSpec, str], ClipModel]


@dataclass(frozen=True)
class BuildRequest:
    """What to build: the same choices as ``python -m core build``."""

    videos: str
    db: str
    output: str
    spec: ModelSpec
    frames: str = "middle"
    annotations: str | None = None
    batch_size: int = 32
    device: str = "auto"
    allowed_roots: tuple[str, ...] | None = None


@dataclass
class BuildJob:
    """A build's state, readable from any thread while it runs."""

    request: BuildRequest
    state: str = "starting"  # starting, loading model, running, done, cancelled, failed
    progress: BuildProgress | None = None
    summary: BuildSummary | None = None
    error: str = ""
    started_at: float = field(default_factory=time.time)
    finished_at: float | None = None
    cancel_event: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None

    @property
    def active(self) -> bool:
        return self.state in ("starting", "loading model", "running")

    def cancel(self) -> None:
        self.cancel_event.set()


def _key(db: str) -> str:
    return str(Path(db).expanduser().resolve())


class BuildManager:
    """Starts, tracks and cancels background builds, one per index folder."""

    def __init__(self, model_loader: ModelLoader = load_model) -> None:
        self._load_model = model_loader
        self._jobs: dict[str, BuildJob] = {}
        self._lock = threading.Lock()

    def start(self, request: BuildRequest) -> BuildJob:
        """Start a build; raises `IndexLockedError` if one is already running on that index folder."""
        key = _key(request.db)
        with self._lock:
            current = self._jobs.get(key)
            if current is not None and current.active:
                since = time.strftime("%H:%M:%S", time.localtime(current.started_at))
                raise IndexLockedError(
                    f"A build is already running on {request.db} (started {since}): wait for it to finish or cancel it."
                )
            job = BuildJob(request=request)
            job.thread = threading.Thread(target=self._run, args=(job,), name=f"build:{key}", daemon=True)
            self._jobs[key] = job
        job.thread.start()
        return job

    def job(self, db: str) -> BuildJob | None:
        """The latest build of an index folder (running or finished), if any."""
        with self._lock:
            return self._jobs.get(_key(db))

    def active_jobs(self) -> list[BuildJob]:
        with self._lock:
            return [job for job in self._jobs.values() if job.active]

    def _run(self, job: BuildJob) -> None:
        request = job.request

        def progress(snapshot: BuildProgress) -> None:
            job.progress = snapshot

        try:
            job.state = "loading model"
            model = self._load_model(request.spec, request.device)
            job.state = "running"
            job.summary = run_build(
                request.videos,
                request.db,
                request.output,
                frames=request.frames,
                annotations=request.annotations,
                batch_size=request.batch_size,
                model=model,
                progress=progress,
                cancel=job.cancel_event,
                allowed_roots=request.allowed_roots,
                lock_owner="dashboard",
            )
            job.state = "cancelled" if job.summary.cancelled else "done"
        except UserError as exc:
            job.error, job.state = str(exc), "failed"
        except Exception as exc:  # a bug: keep the traceback in the server log, say so on the page
            log.exception("build failed")
            job.error, job.state = f"The build failed unexpectedly ({exc.__class__.__name__}: {exc}).", "failed"
        finally:
            job.finished_at = time.time()
