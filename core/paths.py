"""Where the files shipped with the product live, whatever the working directory, and the class names file."""

from __future__ import annotations

import functools
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
ANNOTATIONS_DIR = REPO_ROOT / "annotations"
DEFAULT_CSV = ANNOTATIONS_DIR / "kinetics700_2020_validate.csv"
DEFAULT_SUBSET = ANNOTATIONS_DIR / "selected_subset.json"
CLASSES_FILE = ANNOTATIONS_DIR / "kinetics700_classes.txt"


def kinetics_classes(path: Path | str = CLASSES_FILE) -> list[str]:
    """The 700 Kinetics-700 class names, as shipped in annotations/ (read once per process)."""
    return list(_read_classes(str(path)))


@functools.lru_cache(maxsize=4)
def _read_classes(path: str) -> tuple[str, ...]:
    return tuple(line.strip() for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip())
