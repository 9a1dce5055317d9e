"""``python -m benchmarks.store_bench [--quick] [--json FILE] [--work DIR]``: the sharded index's write rate and search.

Measured in one run through the product's own write path, as a build writes (issue 27, "Measure"): for each
configuration, `Store(db, servers)`, `open_build_index(store, ModelSpec(), 512, "uniform:8", None, shards)`,
`writer_for(index)`, then `writer.put` once per video of 8 frames (a real build's nine metadata keys), then
`writer.close()`, `index.mark_built()` and, for a sharded index, `index.close()`.

1. **write rate**: records/s from just before the first put to the end of `writer.close()` (every record
   written; `finish_s` is the mark-built and close after it), 20,000 records, each configuration into a fresh
   folder or fresh ``chroma run`` servers: one server with 1 (the one-writer rate), 2 and 4 shards; two
   servers with 2 and 4 shards (shard i on server i mod 2); embedded (a fresh folder, shard i in
   ``shard-0i/`` written by a process of its own) with 1, 2 and 4 shards. Ratios against the first, and
   against the one-shard rate of the same store (servers or embedded); the per-shard rate and the
   Kinetics-700 train projection at ``uniform:8`` (4.4M frames ÷ the rate);
2. **search**: 100,000 records built the same way into an embedded index of 1 shard and one of 4 shards,
   each opened with `open_index(Store(db))`; `index.query(q, 10)` latency p50/p95 over 100 queries
   (after warm-up, the two indexes in turn for each query) and recall@10 against the exact cosine top 10
   (a matrix product over the unit vectors).

Vectors are CLIP-like: unit 512-d vectors around 100 cluster centres that share a common direction (as CLIP's
image embeddings do), a video's offset from its centre and a frame's from its video; queries are drawn near
the centres. They are generated once, before any timing. Targets: on 8 cores or more, each sharded
configuration ≥ 0.7 × shards × its store's one-shard rate; on fewer, 2 shards ≥ 1.6 × the one-writer rate
(two servers; and embedded against embedded with 1 shard); search p50 with 4 shards ≤ 1.3 × one shard;
recall@10 ≥ 0.99. ``--quick``: tiny sizes, checks that everything runs (targets reported, not asserted).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from benchmarks.ray_bench import _cpu_seconds, _frame_metadata, chroma_server

if TYPE_CHECKING:
    from core.store.catalog import Store

ROOT = Path(__file__).resolve().parents[1]
DIM = 512
FRAMES_PER_VIDEO = 8
STRATEGY = "uniform:8"
K = 10
K700_TRAIN_FRAMES = 4.4e6  # Kinetics-700 train at uniform:8 (545k clips × 8 frames)
# Spreads of the clustered vectors (norms of the unit offsets added before normalising): centres share a
# common direction (cosine about 0.5 between centres); a frame is about 0.7 from its centre, 0.93 from its
# video's other frames.
CENTRE_SPREAD, VIDEO_SPREAD, FRAME_SPREAD, QUERY_SPREAD = 1.0, 0.8, 0.4, 0.8


@dataclass(frozen=True)
class Config:
    name: str
    servers: int  # 0: embedded
    shards: int


CONFIGS = (
    Config("one server, 1 shard", 1, 1),
    Config("one server, 2 shards", 1, 2),
    Config("one server, 4 shards", 1, 4),
    Config("two servers, 2 shards", 2, 2),
    Config("two servers, 4 shards", 2, 4),
    Config("embedded, 1 shard", 0, 1),
    Config("embedded, 2 shards", 0, 2),
    Config("embedded, 4 shards", 0, 4),
)


@dataclass(frozen=True)
class Sizes:
    write_records: int = 20_000
    search_records: int = 100_000
    queries: int = 100
    warmup: int = 5
    clusters: int = 100


QUICK = Sizes(write_records=1_000, search_records=3_000, queries=10, warmup=2, clusters=10)


def _unit(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


def _offsets(rng: np.random.Generator, count: int) -> np.ndarray:
    return _unit(rng.standard_normal((count, DIM), dtype=np.float32))


def clustered_vectors(count: int, clusters: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """`count` unit frame vectors (8 per video, in video order) and the cluster centres they are drawn around."""
    rng = np.random.default_rng(seed)
    common = _offsets(rng, 1)
    centres = _unit(common + CENTRE_SPREAD * _offsets(rng, clusters))
    videos = -(-count // FRAMES_PER_VIDEO)
    video_vectors = _unit(centres[rng.integers(clusters, size=videos)] + VIDEO_SPREAD * _offsets(rng, videos))
    frames = video_vectors[np.arange(count) // FRAMES_PER_VIDEO]
    for start in range(0, count, 10_000):  # in slices: no float64 copy of the whole set
        stop = min(count, start + 10_000)
        frames[start:stop] = _unit(frames[start:stop] + FRAME_SPREAD * _offsets(rng, stop - start))
    return frames, centres


def query_vectors(centres: np.ndarray, count: int, seed: int = 1) -> np.ndarray:
    """Unit query vectors near randomly chosen cluster centres."""
    rng = np.random.default_rng(seed)
    return _unit(centres[rng.integers(len(centres), size=count)] + QUERY_SPREAD * _offsets(rng, count))


def record_metadata(records: int) -> list[list[dict[str, Any]]]:
    """The frame metadata of each video of `records` records, as a build writes it (8 frames a video)."""
    videos = -(-records // FRAMES_PER_VIDEO)
    return [[_frame_metadata(v, f) for f in range(FRAMES_PER_VIDEO)] for v in range(videos)]


def record_id(meta: dict[str, Any]) -> str:
    return f"{meta['video_id']}:{meta['frame_index']}"  # as the writer makes ids


def _busy_jiffies() -> tuple[int, int]:
    """(busy, total) CPU time of the whole machine so far, from /proc/stat (0, 0 where there is none)."""
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    except (OSError, ValueError, IndexError):
        return 0, 0
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return sum(fields) - idle, sum(fields)


def write_index(store: Store, vectors: np.ndarray, videos: Sequence[list[dict[str, Any]]], shards: int,
                server_pids: Sequence[int] = ()) -> dict[str, Any]:  # fmt: skip
    """Write `videos` (and their rows of `vectors`) through the product's build path; the timings."""
    from core.requests import ModelSpec
    from core.store.build_target import PendingShardedIndex, open_build_index
    from core.store.writer import writer_for

    records = sum(len(metas) for metas in videos)
    index = open_build_index(store, ModelSpec(), DIM, STRATEGY, None, shards)
    try:
        writer = writer_for(index)
        writer.start()
        server_cpu = sum(_cpu_seconds(pid) for pid in server_pids)
        busy, total = _busy_jiffies()
        started = time.perf_counter()
        try:
            for video, metas in enumerate(videos):
                first = video * FRAMES_PER_VIDEO
                writer.put(metas, vectors[first : first + len(metas)])
        finally:
            writer.close()
        written = time.perf_counter()
        busy_now, total_now = _busy_jiffies()
        busy, total = busy_now - busy, total_now - total
        server_cpu = sum(_cpu_seconds(pid) for pid in server_pids) - server_cpu
        if writer.error is not None:
            raise RuntimeError("the index writer failed") from writer.error
        index.mark_built()
    finally:
        if isinstance(index, PendingShardedIndex):
            index.close()
    seconds = written - started
    return {
        "records": records,
        "seconds": seconds,
        "records_per_s": records / seconds,
        "finish_s": time.perf_counter() - written,
        "machine_busy": busy / total if total else None,  # every core's share busy while writing (all processes)
        "server_cpu_s": server_cpu if server_pids else None,
    }


def _count(store: Store) -> int:
    from core.store.catalog import open_index

    return open_index(store).count()


def write_config(config: Config, vectors: np.ndarray, videos: Sequence[list[dict[str, Any]]],
                 work: Path) -> dict[str, Any]:  # fmt: skip
    """One configuration's write rate, into a fresh folder or fresh servers (stopped after)."""
    from core.requests import ChromaServer
    from core.store.catalog import Store
    from core.store.chroma import forget_embedded

    folder = work / f"write-{config.name.replace(', ', '-').replace(' ', '_')}"
    folder.mkdir(parents=True)
    with contextlib.ExitStack() as stack:
        servers, pids = [], []
        for i in range(config.servers):
            (folder / f"server-{i}").mkdir()
            port, pid = stack.enter_context(chroma_server(folder / f"server-{i}" / "data"))
            servers.append(ChromaServer("127.0.0.1", port))
            pids.append(pid)
        store = Store(folder / "db", servers)
        result = write_index(store, vectors, videos, config.shards, pids)
        count = _count(store)
    for path in [folder / "db", *(store.shard_folder(i) for i in range(config.shards))]:
        forget_embedded(path)  # this process lets the folder's vectors go
    if count != result["records"]:
        raise RuntimeError(f"{config.name}: {count} records in the index, {result['records']} written")
    return {**asdict(config), **result}


def write_rates(sizes: Sizes, vectors: np.ndarray, videos: Sequence[list[dict[str, Any]]],
                work: Path) -> list[dict[str, Any]]:  # fmt: skip
    # Untimed: this process's first HTTP client and first collection (lazy imports, connection set-up) would
    # otherwise count against the first configuration, the one every ratio is taken against.
    write_config(Config("warm-up", 1, 1), vectors[: 8 * FRAMES_PER_VIDEO], videos[:8], work)
    rows: list[dict[str, Any]] = []
    for config in CONFIGS:
        row = write_config(config, vectors[: sizes.write_records], videos, work)
        # the one-shard rate of the same store: one server (the one-writer rate), or embedded
        own = next((r for r in rows if r["shards"] == 1 and (r["servers"] == 0) == (config.servers == 0)), row)
        row["ratio_to_first"] = row["records_per_s"] / (rows[0] if rows else row)["records_per_s"]
        row["ratio_to_own_one_shard"] = row["records_per_s"] / own["records_per_s"]
        row["per_shard_records_per_s"] = row["records_per_s"] / config.shards
        row["k700_train_hours"] = K700_TRAIN_FRAMES / row["records_per_s"] / 3600
        rows.append(row)
        print(f"{config.name:<24} {row['records_per_s']:8.0f} records/s  ({row['seconds']:.1f} s)", flush=True)
    return rows


def search(sizes: Sizes, vectors: np.ndarray, centres: np.ndarray, videos: Sequence[list[dict[str, Any]]],
           work: Path) -> dict[str, Any]:  # fmt: skip
    """Search latency and recall@10 of an embedded index of `search_records` records, 1 shard against 4."""
    from core.runtime import usable_cores
    from core.store.catalog import Store, open_index

    n = sizes.search_records
    videos = videos[: -(-n // FRAMES_PER_VIDEO)]
    queries = query_vectors(centres, sizes.warmup + sizes.queries)
    ids = np.array([record_id(meta) for metas in videos for meta in metas][:n], dtype=object)
    similarities = queries[sizes.warmup :] @ vectors[:n].T  # exact cosine: unit vectors
    exact = [set(ids[np.argpartition(-row, K)[:K]]) for row in similarities]
    out: dict[str, Any] = {"records": n, "queries": sizes.queries, "warmup": sizes.warmup, "k": K}
    indexes = {}
    for shards in (1, 4):
        store = Store(work / f"search-{shards}-shard")
        build = write_index(store, vectors[:n], videos, shards)
        indexes[shards] = open_index(Store(work / f"search-{shards}-shard"))
        if indexes[shards].count() != n:
            raise RuntimeError(f"{shards} shards: {indexes[shards].count()} records in the index, {n} written")
        out[f"{shards}_shard"] = {"build_records_per_s": build["records_per_s"], "build_s": build["seconds"]}
        print(f"search index, {shards} shard(s): built at {build['records_per_s']:.0f} records/s", flush=True)
    for q in queries[: sizes.warmup]:
        for index in indexes.values():
            index.query(q, K)
    times: dict[int, list[float]] = {1: [], 4: []}
    recalls: dict[int, list[float]] = {1: [], 4: []}
    for q, truth in zip(queries[sizes.warmup :], exact, strict=True):
        for shards, index in indexes.items():  # the two in turn: the same moment's machine for each
            began = time.perf_counter()
            hits = index.query(q, K)
            times[shards].append(1000 * (time.perf_counter() - began))
            recalls[shards].append(len({hit[0] for hit in hits} & truth) / K)
    for shards in (1, 4):
        out[f"{shards}_shard"].update(
            p50_ms=float(np.percentile(times[shards], 50)),
            p95_ms=float(np.percentile(times[shards], 95)),
            recall_at_10=float(np.mean(recalls[shards])),
        )
    out["p50_ratio"] = out["4_shard"]["p50_ms"] / out["1_shard"]["p50_ms"]
    # What the machine allows: each shard's own query p50; run side by side on `cores` cores, the four cannot
    # take less than their sum over the cores (Chroma's cost per query call barely shrinks with its size).
    sharded = indexes[4]
    per_shard = []
    for shard in getattr(sharded, "shards", []):
        shard_times = []
        for q in queries[sizes.warmup :]:
            began = time.perf_counter()
            shard.query(q, K)
            shard_times.append(1000 * (time.perf_counter() - began))
        per_shard.append(float(np.percentile(shard_times, 50)))
    cores = min(4, usable_cores())
    out["per_shard_p50_ms"] = per_shard
    out["parallel_floor_ratio"] = sum(per_shard) / cores / out["1_shard"]["p50_ms"] if per_shard else None
    return out


def _target(figure: str, value: float, target: str, met: bool) -> dict[str, Any]:
    return {"figure": figure, "value": value, "target": target, "met": met}


def targets(rows: list[dict[str, Any]], found: dict[str, Any], cores: int) -> list[dict[str, Any]]:
    """Each target with its value and whether it is met; the write targets by the machine's cores."""
    by_name = {row["name"]: row for row in rows}
    out = []
    if cores >= 8:
        for row in rows:
            if row["shards"] > 1:
                value = row["ratio_to_own_one_shard"] / row["shards"]
                base = "one server, 1 shard" if row["servers"] else "embedded, 1 shard"
                out.append(_target(f"{row['name']}: rate ÷ ({row['shards']} × {base})", value, "≥ 0.7", value >= 0.7))
    else:
        pairs = (("two servers, 2 shards", "one server, 1 shard"), ("embedded, 2 shards", "embedded, 1 shard"))
        for name, base in pairs:
            value = by_name[name]["records_per_s"] / by_name[base]["records_per_s"]
            out.append(_target(f"{name} ÷ {base} (one writer)", value, "≥ 1.6", value >= 1.6))
    ratio = found["p50_ratio"]
    out.append(_target("search p50, 4 shards ÷ 1 shard", ratio, "≤ 1.3", ratio <= 1.3))
    for shards in (4, 1):
        recall = found[f"{shards}_shard"]["recall_at_10"]
        what = "4 shards merged" if shards == 4 else "1 shard"
        out.append(_target(f"recall@10 against exact cosine, {what}", recall, "≥ 0.99", recall >= 0.99))
    return out


def machine() -> dict[str, Any]:
    import chromadb

    from core.runtime import cpu_model, usable_cores

    cpu = cpu_model()
    return {
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "usable_cores": usable_cores(),
        "load_average_at_start": list(os.getloadavg()),
        "python": platform.python_version(),
        "chromadb": chromadb.__version__,
        "platform": platform.platform(),
    }


def report(results: dict[str, Any]) -> None:
    print(f"\n{'configuration':<24} {'records/s':>9} {'÷ first':>8} {'÷ 1 shard':>9} {'per shard':>9} {'K700 h':>7}")
    for row in results["writes"]:
        print(
            f"{row['name']:<24} {row['records_per_s']:9.0f} {row['ratio_to_first']:8.2f} "
            f"{row['ratio_to_own_one_shard']:9.2f} {row['per_shard_records_per_s']:9.0f} {row['k700_train_hours']:7.2f}"
        )
    found = results["search"]
    for shards in (1, 4):
        part = found[f"{shards}_shard"]
        print(
            f"search, {found['records']} records, {shards} shard(s): p50 {part['p50_ms']:.2f} ms, "
            f"p95 {part['p95_ms']:.2f} ms, recall@10 {part['recall_at_10']:.4f}"
        )
    if found.get("parallel_floor_ratio") is not None:
        each = ", ".join(f"{ms:.2f}" for ms in found["per_shard_p50_ms"])
        print(f"each shard alone: p50 {each} ms; on this machine's cores the 4 cannot beat "
              f"{found['parallel_floor_ratio']:.2f}× one shard")  # fmt: skip
    print(f"targets ({results['targets_basis']}):")
    for row in results["targets"]:
        verdict = "met" if row["met"] else "NOT met"
        print(f"  {row['figure']:<58} {row['value']:8.3f}  target {row['target']}  {verdict}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes: checks that it runs")
    parser.add_argument("--json", default=str(ROOT / "benchmarks" / "results" / "store.json"), help="results file")
    parser.add_argument("--work", help="working folder, kept (default: a temporary one, removed)")
    args = parser.parse_args(argv)
    from core.runtime import configure_runtime

    configure_runtime()
    sizes = QUICK if args.quick else Sizes()
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="clip-explorer-store-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    results: dict[str, Any] = {"machine": machine(), "sizes": asdict(sizes), "quick": args.quick}
    print(f"machine: {json.dumps(results['machine'])}", flush=True)
    try:
        vectors, centres = clustered_vectors(max(sizes.write_records, sizes.search_records), sizes.clusters)
        videos = record_metadata(len(vectors))
        results["writes"] = write_rates(sizes, vectors, videos[: -(-sizes.write_records // FRAMES_PER_VIDEO)], work)
        results["search"] = search(sizes, vectors, centres, videos, work)
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)
    cores = results["machine"]["usable_cores"]
    results["targets_basis"] = f"{cores} cores: " + ("≥ 8" if cores >= 8 else "fewer than 8")
    results["targets"] = targets(results["writes"], results["search"], cores)
    results["load_average_at_end"] = list(os.getloadavg())
    results["seconds"] = time.perf_counter() - started
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(results, indent=2))
    report(results)
    print(f"written to {args.json} in {results['seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main())
