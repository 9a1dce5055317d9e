"""A model's input geometry (resize, centre crop or pad) as a small picklable value, applied with Pillow only.

The build prepares frames in worker processes that hold no model and never import torch (it would slow
every worker's start): they get an `InputGeometry` and return uint8 arrays at the model's input size.
`InputGeometry.apply` redoes the resize and crop of open_clip's eval transform bit for bit (same Pillow
calls, same size arithmetic as torchvision's ``Resize``/``CenterCrop`` and open_clip's
``ResizeKeepRatio``/``CenterCropOrPad``); ``tests/test_embed.py`` compares the two.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image, ImageOps

RESIZE_MODES = ("shortest", "longest", "squash")
_RESAMPLE = {"bicubic": Image.Resampling.BICUBIC, "bilinear": Image.Resampling.BILINEAR}


@dataclass(frozen=True)
class InputGeometry:
    """How a model's preprocessing maps a frame onto its input: size (height, width), mode, resampling, fill."""

    size: tuple[int, int]
    resize_mode: str = "shortest"
    interpolation: str = "bicubic"
    fill: int = 0

    @classmethod
    def from_preprocess_cfg(cls, cfg: Any) -> InputGeometry | None:
        """From open_clip's `PreprocessCfg` (size, resize_mode, interpolation, fill_color); None if unknown."""
        size = cfg.size if isinstance(cfg.size, (tuple, list)) else (cfg.size, cfg.size)
        mode = cfg.resize_mode or "shortest"
        # open_clip maps anything but "bilinear" (bicubic, random) to bicubic at inference.
        interpolation = "bilinear" if cfg.interpolation == "bilinear" else "bicubic"
        if mode not in RESIZE_MODES or len(size) != 2:
            return None
        return cls((int(size[0]), int(size[1])), mode, interpolation, int(cfg.fill_color or 0))

    def apply(self, rgb: np.ndarray) -> np.ndarray:
        """An RGB uint8 frame (H×W×3) → the model's input, RGB uint8 (h×w×3)."""
        image = Image.fromarray(rgb)
        if image.mode != "RGB":
            image = image.convert("RGB")
        height, width = self.size
        resample = _RESAMPLE[self.interpolation]
        if self.resize_mode == "squash":
            image = _resize(image, (height, width), resample)
        elif self.resize_mode == "longest":
            image = _resize(image, _keep_ratio(image, self.size, longest=1.0), resample)
            image = _centre_crop_or_pad(image, self.size, self.fill)
        else:
            if height == width:
                resized, resample_used = _shortest_edge(image, height), resample
            else:
                # open_clip's non-square "shortest" path uses ResizeKeepRatio's own default: bicubic.
                resized, resample_used = _keep_ratio(image, self.size, longest=0.0), Image.Resampling.BICUBIC
            image = _centre_crop_or_pad(_resize_for_crop(image, resized, resample_used, width), self.size, 0)
        return np.asarray(image, dtype=np.uint8)


def _shortest_edge(image: Image.Image, side: int) -> tuple[int, int]:
    # torchvision's _compute_resized_output_size for a single requested edge.
    w, h = image.size
    short, long = (w, h) if w <= h else (h, w)
    new_short, new_long = side, int(side * long / short)
    new_w, new_h = (new_short, new_long) if w <= h else (new_long, new_short)
    return new_h, new_w


def _keep_ratio(image: Image.Image, target: tuple[int, int], longest: float) -> tuple[int, int]:
    # open_clip's ResizeKeepRatio.get_params without its random factors (eval).
    w, h = image.size
    ratio_h, ratio_w = h / target[0], w / target[1]
    ratio = max(ratio_h, ratio_w) * longest + min(ratio_h, ratio_w) * (1.0 - longest)
    return round(h * 1.0 / ratio), round(w * 1.0 / ratio)


def _resize(image: Image.Image, size: tuple[int, int], resample: Image.Resampling) -> Image.Image:
    height, width = size
    if image.size == (width, height):  # torchvision returns the image untouched
        return image
    return image.resize((width, height), resample)


def _resize_for_crop(image: Image.Image, size: tuple[int, int], resample: Image.Resampling, crop_w: int) -> Image.Image:
    """`_resize(image, size)` then the columns a centre crop `crop_w` wide keeps: bit for bit what the
    resize and `_centre_crop_or_pad` give, for less work.

    Pillow resizes in two passes, horizontal then vertical, each rounded to 8 bits, and a vertical pass
    works on each column alone. So the horizontal pass is made on its own, the columns the crop drops are
    cut, and the vertical pass runs on the rest only (on a 16:9 frame to a square input, 44 % of it). The
    result has the crop's width; its rows are cropped or padded as before (`tests/test_embed.py` compares
    the whole transform with open_clip's).
    """
    height, width = size
    src_w, src_h = image.size
    if crop_w >= width or width == src_w or height == src_h:  # no column dropped, or a single pass anyway
        return _resize(image, size, resample)
    across = image.resize((width, src_h), resample)  # the horizontal pass alone
    left = round((width - crop_w) / 2.0)  # `_centre_crop_or_pad`'s own arithmetic
    return across.crop((left, 0, left + crop_w, src_h)).resize((crop_w, height), resample)


def _centre_crop_or_pad(image: Image.Image, size: tuple[int, int], fill: int) -> Image.Image:
    # torchvision's center_crop (fill 0) and open_clip's center_crop_or_pad (any fill) on a PIL image.
    crop_h, crop_w = size
    w, h = image.size
    if crop_w > w or crop_h > h:
        border = (
            (crop_w - w) // 2 if crop_w > w else 0,
            (crop_h - h) // 2 if crop_h > h else 0,
            (crop_w - w + 1) // 2 if crop_w > w else 0,
            (crop_h - h + 1) // 2 if crop_h > h else 0,
        )
        image = ImageOps.expand(image, border=border, fill=(fill, fill, fill))
        w, h = image.size
        if (w, h) == (crop_w, crop_h):
            return image
    top = round((h - crop_h) / 2.0)
    left = round((w - crop_w) / 2.0)
    return image.crop((left, top, left + crop_w, top + crop_h))
