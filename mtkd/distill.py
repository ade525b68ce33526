"""Distil one student per seed from fused teacher logits (SPEC §6–7), and score it."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from mtkd.engine import get_engine
from mtkd.fusion import FusionContext, GatingFusion, fit_temperature, fuse, is_single
from mtkd.losses import kd_loss
from mtkd.metrics import classification_metrics, fidelity, softmax, summarize
from mtkd.models import build_classifier
from mtkd.training import encode, predict, train

log = logging.getLogger("mtkd")


@dataclass
class TeacherLogits:
    """Logits of the K teachers, in params order, per split: ``{split: [K, n, C]}``."""

    names: list[str]
    splits: dict[str, np.ndarray]
    validation_metric: dict[str, float]


def fusion_context(teachers: TeacherLogits, labels: np.ndarray, validation_labels: np.ndarray) -> FusionContext:
    temps = {name: fit_temperature(torch.from_numpy(teachers.splits["validation"][k]), torch.from_numpy(validation_labels))
             for k, name in enumerate(teachers.names)}
    return FusionContext(teachers.names, teachers.validation_metric, torch.from_numpy(labels), temps)


def fused_targets(strategy: str, teachers: TeacherLogits, split: str, T: float, labels: np.ndarray,
                  ctx: FusionContext) -> torch.Tensor:
    z = torch.from_numpy(teachers.splits[split]).double()
    ctx = FusionContext(ctx.teacher_names, ctx.validation_metric, torch.from_numpy(labels), ctx.temperatures)
    return fuse(strategy, z, T, ctx).float()


def distill_task(strategy: str, task: dict, frames: dict[str, pd.DataFrame], teachers: TeacherLogits | None,
                 params, save_dir: Path | None, curves: list[dict]) -> tuple[dict, dict[str, np.ndarray]]:
    """Train the student of ``strategy`` once per seed; return (metrics, predictions)."""
    cfg, runtime = params.student, params.runtime
    alpha = 0.0 if strategy == "none" else params.distill.alpha
    schedule = params.distill.alpha_schedule
    T = 1.0 if strategy == "none" else params.distill.temperature(strategy)
    C, primary = task["num_classes"], task["primary_metric"]
    labels = {s: f["label"].to_numpy(dtype=np.int64) for s, f in frames.items()}
    test_splits = [s for s in frames if s.startswith("test")]

    targets, ctx = None, None
    if teachers is not None and strategy != "none":
        ctx = fusion_context(teachers, labels["train"], labels["validation"])
        if strategy != "gating":
            targets = fused_targets(strategy, teachers, "train", T, labels["train"], ctx)

    per_seed, predictions = {}, {}
    encoded = None
    for i, seed in enumerate(params.seeds):
        model, tokenizer = build_classifier(cfg, C, seed)
        if encoded is None:  # tokenise once per task, reuse for every seed
            encoded = {s: encode(tokenizer, f, cfg.max_seq_length) for s, f in frames.items()}
        pad_id = tokenizer.pad_token_id or 0
        gate, gate_log = None, []
        if strategy == "gating":
            torch.manual_seed(seed)
            gate = GatingFusion(model.config.dim if hasattr(model.config, "dim") else model.config.hidden_size,
                                len(teachers.names), params.distill.gating.hidden_size, params.distill.gating.detach_hidden)
            z_train = torch.from_numpy(teachers.splits["train"]).float()

            def objective(logits, hidden, idx, y, progress):
                p_T, w = gate(hidden, z_train[:, idx].to(logits.device), T)
                gate_log.append(w.detach().mean(0).cpu())
                return kd_loss(logits, p_T, y, T, alpha_at(alpha, schedule, progress))
        else:
            def objective(logits, hidden, idx, y, progress):
                target = None if targets is None else targets[idx].to(logits.device)
                return kd_loss(logits, target, y, T, alpha_at(alpha, schedule, progress))

        def on_epoch(row, seed=seed):
            curves.append({"task": task["task"], "seed": seed, **row})

        result = train(model, encoded["train"], encoded["validation"], cfg, seed=seed, pad_id=pad_id, num_classes=C,
                       primary_metric=primary, bf16=runtime.bf16, bucketing=runtime.length_bucketing, objective=objective,
                       needs_hidden=gate is not None, extra_modules=[gate] if gate is not None else None,
                       extra_lr=params.distill.gating.learning_rate, desc=f"{strategy} seed {seed}", on_epoch=on_epoch)
        seed_scores = {"best_epoch": result.best_epoch, "validation": result.validation}
        for split in test_splits:
            if gate is not None:
                logits, hidden = predict(model, encoded[split], pad_id, cfg.per_device_eval_batch_size, runtime.bf16,
                                         return_hidden=True)
            else:
                logits = predict(model, encoded[split], pad_id, cfg.per_device_eval_batch_size, runtime.bf16)
            predictions[f"{split}/seed{seed}"] = logits
            seed_scores[split] = classification_metrics(logits, labels[split], C)
            if teachers is not None and split == "test":
                fid = {name: fidelity(logits, softmax(teachers.splits[split][k])) for k, name in enumerate(teachers.names)}
                if strategy not in ("none",):
                    if gate is not None:
                        with torch.no_grad():
                            p1, w = gate.eval().cpu()(torch.from_numpy(hidden), torch.from_numpy(teachers.splits[split]).float(), 1.0)
                        fid["fused"] = fidelity(logits, p1.numpy())
                        seed_scores["gate_weights_test"] = dict(zip(teachers.names, np.round(w.mean(0).numpy().astype(float), 6).tolist()))
                    else:
                        fid["fused"] = fidelity(logits, fused_targets(strategy, teachers, split, 1.0, labels[split], ctx).numpy())
                seed_scores["fidelity"] = fid
        val_logits = predict(model, encoded["validation"], pad_id, cfg.per_device_eval_batch_size, runtime.bf16)
        predictions[f"validation/seed{seed}"] = val_logits
        if gate_log:
            seed_scores["gate_weights_train"] = dict(zip(teachers.names, np.round(torch.stack(gate_log).mean(0).numpy().astype(float), 6).tolist()))
        per_seed[str(seed)] = seed_scores
        log.info("%s %s seed %d: test %s %.4f", strategy, task["task"], seed, primary, seed_scores["test"][primary])
        if i == 0 and save_dir is not None and get_engine().is_main:
            from mtkd.io import atomic_path

            with atomic_path(save_dir, is_dir=True) as tmp:
                model.save_pretrained(tmp, safe_serialization=True)
                tokenizer.save_pretrained(tmp)
    for split in test_splits:
        predictions[f"{split}/ids"] = frames[split]["id"].to_numpy(dtype=str)
    predictions["validation/ids"] = frames["validation"]["id"].to_numpy(dtype=str)
    return aggregate(per_seed, [*test_splits, "validation"], T, alpha, schedule if alpha else "constant"), predictions


def alpha_at(alpha: float, schedule: str, progress: float) -> float:
    """α at ``progress`` ∈ [0, 1) of training: constant, or teacher annealing (linear decay to 0)."""
    if schedule == "linear":
        return alpha * (1.0 - progress)
    return alpha


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
