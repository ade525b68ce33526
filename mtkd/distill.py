"""Distil one student per seed from fused teacher logits (SPEC §6–7), and score it."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from mtkd.engine import get_engine
from mtkd.fusion import Strategy, TeacherLogits, alpha_at, get_strategy, loss_settings  # noqa: F401  (alpha_at, TeacherLogits: re-exported)
from mtkd.metrics import classification_metrics, fidelity, softmax, summarize
from mtkd.models import CompactVocabulary, build_classifier, special_ids
from mtkd.training import encode, predict, train

log = logging.getLogger("mtkd")


@dataclass
class SeedRun:
    """Everything one student run needs: sent as is to a worker process when seeds run in parallel."""

    strategy: str
    teacher_names: list[str]
    settings: dict
    task: dict
    labels: dict[str, np.ndarray]
    encoded: dict  # split → Encoded (tokenised once per task)
    teachers: TeacherLogits | None
    student: object  # params.student
    runtime: object  # params.runtime
    seed: int
    save_dir: Path | None  # the first seed's student is saved


@dataclass
class SeedResult:
    seed: int
    scores: dict
    predictions: dict[str, np.ndarray]
    curves: list[dict]
    threads: int = 1  # torch's intra-op threads this student trained with (its last bits depend on it)
    seconds: float = 0.0


def train_seed(run: SeedRun) -> SeedResult:
    """One student: built and seeded, distilled under its strategy, scored on validation and test."""
    import time

    import torch

    started = time.perf_counter()
    cfg, runtime, task, seed = run.student, run.runtime, run.task, run.seed
    C, primary = task["num_classes"], task["primary_metric"]
    strategy = get_strategy(run.strategy, run.teacher_names)
    distiller = strategy.distiller(run.teachers, run.labels, run.settings)
    model, tokenizer = build_classifier(cfg, C, seed)
    pad_id = tokenizer.pad_token_id or 0
    vocab = CompactVocabulary(model, run.encoded, special_ids(tokenizer)) if runtime.compact_vocabulary else None
    enc, pad_id = (vocab.encoded, vocab.pad_id(pad_id)) if vocab else (run.encoded, pad_id)
    modules = distiller.start(seed, model.config.dim if hasattr(model.config, "dim") else model.config.hidden_size)
    curves: list[dict] = []
    result = train(model, enc["train"], enc["validation"], cfg, seed=seed, pad_id=pad_id, num_classes=C,
                   primary_metric=primary, bf16=runtime.bf16, bucketing=runtime.length_bucketing,
                   objective=distiller.loss, needs_hidden=distiller.needs_hidden, extra_modules=modules or None,
                   extra_lr=distiller.modules_learning_rate, desc=f"{strategy.name} seed {seed}",
                   on_epoch=lambda row: curves.append({"task": task["task"], "seed": seed, **row}))
    scores = {"best_epoch": result.best_epoch, "validation": result.validation}
    predictions = {}
    for split in (s for s in enc if s.startswith("test")):
        hidden = None
        if distiller.needs_hidden:
            logits, hidden = predict(model, enc[split], pad_id, cfg.per_device_eval_batch_size, runtime.bf16,
                                     return_hidden=True)
        else:
            logits = predict(model, enc[split], pad_id, cfg.per_device_eval_batch_size, runtime.bf16)
        predictions[f"{split}/seed{seed}"] = logits
        scores[split] = classification_metrics(logits, run.labels[split], C)
        if run.teachers is not None and split == "test":
            teachers = run.teachers
            fid = {name: fidelity(logits, softmax(teachers.splits[split][k])) for k, name in enumerate(teachers.names)}
            fused, records = distiller.fused_test(split, logits, hidden)
            scores.update(records)
            if fused is not None:
                fid["fused"] = fidelity(logits, fused)
                # what this student was distilled towards, at T = 1: analysis bootstraps its fidelity
                predictions[f"{split}/fused/seed{seed}"] = np.asarray(fused, dtype=np.float32)
            scores["fidelity"] = fid
    predictions[f"validation/seed{seed}"] = predict(model, enc["validation"], pad_id, cfg.per_device_eval_batch_size,
                                                    runtime.bf16)
    scores.update(distiller.seed_record())
    seconds, threads = time.perf_counter() - started, torch.get_num_threads()
    log.info("%s %s seed %d: test %s %.4f (%.0f s, %d threads)", strategy.name, task["task"], seed, primary,
             scores["test"][primary], seconds, threads)
    if vocab is not None:
        vocab.restore(result.weight_decay_factor)  # the full matrix again: an ordinary checkpoint
    if run.save_dir is not None and get_engine().is_main:
        from mtkd.io import atomic_path

        names = task.get("label_names") or []
        if len(names) == C:  # served by transformers.pipeline with the task's label names
            model.config.id2label, model.config.label2id = dict(enumerate(names)), {n: i for i, n in enumerate(names)}
        with atomic_path(run.save_dir, is_dir=True) as tmp:
            model.save_pretrained(tmp, safe_serialization=True)
            tokenizer.save_pretrained(tmp)
    return SeedResult(seed, scores, predictions, curves, threads, round(seconds, 1))


_WORKER_BUSY = False  # whether this worker process is inside a student run


class _Stopped(BaseException):
    """Raised in a busy seed worker by SIGINT or SIGTERM: not an Exception, so nothing on the way swallows it."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def _worker_signal(signum, frame) -> None:
    """Ctrl-C or SIGTERM in a seed worker: a busy one unwinds (removing its temporaries), an idle one leaves."""
    import signal

    for sig in (signal.SIGINT, signal.SIGTERM):  # the parent may forward the same Ctrl-C: unwind once
        signal.signal(sig, signal.SIG_IGN)
    if _WORKER_BUSY:
        raise _Stopped(signum)
    _quit_worker(signum)


def _quit_worker(signum: int) -> None:
    import os
    import sys

    sys.stderr.flush()
    os._exit(128 + signum)  # not back to the pool's loop, which would print a traceback or take the next seed


def _die_with_parent(parent: int) -> None:
    """Have the kernel send SIGTERM to this worker when the stage's process dies (Linux ``PR_SET_PDEATHSIG``).

    A stage stopped by SIGTERM or SIGKILL (a scheduler, ``kill <pid>``) cannot stop its workers itself;
    without this they would train on as orphans and write a checkpoint after the stage is gone. SIGTERM
    unwinds a busy worker (:func:`_worker_signal`), removing what it was writing.
    """
    import ctypes
    import os
    import signal
    import sys

    if not sys.platform.startswith("linux"):
        return
    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if os.getppid() != parent:  # the stage died before the request took effect
        _quit_worker(signal.SIGTERM)


def _start_worker(parent: int) -> None:
    import signal

    import torch
    import transformers

    from mtkd.progress import use_thread_lock

    # A stage started with Ctrl-C ignored (a background job) passes that on to its workers: keep it so.
    if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:
        signal.signal(signal.SIGINT, _worker_signal)
    signal.signal(signal.SIGTERM, _worker_signal)  # what the pool sends the others when one worker dies
    _die_with_parent(parent)
    use_thread_lock()  # the thread count is each run's (seed_threads), set as the run starts
    torch.use_deterministic_algorithms(True, warn_only=True)
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()  # as in the stage's own process (mtkd.cli)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s", datefmt="%H:%M:%S")


def _train_seed_in_worker(run: SeedRun, threads: int) -> SeedResult:
    global _WORKER_BUSY
    import torch

    _WORKER_BUSY = True
    torch.set_num_threads(threads)
    try:
        return train_seed(run)
    except _Stopped as stop:
        _quit_worker(stop.signum)  # every `with atomic_path` on the way out has removed its temporary
    finally:
        _WORKER_BUSY = False


def seed_threads(runs: int, workers: int, threads: int) -> list[int]:
    """Threads per run when ``workers`` processes of ``threads`` threads take ``runs`` runs.

    Full rounds of ``workers`` runs train side by side at ``threads`` each; the runs left over
    (5 seeds on 2 workers: the fifth) would leave processes idle, so they train after every
    full round, sharing all ``workers × threads`` threads: a fixed plan, so a run's thread count,
    and therefore its last bits, depend on the params alone, never on timing.
    """
    rest = runs % workers
    full = runs - rest
    return [threads] * full + ([threads * workers // rest] * rest if rest else [])


def run_seeds(runs: list[SeedRun], workers: int, threads: int) -> list[SeedResult]:
    """The runs one after another, or ``workers`` at a time in spawned processes (threads: :func:`seed_threads`).

    A seed's student depends only on its own run (its seed fixes initialisation, batch order
    and dropout) and its thread count, so the results are the same whichever process trains it
    and in which order; they differ from a run with another thread count in their last bits, as
    any CPU run does.
    Ctrl-C stops every worker quietly, after each has removed what it was writing, and reaches
    the caller as ``KeyboardInterrupt``; a worker that dies otherwise is one :class:`MtkdError` line.
    """
    if workers <= 1 or len(runs) <= 1:
        return [train_seed(r) for r in runs]
    import multiprocessing
    import os
    import signal
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    from mtkd.errors import MtkdError

    workers = min(workers, len(runs))
    plan = seed_threads(len(runs), workers, threads)
    full = len(runs) - len(runs) % workers  # the runs of full rounds; the rest follow them
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_start_worker, initargs=(os.getpid(),))
    started = []
    try:
        results = pool.map(_train_seed_in_worker, runs[:full], plan[:full])  # the workers exist from here
        started = list((getattr(pool, "_processes", None) or {}).values())
        results = list(results)
        # Only once every full round is done: the leftover runs then have every thread to themselves.
        return results + list(pool.map(_train_seed_in_worker, runs[full:], plan[full:]))
    except BrokenProcessPool:
        for proc in started:
            proc.join(timeout=30)
        codes = [proc.exitcode for proc in started]
        if 128 + signal.SIGINT in codes:
            # A worker took the Ctrl-C before this process did (the signal may land on another thread).
            raise KeyboardInterrupt from None
        how = ", ".join(f"killed by signal {-c}" if c < 0 else f"exit code {c}" for c in codes if c) or "no exit code"
        raise MtkdError(f"runtime.seed_workers: a seed worker process stopped abruptly ({how}; out of memory?); "
                        "re-run, or train seeds in one process with runtime.seed_workers: 1") from None
    except KeyboardInterrupt:
        # A terminal's Ctrl-C reaches the workers already; `kill -INT <this pid>` does not: forward it.
        for proc in started:
            if proc.is_alive():
                try:
                    os.kill(proc.pid, signal.SIGINT)
                except ProcessLookupError:
                    pass
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        # The traceback of an interruption keeps this frame alive to the end: without this, the pool's
        # queues outlive it and multiprocessing's resource tracker warns of "leaked semaphores".
        del pool, started


def distill_task(strategy: Strategy, settings: dict, task: dict, frames: dict[str, pd.DataFrame],
                 teachers: TeacherLogits | None, params, save_dir: Path | None,
                 curves: list[dict]) -> tuple[dict, dict[str, np.ndarray]]:
    """Train the student of ``strategy`` once per seed; return (metrics, predictions).

    ``settings`` is what the strategy reads from params (:meth:`Strategy.settings`); the
    strategy's :class:`~mtkd.fusion.Distiller` supplies the teacher term. With
    ``runtime.seed_workers`` > 1 (one process, CPU), seeds train side by side in worker
    processes that share ``runtime.num_threads``.
    """
    from mtkd.models import check_model_source, load_tokenizer

    cfg, runtime = params.student, params.runtime
    if cfg.model_name_or_path is not None:  # one clear line before any work (as build_classifier does)
        check_model_source(cfg, task["num_classes"], "student")
    labels = {s: f["label"].to_numpy(dtype=np.int64) for s, f in frames.items()}
    test_splits = [s for s in frames if s.startswith("test")]
    tokenizer = load_tokenizer(cfg, key="student")
    encoded = {s: encode(tokenizer, f, cfg.max_seq_length) for s, f in frames.items()}  # once per task
    teacher_names = teachers.names if teachers is not None else []
    runs = [SeedRun(strategy.name, teacher_names, settings, task, labels, encoded, teachers, cfg, runtime, seed,
                    save_dir if i == 0 else None) for i, seed in enumerate(params.seeds)]
    engine = get_engine()
    workers = runtime.seed_workers if not engine.distributed and engine.device.type == "cpu" else 1
    results = run_seeds(runs, workers, max(1, runtime.num_threads // max(1, workers)))
    per_seed, predictions = {}, {}
    for r in results:
        per_seed[str(r.seed)] = r.scores
        predictions.update(r.predictions)
        curves.extend(r.curves)
    for split in test_splits:
        predictions[f"{split}/ids"] = frames[split]["id"].to_numpy(dtype=str)
    predictions["validation/ids"] = frames["validation"]["id"].to_numpy(dtype=str)
    return aggregate(per_seed, [*test_splits, "validation"], *loss_settings(settings)), predictions


def aggregate(per_seed: dict, splits: list[str], T: float, alpha: float, schedule: str = "constant") -> dict:
    """Mean / std / 95% interval over seeds of every metric, plus the per-seed values."""
    seeds = list(per_seed.values())
    out: dict = {"T": T, "alpha": alpha, "alpha_schedule": schedule}
    for split in splits:
        out[split] = {m: summarize([s[split][m] for s in seeds], m) for m in seeds[0][split]}
    if "fidelity" in seeds[0]:
        out["fidelity"] = {ref: {m: summarize([s["fidelity"][ref][m] for s in seeds], m) for m in seeds[0]["fidelity"][ref]}
                           for ref in seeds[0]["fidelity"]}
    out["seeds"] = per_seed
    return out


def load_teacher_validation_metric(metrics_dir: Path, teacher: str, task: str, primary: str) -> float:
    path = metrics_dir / f"{teacher}-{task}.json"
    from mtkd.errors import MtkdError

    if not path.is_file():
        raise MtkdError(f"{path}: teacher metrics not found (run `dvc repro extract_logits`)")
    return float(json.loads(path.read_text())[task]["validation"][primary])
