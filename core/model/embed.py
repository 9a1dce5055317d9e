"""A loaded CLIP model (`ClipModel`: preprocessing, image and text encoding) and `load_model`, which makes one."""

from __future__ import annotations

import copy
import functools
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

import numpy as np
from PIL import Image

from core.media.geometry import InputGeometry
from core.model.loading import ImageTower, create_module, resolve_device, resolve_precision
from core.model.loading import check_weights_available as check_weights_available
from core.requests import DEFAULT_MODEL as DEFAULT_MODEL
from core.requests import DEFAULT_PRETRAINED as DEFAULT_PRETRAINED
from core.requests import RANDOM_WEIGHTS as RANDOM_WEIGHTS
from core.requests import ModelSpec as ModelSpec

if TYPE_CHECKING:
    import torch

# torch and open_clip are imported where they are used, not here: the command line answers its argument
# errors, `info` and the offline refusal without paying for them.

TEXT_BATCH = 256
TOWERS = ("text", "image")
_P = ParamSpec("_P")
_R = TypeVar("_R")


def _inference_mode(fn: Callable[_P, _R]) -> Callable[_P, _R]:
    """`torch.inference_mode()` as a decorator that imports torch when called, not when the module loads."""

    @functools.wraps(fn)
    def run(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        import torch

        with torch.inference_mode():
            return fn(*args, **kwargs)

    return run


class ClipModel:
    """A loaded CLIP model with its own preprocessing and tokenizer; encodes to normalised float32.

    `precision` is the dtype of the weights ("fp32" or "fp16"); inputs are normalised in float32 on the
    model's device and cast to it, and embeddings always come back as float32.

    `image_tower`: for a model loaded without its image tower, what loads it; `encode_images` calls it once,
    first (see `load_image_tower`).
    """

    def __init__(
        self,
        spec: ModelSpec,
        model: torch.nn.Module,
        device: torch.device,
        precision: str = "fp32",
        image_tower: ImageTower = None,
    ) -> None:
        import open_clip

        self.spec = spec
        self._image_tower = image_tower
        self._image_lock = threading.Lock()
        self.device = device
        self.precision = precision
        # An open_clip model: open_clip ships no type information, and torch.nn.Module's attributes type as
        # Tensor | Module, so it is Any here.
        self.model: Any = model.eval()
        preprocess_cfg = open_clip.transform.PreprocessCfg(**open_clip.get_model_preprocess_cfg(model))
        self.preprocess = open_clip.transform.image_transform_v2(preprocess_cfg, is_train=False)
        self.image_size = preprocess_cfg.size
        split, mean, std = _split_preprocess(self.preprocess)
        # What worker processes need to prepare inputs without the model (None: a transform that does not
        # split into geometry + normalisation; frames are then preprocessed whole, in this process).
        self.geometry = InputGeometry.from_preprocess_cfg(preprocess_cfg) if split is not None else None
        self._mean = mean.to(device) if mean is not None else None
        self._std = std.to(device) if std is not None else None
        self.embed_dim = int(self._probe_dim())
        self._tokenizer: Any = None  # made on first use: image-only work (a build) never pays for it
        self._trim: bool | None = None

    @property
    def dtype(self) -> torch.dtype:
        import torch

        return torch.float16 if self.precision == "fp16" else torch.float32

    def with_precision(self, precision: str) -> ClipModel:
        """This model in `precision` ("fp32", "fp16" or "auto"): itself when it already is, else another one;
        the original, perhaps shared by a running app, is left as it is. fp16 is a half copy; fp32 from a
        half model is loaded again from its weights (half weights cannot give the float32 ones back)."""
        wanted = resolve_precision(precision, self.device)
        if wanted == self.precision:
            return self
        if wanted == "fp32":
            return load_model(self.spec, str(self.device), "fp32")
        return ClipModel(self.spec, copy.deepcopy(self.model).half(), self.device, wanted, self._image_tower)

    @property
    def has_image_tower(self) -> bool:
        """Whether the image tower's weights are loaded (a text-only model loads them on its first image)."""
        return self._image_tower is None

    def load_image_tower(self) -> None:
        """Load the image tower if it was left out; nothing otherwise. Safe from several threads at once."""
        if self._image_tower is None:
            return
        with self._image_lock:
            if self._image_tower is not None:
                self._image_tower(self.model)
                self._image_tower = None

    def _probe_dim(self) -> int:
        import torch

        projection = getattr(self.model, "text_projection", None)
        if isinstance(projection, torch.nn.Linear):
            return projection.out_features
        if isinstance(projection, torch.Tensor):
            return projection.shape[1]
        return self.encode_texts_full(["a"]).shape[1]

    @property
    def tokenizer(self) -> Any:
        import open_clip

        if self._tokenizer is None:
            self._tokenizer = open_clip.get_tokenizer(self.spec.name)
        return self._tokenizer

    @property
    def _trim_text(self) -> bool:
        # Cutting the token sequence to the longest prompt is exact only for a causal text tower
        # pooled at the end-of-text token, with zero padding (open_clip's CLIP + SimpleTokenizer).
        import open_clip

        if self._trim is None:
            m = self.model
            self._trim = (
                isinstance(m, open_clip.CLIP)
                and isinstance(self.tokenizer, open_clip.SimpleTokenizer)
                and getattr(m, "attn_mask", None) is not None
                and getattr(m, "text_pool_type", "") in ("argmax", "eos")
            )
        return self._trim

    def preprocess_rgb(self, rgb: np.ndarray) -> torch.Tensor:
        """One RGB uint8 frame → the model's input tensor (its own resize, crop and normalisation)."""
        return self.preprocess(Image.fromarray(rgb))

    def prepare_rgb(self, rgb: np.ndarray) -> torch.Tensor:
        """The per-image part of the model's preprocessing (resize, crop) → a uint8 C×H×W tensor.

        The float conversion and normalisation are left to `encode_images`, done once per batch on the
        model's device: the same arithmetic as the model's own transform (bit for bit), at a fraction of
        the cost. Models whose transform does not split so simply get the full float tensor here.
        """
        import torch

        if self.geometry is None:
            return self.preprocess_rgb(rgb)
        return torch.from_numpy(np.ascontiguousarray(self.geometry.apply(rgb).transpose(2, 0, 1)))

    def _normalise(self, batch: torch.Tensor) -> torch.Tensor:
        import torch

        if batch.dtype != torch.uint8 or self._mean is None or self._std is None:
            return batch
        # torchvision's to_tensor converts to float and divides by 255, Normalize subtracts and divides: the
        # same operations in place. (uint8 divided by 255 in one promoting pass gives the same numbers but is
        # not vectorised: 1.5–2.3× slower on a CPU, one thread.)
        mean, std = self._mean.to(batch.device), self._std.to(batch.device)
        return batch.to(torch.float32).div_(255).sub_(mean).div_(std)

    @_inference_mode
    def encode_images(self, batch: torch.Tensor) -> np.ndarray:
        """A batch of prepared (uint8) or preprocessed (float) images → L2-normalised float32 (N × D).

        A pinned CPU batch is copied to the GPU asynchronously; normalisation runs on the model's device.
        """
        import torch.nn.functional as F

        self.load_image_tower()
        inputs = self._normalise(batch.to(self.device, non_blocking=batch.is_pinned()))
        features = self.model.encode_image(inputs.to(self.dtype))
        return F.normalize(features.float(), dim=-1).cpu().numpy()

    def encode_rgb(self, frames: list[np.ndarray]) -> np.ndarray:
        import torch

        return self.encode_images(torch.stack([self.prepare_rgb(f) for f in frames]))

    def tokenize(self, texts: list[str]) -> torch.Tensor:
        return self.tokenizer(texts)

    def context_cut(self, texts: list[str]) -> int | None:
        """The model's text context (in tokens) when one of `texts` fills it (so its end was cut off),
        else None. The tokenizer pads a text that fits with zeros; one that does not ends at the last slot."""
        tokens = self.tokenize(list(texts))
        if not len(tokens) or not bool((tokens[:, -1] != 0).any()):
            return None
        return int(tokens.shape[1])

    @_inference_mode
    def encode_texts(self, texts: list[str]) -> np.ndarray:
        """Texts → L2-normalised float32 embeddings, in batches, each cut to its longest prompt."""
        import torch.nn.functional as F

        out = []
        for start in range(0, len(texts), TEXT_BATCH):
            tokens = self.tokenize(list(texts[start : start + TEXT_BATCH])).to(self.device)
            features = self._encode_trimmed(tokens) if self._trim_text else self.model.encode_text(tokens)
            out.append(F.normalize(features.float(), dim=-1).cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, self.embed_dim), np.float32)

    @_inference_mode
    def encode_texts_full(self, texts: list[str]) -> np.ndarray:
        """open_clip's stock `encode_text` on the full context: the reference for `encode_texts`."""
        import torch.nn.functional as F

        tokens = self.tokenize(list(texts)).to(self.device)
        return F.normalize(self.model.encode_text(tokens).float(), dim=-1).cpu().numpy()

    def _encode_trimmed(self, tokens: torch.Tensor) -> torch.Tensor:
        # open_clip's CLIP.encode_text always runs the full 77-token context; this is its body (checked
        # against open_clip 3.3.0, and by tests against encode_texts_full) on the trimmed tokens, which
        # makes a query about 2.5x faster. text_global_pool is open_clip's own pooling function.
        import torch
        from open_clip.transformer import text_global_pool

        m = self.model
        length = max(1, int((tokens != 0).sum(dim=1).max()))
        tokens = tokens[:, :length]
        cast_dtype = m.transformer.get_cast_dtype()
        x = m.token_embedding(tokens).to(cast_dtype) + m.positional_embedding[:length].to(cast_dtype)
        x = m.transformer(x, attn_mask=m.attn_mask[:length, :length])
        x = m.ln_final(x)
        x = text_global_pool(x, tokens, m.text_pool_type, eos_token_id=getattr(m, "text_eos_id", None))
        projection = m.text_projection
        if projection is not None:
            x = projection(x) if isinstance(projection, torch.nn.Linear) else x @ projection
        return x


def _split_preprocess(transform: Any) -> tuple[Any, torch.Tensor | None, torch.Tensor | None]:
    """Split open_clip's eval transform into (PIL geometry, mean, std) when it ends in ToTensor, Normalize."""
    import torch
    from torchvision import transforms as T

    steps = list(getattr(transform, "transforms", []))
    tensor_at = next((i for i, step in enumerate(steps) if isinstance(step, T.ToTensor)), None)
    if tensor_at is None or len(steps) != tensor_at + 2 or not isinstance(steps[-1], T.Normalize):
        return None, None, None
    normalize = steps[-1]
    mean = torch.as_tensor(normalize.mean, dtype=torch.get_default_dtype()).view(-1, 1, 1)
    std = torch.as_tensor(normalize.std, dtype=torch.get_default_dtype()).view(-1, 1, 1)
    return T.Compose(steps[:tensor_at]), mean, std


def load_model(
    spec: ModelSpec, device: str = "auto", precision: str = "auto", towers: Sequence[str] = TOWERS
) -> ClipModel:
    """Build the model and its weights once; the caller keeps it and passes it around.

    `precision` "auto" gives half weights on a CUDA GPU and float32 elsewhere (see `resolve_precision`).
    `towers`: the towers loaded now; ("text",) leaves the image tower out until the first image is encoded.
    Only a local checkpoint can leave it out (its tensors are mapped, and read when used); a pretrained tag's
    weights, which open_clip loads itself, and random weights come whole.
    """
    if "text" not in towers or set(towers) - set(TOWERS):
        raise ValueError(f"towers must be ('text',) or {TOWERS}, not {towers!r}")
    spec.ensure_registered()
    torch_device = resolve_device(device)
    wanted = resolve_precision(precision, torch_device)
    model, image_tower = create_module(spec, torch_device, "image" in towers)
    if wanted == "fp16":
        model = model.half()
    return ClipModel(spec, model, torch_device, wanted, image_tower)
