"""The repository keeps its promises: CI runs the README's test command, core stays Streamlit-free."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_ci_runs_the_readme_test_command() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    ci_lines = [line for line in (ROOT / ".ci" / "run").read_text().splitlines() if line and not line.startswith("#")]
    command = ci_lines[-1]
    assert "pytest" in command and command in readme


def test_only_the_resources_module_imports_streamlit() -> None:
    for path in (ROOT / "core").glob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        imported = {
            alias.name.split(".")[0]
            for node in ast.walk(tree)
            if isinstance(node, (ast.Import, ast.ImportFrom))
            for alias in (node.names if isinstance(node, ast.Import) else [ast.alias(node.module or "")])
        }
        if path.name != "resources.py":
            assert "streamlit" not in imported, f"{path.name} imports streamlit"


def _pins(name: str) -> dict[str, str]:
    pins = {}
    for line in (ROOT / name).read_text().splitlines():
        line = line.split("#")[0].strip()
        if line and not line.startswith("-"):
            package, _, version = line.partition("==")
            pins[package.lower()] = version
    return pins


@pytest.mark.parametrize("cpu_file", ["requirements-cloud.txt", "deploy/requirements.txt"])
def test_cloud_requirements_match_except_the_cpu_torch_build(cpu_file: str) -> None:
    local, cloud = _pins("requirements.txt"), _pins(cpu_file)
    assert set(local) == set(cloud)
    for package, version in local.items():
        expected = f"{version}+cpu" if package in ("torch", "torchvision") else version
        assert cloud[package] == expected, package
    assert "--extra-index-url https://download.pytorch.org/whl/cpu" in (ROOT / cpu_file).read_text().splitlines()


# The front doors translate and render; everything else goes through the application layer. core.limits is
# ground floor like core.ground: the ranges of the numbers a user gives, which the CLI checks while it parses
# its arguments, before it imports the application layer.
# The application layer (Explorer, its reader, share mode), the values and the ground floor, the other front doors,
# and the record types, choices and renderers from the modules where they live; no engine, store or decoder at work.
FRONT_DOOR_ALLOWED = {
    *("core.app", "core.reader", "core.share", "core.requests", "core.ground", "core.limits", "core.runtime"),
    *("core.resources", "core.jobs", "core.cli", "core.cli.commands", "core.cli.parser", "core.cli.render"),
    *("core.cli.search", "core.engines.build", "core.store.index", "core.store.runs", "core.model.embed"),
    *("core.model.prompts", "core.model.demo_model", "core.media.frames", "core.media.sources", "core.media.transcode"),
    *("core.kinetics.download", "core.kinetics.reference", "core.analysis.evaluation", "core.analysis.failures"),
    *("core.analysis.moments", "core.analysis.plots", "core.analysis.probe", "core.analysis.query"),
    *("core.analysis.reports", "core.analysis.search", "core.analysis.sweep"),
}


def _core_imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {name for name in found if name == "core" or name.startswith("core.")}


def test_front_doors_use_only_the_application_layer() -> None:
    doors = [ROOT / "streamlit_app.py", ROOT / "deploy" / "streamlit_app.py",
             *sorted((ROOT / "core" / "cli").glob("*.py")), *sorted((ROOT / "pages").glob("*.py"))]  # fmt: skip
    for path in doors:
        extra = _core_imports(path) - FRONT_DOOR_ALLOWED
        assert not extra, f"{path.relative_to(ROOT)} reaches past the application layer: {sorted(extra)}"
    for name in ("resources.py", "jobs.py"):
        extra = _core_imports(ROOT / "core" / name) - FRONT_DOOR_ALLOWED
        assert not extra, f"core/{name} reaches past the application layer: {sorted(extra)}"


def test_importing_core_changes_nothing_in_the_process() -> None:
    """os.environ, logging and OpenCV's settings are the same before and after importing every module."""
    import subprocess
    import sys

    modules = sorted(p.stem for p in (ROOT / "core").glob("*.py") if p.stem not in ("__main__",))
    script = f"""
import logging, os, sys
import cv2
# Third-party imports come first: what they do on import (Streamlit sets MPLBACKEND, for one) is theirs;
# the check is on what importing our own modules does.
import chromadb, numpy, open_clip, streamlit, torch  # noqa: F401
env = dict(os.environ)
threads = cv2.getNumThreads()
disabled = logging.root.manager.disable
filters = list(logging.getLogger().filters)
handlers = list(logging.getLogger().handlers)
import importlib
for name in {modules!r}:
    importlib.import_module("core." + name)
changed = {{k for k in set(env) | set(os.environ) if env.get(k) != os.environ.get(k)}}
assert not changed, f"environment changed: {{sorted(changed)}}"
assert cv2.getNumThreads() == threads, "OpenCV's thread count changed"
assert logging.root.manager.disable == disabled, "logging was disabled"
assert list(logging.getLogger().filters) == filters and list(logging.getLogger().handlers) == handlers
print("unchanged")
"""
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=300,
        env={k: v for k, v in __import__("os").environ.items() if not k.startswith(("OPENCV_", "ANONYMIZED"))},
    )  # fmt: skip
    assert result.returncode == 0 and "unchanged" in result.stdout, result.stderr[-2000:]
