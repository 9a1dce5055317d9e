"""Security basics: paths confined to allowed roots, uploads checked by content, no secret shown,
no user input evaluated, and exports escaped (see test_reports)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from core.ground import UserError, confine
from core.media.samples import write_clip
from core.media.uploads import save_upload
from core.store.chroma import ChromaServer, server_unavailable
from tests.helpers import ROOT


def test_sidebar_paths_outside_the_roots_are_refused(tmp_path: Path) -> None:
    at = AppTest.from_file(str(ROOT / "streamlit_app.py"), default_timeout=60)
    at.session_state["db"], at.session_state["output"] = str(tmp_path / "db"), str(tmp_path / "out")
    at.session_state["roots"] = [str(tmp_path)]
    at.run()
    at.text_input(key="db_input").input("/etc").run()
    assert not at.exception
    assert at.session_state["db"] == str(tmp_path / "db")  # unchanged
    assert any("outside the folders this app may use" in e.value for e in at.sidebar.error)
    at.text_input(key="db_input").input(str(tmp_path / "other-db")).run()
    assert at.session_state["db"] == str((tmp_path / "other-db").resolve())
    assert not at.sidebar.error


def test_uploads_are_checked_by_content_and_named_safely(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    videos = tmp_path / "videos"
    real = write_clip(tmp_path / "real.avi", (10, 200, 10), n_frames=4).read_bytes()
    saved = save_upload("../../../etc/evil clip.avi", real, videos, "../../juggling fire")
    assert saved.parent.parent == videos and saved.name == "evil clip.avi"
    assert saved.parent.name == "juggling_fire"
    again = save_upload("evil clip.avi", real, videos, "juggling fire")
    assert again.name == "evil clip_1.avi"  # nothing overwritten
    with pytest.raises(UserError, match="not a usable video"):
        save_upload("fake.mp4", b"<html>not a video</html>" * 50, videos, "x")
    with pytest.raises(UserError, match="video extension"):
        save_upload("notes.txt", real, videos, "x")
    long = save_upload("é" * 300 + ".AVI", real, videos, "x")
    assert long.suffix == ".avi" and long.name.startswith("é" * 60) and len(long.name.encode()) <= 124  # kept .avi
    with pytest.raises(UserError, match="no usable characters"):
        save_upload("???.avi", real, videos, "x")
    monkeypatch.setattr("core.media.uploads.MAX_UPLOAD_BYTES", 100)
    with pytest.raises(UserError, match="larger than"):
        save_upload("big.avi", real, videos, "x")
    assert not [p for p in videos.rglob("*") if p.name.startswith(".")]  # rejected files do not linger


def test_the_server_token_is_never_shown() -> None:
    server = ChromaServer(host="chroma.example", port=8443, ssl=True, token="s3cr3t-t0ken")
    assert server.headers() == {"Authorization": "Bearer s3cr3t-t0ken"}
    for text in (repr(server), str(server), server.describe(), str(server_unavailable(OSError("boom")))):
        assert "s3cr3t" not in text


def test_no_user_input_is_evaluated() -> None:
    pattern = re.compile(r"(?<![.\w])(eval|exec)\s*\(|pickle\.loads|yaml\.load\(|shell=True")
    for folder in ("core", "pages"):
        for path in (ROOT / folder).glob("*.py"):
            assert not pattern.search(path.read_text(encoding="utf-8")), path.name
    assert not pattern.search((ROOT / "streamlit_app.py").read_text(encoding="utf-8"))


def test_server_settings_merge_flags_with_the_environment() -> None:
    env = {"CLIP_EXPLORER_CHROMA_HOST": "env-host", "CLIP_EXPLORER_CHROMA_PORT": "9000",
           "CLIP_EXPLORER_CHROMA_SSL": "yes", "CLIP_EXPLORER_CHROMA_TOKEN": "t0k"}  # fmt: skip
    assert ChromaServer.resolve(environ={}) == ()
    (from_env,) = ChromaServer.resolve(environ=env)
    assert (from_env.host, from_env.port, from_env.ssl, from_env.token) == ("env-host", 9000, True, "t0k")
    (flagged,) = ChromaServer.resolve("flag-host", None, None, None, environ=env)
    assert (flagged.host, flagged.port, flagged.ssl, flagged.token) == ("flag-host", 9000, True, "t0k")
    (given,) = ChromaServer.resolve("flag-host", 1234, environ={})
    assert given.describe() == "http://flag-host:1234"


def test_several_servers_come_as_one_comma_separated_list() -> None:
    env = {"CLIP_EXPLORER_CHROMA_HOST": "a:8001, b ,[::1]:8003,a:8001", "CLIP_EXPLORER_CHROMA_PORT": "9000",
           "CLIP_EXPLORER_CHROMA_TOKEN": "t0k"}  # fmt: skip
    servers = ChromaServer.resolve(environ=env)
    assert [(s.host, s.port, s.token) for s in servers] == [
        ("a", 8001, "t0k"),
        ("b", 9000, "t0k"),
        ("::1", 8003, "t0k"),
    ]
    flagged = ChromaServer.resolve("x:1,y", 7000, environ={})
    assert [s.describe() for s in flagged] == ["http://x:1", "http://y:7000"]
    for bad in ("a:b", "a:0", "a:70000", "a b:1", ":8000"):
        with pytest.raises(UserError, match="is not a Chroma server address"):
            ChromaServer.resolve(bad, environ={})


def test_confine_keeps_paths_inside_the_roots(tmp_path: Path) -> None:
    root, outside = tmp_path / "root", tmp_path / "outside"
    (root / "sub").mkdir(parents=True)
    outside.mkdir()
    (root / "escape").symlink_to(outside, target_is_directory=True)
    assert confine(root / "sub", [root], "The videos folder") == (root / "sub").resolve()
    assert confine(root / "sub" / ".." / "new", [root], "The output folder") == (root / "new").resolve()
    assert confine(str(outside), None, "Anything") == outside.resolve()  # no roots: nothing refused
    for path in (outside, root / ".." / "outside", root / "escape", root / "escape" / "x", "/etc"):
        with pytest.raises(UserError, match=r"^The checkpoint .* is outside the folders this app may use") as info:
            confine(path, [root], "The checkpoint")
        assert "--allow-root" in str(info.value) and str(info.value).count(". ") == 0  # one sentence
