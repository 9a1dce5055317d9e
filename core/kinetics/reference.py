"""What a first session makes from the Kinetics reference classes: a class list and its subset file, small
synthetic sample clips, and the tiny offline demo model that matches them."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from core.kinetics.subset import make_subset, reference_classes, write_subset
from core.media.samples import make_sample_videos
from core.media.sources import read_kinetics_csv
from core.model.demo_model import STEPS as DEMO_STEPS
from core.model.demo_model import make_demo_model
from core.requests import ModelSpec


def subset_classes(items: Sequence[str], csv_path: str | Path) -> list[str]:
    """Class names from 'reference' (the study's 50), 'all' (every class of the CSV), files with one
    class per line, or names; duplicates dropped, order kept."""
    classes: list[str] = []
    for item in items:
        if item == "reference":
            classes.extend(reference_classes())
        elif item == "all":
            classes.extend(sorted({" ".join(r["label"].split()) for r in read_kinetics_csv(csv_path)}))
        elif Path(item).is_file():
            classes.extend(line.strip() for line in Path(item).read_text(encoding="utf-8").splitlines() if line.strip())
        else:
            classes.append(" ".join(item.split()))
    return list(dict.fromkeys(classes))


def write_class_subset(
    csv_path: str | Path, classes: Sequence[str], per_class: int, candidates: int, out: str | Path
) -> tuple[Path, dict[str, Any]]:
    """The subset file: per class, the candidate clips to try in order."""
    subset = make_subset(csv_path, classes, per_class=per_class, candidates=candidates)
    return write_subset(subset, out), subset


def sample_videos(
    out: str | Path, classes: int = 10, per_class: int = 5, frames: int = 48
) -> tuple[list[Path], list[str]]:
    """Small synthetic clips of the first `classes` reference classes, one folder per label."""
    labels = reference_classes()[: max(1, classes)]
    return make_sample_videos(out, labels, per_class=max(1, per_class), n_frames=max(1, frames)), labels


def demo_model(
    out: str | Path, classes: int = 10, steps: int = DEMO_STEPS, progress: Callable[[int, int], None] | None = None
) -> ModelSpec:
    """Train the tiny offline demo model for the first `classes` reference classes (the labels
    `sample_videos` makes with the same number): meaningful on the sample clips only. `progress` is told
    (steps done, steps) as it trains."""
    return make_demo_model(out, reference_classes()[: max(1, classes)], steps=steps, progress=progress)
