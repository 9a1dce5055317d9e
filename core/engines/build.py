"""Building an index: videos → frames → embeddings → ChromaDB, at the speed of the hardware.

`run_build` is the one entry point (the CLI, the dashboard's background job and the benchmark use it):
it reads the source, locks the index, starts the frame workers, loads the model while they start, and
runs the local engine (`core.engines.local`): worker processes decode and prepare frames, this process
encodes them in batches on the model's device, a writer thread upserts complete videos.

Progress goes to a callback and cancellation comes from a `threading.Event`; nothing here knows about
the terminal or Streamlit.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

from core.engines.local import FramePool, build_index
from core.engines.prepare import prepare_video
from core.engines.records import BuildProgress, BuildSummary
from core.ground import UserError
from core.limits import check_setting
from core.media.frames import FrameStrategy
from core.media.sources import SourceScan, scan_source
from core.model.embed import ClipModel, load_model, resolve_device, resolve_precision
from core.requests import BuildRequest
from core.runtime import usable_cores
from core.store.index import PendingIndex, connect
from core.store.locking import BuildLock

__all__ = [
    "BuildProgress",
    "BuildSummary",
    "build_index",
    "default_batch_size",
    "prepare_video",
    "resolve_workers",
    "run_build",
]


def default_batch_size(model: ClipModel) -> int:
    """The batch for `model`: see `batch_size_for`."""
    return batch_size_for(model.device.type, model.precision)


def batch_size_for(device_type: str, precision: str) -> int:
    """32 on a CPU (larger batches are no faster there); on a GPU 256 in fp16 and 128 in fp32, which keep
    it busy without holding many videos in flight. (The Ray engine sizes its actors' batches before they
    load the model, hence the device type and precision rather than a model.)"""
    if device_type != "cuda":
        return 32
    return 256 if precision == "fp16" else 128


def resolve_workers(workers: int | str | None) -> int:
    """Frame-preparation worker processes: a number, or "auto": one per core, less one for this process
    (which encodes and writes), at least one."""
    if workers in (None, "", "auto"):
        return max(1, usable_cores() - 1)
    return int(check_setting("workers", workers))


def _model_for(request: BuildRequest, model: ClipModel | Callable[[], ClipModel] | None) -> ClipModel:
    if model is None:
        return load_model(request.spec, request.device, request.precision)
    if not isinstance(model, ClipModel):
        model = model()
    return model.with_precision(request.precision)


ENGINES = ("local", "ray")


def check_engine(request: BuildRequest) -> None:
    """Refuse, before any work (a model to load, a source to read), an engine this build cannot use: an unknown
    one, or the Ray engine without Ray installed or with an embedded index on a cluster. One sentence each."""
    if request.engine not in ENGINES:
        raise UserError(f"Unknown engine {request.engine!r}: use local or ray.")
    if request.engine == "ray":
        from core.engines.ray_engine import check_ray_request

        check_ray_request(request)


def run_build(
    request: BuildRequest,
    model: ClipModel | Callable[[], ClipModel] | None = None,
    progress: Callable[[BuildProgress], None] | None = None,
    cancel: threading.Event | None = None,
    lock_owner: str = "",
    scan: SourceScan | None = None,
) -> BuildSummary:
    """Everything `python -m core build` does: read the source, lock the index, load the model, build.

    `model`: None loads the request's model; a loaded `ClipModel` is used as is, in the request's precision
    (the app keeps one per process); a function returning one is called once the frame workers are
    starting, so that they start while it loads. With a Chroma server, the lock lives in the output folder
    (one build per server from this machine). `request.engine` "ray" runs the build on Ray instead
    (`core.engines.ray_engine`). `scan`: the request's source as the caller already read it (read here
    otherwise).
    """
    check_engine(request)
    if request.batch_size is not None:
        check_setting("batch_size", request.batch_size)  # 0 or -5 refused, not taken for the default
    if request.engine == "ray":
        from core.engines.ray_engine import run_ray_build  # Ray is optional: imported only when asked for

        loaded = model if model is None or isinstance(model, ClipModel) else model()
        return run_ray_build(request, model=loaded, progress=progress, cancel=cancel, lock_owner=lock_owner, scan=scan)
    strategy = FrameStrategy.parse(request.frames)
    workers = resolve_workers(request.workers)
    resolve_precision(request.precision, resolve_device(request.device))  # a bad value fails before any work
    scan = scan or scan_source(request.videos, request.annotations, allowed_roots=request.allowed_roots)
    server = request.server
    output_dir = Path(request.output)
    lock = BuildLock.for_store(request.db, output_dir, server.describe() if server else None, owner=lock_owner)
    with lock:
        pool = FramePool(workers, strategy, output_dir).start()  # workers start while the model loads
        try:
            clip = _model_for(request, model)
            client = connect(request.db, server)
            index = PendingIndex(
                client, clip.spec, clip.embed_dim, str(strategy), request.source()
            )  # made with its first frame
            return build_index(
                scan.videos,
                clip,
                index,
                strategy,
                output_dir,
                batch_size=request.batch_size or default_batch_size(clip),
                progress=progress,
                cancel=cancel,
                workers=workers,
                skipped=scan.skipped,
                pool=pool,
            )
        finally:
            pool.close()  # already closed by build_index, unless loading the model or the index failed
