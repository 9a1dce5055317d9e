"""An append-only JSON-lines file of records of one type: the form of the run store and the sweep store."""

from __future__ import annotations

import json
from collections.abc import Hashable, Iterable
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

from core.store.locking import locked_append


class JsonRecord(Protocol):
    """What a record needs to be stored: its JSON form (its constructor takes it back) and the key a newer
    record with the same key replaces."""

    def to_json(self) -> dict[str, Any]: ...

    def key(self) -> Hashable: ...


R = TypeVar("R", bound=JsonRecord)


def json_lines(records: Iterable[JsonRecord]) -> str:
    """The records as the store writes them: one JSON object a line, readable text (no \\u escapes)."""
    return "".join(json.dumps(record.to_json(), ensure_ascii=False) + "\n" for record in records)


class JsonLinesStore(Generic[R]):
    """Records of type `record` (built as ``record(**line)``) appended under a lock, one a line.

    A line that does not read as a record (cut short, written by a newer version, edited by hand) is
    skipped, not fatal."""

    def __init__(self, path: Path | str, record: type[R]) -> None:
        self.path = Path(path)
        self.record = record

    def records(self) -> list[R]:
        """Every readable record, in the file's order."""
        if not self.path.is_file():
            return []
        found = []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                found.append(self.record(**json.loads(line)))
            except (ValueError, TypeError):
                continue
        return found

    def latest(self) -> list[R]:
        """The newest record of each key, in the order they were last written."""
        newest: dict[Hashable, R] = {}
        for record in self.records():
            newest.pop(record.key(), None)
            newest[record.key()] = record
        return list(newest.values())

    def append(self, records: Iterable[R]) -> None:
        """Append `records` in one locked write (concurrent writers never interleave their lines)."""
        text = json_lines(records)
        if not text:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        locked_append(self.path, text)
