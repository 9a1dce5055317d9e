"""Shared test helpers: generated videos and deliberately broken files."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from core.media.samples import write_clip
from tests.tiny_model import COLOURS

ROOT = Path(__file__).resolve().parents[1]
# The keys `evaluate --json` promises (the CLI contract; more may be added, none renamed).
EVALUATE_KEYS = frozenset(
    {"precision_at_1", "precision_at_3", "precision_at_5", "mrr", "mean_similarity_correct",
     "mean_similarity_incorrect", "n_videos", "n_classes", "per_class"}
)  # fmt: skip
SHARED_CLIPS = ROOT.parent / "shared" / "data" / "realclips"


def make_labelled_folder(root: Path, per_class: int = 2, n_frames: int = 12, ext: str = "mp4") -> list[Path]:
    """``root/<label_with_underscores>/<i>.<ext>`` clips in each test label's colour."""
    paths = []
    for c, (label, colour) in enumerate(COLOURS.items()):
        for i in range(per_class):
            path = root / label.replace(" ", "_") / f"clip{i}.{ext}"
            paths.append(write_clip(path, colour, n_frames=n_frames, size=(64, 48), fps=10, seed=100 * c + i))
    return paths


def make_broken_files(folder: Path) -> dict[str, Path]:
    """An empty file, a text file named .mp4 and a truncated video, each in a label folder."""
    folder.mkdir(parents=True, exist_ok=True)
    empty = folder / "empty.mp4"
    empty.write_bytes(b"")
    text = folder / "notes.mp4"
    text.write_text("this is not a video\n" * 20)
    good = write_clip(folder / "whole.avi", (200, 30, 30), n_frames=30, size=(64, 48), fps=10)
    data = good.read_bytes()
    corrupt = folder / "corrupt.avi"
    corrupt.write_bytes(data[:200] + bytes(len(data) - 200))
    good.unlink()
    return {"empty": empty, "text": text, "corrupt": corrupt}


def run_cli(*args: str, cwd: Path | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    """``python -m core ARGS`` in a subprocess, offline."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "core", *args],
        cwd=cwd or ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def build_into(videos: Any, db: Any, output: Any, model: Any = None, progress: Any = None, cancel: Any = None,
               **fields: Any) -> Any:  # fmt: skip
    """A local build through the engine's one entry point, with test-friendly paths and a loaded model."""
    from core.engines.build import run_build
    from core.requests import BuildRequest

    fields.setdefault("workers", 2)
    request = BuildRequest(videos=str(videos), db=str(db), output=str(output), **fields)
    return run_build(request, model=model, progress=progress, cancel=cancel)


def _chroma_exe() -> str:
    candidate = Path(sys.executable).parent / "chroma"
    return str(candidate) if candidate.exists() else (shutil.which("chroma") or "chroma")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_streamlit(url: str, log: Path, seconds: float = 120) -> None:
    """Return once ``streamlit run`` answers its health check at `url`; fail with the end of its `log`."""
    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read() == b"ok":
                return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError(f"streamlit did not start: {log.read_text()[-2000:]}")


class ChromaProcess:
    """A real Chroma server (``chroma run``) on 127.0.0.1: started, stopped and started again by a test."""

    def __init__(self, path: Path, port: int) -> None:
        self.path, self.port = path, port
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = (self.path.parent / "chroma.log").open("a")
        self.proc = subprocess.Popen(
            [_chroma_exe(), "run", "--path", str(self.path), "--host", "127.0.0.1", "--port", str(self.port)],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{self.port}/api/v2/heartbeat", timeout=1)
                return
            except OSError:
                time.sleep(0.2)
        raise RuntimeError("chroma run did not start")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=30)
            self.proc = None
