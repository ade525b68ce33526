"""What every bench section shares: the data, the models, the clock and the machine.

Nothing here re-implements the library: data come from :func:`mtkd.data.prepare_task`,
tokens from :func:`mtkd.training.encode`, models from :func:`mtkd.models.build_classifier`
(the student is ``distilbert_from_bert`` of MiniLM-L6 layers 0/2/4, as in params.yaml).
"""

from __future__ import annotations

import contextlib
import copy
import os
import platform
import resource
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
NUM_CLASSES = 2
TEACHERS = ["minilm_l6", "minilm_l3", "tfidf_lr"]  # the default profile's teacher order (fusion section)


def set_env() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("DISABLE_TQDM", "1")


def default_params() -> dict:
    import yaml

    return yaml.safe_load((ROOT / "params.yaml").read_text())


def train_args(section: dict, **override):
    """``student`` / ``teachers.<t>`` params as the library's TrainArgs (pydantic when available)."""
    section = {**section, **override}
    try:
        from mtkd.params import HFTeacher, Student

        return (HFTeacher if "kind" in section else Student).model_validate(section)
    except ImportError:  # a machine without pydantic (the GPU box): same defaults as mtkd.params.TrainArgs
        base = dict(max_seq_length=64, num_train_epochs=2, per_device_train_batch_size=32, per_device_eval_batch_size=128,
                    learning_rate=5e-5, weight_decay=0.01, warmup_ratio=0.1, max_train_samples=None,
                    model_name_or_path=None, random_init=None, init_layers=None, trust_remote_code=False, seed=42)
        return SimpleNamespace(**{**base, **section})


def minilm_path() -> str:
    """The MiniLM-L6 checkpoint directory (``MTKD_BENCH_MINILM`` overrides the packaged asset)."""
    if os.environ.get("MTKD_BENCH_MINILM"):
        return os.environ["MTKD_BENCH_MINILM"]
    from mtkd.assets import resolve_model_path

    return resolve_model_path("asset:minilm_l6")


@dataclass
class Setup:
    """Prepared data, tokenised once, and the configs of the default student and teacher."""

    data_dir: Path
    frames: dict
    student_cfg: object
    teacher_cfg: object
    device: str
    tokenizer: object = None
    encoded: dict = field(default_factory=dict)
    model_path: str = ""
    _tmp: object = None

    @property
    def pad_id(self) -> int:
        return self.tokenizer.pad_token_id or 0

    def build_student(self, seed: int = 0):
        from mtkd.models import build_classifier

        model, _ = build_classifier(self.student_cfg, NUM_CLASSES, seed)
        return model

    def build_teacher(self, seed: int = 42, checkpoint: str | None = None):
        """The default teacher's architecture; from ``checkpoint`` (a fine-tuned teacher directory) when given."""
        from mtkd.models import build_classifier

        cfg = self.teacher_cfg if checkpoint is None else self.teacher_cfg.model_copy(update={"model_name_or_path": checkpoint})
        model, _ = build_classifier(cfg, NUM_CLASSES, seed)
        return model


def make_setup(device: str, data_dir: str | None = None) -> Setup:
    """Prepare the default task (``rt``) into a temporary directory and tokenise it once."""
    from mtkd.data import load_split, prepare_task
    from mtkd.training import encode

    params = default_params()
    tmp = None
    if data_dir is None:
        tmp = tempfile.TemporaryDirectory(prefix="mtkd-bench-")
        out = Path(tmp.name) / "prepared"
        data = SimpleNamespace(**{"validation_fraction": 0.1, "test_fraction": 0.1, "max_examples": None,
                                  "local_files": {}, **params["data"]})
        prepare_task(data, "rt", out / "rt")
        data_dir = out
    data_dir = Path(data_dir)
    frames = {s: load_split(data_dir, "rt", s) for s in ("train", "validation", "test")}
    path = minilm_path()
    student_cfg = train_args({**params["student"], "model_name_or_path": path})
    teacher_cfg = train_args({**params["teachers"]["minilm_l6"], "model_name_or_path": path})
    setup = Setup(data_dir, frames, student_cfg, teacher_cfg, device, model_path=path, _tmp=tmp)
    from mtkd.models import load_tokenizer

    setup.tokenizer = load_tokenizer(student_cfg)
    setup.encoded = {s: encode(setup.tokenizer, f, student_cfg.max_seq_length) for s, f in frames.items()}
    return setup


# ---------------------------------------------------------------------------------------------- the clock

def sync(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


# Phases of mtkd.training.train's step (its ``timer``) → the names of the profile table.
PHASES = {"batch": "collate", "forward": "forward", "backward": "backward", "clip": "clip_grad", "optimizer": "optimizer"}


@dataclass
class StepClock:
    """Timestamps taken once per training step, with the real-token statistics of each batch.

    Step ``i``'s interval ``t[i] - t[i-1]`` covers one whole step (wherever in the step the
    stamp is taken: the end of the step for the library's loop, fed by :meth:`timer`; the loss
    for the HF reference), so the steady-state rate over steps ``warmup..end`` is
    ``sum(examples) / (t[end] - t[warmup-1])``. With ``phases`` (a dict), :meth:`timer` also
    adds up the seconds of each phase of those steps (a device sync before each stamp).
    """

    warmup: int
    device: str = "cpu"
    phases: dict | None = None                  # phase → seconds over the timed steps (profile section)
    t: list = field(default_factory=list)
    n: list = field(default_factory=list)       # examples per step
    tok: list = field(default_factory=list)     # sum of real tokens S_i
    tok2: list = field(default_factory=list)    # sum of S_i^2
    width: list = field(default_factory=list)   # padded width of the batch
    obj: list = field(default_factory=list)     # seconds spent inside the objective, per step (fusion section)
    _mark: float = field(default=0.0, repr=False)

    def tick(self, lengths, width: int | None = None) -> None:
        sync(self.device)
        self.t.append(time.perf_counter())
        lengths = np.asarray(lengths, dtype=np.int64)
        self.n.append(int(len(lengths)))
        self.tok.append(int(lengths.sum()))
        self.tok2.append(int((lengths ** 2).sum()))
        self.width.append(width if width is not None else (int(lengths.max()) if len(lengths) else 0))

    def timer(self, lengths):
        """A ``timer(phase, batch_indices)`` for :func:`mtkd.training.train` over a split of these ``lengths``.

        It stamps the clock as each step ends (phase ``optimizer``); with :attr:`phases`, it also
        times every phase of the steps after the warm-up (``batch`` from the previous step's end).
        """
        lengths = np.asarray(lengths)

        def timer(phase, idx):
            if phase == "optimizer":
                self.tick(lengths[idx])
                now, step = self.t[-1], len(self.t) - 1
            elif self.phases is None:
                return
            else:
                sync(self.device)
                now, step = time.perf_counter(), len(self.t)
            if self.phases is not None and step >= max(1, self.warmup):
                key = PHASES.get(phase, phase)
                self.phases[key] = self.phases.get(key, 0.0) + now - self._mark
            self._mark = now

        return timer

    def objective(self, fn):
        """``fn`` (a training objective) with the seconds spent inside it appended to :attr:`obj` per call."""

        def timed(logits, hidden, idx, y, progress):
            sync(self.device)
            t0 = time.perf_counter()
            loss = fn(logits, hidden, idx, y, progress)
            sync(self.device)
            self.obj.append(time.perf_counter() - t0)
            return loss

        return timed

    @property
    def steps(self) -> int:
        return max(0, len(self.t) - self.warmup)

    def window(self):
        w = max(1, self.warmup)
        if len(self.t) <= w:
            raise RuntimeError(f"only {len(self.t)} steps recorded, need more than {w}")
        return slice(w, len(self.t)), self.t[-1] - self.t[w - 1]

    def rate(self) -> float:
        sl, dt = self.window()
        return sum(self.n[sl]) / dt

    def seconds(self) -> float:
        return self.window()[1]

    def durations(self) -> np.ndarray:
        return np.diff(np.asarray(self.t))

    def timed_durations(self) -> np.ndarray:
        """Seconds of each step after the warm-up (steps ``warmup..end``; aligned with ``obj[warmup:]``)."""
        return self.durations()[max(1, self.warmup) - 1:]

    def timed_objective(self) -> np.ndarray:
        return np.asarray(self.obj[max(1, self.warmup):])

    def summary(self) -> dict:
        sl, dt = self.window()
        return {"steps_timed": len(self.t) - max(1, self.warmup), "examples_timed": int(sum(self.n[sl])),
                "seconds": round(dt, 4), "examples_per_s": round(sum(self.n[sl]) / dt, 2),
                "mean_real_tokens": round(sum(self.tok[sl]) / sum(self.n[sl]), 2),
                "mean_padded_width": round(float(np.mean(self.width[sl])), 2),
                "step_ms_median": round(1e3 * float(np.median(self.timed_durations())), 2)}


# ---------------------------------------------------------------------------------------------- the machine

def machine(device: str) -> dict:
    import torch

    info = {"device": device, "platform": platform.platform(), "python": platform.python_version(),
            "torch": torch.__version__, "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads()}
    try:
        import transformers

        info["transformers"] = transformers.__version__
    except ImportError:
        pass
    with contextlib.suppress(OSError):
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
    if device.startswith("cuda"):
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def _ppid(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as fh:
        return int(fh.read().rsplit(")", 1)[1].split()[1])


def _mine(pid: int) -> bool:
    """Whether ``pid`` is this process or one of its descendants (the stages the bench itself runs)."""
    me = os.getpid()
    with contextlib.suppress(OSError, ValueError, IndexError):
        for _ in range(64):
            if pid == me:
                return True
            if pid <= 1:
                return False
            pid = _ppid(pid)
    return False


# Directories whose processes are the bench's own although not its descendants (the detached
# `dvc queue` workers of bench/queue_bench.py run their stages under <copy>/.dvc/tmp/exps).
OWN_ROOTS: list[str] = []


def _own_cwd(pid: int) -> bool:
    if not OWN_ROOTS:
        return False
    with contextlib.suppress(OSError):
        cwd = os.readlink(f"/proc/{pid}/cwd")
        return any(cwd == r or cwd.startswith(r.rstrip("/") + "/") for r in OWN_ROOTS)
    return False


def busy_processes() -> list[str]:
    """Other heavy jobs on this machine (stage processes, test runs): timings taken beside them are contended."""
    out = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        with contextlib.suppress(OSError):
            cmd = open(f"/proc/{pid}/cmdline", "rb").read().replace(b"\0", b" ").decode(errors="replace").strip()
            if (("stages." in cmd and "-m" in cmd) or "pytest" in cmd) and not _mine(int(pid)) and not _own_cwd(int(pid)):
                out.append(f"{pid} {cmd[:120]}")
    return out


class ContentionMonitor:
    """Samples :func:`busy_processes` every ``interval`` s while a section runs."""

    def __init__(self, interval: float = 1.0):
        import threading

        self.interval, self.samples, self.busy, self.seen = interval, 0, 0, []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            b = busy_processes()
            self.samples += 1
            if b:
                self.busy += 1
                self.seen.extend(x for x in b if x not in self.seen and len(self.seen) < 5)
            self._stop.wait(self.interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    def report(self) -> dict:
        return {"samples": self.samples, "contended_fraction": round(self.busy / max(1, self.samples), 3), "seen": self.seen}


def wait_idle(max_wait: float, quiet: float = 10.0) -> float:
    """Wait until no other stage/test process has run for ``quiet`` s (at most ``max_wait`` s); return the wait."""
    t0 = time.monotonic()
    last_busy = t0 if busy_processes() else t0 - quiet
    while time.monotonic() - t0 < max_wait:
        if busy_processes():
            last_busy = time.monotonic()
        elif time.monotonic() - last_busy >= quiet:
            break
        time.sleep(1.0)
    return time.monotonic() - t0


def self_peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def fresh_copy(model):
    return copy.deepcopy(model)


GUARD = {"max_wait": 0.0, "retries": 1, "log": []}


def guarded(name: str, fn):
    """Run one timed measurement on an idle machine if possible: wait for quiet (``--wait-idle``), watch for other
    stage/test processes while it runs, and run it again (up to ``retries`` times) if they showed up.
    The contended fraction of the kept attempt is logged in ``GUARD["log"]``."""
    best = None
    for attempt in range(1 + GUARD["retries"]):
        if GUARD["max_wait"]:
            wait_idle(GUARD["max_wait"], quiet=5.0)
        with ContentionMonitor(0.5) as mon:
            result = fn()
        frac = mon.report()["contended_fraction"]
        if best is None or frac < best[1]:
            best = (result, frac)
        if frac == 0.0 or not GUARD["max_wait"]:
            break
        print(f"  ({name}: other processes ran during {frac:.0%} of it; again)", flush=True)
    GUARD["log"].append({"run": name, "contended_fraction": best[1]})
    return best[0]
