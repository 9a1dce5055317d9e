"""Ray build scenarios, run by tests/test_ray.py as a script inside a network and PID namespace of their own.

Ray binds to the machine's interface address even when told 127.0.0.1; in a fresh network namespace the
only interface is the loopback, so every Ray and Chroma process here talks to 127.0.0.1 alone, and the
PID namespace ends whatever they leave behind when this script exits. A scenario writes what it saw as
JSON (summaries, the index's records, node ids) for the test to compare with a local-engine build.

    python tests/ray_scenarios.py ARGS.json     (ARGS: scenario, videos, many_videos, spec, work, result)
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RAY_EXE = Path(sys.executable).parent / "ray"
STARTED = time.monotonic()
MARKS: dict[str, float] = {}  # seconds since the start at each step, for a test that got slow


def mark(step: str) -> None:
    MARKS[step] = round(time.monotonic() - STARTED, 2)


def contents_of(index: Any) -> dict[str, Any]:
    """Every record of an index (complete or not), as JSON."""
    contents = index.contents(complete_only=False)
    return {"ids": contents.ids, "metadatas": contents.extra, "embeddings": contents.embeddings.tolist()}


def counts_of(index: Any) -> dict[str, list[int]]:
    return {video: list(pair) for video, pair in index.video_frame_counts().items()}


def request_for(args: dict[str, Any], **fields: Any) -> Any:
    from core.model.embed import ModelSpec
    from core.requests import BuildRequest

    fields.setdefault("videos", args["videos"])
    spec = ModelSpec.from_metadata(args["spec"])
    return BuildRequest(spec=spec, frames="uniform:3", device="cpu", engine="ray", **fields)


def server_index(server: Any) -> Any:
    from core.store.catalog import open_index
    from core.store.index import connect

    return open_index(connect("unused", server))


def interrupted_cli_build(args: dict[str, Any], work: Path) -> dict[str, Any]:
    """`python -m core build --engine ray` into an embedded folder, given Ctrl-C (SIGINT to its process group,
    as a terminal sends it) once its progress bar shows the first video done."""
    spec = args["spec"]
    command = [sys.executable, "-m", "core", "build", "--videos", args["many_videos"], "--db", str(work / "db-cli"),
               "--output", str(work / "out-cli"), "--model", spec["model_name"], "--model-config",
               spec["model_config"], "--pretrained", spec["pretrained"], "--frames", "uniform:3", "--batch-size",
               "3", "--device", "cpu", "--engine", "ray", "--json", str(work / "cli-summary.json")]  # fmt: skip
    proc = subprocess.Popen(command, cwd=ROOT, stderr=subprocess.PIPE, start_new_session=True)
    assert proc.stderr is not None
    seen = b""
    while not re.search(rb"\| +[1-9]\d*/\d+ \[", seen):  # tqdm's "| 1/120 [": a video is done
        chunk = os.read(proc.stderr.fileno(), 65536)
        if not chunk:
            break
        seen += chunk
    os.killpg(proc.pid, signal.SIGINT)
    seen += proc.stderr.read()
    returncode = proc.wait(timeout=120)
    mark("interrupted cli build")
    result: dict[str, Any] = {"returncode": returncode, "stderr": seen.decode(errors="replace")[-3000:]}
    if (work / "cli-summary.json").exists():
        from core.store.catalog import open_index
        from core.store.index import connect

        result["summary"] = json.loads((work / "cli-summary.json").read_text())
        result["counts"] = counts_of(open_index(connect(work / "db-cli")))
    return result


def local_scenario(args: dict[str, Any], work: Path) -> dict[str, Any]:
    """A local Ray instance: the CLI's build interrupted by Ctrl-C (the engine starts and stops its own
    instance); then, on an instance this script starts (2 CPUs), a build into a Chroma server cancelled after
    its first video, the same build again (it completes the index), and a build into an embedded folder."""
    import ray

    from core.engines.build import run_build
    from core.engines.ray_engine import worker_env
    from core.store.catalog import Store, open_index
    from core.store.index import ChromaServer
    from tests.helpers import ChromaProcess, free_port

    result: dict[str, Any] = {"cli": interrupted_cli_build(args, work)}
    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="ERROR", runtime_env=worker_env())
    chroma = ChromaProcess(work / "chroma", free_port())
    chroma.start()
    mark("chroma and ray started")
    try:
        server = ChromaServer(host="127.0.0.1", port=chroma.port)
        # One video per encoding batch, so that progress (and the cancel it triggers) comes video by video.
        request = request_for(args, db=str(work / "unused-db"), output=str(work / "out-server"), servers=(server,),
                              batch_size=3)  # fmt: skip
        cancel = threading.Event()
        seen: list[int] = []

        def stop_after_first(progress: Any) -> None:
            if not progress.counting:  # scanning, starting: no counts yet
                return
            seen.append(progress.videos_done)
            if progress.videos_done >= 1:
                cancel.set()

        first = run_build(request, progress=stop_after_first, cancel=cancel)
        mark("cancelled build")
        after_cancel = counts_of(server_index(server))
        second = run_build(request)
        mark("second build")
        result.update({
            "first": first.to_json(),
            "progress": seen,
            "after_cancel": after_cancel,
            "second": second.to_json(),
            "server": contents_of(server_index(server)),
        })  # fmt: skip
    finally:
        chroma.stop()
    # Sharded: each shard written by a writer process of its own, as with the local engine.
    embedded = run_build(request_for(args, db=str(work / "db"), output=str(work / "out-embedded"), shards=2))
    mark("embedded build")
    ray.shutdown()
    result["embedded_summary"] = embedded.to_json()
    index = open_index(Store(work / "db"))
    result["embedded"] = contents_of(index)
    result["embedded_shards"] = [shard.count for shard in index.info().shards]
    return result


def start_node(args: list[str], log: Path) -> subprocess.Popen:
    """`ray start ... --block`, which stays in the foreground and stops its processes on SIGTERM; returns
    once its log says the node is up."""
    with log.open("w") as out:
        proc = subprocess.Popen([str(RAY_EXE), "start", *args, "--num-cpus", "1", "--block",
                                 "--disable-usage-stats"], stdout=out, stderr=subprocess.STDOUT)  # fmt: skip
    deadline = time.monotonic() + 90
    while "Ray runtime started" not in log.read_text():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"ray start failed: {log.read_text()[-2000:]}")
        time.sleep(0.1)
    return proc


def stop_node(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)


def encoder_pids() -> list[int]:
    """The processes of the encoding actors (Ray names them after the class). /proc is this PID namespace's."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().decode(errors="replace")
            except OSError:
                continue
            if cmdline.startswith("ray::") and "FrameEncoder" in cmdline:
                found.append(int(entry.name))
    return found


def cluster_scenario(args: dict[str, Any], work: Path) -> dict[str, Any]:
    """A two-node cluster (`ray start`, one CPU each) joined with an address; the encoding actor is killed
    when the first video is done; the build (or, if Ray gave up, a rerun) must still end in an exact index.
    `progress_after_kill` records the videos done by each progress report after the kill."""
    import ray

    from core.engines.build import run_build
    from core.store.index import ChromaServer
    from tests.helpers import ChromaProcess, free_port

    port = free_port()
    address = f"127.0.0.1:{port}"
    head = start_node(["--head", "--port", str(port), "--include-dashboard=false"], work / "head.log")
    nodes = [head]
    chroma = ChromaProcess(work / "chroma", free_port())
    try:
        nodes.append(start_node(["--address", address], work / "worker.log"))
        mark("cluster started")
        chroma.start()
        mark("chroma started")
        server = ChromaServer(host="127.0.0.1", port=chroma.port)
        # The videos ten times over, one video per encoding batch: when the first video is done, most of the
        # encoding is still to come, so the kill lands mid-build.
        request = request_for(args, videos=args["many_videos"], db=str(work / "unused-db"),
                              output=str(work / "out-cluster"), servers=(server,), ray_address=address,
                              batch_size=3)  # fmt: skip
        killed: list[int] = []
        after_kill: list[int] = []

        def kill_encoder_once(progress: Any) -> None:
            if killed:
                after_kill.append(progress.videos_done)
            elif progress.videos_done >= 1:
                for pid in encoder_pids():
                    os.kill(pid, signal.SIGKILL)
                    killed.append(pid)
                after_kill.append(progress.videos_done)

        result: dict[str, Any] = {}
        try:
            result["first"] = run_build(request, progress=kill_encoder_once).to_json()
        except Exception as exc:  # Ray gave up on the build: the rerun must complete the index
            result["first_error"] = f"{exc.__class__.__name__}: {str(exc)[:500]}"
            result["after_failure"] = counts_of(server_index(server))
            result["rerun"] = run_build(request).to_json()
        mark("build")
        result["killed"] = killed
        result["progress_after_kill"] = after_kill
        ray.init(address=address, logging_level="ERROR")
        result["cluster_nodes"] = [n["NodeID"] for n in ray.nodes() if n["Alive"]]
        ray.shutdown()
        mark("nodes listed")
        result["server"] = contents_of(server_index(server))
        return result
    finally:
        chroma.stop()
        mark("chroma stopped")
        for node in reversed(nodes):
            stop_node(node)
            mark(f"node {len(nodes)} stopped")


def main() -> int:
    args = json.loads(Path(sys.argv[1]).read_text())
    sys.path.insert(0, str(ROOT))
    from core.runtime import configure_runtime

    configure_runtime()
    work = Path(args["work"])
    work.mkdir(parents=True, exist_ok=True)
    scenario = {"local": local_scenario, "cluster": cluster_scenario}[args["scenario"]]
    mark("imported")
    result = scenario(args, work)
    mark("stopped")
    Path(args["result"]).write_text(json.dumps({**result, "marks": MARKS}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
