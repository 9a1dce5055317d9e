"""The GPU path (issue 13), run where a CUDA GPU is present and skipped elsewhere (CI has none).

Checks the three things a CPU cannot: uint8 batches reach a CUDA model (pinned or not) and are
normalised on the device; fp16, the CUDA default, stays within 2e-3 (cosine) of fp32; a whole build on
CUDA with process workers indexes the same frames, with the same vectors to that tolerance, as on a CPU.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from core.engines.build import default_batch_size
from core.model.embed import RANDOM_WEIGHTS, ModelSpec, load_model, resolve_device
from core.store.catalog import open_index
from core.store.index import connect
from tests.helpers import build_into

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU here")


def _max_cosine_gap(a: np.ndarray, b: np.ndarray) -> float:
    return float(1 - (a * b).sum(axis=1).min())


def test_auto_means_cuda_fp16_with_the_gpu_batch() -> None:
    spec = replace(ModelSpec.resolve(), pretrained=RANDOM_WEIGHTS)
    model = load_model(spec, "auto")
    assert resolve_device("auto").type == "cuda" and model.device.type == "cuda"
    assert model.precision == "fp16" and default_batch_size(model) == 256


def test_uint8_batches_pinned_or_not_match_the_cpu_within_2e_3() -> None:
    torch.manual_seed(0)
    spec = replace(ModelSpec.resolve(), pretrained=RANDOM_WEIGHTS)
    cpu = load_model(spec, "cpu", "fp32")
    state = cpu.model.state_dict()
    rng = np.random.default_rng(3)
    batch = torch.from_numpy(rng.integers(0, 256, (12, 3, 224, 224), dtype=np.uint8))
    reference = cpu.encode_images(batch)
    texts_reference = cpu.encode_texts(["juggling fire", "a video of a person carving ice."])
    for precision in ("fp32", "fp16"):
        gpu = load_model(spec, "cuda", precision)
        gpu.model.load_state_dict(state)  # the CPU model's random weights (cast to half in fp16)
        for inputs in (batch, batch.pin_memory()):
            out = gpu.encode_images(inputs)
            assert out.dtype == np.float32 and np.allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-3)
            assert _max_cosine_gap(reference, out) <= 2e-3, precision
        texts = gpu.encode_texts(["juggling fire", "a video of a person carving ice."])
        assert _max_cosine_gap(texts_reference, texts) <= 2e-3, precision


def test_a_cuda_build_with_process_workers_equals_the_cpu_build(
    tmp_path: Path, video_root: Path, tiny_spec: ModelSpec
) -> None:
    cpu = load_model(tiny_spec, "cpu", "fp32")
    gpu = load_model(tiny_spec, "cuda")  # auto: fp16 on CUDA
    assert gpu.precision == "fp16"
    for name, model in (("cpu", cpu), ("cuda", gpu)):
        build_into(video_root, tmp_path / name, tmp_path / f"out-{name}", model=model, frames="uniform:3",
                   device=str(model.device), precision=model.precision, workers=2)  # fmt: skip
    a = open_index(connect(tmp_path / "cpu")).contents()
    b = open_index(connect(tmp_path / "cuda")).contents()
    assert a.ids == b.ids and len(a.ids) == 36
    assert _max_cosine_gap(a.embeddings, b.embeddings) <= 2e-3
