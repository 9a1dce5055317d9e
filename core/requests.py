"""The values that cross layers: where an index lives, which model, what to build, how to evaluate, what
to search for.

Each round-trips through JSON (`to_json` / `from_json`), so the run store, the app's deep links, a
background job and a Ray job all carry the same form. A Chroma server's token never enters that
form: it comes from the environment of the process that uses it. This module is on the ground floor:
it imports no model, store or video library, so the command line can import it at its start.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from core.ground import ModelError, UserError

# The choices of an evaluation, as the front doors offer them.
POOLINGS = ("mean", "max", "middle", "frame")
LABEL_MODES = ("keep", "strip")
CLASS_SETS = ("present", "all")
# Cosine similarity within this much of a video's best frame still matches: CLIP's scores for frames of
# one action vary by about a hundredth from frame to frame, a different scene by several.
DEFAULT_MARGIN = 0.02

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


# Collection metadata added within schema 1: the source a collection was first built from (absolute
# paths; the annotations key is "" without an annotations file).
SOURCE_VIDEOS = "source_videos"
SOURCE_ANNOTATIONS = "source_annotations"


@dataclass(frozen=True)
class ChromaServer:
    """A Chroma server to use instead of the embedded store (for teams, and indexes beyond one machine)."""

    host: str
    port: int = 8000
    ssl: bool = False
    token: str = field(default="", repr=False)  # never printed or logged
    token_header: str = "Authorization"

    def headers(self) -> dict[str, str]:
        if not self.token:
            return {}
        value = f"Bearer {self.token}" if self.token_header.lower() == "authorization" else self.token
        return {self.token_header: value}

    def describe(self) -> str:
        return f"{'https' if self.ssl else 'http'}://{self.host}:{self.port}"

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> tuple[ChromaServer, ...]:
        """CLIP_EXPLORER_CHROMA_HOST (a comma-separated list of ``host[:port]``; and _PORT, _SSL, _TOKEN,
        _TOKEN_HEADER for all of them), or () for the embedded store."""
        env = os.environ if environ is None else environ
        text = env.get("CLIP_EXPLORER_CHROMA_HOST", "").strip()
        if not text:
            return ()
        port = env.get("CLIP_EXPLORER_CHROMA_PORT", "8000")
        if not port.strip().isdigit():
            raise UserError(f"CLIP_EXPLORER_CHROMA_PORT is {port!r}, not a port number: set it to one, e.g. 8000.")
        return tuple(
            cls(
                host=host,
                port=host_port or int(port),
                ssl=env.get("CLIP_EXPLORER_CHROMA_SSL", "").lower() in ("1", "true", "yes"),
                token=env.get("CLIP_EXPLORER_CHROMA_TOKEN", ""),
                token_header=env.get("CLIP_EXPLORER_CHROMA_TOKEN_HEADER", "Authorization"),
            )
            for host, host_port in parse_hosts(text)
        )

    @classmethod
    def resolve(
        cls,
        host: str | None = None,
        port: int | None = None,
        ssl: bool | None = None,
        token_header: str | None = None,
        environ: dict[str, str] | None = None,
    ) -> tuple[ChromaServer, ...]:
        """The servers named by command-line choices (`host`: one or a comma-separated list of
        ``host[:port]``; `port` for those without their own), completed from the environment; else the
        environment's; else () (the embedded store). The token only ever comes from the environment: a
        command line is visible to other users."""
        env = cls.from_env(environ)
        if not host or not host.strip():
            return env
        first = env[0] if env else None
        return tuple(
            cls(
                host=name,
                port=host_port or port or (first.port if first else 8000),
                ssl=bool(ssl) or bool(first and first.ssl),
                token=(os.environ if environ is None else environ).get("CLIP_EXPLORER_CHROMA_TOKEN", ""),
                token_header=token_header or (first.token_header if first else "Authorization"),
            )
            for name, host_port in parse_hosts(host)
        )


def parse_hosts(text: str) -> list[tuple[str, int | None]]:
    """``host[:port]`` items of a comma-separated list (``[::1]:8000`` for an IPv6 address), each once, in
    order; the port None where an item has none. A malformed item is one sentence."""
    found: list[tuple[str, int | None]] = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        host, port = item, ""
        if item.startswith("["):  # [v6]:port
            end = item.find("]")
            host, port = (
                item[1:end] if end > 0 else "",
                item[end + 2 :] if end > 0 and item[end + 1 : end + 2] == ":" else "",
            )
        elif item.count(":") == 1:
            host, port = item.split(":")
        if not host or (port and not (port.isdigit() and 0 < int(port) < 65536)) or any(c.isspace() for c in host):
            raise UserError(
                f"{item!r} is not a Chroma server address: give host or host:port, several separated by commas "
                "(e.g. 10.0.0.5:8000,10.0.0.6:8000)."
            )
        entry = (host, int(port) if port else None)
        if entry not in found:
            found.append(entry)
    return found


def describe_servers(servers: tuple[ChromaServer, ...]) -> str:
    """The servers as one text (``http://a:8000, http://b:8001``)."""
    return ", ".join(server.describe() for server in servers)


DEFAULT_PROMPTS: tuple[str, ...] = ("english",)
EVAL_SETTINGS_KEYS = ("prompts", "pooling", "label_mode", "classes")
# Bounds of the evaluation settings' JSON form (deep links and runs): a link is text anyone can write.
MAX_LINK_CHARS = 32_768
MAX_TEMPLATES = 100
MAX_TEMPLATE_CHARS = 500


def _server_to_json(server: ChromaServer) -> dict[str, Any]:
    return {"host": server.host, "port": server.port, "ssl": server.ssl, "token_header": server.token_header}


def _servers_to_json(servers: tuple[ChromaServer, ...]) -> dict[str, Any]:
    """The "server" key (the first, as before lists) and "servers" (all of them)."""
    return {"server": _server_to_json(servers[0]) if servers else None,
            "servers": [_server_to_json(s) for s in servers]}  # fmt: skip


def _servers_from_json(data: dict[str, Any]) -> tuple[ChromaServer, ...]:
    listed = data.get("servers")
    if listed is None:  # written before lists: one server or none
        listed = [data["server"]] if data.get("server") else []
    return tuple(
        server
        for item in listed
        for server in ChromaServer.resolve(
            str(item["host"]), int(item.get("port", 8000)), bool(item.get("ssl")), item.get("token_header")
        )
    )


@dataclass(frozen=True)
class IndexRef:
    """Where an index lives (an embedded folder, or one or more Chroma servers) and which collection of it.

    `collection` None means "the newest one there". A sharded index is named like any other: its shards,
    wherever they lie among the folder or the servers, are the store layer's business."""

    db: str = "chroma_db"
    servers: tuple[ChromaServer, ...] = ()
    collection: str | None = None

    @property
    def server(self) -> ChromaServer | None:
        """The first server (None: the embedded store)."""
        return self.servers[0] if self.servers else None

    def with_collection(self, name: str | None) -> IndexRef:
        return replace(self, collection=name)

    def store(self) -> IndexRef:
        """The same store, no collection chosen (what lists and builds are keyed by)."""
        return replace(self, collection=None)

    def describe(self) -> str:
        where = describe_servers(self.servers) if self.servers else f"{self.db}/"
        return f"{where}{' · ' + self.collection if self.collection else ''}"

    def key(self) -> str:
        """What a build is keyed by: the index folder, or the Chroma servers' addresses."""
        return describe_servers(self.servers) if self.servers else self.db

    def to_json(self) -> dict[str, Any]:
        return {"db": self.db, **_servers_to_json(self.servers), "collection": self.collection}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> IndexRef:
        return cls(db=str(data.get("db", "chroma_db")), servers=_servers_from_json(data),
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
        may encode) is one sentence. The cost of the prompts on every class is checked by
        `Explorer.link_settings`, which knows the prompt sets."""
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
    servers: tuple[ChromaServer, ...] = ()
    shards: int | None = None  # collections of one logical index; None: the index's own, 1 for a new one

    @property
    def server(self) -> ChromaServer | None:
        """The first server (None: the embedded store)."""
        return self.servers[0] if self.servers else None

    @property
    def target(self) -> IndexRef:
        return IndexRef(db=self.db, servers=self.servers)

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
            **_servers_to_json(self.servers),
            "shards": self.shards,
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
            servers=_servers_from_json(data),
            shards=int(data["shards"]) if data.get("shards") is not None else None,
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
