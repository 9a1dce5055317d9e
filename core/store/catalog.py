"""Which indexes a store holds, and the one to read: across an embedded folder and its shard sub-folders,
or across one or more Chroma servers, a sharded index's collections gathered into one `ShardedIndex`."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.ground import IndexUnavailableError
from core.limits import MAX_SHARDS
from core.requests import ChromaServer, ModelSpec, describe_servers
from core.store.chroma import connect, embedded_generation, forget_embedded, place_of, store_call
from core.store.index import FrameIndex, is_frame_collection
from core.store.shards import SHARD, SHARD_OF, SHARDS, ShardedIndex, shard_folder_name

if TYPE_CHECKING:  # imported where a store is opened (`core.store.chroma.connect`), not with this module
    import chromadb

DATABASE_FILE = "chroma.sqlite3"


class Store:
    """Where indexes live: an embedded folder (with a sub-folder per shard number for sharded indexes), or
    one or more Chroma servers, whose clients are made once."""

    def __init__(self, db: Path | str = "chroma_db", servers: Sequence[ChromaServer] = (),
                 client: chromadb.ClientAPI | None = None) -> None:  # fmt: skip
        self.db = Path(db).expanduser().resolve()
        self.servers = tuple(servers)
        self._client = client  # one client given as it is (a test, a bundle's private store)
        self._server_clients: dict[ChromaServer, chromadb.ClientAPI] = {}
        # folder → (its database file's identity, the folder's generation, client): reused while both hold
        self._folder_clients: dict[Path, tuple[tuple[int, int], int, chromadb.ClientAPI]] = {}

    @classmethod
    def of(cls, target: Store | chromadb.ClientAPI) -> Store:
        return target if isinstance(target, Store) else cls(client=target)

    @property
    def embedded(self) -> bool:
        return self._client is None and not self.servers

    def shard_folder(self, shard: int) -> Path:
        return self.db / shard_folder_name(shard)

    def exists(self) -> bool:
        """Whether there is anything to read: a server (assumed), or a folder with a database of its own or in
        a shard sub-folder."""
        if not self.embedded:
            return True
        return (self.db / DATABASE_FILE).is_file() or any(
            (self.shard_folder(i) / DATABASE_FILE).is_file() for i in range(MAX_SHARDS)
        )

    def server_client(self, server: ChromaServer) -> chromadb.ClientAPI:
        if server not in self._server_clients:
            self._server_clients[server] = connect("unused", server)
        return self._server_clients[server]

    def primary(self) -> chromadb.ClientAPI:
        """Where a one-collection index is written: the folder itself (made when missing), or the first server."""
        if self._client is not None:
            return self._client
        return self.server_client(self.servers[0]) if self.servers else connect(self.db)

    def places(self) -> list[chromadb.ClientAPI]:
        """A client for every place that holds collections: the folder and its shard sub-folders that exist,
        or every server."""
        if self._client is not None:
            return [self._client]
        if self.servers:
            return [self.server_client(server) for server in self.servers]
        folders = [self.db, *(self.shard_folder(i) for i in range(MAX_SHARDS))]
        return [client for client in map(self._folder_client, folders) if client is not None]

    def _folder_client(self, folder: Path) -> chromadb.ClientAPI | None:
        """The folder's client, made again when the folder was replaced (deleted and built anew) or written by
        another process since (its shard writers: see `forget_embedded`); None without a database."""
        try:
            stat = (folder / DATABASE_FILE).stat()
        except OSError:
            return None
        identity, generation = (stat.st_dev, stat.st_ino), embedded_generation(folder)
        kept = self._folder_clients.get(folder)
        if kept is not None and kept[:2] == (identity, generation):
            return kept[2]
        if kept is not None and kept[0] != identity:  # a new database in the folder: Chroma's cached one is stale
            forget_embedded(folder)
            generation = embedded_generation(folder)
        client = connect(folder)
        self._folder_clients[folder] = (identity, generation, client)
        return client

    def searched(self) -> list[str]:
        """The places a missing shard was looked for, as a sentence names them."""
        if self._client is not None:
            return [place_of(self._client)]
        return [server.describe() for server in self.servers] or [str(self.db)]

    def describe(self) -> str:
        if self._client is not None:
            return place_of(self._client)
        return describe_servers(self.servers) if self.servers else f"{self.db}/"


@store_call
def _collections(client: chromadb.ClientAPI) -> list[Any]:
    return list(client.list_collections())


def list_indexes(target: Store | chromadb.ClientAPI) -> list[FrameIndex]:
    """The indexes in the store, most recently built first: each collection of this tool, and each sharded
    index as one `ShardedIndex` (listed, with the reason, even with a shard missing).

    Collections of another schema are listed too, so that they can be shown with the reason
    (`FrameIndex.schema_problem`); opening one is refused. A server that does not answer is one sentence
    naming it: never a list without its indexes."""
    store = Store.of(target)
    plain: dict[str, FrameIndex] = {}
    shards: dict[str, dict[int, FrameIndex]] = {}
    counts: dict[str, int] = {}
    for client in store.places():
        for collection in _collections(client):
            meta = collection.metadata
            if not is_frame_collection(meta):
                continue
            if meta.get(SHARD_OF):
                index = str(meta[SHARD_OF])
                shards.setdefault(index, {}).setdefault(int(meta.get(SHARD, 0)), FrameIndex(client, collection))
                counts[index] = max(counts.get(index, 0), min(MAX_SHARDS, int(meta.get(SHARDS, 1))))
            else:
                plain.setdefault(collection.name, FrameIndex(client, collection))
    found = list(plain.values())
    for index, members in shards.items():
        found.append(ShardedIndex(index, [members.get(i) for i in range(counts[index])], store.searched()))
    return sorted(found, key=lambda ix: str(ix.metadata.get("built_at") or ix.metadata.get("created_at")), reverse=True)


def open_index(
    target: Store | chromadb.ClientAPI,
    spec: ModelSpec | None = None,
    frames: str | None = None,
    name: str | None = None,
    where: str = "this index",
) -> FrameIndex:
    """The index to read: by name, else the newest one matching `spec`/`frames` when given.

    Refuses (with a sentence) a model other than the index's, since its vectors are not comparable, an
    index of another schema, and a sharded index with a shard missing. Unnamed, the choice is among the
    indexes this tool can read.
    """
    indexes = list_indexes(target)
    if not indexes:
        raise IndexUnavailableError(
            f"No index in {where} yet: build one first (python -m core build --videos DIR, or the Build page)."
        )
    if name:
        for ix in indexes:
            if ix.name == name:
                return ix.check_schema()
        raise IndexUnavailableError(
            f"There is no collection '{name}' in {where}; available: {', '.join(ix.name for ix in indexes)}."
        )
    readable = [ix for ix in indexes if not ix.schema_problem()]
    if not readable:
        indexes[0].check_schema()
    indexes = candidates = readable
    if spec is not None:
        candidates = [ix for ix in candidates if ix.spec.identity() == spec.identity()]
        if not candidates:
            built = "; ".join(sorted({ix.spec.describe() for ix in indexes}))
            raise IndexUnavailableError(
                f"{where.capitalize()} was built with {built}, not {spec.describe()}: vectors of different models "
                "cannot be compared, so leave out the model options to use the index's own model, or build "
                "a new index with this one."
            )
    if frames is not None:
        matching = [ix for ix in candidates if ix.frames == frames]
        if not matching:
            have = ", ".join(sorted({ix.frames for ix in candidates}))
            raise IndexUnavailableError(
                f"{where.capitalize()} has no collection built with frames {frames} (it has {have})."
            )
        candidates = matching
    return candidates[0]
