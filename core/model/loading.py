"""Loading a model's weights: the device and precision, local checkpoints (memory-mapped, one sentence per way
they can be wrong), the pretrained tags open_clip fetches, and the check that the weights can be had at all."""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import urllib.parse
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.ground import ModelError
from core.requests import RANDOM_WEIGHTS, ModelSpec

if TYPE_CHECKING:
    import torch

# torch and open_clip are imported where they are used, not here: the command line answers its argument
# errors, `info` and the offline refusal without paying for them.

# Assigns a model's image tower when it is first needed (None: the model already has it).
ImageTower = Callable[["torch.nn.Module"], None] | None


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


def create_module(spec: ModelSpec, device: torch.device, image_now: bool) -> tuple[torch.nn.Module, ImageTower]:
    if spec.is_checkpoint:
        return _from_checkpoint(spec, device, image_now)
    tag = spec.pretrained if spec.pretrained != RANDOM_WEIGHTS else None
    return _create_stock(spec, device, tag), None


PRECISIONS = ("auto", "fp32", "fp16")


def resolve_precision(precision: str | None, device: torch.device) -> str:
    """fp32 or fp16: "auto" is fp16 (half weights) on a CUDA GPU and fp32 elsewhere, where fp16 gains nothing."""
    value = (precision or "auto").strip().lower()
    if value not in PRECISIONS:
        raise ModelError(f"Unknown precision {precision!r}: use auto, fp32 or fp16.")
    if value == "auto":
        return "fp16" if device.type == "cuda" else "fp32"
    return value
