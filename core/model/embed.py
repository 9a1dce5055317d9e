"""The CLIP model: which one (`ModelSpec`), loading it once (`load_model`), and encoding (`ClipModel`).

A model is named as open_clip names it, plus either a pretrained tag (downloaded once from
open_clip's hub into the usual cache), a local checkpoint file, or ``none`` (random weights, for
tests and timing). A custom architecture can be given as an open_clip JSON config, registered under
its file name. The default is the reference study's model, OpenAI's ViT-B/32, which was trained
with QuickGELU: hence ``ViT-B-32-quickgelu``.

Everything that can go wrong because of the user (unknown name, weights missing offline, a corrupt
or mismatched checkpoint) becomes a `ModelError` with one sentence; the rest are bugs.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import logging
import os
import socket
import threading
import urllib.parse
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

import numpy as np
from PIL import Image

from core.ground import ModelError
from core.media.geometry import InputGeometry
from core.requests import (  # noqa: F401  (importable from here, as before)
    CHECKPOINT_SUFFIXES,
    DEFAULT_MODEL,
    DEFAULT_PRETRAINED,
    RANDOM_WEIGHTS,
    ModelSpec,
    register_model_config,
)

if TYPE_CHECKING:
    import torch

# torch and open_clip are imported where they are used, not here: the command line answers its argument
# errors, `info` and the offline refusal without paying for them (seconds on a small machine).

TEXT_BATCH = 256
TOWERS = ("text", "image")
# Assigns a model's image tower when it is first needed (None: the model already has it).
ImageTower = Callable[["torch.nn.Module"], None] | None
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


def resolve_device(device: str = "auto") -> torch.device:
    import torch

    device = (device or "auto").lower()
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ModelError("--device cuda was asked for, but no CUDA GPU is available here; use --device cpu.")
    if device not in ("cpu",) and not device.startswith("cuda"):
        raise ModelError(f"Unknown device '{device}': use auto, cpu or cuda.")
    return torch.device(device)


def _checkpoint_problem(path: str, kind: str) -> ModelError:
    """One sentence per way a local checkpoint can be wrong: gone, unreadable, empty, or another architecture."""
    if kind == "gone":
        return ModelError(
            f"The checkpoint {path} is no longer there: put the file back, or rebuild the index with the "
            "weights you have now."
        )
    if kind == "unreadable":
        return ModelError(
            f"The checkpoint {path} cannot be read: it is damaged or not a PyTorch/safetensors weights file."
        )
    if kind == "empty":
        return ModelError(f"The checkpoint {path} holds no model weights.")
    return ModelError(
        f"The checkpoint {Path(path).name} does not match the architecture {kind} (weights missing, unexpected "
        "or of other shapes); pass the --model (or --model-config) it was trained with."
    )


def _load_checkpoint(model: torch.nn.Module, spec: ModelSpec) -> None:
    """Load a local checkpoint into `model` with open_clip's own loader (formats `_read_weights` does not
    read); every user error is one sentence, told apart by where it happens: reading (damaged file), finding
    no weights dict, or matching the architecture ("Error(s) in loading state_dict")."""
    import open_clip

    path = spec.pretrained
    try:
        open_clip.load_checkpoint(model, path, strict=True)
    except (RuntimeError, KeyError, ValueError) as exc:
        if isinstance(exc, RuntimeError) and "state_dict" not in str(exc):
            raise _checkpoint_problem(path, "unreadable") from None
        raise _checkpoint_problem(path, spec.name) from None
    except (StopIteration, AttributeError, TypeError, IndexError):  # an empty dict, a list, a bare tensor...
        raise _checkpoint_problem(path, "empty") from None
    except Exception:  # unpickling, zip, safetensors and I/O errors: the file is not a weights file
        raise _checkpoint_problem(path, "unreadable") from None


def _read_weights(path: str) -> dict[str, torch.Tensor]:
    """A checkpoint's tensors by name, memory-mapped: a tensor's bytes are read from the file only when it is
    used, so loading makes no second copy of the weights and a tower left out costs nothing. (A checkpoint in
    torch's legacy format cannot be mapped and is read whole.) open_clip's wrappers are unwrapped as its
    `load_state_dict` does: a "state_dict" entry, a "module." prefix."""
    import torch

    try:
        if path.endswith(".safetensors"):
            from safetensors.torch import load_file

            checkpoint: Any = load_file(path, device="cpu")
        else:
            try:
                checkpoint = torch.load(path, map_location="cpu", mmap=True, weights_only=True)
            except RuntimeError as exc:
                if "mmap" not in str(exc):
                    raise
                checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # unpickling, zip, safetensors and I/O errors: the file is not a weights file
        raise _checkpoint_problem(path, "unreadable") from None
    if isinstance(checkpoint, dict) and isinstance(checkpoint.get("state_dict"), dict):
        checkpoint = checkpoint["state_dict"]
    if not (
        isinstance(checkpoint, dict) and checkpoint and all(isinstance(v, torch.Tensor) for v in checkpoint.values())
    ):
        raise _checkpoint_problem(path, "empty")
    if next(iter(checkpoint)).startswith("module"):
        checkpoint = {k[7:]: v for k, v in checkpoint.items()}
    return checkpoint


def _in_open_clip_layout(model: torch.nn.Module, weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """`weights` converted as open_clip's `load_checkpoint` converts them before loading (third-party layouts,
    the old text layout, scalar logit scale, position ids, resized position embeddings); only shapes of
    `model` are read, so it may live on the meta device."""
    import torch
    from open_clip.convert import convert_state_dict
    from open_clip.model import convert_to_custom_text_state_dict, resize_pos_embed, resize_text_pos_embed

    m: Any = model
    weights = convert_state_dict(m, dict(weights))
    if "positional_embedding" in weights and not hasattr(m, "positional_embedding"):
        weights = convert_to_custom_text_state_dict(weights)
    for key in ("logit_scale", "logit_bias"):
        param = getattr(m, key, None)
        if key in weights and param is not None and param.ndim != weights[key].ndim:
            weights[key] = weights[key].reshape(param.shape)
    if "logit_bias" not in weights and getattr(m, "logit_bias", None) is not None and "logit_scale" in weights:
        weights["logit_bias"] = torch.zeros_like(weights["logit_scale"])
    position_ids = "text.transformer.embeddings.position_ids"
    if position_ids in weights and not hasattr(m, position_ids):
        del weights[position_ids]
    resize_pos_embed(weights, m)
    resize_text_pos_embed(weights, m)
    return weights


def _assign(model: torch.nn.Module, weights: dict[str, torch.Tensor], device: torch.device) -> None:
    """Make `weights` the model's own tensors (no copy where they already are what the model wants): on
    `device`, in the dtype of the placeholder they replace, contiguous as a parameter made by the model is."""
    wanted = model.state_dict()
    ready = {k: v.to(device=device, dtype=wanted[k].dtype).contiguous() for k, v in weights.items()}
    model.load_state_dict(ready, strict=False, assign=True)


def _causal_masks(model: torch.nn.Module) -> list[str] | None:
    """The names of the model's buffers that are not in a checkpoint, when all are causal attention masks
    (open_clip's text towers); None when there is another kind, that only the model's constructor can make."""
    saved = set(model.state_dict())
    unsaved = [(n, tuple(b.shape)) for n, b in model.named_buffers(remove_duplicate=False) if n not in saved]
    if all(n.rsplit(".", 1)[-1] == "attn_mask" and len(s) == 2 and s[0] == s[1] for n, s in unsaved):
        return [n for n, _ in unsaved]
    return None


IMAGE_TOWER = "visual."  # the prefix of the image tower's weights in open_clip's CLIP models


def _from_checkpoint(spec: ModelSpec, device: torch.device, image_now: bool) -> tuple[torch.nn.Module, ImageTower]:
    """The model of a local checkpoint, with no second copy of its weights: built on the meta device (shapes,
    no memory), then the mapped checkpoint tensors become its parameters. Without `image_now`, the image
    tower stays on the meta device and the function returned assigns it when first needed (its tensors stay
    mapped, unread, until then); with it, that function is None."""
    import open_clip
    import torch

    path = spec.pretrained
    if not Path(path).is_file():
        raise _checkpoint_problem(path, "gone")
    with _quiet_open_clip_logs(), warnings.catch_warnings(), torch.device("meta"):
        warnings.simplefilter("ignore", UserWarning)
        model = open_clip.create_model(spec.name, pretrained=None, device=torch.device("meta"))
    masks = _causal_masks(model)
    if masks is None or Path(path).suffix in (".npz", ".npy"):  # big_vision weights: open_clip converts them
        model = _create_stock(spec, device, None)
        _load_checkpoint(model, spec)
        return model, None
    try:
        weights = _in_open_clip_layout(model, _read_weights(path))
    except ModelError:
        raise
    except (RuntimeError, KeyError, ValueError):
        raise _checkpoint_problem(path, spec.name) from None
    expected = model.state_dict()
    if expected.keys() != weights.keys() or any(weights[k].shape != v.shape for k, v in expected.items()):
        raise _checkpoint_problem(path, spec.name)
    later = (
        {}
        if image_now or not hasattr(model, "visual")
        else {k: v for k, v in weights.items() if k.startswith(IMAGE_TOWER)}
    )
    _assign(model, {k: v for k, v in weights.items() if k not in later}, device)
    for name in masks:  # as open_clip's build_causal_mask makes them: -inf above the diagonal, 0 elsewhere
        owner, _, attr = name.rpartition(".")
        size, dtype = model.get_buffer(name).shape[0], model.get_buffer(name).dtype
        mask = torch.full((size, size), float("-inf"), dtype=dtype, device=device).triu_(1)
        model.get_submodule(owner).register_buffer(attr, mask, persistent=False)
    if not later:
        return model, None

    def load_image_tower(target: torch.nn.Module) -> None:
        _assign(target, later, device)

    return model, load_image_tower


def _weights_unavailable(spec: ModelSpec) -> ModelError:
    return ModelError(
        f"The weights of {spec.name} (pretrained '{spec.pretrained}') are not in the local cache and could not be "
        "downloaded (no internet?): connect once so open_clip can fetch them, or use a local weights file "
        "(on the Build page: 'Pretrained tag or local checkpoint'; on the command line: --pretrained "
        "/path/to/weights.pt), or try the offline demo (Build page, or python -m core demo-model)."
    )


HUB_PROBE_S = 3.0  # how long the hub may take to accept a connection before it counts as unreachable


def _weights_cached(cfg: dict[str, Any]) -> bool:
    """Whether open_clip would find the weights of a pretrained tag (its config `cfg`) without a download:
    in the Hugging Face cache (the safetensors copy it prefers, or the named file), or where it keeps the
    files it downloads from a URL."""
    if cfg.get("file"):
        return Path(cfg["file"]).is_file()
    if cfg.get("hf_hub"):
        from huggingface_hub import try_to_load_from_cache
        from open_clip.constants import HF_SAFE_WEIGHTS_NAME, HF_WEIGHTS_NAME

        repo, filename = os.path.split(cfg["hf_hub"])
        filename = filename or HF_WEIGHTS_NAME
        names = [filename]
        if filename == HF_WEIGHTS_NAME:
            names.insert(0, HF_SAFE_WEIGHTS_NAME)
        elif filename.endswith((".bin", ".pth")):
            names.insert(0, filename[:-4] + ".safetensors")
        if any(isinstance(try_to_load_from_cache(repo, name), str) for name in names):
            return True
    url = str(cfg.get("url", ""))
    return bool(url) and (Path("~/.cache/clip").expanduser() / os.path.basename(url)).is_file()


def _hub_reachable(timeout_s: float = HUB_PROBE_S) -> bool:
    """Whether the Hugging Face hub accepts a connection now (behind a proxy: assumed, the download will
    tell). Bounded in time, name resolution included, so that a machine without a network answers fast."""
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return False
    if any(os.environ.get(name) for name in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return True
    address = urllib.parse.urlsplit(constants.ENDPOINT)
    host, port = address.hostname or "", address.port or (80 if address.scheme == "http" else 443)
    reached = threading.Event()

    def probe() -> None:
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=timeout_s):
            reached.set()

    threading.Thread(target=probe, name="hub-probe", daemon=True).start()
    return reached.wait(timeout_s)


def check_weights_available(spec: ModelSpec) -> None:
    """Refuse at once, in one sentence, a model whose weights cannot be had: a checkpoint file that is gone,
    or a pretrained tag whose weights are neither in the local cache nor downloadable now (offline, or the
    hub unreachable). Loads nothing; the network is asked only when the cache lacks the weights. Front doors
    call it before the slow steps of a build, so that an offline first build is refused in seconds."""
    if spec.pretrained in (RANDOM_WEIGHTS, ""):
        return
    if spec.is_checkpoint:
        if not Path(spec.pretrained).is_file():
            raise _checkpoint_problem(spec.pretrained, "gone")
        return
    import open_clip

    cfg = open_clip.get_pretrained_cfg(spec.name, spec.pretrained)
    if cfg and not _weights_cached(cfg) and not _hub_reachable():
        raise _weights_unavailable(spec)


class _FromOpenClip(logging.Filter):
    """Drops records logged by open_clip's own modules (it logs through the root logger)."""

    def __init__(self) -> None:
        import open_clip

        super().__init__()
        self.folder = str(Path(open_clip.__file__).resolve().parent)

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(Path(record.pathname).resolve()).startswith(self.folder)


@contextlib.contextmanager
def _quiet_open_clip_logs() -> Any:
    """While a model is created, open_clip warns about weights it did not load (expected before a
    local checkpoint is loaded) or could not download (that becomes a ModelError). Only its records
    are dropped, and only for the duration: other code's logs, in any thread, are untouched."""
    root = logging.getLogger()
    quiet = _FromOpenClip()
    root.addFilter(quiet)
    try:
        yield
    finally:
        root.removeFilter(quiet)


def _create_stock(spec: ModelSpec, device: torch.device, tag: str | None) -> torch.nn.Module:
    """open_clip's own model: random weights, or the pretrained tag's, downloaded once and loaded by open_clip."""
    import open_clip

    model_cfg = open_clip.get_model_config(spec.name) or {}
    tag_cfg = open_clip.get_pretrained_cfg(spec.name, tag) if tag else {}
    # Weights trained with QuickGELU (OpenAI's) are wrong under plain GELU; open_clip only warns.
    quick_gelu = bool(tag_cfg.get("quick_gelu", False)) and not model_cfg.get("quick_gelu", False)
    try:
        with _quiet_open_clip_logs(), warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            model = open_clip.create_model(spec.name, pretrained=tag, device=device, force_quick_gelu=quick_gelu)
    except RuntimeError as exc:
        if tag and "download" in str(exc).lower():
            raise _weights_unavailable(spec) from None
        raise
    return model


def _create(spec: ModelSpec, device: torch.device, image_now: bool) -> tuple[torch.nn.Module, ImageTower]:
    if spec.is_checkpoint:
        return _from_checkpoint(spec, device, image_now)
    tag = spec.pretrained if spec.pretrained != RANDOM_WEIGHTS else None
    return _create_stock(spec, device, tag), None


PRECISIONS = ("auto", "fp32", "fp16")


def resolve_precision(precision: str | None, device: torch.device) -> str:
    """fp32 or fp16: "auto" is fp16 on a CUDA GPU (half weights: about 7x the fp32 speed there, cosine
    deviation from fp32 below 1e-6 on ViT-B/32) and fp32 elsewhere (a CPU gains nothing from fp16)."""
    value = (precision or "auto").strip().lower()
    if value not in PRECISIONS:
        raise ModelError(f"Unknown precision {precision!r}: use auto, fp32 or fp16.")
    if value == "auto":
        return "fp16" if device.type == "cuda" else "fp32"
    return value


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
        # torchvision's to_tensor divides by 255 in float, Normalize subtracts and divides in place. A uint8
        # tensor divided by 255 is promoted to float in the same pass: the same numbers, one pass fewer.
        mean, std = self._mean.to(batch.device), self._std.to(batch.device)
        return batch.div(255).sub_(mean).div_(std)

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
    model, image_tower = _create(spec, torch_device, "image" in towers)
    if wanted == "fp16":
        model = model.half()
    return ClipModel(spec, model, torch_device, wanted, image_tower)
