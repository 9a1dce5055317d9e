"""Frame selection and decoding: indices, timestamps, colours, and files that are not fine."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from core.ground import UserError
from core.media.frames import FrameStrategy, VideoReadError, read_video_frames
from core.media.samples import write_clip
from core.media.sources import VideoRecord
from tests.helpers import SHARED_CLIPS, make_broken_files


def _record(path: Path) -> VideoRecord:
    return VideoRecord(video_id=path.stem, label="x", path=path)


def test_strategy_parse_and_indices() -> None:
    assert str(FrameStrategy.parse("middle")) == "middle"
    assert str(FrameStrategy.parse(" Uniform:8 ")) == "uniform:8"
    for bad in ("uniform:0", "uniform:33", "uniform", "first", ""):
        with pytest.raises(UserError):
            FrameStrategy.parse(bad)
    assert FrameStrategy.parse("middle").indices(300) == [150]
    assert FrameStrategy.parse("middle").indices(1) == [0]
    assert FrameStrategy.parse("uniform:1").indices(300) == [150]
    assert FrameStrategy.parse("uniform:4").indices(100) == [12, 37, 62, 87]
    assert FrameStrategy.parse("uniform:8").indices(3) == [0, 1, 2]
    assert FrameStrategy.parse("uniform:4").indices(0) == []


def _numbered_video(path: Path, n: int = 40, fps: float = 10.0) -> Path:
    """Each frame's index is written in its pixel values, so a decoded frame tells which it is."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (32, 32))
    for i in range(n):
        writer.write(np.full((32, 32, 3), (i * 6) % 256, np.uint8))
    writer.release()
    return path


def test_seeking_reads_the_planned_frames_and_timestamps(tmp_path: Path) -> None:
    path = _numbered_video(tmp_path / "numbered.avi", n=40, fps=10.0)
    vf = read_video_frames(_record(path), FrameStrategy.parse("uniform:4"))
    assert vf.n_frames == 40 and vf.fps == pytest.approx(10.0)
    assert [f.frame_index for f in vf.frames] == [5, 15, 25, 35]
    assert [f.timestamp_s for f in vf.frames] == pytest.approx([0.5, 1.5, 2.5, 3.5], abs=1e-3)
    for frame in vf.frames:
        assert abs(int(frame.rgb.mean()) - (frame.frame_index * 6) % 256) <= 2
    middle = read_video_frames(_record(path), FrameStrategy.parse("middle")).frames
    assert [f.frame_index for f in middle] == [20]


def test_frames_are_rgb(tmp_path: Path) -> None:
    """A red clip must decode red: this fails if the BGR→RGB conversion is missing or doubled."""
    path = write_clip(tmp_path / "red.mp4", (230, 20, 20), n_frames=6, size=(64, 48))
    frame = read_video_frames(_record(path), FrameStrategy.parse("middle")).frames[0]
    assert frame.rgb.dtype == np.uint8 and frame.rgb.shape == (48, 64, 3)
    red, green, blue = (frame.rgb[:8, :8, c].mean() for c in range(3))
    assert red > 180 and blue < 70 and green < 70


def test_broken_files_raise_with_reasons(tmp_path: Path) -> None:
    files = make_broken_files(tmp_path)
    reasons = {}
    for name, path in files.items():
        with pytest.raises(VideoReadError) as info:
            read_video_frames(_record(path), FrameStrategy.parse("middle"))
        reasons[name] = info.value.reason
    assert reasons["empty"] == "empty file (0 bytes)"
    assert "cannot be opened" in reasons["text"]
    with pytest.raises(VideoReadError, match="file not found"):
        read_video_frames(_record(tmp_path / "nope.mp4"), FrameStrategy.parse("middle"))


def test_large_frames_are_shrunk(tmp_path: Path) -> None:
    path = write_clip(tmp_path / "big.avi", (0, 0, 255), n_frames=2, size=(2000, 1000))
    frame = read_video_frames(_record(path), FrameStrategy.parse("middle"), max_side=500).frames[0]
    assert frame.rgb.shape == (250, 500, 3)


@pytest.mark.skipif(not SHARED_CLIPS.is_dir(), reason="../shared/data/realclips is not present")
def test_real_clips_read_or_fail_cleanly() -> None:
    """Every real file either yields frames or a reason; none crashes the reader."""
    results = {}
    for path in sorted(SHARED_CLIPS.iterdir()):
        if path.suffix.lower() in (".csv", ".md"):
            continue
        try:
            vf = read_video_frames(_record(path), FrameStrategy.parse("uniform:8"))
            results[path.name] = vf
            assert vf.frames and all(f.rgb.ndim == 3 and f.rgb.shape[2] == 3 for f in vf.frames)
            indices = [f.frame_index for f in vf.frames]
            assert indices == sorted(set(indices)) and max(indices) < vf.n_frames
        except VideoReadError as exc:
            results[path.name] = exc.reason
    assert results["moviepy__result.webm"] == "empty file (0 bytes)"
    # Rotation metadata is applied: the 90° clip comes out portrait.
    rotated = results["decord__video_90.mov"].frames[0].rgb
    assert rotated.shape[0] > rotated.shape[1]
    # A file cut in half: the decodable part is used, with a note; frames past the cut are never faked.
    cut = results["derived-sam2__04_coffee_trunc50.mp4"]
    assert cut.n_frames < 287 and any("decodable" in n for n in cut.notes)
    # One rule for what a recount says, whichever strategy found it: planned by count or read by time.
    by_time = read_video_frames(
        _record(SHARED_CLIPS / "derived-sam2__04_coffee_trunc50.mp4"), FrameStrategy.parse("fps:1")
    )
    assert [n for n in by_time.notes if "decodable" in n] == [n for n in cut.notes if "decodable" in n]
    # No duration in the container: frames are counted.
    assert results["moviepy__no_duration.webm"].n_frames > 0
    assert isinstance(results["derived-tinyucf101__abseiling_k400_1frame.mp4"].frames[0].rgb, np.ndarray)


def _sequential(path: Path, wanted: set[int] | None = None) -> dict[int, np.ndarray]:
    """Frames of `path` by index (all, or those `wanted`), from one read in order: the reference for any
    frame the reader seeks to."""
    cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG, [cv2.CAP_PROP_N_THREADS, 1])
    frames, index = {}, 0
    while (wanted is None or len(frames) < len(wanted)) and cap.grab():
        if wanted is None or index in wanted:
            ok, bgr = cap.retrieve()
            assert ok
            frames[index] = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        index += 1
    cap.release()
    return frames


def test_ffmpeg_threads_decode_the_same_frames(tmp_path: Path) -> None:
    """An H.264 clip with one keyframe (like re-encoded Kinetics clips): FFmpeg's own threads (0) give the
    frames one thread gives, and those are the frames at the same index of a sequential read."""
    from benchmarks.clips import write_kinetics_like

    path = write_kinetics_like(tmp_path / "k.mp4", seed=3, seconds=2, size=(160, 90))
    record = _record(path)
    everything = _sequential(path)
    for strategy in ("middle", "uniform:8"):
        one = read_video_frames(record, FrameStrategy.parse(strategy), threads=1)
        auto = read_video_frames(record, FrameStrategy.parse(strategy), threads=0)
        assert [f.frame_index for f in one.frames] == [f.frame_index for f in auto.frames]
        for a, b in zip(one.frames, auto.frames, strict=True):
            assert np.array_equal(a.rgb, b.rgb) and np.array_equal(a.rgb, everything[a.frame_index])


@pytest.mark.slow
@pytest.mark.skipif(not SHARED_CLIPS.is_dir(), reason="../shared/data/realclips is not present")
def test_planned_frames_of_real_clips_equal_a_sequential_read() -> None:
    """Seeking and grabbing forward land on the planned frame exactly, on every real clip that decodes."""
    checked = 0
    for path in sorted(SHARED_CLIPS.iterdir()):
        if path.suffix.lower() in (".csv", ".md"):
            continue
        planned = []
        for strategy in ("middle", "uniform:8"):
            try:
                planned += read_video_frames(_record(path), FrameStrategy.parse(strategy), max_side=100_000).frames
            except VideoReadError:
                continue
        if not planned:
            continue
        reference = _sequential(path, {f.frame_index for f in planned})
        for frame in planned:
            assert np.array_equal(frame.rgb, reference[frame.frame_index]), (path.name, frame.frame_index)
        checked += 1
    assert checked >= 35  # 35 of the 38 files open


def _audio_only_mp4(path: Path) -> Path:
    """An MP4 holding one AAC audio stream and no video (a sine tone, made by imageio-ffmpeg's ffmpeg)."""
    import subprocess

    from core.media.transcode import ffmpeg_exe

    path.parent.mkdir(parents=True, exist_ok=True)
    command = [ffmpeg_exe(), "-nostdin", "-loglevel", "error", "-y", "-f", "lavfi", "-i", "sine=duration=1",
               "-c:a", "aac", str(path)]  # fmt: skip
    subprocess.run(command, check=True, capture_output=True, timeout=60)
    return path


def test_an_audio_only_mp4_has_no_video_stream(tmp_path: Path) -> None:
    from core.media.capture import unusable_reason

    audio = _audio_only_mp4(tmp_path / "tone.mp4")
    with pytest.raises(VideoReadError) as caught:
        read_video_frames(VideoRecord("tone", "x", audio), FrameStrategy.parse("middle"))
    assert caught.value.reason.startswith("has no video stream")
    assert unusable_reason(audio).startswith("has no video stream")
    random_bytes = tmp_path / "noise.mp4"
    random_bytes.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    assert unusable_reason(random_bytes).startswith("cannot be opened as a video")  # not "no video stream"


def test_the_quick_probe_takes_real_videos_and_names_what_it_refuses(tmp_path: Path) -> None:
    from PIL import Image

    from core.media.capture import unusable_reason

    clip = write_clip(tmp_path / "clip.mp4", (20, 200, 20), n_frames=6, size=(64, 48), fps=10)
    jpeg = tmp_path / "photo.mp4"
    Image.new("RGB", (32, 32), (200, 0, 0)).save(jpeg, format="JPEG")
    broken = make_broken_files(tmp_path / "broken")
    assert unusable_reason(clip) == ""
    assert unusable_reason(jpeg) == "this is a JPEG image, not a video"
    assert unusable_reason(broken["empty"]) == "empty file (0 bytes)"
    assert unusable_reason(broken["text"]).startswith("cannot be opened as a video")
    assert unusable_reason(tmp_path / "gone.mp4") == "file not found"
