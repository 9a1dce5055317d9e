"""The ground floor: errors a user can cause, the one safe-name rule, times, atomic files and the one
path-confinement check. Every layer uses it; it uses nothing of ours."""

from __future__ import annotations

import codecs
import contextlib
import functools
import hashlib
import os
import re
import threading
from collections.abc import Iterator, Sequence
from datetime import datetime, timezone
from pathlib import Path

# ── errors ────────────────────────────────────────────────────────────────────────────────────────
# Errors a user can cause and fix.
#
# Anything deriving from `UserError` carries one sentence that says what went wrong and what to
# do; the CLI prints it without a stack trace and the dashboard shows it as a message. Every other
# exception is a bug and keeps its traceback.


class UserError(Exception):
    """A problem with the user's input or environment, explained in one sentence."""


class ModelError(UserError):
    """The CLIP model could not be resolved or loaded (unknown name, missing or bad weights)."""


class IndexUnavailableError(UserError):
    """The index is missing, or was built with another model than the one requested."""


class StoreError(IndexUnavailableError):
    """The index folder cannot be used as it is: its files are damaged, or its disk is full."""

    @classmethod
    def damaged(cls, where: str, detail: str) -> StoreError:
        return cls(
            f"{where} is damaged ({detail}): restore it from a backup, or build again into a new folder "
            "(its files were left as they are)."
        )

    @classmethod
    def disk_full(cls, where: str) -> StoreError:
        return cls(
            f"The disk holding {where} is full (ENOSPC, no space left on device): the index is consistent, "
            "since only whole videos are written; free some space, then run the same command again to resume."
        )


class IndexLockedError(UserError):
    """Another build already holds the index."""


class SourceError(UserError):
    """The video source (folder, annotations file, CSV) cannot be used at all."""


class QueryError(UserError):
    """A search request that cannot be answered (empty text, bad k)."""


# ── names ─────────────────────────────────────────────────────────────────────────────────────────
# Names: the one rule for turning text (a video id, a query, a label, an uploaded file's name) into a file
# name, the one rule for writing a file name as text (`printable`), and the one way to name a count of things in
# a sentence (`plural`).
#
# `safe_name`'s result is always a single path component: no separator, never ``.`` or ``..``, no leading dot
# (hidden) or trailing dot or space (Windows), bounded in length.
#
# `printable` is for the other direction: a name read from the file system may hold bytes that are not
# UTF-8 (Python keeps them as lone surrogates), which no UTF-8 writer, JSON reader or Chroma accepts. Such
# bytes are written as ``\\xNN`` wherever a name becomes text: ids, labels, metadata, JSON, HTML, CSV and the
# terminal.

_UNSAFE_SLUG = re.compile(r"[^A-Za-z0-9._-]+")
_UNSAFE_READABLE = re.compile(r"[^\w.\- ()']+", re.UNICODE)
_DOTS = re.compile(r"\.{2,}")
DIGEST_CHARS = 10


def _clip_bytes(text: str, max_bytes: int) -> str:
    # File systems bound names in bytes (255 on most), and a letter may take four of them in UTF-8.
    return text.encode("utf-8")[:max_bytes].decode("utf-8", errors="ignore")


def safe_name(text: str, *, readable: bool = False, max_len: int = 60) -> str:
    """`text` as one safe file-name component of at most `max_len` UTF-8 bytes (plus the hash).

    By default, for names the program chooses (thumbnail folders, report files, lock folders): an ASCII
    slug plus a short hash of the whole text, so that distinct texts never share a name; an empty slug
    leaves the hash alone. The slug never holds ``..``.

    With `readable`, for names a person chose and wants to recognise (uploaded files, label folders):
    the text itself, letters of any script kept, other unsafe characters replaced by ``_``, no hash.
    Distinct texts may then meet, so the caller must not overwrite; '' means nothing usable was left.
    """
    if readable:
        return _clip_bytes(_UNSAFE_READABLE.sub("_", text).strip(" ._"), max_len).strip(" ._")
    digest = hashlib.sha1(text.encode("utf-8")).hexdigest()[:DIGEST_CHARS]
    slug = _DOTS.sub(".", _UNSAFE_SLUG.sub("_", text)).strip("._-")[:max_len].strip("._-")
    return f"{slug}-{digest}" if slug else digest


def plural(count: int, noun: str, plural_form: str = "") -> str:
    """A count with its noun for people to read: "1 label", "2 labels", "1,204 frames", "3 classes".

    `plural_form` is for nouns that do not just take an s ("class" → "classes")."""
    return f"{count:,} {noun if count == 1 else plural_form or noun + 's'}"


PRINTABLE_ERRORS = "clip-explorer-printable"


def _as_escapes(exc: UnicodeError) -> tuple[str, int]:
    if not isinstance(exc, UnicodeEncodeError):
        raise exc
    # The bytes Python kept as surrogates U+DC80..U+DCFF (os.fsdecode's surrogateescape) are written as the
    # byte they stand for; any other character the encoding lacks as its code point.
    escaped = [
        f"\\x{ord(c) - 0xDC00:02x}" if 0xDC80 <= ord(c) <= 0xDCFF else f"\\u{ord(c):04x}"
        for c in exc.object[exc.start : exc.end]
    ]
    return "".join(escaped), exc.end


@functools.cache
def printable_errors() -> str:
    """The name of the codec error handler that writes what `printable` writes, for a stream's ``errors``
    (the terminal's); registered with Python on first use."""
    codecs.register_error(PRINTABLE_ERRORS, _as_escapes)
    return PRINTABLE_ERRORS


def printable(text: str) -> str:
    """`text` as valid UTF-8 text: each byte of a file name that was not UTF-8 written as ``\\xNN``.

    Text that is valid already comes back unchanged, so applying it twice changes nothing.
    """
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-8", printable_errors()).decode("utf-8")


# ── clock ─────────────────────────────────────────────────────────────────────────────────────────
# Time for records and for people: timestamps written into indexes, runs and manifests (UTC, whole
# seconds, ISO 8601), and the one way a duration (an ETA, the time elapsed) is shown.


def now_iso() -> str:
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat()


def format_duration(seconds: float | None) -> str:
    """A duration as the CLI, the app and the jobs show it: "45 s", "3 min 05 s", "1 h 02 min"; "–" unknown."""
    if seconds is None or seconds != seconds or seconds < 0:  # None, NaN or negative: not known
        return "–"
    whole = round(seconds)
    if whole < 60:
        return f"{whole} s"
    if whole < 3600:
        return f"{whole // 60} min {whole % 60:02d} s"
    return f"{whole // 3600} h {whole % 3600 // 60:02d} min"


# ── files ─────────────────────────────────────────────────────────────────────────────────────────
# Writing files so that a reader never sees half of one: a temporary name beside it, then a rename.
#
# `atomic_path` is the one way: it hands out the temporary path (for writers that need a path, such as
# Pillow, OpenCV or ffmpeg), renames it over the target when the block ends normally, and deletes it
# when the block raises. `write_text_atomic` and `write_bytes_atomic` are the two common cases.

# Temporary files are hidden (a folder scan skips them) and carry this mark, so that a cleanup after a
# killed process can find them with TEMPORARY_GLOB.
TEMPORARY_MARK = ".tmp"
TEMPORARY_GLOB = f".*{TEMPORARY_MARK}*"


def temporary_sibling(path: Path | str) -> Path:
    """A hidden name beside `path`, unique to this process and thread.

    It ends with `path`'s own suffix, because OpenCV and ffmpeg choose the container from it.
    """
    path = Path(path)
    # Names are bounded in bytes (255 on most file systems): a long one is replaced by its hash here.
    base = path.name if len(path.name.encode("utf-8")) <= 160 else hashlib.sha1(path.name.encode("utf-8")).hexdigest()
    return path.with_name(f".{base}.{os.getpid()}-{threading.get_ident()}{TEMPORARY_MARK}{path.suffix}")


@contextlib.contextmanager
def atomic_path(path: Path | str, replace: bool = True) -> Iterator[Path]:
    """``with atomic_path(target) as tmp:`` write `tmp`; it becomes `target` only if the block succeeds.

    The folder is created. A block that raises leaves `target` as it was and no temporary behind. With
    `replace` False an existing `target` is never overwritten: `FileExistsError` instead, even when
    another process creates it while the block runs (the new name is a hard link, made or refused at once).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_sibling(path)
    try:
        yield tmp
        if replace:
            os.replace(tmp, path)
        else:
            os.link(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)  # gone already after the rename; the leftover of a failure otherwise


def write_bytes_atomic(path: Path | str, data: bytes) -> Path:
    """Write `data` to `path` through a temporary file in the same folder and an atomic rename."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text_atomic(path: Path | str, text: str) -> Path:
    """Write `text` (UTF-8) to `path` through a temporary file in the same folder and an atomic rename.

    Bytes of a file name that were not UTF-8 are written as ``\\xNN`` (`core.ground.printable`).
    """
    return write_bytes_atomic(path, printable(text).encode("utf-8"))


def remove_temporaries(folder: Path | str, recursive: bool = True) -> int:
    """Delete the temporaries a killed process left in `folder` (below it when `recursive`); returns how many.

    Only for folders no other process is writing into at the time (a build holds its lock first).
    """
    root = Path(folder)
    if not root.is_dir():
        return 0
    found = [p for p in (root.rglob if recursive else root.glob)(TEMPORARY_GLOB) if p.is_file() or p.is_symlink()]
    for tmp in found:
        tmp.unlink(missing_ok=True)
    return len(found)


def sha256_file(path: Path | str) -> str:
    """The hex sha256 of a file's bytes, read in blocks (downloads and bundles check files with it)."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# ── paths ─────────────────────────────────────────────────────────────────────────────────────────
# Where the files shipped with the product live, the class names file, and the one check that keeps a
# path inside the folders this app may use.

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
