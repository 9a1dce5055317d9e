"""Run ``python -m core ARGS`` and print this process's peak resident memory afterwards.

The peak is read from /proc/self/status (VmHWM, this program's own address space), not from
getrusage: a child's ru_maxrss also counts the parent's memory it shared before exec.
"""

from __future__ import annotations

import json
import resource
import sys


def peak_rss_mb() -> float:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, KiB elsewhere
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20


def main() -> int:
    from core.cli import main as cli

    code = cli(sys.argv[1:])
    print(json.dumps({"peak_rss_mb": peak_rss_mb(), "exit": code}), file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
