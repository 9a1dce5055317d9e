"""``python -m benchmarks.run [--device auto|cpu|cuda] [--quick] [--json FILE]``: see benchmarks/suite.py.

This entry module stays light on purpose: the build's worker processes (forkserver or spawn) import the
main module of a ``python -m pkg.mod`` process again, so everything heavy lives in `benchmarks.suite`.
"""

from __future__ import annotations

import sys

if __name__ == "__main__":
    from benchmarks.suite import main

    sys.exit(main())
