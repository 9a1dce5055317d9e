"""Session fixtures: the tiny trained CLIP, generated videos, a built index. All offline."""

from __future__ import annotations

import os
import signal
import tempfile

# Never reach a model hub from the tests, whatever the machine can reach, and never find real
# weights a developer may have cached: the tests see an empty Hugging Face cache.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_HOME"] = tempfile.mkdtemp(prefix="clip-explorer-hf-")

from pathlib import Path

import pytest

from core.model.embed import ModelSpec, load_model
from core.runtime import configure_runtime
from tests.helpers import build_into, make_labelled_folder
from tests.tiny_model import CONFIG, train_tiny_clip

configure_runtime()  # the tests are a front door too: quiet FFmpeg, one OpenCV thread, no telemetry


def pytest_configure(config: pytest.Config) -> None:
    # A background job of a non-interactive shell starts with Ctrl-C ignored, and every process started
    # from it inherits that: the builds the Ctrl-C tests interrupt would run to the end. A handled signal
    # is reset to its default in a started program, so handling it here gives them a terminal's Ctrl-C.
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_tiny_clip(tmp_path_factory.mktemp("tiny-model"))


@pytest.fixture(scope="session")
def tiny_spec(tiny_checkpoint: Path) -> ModelSpec:
    return ModelSpec.resolve(None, str(tiny_checkpoint), CONFIG)


@pytest.fixture(scope="session")
def tiny_model(tiny_spec: ModelSpec):
    return load_model(tiny_spec, "cpu")


@pytest.fixture(scope="session")
def video_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """6 labels × 2 clips, folder-per-label layout (read-only for tests: copy before changing)."""
    root = tmp_path_factory.mktemp("videos")
    make_labelled_folder(root, per_class=2)
    return root


@pytest.fixture(scope="session")
def built_index(tmp_path_factory: pytest.TempPathFactory, video_root: Path, tiny_model):
    """The generated videos indexed once with the tiny model, `uniform:3` frames (read-only)."""
    work = tmp_path_factory.mktemp("built")
    summary = build_into(video_root, work / "db", work / "output", frames="uniform:3", model=tiny_model, batch_size=8)
    return {"db": work / "db", "output": work / "output", "summary": summary}
