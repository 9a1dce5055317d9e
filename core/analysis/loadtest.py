"""A bounded load test of text search: what several dashboard sessions searching at once get from one
process (one model, one Chroma client): throughput, latency percentiles and errors.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass

import numpy as np

from core.analysis.search import search
from core.ground import plural
from core.model.embed import ClipModel
from core.store.index import FrameIndex

DEFAULT_QUERIES = (
    "someone juggling fire at night",
    "a person playing the clarinet",
    "people dancing in a line",
    "a dog in a bath",
    "kitesurfing on the sea",
    "a man sharpening a pencil",
    "swimming under water",
    "a crowd applauding",
)


@dataclass
class LoadReport:
    threads: int
    requests: int
    errors: int
    seconds: float
    throughput_per_s: float
    p50_ms: float
    p95_ms: float
    max_ms: float
    first_error: str = ""

    def line(self) -> str:
        return (
            f"{plural(self.requests, 'search', 'searches')} on {plural(self.threads, 'thread')} "
            f"in {self.seconds:.1f} s: "
            f"{self.throughput_per_s:.1f}/s, p50 {self.p50_ms:.1f} ms, p95 {self.p95_ms:.1f} ms, "
            f"max {self.max_ms:.1f} ms, {plural(self.errors, 'error')}"
        )

    def to_json(self) -> dict:
        return asdict(self)


def run_search_load(
    model: ClipModel,
    index: FrameIndex,
    queries: Sequence[str] = DEFAULT_QUERIES,
    threads: int = 8,
    requests: int = 200,
    k: int = 10,
    time_limit_s: float = 60.0,
) -> LoadReport:
    """Issue up to `requests` searches from `threads` threads, for at most `time_limit_s` seconds."""
    lock = threading.Lock()
    latencies: list[float] = []
    errors: list[str] = []
    issued = 0
    deadline = time.monotonic() + time_limit_s

    def worker(offset: int) -> None:
        nonlocal issued
        while True:
            with lock:
                if issued >= requests or time.monotonic() > deadline:
                    return
                issued += 1
                query = queries[(issued + offset) % len(queries)]
            started = time.perf_counter()
            try:
                search(model, index, query, k=k)
            except Exception as exc:  # counted and reported: a load test must not stop at the first
                with lock:
                    errors.append(f"{exc.__class__.__name__}: {exc}")
                continue
            with lock:
                latencies.append((time.perf_counter() - started) * 1000)

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="load") as pool:
        for i in range(threads):
            pool.submit(worker, i)
    seconds = time.perf_counter() - started
    values = np.array(latencies) if latencies else np.zeros(1)
    done = len(latencies)
    return LoadReport(
        threads=threads,
        requests=done + len(errors),
        errors=len(errors),
        seconds=seconds,
        throughput_per_s=done / seconds if seconds > 0 else 0.0,
        p50_ms=float(np.percentile(values, 50)),
        p95_ms=float(np.percentile(values, 95)),
        max_ms=float(values.max()),
        first_error=errors[0] if errors else "",
    )
