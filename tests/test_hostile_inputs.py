"""Hostile inputs, by category: each one gets one sentence (exit 2 and exactly one line on stderr in the CLI, a
message in the app), never a traceback, and leaves the index exactly as it was.

Most rows call the CLI's `main()` in this process (the same code as ``python -m core``, without the seconds
of imports a subprocess costs); a few run ``python -m core`` itself, to prove the exit status and stderr of a
real process.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from core.analysis.query import read_query_image
from core.cli import build_parser, main
from core.engines.build import resolve_workers
from core.ground import IndexLockedError, QueryError, UserError, confine
from core.limits import RANGES, WORKERS_PER_CORE
from core.media.frames import FrameStrategy, probe_video, read_video_frames, video_codec
from core.media.sources import LINKS_OUTSIDE, VideoRecord, scan_source
from core.requests import EvalSettings
from core.runtime import usable_cores
from core.store.catalog import open_index
from core.store.index import connect, open_for_build
from core.store.locking import BuildLock
from tests.helpers import ROOT, build_into, make_labelled_folder, run_cli
from tests.tiny_model import COLOURS, CONFIG

BAD_NAME = b"bad\xff\xfename.mp4"  # not UTF-8: Python holds it with surrogates, OpenCV cannot take it
BAD_SHOWN = "bad\\xff\\xfename"  # how every output writes it (core.ground.printable)


# --- helpers -----------------------------------------------------------------------------------------
def cli(capsys: pytest.CaptureFixture[str], *args: str | Path) -> tuple[int, str, str]:
    """`python -m core ARGS` in this process: (exit status, stdout, stderr)."""
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def one_sentence(code: int, err: str) -> str:
    """The single line a refused command prints on stderr (checked: exit 2, one line, no traceback)."""
    lines = err.strip().splitlines()
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    return lines[0]


def snapshot(folder: Path) -> dict[str, str]:
    """sha256 of every file below `folder`, by relative path: what 'the index is unchanged' compares."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def model_flags(checkpoint: Path) -> list[str]:
    return ["--model-config", str(CONFIG), "--pretrained", str(checkpoint)]


@pytest.fixture
def index_copy(built_index: dict, tmp_path: Path) -> Path:
    """A private copy of the session's built index, free to damage."""
    return Path(shutil.copytree(built_index["db"], tmp_path / "db"))


# --- file names --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def undecodable_names(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two labels' clips, one of them under a file name and one under a label folder that are not UTF-8."""
    root = tmp_path_factory.mktemp("names")
    make_labelled_folder(root, per_class=1)
    clips = sorted(root.glob("*/*.mp4"))
    shutil.copyfile(os.fsencode(clips[0]), os.path.join(os.fsencode(clips[0].parent), BAD_NAME))
    bad_label = os.path.join(os.fsencode(root), b"odd_\xfflabel")
    os.mkdir(bad_label)
    shutil.copyfile(os.fsencode(clips[1]), os.path.join(bad_label, b"clip.mp4"))
    return root


def test_a_video_named_in_no_encoding_is_read_through_the_one_opening_place(undecodable_names: Path) -> None:
    path = Path(
        os.fsdecode(os.path.join(os.fsencode(sorted(undecodable_names.glob("*/clip0.mp4"))[0].parent), BAD_NAME))
    )
    with pytest.raises(UnicodeEncodeError):
        str(path).encode("utf-8")  # the name really is not UTF-8
    frames = read_video_frames(VideoRecord("x", "x", path), FrameStrategy.parse("uniform:3"))
    assert len(frames.frames) == 3 and probe_video(path)[0] == 12
    assert video_codec(path) != ""
    assert not list(Path(tempfile.gettempdir()).glob("clip-explorer-video-*"))  # no link left behind


def test_undecodable_names_are_indexed_and_written_safely_everywhere(
    undecodable_names: Path, tmp_path: Path, tiny_checkpoint: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db, out = tmp_path / "db", tmp_path / "out"
    summary = tmp_path / "build.json"
    flags = ["--db", db, "--output", out]
    code, stdout, err = cli(
        capsys,
        "build",
        "--videos",
        undecodable_names,
        *flags,
        *model_flags(tiny_checkpoint),
        "--json",
        summary,
        "--quiet",
    )
    assert code == 0, err
    data = json.loads(summary.read_text(encoding="utf-8"))  # written, and valid UTF-8
    assert data["videos_indexed"] == len(COLOURS) + 2 and not data["skipped"]
    ids = set(open_index(connect(db)).contents().video_ids)
    assert any(BAD_SHOWN in i for i in ids) and any("odd_\\xfflabel" in i for i in ids)
    code, stdout, err = cli(capsys, "search", "anything", *flags, "--k", "50", "--json", "-")
    assert code == 0 and any(BAD_SHOWN in hit["video_id"] for hit in json.loads(stdout))
    code, stdout, err = cli(capsys, "search", "anything", *flags, "--k", "50")  # the terminal
    assert code == 0 and BAD_SHOWN in stdout
    code, stdout, err = cli(capsys, "report", *flags)
    assert code == 0, err
    written = [p for p in out.rglob("*") if p.suffix in (".html", ".csv")]
    assert written and any(BAD_SHOWN in p.read_text(encoding="utf-8") for p in written)
    odd_output = tmp_path / os.fsdecode(b"reports\xff")  # the terminal names a folder that is not UTF-8
    code, stdout, err = cli(capsys, "report", "--db", db, "--output", odd_output)
    assert code == 0 and f"Wrote {tmp_path}/reports\\xff/" in stdout, err


# --- annotation files --------------------------------------------------------------------------------
# (file name, content, what the one sentence must say): each names the file, and the line where it can.
ANNOTATION_FILES = [
    ("annotations.json", b"[\n" + b"[" * 100_000 + b"]" * 100_000 + b"\n]", "is nested too deeply to read (line 2)"),
    (
        "annotations.json",
        b'{"videos": [\n  {"video_id": "a", "path": "a.mp4", "label": "x"},\n]}',
        "not valid JSON (line 3",
    ),
    ("annotations.json", b'[\n{"video_id": "a\xff", "path": "a.mp4", "label": "x"}]', "is not UTF-8 text (line 2)"),
    ("annotations.json", b"", "not valid JSON (line 1"),
    ("annotations.json", b"1e400", "must hold a list of objects"),
    ("annotations.json", b'{"videos": {"a": 1}}', "must hold a list of objects"),
    (
        "kinetics.csv",
        b"label,youtube_id,time_start,time_end\nx,abc,-1e400,10\n",
        "kinetics.csv line 2: time_start/time_end",
    ),
    (
        "kinetics.csv",
        b"label,youtube_id,time_start,time_end\nx,abc,1e400,inf\n",
        "kinetics.csv line 2: time_start/time_end",
    ),
    (
        "kinetics.csv",
        b"label,youtube_id,time_start,time_end\nx,abc,nan,10\n",
        "kinetics.csv line 2: time_start/time_end",
    ),
    (
        "kinetics.csv",
        b"label,youtube_id,time_start,time_end\nx,abc,20,10\n",
        "kinetics.csv line 2: time_start/time_end",
    ),
    ("kinetics.csv", b"label,youtube_id,time_start,time_end\nx,abc,0,10,extra,fields\n", "kinetics.csv line 2 (abc_"),
    ("kinetics.csv", b"label,youtube_id,time_start,time_end\nx,a,0,1\nx\xff,b,0,1\n", "is not UTF-8 text (line 3)"),
    ("kinetics.csv", b'label,youtube_id,time_start,time_end\nx,a,0,1\nx,"' + b"y" * 200_000 + b'",0,1\n', "at line 3"),
    ("kinetics.csv", b"", "lacks 4 columns (label, youtube_id, time_start, time_end)"),
    ("kinetics.csv", b"label;youtube_id;time_start;time_end\n", "lacks 4 columns"),
]


@pytest.mark.parametrize(("name", "content", "says"), ANNOTATION_FILES, ids=lambda v: str(v)[:24])
def test_a_malformed_annotation_file_is_one_sentence_naming_it(
    name: str, content: bytes, says: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    videos = tmp_path / "videos"
    videos.mkdir()
    annotations = tmp_path / name
    annotations.write_bytes(content)
    db = tmp_path / "db"
    code, _, err = cli(capsys, "build", "--videos", videos, "--annotations", annotations, "--db", db, "--quiet")
    line = one_sentence(code, err)
    assert says in line and name in line
    assert not db.exists()  # refused before anything was made


def test_a_malformed_annotation_file_in_a_real_process(tmp_path: Path) -> None:
    annotations = tmp_path / "annotations.json"
    annotations.write_bytes(b"[" * 100_000)
    db = str(tmp_path / "db")
    result = run_cli("build", "--videos", str(tmp_path), "--annotations", str(annotations), "--db", db, "--quiet")
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "nested too deeply" in result.stderr and str(annotations) in result.stderr


# --- index folders -----------------------------------------------------------------------------------
def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])


def _damage(folder: Path, how: str) -> None:
    if how == "truncated database":
        _truncate(folder / "chroma.sqlite3")
    elif how == "not a database":
        (folder / "chroma.sqlite3").write_bytes(b"these are not the frames you are looking for\n" * 100)
    elif how == "garbage HNSW header":
        (header,) = folder.glob("*/header.bin")
        header.write_bytes(os.urandom(header.stat().st_size))
    elif how == "garbage HNSW metadata":
        (pickled,) = folder.glob("*/index_metadata.pickle")
        pickled.write_bytes(b"\x00garbage" * 64)


@pytest.fixture(scope="module")
def large_index(tmp_path_factory: pytest.TempPathFactory, tiny_model) -> Path:
    """An index with enough records that Chroma keeps an HNSW graph on disk (its segment files)."""
    db = tmp_path_factory.mktemp("large") / "db"
    index = open_for_build(connect(db), tiny_model.spec, tiny_model.embed_dim, "middle")
    vectors = np.random.default_rng(0).normal(size=(1500, tiny_model.embed_dim)).astype(np.float32)
    labels = list(COLOURS)
    metadatas = [
        {"video_id": f"v{i}", "label": labels[i % len(labels)], "frame_index": 0, "timestamp_s": 0.0,
         "video_path": f"/v{i}.mp4", "frame_path": "", "frames_in_video": 1, "video_frames": 1, "fps": 10.0}
        for i in range(len(vectors))
    ]  # fmt: skip
    index.upsert(
        [f"v{i}:0" for i in range(len(vectors))], vectors / np.linalg.norm(vectors, axis=1)[:, None], metadatas
    )
    index.mark_built()
    assert list(db.glob("*/header.bin")) and list(db.glob("*/index_metadata.pickle"))
    return db


DAMAGED_ROWS = [
    *[("truncated database", command) for command in ("search", "evaluate", "info", "build")],
    *[("not a database", command) for command in ("search", "evaluate", "info", "build")],
    *[("garbage HNSW header", command) for command in ("search", "info")],
    *[("garbage HNSW metadata", command) for command in ("search", "evaluate")],
]


@pytest.mark.parametrize(("how", "command"), DAMAGED_ROWS)
def test_a_damaged_index_is_one_sentence_and_left_untouched(
    how: str,
    command: str,
    built_index: dict,
    large_index: Path,
    video_root: Path,
    tiny_checkpoint: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    source = large_index if "HNSW" in how else built_index["db"]
    db = Path(shutil.copytree(source, tmp_path / "db"))
    _damage(db, how)
    before = snapshot(db)
    args = {
        "search": ["search", "juggling fire"],
        "evaluate": ["evaluate", "--no-save"],
        "info": ["info"],
        "build": ["build", "--videos", video_root, "--output", tmp_path / "out", *model_flags(tiny_checkpoint)],
    }[command]
    code, _, err = cli(capsys, *args, "--db", db)
    line = one_sentence(code, err)
    assert f"The index folder {db} is damaged" in line
    assert "restore it from a backup, or build again into a new folder" in line
    if "HNSW" in how:  # Chroma rewrites its database on every open, a sound index's too: the segments stay
        before.pop("chroma.sqlite3")
        assert {k: v for k, v in snapshot(db).items() if k != "chroma.sqlite3"} == before
    else:
        assert snapshot(db) == before


def test_a_damaged_index_in_a_real_process(built_index: dict, tmp_path: Path) -> None:
    db = Path(shutil.copytree(built_index["db"], tmp_path / "db"))
    _damage(db, "truncated database")
    before = snapshot(db)
    result = run_cli("search", "juggling fire", "--db", str(db))
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert f"The index folder {db} is damaged" in result.stderr and "Traceback" not in result.stderr
    assert snapshot(db) == before


def test_the_app_shows_the_same_sentence_for_a_damaged_index(built_index: dict, tmp_path: Path) -> None:
    from tests.test_app import make_app

    db = Path(shutil.copytree(built_index["db"], tmp_path / "db"))
    _damage(db, "not a database")
    before = snapshot(db)
    at = make_app(db, tmp_path / "out").run()
    assert not at.exception, [e.value for e in at.exception]
    assert any(f"The index folder {db} is damaged" in e.value and "restore it" in e.value for e in at.error)
    assert snapshot(db) == before


# --- disk --------------------------------------------------------------------------------------------
@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 8 MiB file system (tmpfs), to fill up: mounting needs root, as CI runs; skipped elsewhere."""
    if os.geteuid() != 0:
        pytest.skip("a full disk is made with a small tmpfs, which needs root")
    mount = tmp_path / "disk"
    mount.mkdir()
    made = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount)], capture_output=True, text=True
    )
    if made.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({made.stderr.strip()})")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)  # lazily: this process may still hold Chroma's files


def _fill(folder: Path) -> Path:
    """A file that takes every byte left on `folder`'s file system."""
    filler = folder / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        while True:
            os.write(fd, bytes(65536))
    except OSError as exc:
        assert exc.errno == errno.ENOSPC
    finally:
        os.close(fd)
    return filler


def test_a_full_disk_under_the_index_is_one_sentence_and_the_same_command_resumes(
    small_disk: Path, video_root: Path, tiny_model, tiny_checkpoint: Path, tmp_path: Path
) -> None:
    db, out = small_disk / "db", tmp_path / "out"
    build_into(video_root, db, out, frames="middle", model=tiny_model)
    filler = _fill(small_disk)
    before = snapshot(db)
    build = ["build", "--videos", str(video_root), "--frames", "uniform:3", "--db", str(db), "--output", str(out),
             *model_flags(tiny_checkpoint), "--quiet"]  # fmt: skip
    for args in (build, ["search", "juggling fire", "--db", str(db)]):
        result = run_cli(*args)
        assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert f"The disk holding the index folder {db} is full (ENOSPC" in result.stderr
        assert "the index is consistent" in result.stderr and "run the same command again" in result.stderr
    assert snapshot(db) == before
    filler.unlink()
    result = run_cli(*build)  # the same command, with room again
    assert result.returncode == 0, result.stderr
    counts = open_index(connect(db), frames="uniform:3").video_frame_counts()
    assert counts == {video_id: (3, 3) for video_id in counts} and len(counts) == 2 * len(COLOURS)


# --- policies ----------------------------------------------------------------------------------------
def test_one_link_rule_for_both_front_doors(tmp_path: Path) -> None:
    videos = tmp_path / "videos"
    clips = make_labelled_folder(videos, per_class=1)
    outside = tmp_path / "elsewhere" / "far.mp4"
    outside.parent.mkdir()
    shutil.copyfile(clips[0], outside)
    label = clips[0].parent
    (label / "leaves.mp4").symlink_to(outside)
    (label / "stays.mp4").symlink_to(clips[0])
    for roots in (None, [tmp_path]):  # the CLI scans without allowed roots, the app within its own
        scan = scan_source(videos, allowed_roots=roots)
        assert {Path(s.item).name: s.reason for s in scan.skipped} == {"leaves.mp4": LINKS_OUTSIDE}
        assert f"{label.name}/stays" in {v.video_id for v in scan.videos}


def test_one_build_per_index_folder_whatever_the_collection(
    built_index: dict, video_root: Path, tiny_checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = Path(shutil.copytree(built_index["db"], tmp_path / "db"))
    before = snapshot(db)
    with BuildLock(db, owner="a build of frames uniform:3"):  # another collection than the one asked for
        code, _, err = cli(
            capsys, "build", "--videos", video_root, "--frames", "middle", "--db", db, "--output", tmp_path / "out",
            *model_flags(tiny_checkpoint),
        )  # fmt: skip
    assert f"Another build is already running on {db}" in one_sentence(code, err)
    with pytest.raises(IndexLockedError), BuildLock(db), BuildLock(db):  # in one process too
        pass
    assert snapshot(db) == before


def _png_header(width: int, height: int) -> bytes:
    """The start of a PNG of that size: enough for an image reader to learn the size (no pixels)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
        + chunk(b"IEND", b"")
    )


@pytest.mark.parametrize("side", [13_000, 20_000])  # below and above Pillow's own refusal
def test_a_huge_query_image_is_too_large_whatever_its_size(
    side: int, built_index: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    image = tmp_path / "huge.png"
    image.write_bytes(_png_header(side, side))
    with pytest.raises(QueryError) as info:
        read_query_image(image)
    assert (
        str(info.value) == "The query image huge.png is too large (more than 80,000,000 pixels): use a smaller image."
    )
    code, _, err = cli(capsys, "search", "--image", image, "--db", built_index["db"])
    assert one_sentence(code, err) == f"error: {info.value}"


# --- URL parameters and app fields ---

_URL_TEMPLATES_1000 = [f"a video of {{label}}, take {i}" for i in range(1000)]
_URL_TEMPLATES_60 = [f"a video of {{label}}, take {i}" for i in range(60)]
# (the ?settings= value, a phrase its one sentence holds)
_URL_BAD_LINKS = [
    ('{"prompts":5}', "prompts must be a text or a list of texts"),
    ('{"prompts":["a {label}", 3]}', "prompts must be a text or a list of texts"),
    ('{"prompts":{"a":1}}', "prompts must be a text or a list of texts"),
    ('{"pooling":[1]}', "pooling must be a text"),
    ('{"classes":null}', "classes must be a text"),
    ('{"pooling":"median"}', "Unknown pooling"),
    ("[" * 5000 + "]" * 5000, "nest too deeply"),
    ('{"prompts":' + "[" * 5000 + "]" * 5000 + "}", "nest too deeply"),
    (json.dumps({"prompts": _URL_TEMPLATES_1000, "classes": "all"}), "at most 100"),
    (json.dumps({"prompts": ["{label} " + "x" * 600]}), "at most 500 characters"),
    (json.dumps({"prompts": _URL_TEMPLATES_60, "classes": "all"}), "prompts to encode"),
    ("x" * 40_000, "characters long"),
    ('{"prompts":["a {label}"],"extra":{"deep":[[[1]]]}}', "unknown keys (extra)"),
    ("not json", "not valid JSON"),
    ("[1, 2]", "not an object"),
]


def _url_one_sentence(text: str) -> None:
    assert text and "\n" not in text and "Traceback" not in text, text


@pytest.mark.parametrize(("link", "phrase"), _URL_BAD_LINKS, ids=lambda v: str(v)[:30])
def test_url_a_bad_settings_link_is_one_sentence(link: str, phrase: str) -> None:
    from core.app import Explorer

    with pytest.raises(UserError) as caught:
        Explorer(output="unused").link_settings(link)  # the link's form, then its prompts' cost
    _url_one_sentence(str(caught.value))
    assert phrase in str(caught.value)


def test_url_good_settings_links_still_open() -> None:
    for settings in (
        EvalSettings(),
        EvalSettings(prompts=("kinetics-ensemble",), pooling="max", label_mode="strip", classes="all"),
        EvalSettings(prompts=tuple(_URL_TEMPLATES_60), classes="present"),
    ):
        assert EvalSettings.loads(settings.dumps()) == settings


@pytest.mark.parametrize("what", ["The index folder", "The output folder", "The videos folder"])
def test_url_a_nul_byte_in_a_path_is_refused_by_confine(tmp_path: Path, what: str) -> None:
    for roots in ([tmp_path], None):
        with pytest.raises(UserError) as caught:
            confine(f"{tmp_path}/db\x00x", roots, what)
        _url_one_sentence(str(caught.value))
        assert what in str(caught.value) and "NUL byte" in str(caught.value)


def _url_app(db: Path, output: Path, roots: list[Path]):
    from streamlit.testing.v1 import AppTest

    from tests.helpers import ROOT

    at = AppTest.from_file(str(ROOT / "streamlit_app.py"), default_timeout=120)
    at.session_state["db"] = str(db)
    at.session_state["output"] = str(output)
    at.session_state["roots"] = [str(r.resolve()) for r in roots]
    return at


def _url_page(at, page: str):
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    at.switch_page(page).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


@pytest.mark.parametrize("field", ["db_input", "output_input"])
def test_url_a_nul_byte_in_a_sidebar_folder_is_one_error(tmp_path: Path, field: str) -> None:
    at = _url_page(_url_app(tmp_path / "db", tmp_path / "out", [tmp_path]), "pages/build.py")
    at.text_input(key=field).input(f"{tmp_path}/x\x00y").run()
    assert not at.exception, [e.value for e in at.exception]
    errors = [e.value for e in at.error]
    assert len(errors) == 1 and "NUL byte" in errors[0], errors
    _url_one_sentence(errors[0])
    assert at.session_state[field.removesuffix("_input")] == str(tmp_path / ("db" if field == "db_input" else "out"))


def test_url_a_nul_byte_in_the_build_pages_videos_folder_is_one_error(tmp_path: Path) -> None:
    at = _url_page(_url_app(tmp_path / "db", tmp_path / "out", [tmp_path]), "pages/build.py")
    at.text_input(key="videos_input").input(f"{tmp_path}/videos\x00").run()
    next(b for b in at.button if b.label == "Check the source").click().run()
    assert not at.exception, [e.value for e in at.exception]
    errors = [e.value for e in at.error]
    assert len(errors) == 1 and "The videos folder" in errors[0] and "NUL byte" in errors[0], errors


@pytest.mark.parametrize(
    "link",
    [
        '{"prompts":5}',
        "[" * 5000 + "]" * 5000,
        json.dumps({"prompts": _URL_TEMPLATES_1000, "classes": "all"}),
        json.dumps({"prompts": _URL_TEMPLATES_60, "classes": "all"}),
    ],
    ids=["prompts-number", "nested", "1000-templates-all", "60-templates-all"],
)
def test_url_a_bad_link_shows_one_warning_and_the_default_view(built_index: dict, link: str) -> None:
    from core.model.prompts import DEFAULT_PROMPT, PROMPT_SETS

    at = _url_app(built_index["db"], built_index["output"], [built_index["db"].parent])
    at.query_params["settings"] = link
    at = _url_page(at, "pages/metrics.py")
    warnings = [w.value for w in at.warning]
    assert len(warnings) == 1, warnings
    _url_one_sentence(warnings[0])
    assert at.radio(key="pooling").value == "mean" and at.radio(key="classes").value == "present"
    assert at.text_area(key="templates").value == "\n".join(PROMPT_SETS[DEFAULT_PROMPT].templates)
    assert any(m.label == "precision@1" for m in at.metric)  # the default view is evaluated and shown


def test_url_the_cost_cap_holds_in_the_application_layer(built_index: dict, tiny_model) -> None:
    """Typed templates (the Metrics page's box, the CLI's --prompt) meet the same cap as a link."""
    from core.app import Explorer, IndexRef, ProcessCache

    explorer = Explorer(output=built_index["output"], cache=ProcessCache(model_loader=lambda *_: tiny_model))
    settings = EvalSettings(prompts=tuple(_URL_TEMPLATES_60), classes="all")
    with pytest.raises(UserError) as caught:
        explorer.evaluate(IndexRef(db=str(built_index["db"])), settings)
    _url_one_sentence(str(caught.value))
    assert "60 templates × 700 classes" in str(caught.value)


def test_url_a_nul_byte_in_an_uploads_name_or_label_is_harmless(tmp_path: Path) -> None:
    from core.app import Explorer
    from core.media.samples import write_clip

    clip = write_clip(tmp_path / "src" / "clip.mp4", (20, 200, 20), n_frames=6, size=(64, 48), fps=10)
    explorer = Explorer(output=tmp_path / "out", roots=[tmp_path])
    saved = explorer.save_upload("C:\\clips\\my\x00clip.mp4", clip.read_bytes(), tmp_path / "videos", "jug\x00gling")
    assert saved.is_file() and "\x00" not in str(saved) and saved.parent.parent == (tmp_path / "videos").resolve()
    with pytest.raises(UserError) as caught:
        explorer.save_upload("clip.mp4", clip.read_bytes(), f"{tmp_path}/videos\x00", "juggling")
    _url_one_sentence(str(caught.value))
    assert "NUL byte" in str(caught.value)


# --- arguments ---


_ARGS_HEAVY = ("torch", "open_clip", "chromadb")  # what an argument error must not wait for
_ARGS_TOO_MANY_WORKERS = str(WORKERS_PER_CORE * usable_cores() + 1)
_ARGS_PAIRS = {  # (flag, a value it must refuse) of the commands with several numeric flags
    "loadtest": [("--threads", "0"), ("--requests", "0"), ("--seconds", "0"), ("--seconds", "nan"), ("--k", "0")],
    "download": [("--per-class", "0"), ("--jobs", "0"), ("--jobs", "1000"), ("--retries", "-1"), ("--retries", "99")],
    "sample-videos": [("--classes", "0"), ("--classes", "51"), ("--per-class", "0"), ("--frames", "0")],
}
# (the command before the flag, the flag, a value it must refuse)
_ARGS_BAD = [
    *[(["build", "--videos", "v"], "--batch-size", v) for v in ("-5", "0", "4097", "1.5", "nan", "abc")],
    *[(["build", "--videos", "v"], "--workers", v) for v in ("0", "-1", _ARGS_TOO_MANY_WORKERS, "2.5", "many")],
    *[(["search", "x"], "--k", v) for v in ("0", "-3", "1001", "inf", "1e3")],
    *[(["search", "x"], "--min-similarity", v) for v in ("5", "1.01", "-1.5", "nan", "inf")],
    *[(["search", "x", "--moments"], "--margin", v) for v in ("nan", "inf", "2.5", "-0.1")],
    *[(["loadtest"], flag, v) for flag, v in _ARGS_PAIRS["loadtest"]],
    *[(["subset"], flag, "0") for flag in ("--per-class", "--candidates")],
    *[(["download"], flag, v) for flag, v in _ARGS_PAIRS["download"]],
    *[(["sample-videos"], flag, v) for flag, v in _ARGS_PAIRS["sample-videos"]],
    *[(["demo-model"], flag, "0") for flag in ("--classes", "--steps")],
    *[(["info"], "--chroma-port", v) for v in ("0", "70000")],
]


def _args_run(*args: str) -> subprocess.CompletedProcess:
    """``python -X importtime -m core ARGS``: its exit status, stdout, and stderr (import lines included)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "core", *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def _args_imported(stderr: str) -> set[str]:
    """The modules -X importtime reports as imported."""
    return {m.group(1) for m in re.finditer(r"^import time:.*\|\s*([\w.]+)\s*$", stderr, re.MULTILINE)}


def _args_said(stderr: str) -> list[str]:
    """stderr without the import-time lines: what the user sees."""
    return [line for line in stderr.splitlines() if not line.startswith("import time:")]


def _args_heavy(stderr: str, heavy: tuple[str, ...] = _ARGS_HEAVY) -> set[str]:
    return {name for name in _args_imported(stderr) if name.split(".")[0] in heavy}


def _args_id(value: object) -> str:
    return " ".join(value) if isinstance(value, list) else str(value)


@pytest.mark.parametrize(("command", "flag", "value"), _ARGS_BAD, ids=_args_id)
def test_args_a_number_out_of_range_is_one_sentence_before_any_heavy_import(
    command: list[str], flag: str, value: str
) -> None:
    result = _args_run(*command, f"{flag}={value}")
    said = _args_said(result.stderr)
    assert result.returncode == 2, result.stderr[-2000:]
    assert len(said) == 1 and said[0].startswith(f"error: {flag} must be "), said
    assert "Traceback" not in result.stderr and not _args_heavy(result.stderr)


def test_args_search_k_0_imports_neither_torch_nor_open_clip_nor_chromadb() -> None:
    """The issue's own check: ``python -X importtime -m core search x --k 0``."""
    result = _args_run("search", "x", "--k", "0")
    assert result.returncode == 2 and _args_said(result.stderr) == [
        "error: --k must be a whole number from 1 to 1000, not 0: see python -m core search --help."
    ]
    assert _args_imported(result.stderr) and not _args_heavy(result.stderr)


@pytest.mark.parametrize("args", [["--help"], ["build", "--help"], ["build"], ["search", "x", "--bogus"]])
def test_args_help_and_argument_errors_import_nothing_heavy(args: list[str]) -> None:
    result = _args_run(*args)
    assert result.returncode == (0 if "--help" in args else 2)
    assert "Traceback" not in result.stderr and not _args_heavy(result.stderr)
    if result.returncode == 2:
        assert len(_args_said(result.stderr)) == 1


@pytest.mark.parametrize(
    ("args", "key", "expected"),
    [
        (["build", "--videos", "v", "--batch-size", "1"], "batch_size", 1),
        (["build", "--videos", "v", "--batch-size", "4096"], "batch_size", 4096),
        (["build", "--videos", "v", "--workers", "auto"], "workers", "auto"),
        (["build", "--videos", "v", "--workers", "1"], "workers", 1),
        (["search", "x", "--min-similarity", "-1"], "min_similarity", -1.0),
        (["search", "x", "--min-similarity", "0.25"], "min_similarity", 0.25),
        (["search", "x", "--margin", "0"], "margin", 0.0),
        (["search", "x", "--k", "1000"], "k", 1000),
        (["download", "--retries", "0"], "retries", 0),
    ],
)
def test_args_values_at_the_bounds_are_taken(args: list[str], key: str, expected: object) -> None:
    value = getattr(build_parser().parse_args(args), key)
    assert value == expected and type(value) is type(expected)


def test_args_the_build_checks_the_same_ranges_whatever_the_front_door() -> None:
    """A request made by the app (or a script) meets the ranges the CLI's flags have: no silent default."""
    from core.engines.build import run_build
    from core.requests import BuildRequest

    for bad in (0, -5):
        with pytest.raises(UserError, match=r"^--batch-size must be a whole number from 1 to 4096"):
            run_build(BuildRequest(videos="nowhere", batch_size=bad))
    with pytest.raises(UserError, match=r"^--workers must be"):
        resolve_workers(int(_ARGS_TOO_MANY_WORKERS))
    assert resolve_workers("2") == 2 and resolve_workers("auto") >= 1
    assert RANGES["workers"].check("auto") == "auto"
