"""The progress line printed while a batch of tasks runs, fed by the executor's callback.

On a terminal a bar and the line are redrawn in place twice a second; otherwise (logs,
batch jobs) a plain line is printed every `log_interval` seconds. The same printer serves
every executor: it only sees `(tasks done, bytes stored)`.
"""

from __future__ import annotations

import math
import threading
import time
from typing import TextIO

BAR_WIDTH = 24  # characters of the progress bar drawn on a terminal
PACE_WINDOW = 10.0  # seconds of completions, at least, that the ETA's pace is measured over


class Progress:
    """Tasks done of total, MiB stored (compressed), MiB/s and ETA.

    Call it with `(done, nbytes)` as often as you like (it prints at most once per
    interval), then `finish()` once the batch has returned."""

    def __init__(self, total: int, stream: TextIO, unit: str = "blocks",
                 show_bytes: bool = True, log_interval: float = 10.0, done_before: int = 0):
        """`done_before`: units an earlier run did (a resumed registration); the ETA
        extrapolates from this run's own pace."""
        self.total, self.stream, self.unit, self.show_bytes = total, stream, unit, show_bytes
        self.done_before = done_before
        self.tty = hasattr(stream, "isatty") and stream.isatty()
        self.interval = 0.5 if self.tty else log_interval
        self.started = self.last_print = time.perf_counter()
        self.done, self.nbytes = 0, 0
        self.first: tuple[float, int] | None = None   # when units were first done, and how many
        self.lock = threading.Lock()  # executors may report from a polling thread

    def __call__(self, done: int, nbytes: int) -> None:
        with self.lock:
            self.done, self.nbytes = min(done, self.total), nbytes
            now = time.perf_counter()
            if self.first is None and self.done > self.done_before:
                self.first = (now, self.done)
            if now - self.last_print >= self.interval:
                self.last_print = now
                self._print(final=False)

    def finish(self) -> None:
        """The last line: everything done, the time it took."""
        with self.lock:
            self.done = self.total
            self._print(final=True)

    def _print(self, final: bool) -> None:
        elapsed = time.perf_counter() - self.started
        line = f"{self.unit} {self.done}/{self.total} ({100 * self.done / self.total:.0f}%)  "
        if self.show_bytes:
            mb = self.nbytes / 2**20
            line += f"{mb:.1f} MiB stored  {rate_text(mb / elapsed if elapsed > 0 else 0.0)}  "
        line += f"done in {elapsed:.1f} s" if final else f"ETA {self._eta(elapsed)}"
        if self.tty:  # a bar that fills, redrawn in place
            filled = round(BAR_WIDTH * self.done / self.total)
            bar = "[" + "#" * filled + "." * (BAR_WIDTH - filled) + "] "
            self.stream.write("\r" + bar + line + "\x1b[K" + ("\n" if final else ""))
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def _eta(self, elapsed: float) -> str:
        """The time left at the pace since the first units were done: the time before
        them is start-up (Python workers starting, imports, compiling) that the rest
        does not pay, and counting it put the first ETAs at 8-30 × the run (trial Q:
        422 s for a 55 s run). Until that pace is measured over `PACE_WINDOW` seconds
        and half the start-up, the pace from the start."""
        now = self.done - self.done_before
        if now <= 0:   # nothing to extrapolate from yet (e.g. the first task failed)
            return "n/a"
        left = self.total - self.done
        if self.first is not None and self.done > self.first[1]:
            since, at = time.perf_counter() - self.first[0], self.first[1]
            # only over a window long enough that the rest of the first wave, arriving a
            # poll or two later, is not taken for the pace (review J: 8 s for 48 s left)
            if since >= max(PACE_WINDOW, (self.first[0] - self.started) / 2):
                return f"{since / (self.done - at) * left:.0f} s"
        return f"{elapsed / now * left:.0f} s"


def rate_text(mib_per_second: float) -> str:
    """A rate as the console prints it: one decimal, or two significant digits below 1
    (trial AV: a slow small export read "0.0 MiB/s")."""
    if 0 < mib_per_second < 0.001:
        return "< 0.001 MiB/s"
    rate = float(f"{mib_per_second:.2g}") if mib_per_second < 1 else mib_per_second
    decimals = 1 if rate == 0 or rate >= 1 else 1 - math.floor(math.log10(rate))
    return f"{rate:.{decimals}f} MiB/s"
