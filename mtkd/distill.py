"""Distil one student per seed from fused teacher logits (SPEC §6–7), and score it."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from mtkd.engine import get_engine
from mtkd.fusion import Strategy, TeacherLogits, alpha_at  # noqa: F401  (alpha_at, TeacherLogits: re-exported)
from mtkd.metrics import classification_metrics, fidelity, softmax, summarize
from mtkd.models import build_classifier
from mtkd.training import encode, predict, train

log = logging.getLogger("mtkd")


def distill_task(strategy: Strategy, settings: dict, task: dict, frames: dict[str, pd.DataFrame],
                 teachers: TeacherLogits | None, params, save_dir: Path | None,
                 curves: list[dict]) -> tuple[dict, dict[str, np.ndarray]]:
    """Train the student of ``strategy`` once per seed; return (metrics, predictions).

    ``settings`` is what the strategy reads from params (:meth:`Strategy.settings`); the
    strategy's :class:`~mtkd.fusion.Distiller` supplies the teacher term.
    """
    cfg, runtime = params.student, params.runtime
    C, primary = task["num_classes"], task["primary_metric"]
    labels = {s: f["label"].to_numpy(dtype=np.int64) for s, f in frames.items()}
    test_splits = [s for s in frames if s.startswith("test")]
    distiller = strategy.distiller(teachers, labels, settings)

    per_seed, predictions = {}, {}
    encoded = None
    for i, seed in enumerate(params.seeds):
        model, tokenizer = build_classifier(cfg, C, seed)
        if encoded is None:  # tokenise once per task, reuse for every seed
            encoded = {s: encode(tokenizer, f, cfg.max_seq_length) for s, f in frames.items()}
        pad_id = tokenizer.pad_token_id or 0
        modules = distiller.start(seed, model.config.dim if hasattr(model.config, "dim") else model.config.hidden_size)

        def on_epoch(row, seed=seed):
            curves.append({"task": task["task"], "seed": seed, **row})

        result = train(model, encoded["train"], encoded["validation"], cfg, seed=seed, pad_id=pad_id, num_classes=C,
                       primary_metric=primary, bf16=runtime.bf16, bucketing=runtime.length_bucketing,
                       objective=distiller.loss, needs_hidden=distiller.needs_hidden, extra_modules=modules or None,
                       extra_lr=distiller.modules_learning_rate, desc=f"{strategy.name} seed {seed}", on_epoch=on_epoch)
        seed_scores = {"best_epoch": result.best_epoch, "validation": result.validation}
        for split in test_splits:
            hidden = None
            if distiller.needs_hidden:
                logits, hidden = predict(model, encoded[split], pad_id, cfg.per_device_eval_batch_size, runtime.bf16,
                                         return_hidden=True)
            else:
                logits = predict(model, encoded[split], pad_id, cfg.per_device_eval_batch_size, runtime.bf16)
            predictions[f"{split}/seed{seed}"] = logits
            seed_scores[split] = classification_metrics(logits, labels[split], C)
            if teachers is not None and split == "test":
                fid = {name: fidelity(logits, softmax(teachers.splits[split][k])) for k, name in enumerate(teachers.names)}
                fused, records = distiller.fused_test(split, hidden)
                seed_scores.update(records)
                if fused is not None:
                    fid["fused"] = fidelity(logits, fused)
                seed_scores["fidelity"] = fid
        val_logits = predict(model, encoded["validation"], pad_id, cfg.per_device_eval_batch_size, runtime.bf16)
        predictions[f"validation/seed{seed}"] = val_logits
        seed_scores.update(distiller.seed_record())
        per_seed[str(seed)] = seed_scores
        log.info("%s %s seed %d: test %s %.4f", strategy.name, task["task"], seed, primary, seed_scores["test"][primary])
        if i == 0 and save_dir is not None and get_engine().is_main:
            from mtkd.io import atomic_path

            with atomic_path(save_dir, is_dir=True) as tmp:
                model.save_pretrained(tmp, safe_serialization=True)
                tokenizer.save_pretrained(tmp)
    for split in test_splits:
        predictions[f"{split}/ids"] = frames[split]["id"].to_numpy(dtype=str)
    predictions["validation/ids"] = frames["validation"]["id"].to_numpy(dtype=str)
    return aggregate(per_seed, [*test_splits, "validation"], distiller.T, distiller.alpha, distiller.schedule), predictions


def aggregate(per_seed: dict, splits: list[str], T: float, alpha: float, schedule: str = "constant") -> dict:
    """Mean / std / 95% interval over seeds of every metric, plus the per-seed values."""
    seeds = list(per_seed.values())
    out: dict = {"T": T, "alpha": alpha, "alpha_schedule": schedule}
    for split in splits:
        out[split] = {m: summarize([s[split][m] for s in seeds]) for m in seeds[0][split]}
    if "fidelity" in seeds[0]:
        out["fidelity"] = {ref: {m: summarize([s["fidelity"][ref][m] for s in seeds]) for m in seeds[0]["fidelity"][ref]}
                           for ref in seeds[0]["fidelity"]}
    out["seeds"] = per_seed
    return out


def load_teacher_validation_metric(metrics_dir: Path, teacher: str, task: str, primary: str) -> float:
    path = metrics_dir / f"{teacher}-{task}.json"
    from mtkd.errors import MtkdError

    if not path.is_file():
        raise MtkdError(f"{path}: teacher metrics not found (run `dvc repro extract_logits`)")
    return float(json.loads(path.read_text())[task]["validation"][primary])
