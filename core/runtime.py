"""Process-wide settings, applied once by a front door (the CLI, the app, a worker process).

Nothing in ``core`` changes the process when it is imported; the entry points call
`configure_runtime` instead, so a library user keeps control of their own environment.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import sys
import threading
import types
from collections.abc import Iterator
from dataclasses import dataclass

# FFmpeg (inside OpenCV) prints a line for every damaged packet; each video's problem is reported
# once, as a reason, instead. AV_LOG_QUIET is -8.
FFMPEG_QUIET = "-8"
# How worker processes start: never ``fork``, since forking a process that runs threads can deadlock.
START_METHOD = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"


@dataclass(frozen=True)
class RuntimeSettings:
    """What was applied, for logs and tests."""

    opencv_threads: int
    torch_threads: int | None


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity where the platform tells, else all of them)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # macOS and Windows have no sched_getaffinity
        return max(1, os.cpu_count() or 1)


def cpu_model() -> str:
    """The processor's model name (Linux's /proc/cpuinfo; else what `platform` says), for benchmark records."""
    import platform

    with contextlib.suppress(OSError, StopIteration), open("/proc/cpuinfo") as cpuinfo:
        return next(line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name"))
    return platform.processor() or ""


def process_age_s() -> float | None:
    """Seconds since this process started (Linux's /proc, to the clock tick); None where that is unknown."""
    try:
        with open("/proc/self/stat") as stat, open("/proc/uptime") as uptime:
            fields = stat.read().rsplit(")", 1)[1].split()  # after the command name, which may hold spaces
            since_boot = float(uptime.read().split()[0])
        return max(0.0, since_boot - int(fields[19]) / os.sysconf("SC_CLK_TCK"))  # field 22: starttime
    except (OSError, ValueError, IndexError):
        return None


def torch_threads_for(workers: int, cores: int | None = None) -> int:
    """Intra-op threads for the process that runs the model while `workers` processes decode.

    The decoding workers get the cores they need; the model gets what is left, at least one.
    """
    cores = cores or usable_cores()
    return max(1, cores - max(0, workers))


def decode_threads_for(workers: int, cores: int | None = None) -> int:
    """FFmpeg's threads in each frame worker: 1 while the workers take every core but one (the usual
    `--workers auto`), else 0, FFmpeg's choice, so that fewer workers still use the cores they leave
    (benchmarks/README.md, "Decoder comparison", has the figures behind the rule)."""
    cores = cores or usable_cores()
    return 1 if workers >= cores - 1 else 0


def prepare_threads_for(workers: int, cores: int | None = None) -> int:
    """Threads in each frame worker: 2 where at least as many cores are free as there are workers (the
    encoding process's core on 2 cores, idle while the workers decode for a fast model or a GPU), so that
    one makes each frame's model input and thumbnail while the other decodes the next; else 1, so that a
    worker per core is not oversubscribed (benchmarks/README.md has the figures behind the rule)."""
    cores = cores or usable_cores()
    return 2 if 2 * max(1, workers) <= cores else 1


def configure_runtime(torch_threads: int | None = None, opencv_threads: int = 1) -> RuntimeSettings:
    """Quiet FFmpeg/OpenCV, keep Chroma's telemetry off, and size the thread pools.

    OpenCV decodes one video per worker, so its own thread pool would only compete with the other
    workers and the model; hence one thread by default. Environment variables already set by the user win.
    """
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", FFMPEG_QUIET)
    os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")
    # chromadb reads this when a client is made without Settings (e.g. by a plug-in); our own
    # clients pass Settings(anonymized_telemetry=False) as well.
    os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
    import cv2

    cv2.setNumThreads(max(1, int(opencv_threads)))
    with contextlib.suppress(AttributeError):  # builds without the logging utilities
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
    if torch_threads is not None:
        import torch

        torch.set_num_threads(max(1, int(torch_threads)))
    return RuntimeSettings(opencv_threads=max(1, int(opencv_threads)), torch_threads=torch_threads)


@contextlib.contextmanager
def main_module_hidden() -> Iterator[None]:
    """While a worker process starts, `__main__` is an empty module (what ``python -c`` has).

    multiprocessing (spawn and forkserver) makes each new process import the parent's `__main__` again,
    by path or by name (`multiprocessing.spawn.get_preparation_data`, CPython 3.11). In the dashboard that
    module is the page script Streamlit installs there (`ScriptRunner`, streamlit 1.67): a worker would
    run a page. Elsewhere it is whatever script or ``python -m`` module started the build (the benchmark,
    a user's script), imported again in every worker for nothing. A worker needs only its task's module
    (so does a shard writer of the index).
    """
    with _MAIN_SWAP:  # two threads starting processes at once would restore each other's empty module
        saved = sys.modules["__main__"]
        sys.modules["__main__"] = types.ModuleType("__main__")
        try:
            yield
        finally:
            sys.modules["__main__"] = saved


_MAIN_SWAP = threading.RLock()
