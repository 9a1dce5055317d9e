"""A tiny CLIP trained in seconds, so every page and command can be tried offline.

Real CLIP weights are downloaded once from open_clip's hub; without internet there is nothing to
load. The demo model is a real open_clip architecture (a ViT with 32-pixel input and a 2-layer text
tower) trained here, on synthetic images, to map each label to the colour of its sample clips
(`core.media.samples.label_colour`). On the sample clips it therefore scores well; on real videos its
scores mean nothing. The tests train the same way on their own labels and colours: a BGR/RGB swap
anywhere in the pipeline sends red clips to the blue label and fails them.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from core.ground import atomic_path, write_text_atomic
from core.model.embed import RANDOM_WEIGHTS, ModelSpec, load_model
from core.model.prompts import PROMPT_SETS

if TYPE_CHECKING:
    import torch

DEMO_MODEL_NAME = "TinyCLIP-demo"
CHECKPOINT_NAME = "tiny_clip.pt"
# open_clip's config format; QuickGELU like OpenAI's weights, tiny widths so training takes seconds.
TINY_CONFIG: dict[str, object] = {
    "embed_dim": 32,
    "quick_gelu": True,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "head_width": 32, "patch_size": 8},
    "text_cfg": {"context_length": 32, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}
STEPS = 160
_MEAN = (0.48145466, 0.4578275, 0.40821073)  # open_clip.OPENAI_DATASET_MEAN
_STD = (0.26862954, 0.26130258, 0.27577711)  # open_clip.OPENAI_DATASET_STD


def training_templates() -> list[str]:
    """Every prompt the app offers, so any prompt set scores the demo model sensibly."""
    return ["{label}", *(t for prompts in PROMPT_SETS.values() for t in prompts.templates)]


def _batch(
    rng: np.random.Generator, colours: Sequence[tuple[int, int, int]], n: int, size: int
) -> tuple[torch.Tensor, torch.Tensor]:
    y = rng.integers(0, len(colours), n)
    base = np.array([colours[i] for i in y], np.float32)[:, :, None, None]
    x = base + rng.normal(0, 20, (n, 3, 1, 1)) + rng.normal(0, 12, (n, 3, size, size))
    for i in range(n):  # a white or black square, like the moving square of the sample clips
        side = int(rng.integers(size // 8, size // 2))
        r, c = rng.integers(0, size - side, 2)
        x[i, :, r : r + side, c : c + side] = 255 if rng.random() < 0.5 else 0
    import torch

    x = np.clip(x, 0, 255) / 255.0
    mean = torch.tensor(_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(_STD).view(1, 3, 1, 1)
    return (torch.tensor(x, dtype=torch.float32) - mean) / std, torch.tensor(y)


def write_config(path: Path | str) -> Path:
    """The demo architecture as an open_clip JSON config (open_clip names the model after the file)."""
    return write_text_atomic(path, json.dumps(TINY_CONFIG, indent=4) + "\n")


def train_tiny_clip(
    out_dir: Path | str,
    colours: Mapping[str, tuple[int, int, int]],
    config: Path | str,
    steps: int = STEPS,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> Path:
    """Train the architecture of `config` to match each label to its RGB colour; returns
    ``out_dir/tiny_clip.pt``. Seeded: the same inputs give the same weights. `progress` is told
    (steps done, steps) after each training step."""
    import torch
    import torch.nn.functional as F

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    clip = load_model(ModelSpec.resolve(None, RANDOM_WEIGHTS, str(config)), "cpu")
    model: Any = clip.model.train()  # an open_clip CLIP (nn.Module attributes are typed as Tensor | Module)
    labels = list(colours)
    palette = [colours[label] for label in labels]
    size = int(clip.image_size[0]) if isinstance(clip.image_size, tuple) else int(clip.image_size)
    templates = training_templates()
    optimiser = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.0)
    for step in range(steps):
        images, targets = _batch(rng, palette, 64, size)
        template = templates[step % len(templates)]
        tokens = clip.tokenize([template.replace("{label}", label) for label in labels])
        image_features = F.normalize(model.encode_image(images), dim=-1)
        text_features = F.normalize(model.encode_text(tokens), dim=-1)
        loss = F.cross_entropy(20.0 * image_features @ text_features.T, targets)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        if progress is not None:
            progress(step + 1, steps)
    model.eval()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / CHECKPOINT_NAME
    with atomic_path(path) as tmp:
        torch.save(model.state_dict(), tmp)
    return path


def make_demo_model(
    out_dir: Path | str,
    labels: Sequence[str],
    steps: int = STEPS,
    progress: Callable[[int, int], None] | None = None,
) -> ModelSpec:
    """Train the demo model for `labels` (the sample clips' colours) into `out_dir`, in `steps` training
    steps (`progress` is told each one); its ModelSpec."""
    from core.media.samples import label_colour

    out = Path(out_dir)
    config = write_config(out / f"{DEMO_MODEL_NAME}.json")
    colours = {label: label_colour(label) for label in labels}
    checkpoint = train_tiny_clip(out, colours, config, steps=steps, progress=progress)
    return ModelSpec.resolve(None, str(checkpoint), str(config))
