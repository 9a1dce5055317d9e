"""The read side of the application layer: what a process loads once and shares between its Explorers and
threads (the models, the Chroma clients, the index contents last read), and the reader of indexes that an
Explorer is."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.ground import IndexUnavailableError, SourceError, UserError, confine
from core.model.embed import ClipModel, load_model
from core.requests import IndexRef, ModelSpec, describe_servers
from core.store.catalog import Store, list_indexes, open_index
from core.store.index import FrameIndex, IndexContents, IndexInfo

if TYPE_CHECKING:
    import chromadb

# What an Explorer may offer beyond reading: pages ask `Explorer.offers` rather than checking a mode.
WRITES = ("build", "upload", "download", "save_run")
ModelLoader = Callable[[ModelSpec, str], ClipModel]
CONTENTS_CACHED = 2  # index contents kept in memory (each holds every embedding of a collection)


def store_exists(ref: IndexRef) -> bool:
    """Whether there is a store to read: a server (assumed), or an embedded folder with a database (of its
    own, or of a shard)."""
    return Store(ref.db, ref.servers).exists()


def load_text_first(spec: ModelSpec, device: str) -> ClipModel:
    """The model as an Explorer first needs it: the text tower now (text queries, prompts), the image tower
    when an image is first encoded (an image query, a build); see `load_model`."""
    return load_model(spec, device, towers=("text",))


class ProcessCache:
    """The models, Chroma clients and index contents of one process, each made once (thread-safe)."""

    def __init__(self, model_loader: ModelLoader = load_text_first) -> None:
        self.load_model = model_loader
        self.lock = threading.RLock()
        self.models: dict[tuple[ModelSpec, str], ClipModel] = {}
        self.model_locks: dict[tuple[ModelSpec, str], threading.Lock] = {}
        self.stores: dict[tuple[str, Any], Store] = {}
        self.contents: OrderedDict[tuple[IndexRef, str], IndexContents] = OrderedDict()

    def store(self, ref: IndexRef, create: bool = False) -> Store | None:
        """The store `ref` names (its servers' clients made once), or None for an embedded folder that holds
        no index yet (and then nothing is created on disk unless `create`: typing a folder name must not
        make one)."""
        store = Store(ref.db, ref.servers)
        if store.embedded and not create and not store.exists():
            return None
        key = (str(store.db) if store.embedded else "", ref.servers)
        with self.lock:
            return self.stores.setdefault(key, store)

    def model(self, spec: ModelSpec, device: str) -> ClipModel:
        """The loaded model for `spec` on `device`, made once (concurrent callers wait for it)."""
        key = (spec, device)
        with self.lock:
            if key in self.models:
                return self.models[key]
            lock = self.model_locks.setdefault(key, threading.Lock())
        with lock:
            with self.lock:
                if key in self.models:
                    return self.models[key]
            model = self.load_model(spec, device)
            with self.lock:
                self.models[key] = model
            return model

    def index_contents(self, ref: IndexRef, index: FrameIndex) -> IndexContents:
        """Every complete video's frames of `index` (the collection `ref` names) with their embeddings; read
        once per index version, the last few kept."""
        key = (ref.with_collection(index.name), index.version())
        with self.lock:
            if key in self.contents:
                self.contents.move_to_end(key)
                return self.contents[key]
        contents = index.contents()
        with self.lock:
            self.contents[key] = contents
            while len(self.contents) > CONTENTS_CACHED:
                self.contents.popitem(last=False)
        return contents


@dataclass(frozen=True)
class ListedIndex:
    """A collection as the front doors show it: where it is and what it holds (`info.version`
    changes with its content)."""

    ref: IndexRef
    info: IndexInfo
    problem: str = ""  # why this tool cannot use it (another schema version), in one sentence


class IndexReader:
    """What an Explorer reads, and where it may: its stores' clients and collections, their contents, the
    models, and the paths a request may name.

    `output`: where thumbnails, reports and (with a Chroma server) runs go. `roots`: when given,
    every path that comes from a request (videos, annotations, output, index folder, checkpoint,
    model config, uploads) must lie inside one of these folders (the dashboard); None trusts the
    caller (the command line, whose user owns the machine). Readers are cheap: the loaded models
    and clients live in the `cache`, which a long-lived process shares between them.
    """

    def __init__(
        self,
        output: str | Path = "output",
        device: str = "auto",
        roots: Sequence[str | Path] | None = None,
        cache: ProcessCache | None = None,
    ) -> None:
        self.output = str(output)
        self.device = device
        self.roots = [Path(r).expanduser().resolve() for r in roots] if roots is not None else None
        self.cache = cache or ProcessCache()

    shared_bundle = ""  # the name of the bundle a read-only Explorer shows ("" for none)

    def offers(self, feature: str) -> bool:
        """Whether this Explorer does `feature` (one of `WRITES`); a read-only one does none of them."""
        return feature in WRITES

    # -- paths ---------------------------------------------------------------------------------
    def confine(self, path: str | Path, what: str) -> Path:
        """`path` resolved; refused (one sentence) outside the allowed roots when there are any."""
        return confine(path, self.roots, what)

    def videos_folder(self, videos: str | Path | None) -> Path:
        """The videos folder of a request, resolved and confined; an empty field is refused (it would
        mean the working directory, whose files have nothing to do with the videos)."""
        if not str(videos or "").strip():
            raise SourceError("The videos folder is empty: give the folder that holds your videos, e.g. videos/.")
        return self.confine(str(videos), "The videos folder")

    def recorded_paths(self, store: IndexRef | None) -> set[str]:
        """The checkpoint and config files the store's collections were built with: the operator
        chose them when building, so the app may load them again wherever they lie."""
        if store is None:
            return set()
        try:
            listed = self.indexes(store.store())
        except UserError:  # no store to read (a server down): nothing is recorded
            return set()
        paths = set()
        for ix in listed:
            spec = ix.info.spec
            if spec.is_checkpoint:
                paths.add(str(Path(spec.pretrained).expanduser().resolve()))
            if spec.config_path:
                paths.add(str(Path(spec.config_path).expanduser().resolve()))
        return paths

    def _confine_model_file(self, path: str, what: str, recorded: set[str]) -> str:
        resolved = Path(path).expanduser().resolve()
        return str(resolved) if str(resolved) in recorded else str(self.confine(path, what))

    def resolve_spec(
        self, model: str | None, pretrained: str | None, config: str | None, store: IndexRef | None = None
    ) -> ModelSpec:
        """A model choice checked without loading it; a checkpoint or config path typed into the app
        must lie inside the allowed roots (it is read, so it is confined like every other path),
        unless a collection of `store` was built with that very file."""
        if self.roots is not None:
            recorded = self.recorded_paths(store)
            if config:
                config = self._confine_model_file(config, "The model config", recorded)
            # A file that exists, or anything written as a path: tags ("openai") have no separators.
            if pretrained and ("/" in pretrained or "\\" in pretrained or Path(pretrained).expanduser().exists()):
                pretrained = self._confine_model_file(pretrained, "The checkpoint", recorded)
        return ModelSpec.resolve(model or None, pretrained or None, config or None)

    # -- stores and models ---------------------------------------------------------------------
    def store(self, ref: IndexRef, create: bool = False) -> Store | None:
        """The store `ref` names, or None for an embedded folder that holds no index yet (none is made
        unless `create`)."""
        return self.cache.store(ref, create)

    def client(self, ref: IndexRef) -> chromadb.ClientAPI:
        """The client a one-collection index of the store is written through (an import): the folder's own
        database (made when missing), or the first server."""
        store = self.cache.store(ref, create=True)
        assert store is not None  # made on demand
        return store.primary()

    def model(self, spec: ModelSpec, device: str | None = None) -> ClipModel:
        """The loaded model for `spec`, made once per process (concurrent callers wait for it)."""
        return self.cache.model(spec, device or self.device)

    # -- indexes -------------------------------------------------------------------------------
    def where(self, ref: IndexRef) -> str:
        if not ref.servers:
            return f"the index at {ref.db}/"
        return f"the Chroma server{'s' if len(ref.servers) > 1 else ''} at {describe_servers(ref.servers)}"

    def indexes(self, ref: IndexRef) -> list[ListedIndex]:
        """The store's collections, newest build first (an embedded folder without an index: none)."""
        store = self.store(ref)
        if store is None:
            return []
        return [ListedIndex(ref.with_collection(ix.name), ix.info(), ix.schema_problem()) for ix in list_indexes(store)]

    def open(self, ref: IndexRef, spec: ModelSpec | None = None) -> FrameIndex:
        """The collection `ref` names (the newest when it names none; with `spec`, the newest of that model)."""
        store = self.store(ref)
        if store is None:
            raise IndexUnavailableError(
                f"There is no index at {ref.db}/: build one first with python -m core build --videos DIR "
                f"--db {ref.db}, or on the Build page."
            )
        return open_index(store, spec=spec, name=ref.collection, where=self.where(ref))

    def index_model(self, ref: IndexRef, spec: ModelSpec | None = None) -> tuple[FrameIndex, ClipModel]:
        """The index and the model to query it with: the index's own unless `spec` (which must match)."""
        index = self.open(ref, spec)
        return index, self.model(spec or index.spec)

    def contents(self, ref: IndexRef) -> IndexContents:
        """Every complete video's frames with their embeddings; read once per index version."""
        return self.cache.index_contents(ref, self.open(ref))

    def labels(self, ref: IndexRef) -> list[str]:
        return self.open(ref).labels()
