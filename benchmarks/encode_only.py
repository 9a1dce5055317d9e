"""The baseline of the whole-process figure: a process that loads the model and encodes N images in batches.

``python -m benchmarks.encode_only --pretrained CKPT --images 240`` does, from start to exit, what a build
of N one-frame videos cannot avoid: start Python, import torch and open_clip, load the model, and run
`encode_images` on N ready uint8 inputs in batches of the build's size (no decoding, no index).
"""

from __future__ import annotations

import argparse
import sys

import torch

from core.engines.config import default_batch_size  # not core.engines.build: that would import the store
from core.model.embed import ModelSpec, load_model
from core.runtime import configure_runtime


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None)
    parser.add_argument("--pretrained", required=True)
    parser.add_argument("--model-config", default=None)
    parser.add_argument("--images", type=int, default=240)
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", default="auto")
    args = parser.parse_args(argv)
    configure_runtime()
    model = load_model(ModelSpec.resolve(args.model, args.pretrained, args.model_config), args.device, args.precision)
    batch_size = args.batch_size or default_batch_size(model)
    height, width = model.geometry.size if model.geometry is not None else (224, 224)
    generator = torch.Generator().manual_seed(0)
    inputs = torch.randint(0, 256, (args.images, 3, height, width), dtype=torch.uint8, generator=generator)
    done = 0
    for start in range(0, args.images, batch_size):
        done += len(model.encode_images(inputs[start : start + batch_size]))
    print(done)
    return 0


if __name__ == "__main__":
    sys.exit(main())
