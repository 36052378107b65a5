"""A progress bar that appears only when a run takes longer than a second."""

from __future__ import annotations

import os
import time

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn

from icsguard.capture.files import Frame

DELAY = 1.0
RECORD_OVERHEAD = 16      # a pcap record header; close enough for pcapng


def progress_bar(paths: list[str], console: Console) -> DelayedProgress | None:
    """A bar for reading these captures, or None where the console is no terminal (a pipe, a
    file): then nothing at all is called for each frame."""
    return DelayedProgress(paths, console) if console.is_terminal else None


class DelayedProgress:
    def __init__(self, paths: list[str], console: Console):
        self.total = sum(os.path.getsize(p) for p in paths if os.path.isfile(p))
        self.console = console
        self.started = time.monotonic()
        self.done = 0
        self.seen = 0
        self.bar: Progress | None = None
        self.task = None

    def __call__(self, frame: Frame) -> None:
        self.done += len(frame.data) + RECORD_OVERHEAD
        self.seen += 1
        if self.seen & 0x3FF:
            return
        if self.bar is None:
            if time.monotonic() - self.started < DELAY:
                return
            self.bar = Progress(TextColumn("decoding"), BarColumn(), TransferSpeedColumn(),
                                TimeRemainingColumn(), console=self.console, transient=True)
            self.task = self.bar.add_task("decoding", total=self.total)
            self.bar.start()
        self.bar.update(self.task, completed=min(self.done, self.total))

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()
