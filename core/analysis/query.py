"""Composing a search query from parts: texts, images and indexed frames, added or subtracted.

rclip-style query arithmetic: every part is embedded with the index's model and L2-normalised, the
parts are summed with weight +1 (added) or -1 (subtracted), and the sum is normalised again. "a dog"
minus "grass" looks for dogs, not grass. An image part is encoded exactly as indexed frames are (the
model's own resize and crop), so an image query and the frames live in the same space; a frame part
("more like this") reuses the frame's stored embedding, nothing is encoded again.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from core.ground import QueryError, safe_name, write_bytes_atomic
from core.requests import SearchQuery

MAX_QUERY_CHARS = 10_000  # the tokenizer truncates to the model's context anyway; this bounds the work
MAX_IMAGE_PIXELS = 80_000_000  # a larger "image" is a decompression bomb, not a query
# Below this norm the parts cancel out (e.g. "a dog" minus "a dog"): no direction is left to search.
_CANCELLED = 1e-6

SHOWN_QUERY_CHARS = 100  # a header shows this much of a longer text, then its length
CLIP_CONTEXT_TOKENS = 77  # the text context of OpenAI's CLIP and most open_clip models

KINDS = ("text", "image", "frame")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif")  # what the app's uploader accepts
IMAGE_FORMATS = ("JPEG", "PNG", "WebP", "BMP", "GIF")  # the same, as the messages name them


@dataclass(frozen=True)
class QueryPart:
    """One term of a query: a text, an image file, or an indexed frame (`video_id`, `frame_index`)."""

    kind: str  # one of KINDS
    value: str  # the text, the image's path, or the frame's video id
    sign: int = 1  # +1 added, -1 subtracted
    frame_index: int = 0  # for a frame part

    def describe(self) -> str:
        if self.kind == "text":
            return f'"{shorten_query(self.value)}"'
        if self.kind == "image":
            return f"[image {Path(self.value).name}]"
        return f"[frame {self.value} #{self.frame_index}]"


def query_parts(query: SearchQuery) -> list[QueryPart]:
    """The query's terms in order: text, image, frame, additions (+1 each), subtractions (-1 each)."""
    parts = [QueryPart("text", query.text)] if (query.text or "").strip() else []
    if query.image:
        parts.append(QueryPart("image", query.image))
    if query.like is not None:
        parts.append(QueryPart("frame", query.like[0], 1, int(query.like[1])))
    parts += [QueryPart("text", text) for text in query.add]
    parts += [QueryPart("text", text, -1) for text in query.subtract]
    return parts


def shorten_query(text: str, limit: int = SHOWN_QUERY_CHARS) -> str:
    """A query's text as a header shows it: whole when short, else its start, an ellipsis and its length
    (a pasted page is not echoed in full)."""
    if len(text) <= limit:
        return text
    return f"{text[:limit].rstrip()}… ({len(text):,} characters)"


def long_text_notice(context_tokens: int = CLIP_CONTEXT_TOKENS) -> str:
    """The one sentence a front door shows, once, when a text of the query was longer than the model reads."""
    return (
        f"CLIP reads only the first {context_tokens} tokens of a text (a few dozen words): the rest of the "
        "query was not used."
    )


def normalise_query(text: str | None) -> str:
    """Whitespace collapsed; an empty text is a user's error."""
    query = " ".join((text or "").split())
    if not query:
        raise QueryError("The query is empty: type a few words describing an action, e.g. 'juggling fire'.")
    return query[:MAX_QUERY_CHARS]


def describe(parts: Sequence[QueryPart]) -> str:
    """The composed query in one line, e.g. ``"a dog" − "grass"``."""
    out = ""
    for i, part in enumerate(parts):
        if i == 0:
            out = part.describe() if part.sign > 0 else f"− {part.describe()}"
        else:
            out += f" {'+' if part.sign > 0 else '−'} {part.describe()}"
    return out


def check_parts(parts: Sequence[QueryPart]) -> list[QueryPart]:
    """The parts, texts normalised; refuses a query with nothing to add (one sentence)."""
    checked = []
    for part in parts:
        if part.kind not in KINDS or part.sign not in (1, -1):
            raise ValueError(f"bad query part {part!r}")  # a bug: front doors build parts from flags
        if part.kind == "text":
            part = QueryPart("text", normalise_query(part.value), part.sign)
        checked.append(part)
    if not checked:
        normalise_query("")  # the plain search's own sentence: the query is empty
    if not any(p.sign > 0 for p in checked):
        raise QueryError(
            "Nothing to search for: give a text, an image (--image) or a term to add (--add); "
            "--subtract only takes away from those."
        )
    return checked


def read_query_image(source: str | Path | bytes, name: str = "") -> np.ndarray:
    """An image file (path or bytes) as RGB uint8 H×W×3; an unreadable one is one sentence."""
    label = name or (Path(source).name if not isinstance(source, bytes) else "the uploaded image")
    try:
        stream = io.BytesIO(source) if isinstance(source, bytes) else open(source, "rb")  # noqa: SIM115
    except OSError as exc:
        raise QueryError(f"Cannot read the query image {label} ({exc.strerror or exc}): check the path.") from None
    too_large = QueryError(
        f"The query image {label} is too large (more than {MAX_IMAGE_PIXELS:,} pixels): use a smaller image."
    )
    try:
        with stream, Image.open(stream) as image:
            if image.width * image.height > MAX_IMAGE_PIXELS:
                raise too_large
            return np.asarray(image.convert("RGB"), dtype=np.uint8)
    except Image.DecompressionBombError:  # Pillow's own refusal, at twice its limit: the same sentence
        raise too_large from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        raise QueryError(
            f"The query image {label} is not an image file that can be read (use a "
            f"{', '.join(IMAGE_FORMATS[:-1])} or {IMAGE_FORMATS[-1]})."
        ) from None


def save_query_image(data: bytes, name: str, output: Path) -> Path:
    """An uploaded query image, kept as ``<output>/queries/<sha1>/<its name>`` (checked as an image first):
    one copy per content, under the name the person knows, which the search header shows."""
    read_query_image(data, name)
    base = Path(name.replace("\\", "/")).name  # a browser may send a Windows path
    suffix = Path(base).suffix.lower() if Path(base).suffix.lower() in IMAGE_SUFFIXES else ".img"
    stem = safe_name(Path(base).stem, readable=True) or "image"
    path = output / "queries" / hashlib.sha1(data).hexdigest() / f"{stem}{suffix}"
    if not path.exists():
        write_bytes_atomic(path, data)
    return path


def compose_vector(vectors: Sequence[np.ndarray], signs: Sequence[int]) -> np.ndarray:
    """The normalised sum of the normalised parts, subtractions negated (float32, unit length)."""
    total = np.zeros_like(np.asarray(vectors[0], dtype=np.float64))
    for vector, sign in zip(vectors, signs, strict=True):
        v = np.asarray(vector, dtype=np.float64)
        total += sign * v / np.linalg.norm(v)
    norm = float(np.linalg.norm(total))
    if norm < _CANCELLED:
        raise QueryError("The added and subtracted terms cancel out: nothing is left to search for.")
    return (total / norm).astype(np.float32)


def embed_parts(
    parts: Sequence[QueryPart],
    encode_texts: Callable[[list[str]], np.ndarray],
    encode_images: Callable[[list[np.ndarray]], np.ndarray],
    frame_vector: Callable[[str, int], np.ndarray],
) -> np.ndarray:
    """One embedding per part, in order: texts in one batch, images in one batch, frames looked up."""
    out: list[np.ndarray | None] = [None] * len(parts)
    texts = [i for i, p in enumerate(parts) if p.kind == "text"]
    images = [i for i, p in enumerate(parts) if p.kind == "image"]
    if texts:
        for i, vector in zip(texts, encode_texts([parts[i].value for i in texts]), strict=True):
            out[i] = vector
    if images:
        rgb = [read_query_image(parts[i].value) for i in images]
        for i, vector in zip(images, encode_images(rgb), strict=True):
            out[i] = vector
    for i, part in enumerate(parts):
        if part.kind == "frame":
            out[i] = frame_vector(part.value, part.frame_index)
    return np.stack([v for v in out if v is not None])
