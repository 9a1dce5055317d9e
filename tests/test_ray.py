"""The Ray engine: the same index as the local engine, on a local Ray instance and on a two-node cluster, with a
real `chroma run` server; cancel, a killed actor and reruns; and its refusals.

Ray scenarios run in tests/ray_scenarios.py under `unshare` (a network namespace with only the loopback, and
a PID namespace that ends every process they start), because Ray binds to the machine's interface address.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from core.engines.build import run_build
from core.engines.ray_engine import RayEngineError
from core.ground import UserError
from core.requests import BuildRequest
from core.store.catalog import open_index
from core.store.index import connect
from tests.helpers import ROOT, build_into

SCENARIOS = ROOT / "tests" / "ray_scenarios.py"


def _namespaces_problem() -> str:
    """'' when this process may make network and PID namespaces (root, or CI); else why not."""
    try:
        probe = subprocess.run(
            ["unshare", "--net", "--pid", "--fork", "--mount-proc", "sh", "-c", "ip link set lo up"],
            capture_output=True, text=True, timeout=30,
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unshare is not available ({exc.__class__.__name__})"
    return "" if probe.returncode == 0 else f"unshare is not permitted here ({probe.stderr.strip()[:120]})"


def _ray_problem() -> str:
    try:
        import ray  # noqa: F401
    except ImportError:
        return "Ray is not installed (pip install -r requirements-ray.txt)"
    return ""


@pytest.fixture(scope="module")
def namespaces() -> None:
    problem = _ray_problem() or _namespaces_problem()
    if problem:
        pytest.skip(problem)


def many_videos(video_root: Path, folder: Path, copies: int = 10) -> Path:
    """The generated videos ten times over under other names (hard links where possible): a build long enough
    to be interrupted after its first video, whatever the machine's speed."""
    for video in sorted(video_root.rglob("*.mp4")):
        for i in range(copies):
            target = folder / video.parent.name / f"{video.stem}_{i}{video.suffix}"
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(video, target)
            except OSError:
                shutil.copyfile(video, target)
    return folder


def run_scenario(name: str, tmp_path: Path, video_root: Path, spec: Any, timeout: int = 300) -> dict[str, Any]:
    work = tmp_path / name
    work.mkdir()
    args = {"scenario": name, "videos": str(video_root), "many_videos": str(many_videos(video_root, work / "many")),
            "spec": spec.to_metadata(), "work": str(work), "result": str(work / "result.json")}  # fmt: skip
    (work / "args.json").write_text(json.dumps(args))
    token = work / "ray-token"  # the cluster's token here, not in ~/.ray
    token.write_text(secrets.token_hex(32))
    # Ray's sessions, sockets and "latest cluster" file in a folder of this scenario's own (a short path: Unix
    # socket names are limited to 107 bytes), not in the machine's /tmp/ray.
    ray_tmp = tempfile.mkdtemp(prefix="ray-")
    # No PYTHONPATH and another working folder: Ray's workers get the project's code from the engine alone. No
    # drain when a node stops: Ray Data's detached actors would hold the head for its 30 s drain timeout.
    env = {**{k: v for k, v in os.environ.items() if k != "PYTHONPATH"}, "RAY_AUTH_MODE": "token",
           "RAY_AUTH_TOKEN_PATH": str(token), "RAY_USAGE_STATS_ENABLED": "0", "RAY_TMPDIR": ray_tmp,
           "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0"}  # fmt: skip
    command = f"ip link set lo up && {sys.executable} {SCENARIOS} {work / 'args.json'}"
    try:
        # --kill-child: if this test times out and kills unshare, the namespace's first process, and with it
        # every process of the namespace, ends too.
        done = subprocess.run(
            ["unshare", "--net", "--pid", "--fork", "--mount-proc", "--kill-child", "sh", "-c", command],
            cwd=work, env=env, capture_output=True, text=True, timeout=timeout,
        )  # fmt: skip
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads((work / "result.json").read_text())


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory, video_root: Path, tiny_model: Any) -> dict[str, Any]:
    """The same videos built by the local engine (the records the Ray engine must give)."""
    work = tmp_path_factory.mktemp("ray-reference")
    build_into(video_root, work / "db", work / "out", model=tiny_model, frames="uniform:3", device="cpu")
    contents = open_index(connect(work / "db")).contents(complete_only=False)
    return {"ids": contents.ids, "metadatas": contents.extra, "embeddings": contents.embeddings.tolist(),
            "output": str((work / "out").resolve())}  # fmt: skip


def assert_same_records(reference: dict[str, Any], built: dict[str, Any], output: Path) -> None:
    """Same ids and metadata (thumbnail paths in their own output folder), embeddings within 1e-5, and the
    same thumbnail bytes."""
    assert built["ids"] == reference["ids"]
    assert len(built["ids"]) == 36  # 12 videos × 3 frames
    np.testing.assert_allclose(np.array(built["embeddings"]), np.array(reference["embeddings"]), rtol=0, atol=1e-5)
    for ours, theirs in zip(built["metadatas"], reference["metadatas"], strict=True):
        ours_path = Path(ours.pop("frame_path")).relative_to(output.resolve())
        theirs_path = Path(theirs["frame_path"]).relative_to(reference["output"])
        assert ours == {k: v for k, v in theirs.items() if k != "frame_path"}
        assert ours_path == theirs_path
        assert (output / ours_path).read_bytes() == (Path(reference["output"]) / theirs_path).read_bytes()


def assert_only_complete(counts: dict[str, list[int]]) -> None:
    assert all(have == want for have, want in counts.values()), counts


def test_local_instance_builds_the_same_index_stops_on_ctrl_c_and_cancel_and_resumes(
    namespaces: None, tmp_path: Path, video_root: Path, tiny_spec: Any, reference: dict[str, Any]
) -> None:
    result = run_scenario("local", tmp_path, video_root, tiny_spec)
    # Ctrl-C: the CLI stops with 130 and a summary saying so; what it wrote is whole videos only.
    cli = result["cli"]
    assert cli["returncode"] == 130, cli["stderr"]
    assert "Interrupted: run the same command again to finish" in cli["stderr"]
    summary = cli["summary"]
    assert summary["cancelled"] and summary["engine"] == "ray" and summary["nodes"] == 1
    assert 1 <= summary["videos_indexed"] < 120 and len(cli["counts"]) == summary["videos_indexed"]
    assert_only_complete(cli["counts"])
    first, second = result["first"], result["second"]
    # Cancelled after its first video: what it wrote is whole videos only, and the same build completes it.
    assert first["cancelled"] and 1 <= first["videos_indexed"] < 12, first
    assert first["engine"] == "ray" and first["nodes"] == 1
    assert len(result["after_cancel"]) == first["videos_indexed"]
    assert_only_complete(result["after_cancel"])
    assert result["progress"][0] == 0 and result["progress"][1] >= 1
    assert not second["cancelled"] and second["videos_already_indexed"] == first["videos_indexed"]
    assert second["videos_indexed"] == 12 - first["videos_indexed"] and not second["skipped"]
    assert_same_records(reference, result["server"], tmp_path / "local" / "out-server")
    # An embedded folder with a local Ray instance, in 2 shards: the same records, in both shards.
    assert result["embedded_summary"]["videos_indexed"] == 12
    assert len(result["embedded_shards"]) == 2 and min(result["embedded_shards"]) > 0
    assert_same_records(reference, result["embedded"], tmp_path / "local" / "out-embedded")


def assert_same_as_sources(reference: dict[str, Any], built: dict[str, Any], copies: int = 10) -> None:
    """Records of the videos ten times over (`many_videos`): every copy's frames are its source's, embeddings
    within 1e-5, metadata the same but for the copy's own id and paths; every video whole, nothing twice."""
    by_id = {rid: i for i, rid in enumerate(reference["ids"])}
    assert len(built["ids"]) == len(set(built["ids"])) == copies * len(reference["ids"])
    own = {"video_id", "video_path", "frame_path"}
    for rid, meta, vector in zip(built["ids"], built["metadatas"], built["embeddings"], strict=True):
        video, frame = rid.rsplit(":", 1)
        source = by_id[f"{video.rsplit('_', 1)[0]}:{frame}"]
        np.testing.assert_allclose(vector, reference["embeddings"][source], rtol=0, atol=1e-5)
        theirs = reference["metadatas"][source]
        assert {k: v for k, v in meta.items() if k not in own} == {k: v for k, v in theirs.items() if k not in own}
        assert meta["video_id"] == video and Path(meta["frame_path"]).is_file()


def test_two_node_cluster_uses_both_nodes_and_survives_a_killed_actor(
    namespaces: None, tmp_path: Path, video_root: Path, tiny_spec: Any, reference: dict[str, Any]
) -> None:
    result = run_scenario("cluster", tmp_path, video_root, tiny_spec)
    assert len(result["killed"]) == 1, result  # one encoding actor, killed once, after the first video
    final = result.get("rerun") or result["first"]
    if "first_error" in result:  # Ray gave up: what it wrote was whole videos, and the rerun finished the rest
        assert_only_complete(result["after_failure"])
    else:  # Ray restarted the actor and retried its batch: the build itself finished
        assert final["videos_indexed"] == 120 and not final["cancelled"]
        # Most videos were done after the kill: it came mid-build, not after the encoding was over.
        assert result["progress_after_kill"][0] < 60 <= result["progress_after_kill"][-1], result
    assert not final["skipped"]
    # Tasks and actors ran on both nodes of the cluster, as Ray reports them.
    assert len(result["cluster_nodes"]) == 2
    assert set(final["node_ids"]) == set(result["cluster_nodes"]) and final["nodes"] == 2
    assert_same_as_sources(reference, result["server"])


def test_an_embedded_folder_with_a_cluster_address_is_refused(tmp_path: Path, video_root: Path) -> None:
    request = BuildRequest(videos=str(video_root), db=str(tmp_path / "db"), output=str(tmp_path / "out"),
                           engine="ray", ray_address="127.0.0.1:6379")  # fmt: skip
    with pytest.raises(RayEngineError, match="Chroma server") as info:
        run_build(request)
    message = str(info.value)
    assert "\n" not in message and "--chroma-host" in message and "--ray-address" in message
    assert not (tmp_path / "db").exists() and not (tmp_path / "out").exists()  # refused before any work


def test_an_unknown_engine_is_refused(tmp_path: Path, video_root: Path) -> None:
    request = BuildRequest(videos=str(video_root), db=str(tmp_path / "db"), engine="spark")
    with pytest.raises(UserError, match="Unknown engine 'spark': use local or ray"):
        run_build(request)


def test_without_ray_the_cli_says_how_to_install_it(tmp_path: Path, video_root: Path, tiny_spec: Any) -> None:
    # A process in which `import ray` fails as it does where Ray is not installed (None in sys.modules makes
    # the import raise ImportError), whether or not this machine has Ray.
    script = "import sys; sys.modules['ray'] = None; from core.cli import main; sys.exit(main(sys.argv[1:]))"
    result = subprocess.run(
        [sys.executable, "-c", script, "build", "--videos", str(video_root), "--db", str(tmp_path / "db"),
         "--output", str(tmp_path / "out"), "--model-config", tiny_spec.config_path, "--pretrained",
         tiny_spec.pretrained, "--engine", "ray", "--quiet"],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines == [
        "error: The Ray engine needs Ray, which is not installed here: run pip install -r requirements-ray.txt "
        "in the project's folder (or use --engine local)."
    ]
    assert not (tmp_path / "db").exists()  # nothing written


def _rows(frames: list[tuple[str, int, int]], dim: int = 4) -> dict[str, np.ndarray]:
    """Encoded frame rows as the encoding stage hands them out: (video id, position, frames in the video);
    frames 0 is a skipped video. Each frame's vector is its position, its thumbnail its name."""
    thumbnails = np.empty(len(frames), dtype=object)
    thumbnails[:] = [f"{v}:{p}".encode() for v, p, _ in frames]
    return {
        "video_id": np.array([v for v, _, _ in frames], dtype=object),
        "position": np.array([p for _, p, _ in frames], dtype=np.int32),
        "frames": np.array([n for _, _, n in frames], dtype=np.int32),
        "reason": np.array(["unreadable" if n == 0 else "" for _, _, n in frames], dtype=object),
        "meta": np.array([json.dumps({"video_id": v, "frame_index": 10 * p}) for v, p, _ in frames], dtype=object),
        "notes": np.array(["[]"] * len(frames), dtype=object),
        "thumbnail": thumbnails,
        "vector": np.array([[float(p)] * dim for _, p, _ in frames], dtype=np.float32),
        "prepared_on": np.array(["node-a"] * len(frames), dtype=object),
        "encoded_on": np.array(["node-b"] * len(frames), dtype=object),
    }


def test_a_video_is_handed_out_once_whole_in_frame_order_whatever_the_rows_order_or_repeats() -> None:
    from core.engines.ray_engine import VideoAssembler

    assembler = VideoAssembler(embed_dim=4)
    # Video "a" (3 frames) arrives out of order over two batches, with a frame repeated (a task Ray ran twice).
    complete, skipped = assembler.add(_rows([("a", 2, 3), ("b", 0, 1), ("a", 0, 3), ("x", 0, 0)]))
    assert [v.video_id for v in complete] == ["b"] and skipped == [("x", "unreadable")]
    complete, skipped = assembler.add(_rows([("a", 0, 3), ("a", 1, 3), ("b", 0, 1), ("x", 0, 0)]))
    assert [v.video_id for v in complete] == ["a"] and skipped == []  # "b" and "x" are not handed out again
    video = complete[0]
    assert [m["frame_index"] for m in video.metadatas] == [0, 10, 20]
    assert video.thumbnails == [b"a:0", b"a:1", b"a:2"]
    assert video.vectors[:, 0].tolist() == [0.0, 1.0, 2.0]
    assert assembler.nodes == {"node-a", "node-b"} and not assembler.pending
    # A late repeat of a finished video's frame changes nothing.
    assert assembler.add(_rows([("a", 1, 3)])) == ([], [])


def test_the_encoding_plan_follows_the_cluster() -> None:
    from core.engines.ray_engine import plan_encoders

    request = BuildRequest(videos="v", engine="ray")
    gpu = plan_encoders({"CPU": 64, "GPU": 8}, [32, 32], request)
    assert (gpu.actors, gpu.device, gpu.gpus, gpu.precision, gpu.batch_size, gpu.threads) == (8, "cuda", 1, "fp16",
                                                                                               256, 1)  # fmt: skip
    cpu = plan_encoders({"CPU": 34}, [16, 16, 2], request)  # one CPU actor per node with a core to spare
    assert (cpu.actors, cpu.device, cpu.gpus, cpu.precision, cpu.batch_size, cpu.threads) == (3, "cpu", 0, "fp32",
                                                                                               32, None)  # fmt: skip
    assert plan_encoders({"CPU": 2}, [1, 1], request).actors == 1  # at least one, even on one-CPU nodes
    assert plan_encoders({"CPU": 64, "GPU": 8}, [32, 32], BuildRequest(videos="v", device="cpu")).device == "cpu"
    assert plan_encoders({"CPU": 4}, [4], request, actors=3, threads=1).actors == 3
    with pytest.raises(RayEngineError, match="no GPU"):
        plan_encoders({"CPU": 4}, [4], BuildRequest(videos="v", device="cuda"))
