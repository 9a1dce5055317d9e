"""The class subset to study, with ordered candidate clips per class from an official Kinetics CSV
(``annotations/selected_subset.json``, made by ``python -m core subset``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from core.ground import DEFAULT_SUBSET, SourceError, kinetics_classes, write_text_atomic
from core.media.sources import read_kinetics_csv

# The 49 class names the reference study lists, verbatim; all are Kinetics-700 names.
REFERENCE_CLASSES_LISTED = (
    "applauding", "bathing dog", "beatboxing", "being in zero gravity", "bench pressing", "bobsledding",
    "carving ice", "celebrating", "checking tires", "checking watch", "chiseling wood", "clay pottery making",
    "closing door", "country line dancing", "cutting nails", "diving cliff", "doing jigsaw puzzle", "filling cake",
    "getting a haircut", "giving or receiving award", "golf chipping", "gospel singing in church", "headbutting",
    "hoverboarding", "juggling fire", "kitesurfing", "land sailing", "long jump", "opening bottle (not wine)",
    "opening refrigerator", "parasailing", "playing clarinet", "playing cricket", "playing scrabble",
    "playing squash or racquetball", "punching person (boxing)", "putting on sari", "sharpening pencil",
    "skipping stone", "smoking", "snowkiting", "springboard diving", "sword swallowing", "tackling", "testifying",
    "threading needle", "using bagging machine", "wading through water", "wood burning (art)",
)  # fmt: skip
# The 50th: the study's own text names "playing basketball" among its classes (in its overview and
# its list of examples) but leaves it out of the full list; it is a Kinetics-700 class. Rule: take
# the class the study names elsewhere; failing that, the alphabetically first Kinetics-700 class
# not already listed.
REFERENCE_FIFTIETH = "playing basketball"
FIFTIETH_RULE = (
    "The reference study lists 49 names for its 50 classes; its text also names 'playing basketball' as one "
    "of its classes (overview and examples), so that is the 50th. Had it named none, the rule would take the "
    "alphabetically first Kinetics-700 class not already listed."
)


def reference_classes(all_classes: Sequence[str] | None = None) -> list[str]:
    """The reference study's 50 classes (its 49 listed names plus the 50th by the documented rule)."""
    names = list(all_classes or kinetics_classes())
    chosen = list(REFERENCE_CLASSES_LISTED)
    fiftieth = REFERENCE_FIFTIETH if REFERENCE_FIFTIETH in names else next(c for c in sorted(names) if c not in chosen)
    return sorted([*chosen, fiftieth])


def make_subset(
    csv_path: Path | str,
    classes: Sequence[str],
    per_class: int = 5,
    candidates: int = 15,
) -> dict[str, Any]:
    """Per class, the first `candidates` clips of the CSV (its order), to be tried in that order."""
    if per_class < 1 or candidates < per_class:
        raise SourceError("--candidates must be at least --per-class, and --per-class at least 1.")
    rows = read_kinetics_csv(csv_path)
    by_class: dict[str, list[dict[str, Any]]] = {c: [] for c in classes}
    for row in rows:
        label = " ".join(row["label"].split())
        if label in by_class and len(by_class[label]) < candidates:
            try:
                start, end = int(float(row["time_start"])), int(float(row["time_end"]))
            except ValueError:
                continue
            by_class[label].append(
                {"youtube_id": row["youtube_id"], "time_start": start, "time_end": end, "split": row.get("split", "")}
            )
    missing = [c for c, clips in by_class.items() if not clips]
    if missing:
        raise SourceError(f"The CSV {csv_path} has no clip for: {', '.join(missing)} (check the spelling).")
    return {
        "name": "reference-50" if sorted(classes) == reference_classes() else "custom",
        "source": f"{Path(csv_path).name}: official Kinetics-700-2020 annotations (CC BY 4.0)",
        "note": FIFTIETH_RULE,
        "per_class": per_class,
        "classes": list(classes),
        "candidates": by_class,
    }


def write_subset(subset: dict[str, Any], path: Path | str) -> Path:
    return write_text_atomic(path, json.dumps(subset, indent=2, ensure_ascii=False) + "\n")


def load_subset(path: Path | str = DEFAULT_SUBSET) -> dict[str, Any]:
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise SourceError(f"The subset file {path} cannot be read ({exc.__class__.__name__}).") from None
    if not isinstance(data, dict) or not isinstance(data.get("classes"), list):
        raise SourceError(f"The subset file {path} has no 'classes' list.")
    return data
