"""The downloader, offline: a local HTTP server stands in for YouTube (yt-dlp's generic extractor
fetches direct links), serving good clips, a 404, a URL that fails once, and a truncated file."""

from __future__ import annotations

import http.server
import json
import os
import signal
import socketserver
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from core.kinetics.download import (
    LEGACY_MANIFEST,
    MANIFEST,
    Candidate,
    Manifest,
    classify,
    download_subset,
    read_manifest,
)
from core.media.frames import probe_video, video_codec
from core.media.samples import write_clip
from core.media.sources import scan_source
from core.media.transcode import ffmpeg_exe
from tests.helpers import ROOT


def _h264_source(path: Path, colour: tuple[int, int, int], seconds: int = 12) -> Path:
    raw = write_clip(path.with_suffix(".avi"), colour, n_frames=seconds * 10, size=(96, 64), fps=10)
    subprocess.run(
        [ffmpeg_exe(), "-loglevel", "error", "-y", "-i", str(raw), "-f", "lavfi", "-i", f"sine=duration={seconds}",
         "-c:v", "libx264", "-pix_fmt", "yuv420p", "-g", "10", "-c:a", "aac", "-shortest", "-movflags", "+faststart",
         str(path)],
        check=True,
    )  # fmt: skip
    raw.unlink()
    return path


class ClipServer:
    """Serves files from a folder; /missing* → 404, /flaky* → 500 on the first request, counts requests."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.requests: Counter[str] = Counter()
        server = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *args, **kwargs) -> None:
                super().__init__(*args, directory=str(root), **kwargs)

            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:
                name = self.path.split("?")[0].lstrip("/")
                server.requests[self.path.lstrip("/")] += 1  # query included: one counter per candidate URL
                if name.startswith("missing"):
                    self.send_error(404, "File not found")
                    return
                if name.startswith("flaky") and server.requests[self.path.lstrip("/")] == 1:
                    self.send_error(500, "Temporary failure")
                    return
                super().do_GET()

        class Server(socketserver.ThreadingTCPServer):
            def handle_error(self, request, client_address) -> None:
                pass  # clients (ffmpeg) hang up mid-transfer on purpose when they have what they need

        self.httpd = Server(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("served")
    for i, colour in enumerate([(220, 40, 30), (30, 60, 220), (40, 200, 60), (200, 50, 200)]):
        _h264_source(root / f"clip{i}.mp4", colour)
    _h264_source(root / "flaky.mp4", (230, 210, 40))
    whole = _h264_source(root / "whole.mp4", (40, 210, 220)).read_bytes()
    (root / "truncated.mp4").write_bytes(whole[: len(whole) // 2])
    srv = ClipServer(root)
    yield srv
    srv.close()


def _cand(server: ClipServer, label: str, name: str, yid: str, start: int = 2, end: int = 7) -> Candidate:
    return Candidate(
        label=label, youtube_id=yid, time_start=start, time_end=end, split="validate", url=f"{server.url}/{name}"
    )


def test_manifest_appends_and_the_last_record_wins(tmp_path: Path) -> None:
    legacy = {"version": 1, "clips": {"old": {"state": "done", "path": "a/old.mp4"}, "gone": {"state": "failed"}}}
    (tmp_path / LEGACY_MANIFEST).write_text(json.dumps(legacy))
    manifest = Manifest.load(tmp_path)  # an older manifest.json alone is carried over into the journal
    assert read_manifest(tmp_path) == legacy["clips"] and (tmp_path / MANIFEST).is_file()
    before = (tmp_path / MANIFEST).read_text()
    manifest.update("new", state="downloading", label="tackling")
    manifest.update("new", state="done", path="tackling/new.mp4")
    text = (tmp_path / MANIFEST).read_text()
    assert text.startswith(before) and len(text.splitlines()) == 4  # two lines appended, nothing rewritten
    assert read_manifest(tmp_path)["new"] == {**manifest.clips["new"], "state": "done", "label": "tackling"}
    with (tmp_path / MANIFEST).open("a") as fh:
        fh.write('{"clip": "new", "state": "fail')  # a process killed in the middle of a line
    assert read_manifest(tmp_path)["new"]["state"] == "done"
    again = Manifest.load(tmp_path)  # compacted: one line per clip, the torn line gone
    assert len((tmp_path / MANIFEST).read_text().splitlines()) == 3 and again.clips == read_manifest(tmp_path)
    # manifest.json, the file the CLI names and other tools read, is the same content as one document.
    assert json.loads((tmp_path / LEGACY_MANIFEST).read_text())["clips"] == again.clips


def test_failure_classification() -> None:
    assert classify("ERROR: [youtube] abc: Private video. Sign in if you've been granted access")
    assert classify("Video unavailable. This video has been removed by the uploader")
    assert classify("Unable to download webpage: HTTP Error 404: Not Found")
    assert not classify("Unable to download webpage: HTTP Error 500: Internal Server Error")
    assert not classify("Read timed out")


def test_download_replaces_retries_and_rejects(tmp_path: Path, server: ClipServer) -> None:
    candidates = {
        "juggling fire": [
            _cand(server, "juggling fire", "missing0.mp4", "gone00001"),  # 404: replaced by the next one
            _cand(server, "juggling fire", "clip0.mp4", "aaaaaaaaaaa"),
            _cand(server, "juggling fire", "clip1.mp4", "bbbbbbbbbbb"),
            _cand(server, "juggling fire", "clip2.mp4", "never-asked"),  # the class has its 2 by then
        ],
        "tackling": [
            _cand(server, "tackling", "truncated.mp4", "truncated01"),  # cut short: detected, not kept
            _cand(server, "tackling", "flaky.mp4", "flaky000001", start=0, end=10),  # 500 once: retried
            _cand(server, "tackling", "clip3.mp4", "ddddddddddd", start=5, end=10),
        ],
    }
    summary = download_subset(candidates, tmp_path / "videos", per_class=2, jobs=2, retries=2, backoff=0.05)
    assert summary.obtained == {"juggling fire": 2, "tackling": 2} and not summary.short_classes
    assert server.requests["clip2.mp4"] == 0  # never downloaded more than needed
    assert server.requests["flaky.mp4"] >= 2
    reasons = {f["clip"]: f["reason"] for f in summary.failures}
    assert "HTTP Error 404" in reasons["gone00001_000002_000007"]
    assert "truncated" in reasons["truncated01_000002_000007"]

    out = tmp_path / "videos"
    manifest = read_manifest(out)
    lines = (out / MANIFEST).read_text().splitlines()
    assert len(lines) == len(manifest)  # compacted at the end
    assert json.loads((out / LEGACY_MANIFEST).read_text())["clips"] == manifest  # the documented file, in step
    assert manifest["gone00001_000002_000007"]["state"] == "failed"
    assert manifest["gone00001_000002_000007"]["replaced_by"] in manifest
    assert manifest["flaky000001_000000_000010"]["attempts"] == 2
    done = {cid: e for cid, e in manifest.items() if e["state"] == "done"}
    assert len(done) == 4
    for cid, entry in done.items():
        path = out / entry["path"]
        assert path.is_file() and path.name == f"{cid}.mp4" and len(entry["sha256"]) == 64
        count, fps, _, _ = probe_video(path)
        expected = entry["time_end"] - entry["time_start"]
        assert abs(count / fps - expected) <= 0.2, (cid, count / fps)  # trimmed to the clip's seconds
        assert video_codec(path) in ("avc1", "h264")  # browser-playable
    assert not list(out.rglob("*.tmp*")) and not (out / ".partial").exists()

    # The annotations file feeds the pipeline directly.
    scan = scan_source(out)
    assert scan.layout == "annotations" and len(scan.videos) == 4 and not scan.skipped
    assert {v.label for v in scan.videos} == {"juggling fire", "tackling"}

    # Run again: nothing is downloaded twice, nothing asked again that is known to be gone.
    before = Counter(server.requests)
    again = download_subset(candidates, out, per_class=2, jobs=2, retries=2, backoff=0.05)
    assert again.total == 4 and server.requests == before


def test_resume_after_kill(tmp_path: Path, server: ClipServer) -> None:
    subset = {
        "classes": ["a", "b"],
        "per_class": 2,
        "candidates": {
            label: [
                {
                    "youtube_id": f"{label}{i:010d}",
                    "time_start": 1,
                    "time_end": 6,
                    "split": "x",
                    "url": f"{server.url}/clip{i}.mp4?for={label}{i}",
                }
                for i in range(4)
            ]
            for label in ("a", "b")
        },
    }
    subset_file = tmp_path / "subset.json"
    subset_file.write_text(json.dumps(subset))
    out = tmp_path / "videos"
    command = [sys.executable, "-m", "core", "download", "--subset", str(subset_file), "--out", str(out),
               "--jobs", "1", "--quiet"]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline:
        if [e.get("state") for e in read_manifest(out).values()].count("done") >= 1:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    first = {cid for cid, e in read_manifest(out).items() if e["state"] == "done"}
    assert first
    requests_before = Counter(server.requests)
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    clips = read_manifest(out)
    assert sum(e["state"] == "done" for e in clips.values()) == 4
    assert all(clips[cid]["state"] == "done" for cid in first)
    # What was finished before the kill was not fetched again; the rest was fetched once more at most.
    for cid, entry in clips.items():
        key = entry["url"].split("/", 3)[3]
        assert server.requests[key] >= 1
        if cid in first:
            assert server.requests[key] == requests_before[key], cid
    assert not list(out.rglob("*.tmp*")) and not (out / ".partial").exists()
    assert "4 of 4 clips" in result.stdout


def test_annotations_feed_build(tmp_path: Path, server: ClipServer, tiny_model) -> None:
    from tests.helpers import build_into

    candidates = {"juggling fire": [_cand(server, "juggling fire", "clip0.mp4", "zzzzzzzzzzz")]}
    download_subset(candidates, tmp_path / "videos", per_class=1, jobs=1, backoff=0.05)
    summary = build_into(tmp_path / "videos", tmp_path / "db", tmp_path / "out", model=tiny_model)
    assert summary.videos_indexed == 1 and not summary.skipped


def test_the_download_verb_takes_jobs_and_retries_as_a_front_door_passes_them(
    tmp_path: Path, server: ClipServer
) -> None:
    """No worker or a negative retry count (as typed) still downloads: one at a time, without retries."""
    candidates = {"juggling fire": [_cand(server, "juggling fire", "clip0.mp4", "yyyyyyyyyyy")]}
    summary = download_subset(candidates, tmp_path / "videos", 1, jobs=0, retries=-1, backoff=0.05)
    assert summary.obtained == {"juggling fire": 1} and summary.total == 1


def test_download_from_the_build_page(tmp_path: Path, server: ClipServer) -> None:
    from streamlit.testing.v1 import AppTest

    from core.resources import get_download_manager

    subset = {
        "classes": ["golf chipping"],
        "candidates": {"golf chipping": [
            {"youtube_id": "missing0001", "time_start": 0, "time_end": 4, "url": f"{server.url}/missing1.mp4"},
            {"youtube_id": "page0000001", "time_start": 0, "time_end": 4, "url": f"{server.url}/clip2.mp4?page"},
        ]},
    }  # fmt: skip
    (tmp_path / "subset.json").write_text(json.dumps(subset))
    at = AppTest.from_file(str(ROOT / "streamlit_app.py"), default_timeout=60)
    at.session_state["db"], at.session_state["output"] = str(tmp_path / "db"), str(tmp_path / "out")
    at.session_state["roots"] = [str(tmp_path)]
    at.run()
    at.switch_page("pages/build.py").run()
    inputs = {t.label: t for t in at.text_input}
    inputs["Subset file"].input(str(tmp_path / "subset.json"))
    inputs["Download into"].input(str(tmp_path / "videos"))
    at.number_input[0].set_value(1)
    next(b for b in at.button if b.label == "Download the clips").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    job = get_download_manager().job(str(tmp_path / "videos"))
    job.thread.join(timeout=120)
    assert job.state == "done" and job.summary.total == 1
    assert (tmp_path / "videos" / "golf_chipping" / "page0000001_000000_000004.mp4").is_file()
    at.run()
    assert any("1 of 1 clip in" in s.value for s in at.success)
    assert at.session_state["videos"] == str((tmp_path / "videos").resolve())  # ready for the build
