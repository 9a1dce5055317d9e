"""A real Chroma server (``chroma run`` on 127.0.0.1): build, search and evaluate through it; it goes
away mid-session (one clear sentence) and comes back (the same client works again)."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.analysis.evaluation import evaluate_index
from core.analysis.search import search
from core.ground import IndexUnavailableError
from core.store.catalog import open_index
from core.store.index import ChromaServer, connect
from tests.helpers import ROOT, ChromaProcess, build_into, free_port, run_cli


@pytest.fixture()
def chroma(tmp_path: Path):
    server = ChromaProcess(tmp_path / "chroma-data", free_port())
    server.start()
    yield server
    server.stop()


def test_build_search_evaluate_through_a_server(chroma: ChromaProcess, tmp_path: Path, video_root: Path, tiny_model):
    server = ChromaServer(host="127.0.0.1", port=chroma.port)
    summary = build_into(video_root, tmp_path / "unused-db", tmp_path / "out", model=tiny_model, servers=(server,))
    assert summary.videos_indexed == 12
    assert not (tmp_path / "unused-db").exists()  # nothing written to a local index folder
    index = open_index(connect(tmp_path / "unused-db", server))
    hits = search(tiny_model, index, "a video of a person juggling fire.", k=3)
    assert [h.label for h in hits][:2] == ["juggling fire"] * 2 and hits[2].label != "juggling fire"  # 2 clips
    assert evaluate_index(index, tiny_model).report.precision_at_1 == 1.0
    # The CLI reaches the same server with its flags, and rebuilding adds nothing.
    result = run_cli("search", "juggling fire", "--chroma-host", "127.0.0.1", "--chroma-port", str(chroma.port))
    assert result.returncode == 0, result.stderr
    assert "juggling fire" in result.stdout
    again = build_into(video_root, tmp_path / "unused-db", tmp_path / "out", model=tiny_model, servers=(server,))
    assert again.videos_indexed == 0 and again.videos_already_indexed == 12


def test_server_going_away_and_coming_back(chroma: ChromaProcess, tmp_path: Path, video_root: Path, tiny_model):
    server = ChromaServer(host="127.0.0.1", port=chroma.port)
    build_into(video_root, tmp_path / "db", tmp_path / "out", model=tiny_model, servers=(server,))
    index = open_index(connect(tmp_path / "db", server))
    assert search(tiny_model, index, "fire", k=2)
    chroma.stop()
    with pytest.raises(IndexUnavailableError, match="not answering") as info:
        search(tiny_model, index, "fire", k=2)
    assert "\n" not in str(info.value)
    with pytest.raises(IndexUnavailableError, match="not answering"):
        connect(tmp_path / "db", server)
    chroma.start()  # same data, same port: the very same objects work again
    assert len(search(tiny_model, index, "fire", k=2)) == 2


def test_the_app_through_a_server(chroma: ChromaProcess, tmp_path: Path, video_root: Path, tiny_model) -> None:
    from streamlit.testing.v1 import AppTest

    server = ChromaServer(host="127.0.0.1", port=chroma.port)
    build_into(video_root, tmp_path / "db", tmp_path / "out", model=tiny_model, servers=(server,))
    at = AppTest.from_file(str(ROOT / "streamlit_app.py"), default_timeout=60)
    at.session_state["db"], at.session_state["output"] = str(tmp_path / "db"), str(tmp_path / "out")
    at.session_state["roots"] = [str(tmp_path)]
    at.session_state["servers"] = (server,)
    at.run()
    at.text_input(key="query").input("a video of a person juggling fire.")
    at.form_submit_button[0].click().run()
    assert not at.exception and len(at.image) == 12
    chroma.stop()
    at.run()
    assert not at.exception
    assert any("not answering" in e.value for e in at.sidebar.error)
    chroma.start()
    at.run()
    assert not at.exception and len(at.image) == 12
