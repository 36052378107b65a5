"""Tables for a terminal or a pipe. Addresses, ports, ids and rule ids are what an analyst
copies into the next command, so they are never cut: free text wraps instead, a table too
wide for the terminal becomes one block per record, and a pipe gets one record a line."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from typing import Iterable, Sequence

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

UNLIMITED = 1_000_000     # a pipe's width: nothing wraps, grep sees one record a line
SEPARATOR = 2             # between two columns: padding and the (blank) rule
NARROWEST_TEXT = 20       # free text wraps, and folds its long words, down to this width


@dataclass(frozen=True)
class Column:
    name: str
    wraps: bool = False       # free text (a title, a list of functions); everything else is kept whole
    right: bool = False       # numbers


def console(stderr: bool = False) -> Console:
    """A terminal's own width (or COLUMNS); a pipe's width is COLUMNS if given, else unlimited."""
    stream = sys.stderr if stderr else sys.stdout
    columns = os.environ.get("COLUMNS", "")
    width = int(columns) if columns.isdigit() and int(columns) > 0 else None
    if width is None and not stream.isatty():
        width = UNLIMITED
    return Console(width=width, stderr=stderr)


def show(out: Console, title: str | None, columns: Sequence[Column], rows: Iterable[Sequence[str | Text]],
         caption: str | None = None) -> None:
    """Cells are plain text (wire text is never markup) or Text styled by us (a severity's colour)."""
    rows = [[cell if isinstance(cell, Text) else Text(cell) for cell in row] for row in rows]
    table = Table(title=Text(title) if title else None, title_justify="left",
                  caption=Text(caption) if caption else None, caption_justify="left",
                  box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False, collapse_padding=True)
    needed = SEPARATOR * (len(columns) - 1)
    for i, column in enumerate(columns):
        longest = max([len(column.name), *(_width(row[i]) for row in rows)])
        needed += min(longest, NARROWEST_TEXT) if column.wraps else longest
        table.add_column(column.name, justify="right" if column.right else "left", no_wrap=not column.wraps,
                         min_width=None if column.wraps else longest, overflow="fold")
    for row in rows:
        table.add_row(*row)
    if needed <= out.width:
        out.print(table)
        return
    _show_records(out, title, columns, rows, caption)


def _show_records(out: Console, title: str | None, columns: Sequence[Column], rows: list[list],
                  caption: str | None) -> None:
    """Too narrow for the table: each record as a block of name and value lines."""
    if title:
        out.print(Text(title, style="italic"))
    for number, row in enumerate(rows, 1):
        block = Table.grid(padding=(0, 2))
        block.add_column(style="bold", no_wrap=True)
        block.add_column(overflow="fold")
        for column, cell in zip(columns, row):
            block.add_row(column.name, cell)
        out.print(Text(f"─ {number} ─", style="dim"))
        out.print(block)
    if caption:
        out.print(Text(caption, style="dim"))


def _width(cell: Text) -> int:
    return max((len(line) for line in cell.plain.splitlines()), default=0)
