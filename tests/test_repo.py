"""The repository keeps its promises: CI runs the README's test command, core stays Streamlit-free, the layers
show (no import circle, a row imports only from rows below it), and no file grows past what one reader takes in."""

from __future__ import annotations

import ast
import fnmatch
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# The layers, bottom to top: a module imports only from its own row or the rows below it. An entry names a
# module or, with ".*", a package and everything in it; modules of one entry may import each other. The
# entries of the parts row are separate parts: they do not import each other either. Moving a module to
# another floor is moving its entry here.
LAYERS: list[list[str]] = [
    ["core", "core.ground", "core.runtime", "core.limits", "core.requests"],  # core: its package file, the version only
    ["core.media.*"],
    ["core.model.*"],
    ["core.store.*"],
    ["core.analysis.*", "core.kinetics.*", "core.engines.*"],
    ["core.app", "core.reader", "core.share"],
    ["core.cli*", "core.__main__", "core.resources", "core.jobs", "pages.*", "streamlit_app", "deploy.*"],
    ["benchmarks.*"],  # they measure every layer, the front doors included
]
SEPARATE_PARTS = {"core.analysis.*", "core.kinetics.*", "core.engines.*"}
MAX_LINES = 600  # of a product file
MAX_CORE_TOP_LEVEL = 12  # .py modules directly in core/, the rest in sub-packages


def test_ci_runs_the_readme_test_command() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    ci_lines = [line for line in (ROOT / ".ci" / "run").read_text().splitlines() if line and not line.startswith("#")]
    command = ci_lines[-1]
    assert "pytest" in command and command in readme


def test_only_the_resources_module_imports_streamlit() -> None:
    for path in (ROOT / "core").rglob("*.py"):
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
    """os.environ, logging and OpenCV's settings are the same before and after importing every module of core,
    its sub-packages' included."""
    import subprocess
    import sys

    modules = sorted(name for name in _modules() if name.startswith("core.") and name != "core.__main__")
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
    importlib.import_module(name)
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


def _product_files() -> list[Path]:
    files = [*(ROOT / "core").rglob("*.py"), *(ROOT / "pages").rglob("*.py"), *(ROOT / "benchmarks").rglob("*.py"),
             *(ROOT / "deploy").rglob("*.py"), ROOT / "streamlit_app.py"]  # fmt: skip
    return sorted(path for path in files if "__pycache__" not in path.parts)


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    """The product's Python modules by dotted name (a package by its own name, for its __init__)."""
    return {_module_name(path): path for path in _product_files()}


def _imports_of(path: Path, known: set[str]) -> set[str]:
    """The product modules `path` imports anywhere in it (in functions and TYPE_CHECKING blocks too):
    `from a.b import c` counts as importing a.b.c when that is a module, else a.b."""
    package = _module_name(path) if path.name == "__init__.py" else _module_name(path).rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the module's package, one level up per extra dot
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            for alias in node.names:
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base)
    return {name for name in found if name in known}


def _import_graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports_of(path, set(modules)) - {name} for name, path in modules.items()}


def _entry(module: str) -> tuple[int, str] | None:
    """(row, entry) of `module` in LAYERS, or None when no entry names it."""
    for row, entries in enumerate(LAYERS):
        for entry in entries:
            if fnmatch.fnmatchcase(module, entry) or (entry.endswith(".*") and module == entry[:-2]):
                return row, entry
    return None


def _cycle(graph: dict[str, set[str]]) -> list[str]:
    """One import circle of `graph` as [a, b, ..., a], or [] when there is none."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str]:
        state[node] = 1
        path.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                return [*path[path.index(target) :], target]
            if target not in state:
                found = visit(target)
                if found:
                    return found
        path.pop()
        state[node] = 2
        return []

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return []


def test_the_cycle_finder_finds_a_circle_and_only_one() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) == []


def test_no_import_circle_in_core() -> None:
    """Function-level imports count: a circle hidden in a function is still a circle between the modules."""
    graph = {name: {t for t in targets if t.startswith("core")} for name, targets in _import_graph().items()}
    circle = _cycle({name: targets for name, targets in graph.items() if name.startswith("core")})
    assert not circle, "import circle: " + " → ".join(circle)


def test_every_module_has_a_row() -> None:
    missing = sorted(name for name in _modules() if _entry(name) is None)
    assert not missing, f"modules in no row of LAYERS (tests/test_repo.py): {missing}"


def _layer_violations(graph: dict[str, set[str]]) -> list[str]:
    violations = []
    for source, targets in sorted(graph.items()):
        here = _entry(source)
        for target in sorted(targets):
            there = _entry(target)
            if here is None or there is None or there[0] < here[0] or there[1] == here[1]:
                continue
            if there[0] > here[0]:
                violations.append(f"{source} (row {here[0]}) imports {target} from a higher row ({there[0]})")
            elif here[1] in SEPARATE_PARTS and there[1] in SEPARATE_PARTS:
                violations.append(f"{source} imports {target}: the parts {here[1]} and {there[1]} are separate")
    return violations


def test_the_layer_check_names_an_upward_import_and_one_between_parts() -> None:
    graph = {"core.media.frames": {"core.model.embed", "core.ground"}, "core.engines.local": {"core.analysis.x"},
             "core.store.index": {"core.store.chroma", "core.requests"}, "core.app": {"core.requests"}}  # fmt: skip
    assert _layer_violations(graph) == [
        "core.engines.local imports core.analysis.x: the parts core.engines.* and core.analysis.* are separate",
        "core.media.frames (row 1) imports core.model.embed from a higher row (2)",
    ]


def test_a_row_imports_only_from_rows_below_it() -> None:
    violations = _layer_violations(_import_graph())
    assert not violations, "layer violations:\n" + "\n".join(violations)


def test_no_product_file_is_over_600_lines() -> None:
    long = {str(p.relative_to(ROOT)): n for p in _product_files() if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, f"files over {MAX_LINES} lines (split them by concern): {long}"


def test_core_keeps_few_modules_at_its_top_level() -> None:
    top = sorted(path.name for path in (ROOT / "core").glob("*.py"))
    assert len(top) <= MAX_CORE_TOP_LEVEL, (
        f"{len(top)} modules at core/'s top level (at most {MAX_CORE_TOP_LEVEL}): {top}"
    )
