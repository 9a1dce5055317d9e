"""Where the files shipped with the product live, the class names file, and the one check that keeps a
path inside the folders this app may use."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path

from core.errors import UserError

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


def resolve_roots(roots: Sequence[Path | str] | None) -> list[Path] | None:
    """Allowed roots made absolute with their links resolved (None stays None: no confinement)."""
    return None if roots is None else [Path(r).expanduser().resolve() for r in roots]


def is_within(path: Path | str, roots: Sequence[Path]) -> bool:
    """Whether the already-resolved `path` is one of the already-resolved `roots` or lies below one."""
    path = Path(path)
    return any(path == root or root in path.parents for root in roots)


def confine(path: Path | str, roots: Sequence[Path | str] | None, what: str) -> Path:
    """`path` made absolute with its links resolved, refused unless it lies inside one of `roots`.

    Links are resolved before the check, so a link inside a root that points outside is refused too.
    `what` names the path in the message ("The videos folder"). With `roots` None nothing is refused but a
    NUL byte, which no path can hold (the operating system's calls raise ValueError on it).
    """
    if "\x00" in str(path):
        raise UserError(f"{what} {str(path)!r} holds a NUL byte (\\x00), which no path may contain: type it again.")
    given = Path(str(path).strip() or ".").expanduser()
    resolved = given.resolve()
    allowed = resolve_roots(roots)
    if allowed is not None and not is_within(resolved, allowed):
        raise UserError(
            f"{what} {given} is outside the folders this app may use ({', '.join(str(r) for r in allowed)}): "
            "start the app with `-- --allow-root DIR` to allow another folder."
        )
    return resolved
