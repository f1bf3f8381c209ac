"""TOML input files read so that every problem can name its file and line."""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fieldops.errors import SourceErrors, SourceProblem

_LINE_IN_MESSAGE = re.compile(r"line (\d+)")


@dataclass(frozen=True)
class TomlSource:
    path: Path
    data: dict[str, Any]
    lines: tuple[str, ...]

    def array_table_lines(self, name: str) -> list[int]:
        """Line numbers of each ``[[name]]`` header, in order (spaces and comments allowed)."""
        header = re.compile(rf"^\s*\[\[\s*{re.escape(name)}\s*\]\]\s*(#.*)?$")
        return [n for n, line in enumerate(self.lines, start=1) if header.match(line)]

    def table_line(self, name: str) -> int | None:
        """Line number of the ``[name]`` header, if there is one."""
        header = re.compile(rf"^\s*\[\s*{re.escape(name)}\s*\]\s*(#.*)?$")
        return next((n for n, line in enumerate(self.lines, start=1) if header.match(line)), None)

    def item_location(self, table: str, index: int, label: object) -> str:
        """``line N (table LABEL)`` for the index-th ``[[table]]`` of the file."""
        lines = self.array_table_lines(table)
        line = f"line {lines[index]}" if index < len(lines) else "file"
        return f"{line} ({table} {label})"


def read_toml(path: Path) -> TomlSource:
    """Parse a TOML file; an unreadable or invalid one raises SourceErrors with its line."""
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SourceErrors([SourceProblem(source, "file", f"cannot be read ({exc})")]) from exc
    except UnicodeDecodeError as exc:
        raise SourceErrors([SourceProblem(source, "file", "is not UTF-8 text")]) from exc
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        # tomllib gives the line as an attribute only from Python 3.14; its message has it.
        found = _LINE_IN_MESSAGE.search(str(exc))
        where = f"line {found.group(1)}" if found else "file"
        raise SourceErrors([SourceProblem(source, where, f"not valid TOML: {exc}")]) from exc
    return TomlSource(path, data, tuple(text.splitlines()))
