"""Accuracy must not pay for speed: the student with bucketing + bf16 vs without, over seeds.

Both arms run the library's :func:`mtkd.training.train` (strategy ``none``: cross-entropy,
one epoch, the default student and lr) on the same train subset and seeds; only
``bucketing`` and ``bf16`` differ. The slow arm pads each batch to its longest member and
runs fp32; padding a batch further (to max_length, the reference's way) cannot change
the outputs of a masked encoder, which the first check below confirms numerically.
The verdict: |difference of the means| ≤ the larger seed-to-seed standard deviation.
"""

from __future__ import annotations

import numpy as np
import torch

from bench.common import NUM_CLASSES, default_params, train_args
from bench.loop import subset


@torch.inference_mode()
def padding_equivalence(setup, n: int = 64) -> dict:
    """fp32 logits of the same examples padded to the batch's longest vs to max_length (64)."""
    from mtkd.models import forward_kwargs
    from mtkd.training import collate

    model = setup.build_student(seed=0).eval()
    enc = setup.encoded["validation"]
    idx = np.arange(min(n, len(enc)))
    keys = forward_kwargs(model)
    dyn = collate(enc, idx, setup.pad_id, keys)
    width = 64
    fixed = {k: torch.nn.functional.pad(v, (0, width - v.shape[1]), value=setup.pad_id if k == "input_ids" else 0)
             for k, v in dyn.items()}
    a, b = model(**dyn).logits, model(**fixed).logits
    return {"examples": int(len(idx)), "dynamic_width": int(dyn["input_ids"].shape[1]), "fixed_width": width,
            "max_abs_logit_diff": float((a - b).abs().max())}


def run(setup, opts) -> dict:
    from mtkd.metrics import classification_metrics
    from mtkd.training import predict, train

    seeds = [0, 1] if opts.quick else [0, 1, 2]
    n = None if opts.full else (1500 if opts.quick else 4000)
    enc = subset(setup.encoded["train"], n, seed=8)
    val, test = setup.encoded["validation"], setup.encoded["test"]
    args = train_args({**default_params()["student"], "model_name_or_path": setup.model_path}, num_train_epochs=1)
    # (bucketing, bf16, word embeddings frozen). "ours" is the default student (embeddings frozen);
    # the ablation trains them, as before `student.freeze_word_embeddings` became the default.
    arms = {"ours: bucketing + bf16 + word embeddings frozen": (True, True, True),
            "baseline: no bucketing, fp32, embeddings trained": (False, False, False),
            "ablation: ours with word embeddings trained": (True, True, False)}
    out = {"strategy": "none (cross-entropy)", "train_examples": len(enc), "seeds": seeds, "epochs": 1,
           "padding_equivalence": padding_equivalence(setup), "arms": {}}
    for name, (bucketing, bf16, freeze) in arms.items():
        rows = []
        for seed in seeds:
            model = setup.build_student(seed=seed)
            res = train(model, enc, val, args.model_copy(update={"freeze_word_embeddings": freeze}), seed=seed, pad_id=setup.pad_id, num_classes=NUM_CLASSES,
                        primary_metric="accuracy", bf16=bf16, bucketing=bucketing, desc="bench-accuracy")
            # Evaluate both arms the same way (fp32 inference) so that only training differs.
            test_acc = classification_metrics(predict(model, test, setup.pad_id, 128, False), test.labels, NUM_CLASSES)["accuracy"]
            val_acc = classification_metrics(predict(model, val, setup.pad_id, 128, False), val.labels, NUM_CLASSES)["accuracy"]
            rows.append({"seed": seed, "validation_accuracy": round(val_acc, 4), "test_accuracy": round(test_acc, 4),
                         "train_loss": res.history[-1]["train_loss"]})
            print(f"  accuracy {name} seed {seed}: val {val_acc:.4f} test {test_acc:.4f}", flush=True)
        summary = {}
        for m in ("validation_accuracy", "test_accuracy"):
            v = np.array([r[m] for r in rows])
            summary[m] = {"mean": round(float(v.mean()), 4), "std": round(float(v.std(ddof=1)) if len(v) > 1 else 0.0, 4)}
        out["arms"][name] = {"per_seed": rows, **summary}
    a, b, c = (out["arms"][k] for k in arms)
    out["verdict"], out["proposal_verdict"] = {}, {}
    for m in ("validation_accuracy", "test_accuracy"):
        for key, x in (("verdict", a), ("proposal_verdict", c)):
            diff = x[m]["mean"] - b[m]["mean"] if key == "verdict" else x[m]["mean"] - a[m]["mean"]
            spread = max(x[m]["std"], (b if key == "verdict" else a)[m]["std"])
            out[key][m] = {"difference_of_means": round(diff, 4), "max_seed_std": spread,
                           "within_seed_spread": bool(abs(diff) <= spread)}
    return out
