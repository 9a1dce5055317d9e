"""A tiny CLIP that really sees colour, trained in seconds on synthetic images.

Tests need a real open_clip model that is fast and never downloaded, and that fails loudly if the
pipeline swaps colour channels: this one is trained to map each test label to a colour, so a
BGR/RGB mix-up sends red clips to the blue label. The architecture is `assets/TinyCLIP-test.json`
(ViT with 32-pixel input, 2-layer text tower); training is seeded and takes a few seconds on a CPU.

Run ``python -m tests.tiny_model --out DIR`` to write the checkpoint for trying the CLI offline.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import open_clip
import torch
import torch.nn.functional as F

from core.embed import RANDOM_WEIGHTS, ModelSpec, load_model
from core.prompts import PROMPT_SETS

CONFIG = Path(__file__).parent / "assets" / "TinyCLIP-test.json"
MODEL_NAME = CONFIG.stem

# Test labels (real Kinetics-700 names) and the RGB colour of their synthetic clips. Red/blue and
# yellow/cyan trade places under a BGR/RGB swap; green and magenta do not.
COLOURS: dict[str, tuple[int, int, int]] = {
    "juggling fire": (220, 40, 30),
    "wading through water": (30, 60, 220),
    "golf chipping": (40, 200, 60),
    "carving ice": (40, 210, 220),
    "wood burning (art)": (230, 210, 40),
    "bathing dog": (200, 50, 200),
}
TEMPLATES = [
    "{label}",
    *PROMPT_SETS["english"].templates,
    *PROMPT_SETS["reference-fr"].templates,
    *PROMPT_SETS["kinetics-ensemble"].templates,
]
STEPS = 160


def _batch(rng: np.random.Generator, labels: list[str], n: int, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    y = rng.integers(0, len(labels), n)
    base = np.array([COLOURS[labels[i]] for i in y], np.float32)[:, :, None, None]
    x = base + rng.normal(0, 20, (n, 3, 1, 1)) + rng.normal(0, 12, (n, 3, size, size))
    for i in range(n):  # a white or black square, like the moving square of the test clips
        side = int(rng.integers(size // 8, size // 2))
        r, c = rng.integers(0, size - side, 2)
        x[i, :, r : r + side, c : c + side] = 255 if rng.random() < 0.5 else 0
    x = np.clip(x, 0, 255) / 255.0
    mean = torch.tensor(open_clip.OPENAI_DATASET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(open_clip.OPENAI_DATASET_STD).view(1, 3, 1, 1)
    return (torch.tensor(x, dtype=torch.float32) - mean) / std, torch.tensor(y)


def train_tiny_clip(out_dir: Path | str, steps: int = STEPS, seed: int = 0) -> Path:
    """Train the tiny model and save its weights to ``out_dir/tiny_clip.pt``; returns the path."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    clip = load_model(ModelSpec.resolve(None, RANDOM_WEIGHTS, CONFIG), "cpu")
    model = clip.model.train()
    labels = list(COLOURS)
    size = int(clip.image_size[0]) if isinstance(clip.image_size, tuple) else int(clip.image_size)
    optimiser = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.0)
    for step in range(steps):
        images, targets = _batch(rng, labels, 64, size)
        template = TEMPLATES[step % len(TEMPLATES)]
        tokens = clip.tokenize([template.replace("{label}", label) for label in labels])
        image_features = F.normalize(model.encode_image(images), dim=-1)
        text_features = F.normalize(model.encode_text(tokens), dim=-1)
        loss = F.cross_entropy(20.0 * image_features @ text_features.T, targets)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    model.eval()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "tiny_clip.pt"
    torch.save(model.state_dict(), path)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="output/tiny-model", help="folder for tiny_clip.pt")
    args = parser.parse_args()
    path = train_tiny_clip(args.out)
    print(f"wrote {path}; use: --model-config {CONFIG} --pretrained {path}")


if __name__ == "__main__":
    main()
