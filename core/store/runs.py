"""Saved evaluations and sweep rows: JSON-lines files next to the index (``runs.jsonl``, ``sweeps.jsonl``).

A run records what was evaluated and its figures, per class included, so that runs can be compared with
each other and with the reference study's published figures.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from core.ground import now_iso
from core.model.prompts import PromptSet
from core.store.index import FrameIndex
from core.store.jsonlines import JsonLinesStore

RUNS_FILENAME = "runs.jsonl"
SWEEPS_FILENAME = "sweeps.jsonl"

# The reference notebook's published figures (218 videos of 50 classes, OpenAI ViT-B/32, one middle
# frame, the French prompt, cosines clamped to [0, 1]). Its intervals are the Wilson intervals of 94 and 116
# hits out of 218, written out because the store sits below the metrics (tests check them against the formula).
_REF_N = 218
REFERENCE_RUN: dict[str, Any] = {
    "id": "reference-study",
    "timestamp": "",
    "index": "reference notebook",
    "model": "ViT-B/32 (OpenAI)",
    "frames": "middle",
    "pooling": "middle",
    "prompt_set": "reference-fr",
    "label_mode": "keep",
    "classes": "present",
    "n_videos": _REF_N,
    "n_classes": 50,
    "precision_at_1": 0.43,
    "precision_at_3": 0.53,
    "precision_at_5": None,
    "mrr": None,
    "kinetics_accuracy": None,
    "mean_similarity_correct": 0.25,
    "mean_similarity_incorrect": 0.20,
    "mean_margin": None,
    "roc_auc": None,
    "ci95": {
        "precision_at_1": [0.3672036603967875, 0.4975646288153392],
        "precision_at_3": [0.4658919469558669, 0.5972161847451407],
    },
}

SUMMARY_KEYS = (
    "precision_at_1",
    "precision_at_3",
    "precision_at_5",
    "mrr",
    "kinetics_accuracy",
    "mean_similarity_correct",
    "mean_similarity_incorrect",
    "mean_margin",
    "roc_auc",
    "n_videos",
    "n_classes",
    "ci95",
)


@dataclass
class Run:
    """One saved evaluation."""

    id: str
    timestamp: str
    index: str
    index_version: str
    model: str
    frames: str
    pooling: str
    prompt_set: str
    templates: list[str]
    label_mode: str
    classes: str
    metrics: dict[str, Any]
    per_class: dict[str, float] = field(default_factory=dict)
    # The settings in the form the app's deep links and requests use (core.requests.EvalSettings);
    # empty for runs saved before it was recorded.
    settings: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def key(self) -> str:
        """What a newer record of the same run replaces."""
        return self.id

    def row(self) -> dict[str, Any]:
        """A flat row for tables: settings and summary figures."""
        row = {k: getattr(self, k) for k in ("id", "timestamp", "index", "model", "frames", "pooling",
                                             "prompt_set", "label_mode", "classes")}  # fmt: skip
        row.update({k: self.metrics.get(k) for k in SUMMARY_KEYS})
        return row


def run_id(settings: dict[str, Any]) -> str:
    """A run's id, derived from its settings and the index's version: the same evaluation is stored once."""
    return hashlib.sha1(json.dumps(settings, sort_keys=True, default=str).encode("utf-8")).hexdigest()[:12]


class Evaluated(Protocol):
    """What a run is made from: an evaluation (core.analysis.evaluation.Evaluation)."""

    prompts: PromptSet
    pooling: str
    label_mode: str
    settings: dict[str, Any]

    def to_json(self) -> dict[str, Any]: ...


def run_from_evaluation(evaluation: Evaluated, index: FrameIndex, index_version: str = "") -> Run:
    data = evaluation.to_json()
    classes = evaluation.settings.get("classes", "present")
    settings = {
        "index": index.name,
        "index_version": index_version,
        "model": index.spec.identity(),
        "pooling": evaluation.pooling,
        "templates": list(evaluation.prompts.templates),
        "label_mode": evaluation.label_mode,
        "classes": classes,
    }
    return Run(
        id=run_id(settings),
        timestamp=now_iso(),
        index=index.name,
        index_version=index_version,
        model=index.spec.describe(),
        frames=index.frames,
        pooling=evaluation.pooling,
        prompt_set=evaluation.prompts.name,
        templates=list(evaluation.prompts.templates),
        label_mode=evaluation.label_mode,
        classes=classes,
        metrics={k: data.get(k) for k in SUMMARY_KEYS},
        per_class=dict(data.get("per_class", {})),
        settings=dict(evaluation.settings.get("request", {})),
    )


class RunStore(JsonLinesStore[Run]):
    """The saved runs of one index folder; a run's id is stored once."""

    def __init__(self, path: Path | str) -> None:
        super().__init__(path, Run)

    @classmethod
    def for_db(cls, db: Path | str, output: Path | str | None = None, server: object = None) -> RunStore:
        """Next to the embedded index; with a Chroma server, in the output folder."""
        return cls(Path(output if server is not None and output is not None else db) / RUNS_FILENAME)

    def load(self) -> list[Run]:
        """The runs in time order (a run written twice by hand reads as its last record)."""
        return sorted(self.latest(), key=lambda r: r.timestamp)

    def add(self, run: Run) -> bool:
        """Store `run` unless a run with its id is there already; True when it was added."""
        if any(r.id == run.id for r in self.records()):
            return False
        self.append([run])
        return True

    def get(self, run_id_: str) -> Run | None:
        return next((r for r in self.load() if r.id == run_id_), None)


@dataclass
class SweepRow:
    """One strategy × pooling of a sweep (see core.analysis.sweep)."""

    frames: str
    pooling: str
    precision_at_1: float
    precision_at_5: float
    mrr: float
    n_frames: int
    build_seconds: float | None  # None: the collection was built outside a sweep and its time is unknown
    frames_per_s: float | None
    precision_at_1_ci95: list[float] = field(default_factory=list)
    n_videos: int = 0  # samples scored (frames with `frame` pooling)
    model: str = ""
    collection: str = ""
    prompt_set: str = ""
    timestamp: str = ""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def key(self) -> tuple[str, str, str, str]:
        """What a newer row replaces: the same collection, pooling and prompts."""
        return (self.collection, self.model, self.pooling, self.prompt_set)


class SweepStore(JsonLinesStore[SweepRow]):
    """The sweep rows beside a run store; the newest row per collection, pooling and prompts wins."""

    def __init__(self, path: Path | str) -> None:
        super().__init__(path, SweepRow)

    @classmethod
    def beside(cls, runs_file: Path | str) -> SweepStore:
        """The sweep file in the run store's folder."""
        return cls(Path(runs_file).parent / SWEEPS_FILENAME)

    def load(self) -> list[SweepRow]:
        return self.latest()

    def add(self, rows: list[SweepRow]) -> None:
        self.append(rows)

    def known_build(self, collection: str, n_frames: int) -> tuple[float, float] | None:
        """(build seconds, frames/s) a sweep measured for this collection at this size, if any."""
        for row in reversed(self.load()):
            if row.collection == collection and row.n_frames == n_frames and row.build_seconds is not None:
                return row.build_seconds, row.frames_per_s or 0.0
        return None


def compare_per_class(a: Run, b: Run) -> list[tuple[str, float | None, float | None, float | None]]:
    """(class, precision@1 in a, in b, b − a), largest gains first, then losses."""
    names = sorted(set(a.per_class) | set(b.per_class))
    rows = []
    for name in names:
        pa, pb = a.per_class.get(name), b.per_class.get(name)
        delta = pb - pa if pa is not None and pb is not None else None
        rows.append((name, pa, pb, delta))
    return sorted(rows, key=lambda r: (-(r[3] if r[3] is not None else -9), r[0]))


@dataclass
class RunComparison:
    """Two or more runs side by side (typically the same videos scored by different models).

    `per_class`: (class, precision@1 in each run, gain of each run over the first), the largest gain
    of the last run first; a class missing from a run has None there. `notes`: why the comparison may
    mix more than the model (other videos, frames, pooling or prompts), one sentence each."""

    runs: list[Run]
    per_class: list[tuple[str, list[float | None], list[float | None]]]
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> list[dict[str, Any]]:
        """Per class: ``a``, ``b``, ``delta`` (the first two runs, as ``runs --compare`` always wrote),
        plus ``runs`` (run id → precision@1) and ``gains`` (run id → gain over the first run)."""
        ids = [run.id for run in self.runs]
        rows = []
        for name, values, gains in self.per_class:
            rows.append(
                {"class": name, "a": values[0], "b": values[1], "delta": gains[1],
                 "runs": dict(zip(ids, values, strict=True)), "gains": dict(zip(ids, gains, strict=True))}
            )  # fmt: skip
        return rows

    def summary(self) -> list[dict[str, Any]]:
        """One row per run: what it is and its headline figures."""
        return [run.row() for run in self.runs]


def compare_runs_side_by_side(runs: list[Run]) -> RunComparison:
    """Per-class precision@1 of each run and its gain over the first (see `RunComparison`)."""
    names = sorted(set().union(*(run.per_class for run in runs)))
    rows: list[tuple[str, list[float | None], list[float | None]]] = []
    for name in names:
        values = [run.per_class.get(name) for run in runs]
        base = values[0]
        gains = [v - base if v is not None and base is not None else None for v in values]
        rows.append((name, values, gains))
    rows.sort(key=lambda r: (-(r[2][-1] if r[2][-1] is not None else -9), r[0]))
    notes = []
    for what, value in (("samples scored", lambda r: r.metrics.get("n_videos")), ("frames", lambda r: r.frames),
                        ("pooling", lambda r: r.pooling), ("prompt set", lambda r: r.prompt_set),
                        ("classes", lambda r: r.classes)):  # fmt: skip
        seen = list(dict.fromkeys(str(value(run)) for run in runs))
        if len(seen) > 1:
            notes.append(f"The runs differ in {what} ({', '.join(seen)}), not only in model: gains mix both.")
    return RunComparison(list(runs), rows, notes)
