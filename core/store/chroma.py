"""Where an index lives: the Chroma client (`connect`: an embedded folder or a `ChromaServer`), and the
conversion of what a store the user can damage, fill or lose raises into one sentence (`store_error`,
`store_call`)."""

from __future__ import annotations

import contextlib
import errno
import functools
import shutil
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.ground import IndexUnavailableError, StoreError
from core.requests import ChromaServer as ChromaServer

if TYPE_CHECKING:  # chromadb is imported where a store is opened (half a second), not with this module
    import chromadb


def server_unavailable(exc: BaseException, where: str = "The Chroma server") -> IndexUnavailableError:
    return IndexUnavailableError(
        f"{where} is not answering ({exc.__class__.__name__}): check that it is running and reachable, then retry."
    )


# What Chroma's InternalError says when the store's files cannot be used: SQLite's own codes (11: malformed,
# 26: not a database, 13: full) and the HNSW segment reader's complaints. Anything else stays a bug.
_DISK_FULL = ("(code: 13)", "disk is full", "no space left", "os error 28")
_DAMAGED = ("(code: 11)", "(code: 26)", "malformed", "not a database", "hnsw", "pickle", "segment reader")


# Chroma's compactor hides a full disk behind "Failed to apply logs": with less free space than this under
# the folder, an error of the store is read as the full disk it almost certainly is.
NEARLY_FULL_BYTES = 16 * 2**20


def _nearly_full(folder: Path | None) -> bool:
    try:
        return folder is not None and shutil.disk_usage(folder).free < NEARLY_FULL_BYTES
    except OSError:
        return False


def store_error(exc: BaseException, where: str, folder: Path | None = None) -> StoreError | None:
    """The sentence for a Chroma error that a damaged or full store causes, or None when it is not one.

    `where` names the store ("The index folder /x/db"); `folder` is that folder, for an embedded store.
    """
    from chromadb.errors import ChromaError

    if not isinstance(exc, ChromaError) and not (isinstance(exc, OSError) and exc.errno == errno.ENOSPC):
        return None
    text = str(exc).lower()
    if isinstance(exc, OSError) or any(mark in text for mark in _DISK_FULL) or _nearly_full(folder):
        return StoreError.disk_full(where[:1].lower() + where[1:])
    if any(mark in text for mark in _DAMAGED):
        return StoreError.damaged(where, str(exc).strip().splitlines()[-1][:160] if str(exc).strip() else "")
    return None


def place_of(client: Any) -> str:
    """Where a client's collections live: its embedded folder, or its server's address."""
    settings = client.get_settings()
    if settings.is_persistent:
        return str(settings.persist_directory)
    scheme = "https" if settings.chroma_server_ssl_enabled else "http"
    return f"{scheme}://{settings.chroma_server_host}:{settings.chroma_server_http_port}"


def _where(client: Any) -> tuple[str, Path | None]:
    """The store's name for a sentence, and its folder when it is embedded."""
    if client.get_settings().is_persistent:
        return f"The index folder {place_of(client)}", Path(place_of(client))
    return f"The Chroma server's store at {place_of(client)}", None


def store_call(method: Any) -> Any:
    """Turn what a store the user can damage or fill raises into one sentence: a lost connection to a Chroma
    server, damaged index files, a full disk."""

    @functools.wraps(method)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        import httpx
        from chromadb.errors import ChromaError

        try:
            return method(*args, **kwargs)
        except httpx.HTTPError as exc:  # the server named: one of several may be the one that is down
            client = getattr(args[0], "client", args[0])
            named = hasattr(client, "get_settings")
            raise server_unavailable(exc, f"The Chroma server at {place_of(client)}" if named else
                                     "The Chroma server") from None  # fmt: skip
        except (ChromaError, OSError) as exc:
            client = getattr(args[0], "client", args[0])
            sentence = store_error(exc, *_where(client))
            if sentence is None:
                raise
            raise sentence from None

    return wrapper


_EMBEDDED_OPEN = threading.Lock()


def forget_embedded(path: Path | str) -> None:
    """Make this process open the embedded folder `path` afresh on its next `connect`.

    Chroma keeps one system per folder for the whole process and reads the folder's vectors once: what
    another process writes there later (an index's shard writers) is not seen by searches through it.
    Dropping the cached system (see `_reset_stale_embedded` for the private attributes) makes the next
    client read the folder again; clients made before keep the old system until they are let go, so a
    search in flight is not cut off."""
    key = str(Path(path).expanduser().resolve())
    _drop_cached_system(key)
    _FORGOTTEN[key] = _FORGOTTEN.get(key, 0) + 1


_FORGOTTEN: dict[str, int] = {}  # folder → how many times `forget_embedded` dropped it


def embedded_generation(path: Path | str) -> int:
    """Changes each time the folder is forgotten (`forget_embedded`): a client kept from before is stale."""
    return _FORGOTTEN.get(str(Path(path).expanduser().resolve()), 0)


def _reset_stale_embedded(path: Path) -> None:
    """Forget Chroma's cached system for `path` when the folder's database is gone.

    Chroma keeps one system per folder for the whole process; if the folder was deleted since (a user
    removed the index), that system writes into nothing ("readonly database"). Chroma has no public
    way to drop one folder's system (`clear_system_cache` drops every folder's, under the clients other
    threads hold), so this reaches into `SharedSystemClient`'s class attributes, as of chromadb 1.5.9.
    The only private use of chromadb in the product; should they be renamed, nothing is dropped.
    """
    if (path / "chroma.sqlite3").exists():
        return
    stale = _drop_cached_system(str(path))
    if stale is not None:
        with contextlib.suppress(Exception):
            stale.stop()


def _drop_cached_system(key: str) -> Any:
    """Take the folder `key`'s system out of Chroma's per-process cache (the private attributes that
    `_reset_stale_embedded` describes); the system, or None when there was none."""
    from chromadb.api.shared_system_client import SharedSystemClient

    getattr(SharedSystemClient, "_identifier_to_refcount", {}).pop(key, None)
    return getattr(SharedSystemClient, "_identifier_to_system", {}).pop(key, None)


def connect(db: Path | str, server: ChromaServer | None = None) -> chromadb.ClientAPI:
    """The Chroma client: the embedded on-disk store at `db` (created when missing), or `server`.

    Telemetry is off either way.
    """
    import chromadb
    from chromadb.config import Settings
    from chromadb.errors import ChromaError

    settings = Settings(anonymized_telemetry=False)
    if server is not None:
        try:
            return chromadb.HttpClient(
                host=server.host, port=server.port, ssl=server.ssl, headers=server.headers(), settings=settings
            )
        except ValueError as exc:  # chromadb's "Could not connect to a Chroma server"
            raise server_unavailable(exc, f"The Chroma server at {server.describe()}") from None
    path = Path(db).expanduser().resolve()
    # Two threads opening a new folder at once would otherwise race: one could drop, as stale, the
    # system the other is still creating (before its chroma.sqlite3 exists).
    with _EMBEDDED_OPEN:
        try:
            path.mkdir(parents=True, exist_ok=True)
            _reset_stale_embedded(path)
            return chromadb.PersistentClient(path=str(path), settings=settings)
        except (ChromaError, OSError) as exc:  # Chroma opens (and migrates) its database here
            sentence = store_error(exc, f"The index folder {path}", path)
            if sentence is None:
                raise
            raise sentence from None
