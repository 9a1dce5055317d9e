"""Messy real-world inputs: each gets a clear reason, the rest of the work goes on, nothing indexed is lost."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from core.ground import SourceError
from core.media.frames import FrameStrategy, VideoReadError, read_video_frames
from core.media.samples import write_clip
from core.media.sources import VideoRecord, scan_source
from core.media.transcode import ffmpeg_exe
from core.store.catalog import open_index
from core.store.index import connect
from tests.helpers import ROOT, build_into, make_broken_files
from tests.tiny_model import COLOURS, CONFIG

RED = COLOURS["juggling fire"]


def _h264(path: Path, seconds: int = 4, size: tuple[int, int] = (64, 48), faststart: bool = True) -> Path:
    raw = write_clip(path.with_name(path.stem + "-raw.avi"), RED, n_frames=seconds * 10, size=size, fps=10)
    flags = ["-movflags", "+faststart"] if faststart else []
    subprocess.run(
        [ffmpeg_exe(), "-loglevel", "error", "-y", "-i", str(raw), "-c:v", "libx264", "-pix_fmt", "yuv420p",
         "-g", "5", *flags, str(path)],
        check=True,
    )  # fmt: skip
    raw.unlink()
    return path


def _record(path: Path) -> VideoRecord:
    return VideoRecord(video_id=path.stem, label="x", path=path)


@pytest.fixture(scope="module")
def messy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A videos folder with every kind of trouble next to good clips."""
    root = tmp_path_factory.mktemp("messy")
    label = root / "juggling_fire"
    write_clip(label / "good one.avi", RED, n_frames=9, size=(64, 48))  # space in the name
    write_clip(label / "ünïcødé 'quoted' \"name\".avi", RED, n_frames=9, size=(64, 48))
    write_clip(label / "single.avi", RED, n_frames=1, size=(64, 48))
    write_clip(label / "portrait_odd.avi", RED, n_frames=5, size=(37, 91))
    write_clip(label / "four_k.avi", RED, n_frames=2, size=(3840, 2160))
    write_clip(root / "tackling" / "good one.avi", COLOURS["carving ice"], n_frames=9, size=(64, 48))  # same name
    make_broken_files(label)  # empty.mp4, notes.mp4 (text), corrupt.avi
    Image.fromarray(np.full((48, 64, 3), 200, np.uint8)).save(label / "photo.jpg")
    (label / "photo.jpg").rename(label / "photo.avi")  # an image renamed .avi
    whole = _h264(label / "cut-source.mp4", faststart=False).read_bytes()
    (label / "cut-mid-file.mp4").write_bytes(whole[: len(whole) // 2])  # index at the end: unopenable
    (label / "cut-source.mp4").unlink()
    fast = _h264(label / "fast-source.mp4", faststart=True).read_bytes()
    (label / "wrong-count.mp4").write_bytes(fast[: int(len(fast) * 0.6)])  # claims 40 frames, fewer decode
    (label / "fast-source.mp4").unlink()
    os.symlink(root, label / "loop")  # a symlink loop back to the top
    return root


def test_every_bad_file_has_a_reason_and_the_rest_is_indexed(messy: Path, tmp_path: Path, tiny_model) -> None:
    scan = scan_source(messy)  # terminates despite the loop, and reads the loop as nothing
    summary = build_into(messy, tmp_path / "db", tmp_path / "out", frames="uniform:3", model=tiny_model)
    reasons = {Path(s.item).name: s.reason for s in summary.skipped}
    assert reasons["empty.mp4"] == "empty file (0 bytes)"
    assert "cannot be opened" in reasons["notes.mp4"]
    assert reasons["photo.avi"] == "this is a JPEG image, not a video"
    assert "cannot be opened" in reasons["cut-mid-file.mp4"]
    assert "corrupt.avi" in reasons
    assert summary.videos_indexed == len(scan.videos) - len(summary.skipped) == 7
    notes = {Path(n.item).name: n.reason for n in summary.notes}
    assert "decodable" in notes["wrong-count.mp4"]
    contents = open_index(connect(tmp_path / "db")).contents()
    by_video = {}
    for vid, frame in zip(contents.video_ids, contents.frame_index, strict=True):
        by_video.setdefault(vid, []).append(int(frame))
    assert by_video["juggling_fire/single"] == [0]
    assert {"juggling_fire/good one", "tackling/good one"} <= set(by_video)  # same file name, two videos
    assert "juggling_fire/ünïcødé 'quoted' \"name\"" in by_video
    for path in contents.frame_paths:  # safe thumbnail names whatever the video id
        assert Path(path).is_file() and all(c.isalnum() or c in "-_./" for c in Path(path).name)
    big = Image.open(contents.frame_paths[list(contents.video_ids).index("juggling_fire/four_k")])
    assert max(big.size) <= 384
    odd = Image.open(contents.frame_paths[list(contents.video_ids).index("juggling_fire/portrait_odd")])
    assert odd.size[1] > odd.size[0]
    assert max(by_video["juggling_fire/wrong-count"]) < 40


def test_adding_bad_files_loses_nothing_already_indexed(messy: Path, tmp_path: Path, tiny_model) -> None:
    good = tmp_path / "videos"
    write_clip(good / "tackling" / "a.avi", RED, n_frames=6)
    write_clip(good / "tackling" / "b.avi", RED, n_frames=6)
    build_into(good, tmp_path / "db", tmp_path / "out", model=tiny_model)
    shutil.copytree(messy / "juggling_fire", good / "juggling_fire", symlinks=True)
    again = build_into(good, tmp_path / "db", tmp_path / "out", model=tiny_model)
    assert again.videos_already_indexed == 2 and len(again.skipped) == 5
    assert {"tackling/a", "tackling/b"} <= open_index(connect(tmp_path / "db")).complete_videos()


def test_variable_frame_rate_keeps_true_timestamps(tmp_path: Path) -> None:
    """Frames 0-9 at 25 fps then 5 fps: each sampled frame's timestamp is its own presentation time."""
    writer = cv2.VideoWriter(str(tmp_path / "cfr.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 25, (32, 32))
    for i in range(40):
        writer.write(np.full((32, 32, 3), i * 6, np.uint8))  # the grey level says which frame it is
    writer.release()
    expr = "if(lt(N,10),N*0.04,0.4+(N-10)*0.2)/TB"
    subprocess.run(
        [ffmpeg_exe(), "-loglevel", "error", "-y", "-i", str(tmp_path / "cfr.avi"), "-vf", f"setpts='{expr}'",
         "-fps_mode", "vfr", "-c:v", "libx264", "-pix_fmt", "yuv420p", "-g", "5", str(tmp_path / "vfr.mp4")],
        check=True,
    )  # fmt: skip
    frames = read_video_frames(_record(tmp_path / "vfr.mp4"), FrameStrategy.parse("uniform:6")).frames
    assert len(frames) == 6
    for frame in frames:
        n = round(frame.rgb.mean() / 6)
        assert n == frame.frame_index
        assert frame.timestamp_s == pytest.approx(n * 0.04 if n < 10 else 0.4 + (n - 10) * 0.2, abs=0.002)


def test_unreadable_file(tmp_path: Path) -> None:
    path = write_clip(tmp_path / "locked.avi", RED, n_frames=3)
    path.chmod(0)
    if os.geteuid() != 0:
        with pytest.raises(VideoReadError, match="permission denied"):
            read_video_frames(_record(path), FrameStrategy.parse("middle"))
        return
    # As root every file is readable: check in a forked child that drops to an unprivileged user.
    tmp_path.chmod(0o755)
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        try:
            os.setgid(65534)
            os.setuid(65534)
            read_video_frames(_record(path), FrameStrategy.parse("middle"))
            answer = "read it"
        except VideoReadError as exc:
            answer = exc.reason
        except BaseException as exc:
            answer = repr(exc)
        os.write(write_end, answer.encode())
        os._exit(0)
    os.close(write_end)
    os.waitpid(pid, 0)
    answer = os.read(read_end, 1000).decode()
    os.close(read_end)
    assert "permission denied" in answer, answer


def test_annotation_troubles(tmp_path: Path) -> None:
    clip = write_clip(tmp_path / "videos" / "c.avi", RED, n_frames=3)
    csv = tmp_path / "k.csv"
    csv.write_bytes(b"\x00\xff\xfe garbage \x00\n\x01\x02")
    with pytest.raises(SourceError) as info:
        scan_source(tmp_path / "videos", csv)
    assert "\n" not in str(info.value)
    csv.write_text(
        "label,youtube_id,time_start,time_end,split\n"
        '"opening bottle (not wine), quickly",abc,0,10,validate\n'
        "épluchage de pommes 🍎,def,0,10,validate\n"
    )
    (tmp_path / "videos" / "abc_000000_000010.mp4").write_bytes(clip.read_bytes())
    (tmp_path / "videos" / "def_000000_000010.mp4").write_bytes(clip.read_bytes())
    scan = scan_source(tmp_path / "videos", csv)
    assert sorted(v.label for v in scan.videos) == ["opening bottle (not wine), quickly", "épluchage de pommes 🍎"]


@pytest.mark.parametrize(
    ("model", "pretrained", "config", "message"),
    [
        ("NoSuchNet", "none", "", "Unknown model 'NoSuchNet'"),
        ("TinyCLIP-test", "{corrupt}", "{config}", "cannot be read"),
        ("TinyCLIP-test", "{mismatch}", "{config}", "does not match the architecture"),
        ("ViT-B-32-quickgelu", "openai", "", "could not be downloaded"),
    ],
)
def test_model_troubles_are_one_sentence_in_the_ui(
    tmp_path: Path, video_root: Path, model: str, pretrained: str, config: str, message: str
) -> None:
    import time

    import torch
    from streamlit.testing.v1 import AppTest

    from core.resources import get_build_manager

    (tmp_path / "corrupt.pt").write_bytes(b"not a checkpoint")
    torch.save({"visual.proj": torch.zeros(2, 2)}, tmp_path / "mismatch.pt")
    values = {"corrupt": str(tmp_path / "corrupt.pt"), "mismatch": str(tmp_path / "mismatch.pt"), "config": str(CONFIG)}
    at = AppTest.from_file(str(ROOT / "streamlit_app.py"), default_timeout=60)
    at.session_state["db"], at.session_state["output"] = str(tmp_path / "db"), str(tmp_path / "out")
    at.session_state["roots"] = [str(tmp_path), str(video_root), str(ROOT)]
    at.session_state["videos"] = str(video_root)
    at.run()
    at.switch_page("pages/build.py").run()
    inputs = {t.label: t for t in at.text_input}
    inputs["open_clip model"].input(model)
    inputs["Pretrained tag or local checkpoint"].input(pretrained.format(**values))
    inputs["Custom model config (optional)"].input(config.format(**values))
    next(b for b in at.button if b.label == "Start the build").click().run()
    errors = [e.value for e in at.error]
    if not errors:  # the weights are read by the background build: its failure is shown on the page
        job = get_build_manager().job(str(tmp_path / "db"))
        deadline = time.time() + 60
        while job is not None and job.active and time.time() < deadline:
            time.sleep(0.1)
        at.run()
        errors = [e.value for e in at.error]
    assert not at.exception and len(errors) == 1
    assert message in errors[0] and "Traceback" not in errors[0] and "\n" not in errors[0]
