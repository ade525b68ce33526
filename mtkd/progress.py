"""Progress of a loop: a tqdm bar on a terminal, a few plain lines anywhere else.

A DVC log or a CI job is not a terminal: there tqdm's carriage-return updates become
thousands of lines. :func:`progress_bar` gives tqdm where its stream is a terminal and
otherwise a :class:`PlainProgress`, which writes one line each time the loop crosses
another tenth of its length, at most one per ``min_seconds`` (the last line, at the end,
always), e.g.::

    tfidf_lr epoch 1: 30% (93/310) 12.4s elapsed, 7.5 it/s, loss=0.6512

``MTKD_PROGRESS=plain`` or ``tqdm`` forces one or the other, ``off`` silences both.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Iterable, TextIO

MODES = ("auto", "tqdm", "plain", "off")


def _mode() -> str:
    mode = os.environ.get("MTKD_PROGRESS", "auto").strip().lower() or "auto"
    return mode if mode in MODES else "auto"


def _is_tty(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def progress_bar(iterable: Iterable, desc: str | None = None, *, total: int | None = None, leave: bool = False,
             mininterval: float = 0.1, disable: bool = False, file: TextIO | None = None, min_seconds: float = 10.0):
    """``tqdm(iterable, desc=…, leave=…, mininterval=…, disable=…)`` on a terminal, :class:`PlainProgress` otherwise."""
    mode = _mode()
    stream = file if file is not None else sys.stderr
    if mode == "tqdm" or (mode == "auto" and _is_tty(stream)):
        from tqdm.auto import tqdm

        return tqdm(iterable, desc=desc, total=total, leave=leave, mininterval=mininterval, disable=disable, file=file)
    return PlainProgress(iterable, desc, total=total, disable=disable or mode == "off", file=stream,
                         min_seconds=min_seconds)


class PlainProgress:
    """Iterate ``iterable``; write a line at each further 10% of it (at most one per ``min_seconds``) and at the end."""

    def __init__(self, iterable: Iterable, desc: str | None = None, *, total: int | None = None, disable: bool = False,
                 file: TextIO | None = None, min_seconds: float = 10.0, steps: int = 10):
        self.iterable = iterable
        self.desc = desc or "progress"
        if total is None:
            try:
                total = len(iterable)  # type: ignore[arg-type]
            except TypeError:
                total = None
        self.total = total
        self.disable = disable
        self.file = file if file is not None else sys.stderr
        self.min_seconds = min_seconds
        self.steps = steps
        self.postfix: dict[str, str] = {}
        self.n = 0

    def set_postfix(self, refresh: bool = True, **kwargs) -> None:
        self.postfix = {k: str(v) for k, v in kwargs.items()}

    def _line(self, elapsed: float) -> str:
        done = f"{self.n}/{self.total}" if self.total else f"{self.n}"
        pct = f"{100 * self.n // self.total}% ({done})" if self.total else done
        rate = f", {self.n / elapsed:.1f} it/s" if elapsed > 0 else ""
        extra = "".join(f", {k}={v}" for k, v in self.postfix.items())
        return f"{self.desc}: {pct} {elapsed:.1f}s elapsed{rate}{extra}"

    def _write(self, elapsed: float) -> None:
        self.file.write(self._line(elapsed) + "\n")
        self.file.flush()

    def __iter__(self):
        if self.disable:
            yield from self.iterable
            return
        start = last = time.monotonic()
        next_step = 1
        for item in self.iterable:
            yield item
            self.n += 1
            if not self.total:
                continue
            reached = self.n * self.steps // self.total
            if reached >= next_step and self.n < self.total:
                next_step = reached + 1
                now = time.monotonic()
                if now - last >= self.min_seconds:
                    last = now
                    self._write(now - start)
        self._write(time.monotonic() - start)

    def __len__(self) -> int:
        return self.total or 0


def use_thread_lock() -> None:
    """Give tqdm a thread lock in place of its default multiprocessing one (a named semaphore).

    For worker processes: one that leaves on Ctrl-C cannot release a named semaphore, and
    multiprocessing's resource tracker then warns of "leaked semaphore objects".
    """
    import threading

    from tqdm import tqdm

    tqdm.set_lock(threading.RLock())
