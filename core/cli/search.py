"""``python -m core search``: one query, or the interactive prompt (a query per line, the model and
index loaded once)."""

from __future__ import annotations

import argparse
import sys
from functools import partial
from typing import TYPE_CHECKING

from core.cli.commands import _explorer, _open_and_say, _report_stream, _requested_spec
from core.cli.render import print_result, result_json, write_json
from core.ground import QueryError, UserError
from core.limits import check_setting
from core.requests import DEFAULT_MARGIN, SearchQuery

if TYPE_CHECKING:
    from pathlib import Path

    from core.analysis.search import SearchResult
    from core.app import Explorer

QUIT_WORDS = ("quit", "exit", "quitter", ":q")


def search_query(args: argparse.Namespace, text: str, k: int) -> SearchQuery:
    return SearchQuery(
        text=text, k=k, one_per_video=args.one_per_video, label=args.label, image=args.image,
        add=tuple(args.add), subtract=tuple(args.subtract), min_similarity=args.min_similarity,
        adaptive=args.adaptive, moments=args.moments,
        margin=DEFAULT_MARGIN if args.margin is None else args.margin,
    )  # fmt: skip


def cmd_search(args: argparse.Namespace) -> int:
    if args.interactive:
        return interactive_search(args)
    query = search_query(args, args.text, args.k)
    from core.analysis.search import check_query

    check_query(query)  # fail fast, before loading a model
    say = partial(print, file=_report_stream(args))
    explorer = _explorer(args)
    ref, _index = _open_and_say(args, explorer)
    result = explorer.search(ref, query, _requested_spec(args))
    print_result(say, result)
    if args.json:
        write_json(args.json, result_json(result))
    if args.html:
        say(f"Wrote {write_html(explorer, args, args.text, result)}")
    return 0


def write_html(explorer: Explorer, args: argparse.Namespace, text: str, result: SearchResult) -> Path:
    """``search_results_<query>.html``: named after the text alone, as the notebook did, when the query is a
    text; after the composed query otherwise."""
    plain = not (args.image or args.add or args.subtract)
    name = " ".join(text.split()) if plain else result.query
    return explorer.write_search_report(name, result.hits, args.output, result.moments)


def interactive_search(args: argparse.Namespace) -> int:
    """The reference notebook's prompt: a query per line, `:k N`, `:html on|off`, quit/exit/quitter or EOF."""
    tty = sys.stdin.isatty()
    if tty:
        import readline  # noqa: F401  (line editing and history for input(), when a terminal is attached)
    explorer = _explorer(args)
    ref, _index = _open_and_say(args, explorer)
    k, html = args.k, True
    print("Type a query (':k N' sets the number of results, ':html on|off' the HTML pages; 'quit' leaves).")
    while True:
        try:
            line = input("query> " if tty else "")
        except EOFError:
            return 0
        line = line.strip()
        if not line:
            continue
        if line.lower() in QUIT_WORDS:
            return 0
        try:
            if line.startswith(":"):
                k, html = prompt_command(line, k, html)
                continue
            result = explorer.search(ref, search_query(args, line, k), _requested_spec(args))
        except UserError as exc:
            print(f"error: {exc}")
            continue
        print_result(print, result)
        if html:
            print(f"Wrote {write_html(explorer, args, line, result)}")


def prompt_command(line: str, k: int, html: bool) -> tuple[int, bool]:
    """`:k N` or `:html on|off` → the new (k, html); anything else is a user's error."""
    words = line[1:].split()
    if len(words) == 2 and words[0] == "k":
        if not words[1].isdigit():
            raise QueryError(f"':k' takes a whole number of results, not {words[1]!r}.")
        k = int(check_setting("k", words[1], "The number of results"))
        print(f"k = {k}")
        return k, html
    if len(words) == 2 and words[0] == "html" and words[1] in ("on", "off"):
        print(f"HTML pages {words[1]}")
        return k, words[1] == "on"
    raise QueryError(f"Unknown command {line!r}: use ':k N', ':html on', ':html off' or 'quit'.")
