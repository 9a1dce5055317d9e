"""The repository keeps its promises: CI runs the README's test command, core stays Streamlit-free."""

from __future__ import annotations

import ast
from pathlib import Path

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


def test_cloud_requirements_match_except_the_cpu_torch_build() -> None:
    local, cloud = _pins("requirements.txt"), _pins("requirements-cloud.txt")
    assert set(local) == set(cloud)
    for package, version in local.items():
        expected = f"{version}+cpu" if package in ("torch", "torchvision") else version
        assert cloud[package] == expected, package
