"""Model resolution, loading errors in one sentence, and exact fast text encoding."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import open_clip
import pytest
import torch

from core.ground import ModelError
from core.model.embed import (
    DEFAULT_MODEL,
    DEFAULT_PRETRAINED,
    RANDOM_WEIGHTS,
    ClipModel,
    ModelSpec,
    check_weights_available,
    load_model,
)
from tests.tiny_model import CONFIG


def _has_quick_gelu(model: torch.nn.Module) -> bool:
    return any(type(m).__name__ == "QuickGELU" for m in model.modules())


@pytest.fixture(scope="module")
def vit_b32_random():
    """The real ViT-B/32 architecture of the default model, random weights (nothing downloaded)."""
    return load_model(replace(ModelSpec.resolve(), pretrained=RANDOM_WEIGHTS), "cpu")


def test_default_is_openai_vit_b32_with_quickgelu(vit_b32_random) -> None:
    spec = ModelSpec.resolve()
    assert (spec.name, spec.pretrained) == (DEFAULT_MODEL, DEFAULT_PRETRAINED) == ("ViT-B-32-quickgelu", "openai")
    assert open_clip.get_pretrained_cfg(spec.name, spec.pretrained)["quick_gelu"] is True
    assert _has_quick_gelu(vit_b32_random.model)
    assert vit_b32_random.embed_dim == 512 and tuple(vit_b32_random.image_size) == (224, 224)


def test_offline_weights_are_one_clear_sentence() -> None:
    """conftest points the Hugging Face cache at an empty folder and forbids downloads."""
    with pytest.raises(ModelError) as info:
        load_model(ModelSpec.resolve(), "cpu")
    message = str(info.value)
    assert "ViT-B-32-quickgelu" in message and "'openai'" in message and "--pretrained" in message
    assert "\n" not in message


def test_resolution_errors() -> None:
    with pytest.raises(ModelError, match="Unknown model 'NoSuchNet'"):
        ModelSpec.resolve("NoSuchNet")
    with pytest.raises(ModelError, match="neither a pretrained tag"):
        ModelSpec.resolve(DEFAULT_MODEL, "laion9000")
    with pytest.raises(ModelError, match="does not exist"):
        ModelSpec.resolve(DEFAULT_MODEL, "/nowhere/weights.pt")
    with pytest.raises(ModelError, match="needs --pretrained"):
        ModelSpec.resolve("RN50")
    with pytest.raises(ModelError, match="does not match the config file"):
        ModelSpec.resolve("ViT-B-32", "none", CONFIG)


def test_custom_config_and_checkpoint(tiny_spec: ModelSpec, tiny_model, tiny_checkpoint: Path) -> None:
    assert tiny_spec.name == "TinyCLIP-test" and tiny_spec.pretrained == str(tiny_checkpoint.resolve())
    assert tiny_spec.config_path == str(CONFIG.resolve()) and tiny_spec.config_json
    # The model's own preprocessing (32-pixel input here), not a hard-coded 224.
    assert tuple(tiny_model.image_size) == (32, 32)
    assert tiny_model.preprocess_rgb(np.zeros((48, 64, 3), np.uint8)).shape == (3, 32, 32)
    # The spec survives the index metadata round trip, with its identity.
    again = ModelSpec.from_metadata(tiny_spec.to_metadata())
    assert again == tiny_spec and again.identity() == tiny_spec.identity()


def test_bad_checkpoints(tmp_path: Path, tiny_spec: ModelSpec) -> None:
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"\x00garbage" * 100)
    with pytest.raises(ModelError, match="cannot be read"):
        load_model(replace(tiny_spec, pretrained=str(corrupt)), "cpu")
    wrong = tmp_path / "wrong.pt"
    torch.save({"visual.proj": torch.zeros(3, 3)}, wrong)
    with pytest.raises(ModelError, match="does not match the architecture TinyCLIP-test"):
        load_model(replace(tiny_spec, pretrained=str(wrong)), "cpu")


def test_image_embeddings_are_normalised_float32(tiny_model) -> None:
    frames = [np.full((48, 64, 3), c, np.uint8) for c in (0, 128, 255)]
    vectors = tiny_model.encode_rgb(frames)
    assert vectors.dtype == np.float32 and vectors.shape == (3, tiny_model.embed_dim)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


QUERIES = [
    "a",
    "juggling fire",
    "a video of a person wading through water.",
    "Une personne effectuant l'action de sharpening pencil dans un cadre typique",
    "🔥 التلاعب بالنار " + "very long query " * 400,
]


@pytest.mark.parametrize("which", ["tiny", "vit-b-32"])
def test_trimmed_text_encoding_equals_full_context(which: str, tiny_model, vit_b32_random) -> None:
    """Cutting tokens to the longest prompt is exact for CLIP's causal text tower (batched or alone)."""
    model = tiny_model if which == "tiny" else vit_b32_random
    assert model._trim_text
    full = model.encode_texts_full(QUERIES)
    trimmed = model.encode_texts(QUERIES)
    assert np.allclose(trimmed, full, atol=1e-5)
    for i, query in enumerate(QUERIES):
        assert np.allclose(model.encode_texts([query])[0], full[i], atol=1e-5)


def test_batched_normalisation_is_bit_identical_to_the_model_transform(vit_b32_random, tiny_model) -> None:
    """The build prepares uint8 crops in workers and normalises per batch: same numbers, bit for bit."""
    rng = np.random.default_rng(3)
    frames = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in ((256, 340), (480, 272), (31, 45))]
    for model in (vit_b32_random, tiny_model):
        full = torch.stack([model.preprocess_rgb(f) for f in frames])
        prepared = torch.stack([model.prepare_rgb(f) for f in frames])
        assert prepared.dtype == torch.uint8
        assert torch.equal(model._normalise(prepared), full)
        assert np.array_equal(model.encode_images(prepared), model.encode_images(full))


@pytest.mark.parametrize("resize_mode", ["shortest", "longest", "squash"])
def test_worker_geometry_is_bit_identical_to_open_clips_transform(resize_mode: str) -> None:
    """Workers resize and crop with `InputGeometry` (Pillow only, no torch): the same pixels as the
    torchvision/open_clip transform, for every resize mode, both resamplings, square and non-square inputs,
    enlarging, shrinking and padding; and video frames (16:9, 4:3, portrait), whose dropped columns the
    resize skips (`geometry._resize_for_crop`)."""
    from open_clip.transform import PreprocessCfg, image_transform_v2
    from PIL import Image

    from core.media.geometry import InputGeometry
    from core.model.embed import _split_preprocess

    rng = np.random.default_rng(7)
    shapes = [
        (256, 340),
        (480, 272),
        (31, 45),
        (224, 224),
        (100, 400),
        (400, 100),
        (1, 1),
        (223, 225),
        (17, 300),
        (360, 640),
        (240, 320),
        (480, 854),
        (720, 1280),
        (1080, 1920),
        (640, 360),
        (226, 500),
        (225, 224),
    ]
    frames = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in shapes]
    for size in (224, (192, 256), (256, 192), (37, 41)):
        for interpolation in ("bicubic", "bilinear"):
            cfg = PreprocessCfg(size=size, resize_mode=resize_mode, interpolation=interpolation, fill_color=128)
            reference, _, _ = _split_preprocess(image_transform_v2(cfg, is_train=False))
            geometry = InputGeometry.from_preprocess_cfg(cfg)
            assert geometry is not None
            for frame in frames:
                expected = np.asarray(reference(Image.fromarray(frame)), dtype=np.uint8)
                assert np.array_equal(geometry.apply(frame), expected), (size, interpolation, frame.shape)


def test_fp16_stays_within_2e_3_of_fp32(vit_b32_random, tiny_model) -> None:
    """Half weights (the default on CUDA; torch runs them on a CPU too, slowly): cosine deviation ≤ 2e-3."""
    rng = np.random.default_rng(11)
    for model in (vit_b32_random, tiny_model):
        height, width = model.geometry.size
        batch = torch.from_numpy(rng.integers(0, 256, (6, 3, height, width), dtype=np.uint8))
        half = model.with_precision("fp16")
        assert half is not model and half.precision == "fp16" and model.precision == "fp32"
        assert next(half.model.parameters()).dtype == torch.float16
        assert next(model.model.parameters()).dtype == torch.float32  # the shared model is left as it was
        a, b = model.encode_images(batch), half.encode_images(batch)
        assert b.dtype == np.float32 and np.allclose(np.linalg.norm(b, axis=1), 1.0, atol=1e-3)
        assert float(1 - (a * b).sum(axis=1).min()) <= 2e-3
        prompts = ["juggling fire", "a video of a person carving ice."]
        texts, texts_half = model.encode_texts(prompts), half.encode_texts(prompts)
        assert float(1 - (texts * texts_half).sum(axis=1).min()) <= 2e-3
        assert model.with_precision("fp32") is model and model.with_precision("auto") is model  # CPU: auto is fp32
        assert half.with_precision("fp32").precision == "fp32"  # loaded again, not widened from half weights
    with pytest.raises(ModelError, match="Unknown precision"):
        tiny_model.with_precision("int4")


def test_a_checkpoint_is_read_once_and_an_empty_one_is_one_sentence(
    tmp_path: Path, tiny_spec: ModelSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    import core.model.loading

    reads = []
    read = core.model.loading._read_weights

    def counting(path: str) -> dict:
        reads.append(path)
        return read(path)

    monkeypatch.setattr(core.model.loading, "_read_weights", counting)
    model = load_model(tiny_spec, "cpu", towers=("text",))
    model.encode_rgb([np.zeros((8, 8, 3), np.uint8)])  # the image tower comes from the same read
    assert reads == [tiny_spec.pretrained]
    empty = tmp_path / "empty.pt"
    torch.save({}, empty)
    with pytest.raises(ModelError, match="holds no model weights"):
        load_model(replace(tiny_spec, pretrained=str(empty)), "cpu")


def test_weights_in_the_local_cache_pass_the_check_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The check looks where open_clip will: the Hugging Face cache (the test session's is empty, and the hub
    is off limits); with the default model's safetensors there, it passes without asking the hub."""
    from huggingface_hub import constants

    spec = ModelSpec.resolve()
    with pytest.raises(ModelError, match=r"^The weights of ViT-B-32-quickgelu \(pretrained 'openai'\)"):
        check_weights_available(spec)
    snapshot = tmp_path / "models--timm--vit_base_patch32_clip_224.openai" / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    (snapshot / "open_clip_model.safetensors").write_bytes(b"weights")
    (snapshot.parents[1] / "refs").mkdir()
    (snapshot.parents[1] / "refs" / "main").write_text("abc123")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    check_weights_available(spec)
    check_weights_available(ModelSpec.resolve(DEFAULT_MODEL, RANDOM_WEIGHTS))  # nothing to fetch


def _image_tower_in_memory(model) -> bool:
    return not any(p.is_meta for p in model.model.visual.parameters())


def test_a_text_only_model_loads_its_image_tower_on_the_first_image(tiny_spec: ModelSpec, tiny_model) -> None:
    """The shared dashboard answers text queries and Metrics with the text tower alone: the same text
    embeddings, no image weights in memory until an image is encoded, then the same image embeddings."""
    text_only = load_model(tiny_spec, "cpu", towers=("text",))
    assert not text_only.has_image_tower and not _image_tower_in_memory(text_only)
    assert not any(p.is_meta for name, p in text_only.model.named_parameters() if not name.startswith("visual."))
    assert np.array_equal(text_only.encode_texts(QUERIES), tiny_model.encode_texts(QUERIES))
    assert text_only.embed_dim == tiny_model.embed_dim and tuple(text_only.image_size) == (32, 32)
    assert not _image_tower_in_memory(text_only)
    half = text_only.with_precision("fp16")  # made before the image tower: it loads its own, in half
    rng = np.random.default_rng(2)
    batch = torch.from_numpy(rng.integers(0, 256, (5, 3, 32, 32), dtype=np.uint8))
    assert np.array_equal(text_only.encode_images(batch), tiny_model.encode_images(batch))
    assert text_only.has_image_tower and _image_tower_in_memory(text_only)
    assert np.array_equal(half.encode_images(batch), tiny_model.with_precision("fp16").encode_images(batch))
    assert tiny_model.has_image_tower  # the default: both towers, now


@pytest.mark.parametrize("layout", ["zip", "legacy", "safetensors"])
def test_a_checkpoint_loads_as_open_clip_loads_it(tmp_path: Path, tiny_spec: ModelSpec, layout: str) -> None:
    """Assigning the mapped checkpoint tensors gives open_clip's own model bit for bit (weights, causal mask,
    embeddings), for torch's zip and legacy formats and for safetensors."""
    stock = open_clip.create_model(tiny_spec.name, pretrained=tiny_spec.pretrained)
    weights = stock.state_dict()
    path = tmp_path / ("tiny.safetensors" if layout == "safetensors" else "tiny.pt")
    if layout == "safetensors":
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in weights.items()}, path)
    else:
        torch.save(weights, path, _use_new_zipfile_serialization=layout == "zip")
    loaded = load_model(replace(tiny_spec, pretrained=str(path)), "cpu", towers=("text",))
    reference = ClipModel(tiny_spec, stock, torch.device("cpu"))
    assert torch.equal(loaded.model.attn_mask, stock.attn_mask)
    assert np.array_equal(loaded.encode_texts(QUERIES), reference.encode_texts(QUERIES))
    frames = [np.full((40, 50, 3), c, np.uint8) for c in ((220, 40, 30), (30, 60, 220))]
    assert np.array_equal(loaded.encode_rgb(frames), reference.encode_rgb(frames))
    for name, tensor in loaded.model.state_dict().items():
        assert torch.equal(tensor, weights[name]), name


def test_a_text_only_load_still_checks_the_image_weights(tmp_path: Path, tiny_spec: ModelSpec) -> None:
    """A checkpoint whose image tower does not fit is refused when the model loads, not at the first image."""
    weights = torch.load(tiny_spec.pretrained, weights_only=True)
    weights["visual.proj"] = torch.zeros(3, 3)
    other = tmp_path / "other-visual.pt"
    torch.save(weights, other)
    with pytest.raises(ModelError, match="does not match the architecture TinyCLIP-test"):
        load_model(replace(tiny_spec, pretrained=str(other)), "cpu", towers=("text",))
