"""Work that runs in the background of a long-lived process (the dashboard): builds and downloads.

A manager starts a job in a thread, keeps its live progress, and lets anyone holding the manager
read or cancel it, so a job survives page changes and is visible to every browser session when the
dashboard keeps one manager per process. One job per target (index folder, download folder): a
second request is refused here (same process); builds are also locked across processes by the
index folder's lock.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.app import BuildProgress, BuildRequest, Candidate, Explorer, IndexLockedError, UserError, download

log = logging.getLogger(__name__)


@dataclass
class Job:
    """A background job's state, readable from any thread while it runs."""

    key: str
    kind: str
    request: Any
    state: str = "starting"  # starting, scanning videos, loading model, running, done, cancelled, failed
    stage: str = ""  # what it is doing now, in words (e.g. "loading the model ViT-B-32 (openai)")
    progress: Any = None
    summary: Any = None
    error: str = ""
    started_at: float = field(default_factory=time.time)
    finished_at: float | None = None
    cancel_event: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None

    @property
    def active(self) -> bool:
        return self.state in ("starting", "scanning videos", "loading model", "running")

    def cancel(self) -> None:
        self.cancel_event.set()

    def eta(self) -> str:
        """What an ETA field shows: the time left while the job runs (in the one duration format), and
        once it has ended, how it ended ("done", "cancelled", "failed"), never "done" for a cancelled job."""
        if not self.active:
            return self.state
        eta = getattr(self.progress, "eta", None)
        return eta() if callable(eta) else "–"

    def report(self, snapshot: Any) -> None:
        """A job's progress event. A build's says its stage too: before its videos, the stage is what
        the job shows (its state and words), and the counts are kept from then on."""
        if isinstance(snapshot, BuildProgress):
            self.stage = snapshot.describe()
            self.state = _BUILD_STATES.get(snapshot.stage.value, "running")
            if not snapshot.counting:
                return
        self.progress = snapshot


# A build's stage (`BuildStage` values) as a job's state; a build that indexes is "running".
_BUILD_STATES = {"scanning": "scanning videos", "starting": "loading model"}


def _key(target: str) -> str:
    return target if "://" in target else str(Path(target).expanduser().resolve())


class JobManager:
    """Starts, tracks and cancels background jobs, one per key."""

    kind = "job"

    def __init__(self) -> None:
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()

    def _start(self, folder: str, request: Any, work: Callable[[Job], Any]) -> Job:
        key = _key(folder)
        with self._lock:
            current = self._jobs.get(key)
            if current is not None and current.active:
                since = time.strftime("%H:%M:%S", time.localtime(current.started_at))
                raise IndexLockedError(
                    f"A {self.kind} is already running on {folder} (started {since}): "
                    "wait for it to finish or cancel it."
                )
            job = Job(key=key, kind=self.kind, request=request)
            job.thread = threading.Thread(target=self._run, args=(job, work), name=f"{self.kind}:{key}", daemon=True)
            self._jobs[key] = job
        job.thread.start()
        return job

    def job(self, folder: str) -> Job | None:
        """The latest job on a folder (running or finished), if any."""
        with self._lock:
            return self._jobs.get(_key(folder))

    def active_jobs(self) -> list[Job]:
        with self._lock:
            return [job for job in self._jobs.values() if job.active]

    def _run(self, job: Job, work: Callable[[Job], Any]) -> None:
        try:
            job.summary = work(job)
            job.state = "cancelled" if getattr(job.summary, "cancelled", False) else "done"
        except UserError as exc:
            job.error, job.state = str(exc), "failed"
        except Exception as exc:  # a bug: keep the traceback in the server log, say so on the page
            log.exception("%s failed", self.kind)
            job.error, job.state = f"The {self.kind} failed unexpectedly ({exc.__class__.__name__}: {exc}).", "failed"
        finally:
            job.finished_at = time.time()


class BuildManager(JobManager):
    """Background index builds, one per index folder (or Chroma server)."""

    kind = "build"

    def start(self, explorer: Explorer, request: BuildRequest) -> Job:
        """Build in the background with `explorer` (the caller's: its roots confine the request)."""

        def work(job: Job) -> Any:
            return explorer.build(request, progress=job.report, cancel=job.cancel_event, lock_owner="dashboard")

        return self._start(request.target.key(), request, work)


@dataclass(frozen=True)
class DownloadRequest:
    """What to download: the same choices as ``python -m core download``."""

    out: str
    candidates: dict[str, list[Candidate]] = field(hash=False)
    per_class: int = 5
    jobs: int = 4
    retries: int = 3


class DownloadManager(JobManager):
    """Background subset downloads, one per destination folder."""

    kind = "download"

    def start(self, request: DownloadRequest) -> Job:
        def work(job: Job) -> Any:
            job.state = "running"
            return download(
                request.candidates,
                request.out,
                request.per_class,
                jobs=request.jobs,
                retries=request.retries,
                progress=job.report,
                cancel=job.cancel_event,
            )

        return self._start(request.out, request, work)
