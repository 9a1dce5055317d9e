"""Prompt sets, templates and class text embeddings."""

from __future__ import annotations

import numpy as np
import pytest

from core.ground import UserError
from core.model.prompts import (
    KINETICS_ENSEMBLE,
    PROMPT_SETS,
    PromptSet,
    class_text_embeddings,
    clean_label,
    resolve_prompts,
)


def test_named_sets_and_templates() -> None:
    assert resolve_prompts(None).templates == ("a video of a person {label}.",)
    assert resolve_prompts("reference-fr").render("smoking") == [
        "Une personne effectuant l'action de smoking dans un cadre typique"
    ]
    assert len(KINETICS_ENSEMBLE) == 28
    assert KINETICS_ENSEMBLE[0] == "a photo of {label}." and KINETICS_ENSEMBLE[-1] == (
        "a demonstration of a person practicing {label}."
    )
    custom = resolve_prompts(["english", "someone {} outdoors"])
    assert custom.templates == ("a video of a person {label}.", "someone {label} outdoors")
    assert resolve_prompts("weird {braces} {label}").render("x") == ["weird {braces} x"]
    assert resolve_prompts(["a video of a person {label}."]).name == "english"  # typed out: still named
    with pytest.raises(UserError, match="placeholder"):
        resolve_prompts("no placeholder")


def test_clean_label() -> None:
    assert clean_label("opening bottle (not wine)", "strip") == "opening bottle"
    assert clean_label("opening bottle (not wine)", "keep") == "opening bottle (not wine)"
    with pytest.raises(UserError):
        clean_label("x", "shout")


def test_ensemble_of_one_is_the_template(tiny_model) -> None:
    labels = ["juggling fire", "bathing dog"]
    single = class_text_embeddings(tiny_model, labels, PROMPT_SETS["english"])
    direct = tiny_model.encode_texts([f"a video of a person {label}." for label in labels])
    assert np.allclose(single, direct, atol=1e-6)
    ensemble = class_text_embeddings(tiny_model, labels, PromptSet("two", ("{label}", "a photo of {label}.")))
    parts = tiny_model.encode_texts(["juggling fire", "a photo of juggling fire."])
    mean = parts.mean(0) / np.linalg.norm(parts.mean(0))
    assert np.allclose(ensemble[0], mean, atol=1e-6)
    assert np.allclose(np.linalg.norm(ensemble, axis=1), 1.0, atol=1e-6)
