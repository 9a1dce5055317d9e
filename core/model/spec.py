"""Which CLIP model: `ModelSpec` (an open_clip name, its weights, an optional custom config) and its checks.

A model is named as open_clip names it, plus either a pretrained tag, a local checkpoint file, or ``none``
(random weights, for tests and timing). A custom architecture can be given as an open_clip JSON config,
registered under its file name. The default is OpenAI's ViT-B/32, which was trained with QuickGELU: hence
``ViT-B-32-quickgelu``.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from core.ground import ModelError

# open_clip is imported where it is used, not here: the command line answers its argument errors without it.

DEFAULT_MODEL = "ViT-B-32-quickgelu"
DEFAULT_PRETRAINED = "openai"
RANDOM_WEIGHTS = "none"
CHECKPOINT_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors", ".ckpt")


def _looks_like_path(value: str) -> bool:
    return os.sep in value or "/" in value or value.lower().endswith(CHECKPOINT_SUFFIXES)


def _config_digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def register_model_config(path: Path | str) -> str:
    """Register an open_clip JSON config and return the model name it defines (its file stem)."""
    import open_clip

    path = Path(path).expanduser().resolve()
    if not path.is_file():
        raise ModelError(f"The model config {path} does not exist.")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        raise ModelError(f"The model config {path} is not a readable JSON file.") from None
    if not isinstance(config, dict) or not all(k in config for k in ("embed_dim", "vision_cfg", "text_cfg")):
        raise ModelError(
            f"The model config {path} is not an open_clip config (it needs embed_dim, vision_cfg and text_cfg)."
        )
    open_clip.add_model_config(path)
    return path.stem


@dataclass(frozen=True)
class ModelSpec:
    """Which CLIP model: an open_clip name, its weights, and an optional custom config file."""

    name: str = DEFAULT_MODEL
    pretrained: str = DEFAULT_PRETRAINED  # a tag, an absolute checkpoint path, or "none"
    config_path: str = ""  # absolute path of a custom JSON config ("" for built-in architectures)
    config_json: str = ""  # that config's text, kept so an index still loads if the file moves

    @classmethod
    def resolve(
        cls, model: str | None = None, pretrained: str | None = None, model_config: str | Path | None = None
    ) -> ModelSpec:
        """Apply defaults to command-line style choices and check them, without loading anything."""
        import open_clip

        config_path, config_json = "", ""
        if model_config:
            stem = register_model_config(model_config)
            config_path = str(Path(model_config).expanduser().resolve())
            config_json = Path(config_path).read_text(encoding="utf-8")
            if model and model != stem:
                raise ModelError(
                    f"--model {model} does not match the config file {Path(config_path).name}: open_clip "
                    f"names a config after its file, so use --model {stem} or leave --model out."
                )
            model = stem
        name = (model or DEFAULT_MODEL).strip()
        if open_clip.get_model_config(name) is None:
            raise ModelError(
                f"Unknown model '{name}': it is not an open_clip architecture (see open_clip.list_models()); "
                "for a custom one pass its JSON config with --model-config."
            )
        tags = open_clip.list_pretrained_tags_by_model(name)
        if not pretrained:
            if name == DEFAULT_MODEL:
                pretrained = DEFAULT_PRETRAINED
            else:
                known = f"one of its tags ({', '.join(tags)})" if tags else "a checkpoint file"
                raise ModelError(
                    f"Model '{name}' needs --pretrained: {known}, a checkpoint file, or 'none' for random "
                    "weights (useful only for tests)."
                )
        pretrained = pretrained.strip()
        if pretrained.lower() == RANDOM_WEIGHTS:
            pretrained = RANDOM_WEIGHTS
        elif Path(pretrained).expanduser().is_file():
            pretrained = str(Path(pretrained).expanduser().resolve())
        elif _looks_like_path(pretrained):
            raise ModelError(f"The checkpoint file {pretrained} does not exist.")
        elif pretrained not in tags:
            known = f"its tags are {', '.join(tags)}" if tags else "it has no published weights"
            raise ModelError(
                f"'{pretrained}' is neither a pretrained tag of {name} ({known}) nor an existing checkpoint file."
            )
        return cls(name=name, pretrained=pretrained, config_path=config_path, config_json=config_json)

    @property
    def is_checkpoint(self) -> bool:
        return self.pretrained not in (RANDOM_WEIGHTS, "") and Path(self.pretrained).is_absolute()

    def describe(self) -> str:
        weights = Path(self.pretrained).name if self.is_checkpoint else self.pretrained
        return f"{self.name} ({weights})"

    def identity(self) -> str:
        """A stable key: same name, weights and config text mean the same embeddings."""
        parts = [self.name, self.pretrained, _config_digest(self.config_json) if self.config_json else ""]
        return hashlib.sha256("|".join(parts).encode("utf-8")).hexdigest()[:12]

    def to_metadata(self) -> dict[str, str]:
        return {
            "model_name": self.name,
            "pretrained": self.pretrained,
            "model_config": self.config_path,
            "model_config_json": self.config_json,
        }

    @classmethod
    def from_metadata(cls, meta: dict) -> ModelSpec:
        return cls(
            name=str(meta.get("model_name", DEFAULT_MODEL)),
            pretrained=str(meta.get("pretrained", DEFAULT_PRETRAINED)),
            config_path=str(meta.get("model_config", "") or ""),
            config_json=str(meta.get("model_config_json", "") or ""),
        )

    def ensure_registered(self) -> None:
        """Make a custom architecture known to open_clip (from its file, or the copy kept in the index)."""
        import open_clip

        if not self.config_json or open_clip.get_model_config(self.name) is not None:
            return
        path = Path(self.config_path)
        if not (path.is_file() and path.read_text(encoding="utf-8") == self.config_json):
            folder = Path(tempfile.gettempdir()) / "clip-explorer-configs" / _config_digest(self.config_json)
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / f"{self.name}.json"
            path.write_text(self.config_json, encoding="utf-8")
        register_model_config(path)
