"""The Ray build engine: the local engine's three stages as Ray Data operators, on one machine or a cluster.

    records to do ─▶ prepare: Ray tasks of one CPU (`prepare_video`, the local engine's frame code: decode,
                     resize/crop to the model's input as uint8, thumbnails as JPEG bytes); one row per frame
                  ─▶ encode: actors that each load the model once (one GPU each where the cluster has GPUs,
                     else one CPU actor per node), batches of `batch_size` frames from any videos
                  ─▶ this process: frames gathered per video; once all of a video's frames are encoded, its
                     thumbnails are written to the output folder here and it goes back to the build skeleton
                     (`core.engines.build`), whose writer upserts it

Why this shape:
- Only this process writes: the output folder needs no shared filesystem (thumbnails travel back as bytes),
  and a video's thumbnails are on disk before its records reach the index, as in a local build. With an
  existing cluster the index is a Chroma server (an embedded folder only with a local Ray instance).
- Rows are frames, not videos: the encoder gets full batches across videos, as the local engine's does, and
  the model inputs are a fixed-shape tensor column, which Ray Data moves without pickling.
- Faults: a prepare task whose worker dies is run again by Ray, and an encoding actor that dies is restarted
  with its batch retried. A frame that arrives twice fills the same slot, and a video is written once, only
  when all its frames are in: a build stopped anywhere (cancel, Ctrl-C, a lost cluster) leaves complete
  videos, and the next build skips them and writes the rest under the same ids.

Ray is optional (requirements-ray.txt) and imported only inside functions, as are torch, the model and
Chroma: the prepare tasks import this module and should stay as light as the local engine's workers.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import threading
import time
from collections.abc import Generator, Iterator, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from core.engines.config import BuildConfig, batch_size_for
from core.engines.prepare import PreparedVideo, prepare_video
from core.engines.records import BuildSummary, BuildTimeline, VideoResult
from core.ground import UserError
from core.media.frames import FrameStrategy, VideoReadError
from core.media.geometry import InputGeometry
from core.media.sources import VideoRecord
from core.media.thumbnails import write_thumbnail
from core.runtime import configure_runtime, usable_cores

if TYPE_CHECKING:
    from core.model.embed import ClipModel, ModelSpec
    from core.requests import BuildRequest

ENGINE = "ray"
INSTALL_HINT = "pip install -r requirements-ray.txt"
# Input blocks (one Ray task each): one video per block for small builds, at most this many for large ones
# (a block is an object the driver creates up front; 545k of them would cost more than they balance).
MAX_INPUT_BLOCKS = 4096
CORE_DIR = Path(__file__).resolve().parents[1]
PREPARE_BASE_BYTES = 192 * 2**20  # a prepare task's memory: its process, plus per planned frame
PREPARE_FRAME_BYTES = 4 * 2**20  # a 1280×720 RGB frame, its model input and its thumbnail, rounded up
_ONE_BUILD = threading.Lock()  # one Ray connection per process: one Ray build at a time in it


class RayEngineError(UserError):
    """The Ray engine cannot run as asked: Ray missing, the cluster unreachable, an embedded index with a cluster."""


def import_ray() -> Any:
    """The `ray` module with Ray Data, or one sentence on how to install it."""
    try:
        import ray
        import ray.data
    except ImportError:
        raise RayEngineError(
            f"The Ray engine needs Ray, which is not installed here: run {INSTALL_HINT} in the project's folder "
            "(or use --engine local)."
        ) from None
    return ray


def check_ray_request(request: BuildRequest) -> None:
    """Refuse, before any work, a build the Ray engine cannot do (each with one sentence)."""
    if request.ray_address and request.server is None:
        raise RayEngineError(
            f"A build on an existing Ray cluster (--ray-address {request.ray_address}) writes to a Chroma server, "
            "not to an embedded --db folder: start one (chroma run --path DIR --host 0.0.0.0) and pass "
            "--chroma-host, or leave out --ray-address to use a local Ray instance."
        )
    device = (request.device or "auto").lower()
    if device not in ("auto", "cpu") and not device.startswith("cuda"):
        raise RayEngineError(f"Unknown device '{request.device}': use auto, cpu or cuda.")
    import_ray()


@dataclass(frozen=True)
class EncoderPlan:
    """How the encoding stage is spread: how many actors, what each one holds, and the batch."""

    actors: int
    device: str  # "cuda" (one GPU per actor) or "cpu"
    precision: str  # fp32 or fp16
    batch_size: int
    threads: int | None  # torch threads per actor; None: every core of its node (the model is the cost there)

    @property
    def gpus(self) -> int:
        return 1 if self.device == "cuda" else 0


def plan_encoders(
    resources: dict[str, float],
    node_cpus: list[float],
    request: BuildRequest,
    actors: int | None = None,
    threads: int | None = None,
) -> EncoderPlan:
    """One actor per GPU where the cluster has GPUs (unless --device cpu); else one CPU actor per node that
    has a core to spare for the prepare tasks (at least one actor). `actors` and `threads` (torch threads per
    actor) override the plan."""
    from core.model.embed import resolve_precision

    gpus = int(resources.get("GPU", 0))
    device = (request.device or "auto").lower()
    if device.startswith("cuda") and gpus == 0:
        raise RayEngineError("--device cuda was asked for, but the Ray cluster has no GPU: use --device auto or cpu.")
    kind = "cuda" if gpus > 0 and device != "cpu" else "cpu"
    import torch

    precision = resolve_precision(request.precision, torch.device(kind))
    count = actors or (gpus if kind == "cuda" else max(1, sum(1 for cpus in node_cpus if cpus >= 2)))
    batch_size = max(1, int(request.batch_size or batch_size_for(kind, precision)))
    # On a GPU the actor only feeds the model; on a CPU it keeps every core, as the local engine's encoder does.
    return EncoderPlan(count, kind, precision, batch_size, threads=threads or (1 if kind == "cuda" else None))


# -- stage 1: prepare (Ray tasks) ------------------------------------------------------------------------


def record_row(record: VideoRecord) -> dict[str, str]:
    """A video record as a row of the input dataset."""
    return {"video_id": record.video_id, "label": record.label, "path": str(record.path),
            "meta": json.dumps(record.meta)}  # fmt: skip


@functools.cache
def _worker_ready() -> bool:
    # Quiet FFmpeg, one OpenCV thread per task (as in the local engine's workers), once per Ray worker process.
    configure_runtime()
    return True


def _node_id() -> str:
    import ray

    return str(ray.get_runtime_context().get_node_id())


def prepare_frames(
    batch: dict[str, np.ndarray], strategy: FrameStrategy, geometry: InputGeometry | None, output_dir: str
) -> dict[str, np.ndarray]:
    """Ray Data UDF: video records → one row per planned frame (a skipped video: one row, `frames` 0).

    Columns: video_id, position (the frame's place in its video), frames (frames in the video), reason (why
    a video was skipped), meta (the frame's index metadata, JSON), notes (the video's, JSON), thumbnail
    (JPEG bytes), pixels (the model input, 3×H×W uint8; the RGB frame for a model without a geometry) and
    prepared_on (the node)."""
    _worker_ready()
    rows = _FrameRows(geometry)
    for video_id, label, path, meta in zip(batch["video_id"], batch["label"], batch["path"], batch["meta"],
                                           strict=True):  # fmt: skip
        record = VideoRecord(str(video_id), str(label), Path(str(path)), json.loads(str(meta)))
        try:
            rows.add(prepare_video(record, strategy, geometry, output_dir, thumbnail_bytes=True))
        except VideoReadError as exc:
            rows.skip(record.video_id, exc.reason)
    return rows.columns(_node_id())


class _FrameRows:
    """The columns of `prepare_frames`' output, filled video by video."""

    def __init__(self, geometry: InputGeometry | None) -> None:
        self.geometry = geometry
        self.video_id: list[str] = []
        self.position: list[int] = []
        self.frames: list[int] = []
        self.reason: list[str] = []
        self.meta: list[str] = []
        self.notes: list[str] = []
        self.thumbnail: list[bytes] = []
        self.pixels: list[np.ndarray] = []

    def add(self, video: PreparedVideo) -> None:
        notes = json.dumps(video.notes)
        inputs = video.pixels if video.pixels is not None else video.frames
        for position, (meta, thumbnail) in enumerate(zip(video.metadatas, video.thumbnails, strict=True)):
            self._row(video.video_id, position, len(video), "", json.dumps(meta), notes, thumbnail, inputs[position])

    def skip(self, video_id: str, reason: str) -> None:
        height, width = self.geometry.size if self.geometry is not None else (1, 1)
        blank = np.zeros((3, height, width) if self.geometry is not None else (height, width, 3), np.uint8)
        self._row(video_id, 0, 0, reason, "", "[]", b"", blank)

    def _row(self, video_id: str, position: int, frames: int, reason: str, meta: str, notes: str,
             thumbnail: bytes, pixels: np.ndarray) -> None:  # fmt: skip
        self.video_id.append(video_id)
        self.position.append(position)
        self.frames.append(frames)
        self.reason.append(reason)
        self.meta.append(meta)
        self.notes.append(notes)
        self.thumbnail.append(thumbnail)
        self.pixels.append(pixels)

    def columns(self, node: str) -> dict[str, np.ndarray]:
        if self.geometry is not None:
            pixels = np.stack(self.pixels)
        else:  # RGB frames of any size: a ragged tensor column
            pixels = np.empty(len(self.pixels), dtype=object)
            pixels[:] = self.pixels
        thumbnails = np.empty(len(self.thumbnail), dtype=object)
        thumbnails[:] = self.thumbnail
        return {
            "video_id": np.array(self.video_id, dtype=object),
            "position": np.array(self.position, dtype=np.int32),
            "frames": np.array(self.frames, dtype=np.int32),
            "reason": np.array(self.reason, dtype=object),
            "meta": np.array(self.meta, dtype=object),
            "notes": np.array(self.notes, dtype=object),
            "thumbnail": thumbnails,
            "pixels": pixels,
            "prepared_on": np.array([node] * len(self.video_id), dtype=object),
        }


# -- stage 2: encode (Ray actors) ------------------------------------------------------------------------


class FrameEncoder:
    """Ray Data actor: holds the model once; frame rows in, the same rows with their embedding out.

    The `pixels` column is dropped (it is not needed past here); `vector` (float32, normalised) and
    `encoded_on` (the node) are added. Skipped videos' rows get a zero vector."""

    def __init__(self, spec: ModelSpec, plan: EncoderPlan, prepared_inputs: bool) -> None:
        from core.engines.local import BatchEncoder
        from core.model.embed import load_model

        configure_runtime(torch_threads=plan.threads or usable_cores())
        self.model: ClipModel = load_model(spec, plan.device, plan.precision)
        self.encoder = BatchEncoder(self.model, plan.batch_size)
        self.batch_size = plan.batch_size
        self.prepared_inputs = prepared_inputs and self.model.geometry is not None
        self.node = _node_id()

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        pixels = batch.pop("pixels")
        real = np.flatnonzero(batch["frames"] > 0)
        vectors = np.zeros((len(batch["frames"]), self.model.embed_dim), dtype=np.float32)
        for start in range(0, len(real), self.batch_size):
            rows = real[start : start + self.batch_size]
            vectors[rows] = self.encoder.encode([self._inputs(pixels, rows)])
        batch["vector"] = vectors
        batch["encoded_on"] = np.array([self.node] * len(vectors), dtype=object)
        return batch

    def _inputs(self, pixels: np.ndarray, rows: np.ndarray) -> Any:
        import torch

        if self.prepared_inputs:
            return torch.from_numpy(np.ascontiguousarray(pixels[rows]))
        return torch.stack([self.model.preprocess_rgb(np.asarray(pixels[i])) for i in rows])


# -- stage 3: this process -------------------------------------------------------------------------------


@dataclass
class CompleteVideo:
    """A video whose frames are all encoded, in frame order."""

    video_id: str
    metadatas: list[dict[str, Any]]
    thumbnails: list[bytes]
    vectors: np.ndarray
    notes: list[str]


@dataclass
class _Partial:
    metadatas: list[dict[str, Any] | None]
    thumbnails: list[bytes]
    vectors: np.ndarray
    notes: list[str]
    received: int = 0


@dataclass
class VideoAssembler:
    """Gathers encoded frame rows into videos; hands out each video once, when all its frames are in.

    A row that arrives again (a task Ray ran twice) fills the slot it filled before, and rows of a video
    already handed out are ignored: nothing reaches the index twice."""

    embed_dim: int
    pending: dict[str, _Partial] = field(default_factory=dict)
    finished: set[str] = field(default_factory=set)
    nodes: set[str] = field(default_factory=set)

    def add(self, batch: dict[str, np.ndarray]) -> tuple[list[CompleteVideo], list[tuple[str, str]]]:
        """(videos completed by these rows, (video id, reason) of videos skipped in them)."""
        self.nodes.update(str(n) for n in batch["prepared_on"])
        self.nodes.update(str(n) for n in batch["encoded_on"])
        complete: list[CompleteVideo] = []
        skipped: list[tuple[str, str]] = []
        for i, video_id in enumerate(str(v) for v in batch["video_id"]):
            if video_id in self.finished:
                continue
            frames = int(batch["frames"][i])
            if frames == 0:
                self.finished.add(video_id)
                skipped.append((video_id, str(batch["reason"][i])))
                continue
            video = self.pending.get(video_id)
            if video is None:
                video = _Partial([None] * frames, [b""] * frames, np.empty((frames, self.embed_dim), np.float32),
                                 json.loads(str(batch["notes"][i])))  # fmt: skip
                self.pending[video_id] = video
            position = int(batch["position"][i])
            if video.metadatas[position] is None:
                video.received += 1
            video.metadatas[position] = json.loads(str(batch["meta"][i]))
            video.thumbnails[position] = bytes(batch["thumbnail"][i])
            video.vectors[position] = batch["vector"][i]
            if video.received == frames:
                del self.pending[video_id]
                self.finished.add(video_id)
                metadatas = [m for m in video.metadatas if m is not None]
                complete.append(CompleteVideo(video_id, metadatas, video.thumbnails, video.vectors, video.notes))
        return complete, skipped


def write_thumbnails(video: CompleteVideo, output_dir: Path) -> list[dict[str, Any]]:
    """Write the video's thumbnails under `output_dir` (where a local build writes them); its metadata,
    pointing at them."""
    metadatas = []
    for meta, data in zip(video.metadatas, video.thumbnails, strict=True):
        path = write_thumbnail(output_dir, video.video_id, int(meta["frame_index"]), data)
        metadatas.append({**meta, "frame_path": str(path.resolve())})
    return metadatas


# -- the build -------------------------------------------------------------------------------------------


@dataclass
class RayBuildSummary(BuildSummary):
    """A build's summary, with where it ran: the nodes whose tasks or actors handled its frames."""

    engine: str = ENGINE
    nodes: int = 0
    node_ids: list[str] = field(default_factory=list)
    encoders: int = 0
    ray_start_s: float = 0.0  # starting the local Ray instance or joining the cluster (not in `seconds`)


def worker_env() -> dict[str, Any]:
    """The job's runtime environment: the workers get this copy of the `core` package, which Ray uploads once
    per job (only a job's own environment can upload a folder), so a cluster's nodes need the dependencies
    alone. A new dict each time: Ray rewrites the one it is given (the folder becomes the uploaded package's
    address, which a later instance does not have)."""
    return {"py_modules": [str(CORE_DIR)]}


@contextlib.contextmanager
def ray_connection(ray: Any, address: str | None) -> Iterator[float]:
    """Join the cluster at `address` ("auto" or host:port), or start a local Ray instance; leave (and stop it)
    afterwards. Yields the seconds that took. A connection the caller made already is used and left open: it
    must give the workers the code (``ray.init(runtime_env=worker_env())``, or the project on their path)."""
    if not _ONE_BUILD.acquire(blocking=False):
        raise RayEngineError("Another Ray build is running in this process: wait for it to finish.")
    try:
        if ray.is_initialized():
            yield 0.0
            return
        started = time.perf_counter()
        options: dict[str, Any] = {"logging_level": logging.WARNING, "runtime_env": worker_env()}
        if address is None:
            options["include_dashboard"] = False
        try:
            # "local": a new instance, even where `ray start` ran on this machine (a plain ray.init() would join
            # that cluster, or hang on the address it left behind if it has gone).
            ray.init(address=address or "local", **options)
        except ConnectionError as exc:
            detail = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else exc.__class__.__name__
            raise RayEngineError(
                f"Cannot reach the Ray cluster at {address} ({detail}): check that `ray start --head` runs there "
                "and that the address is right."
            ) from None
        try:
            yield time.perf_counter() - started
        finally:
            ray.shutdown()
    finally:
        _ONE_BUILD.release()


# Ray Data runs a dataset in threads of this process (names checked against ray 2.60.0): the executor
# ("StreamingExecutor-<dataset id>"), the iterator's workers ("iter_threaded", which fetch blocks) and a
# metadata fetcher ("ray-data-metadata-prefetch"). Closing the iterator asks them to stop but does not wait
# for them all; one still in a Ray call when ray.shutdown() follows (a slow machine, Ctrl-C) touches the
# stopped core worker, which ends the whole process with status 1 instead of the build's own exit. So the
# build waits for those threads first. (The block "Prefetcher" thread is left: once no blocks come, it waits
# on a condition and touches nothing.)
_DATA_THREADS = ("StreamingExecutor-", "iter_threaded", "ray-data-metadata-prefetch")
_DATA_THREADS_WAIT_S = 60.0


def _join_data_threads(timeout_s: float = _DATA_THREADS_WAIT_S) -> None:
    deadline = time.monotonic() + timeout_s
    for thread in threading.enumerate():
        if thread.name.startswith(_DATA_THREADS) and thread is not threading.current_thread():
            thread.join(max(0.0, deadline - time.monotonic()))


@contextlib.contextmanager
def _quiet_data_context(ray: Any) -> Iterator[None]:
    """No Ray Data progress bars or execution logs on the console while a build runs (it reports its own
    progress); warnings about the build itself (a failing task) still show. Restored afterwards."""
    context = ray.data.DataContext.get_current()
    saved = {"enable_progress_bars": context.enable_progress_bars,
             "enable_auto_log_stats": context.enable_auto_log_stats,
             "print_on_execution_start": context.print_on_execution_start}  # fmt: skip
    data_logger = logging.getLogger("ray.data")
    level = data_logger.level
    for name in saved:
        setattr(context, name, False)
    data_logger.setLevel(logging.ERROR)  # its "progress bars disabled" and "execution finished" lines
    try:
        yield
    finally:
        for name, value in saved.items():
            setattr(context, name, value)
        data_logger.setLevel(level)


def frames_dataset(ray: Any, todo: list[VideoRecord], strategy: FrameStrategy, model: ClipModel, spec: ModelSpec,
                   plan: EncoderPlan, output_dir: Path) -> Any:  # fmt: skip
    """The Ray Data pipeline: records → prepared frame rows → encoded frame rows (lazy; runs when iterated)."""
    blocks = max(1, min(len(todo), MAX_INPUT_BLOCKS))
    records = ray.data.from_items([record_row(r) for r in todo], override_num_blocks=blocks)
    prepared = records.map_batches(
        prepare_frames,
        batch_size=1,
        num_cpus=1,
        # What a task holds: a video's decoded frames (at most 1280 px wide), inputs and thumbnails. Declaring
        # it also keeps Ray from fusing these tasks into the encoding actors (it fuses only operators with the
        # same resource requests), which would stop decoding and encoding from overlapping.
        memory=PREPARE_BASE_BYTES + strategy.count * PREPARE_FRAME_BYTES,
        fn_kwargs={"strategy": strategy, "geometry": model.geometry, "output_dir": str(output_dir)},
    )
    return prepared.map_batches(
        FrameEncoder,
        batch_size=plan.batch_size,
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=plan.actors),
        fn_constructor_kwargs={"spec": spec, "plan": plan, "prepared_inputs": model.geometry is not None},
        num_cpus=1,
        num_gpus=plan.gpus,
    )  # Ray Data restarts an actor that dies and retries its batch (its defaults for actor pools)


def _cluster_cpus(ray: Any) -> list[float]:
    return [float(node.get("Resources", {}).get("CPU", 0)) for node in ray.nodes() if node.get("Alive")]


class RayEngine:
    """The Ray engine: the actors load their own model and encode; this process gathers the encoded frames
    into videos and writes their thumbnails. `actors` and `actor_threads` override how many actors encode and
    with how many torch threads each (the benchmark's scaling runs)."""

    encodes_here = False  # this process needs the model's geometry and embedding size only

    def __init__(self, request: BuildRequest, actors: int | None = None, actor_threads: int | None = None) -> None:
        self.request, self.actors, self.actor_threads = request, actors, actor_threads
        self.ray: Any = None
        self.ray_start_s = 0.0
        self.plan: EncoderPlan | None = None
        self.assembler: VideoAssembler | None = None
        self._connection: contextlib.ExitStack | None = None
        self.timeline = BuildTimeline()

    def start(self, config: BuildConfig, timeline: BuildTimeline | None = None) -> None:
        """Start the local Ray instance or join the cluster."""
        if timeline is not None:
            self.timeline = timeline
        self.ray = import_ray()
        stack = contextlib.ExitStack()
        self.ray_start_s = stack.enter_context(ray_connection(self.ray, self.request.ray_address))
        stack.enter_context(_quiet_data_context(self.ray))
        self._connection = stack
        self.timeline.mark("first_worker_ready")  # connected: the cluster's workers take tasks from here

    def prefetch(self, videos: Sequence[VideoRecord], model: ClipModel, config: BuildConfig) -> None:
        """Nothing ahead: the dataset, which plans the cluster's work, is made by `run` for the videos to do."""

    def run(
        self, todo: Sequence[VideoRecord], model: ClipModel, config: BuildConfig, cancel: threading.Event
    ) -> Generator[VideoResult, None, None]:
        ray = self.ray
        records = {r.video_id: r for r in todo}
        self.assembler = assembler = VideoAssembler(model.embed_dim)
        self.plan = plan_encoders(ray.cluster_resources(), _cluster_cpus(ray), self.request, self.actors,
                                  self.actor_threads)  # fmt: skip
        dataset = frames_dataset(ray, list(todo), config.strategy, model, model.spec, self.plan, config.output_dir)
        batches = iter(dataset.iter_batches(batch_size=None, batch_format="numpy", prefetch_batches=2))
        try:
            for batch in batches:
                # The actors encode: a batch's arrival here is its frames' first sight and their encoding's end.
                self.timeline.mark("first_frame")
                self.timeline.mark("last_frame_encoded", again=True)
                complete, skipped = assembler.add(batch)
                for video_id, reason in skipped:
                    yield VideoResult(records[video_id], reason=reason)
                for video in complete:
                    metadatas = write_thumbnails(video, config.output_dir)
                    yield VideoResult(records[video.video_id], metadatas, video.vectors, video.notes)
                if cancel.is_set():
                    return
        finally:
            close = getattr(batches, "close", None)
            if close is not None:
                with contextlib.suppress(Exception):
                    close()  # stops the pipeline's execution; leaving the cluster stops its tasks
            _join_data_threads()
        # Every video comes back, encoded or skipped, unless Ray lost rows without failing the job; such a
        # video is not written (the completeness rule) and is reported, so that a rerun is seen to be needed.
        for video_id in records.keys() - assembler.finished:
            yield VideoResult(records[video_id], reason="not all its frames came back from Ray")

    def close(self) -> None:
        """Leave the cluster (and stop the local instance)."""
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def finish(self, summary: BuildSummary) -> RayBuildSummary:
        nodes = sorted(self.assembler.nodes) if self.assembler is not None else []
        return RayBuildSummary(
            **{f.name: getattr(summary, f.name) for f in fields(BuildSummary)},
            nodes=len(nodes),
            node_ids=nodes,
            encoders=self.plan.actors if self.plan is not None else 0,
            ray_start_s=round(self.ray_start_s, 3),
        )
