"""Peak resident memory: of ``python -m core ARGS``, or of the dashboard over a shared bundle.

    python -m benchmarks.peak_rss ARGS...                  # the CLI; its peak on stderr as JSON
    python -m benchmarks.peak_rss --app [--bundle PATH_OR_URL | --local] [--work DIR]

The peak is read from /proc/<pid>/status (VmHWM, the process's own address space), not from getrusage:
a child's ru_maxrss also counts the parent's memory it shared before exec.

`--app` measures the session the Community Cloud goal is about: ``streamlit run streamlit_app.py --
--bundle ...`` is started, headless Chromium (Playwright, /usr/bin/chromium) opens the app, runs a text
search and opens Metrics, and the Streamlit process's VmHWM is read before it is stopped. Without
`--bundle`, a ViT-B/32 bundle is made first in `--work` (random weights saved as a local checkpoint, so
nothing is downloaded; 20 generated clips indexed on the CPU; exported with `--include-model`).
`--local` runs the same session on that local index (``-- --db DIR --output DIR``) instead of the bundle.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"


def vm_hwm_mb(pid: int | str = "self") -> float | None:
    """VmHWM of a process in MB (None where /proc is not there)."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def peak_rss_mb() -> float:
    own = vm_hwm_mb()
    if own is not None:
        return own
    scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, KiB elsewhere
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20


def _cli(*args: str) -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    subprocess.run([sys.executable, "-m", "core", *args], cwd=ROOT, env=env, check=True)


def make_vit_bundle(work: Path) -> Path:
    """A ViT-B/32 bundle with random weights: 20 generated clips, their middle frames, the checkpoint inside."""
    import open_clip
    import torch

    checkpoint = work / "vit-b-32-random.pt"
    if not checkpoint.is_file():
        torch.save(open_clip.create_model("ViT-B-32").state_dict(), checkpoint)
    videos, db = work / "videos", work / "db"
    _cli("sample-videos", "--out", str(videos), "--classes", "10", "--per-class", "2", "--frames", "24")
    _cli("build", "--videos", str(videos), "--db", str(db), "--output", str(work / "output"), "--model",
         "ViT-B-32", "--pretrained", str(checkpoint), "--device", "cpu", "--quiet")  # fmt: skip
    bundle = work / "vit-b-32.zip"
    _cli("export", "--out", str(bundle), "--db", str(db), "--include-model")
    return bundle


def app_session_peak(app_args: list[str], work: Path, query: str = "a person juggling fire") -> dict[str, object]:
    """Start the app with `app_args` (``--bundle ...`` or ``--db ... --output ...``), open it, search `query`,
    open Metrics; the Streamlit process's peak RSS."""
    from playwright.sync_api import expect, sync_playwright

    from tests.helpers import free_port, wait_for_streamlit

    port = free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    command = [
        sys.executable, "-m", "streamlit", "run", str(ROOT / "streamlit_app.py"), "--server.port", str(port),
        "--server.address", "127.0.0.1", "--server.headless", "true", "--browser.gatherUsageStats", "false",
        "--", *app_args,
    ]  # fmt: skip
    log_path = work / "streamlit.log"
    with log_path.open("w") as log:
        server = subprocess.Popen(command, cwd=work, env=env, stdout=log, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}"
        try:
            wait_for_streamlit(url, log_path, seconds=300)
            started = vm_hwm_mb(server.pid)
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
                page = browser.new_page(viewport={"width": 1400, "height": 1100})
                page.goto(url)
                box = page.get_by_label("Describe an action")
                box.wait_for(timeout=600_000)
                opened = vm_hwm_mb(server.pid)
                box.fill(query)
                box.press("Enter")
                expect(page.locator("[data-testid='stImage'] img").first).to_be_visible(timeout=600_000)
                searched = vm_hwm_mb(server.pid)
                page.get_by_role("link", name="Metrics").click()
                expect(page.get_by_text("precision@1").first).to_be_visible(timeout=600_000)
                page.wait_for_timeout(2000)
                browser.close()
            peak = vm_hwm_mb(server.pid)
        finally:
            server.terminate()
            server.wait(timeout=60)
    return {
        "peak_rss_mb": peak,
        "after_start_mb": started,
        "after_open_mb": opened,
        "after_search_mb": searched,
        "goal_mb": 1536,
        "app_args": app_args,
    }


def main() -> int:
    if sys.argv[1:2] != ["--app"]:
        from core.cli import main as cli

        code = cli(sys.argv[1:])
        print(json.dumps({"peak_rss_mb": peak_rss_mb(), "exit": code}), file=sys.stderr)
        return code
    parser = argparse.ArgumentParser(prog="python -m benchmarks.peak_rss --app")
    parser.add_argument("--app", action="store_true")
    parser.add_argument("--bundle", help="the bundle to open (default: make a ViT-B/32 one in --work)")
    parser.add_argument("--local", action="store_true", help="open the generated index itself, not its bundle")
    parser.add_argument("--work", help="folder for the generated bundle and the app's log (default: a temporary one)")
    args = parser.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="peak-rss-"))
    work.mkdir(parents=True, exist_ok=True)
    if args.local and args.bundle:
        parser.error("--local opens the index made in --work: leave --bundle out")
    bundle = args.bundle or str(make_vit_bundle(work))
    app_args = ["--db", str(work / "db"), "--output", str(work / "output")] if args.local else ["--bundle", bundle]
    print(json.dumps(app_session_peak(app_args, work)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
