"""The reference way: Hugging Face ``Trainer``, ``padding="max_length"``, fp32.

A tokenised ``datasets.Dataset`` padded to the task's max length (``max_seq_length`` of
params.yaml, 64), ``TrainingArguments`` with HF's defaults except what must match our loop
(batch size, lr, weight decay, warm-up ratio, epochs, seed) and what only writes files
(no checkpoints, no reports, no progress bar). The student's ``compute_loss`` looks the
teacher targets up per batch by example index (an ``idx`` column) and applies the same
:func:`mtkd.losses.kd_loss`. Same model init, data, batch size and lr as our loop.
"""

from __future__ import annotations

import tempfile
import time

import numpy as np
import torch

from bench.common import StepClock, sync


def max_length_dataset(tokenizer, frame, max_length: int, with_index: bool = True):
    """``datasets.Dataset`` tokenised with ``padding="max_length"`` (the run_glue.py default)."""
    data = {"text": frame["text_a"].tolist(), "label": frame["label"].astype("int64").tolist()}
    if with_index:
        data["idx"] = list(range(len(frame)))
    try:
        import datasets

        ds = datasets.Dataset.from_dict(data)
        ds = ds.map(lambda b: tokenizer(b["text"], padding="max_length", truncation=True, max_length=max_length),
                    batched=True, remove_columns=["text"])
        return ds.rename_column("label", "labels").with_format("torch")
    except ImportError:  # no `datasets` on this machine: the same rows as a list of dicts
        enc = tokenizer(data["text"], padding="max_length", truncation=True, max_length=max_length)
        rows = []
        for i in range(len(frame)):
            row = {k: torch.tensor(v[i]) for k, v in enc.items()}
            row["labels"] = torch.tensor(data["label"][i])
            if with_index:
                row["idx"] = torch.tensor(i)
            rows.append(row)
        return rows


def _args(out_dir: str, *, device: str, batch_size: int, lr: float, weight_decay: float, warmup_steps: int,
          seed: int, max_steps: int | None, eval_batch_size: int = 128, optim: str | None = None):
    from transformers import TrainingArguments

    return TrainingArguments(
        output_dir=out_dir, use_cpu=not device.startswith("cuda"), per_device_train_batch_size=batch_size,
        per_device_eval_batch_size=eval_batch_size, num_train_epochs=1, max_steps=max_steps or -1,
        learning_rate=lr, weight_decay=weight_decay, warmup_steps=warmup_steps, seed=seed,
        bf16=False, fp16=False,  # fp32
        save_strategy="no", report_to="none", disable_tqdm=True, logging_strategy="no",
        remove_unused_columns=False,  # keep `idx` for the per-batch teacher lookup
        **({"optim": optim} if optim else {}),  # default: HF's own (adamw_torch_fused with torch >= 2.8)
    )


def reference_train(model, dataset, *, device: str, batch_size: int, lr: float, weight_decay: float, warmup_ratio: float,
                    seed: int, clock: StepClock, targets: torch.Tensor | None = None, T: float = 6.0, alpha: float = 0.7,
                    max_steps: int | None = None, optim: str | None = None):
    """One epoch (or ``max_steps``) of ``Trainer.train``; with ``targets``, the distillation loss."""
    from transformers import Trainer

    from mtkd.losses import kd_loss

    class RefTrainer(Trainer):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            idx = inputs.pop("idx")
            labels = inputs.pop("labels")
            outputs = model(**inputs)
            p_T = None if targets is None else targets[idx.cpu()].to(outputs.logits.device)
            loss = kd_loss(outputs.logits, p_T, labels, T, alpha if targets is not None else 0.0)
            clock.tick(inputs["attention_mask"].sum(1).cpu().numpy(), width=int(inputs["input_ids"].shape[1]))
            return (loss, outputs) if return_outputs else loss

    with tempfile.TemporaryDirectory(prefix="mtkd-bench-hf-") as out:
        total = max_steps or -(-len(dataset) // batch_size)
        # The same schedule as ours: linear, int(warmup_ratio * total) warm-up steps.
        args = _args(out, device=device, batch_size=batch_size, lr=lr, weight_decay=weight_decay,
                     warmup_steps=int(warmup_ratio * total), seed=seed, max_steps=max_steps, optim=optim)
        trainer = RefTrainer(model=model, args=args, train_dataset=dataset)
        trainer.train()
    sync(device)
    return clock


def reference_predict(model, dataset, *, device: str, batch_size: int) -> tuple[np.ndarray, float]:
    """``Trainer.predict`` over the max-length dataset, fp32: (logits, seconds)."""
    from transformers import Trainer

    with tempfile.TemporaryDirectory(prefix="mtkd-bench-hf-") as out:
        args = _args(out, device=device, batch_size=32, lr=1e-4, weight_decay=0.0, warmup_steps=0, seed=0, max_steps=None,
                     eval_batch_size=batch_size)
        trainer = Trainer(model=model, args=args)
        if hasattr(dataset, "remove_columns"):
            dataset = dataset.remove_columns([c for c in ("idx", "labels") if c in dataset.column_names])
        else:
            dataset = [{k: v for k, v in row.items() if k not in ("idx", "labels")} for row in dataset]
        sync(device)
        t0 = time.perf_counter()
        pred = trainer.predict(dataset)
        sync(device)
        return np.asarray(pred.predictions), time.perf_counter() - t0
