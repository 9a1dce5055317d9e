"""The one atomic writer: the target is either the old file or the whole new one, and no temporary stays."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.ground import atomic_path, remove_temporaries, temporary_sibling, write_bytes_atomic, write_text_atomic


def test_text_and_bytes(tmp_path: Path) -> None:
    target = tmp_path / "deep" / "er" / "report.html"
    assert write_text_atomic(target, "é") == target and target.read_bytes() == "é".encode()
    assert write_bytes_atomic(target, b"\x00\x01") == target and target.read_bytes() == b"\x00\x01"
    assert sorted(p.name for p in target.parent.iterdir()) == ["report.html"]


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    target = write_text_atomic(tmp_path / "clip.mp4", "old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half of the new")
        raise RuntimeError("the encoder died")
    assert target.read_text() == "old" and sorted(tmp_path.iterdir()) == [target]


def test_the_temporary_is_hidden_and_keeps_the_suffix(tmp_path: Path) -> None:
    tmp = temporary_sibling(tmp_path / "clip.webm")
    assert tmp.parent == tmp_path and tmp.name.startswith(".clip.webm.") and tmp.suffix == ".webm"
    long = temporary_sibling(tmp_path / ("é" * 120 + ".mp4"))
    assert long.suffix == ".mp4" and len(long.name.encode()) < 255


def test_leftovers_of_a_killed_writer_are_removed(tmp_path: Path) -> None:
    keep = write_text_atomic(tmp_path / "a" / "000001.jpg", "x")
    for folder in (tmp_path, tmp_path / "a"):
        temporary_sibling(folder / "000002.jpg").write_text("half")
    assert remove_temporaries(tmp_path, recursive=False) == 1
    assert remove_temporaries(tmp_path) == 1
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == [keep]
    assert remove_temporaries(tmp_path / "missing") == 0


def test_without_replace_an_existing_target_is_kept(tmp_path: Path) -> None:
    target = tmp_path / "clip.mp4"
    with pytest.raises(FileExistsError), atomic_path(target, replace=False) as tmp:
        tmp.write_text("mine")
        target.write_text("someone else's, written meanwhile")
    assert target.read_text() == "someone else's, written meanwhile" and sorted(tmp_path.iterdir()) == [target]
    with atomic_path(tmp_path / "new.mp4", replace=False) as tmp:
        tmp.write_text("new")
    assert (tmp_path / "new.mp4").read_text() == "new" and len(list(tmp_path.iterdir())) == 2
