"""Names: the one rule for turning text (a video id, a query, a label, an uploaded file's name) into a file
name, and the one way to name a count of things in a sentence (`plural`).

A file name is always a single path component: no separator, never ``.`` or ``..``, no leading dot
(hidden) or trailing dot or space (Windows), bounded in length.
"""

from __future__ import annotations

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
