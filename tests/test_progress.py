"""mtkd.progress: tqdm on a terminal, a few plain lines anywhere else (a DVC log, CI)."""

import io

import pytest

from mtkd import progress as progress_module
from mtkd.progress import PlainProgress, progress_bar


class FakeClock:
    def __init__(self, step: float):
        self.t, self.step = 0.0, step

    def __call__(self):
        self.t += self.step
        return self.t


def test_not_a_terminal_gives_a_few_plain_lines(monkeypatch):
    monkeypatch.delenv("MTKD_PROGRESS", raising=False)
    monkeypatch.setattr(progress_module.time, "monotonic", FakeClock(5.0))  # every item takes 5 s: no throttling
    out = io.StringIO()  # not a TTY
    bar = progress_bar(range(1000), desc="tiny epoch 1", file=out, min_seconds=0.0)
    assert isinstance(bar, PlainProgress)
    seen = 0
    for i in bar:
        seen += 1
        bar.set_postfix(loss=f"{1 / (i + 1):.4f}", refresh=False)
    assert seen == 1000
    lines = out.getvalue().splitlines()
    assert "\r" not in out.getvalue()
    assert len(lines) == 10  # 10%, 20%, ..., 90% and the end
    assert lines[0].startswith("tiny epoch 1: 10% (100/1000) ") and "it/s" in lines[0] and "loss=" in lines[0]
    assert lines[-1].startswith("tiny epoch 1: 100% (1000/1000) ") and lines[-1].endswith("loss=0.0010")


def test_lines_are_throttled_but_the_end_is_always_written(monkeypatch):
    monkeypatch.delenv("MTKD_PROGRESS", raising=False)
    monkeypatch.setattr(progress_module.time, "monotonic", FakeClock(0.01))  # a fast loop
    out = io.StringIO()
    assert list(progress_bar(range(50), desc="logits test", file=out)) == list(range(50))
    assert out.getvalue().splitlines() == [out.getvalue().splitlines()[0]]
    assert out.getvalue().startswith("logits test: 100% (50/50)")


def test_disabled_writes_nothing_and_unknown_length_counts(monkeypatch):
    monkeypatch.delenv("MTKD_PROGRESS", raising=False)
    out = io.StringIO()
    assert list(progress_bar(range(5), desc="x", file=out, disable=True)) == list(range(5))
    assert out.getvalue() == ""
    list(progress_bar(iter(range(7)), desc="gen", file=out))
    assert out.getvalue().startswith("gen: 7 ")
    monkeypatch.setenv("MTKD_PROGRESS", "off")
    out = io.StringIO()
    assert list(progress_bar(range(3), desc="x", file=out)) == [0, 1, 2] and out.getvalue() == ""


class Tty(io.StringIO):
    def isatty(self):
        return True


@pytest.mark.parametrize("env, tty, kind", [(None, True, "tqdm"), (None, False, "plain"),
                                            ("plain", True, "plain"), ("tqdm", False, "tqdm")])
def test_tqdm_on_a_terminal_or_when_asked(monkeypatch, env, tty, kind):
    from tqdm.auto import tqdm

    if env is None:
        monkeypatch.delenv("MTKD_PROGRESS", raising=False)
    else:
        monkeypatch.setenv("MTKD_PROGRESS", env)
    out = Tty() if tty else io.StringIO()
    bar = progress_bar(range(3), desc="d", file=out)
    assert isinstance(bar, tqdm if kind == "tqdm" else PlainProgress)
    assert list(bar) == [0, 1, 2]


def test_training_loop_uses_the_helper():
    """Every progress bar of the package goes through mtkd.progress (no direct tqdm elsewhere)."""
    from pathlib import Path

    root = Path(progress_module.__file__).parent
    direct = [str(p.relative_to(root)) for p in root.rglob("*.py")
              if p.name != "progress.py" and "tqdm" in p.read_text()]
    assert direct == []


def test_worker_processes_get_a_thread_lock_not_a_named_semaphore():
    import threading

    from tqdm import tqdm

    from mtkd.progress import use_thread_lock

    saved = tqdm.__dict__.get("_lock")
    try:
        use_thread_lock()
        assert type(tqdm.get_lock()) is type(threading.RLock())
    finally:
        if saved is None:
            del tqdm._lock
        else:
            tqdm.set_lock(saved)
