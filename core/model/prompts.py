"""Prompt templates and class text embeddings (the text side of every metric).

A prompt set is one or more templates with a ``{label}`` placeholder. A class's text embedding is
the normalised mean of its templates' normalised embeddings (with one template, simply that
template's embedding), as in the CLIP paper's prompt ensembling.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from core.ground import UserError
from core.model.embed import ClipModel
from core.requests import LABEL_MODES  # noqa: F401  (importable from here)

PLACEHOLDER = "{label}"


@dataclass(frozen=True)
class PromptSet:
    """Named templates; `render` fills in a label."""

    name: str
    templates: tuple[str, ...]

    def render(self, label: str) -> list[str]:
        # str.replace, not str.format: a template is user text and may hold other braces.
        return [t.replace(PLACEHOLDER, label) for t in self.templates]


# The 28 templates the CLIP authors used for Kinetics-700 zero-shot classification:
# openai/CLIP, data/prompts.md, section "Kinetics700" (their `{}` written here as `{label}`).
_KINETICS_SUBJECTS = ("a photo of", "a video of", "a example of", "a demonstration of")
_KINETICS_FORMS = (
    "{label}.",
    "a person {label}.",
    "a person using {label}.",
    "a person doing {label}.",
    "a person during {label}.",
    "a person performing {label}.",
    "a person practicing {label}.",
)
KINETICS_ENSEMBLE = tuple(f"{s} {f}" for s in _KINETICS_SUBJECTS for f in _KINETICS_FORMS)

PROMPT_SETS: dict[str, PromptSet] = {
    "english": PromptSet("english", ("a video of a person {label}.",)),
    # The reference notebook's prompt: French words around the English Kinetics label.
    "reference-fr": PromptSet("reference-fr", ("Une personne effectuant l'action de {label} dans un cadre typique",)),
    "kinetics-ensemble": PromptSet("kinetics-ensemble", KINETICS_ENSEMBLE),
}
DEFAULT_PROMPT = "english"


def _as_template(text: str) -> str:
    template = text.strip()
    if "{}" in template and PLACEHOLDER not in template:
        template = template.replace("{}", PLACEHOLDER)
    if PLACEHOLDER not in template:
        names = ", ".join(PROMPT_SETS)
        raise UserError(
            f"The prompt {text!r} is neither a prompt set ({names}) nor a template with a {PLACEHOLDER} placeholder."
        )
    return template


def resolve_prompts(values: str | Sequence[str] | None = None) -> PromptSet:
    """Names of prompt sets and/or templates → one `PromptSet` (their templates, in order)."""
    if values is None or (isinstance(values, str) and not values.strip()):
        return PROMPT_SETS[DEFAULT_PROMPT]
    items = [values] if isinstance(values, str) else [v for v in values if v and v.strip()]
    if not items:
        return PROMPT_SETS[DEFAULT_PROMPT]
    templates: list[str] = []
    names: list[str] = []
    for item in items:
        key = item.strip()
        if key in PROMPT_SETS:
            templates.extend(PROMPT_SETS[key].templates)
            names.append(key)
        else:
            templates.append(_as_template(item))
            names.append("custom")
    unique = tuple(dict.fromkeys(templates))
    # Templates typed out in full that are exactly a named set keep that set's name.
    named = next((key for key, known in PROMPT_SETS.items() if known.templates == unique), None)
    name = named or (names[0] if len(names) == 1 else "+".join(dict.fromkeys(names)))
    return PromptSet(name, unique)


_PARENTHESIS = re.compile(r"\s*\([^)]*\)")


def clean_label(label: str, mode: str = "keep") -> str:
    """``keep`` the label as it is, or ``strip`` parenthesised asides ("opening bottle (not wine)")."""
    if mode == "keep":
        return label
    if mode == "strip":
        return " ".join(_PARENTHESIS.sub("", label).split()) or label
    raise UserError(f"Unknown label clean-up {mode!r}: use keep or strip.")


def combine_templates(per_template: np.ndarray) -> np.ndarray:
    """(classes × templates × D) normalised embeddings → the normalised mean per class (C × D)."""
    mean = np.asarray(per_template, dtype=np.float32).mean(axis=1)
    return (mean / np.maximum(np.linalg.norm(mean, axis=1, keepdims=True), 1e-12)).astype(np.float32)


def class_text_embeddings(
    model: ClipModel, labels: Sequence[str], prompts: PromptSet, label_mode: str = "keep"
) -> np.ndarray:
    """One normalised text embedding per label (C × D), all prompts encoded in batches."""
    texts = [t for label in labels for t in prompts.render(clean_label(label, label_mode))]
    if not texts:
        return np.zeros((0, model.embed_dim), np.float32)
    per_template = model.encode_texts(texts).reshape(len(labels), len(prompts.templates), -1)
    return combine_templates(per_template)
