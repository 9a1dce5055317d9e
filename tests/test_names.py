"""The one file-name rule: a single safe component, stable for thumbnails, readable for uploads."""

from __future__ import annotations

import hashlib

from core.analysis.reports import safe_report_name
from core.ground import safe_name
from core.media.thumbnails import thumbnail_path

HOSTILE = ["../../etc/passwd", "a/b", "a\\b", "a b", "a_b", "", ".", "..", "a..b", "...hidden", "con", "é" * 500,
           "😀" * 100, "tab\there", "nul\x00byte", "clip.v2"]  # fmt: skip


def test_program_chosen_names_are_single_components_and_never_collide() -> None:
    names = [safe_name(text) for text in HOSTILE]
    assert len(set(names)) == len(HOSTILE)
    for name in names:
        assert "/" not in name and "\\" not in name and ".." not in name and "\x00" not in name
        assert name.isascii() and not name.startswith(".") and 10 <= len(name) <= 71


def test_thumbnail_folders_keep_their_names() -> None:
    # Indexes on disk point at these paths: the rule must not drift.
    digest = hashlib.sha1(b"juggling_fire/clip01").hexdigest()[:10]
    assert safe_name("juggling_fire/clip01") == f"juggling_fire_clip01-{digest}"
    path = thumbnail_path("out", "juggling_fire/clip01", 7)
    assert path.as_posix() == f"out/frames/juggling_fire_clip01-{digest}/000007.jpg"
    assert safe_name("clip.v2").startswith("clip.v2-")


def test_report_names() -> None:
    names = {safe_report_name("search_results", q) for q in HOSTILE}
    assert len(names) == len(HOSTILE)
    for name in names:
        assert name.startswith("search_results_") and name.endswith(".html") and len(name) < 100
        assert "/" not in name and "\\" not in name and ".." not in name


def test_readable_names_keep_what_a_person_wrote() -> None:
    assert safe_name("evil clip (take 2)", readable=True) == "evil clip (take 2)"
    assert safe_name("massaging_person's_head", readable=True) == "massaging_person's_head"
    assert safe_name("ünïcødé", readable=True) == "ünïcødé"
    assert safe_name("../../juggling_fire", readable=True) == "juggling_fire"
    assert safe_name("a/b\\c:d*e?", readable=True) == "a_b_c_d_e"
    assert safe_name(" .hidden. ", readable=True) == "hidden"
    assert safe_name("???", readable=True) == safe_name("..", readable=True) == ""
    long = safe_name("𠀀" * 100, readable=True, max_len=122)  # a letter of four bytes
    assert long == "𠀀" * 30  # cut by bytes, not characters, and no letter broken


def test_a_count_names_its_noun_in_the_singular_for_one() -> None:
    from core.ground import plural

    assert plural(1, "label") == "1 label" and plural(2, "label") == "2 labels" and plural(0, "frame") == "0 frames"
    assert plural(1, "class", "classes") == "1 class" and plural(3, "class", "classes") == "3 classes"
    assert plural(1204, "frame") == "1,204 frames"
