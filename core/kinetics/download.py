"""Get a Kinetics subset: fetch clips with yt-dlp, cut and re-encode them to H.264/AAC MP4, resumably.

The manifest (``OUT/manifest.jsonl``) records each clip's state, so a rerun skips what is done and
verified; ``OUT/annotations.json`` lists what was obtained, for ``python -m core build --videos OUT``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from core.ground import SourceError, atomic_path, now_iso, plural, remove_temporaries, safe_name, write_text_atomic
from core.ground import sha256_file as sha256
from core.kinetics.subset import load_subset, make_subset
from core.media.frames import FrameStrategy, VideoReadError, probe_video, read_video_frames
from core.media.sources import ANNOTATIONS_FILENAME, VideoRecord, kinetics_clip_stem
from core.media.transcode import browser_playability, ffmpeg_exe, h264_command

MANIFEST = "manifest.jsonl"
# The documented file other tools read (the CLI contract keeps its name): one JSON document, written
# from the journal above whenever it is compacted (on load and at the end of a run).
LEGACY_MANIFEST = "manifest.json"
PARTIAL_DIRNAME = ".partial"
DURATION_TOLERANCE_S = 0.25
YOUTUBE_URL = "https://www.youtube.com/watch?v={youtube_id}"
# yt-dlp's messages for clips that will never download, whatever the number of retries.
PERMANENT_MARKERS = (
    "http error 404",
    "http error 410",
    "http error 403",
    "http error 401",
    "private video",
    "video unavailable",
    "this video is unavailable",
    "has been removed",
    "account associated with this video has been terminated",
    "not available in your country",
    "blocked it in your country",
    "geo restrict",
    "copyright",
    "sign in to confirm your age",
    "members-only",
    "join this channel",
    "unsupported url",
    "is not a valid url",
    "no video formats found",
    "damaged or truncated",
    "no decodable",
)


class ClipError(Exception):
    """A clip could not be obtained; `permanent` says whether retrying can help."""

    def __init__(self, reason: str, permanent: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.permanent = permanent


def classify(message: str) -> bool:
    """True when a failure message means the clip is gone for good."""
    text = message.lower()
    return any(marker in text for marker in PERMANENT_MARKERS)


@dataclass
class Candidate:
    """One clip of the official list: where it comes from and which seconds of it."""

    label: str
    youtube_id: str
    time_start: int
    time_end: int
    split: str = ""
    url: str = ""

    @property
    def clip_id(self) -> str:
        return kinetics_clip_stem(self.youtube_id, self.time_start, self.time_end)

    @property
    def source_url(self) -> str:
        return self.url or YOUTUBE_URL.format(youtube_id=self.youtube_id)

    @property
    def duration(self) -> float:
        return float(self.time_end - self.time_start)


@dataclass
class DownloadProgress:
    clips_done: int
    clips_wanted: int
    failures: int
    in_flight: int
    elapsed_s: float
    last: str = ""


@dataclass
class DownloadSummary:
    out_dir: str
    per_class: int
    obtained: dict[str, int]
    failures: list[dict[str, Any]]
    short_classes: dict[str, str]
    seconds: float
    cancelled: bool = False
    annotations: str = ""

    @property
    def total(self) -> int:
        return sum(self.obtained.values())

    def line(self) -> str:
        wanted = self.per_class * len(self.obtained)
        short = f"; {plural(len(self.short_classes), 'class', 'classes')} short" if self.short_classes else ""
        state = "Cancelled: " if self.cancelled else ""
        return (
            f"{state}{self.total:,} of {plural(wanted, 'clip')} in {self.out_dir} "
            f"({len(self.failures):,} unavailable or failed"
            f"{short}) in {self.seconds:.0f} s"
        )

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "total": self.total}


def candidates_from_subset(subset: dict[str, Any]) -> dict[str, list[Candidate]]:
    out: dict[str, list[Candidate]] = {}
    for label in subset["classes"]:
        rows = subset.get("candidates", {}).get(label, [])
        out[label] = [
            Candidate(
                label=label,
                youtube_id=str(r["youtube_id"]),
                time_start=int(r["time_start"]),
                time_end=int(r["time_end"]),
                split=str(r.get("split", "")),
                url=str(r.get("url", "")),
            )
            for r in rows
        ]
    return out


def plan_from(
    subset_path: Path | str | None = None,
    csv_path: Path | str | None = None,
    classes: Sequence[str] | None = None,
    per_class: int | None = None,
) -> tuple[dict[str, list[Candidate]], int]:
    """Candidates per class, from a subset file, or from an official CSV and chosen classes."""
    if csv_path:
        if not classes:
            raise SourceError("With --csv, name the classes to download (--classes).")
        count = per_class or 5
        subset = make_subset(csv_path, classes, per_class=count, candidates=10_000)
        return candidates_from_subset(subset), count
    subset = load_subset(subset_path) if subset_path else load_subset()
    if classes:
        unknown = [c for c in classes if c not in subset["classes"]]
        if unknown:
            raise SourceError(f"Not in the subset file: {', '.join(unknown)}.")
        subset = {**subset, "classes": list(classes)}
    return candidates_from_subset(subset), int(per_class or subset.get("per_class", 5))


def _tool_dir() -> str:
    """A folder whose `ffmpeg` is imageio-ffmpeg's binary: yt-dlp looks for that name."""
    folder = Path(tempfile.gettempdir()) / f"clip-explorer-ffmpeg-{os.getuid() if hasattr(os, 'getuid') else 0}"
    folder.mkdir(parents=True, exist_ok=True)
    link = folder / ("ffmpeg.exe" if os.name == "nt" else "ffmpeg")
    target = ffmpeg_exe()
    if not link.exists() or os.path.realpath(link) != os.path.realpath(target):
        with atomic_path(link) as tmp:
            try:
                os.symlink(target, tmp)
            except OSError:  # no symbolic links here (Windows without the privilege): a copy does
                shutil.copy2(target, tmp)
    return str(folder)


_PATH_LOCK = threading.Lock()


def _ensure_ffmpeg_on_path() -> str:
    # yt-dlp's check "can ffmpeg do section downloads" ignores ffmpeg_location and looks on PATH.
    folder = _tool_dir()
    with _PATH_LOCK:
        if folder not in os.environ.get("PATH", "").split(os.pathsep):
            os.environ["PATH"] = folder + os.pathsep + os.environ.get("PATH", "")
    return folder


def fetch(candidate: Candidate, workdir: Path, timeout: float = 60.0) -> Path:
    """Download the clip's section (yt-dlp ``download_ranges``, cut on exact times) into `workdir`, or the
    whole source when the site does not allow sections (`finish_clip` cuts it then), with the ffmpeg that
    the ``imageio-ffmpeg`` package ships."""
    import yt_dlp
    from yt_dlp.utils import download_range_func

    tools = _ensure_ffmpeg_on_path()
    options = {
        "outtmpl": str(workdir / "source.%(ext)s"),
        "format": "bv*[height<=720][ext=mp4]+ba[ext=m4a]/b[height<=720][ext=mp4]/bv*[height<=720]+ba/b[height<=720]/b",
        "merge_output_format": "mp4",
        "download_ranges": download_range_func(None, [(candidate.time_start, candidate.time_end)]),
        "force_keyframes_at_cuts": True,
        "ffmpeg_location": tools,
        "quiet": True,
        "no_warnings": True,
        "noprogress": True,
        "noplaylist": True,
        "retries": 0,
        "fragment_retries": 0,
        "extractor_retries": 0,
        "socket_timeout": timeout,
        "overwrites": True,
        "cachedir": False,
        "logger": _SilentLogger(),
    }
    try:
        with yt_dlp.YoutubeDL(options) as ydl:
            ydl.extract_info(candidate.source_url, download=True)
    except yt_dlp.utils.DownloadError as exc:
        message = str(exc).replace("ERROR: ", "").strip()
        raise ClipError(message[:300], classify(message)) from None
    except OSError as exc:  # network trouble below yt-dlp's own handling
        raise ClipError(f"{exc.__class__.__name__}: {exc}", False) from None
    files = [p for p in workdir.iterdir() if p.name.startswith("source.") and p.suffix not in (".part", ".ytdl")]
    if not files:
        raise ClipError("the download produced no file", False)
    return max(files, key=lambda p: p.stat().st_size)


class _SilentLogger:
    """yt-dlp talks through our error classification, not on the terminal."""

    def debug(self, msg: str) -> None:
        pass

    info = warning = debug

    def error(self, msg: str) -> None:
        pass


def _duration(path: Path) -> float:
    count, fps, _, _ = probe_video(path)
    return count / fps if fps else 0.0


def _is_browser_ready(path: Path) -> bool:
    return path.suffix.lower() == ".mp4" and browser_playability(path).playable


def finish_clip(source: Path, candidate: Candidate, target: Path, timeout: float = 600) -> Path:
    """Check the fetched file, cut/re-encode it to H.264/AAC MP4 unless already right, then rename."""
    try:
        length = _duration(source)
        read_video_frames(VideoRecord(candidate.clip_id, candidate.label, source), FrameStrategy.parse("middle"))
    except VideoReadError as exc:
        raise ClipError(f"damaged or truncated download ({exc.reason})", True) from None
    wanted = candidate.duration
    if abs(length - wanted) <= DURATION_TOLERANCE_S:
        offset = 0.0  # the section itself
    elif length >= candidate.time_end - DURATION_TOLERANCE_S:
        offset = float(candidate.time_start)  # the whole source: cut here
    else:
        raise ClipError(f"damaged or truncated source ({length:.1f} s where {wanted:.0f} s were expected)", True)
    with atomic_path(target) as tmp:
        if offset == 0.0 and _is_browser_ready(source):
            shutil.copyfile(source, tmp)  # already browser-playable MP4 of the right length: no re-encode
        else:
            try:
                command = h264_command(source, tmp, offset, wanted)
                subprocess.run(command, check=True, capture_output=True, timeout=timeout)
            except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
                raise ClipError(f"re-encoding failed ({exc.__class__.__name__})", True) from None
        got = _duration(tmp)
        if abs(got - wanted) > DURATION_TOLERANCE_S + 0.1:
            raise ClipError(f"damaged or truncated source (the clip lasts {got:.1f} s, not {wanted:.0f} s)", True)
    return target


def read_manifest(out_dir: Path | str) -> dict[str, dict[str, Any]]:
    """clip id → its latest record, from ``OUT/manifest.jsonl`` (else the older ``OUT/manifest.json``).

    Lines that do not parse are passed over: a process killed while appending leaves half a line,
    and the clip's files are verified again anyway.
    """
    out = Path(out_dir)
    clips: dict[str, dict[str, Any]] = {}
    path = out / MANIFEST
    if path.is_file():
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict) and isinstance(record.get("clip"), str):
                clip_id = record.pop("clip")
                clips[clip_id] = record  # the last record of a clip wins
        return clips
    legacy = out / LEGACY_MANIFEST
    if legacy.is_file():
        try:
            clips = dict(json.loads(legacy.read_text(encoding="utf-8")).get("clips", {}))
        except (ValueError, AttributeError, TypeError):
            clips = {}  # an unreadable manifest: start over, files are re-verified anyway
    return clips


def _manifest_line(clip_id: str, entry: dict[str, Any]) -> str:
    return json.dumps({"clip": clip_id, **entry}, ensure_ascii=False) + "\n"


@dataclass
class Manifest:
    """What happened to every clip: one JSON line appended per change, the last line of a clip wins.

    Appending costs one line where rewriting the whole file cost every clip on every change; `compact`
    rewrites it with one line per clip (on load and at the end of a run).
    """

    path: Path
    clips: dict[str, dict[str, Any]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def load(cls, out_dir: Path) -> Manifest:
        """The manifest of `out_dir`, compacted; an older ``manifest.json`` alone is carried over."""
        manifest = cls(path=out_dir / MANIFEST, clips=read_manifest(out_dir))
        manifest.compact()
        return manifest

    def update(self, clip_id: str, **fields: Any) -> None:
        with self.lock:
            entry = self.clips.setdefault(clip_id, {})
            entry.update(fields, updated_at=now_iso())
            with self.path.open("a", encoding="utf-8") as fh:
                fh.write(_manifest_line(clip_id, entry))

    def compact(self) -> None:
        """Rewrite the journal with one line per clip, and the ``manifest.json`` snapshot beside it
        (atomically: a reader sees the old file or the new)."""
        with self.lock:
            write_text_atomic(self.path, "".join(_manifest_line(cid, e) for cid, e in sorted(self.clips.items())))
            snapshot = {"version": 1, "clips": dict(sorted(self.clips.items()))}
            write_text_atomic(self.path.with_name(LEGACY_MANIFEST), json.dumps(snapshot, indent=1, ensure_ascii=False))

    def done(self, out_dir: Path, clip_id: str) -> bool:
        """Recorded as done, and the file is still there with the recorded checksum."""
        entry = self.clips.get(clip_id, {})
        if entry.get("state") != "done":
            return False
        path = out_dir / str(entry.get("path", ""))
        return path.is_file() and path.stat().st_size == entry.get("bytes") and sha256(path) == entry.get("sha256")


def clip_path(out_dir: Path, candidate: Candidate) -> Path:
    """``OUT/<label_with_underscores>/<clip id>.mp4``, both names made safe (they come from a file)."""
    folder = safe_name(candidate.label.replace(" ", "_"), readable=True, max_len=120) or "unlabelled"
    return out_dir / folder / f"{safe_name(candidate.clip_id, readable=True, max_len=120)}.mp4"


def obtain(
    candidate: Candidate,
    out_dir: Path,
    retries: int = 3,
    backoff: float = 1.0,
    cancel: threading.Event | None = None,
) -> tuple[Path, int]:
    """One clip, with retries for transient failures; returns (file, attempts) or raises ClipError."""
    attempts = 0
    while True:
        attempts += 1
        workdir = out_dir / PARTIAL_DIRNAME / f"{safe_name(candidate.clip_id)}-{os.getpid()}-{threading.get_ident()}"
        shutil.rmtree(workdir, ignore_errors=True)
        workdir.mkdir(parents=True)
        try:
            source = fetch(candidate, workdir)
            return finish_clip(source, candidate, clip_path(out_dir, candidate)), attempts
        except ClipError as exc:
            if exc.permanent or attempts > retries or (cancel is not None and cancel.is_set()):
                exc.reason = f"{exc.reason} (after {plural(attempts, 'attempt')})"
                raise
            time.sleep(backoff * 2 ** (attempts - 1))
        finally:
            shutil.rmtree(workdir, ignore_errors=True)


def write_annotations(out_dir: Path, manifest: Manifest) -> Path:
    """``OUT/annotations.json`` for the clips obtained (the pipeline's input format)."""
    entries = []
    for clip_id, entry in sorted(manifest.clips.items()):
        if entry.get("state") == "done" and (out_dir / entry["path"]).is_file():
            entries.append(
                {
                    "video_id": clip_id,
                    "path": entry["path"],
                    "label": entry["label"],
                    "youtube_id": entry["youtube_id"],
                    "time_start": entry["time_start"],
                    "time_end": entry["time_end"],
                    "split": entry.get("split", ""),
                    "url": entry.get("url", ""),
                }
            )
    return write_text_atomic(out_dir / ANNOTATIONS_FILENAME, json.dumps(entries, indent=1, ensure_ascii=False))


def download_subset(
    candidates: dict[str, list[Candidate]],
    out_dir: Path | str,
    per_class: int = 5,
    jobs: int = 4,
    retries: int = 3,
    backoff: float = 1.0,
    progress: Callable[[DownloadProgress], None] | None = None,
    cancel: threading.Event | None = None,
    retry_failed: bool = False,
) -> DownloadSummary:
    """Obtain `per_class` clips of every class, trying candidates in order, `jobs` at a time.

    A permanently unavailable clip (private, removed, geo-blocked, 404) is replaced by the next candidate;
    transient failures (network, 5xx) are retried with backoff first. Every file is checked (it decodes and
    lasts as long as the clip) before it takes its final name, so nothing half-written is ever kept.

    Clips recorded as permanently unavailable are not asked for again unless `retry_failed`. This is the
    one download verb: the front doors pass `jobs` and `retries` as given (at least 1 and 0 are used).
    """
    jobs, retries = max(1, jobs), max(0, retries)
    started = time.monotonic()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(out / PARTIAL_DIRNAME, ignore_errors=True)  # leftovers of a killed run
    for folder in (out, *(d for d in out.iterdir() if d.is_dir())):  # the manifest's and the label folders'
        remove_temporaries(folder, recursive=False)
    cancel = cancel or threading.Event()
    manifest = Manifest.load(out)
    obtained = {label: 0 for label in candidates}
    queues: dict[str, list[Candidate]] = {}
    for label, cands in candidates.items():
        queue = []
        for cand in cands:
            if obtained[label] < per_class and manifest.done(out, cand.clip_id):
                obtained[label] += 1
            elif manifest.clips.get(cand.clip_id, {}).get("state") == "failed" and not retry_failed:
                continue  # permanently unavailable: not asked again
            else:
                queue.append(cand)
        queues[label] = queue
    failures: list[dict[str, Any]] = [
        {"clip": cid, "label": e.get("label"), "reason": e.get("reason")}
        for cid, e in manifest.clips.items()
        if e.get("state") == "failed" and e.get("label") in candidates and not retry_failed
    ]
    in_flight: dict[Future, Candidate] = {}
    running = {label: 0 for label in candidates}
    wanted = per_class * len(candidates)

    def report(last: str = "") -> None:
        if progress is not None:
            done = sum(min(per_class, n) for n in obtained.values())
            progress(DownloadProgress(done, wanted, len(failures), len(in_flight), time.monotonic() - started, last))

    def submit(pool: ThreadPoolExecutor) -> None:
        # Fill free slots, favouring the classes furthest from their count; never ask for more
        # clips of a class than it still needs.
        while len(in_flight) < jobs and not cancel.is_set():
            open_classes = [
                label for label in candidates if queues[label] and obtained[label] + running[label] < per_class
            ]
            if not open_classes:
                return
            label = min(open_classes, key=lambda c: (obtained[c] + running[c], c))
            cand = queues[label].pop(0)
            running[label] += 1
            manifest.update(cand.clip_id, state="downloading", **_candidate_fields(cand))
            in_flight[pool.submit(obtain, cand, out, retries, backoff, cancel)] = cand

    report()
    with ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="download") as pool:
        submit(pool)
        while in_flight:
            finished, _ = wait(list(in_flight), return_when=FIRST_COMPLETED)
            for future in finished:
                cand = in_flight.pop(future)
                running[cand.label] -= 1
                try:
                    path, attempts = future.result()
                except ClipError as exc:
                    state = "failed" if exc.permanent else "transient"
                    manifest.update(cand.clip_id, state=state, reason=exc.reason)
                    failures.append({"clip": cand.clip_id, "label": cand.label, "reason": exc.reason})
                    report(f"{cand.clip_id}: {exc.reason}")
                    continue
                relative = path.relative_to(out).as_posix()
                manifest.update(
                    cand.clip_id,
                    state="done",
                    reason="",
                    attempts=attempts,
                    path=relative,
                    bytes=path.stat().st_size,
                    sha256=sha256(path),
                    duration_s=round(_duration(path), 3),
                )
                obtained[cand.label] += 1
                # Record which unavailable clip of the class this one replaces, if any.
                replaced = next(
                    (
                        f["clip"]
                        for f in failures
                        if f["label"] == cand.label and not manifest.clips.get(f["clip"], {}).get("replaced_by")
                    ),
                    None,
                )
                if replaced:
                    manifest.update(replaced, replaced_by=cand.clip_id)
                report(cand.clip_id)
            submit(pool)
    shutil.rmtree(out / PARTIAL_DIRNAME, ignore_errors=True)
    manifest.compact()
    annotations = write_annotations(out, manifest)
    short = {
        label: f"{obtained[label]} of {per_class}: candidates exhausted"
        for label in candidates
        if obtained[label] < per_class and not cancel.is_set()
    }
    report()
    return DownloadSummary(
        out_dir=str(out),
        per_class=per_class,
        obtained={label: min(per_class, n) for label, n in obtained.items()},
        failures=failures,
        short_classes=short,
        seconds=time.monotonic() - started,
        cancelled=cancel.is_set(),
        annotations=str(annotations),
    )


def _candidate_fields(cand: Candidate) -> dict[str, Any]:
    return {
        "label": cand.label,
        "youtube_id": cand.youtube_id,
        "time_start": cand.time_start,
        "time_end": cand.time_end,
        "split": cand.split,
        "url": cand.source_url,
    }
