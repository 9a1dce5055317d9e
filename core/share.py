"""Share mode: the same application over a bundle, read-only.

A `SharedExplorer` answers searches and evaluations over a bundle unpacked into a private temporary
folder and refuses every write in one sentence; pages ask it what it `offers` instead of checking a mode.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from core.analysis.evaluation import Evaluation
from core.analysis.sweep import SweepRow
from core.app import Explorer, ProcessCache
from core.engines.build import BuildSummary
from core.ground import UserError
from core.requests import EvalSettings, IndexRef
from core.store.bundle import fetch_bundle, import_bundle, open_bundle


class SharedExplorer(Explorer):
    """An Explorer over a bundle unpacked into a private temporary folder (`home`): it answers searches
    and evaluations and refuses every write in one sentence. `ref` is the bundle's collection."""

    def __init__(self, bundle_name: str, home: Path, device: str = "auto", cache: ProcessCache | None = None) -> None:
        super().__init__(output=home / "output", device=device, roots=[home], cache=cache)
        self.home, self.shared_bundle = home, bundle_name
        self.ref = IndexRef(db=str(home / "db"))

    def offers(self, feature: str) -> bool:
        return False

    def _refuse(self, what: str) -> UserError:
        return UserError(
            f"This app shows the shared bundle {self.shared_bundle} read-only, so it cannot {what}: run the "
            "explorer on your own machine to do that."
        )

    def build(self, *args: Any, **kwargs: Any) -> BuildSummary:
        raise self._refuse("build an index")

    def sweep(self, *args: Any, **kwargs: Any) -> tuple[list[SweepRow], list[str]]:
        raise self._refuse("build an index")

    def save_upload(self, *args: Any, **kwargs: Any) -> Path:
        raise self._refuse("keep uploaded videos")

    def grid(self, ref: IndexRef, settings: Sequence[EvalSettings], save: bool = True) -> list[Evaluation]:
        if save:
            raise self._refuse("save runs")
        return super().grid(ref, settings, save=False)

    def record(self, ref: IndexRef, evaluation: Evaluation) -> bool:
        raise self._refuse("save runs")


def open_shared(
    source: str,
    device: str = "auto",
    cache: ProcessCache | None = None,
    progress: Callable[[int, int], None] | None = None,
    pretrained: str | None = None,
) -> SharedExplorer:
    """A read-only Explorer over the bundle at `source` (a folder, a .zip, or an http(s) URL of a .zip,
    downloaded with `progress(bytes, total)`). Everything it writes goes into a new private temporary
    folder, removed when the process ends; nothing is written anywhere else."""
    home = Path(tempfile.mkdtemp(prefix="clip-explorer-share-"))
    atexit.register(shutil.rmtree, home, True)
    try:
        if source.lower().startswith(("http://", "https://")):
            archive = fetch_bundle(source, home, progress)
            bundle = open_bundle(archive, home / "bundle", source)
            archive.unlink()
        else:
            path = Path(source).expanduser()
            bundle = open_bundle(path, home / "bundle" if path.is_file() else None, source)
        shared = SharedExplorer(Path(source.rstrip("/")).name or bundle.collection, home, device, cache)
        client = shared.client(shared.ref)
        import_bundle(bundle, client, shared.output, shared.run_store(shared.ref), pretrained=pretrained)
    except BaseException:
        shutil.rmtree(home, ignore_errors=True)
        raise
    return shared
