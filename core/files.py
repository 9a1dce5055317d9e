"""Writing files so that a reader never sees half of one: a temporary name beside it, then a rename.

`atomic_path` is the one way: it hands out the temporary path (for writers that need a path, such as
Pillow, OpenCV or ffmpeg), renames it over the target when the block ends normally, and deletes it
when the block raises. `write_text_atomic` and `write_bytes_atomic` are the two common cases.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import threading
from collections.abc import Iterator
from pathlib import Path

from core.names import printable

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

    Bytes of a file name that were not UTF-8 are written as ``\\xNN`` (`core.names.printable`).
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
