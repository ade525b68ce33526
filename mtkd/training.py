"""One training loop for teachers (cross-entropy) and students (distillation).

Speed on a CPU comes from not computing on padding: texts are tokenised once,
batches are drawn from length buckets and padded only to their longest member,
and matmuls run under bf16 autocast (FACTS: 3–5× over fixed-length fp32 padding).
Model selection uses the validation split only: the best epoch's weights are kept.
The same loop runs on a GPU and across processes (:mod:`mtkd.engine`, Accelerate).
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import pandas as pd
import torch
from transformers import get_linear_schedule_with_warmup

from mtkd.engine import get_engine
from mtkd.metrics import classification_metrics
from mtkd.models import forward_kwargs
from mtkd.progress import progress_bar

log = logging.getLogger("mtkd")


@dataclass
class Encoded:
    """A tokenised split: variable-length token ids, labels and ids, in split order."""

    ids: list[str]
    input_ids: list[np.ndarray]
    token_type_ids: list[np.ndarray] | None
    labels: np.ndarray

    @property
    def lengths(self) -> np.ndarray:
        return np.fromiter((len(x) for x in self.input_ids), dtype=np.int64, count=len(self.input_ids))

    def __len__(self) -> int:
        return len(self.input_ids)


def encode(tokenizer, frame: pd.DataFrame, max_seq_length: int) -> Encoded:
    pair = frame["text_b"].notna().any()
    kwargs = dict(truncation=True, max_length=max_seq_length, padding=False)
    enc = tokenizer(frame["text_a"].tolist(), frame["text_b"].tolist(), **kwargs) if pair else \
        tokenizer(frame["text_a"].tolist(), **kwargs)
    tt = enc.get("token_type_ids")
    return Encoded(frame["id"].astype(str).tolist(), [np.asarray(x, dtype=np.int64) for x in enc["input_ids"]],
                   [np.asarray(x, dtype=np.int64) for x in tt] if tt is not None else None,
                   frame["label"].to_numpy(dtype=np.int64))


def make_batches(lengths: np.ndarray, batch_size: int, rng: np.random.Generator, bucketing: bool) -> list[np.ndarray]:
    """Shuffled batches; with bucketing, members of a batch have similar lengths.

    Examples are shuffled, cut into pools of 50 batches, sorted by length inside a pool,
    and the resulting batches are shuffled again, so the order stays random across
    epochs while padding shrinks to a few tokens per batch.
    """
    order = rng.permutation(len(lengths))
    if bucketing:
        pool = batch_size * 50
        order = np.concatenate([c[np.argsort(lengths[c], kind="stable")] for c in np.array_split(order, max(1, -(-len(order) // pool)))])
    batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    if bucketing:
        batches = [batches[i] for i in rng.permutation(len(batches))]
    return batches


def collate(enc: Encoded, idx: np.ndarray, pad_id: int, keys: set[str]) -> dict[str, torch.Tensor]:
    width = max(len(enc.input_ids[i]) for i in idx)
    ids = np.full((len(idx), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(idx), width), dtype=np.int64)
    tt = np.zeros((len(idx), width), dtype=np.int64)
    for row, i in enumerate(idx):
        n = len(enc.input_ids[i])
        ids[row, :n] = enc.input_ids[i]
        mask[row, :n] = 1
        if enc.token_type_ids is not None:
            tt[row, :n] = enc.token_type_ids[i]
    batch = {"input_ids": torch.from_numpy(ids), "attention_mask": torch.from_numpy(mask)}
    if "token_type_ids" in keys:
        batch["token_type_ids"] = torch.from_numpy(tt)
    return batch


@torch.no_grad()  # not inference_mode: DDP later re-broadcasts buffers, which inference tensors forbid
def predict(model, enc: Encoded, pad_id: int, batch_size: int = 128, bf16: bool = True, desc: str | None = None,
            return_hidden: bool = False):
    """Logits ``[n, C]`` float32 in split order (batches run longest-first, then are put back).

    With ``return_hidden``, also the first-token final hidden states ``[n, H]`` (for gating).
    Under several processes each scores every N-th length-sorted example and the rows are
    gathered back, so every process returns the whole split.
    """
    engine = get_engine()
    model.eval()
    model.to(engine.device)
    keys = forward_kwargs(model)
    order = np.argsort(-enc.lengths, kind="stable")[engine.rank::engine.world]
    logits, hiddens = [], []
    for start in progress_bar(range(0, len(order), batch_size), desc=desc or "predict", leave=False,
                             disable=desc is None or not engine.is_main):
        idx = order[start:start + batch_size]
        batch = {k: v.to(engine.device) for k, v in collate(enc, idx, pad_id, keys).items()}
        with engine.autocast(bf16):
            result = model(**batch, output_hidden_states=return_hidden)
        logits.append(result.logits.float().cpu().numpy())
        if return_hidden:
            hiddens.append(result.hidden_states[-1][:, 0].float().cpu().numpy())
    empty = np.empty((0, model.config.num_labels), dtype=np.float32)
    out = engine.gather_rows(order, np.concatenate(logits) if logits else empty, len(enc))
    if not return_hidden:
        return out
    dim = model.config.dim if hasattr(model.config, "dim") else model.config.hidden_size
    hidden = engine.gather_rows(order, np.concatenate(hiddens) if hiddens else np.empty((0, dim), np.float32), len(enc))
    return out, hidden


# objective(logits, first_token_hidden or None, batch indices, labels, progress in [0, 1)) -> loss
Objective = Callable[[torch.Tensor, torch.Tensor | None, np.ndarray, torch.Tensor, float], torch.Tensor]


@dataclass
class TrainResult:
    best_epoch: int
    validation: dict[str, float]
    history: list[dict] = field(default_factory=list)
    # What AdamW's decoupled weight decay alone did to a weight that never got a gradient, up
    # to the kept checkpoint: Π_t (1 − lr_t · weight_decay) (CompactVocabulary.restore uses it).
    weight_decay_factor: float = 1.0
    stopped_early: bool = False  # early_stopping_patience ended training before num_train_epochs


def train(model, train_enc: Encoded, val_enc: Encoded, args, *, seed: int, pad_id: int, num_classes: int,
          primary_metric: str, bf16: bool = True, bucketing: bool = True, objective: Objective | None = None,
          needs_hidden: bool = False, extra_modules: list[torch.nn.Module] | None = None,
          extra_lr: float | None = None, desc: str = "train", on_epoch: Callable[[dict], None] | None = None,
          timer: Callable[[str, np.ndarray], None] | None = None) -> TrainResult:
    """Fine-tune ``model``; keep the weights of the epoch with the best validation primary metric.

    ``timer(phase, batch_indices)``, if given, is called as each phase of a step ends
    (``batch``, ``forward``, ``backward``, ``clip``, ``optimizer``): ``bench/`` times this loop
    itself, phase by phase, instead of a copy of it.

    ``args.per_device_train_batch_size`` is per process: N processes take one global batch
    of N × that size per step, each its own contiguous shard (see :mod:`mtkd.engine`).
    """
    engine = get_engine()
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    keys = forward_kwargs(model)
    n = len(train_enc) if args.max_train_samples is None else min(args.max_train_samples, len(train_enc))
    pool = np.arange(len(train_enc)) if n == len(train_enc) else np.sort(rng.choice(len(train_enc), n, replace=False))
    lengths = train_enc.lengths[pool]
    global_batch = args.per_device_train_batch_size * engine.world
    steps_per_epoch = -(-n // global_batch)
    if engine.distributed and n % global_batch and n % global_batch < engine.world:
        steps_per_epoch -= 1  # a last batch too small to give every process an example is dropped
    if getattr(args, "freeze_word_embeddings", False):
        # Most of a small student's parameters are its word embeddings (11.7M of the 3-layer
        # MiniLM student's ~19M); a batch touches a few hundred rows of them, yet AdamW updates all.
        model.get_input_embeddings().weight.requires_grad_(False)
    extra_modules = [m.to(engine.device) for m in extra_modules or []]
    # Extra modules (the gating MLP) are not wrapped: their gradients are averaged by hand.
    (wrapped,) = engine.prepare(model)
    trainable = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
    decay = [p for name, p in trainable if not name.endswith("bias") and "LayerNorm" not in name and "layer_norm" not in name]
    no_decay = [p for name, p in trainable if name.endswith("bias") or "LayerNorm" in name or "layer_norm" in name]
    groups = [{"params": decay, "weight_decay": args.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    for module in extra_modules:
        groups.append({"params": list(module.parameters()), "weight_decay": 0.0, "lr": extra_lr or args.learning_rate})
    # The fused kernel updates all parameters in one pass: on 2 CPU cores the unfused step
    # over the 11.7M-entry embedding matrix took ~45% of a student step (measured 143 → 272 ex/s).
    optimizer = torch.optim.AdamW(groups, lr=args.learning_rate, fused=True)
    total = steps_per_epoch * args.num_train_epochs
    scheduler = get_linear_schedule_with_warmup(optimizer, int(args.warmup_ratio * total), total)
    labels_all = torch.tensor(train_enc.labels)
    objective = objective or (lambda logits, hidden, idx, y, progress: torch.nn.functional.cross_entropy(logits.float(), y))

    # Evaluate a few times per epoch (HF's eval_steps): a curve even for one epoch, and a
    # best checkpoint chosen on validation at sub-epoch resolution.
    eval_every = max(1, -(-steps_per_epoch // args.evaluations_per_epoch))
    tick = timer or (lambda phase, idx: None)
    best_state, best_score, result = None, -np.inf, TrainResult(0, {})
    step, decay_factor = 0, 1.0
    patience, threshold = getattr(args, "early_stopping_patience", None), getattr(args, "early_stopping_threshold", 0.0)
    stale = 0  # evaluations in a row that did not beat the best by more than the threshold
    for epoch in range(1, args.num_train_epochs + 1):
        if result.stopped_early:
            break
        wrapped.train()
        for module in extra_modules:
            module.train()
        losses = []
        batches = make_batches(lengths, global_batch, rng, bucketing)[:steps_per_epoch]
        bar = progress_bar(batches, desc=f"{desc} epoch {epoch}", leave=False, mininterval=2.0, disable=not engine.is_main)
        for i, local in enumerate(bar, start=1):
            idx = pool[engine.shard(local)]
            batch = {k: v.to(engine.device) for k, v in collate(train_enc, idx, pad_id, keys).items()}
            tick("batch", idx)
            with engine.autocast(bf16):
                out = wrapped(**batch, output_hidden_states=needs_hidden)
            hidden = out.hidden_states[-1][:, 0].float() if needs_hidden else None
            loss = objective(out.logits.float(), hidden, idx, labels_all[idx].to(engine.device), step / total)
            tick("forward", idx)
            optimizer.zero_grad(set_to_none=True)
            engine.backward(loss)
            engine.average_gradients([p for m in extra_modules for p in m.parameters()])
            tick("backward", idx)
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            tick("clip", idx)
            decay_factor *= 1.0 - optimizer.param_groups[0]["lr"] * args.weight_decay
            optimizer.step()
            scheduler.step()
            step += 1
            losses.append(float(loss.detach()))
            tick("optimizer", idx)
            bar.set_postfix(loss=f"{np.mean(losses[-50:]):.4f}", refresh=False)
            if i % eval_every and i != steps_per_epoch:
                continue
            val_logits = predict(model, val_enc, pad_id, args.per_device_eval_batch_size, bf16)
            val = classification_metrics(val_logits, val_enc.labels, num_classes)
            row = {"epoch": round(step / steps_per_epoch, 4), "step": step, "train_loss": round(float(np.mean(losses)), 6),
                   "val_" + primary_metric: val[primary_metric]}
            losses = []
            wrapped.train()
            result.history.append(row)
            if on_epoch:
                on_epoch(row)
            log.info("%s epoch %.2f: train_loss %.4f, validation %s %.4f", desc, row["epoch"], row["train_loss"],
                     primary_metric, val[primary_metric])
            stale = 0 if val[primary_metric] > best_score + threshold else stale + 1
            if val[primary_metric] > best_score:
                best_score, best_state = val[primary_metric], copy.deepcopy(model.state_dict())
                result.best_epoch, result.validation = row["epoch"], val
                result.weight_decay_factor = decay_factor
            if patience and stale >= patience and step < total:
                log.info("%s: early stop at epoch %.2f (%d evaluations without a gain over %.4f)", desc, row["epoch"],
                         stale, threshold)
                result.stopped_early = True
                break
    model.load_state_dict(best_state)
    return result
