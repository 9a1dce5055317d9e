"""Command-line interface: ``python -m core build|evaluate|search|info|...``.

The sub-commands, flags, JSON keys and file names are a contract other tools rely on: add to them, never
rename. Errors the user can fix print one line on stderr and exit with status 2; Ctrl-C exits
with 130 after saving what was finished; anything else is a bug and keeps its traceback.
The parser is core/cli/parser.py, the commands core/cli/commands.py and core/cli/search.py, what they
print core/cli/render.py.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
from collections.abc import Callable, Sequence

from core.cli import commands
from core.cli.parser import build_parser
from core.cli.search import cmd_search
from core.ground import UserError, printable_errors
from core.runtime import configure_runtime

__all__ = ["COMMANDS", "build_parser", "main"]

COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "build": commands.cmd_build,
    "evaluate": commands.cmd_evaluate,
    "search": cmd_search,
    "report": commands.cmd_report,
    "loadtest": commands.cmd_loadtest,
    "subset": commands.cmd_subset,
    "download": commands.cmd_download,
    "sample-videos": commands.cmd_sample_videos,
    "demo-model": commands.cmd_demo_model,
    "runs": commands.cmd_runs,
    "sweep": commands.cmd_sweep,
    "info": commands.cmd_info,
    "export": commands.cmd_export,
    "import": commands.cmd_import,
}


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # --help (0), or an argument error already said in one line (2)
        return exc.code if isinstance(exc.code, int) else 2
    configure_runtime()
    for stream in (sys.stdout, sys.stderr):  # names that are not UTF-8 are shown as everywhere else: \xNN
        if isinstance(stream, io.TextIOWrapper):
            stream.reconfigure(errors=printable_errors())
    try:
        return COMMANDS[args.command](args)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("Interrupted.", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into `head` and the like: stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
