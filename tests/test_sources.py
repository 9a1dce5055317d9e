"""The three input layouts, and what they report instead of failing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from core.ground import SourceError, UserError
from core.media.samples import write_clip
from core.media.sources import kinetics_clip_stem, label_from_folder, scan_source


def _clip(path: Path) -> Path:
    return write_clip(path, (10, 200, 10), n_frames=3, size=(32, 24))


def test_folder_layout_labels_ids_and_skips(tmp_path: Path) -> None:
    _clip(tmp_path / "juggling_fire" / "a.mp4")
    _clip(tmp_path / "opening_bottle_(not_wine)" / "deep" / "b.webm")
    _clip(tmp_path / "juggling_fire" / "a.avi")  # same stem, other container: still distinct
    _clip(tmp_path / "tackling" / "a.mp4")  # same file name in another label folder
    _clip(tmp_path / "loose.mp4")
    (tmp_path / "juggling_fire" / "readme.txt").write_text("not a video")
    scan = scan_source(tmp_path)
    assert scan.layout == "folders"
    by_id = {v.video_id: v for v in scan.videos}
    assert set(by_id) == {"juggling_fire/a", "juggling_fire/a.mp4", "opening_bottle_(not_wine)/deep/b", "tackling/a"}
    assert by_id["opening_bottle_(not_wine)/deep/b"].label == "opening bottle (not wine)"
    assert by_id["tackling/a"].label == "tackling"
    assert [(s.item, s.reason) for s in scan.skipped] == [
        ("loose.mp4", "not inside a label folder (expected VIDEOS/<label>/file)"),
        ("juggling_fire/readme.txt", "not a video file type"),
    ]


def test_label_from_folder() -> None:
    assert label_from_folder("playing__squash_or_racquetball") == "playing squash or racquetball"


def test_empty_folder_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="No videos found"):
        scan_source(tmp_path)
    (tmp_path / "tackling").mkdir()
    (tmp_path / "tackling" / "photo.jpg").write_bytes(b"\xff\xd8\xff")
    with pytest.raises(SourceError, match=r"No videos found .*1 other file skipped: not a video file type.*flv"):
        scan_source(tmp_path)
    with pytest.raises(SourceError, match="does not exist"):
        scan_source(tmp_path / "missing")


def test_annotations_json(tmp_path: Path) -> None:
    a = _clip(tmp_path / "clips" / "a.mp4")
    b = _clip(tmp_path / "elsewhere" / "b.mp4")
    entries = [
        {"video_id": "A", "path": "clips/a.mp4", "label": "juggling fire", "youtube_id": "xyz", "time_start": 3},
        {"video_id": "B", "path": str(b), "label": "tackling", "split": "validate"},
        {"video_id": "A", "path": "clips/a.mp4", "label": "tackling"},
        {"video_id": "C", "path": "../outside.mp4", "label": "tackling"},
        {"video_id": "D", "path": "clips/missing.mp4", "label": "tackling"},
        {"video_id": "E", "label": "tackling"},
        "not an object",
    ]
    ann = tmp_path / "annotations.json"
    ann.write_text(json.dumps(entries))
    scan = scan_source(None, ann)
    assert scan.layout == "annotations"
    assert [v.video_id for v in scan.videos] == ["A", "B"]
    assert scan.videos[0].path == a.resolve()
    assert scan.videos[0].meta == {"youtube_id": "xyz", "time_start": 3}
    reasons = [s.reason for s in scan.skipped]
    assert any("duplicate video_id" in r for r in reasons)
    assert any("leaves the annotations folder" in r for r in reasons)
    assert any("file not found" in r for r in reasons)
    assert any("missing path" in r for r in reasons)
    assert any("not an object" in r for r in reasons)
    # A folder holding annotations.json is read through it (the downloader's output).
    assert scan_source(tmp_path).layout == "annotations"


def test_malformed_annotations(tmp_path: Path) -> None:
    bad = tmp_path / "annotations.json"
    bad.write_text('[{"video_id": "a",')
    with pytest.raises(SourceError, match="not valid JSON"):
        scan_source(None, bad)
    bad.write_text('{"video_id": "a"}')
    with pytest.raises(SourceError, match="must hold a list"):
        scan_source(None, bad)


def test_kinetics_csv(tmp_path: Path) -> None:
    clips = tmp_path / "clips"
    _clip(clips / f"{kinetics_clip_stem('abc', 5, 15)}.mp4")
    _clip(clips / "tackling" / f"{kinetics_clip_stem('def', 0, 10)}.mp4")  # label sub-folder
    csv = tmp_path / "validate.csv"
    csv.write_text(
        "label,youtube_id,time_start,time_end,split\n"
        "juggling fire,abc,5,15,validate\n"
        "tackling,def,0,10,validate\n"
        "tackling,gone,20,30,validate\n"
        '"opening bottle (not wine)",xx,nan?,10,validate\n'
    )
    scan = scan_source(clips, csv)
    assert scan.layout == "kinetics_csv"
    assert [v.video_id for v in scan.videos] == ["abc_000005_000015", "def_000000_000010"]
    assert scan.videos[0].meta == {"youtube_id": "abc", "time_start": 5, "time_end": 15, "split": "validate"}
    assert len(scan.skipped) == 2
    assert "clip not found" in scan.skipped[0].reason
    assert "not numbers" in scan.skipped[1].reason


def test_kinetics_csv_missing_columns(tmp_path: Path) -> None:
    csv = tmp_path / "bad.csv"
    csv.write_text("label,youtube_id\nx,y\n")
    with pytest.raises(SourceError, match="time_start, time_end"):
        scan_source(tmp_path, csv)


def test_allowed_roots_confine_paths(tmp_path: Path) -> None:
    inside = tmp_path / "allowed"
    _clip(inside / "x" / "a.mp4")
    with pytest.raises(UserError, match="outside the folders"):
        scan_source(tmp_path, allowed_roots=[inside])
    with pytest.raises(UserError, match=r"The annotations file .* outside the folders"):
        scan_source(inside, tmp_path / "annotations.json", allowed_roots=[inside])
    assert len(scan_source(inside, allowed_roots=[inside]).videos) == 1
