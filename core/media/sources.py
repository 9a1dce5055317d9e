"""Turn a video source into `VideoRecord`s.

Three layouts are understood:

1. a folder per label: ``VIDEOS/<label>/<anything>.mp4`` (underscores in the folder name read as
   spaces); every other file in it is listed as skipped ("not a video file type"), apart from hidden
   files and annotation files (.json, .jsonl, .csv);
2. an ``annotations.json`` file: a list of objects with at least ``video_id``, ``path`` and
   ``label``; other keys are kept as metadata;
3. the official Kinetics CSV (``label,youtube_id,time_start,time_end[,split]``) with a folder of
   clips named ``{youtube_id}_{time_start:06d}_{time_end:06d}.mp4``.

Nothing here opens a video: a video is recognised by its extension (`VIDEO_EXTENSIONS`, any case),
and records whose file is missing or whose row is malformed are reported in `SourceScan.skipped`
with a reason, and the scan goes on.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from core.ground import SourceError, confine, is_within, plural, printable, resolve_roots

# What FFmpeg (inside OpenCV) reads; at least as wide as Ray Data's `read_videos` default. A file with
# another extension is not opened at all: decoding a PDF to find out it is not a video wastes time.
VIDEO_EXTENSIONS = (
    ".mp4", ".mkv", ".mov", ".avi", ".wmv", ".flv", ".webm", ".m4v", ".3gp", ".mpeg", ".mpg", ".ts", ".ogv",
    ".rm", ".rmvb", ".vob", ".asf", ".f4v", ".m2ts", ".mts", ".divx", ".xvid", ".mxf",
)  # fmt: skip
# Files that describe the videos rather than being one (annotations, the downloader's manifest, a
# Kinetics CSV): not listed as skipped.
ANNOTATION_EXTENSIONS = (".json", ".jsonl", ".csv")
NOT_A_VIDEO = "not a video file type"
ANNOTATIONS_FILENAME = "annotations.json"
# The one rule for links, in the CLI and the app alike: a video file found by scanning a folder may be a
# link, but its target must lie inside that folder. Videos kept elsewhere are listed by absolute path in an
# annotations.json instead (the app then still confines them to its allowed folders).
LINKS_OUTSIDE = "links outside the videos folder (list videos kept elsewhere in an annotations.json)"
KINETICS_REQUIRED_COLUMNS = ("label", "youtube_id", "time_start", "time_end")
# Metadata values must be scalars: ChromaDB and JSON reports store them as they are.
MetaValue = str | int | float | bool


@dataclass(frozen=True)
class VideoRecord:
    """One labelled video file."""

    video_id: str
    label: str
    path: Path
    meta: dict[str, MetaValue] = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self) -> None:
        # The id and label are text everywhere (record ids, Chroma, reports) while the path stays the file's
        # own name, whatever its bytes.
        object.__setattr__(self, "video_id", printable(self.video_id))
        object.__setattr__(self, "label", printable(self.label))


@dataclass(frozen=True)
class SkippedItem:
    """Something that was not used, and why."""

    item: str
    reason: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "item", printable(self.item))  # often a file name: shown and written as text

    def __str__(self) -> str:
        return f"{self.item}: {self.reason}"


@dataclass
class SourceScan:
    """What a source yielded: usable videos, skipped items and the layout that was recognised."""

    videos: list[VideoRecord]
    skipped: list[SkippedItem]
    layout: str

    @property
    def labels(self) -> list[str]:
        return sorted({v.label for v in self.videos})


def is_video_file(path: Path) -> bool:
    return path.suffix.lower() in VIDEO_EXTENSIONS and not path.name.startswith(".")


def is_annotation_file(path: Path) -> bool:
    return path.suffix.lower() in ANNOTATION_EXTENSIONS


def label_from_folder(name: str) -> str:
    return " ".join(name.replace("_", " ").split())


def kinetics_clip_stem(youtube_id: str, time_start: int, time_end: int) -> str:
    """The file stem the official Kinetics downloader gives a clip."""
    return f"{youtube_id}_{int(time_start):06d}_{int(time_end):06d}"


def scan_source(
    videos: Path | str | None,
    annotations: Path | str | None = None,
    allowed_roots: Sequence[Path | str] | None = None,
) -> SourceScan:
    """Recognise the layout of a source and list its videos.

    With an annotations file, ``.json`` means layout 2 and ``.csv`` layout 3 (clips looked up under
    `videos`). Without one, a folder holding ``annotations.json`` (as the downloader writes) is read
    as layout 2, any other folder as layout 1. `allowed_roots`, when given, confines every path
    read to those folders.
    """
    roots = resolve_roots(allowed_roots)
    videos_dir = Path(videos).expanduser() if videos else None
    if videos_dir is not None:
        confine(videos_dir, roots, "The videos folder")
        if not videos_dir.is_dir():
            raise SourceError(f"The videos folder {videos_dir} does not exist or is not a folder.")
    if annotations:
        ann = Path(annotations).expanduser()
        confine(ann, roots, "The annotations file")
        if not ann.is_file():
            raise SourceError(f"The annotations file {ann} does not exist.")
        if ann.suffix.lower() == ".csv":
            if videos_dir is None:
                raise SourceError("A Kinetics CSV needs --videos, the folder that holds its clips.")
            return load_kinetics_csv(ann, videos_dir, allowed_roots=roots)
        return load_annotations_json(ann, allowed_roots=roots)
    if videos_dir is None:
        raise SourceError("Give a videos folder (--videos DIR) or an annotations file.")
    if (videos_dir / ANNOTATIONS_FILENAME).is_file():
        return load_annotations_json(videos_dir / ANNOTATIONS_FILENAME, allowed_roots=roots)
    return scan_folders(videos_dir, allowed_roots=roots)


def _walk_files(root: Path) -> Iterable[Path]:
    """Every file below `root` that is not hidden and not in a hidden folder, in a stable order."""
    # followlinks=False: a symlink loop in the folder must not send the scan round forever.
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if not name.startswith("."):
                yield Path(dirpath) / name


def _walk_videos(root: Path) -> Iterable[Path]:
    return (path for path in _walk_files(root) if is_video_file(path))


def scan_folders(root: Path | str, allowed_roots: Sequence[Path] | None = None) -> SourceScan:
    """Layout 1: every video below ``root/<label>/``; the label is the first folder's name."""
    root = Path(root)
    inside = [confine(root, allowed_roots, "The videos folder")]
    videos: list[VideoRecord] = []
    skipped: list[SkippedItem] = []
    taken: dict[str, Path] = {}
    for path in _walk_files(root):
        rel = path.relative_to(root)
        if not is_video_file(path):
            if not is_annotation_file(path):
                skipped.append(SkippedItem(str(rel), NOT_A_VIDEO))
            continue
        if len(rel.parts) < 2:
            skipped.append(SkippedItem(str(rel), "not inside a label folder (expected VIDEOS/<label>/file)"))
            continue
        label = label_from_folder(rel.parts[0])
        if not label:
            skipped.append(SkippedItem(str(rel), "its label folder name is empty"))
            continue
        if not is_within(path.resolve(), inside):
            skipped.append(SkippedItem(str(rel), LINKS_OUTSIDE))
            continue
        # The id is the path below the root without extension: unique across label folders, so
        # two folders holding "clip01.mp4" give two videos. Two files differing only by extension
        # keep it to stay distinct.
        video_id = rel.with_suffix("").as_posix()
        if video_id in taken:
            video_id = rel.as_posix()
        taken[video_id] = path
        videos.append(VideoRecord(video_id=video_id, label=label, path=path.absolute(), meta={}))
    if not videos and all(s.reason == NOT_A_VIDEO for s in skipped):
        others = f" ({plural(len(skipped), 'other file')} skipped: {NOT_A_VIDEO})" if skipped else ""
        raise SourceError(
            f"No videos found in {root}{others}: put them in one folder per label, e.g. "
            f"{root}/playing_guitar/clip.mp4 ({', '.join(e.lstrip('.') for e in VIDEO_EXTENSIONS)})."
        )
    return SourceScan(videos=videos, skipped=skipped, layout="folders")


def _scalar_meta(obj: dict, exclude: Sequence[str]) -> dict[str, MetaValue]:
    meta: dict[str, MetaValue] = {}
    for key, value in obj.items():
        if key in exclude or value is None:
            continue
        meta[str(key)] = value if isinstance(value, (str, int, float, bool)) else json.dumps(value)
    return meta


def _line_at(data: bytes, offset: int) -> int:
    return data.count(b"\n", 0, offset) + 1


# Deeper than this, a JSON document is no list of annotations: where it first gets there is the line named.
_NESTING_SHOWN = 100


def _deep_line(text: str) -> int:
    """The line where `text`'s brackets first nest deeper than `_NESTING_SHOWN` (outside strings)."""
    depth, line, in_string, escaped = 0, 1, False, False
    for char in text:
        if char == "\n":
            line += 1
        elif in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            if depth > _NESTING_SHOWN:
                return line
        elif char in "]}":
            depth -= 1
    return line


def load_annotations_json(path: Path | str, allowed_roots: Sequence[Path] | None = None) -> SourceScan:
    """Layout 2: a JSON list of ``{video_id, path, label, ...}`` objects.

    Relative paths are read relative to the file and must stay inside its folder; absolute paths
    are accepted (inside `allowed_roots` when given).
    """
    path = Path(path)
    roots = resolve_roots(allowed_roots)
    try:
        content = path.read_bytes()
    except OSError as exc:
        raise SourceError(
            f"The annotations file {path} cannot be read ({exc.strerror or exc.__class__.__name__})."
        ) from None
    try:
        text = content.decode("utf-8")
        data = json.loads(text)
    except UnicodeDecodeError as exc:
        raise SourceError(
            f"The annotations file {path} is not UTF-8 text (line {_line_at(content, exc.start)}): save it as UTF-8."
        ) from None
    except json.JSONDecodeError as exc:
        raise SourceError(
            f"The annotations file {path} is not valid JSON (line {exc.lineno}, column {exc.colno}): "
            "fix it or regenerate it."
        ) from None
    except RecursionError:  # Python's parser recurses once per level of brackets
        raise SourceError(
            f"The annotations file {path} is nested too deeply to read (line {_deep_line(text)}): it must hold "
            "a list of objects with video_id, path and label."
        ) from None
    if isinstance(data, dict) and isinstance(data.get("videos"), list):
        data = data["videos"]
    if not isinstance(data, list):
        raise SourceError(f"The annotations file {path} must hold a list of objects with video_id, path and label.")
    base = path.parent.resolve()
    videos: list[VideoRecord] = []
    skipped: list[SkippedItem] = []
    seen: dict[str, int] = {}
    for i, entry in enumerate(data):
        where = f"{path.name}[{i}]"
        if not isinstance(entry, dict):
            skipped.append(SkippedItem(where, "not an object"))
            continue
        missing = [k for k in ("video_id", "path", "label") if not str(entry.get(k) or "").strip()]
        if missing:
            skipped.append(SkippedItem(where, f"missing {', '.join(missing)}"))
            continue
        video_id = str(entry["video_id"]).strip()
        label = " ".join(str(entry["label"]).split())
        where = f"{where} ({video_id})"
        if video_id in seen:
            skipped.append(SkippedItem(where, f"duplicate video_id (first at entry {seen[video_id]})"))
            continue
        raw = Path(str(entry["path"])).expanduser()
        video_path = (raw if raw.is_absolute() else base / raw).resolve()
        if not raw.is_absolute() and not is_within(video_path, [base]):
            skipped.append(SkippedItem(where, "its path leaves the annotations folder; use an absolute path"))
            continue
        if roots is not None and not is_within(video_path, roots):
            skipped.append(SkippedItem(where, "its path is outside the folders this app may read"))
            continue
        if not video_path.is_file():
            skipped.append(SkippedItem(where, f"file not found: {video_path}"))
            continue
        seen[video_id] = i
        meta = _scalar_meta(entry, exclude=("video_id", "path", "label"))
        videos.append(VideoRecord(video_id=video_id, label=label, path=video_path, meta=meta))
    return SourceScan(videos=videos, skipped=skipped, layout="annotations")


def read_kinetics_csv(csv_path: Path | str) -> list[dict[str, str]]:
    """Rows of an official Kinetics CSV, checked for the required columns (fields beyond the header dropped)."""
    csv_path = Path(csv_path)
    try:
        raw = csv_path.read_bytes()
    except OSError as exc:
        raise SourceError(f"The CSV {csv_path} cannot be read ({exc.strerror or exc.__class__.__name__}).") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise SourceError(
            f"The CSV {csv_path} is not UTF-8 text (line {_line_at(raw, exc.start)}): save it as UTF-8."
        ) from None
    reader = csv.DictReader(io.StringIO(text, newline=""))
    try:
        columns = [c.strip() for c in (reader.fieldnames or [])]
        missing = [c for c in KINETICS_REQUIRED_COLUMNS if c not in columns]
        if missing:
            raise SourceError(
                f"The CSV {csv_path} lacks {plural(len(missing), 'column')} ({', '.join(missing)}): expected the "
                "official Kinetics header label,youtube_id,time_start,time_end,split."
            )
        # A row longer than the header puts its extra fields under the key None: they are not used.
        return [{k.strip(): (v or "").strip() for k, v in row.items() if k is not None} for row in reader]
    except csv.Error as exc:  # the reader counts the lines it finished: the one it failed on is the next
        raise SourceError(
            f"The CSV {csv_path} is not a valid CSV at line {reader.line_num + 1} ({exc}): fix that line."
        ) from None


def _index_clip_files(clips_dir: Path) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for path in _walk_videos(clips_dir):
        # Prefer .mp4 when a clip exists in several containers: it is what the downloader writes.
        if path.stem not in found or path.suffix.lower() == ".mp4":
            found[path.stem] = path
    return found


def load_kinetics_csv(
    csv_path: Path | str, clips_dir: Path | str, allowed_roots: Sequence[Path] | None = None
) -> SourceScan:
    """Layout 3: the official CSV; clips are found anywhere below `clips_dir` by their file stem."""
    rows = read_kinetics_csv(csv_path)
    name = Path(csv_path).name
    inside = [confine(clips_dir, allowed_roots, "The videos folder")]
    clips = _index_clip_files(Path(clips_dir))
    videos: list[VideoRecord] = []
    skipped: list[SkippedItem] = []
    seen: set[str] = set()
    for line, row in enumerate(rows, start=2):
        try:
            start, end = int(float(row["time_start"])), int(float(row["time_end"]))
        except (ValueError, OverflowError):  # OverflowError: ±1e400 reads as an infinite float
            skipped.append(SkippedItem(f"{name} line {line}", "time_start/time_end are not numbers of seconds"))
            continue
        if start < 0 or end < start:
            skipped.append(SkippedItem(f"{name} line {line}", "time_start/time_end are not a time span in seconds"))
            continue
        youtube_id, label = row["youtube_id"], " ".join(row["label"].split())
        if not youtube_id or not label:
            skipped.append(SkippedItem(f"{name} line {line}", "empty youtube_id or label"))
            continue
        stem = kinetics_clip_stem(youtube_id, start, end)
        if stem in seen:
            skipped.append(SkippedItem(f"{name} line {line} ({stem})", "duplicate clip"))
            continue
        seen.add(stem)
        clip = clips.get(stem)
        if clip is None:
            skipped.append(SkippedItem(f"{name} line {line} ({stem})", f"clip not found in {clips_dir}"))
            continue
        if not is_within(clip.resolve(), inside):
            skipped.append(SkippedItem(f"{name} line {line} ({stem})", LINKS_OUTSIDE))
            continue
        meta: dict[str, MetaValue] = {"youtube_id": youtube_id, "time_start": start, "time_end": end}
        if row.get("split"):
            meta["split"] = row["split"]
        videos.append(VideoRecord(video_id=stem, label=label, path=clip.absolute(), meta=meta))
    return SourceScan(videos=videos, skipped=skipped, layout="kinetics_csv")
