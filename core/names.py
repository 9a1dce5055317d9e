"""Names: the one rule for turning text (a video id, a query, a label, an uploaded file's name) into a file
name, the one rule for writing a file name as text (`printable`), and the one way to name a count of things in
a sentence (`plural`).

`safe_name`'s result is always a single path component: no separator, never ``.`` or ``..``, no leading dot
(hidden) or trailing dot or space (Windows), bounded in length.

`printable` is for the other direction: a name read from the file system may hold bytes that are not
UTF-8 (Python keeps them as lone surrogates), which no UTF-8 writer, JSON reader or Chroma accepts. Such
bytes are written as ``\\xNN`` wherever a name becomes text: ids, labels, metadata, JSON, HTML, CSV and the
terminal.
"""

from __future__ import annotations

import codecs
import functools
import hashlib
import re

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
