"""The values that cross layers: where an index lives, what to build, how to evaluate.

Each round-trips through JSON (`to_json` / `from_json`), so the run store, the app's deep links, a
background job and a Ray job all carry the same form. A Chroma server's token never enters that
form: it comes from the environment of the process that uses it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from core.analysis.evaluation import CLASS_SETS, POOLINGS, check_prompt_cost
from core.analysis.moments import DEFAULT_MARGIN
from core.analysis.query import QueryPart
from core.analysis.search import QueryOptions
from core.ground import UserError, kinetics_classes
from core.model.embed import ModelSpec
from core.model.prompts import LABEL_MODES, resolve_prompts
from core.store.index import SOURCE_ANNOTATIONS, SOURCE_VIDEOS, ChromaServer

DEFAULT_PROMPTS: tuple[str, ...] = ("english",)
EVAL_SETTINGS_KEYS = ("prompts", "pooling", "label_mode", "classes")
# Bounds of the evaluation settings' JSON form (deep links and runs): a link is text anyone can write.
MAX_LINK_CHARS = 32_768
MAX_TEMPLATES = 100
MAX_TEMPLATE_CHARS = 500


def _server_to_json(server: ChromaServer | None) -> dict[str, Any] | None:
    if server is None:
        return None
    return {"host": server.host, "port": server.port, "ssl": server.ssl, "token_header": server.token_header}


def _server_from_json(data: dict[str, Any] | None) -> ChromaServer | None:
    if not data:
        return None
    port, ssl = int(data.get("port", 8000)), bool(data.get("ssl"))
    return ChromaServer.resolve(data["host"], port, ssl, data.get("token_header"))


@dataclass(frozen=True)
class IndexRef:
    """Where an index lives (an embedded folder, or a Chroma server) and which collection of it.

    `collection` None means "the newest one there"."""

    db: str = "chroma_db"
    server: ChromaServer | None = None
    collection: str | None = None

    def with_collection(self, name: str | None) -> IndexRef:
        return replace(self, collection=name)

    def store(self) -> IndexRef:
        """The same store, no collection chosen (what lists and builds are keyed by)."""
        return replace(self, collection=None)

    def describe(self) -> str:
        where = self.server.describe() if self.server is not None else f"{self.db}/"
        return f"{where}{' · ' + self.collection if self.collection else ''}"

    def key(self) -> str:
        """What a build is keyed by: the index folder, or the Chroma server's address."""
        return self.server.describe() if self.server is not None else self.db

    def to_json(self) -> dict[str, Any]:
        return {"db": self.db, "server": _server_to_json(self.server), "collection": self.collection}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> IndexRef:
        return cls(db=str(data.get("db", "chroma_db")), server=_server_from_json(data.get("server")),
                   collection=data.get("collection"))  # fmt: skip


@dataclass(frozen=True)
class EvalSettings:
    """How to score an index: prompt sets or templates, pooling, label clean-up and class set."""

    prompts: tuple[str, ...] = DEFAULT_PROMPTS
    pooling: str = "mean"
    label_mode: str = "keep"
    classes: str = "present"

    def __post_init__(self) -> None:
        if isinstance(self.prompts, str):  # a single prompt set or template
            object.__setattr__(self, "prompts", (self.prompts,))
        object.__setattr__(self, "prompts", tuple(p for p in self.prompts if str(p).strip()) or DEFAULT_PROMPTS)
        if self.pooling not in POOLINGS:
            raise UserError(f"Unknown pooling {self.pooling!r}: use one of {', '.join(POOLINGS)}.")
        if self.label_mode not in LABEL_MODES:
            raise UserError(f"Unknown label mode {self.label_mode!r}: use one of {', '.join(LABEL_MODES)}.")
        if self.classes not in CLASS_SETS:
            raise UserError(f"Unknown class set {self.classes!r}: use one of {', '.join(CLASS_SETS)}.")

    def to_json(self) -> dict[str, Any]:
        return {"prompts": list(self.prompts), "pooling": self.pooling, "label_mode": self.label_mode,
                "classes": self.classes}  # fmt: skip

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> EvalSettings:
        """The JSON form back, checked against the schema: each value of the right type."""
        prompts = data.get("prompts") or DEFAULT_PROMPTS
        if isinstance(prompts, str):
            prompts = [prompts]
        if not isinstance(prompts, list | tuple) or not all(isinstance(p, str) for p in prompts):
            raise UserError("The evaluation settings' prompts must be a text or a list of texts, not anything else.")
        fields = {}
        for key, default in (("pooling", "mean"), ("label_mode", "keep"), ("classes", "present")):
            value = data.get(key, default)
            if not isinstance(value, str):
                raise UserError(f"The evaluation settings' {key} must be a text, not {type(value).__name__}.")
            fields[key] = value
        return cls(prompts=tuple(prompts), **fields)

    def dumps(self) -> str:
        """The compact JSON form (the app's deep links carry it as ?settings=...)."""
        return json.dumps(self.to_json(), sort_keys=True, separators=(",", ":"))

    @classmethod
    def loads(cls, text: str) -> EvalSettings:
        """The JSON form back from a link, which anyone can write: anything but a valid, affordable
        setting (too long, not JSON, nested, unknown keys or types, more prompt texts than one request
        may encode) is one sentence."""
        if len(text) > MAX_LINK_CHARS:
            raise UserError(
                f"The link's evaluation settings are {len(text):,} characters long, more than the "
                f"{MAX_LINK_CHARS:,} allowed: open the page without them."
            )
        try:
            data = json.loads(text)
        except RecursionError:  # json's parser recurses once per bracket
            raise UserError("The link's evaluation settings nest too deeply: open the page without them.") from None
        except ValueError:
            raise UserError("The link's evaluation settings are not valid JSON: open the page without them.") from None
        if not isinstance(data, dict):
            raise UserError("The link's evaluation settings are not an object: open the page without them.")
        unknown = sorted(str(key) for key in data if key not in EVAL_SETTINGS_KEYS)
        if unknown:
            raise UserError(
                f"The link's evaluation settings hold unknown keys ({', '.join(unknown)[:200]}): expected "
                f"{', '.join(EVAL_SETTINGS_KEYS)}; open the page without them."
            )
        settings = cls.from_json(data)
        if len(settings.prompts) > MAX_TEMPLATES or any(len(p) > MAX_TEMPLATE_CHARS for p in settings.prompts):
            raise UserError(
                f"The link's evaluation settings hold {len(settings.prompts)} prompts; at most {MAX_TEMPLATES} of "
                f"at most {MAX_TEMPLATE_CHARS} characters each are allowed: open the page without them."
            )
        if settings.classes == "all":  # the cost is known before the index is read: say it now
            check_prompt_cost(len(resolve_prompts(list(settings.prompts)).templates), len(kinetics_classes()))
        return settings


@dataclass(frozen=True)
class BuildRequest:
    """What to build: the same choices as ``python -m core build``.

    `workers` is a number of decoding workers or "auto" (one per core, leaving the main process
    room); `batch_size` None means the device's default; `precision` is fp32, fp16 or auto (fp16 on
    CUDA); `engine` is local or ray."""

    videos: str
    db: str = "chroma_db"
    output: str = "output"
    spec: ModelSpec = field(default_factory=ModelSpec)
    frames: str = "middle"
    annotations: str | None = None
    batch_size: int | None = None
    device: str = "auto"
    precision: str = "auto"
    workers: int | str = "auto"
    engine: str = "local"
    ray_address: str | None = None
    allowed_roots: tuple[str, ...] | None = None
    server: ChromaServer | None = None

    @property
    def target(self) -> IndexRef:
        return IndexRef(db=self.db, server=self.server)

    def source(self) -> dict[str, str]:
        """The source as the collection's metadata records it (absolute paths)."""
        notes = str(Path(self.annotations).expanduser().resolve()) if self.annotations else ""
        return {SOURCE_VIDEOS: str(Path(self.videos).expanduser().resolve()), SOURCE_ANNOTATIONS: notes}

    def to_json(self) -> dict[str, Any]:
        return {
            "videos": self.videos,
            "db": self.db,
            "output": self.output,
            "spec": self.spec.to_metadata(),
            "frames": self.frames,
            "annotations": self.annotations,
            "batch_size": self.batch_size,
            "device": self.device,
            "precision": self.precision,
            "workers": self.workers,
            "engine": self.engine,
            "ray_address": self.ray_address,
            "allowed_roots": list(self.allowed_roots) if self.allowed_roots is not None else None,
            "server": _server_to_json(self.server),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> BuildRequest:
        roots = data.get("allowed_roots")
        return cls(
            videos=str(data["videos"]),
            db=str(data.get("db", "chroma_db")),
            output=str(data.get("output", "output")),
            spec=ModelSpec.from_metadata(data.get("spec") or {}),
            frames=str(data.get("frames", "middle")),
            annotations=data.get("annotations"),
            batch_size=data.get("batch_size"),
            device=str(data.get("device", "auto")),
            precision=str(data.get("precision", "auto")),
            workers=data.get("workers", "auto"),
            engine=str(data.get("engine", "local")),
            ray_address=data.get("ray_address"),
            allowed_roots=tuple(roots) if roots is not None else None,
            server=_server_from_json(data.get("server")),
        )


@dataclass(frozen=True)
class SearchQuery:
    """A search: what to look for (a text, an image, a frame like an indexed one, terms added and
    subtracted), how many results, filters, the cut-off, and whether to merge hits into moments."""

    text: str
    k: int = 5
    one_per_video: bool = False
    label: str | None = None
    image: str | None = None  # an image file's path
    add: tuple[str, ...] = ()
    subtract: tuple[str, ...] = ()
    like: tuple[str, int] | None = None  # (video id, frame index) of an indexed frame: "more like this"
    min_similarity: float | None = None
    adaptive: bool = False
    moments: bool = False
    margin: float = DEFAULT_MARGIN
    distribution: bool = False  # also score every frame (the app's histogram)

    def parts(self) -> list[QueryPart]:
        """The query's terms in order: text, image, frame, additions (+1 each), subtractions (-1 each)."""
        parts = [QueryPart("text", self.text)] if (self.text or "").strip() else []
        if self.image:
            parts.append(QueryPart("image", self.image))
        if self.like is not None:
            parts.append(QueryPart("frame", self.like[0], 1, int(self.like[1])))
        parts += [QueryPart("text", text) for text in self.add]
        parts += [QueryPart("text", text, -1) for text in self.subtract]
        return parts

    def options(self) -> QueryOptions:
        return QueryOptions(
            k=self.k, one_per_video=self.one_per_video, label=self.label, min_similarity=self.min_similarity,
            adaptive=self.adaptive, moments=self.moments, margin=self.margin, distribution=self.distribution,
        )  # fmt: skip
