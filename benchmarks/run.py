"""``python -m benchmarks.run [--device auto|cpu|cuda] [--quick] [--json FILE]``: see benchmarks/suite.py."""

from __future__ import annotations

import sys

if __name__ == "__main__":
    from benchmarks.suite import main

    sys.exit(main())
