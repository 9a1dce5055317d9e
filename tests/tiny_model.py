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

from core.model.demo_model import train_tiny_clip as _train

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


def train_tiny_clip(out_dir: Path | str, seed: int = 0) -> Path:
    """Train the tiny model on the test colours; ``out_dir/tiny_clip.pt`` (core.model.demo_model's trainer)."""
    return _train(out_dir, COLOURS, CONFIG, seed=seed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="output/tiny-model", help="folder for tiny_clip.pt")
    args = parser.parse_args()
    path = train_tiny_clip(args.out)
    print(f"wrote {path}; use: --model-config {CONFIG} --pretrained {path}")


if __name__ == "__main__":
    main()
