"""A pytest plugin for mutation runs only (``-p tests.mutation_plugin``, see tests/MUTATION.md).

mutmut reruns the tests that reach a mutated function once per mutant, each time in a fresh pytest
session. Tests that need the trained tiny model or a built index would retrain and rebuild (about
8 s) for every mutant, so this plugin leaves them out: the mutation score counts only what the fast,
model-free tests (naive references over hand-made arrays) kill.
"""

from __future__ import annotations

import pytest

# Session fixtures of tests/conftest.py that train the tiny CLIP or generate videos.
SLOW_FIXTURES = frozenset({"tiny_checkpoint", "tiny_spec", "tiny_model", "video_root", "built_index"})


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    slow = [item for item in items if SLOW_FIXTURES & set(getattr(item, "fixturenames", ()))]
    if slow:
        config.hook.pytest_deselected(items=slow)
        items[:] = [item for item in items if item not in slow]
