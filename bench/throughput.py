"""Throughput, ours vs the reference, on the same model init, data, batch size and lr.

* student distillation (3-layer DistilBERT from MiniLM-L6, batch 32, lr 1e-4, T=6, α=0.7),
  with an ablation of our loop (dynamic padding → + length bucketing → + bf16 autocast), the
  other ``student.freeze_word_embeddings`` setting, ``runtime.compact_vocabulary`` and batch 64;
* teacher fine-tuning (MiniLM-L6, batch 32, lr 5e-5, cross-entropy);
* logit extraction (the MiniLM-L6 teacher over the train split, batch 128).

The teacher targets of the student runs are a fixed fusion of seeded random logits: their
values cannot change a step's cost, and both sides index the same tensor per batch.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from bench.common import NUM_CLASSES, StepClock, TEACHERS, default_params, guarded, sync, train_args
from bench.loop import library_train, subset
from bench.mfu import shape, utilisation
from bench.reference import max_length_dataset, reference_predict, reference_train

T, ALPHA = 6.0, 0.7
EMB_ALT = "ablation: the other student.freeze_word_embeddings setting"
COMPACT = "ablation: + runtime.compact_vocabulary (embedding of the task's rows only)"
BATCH64 = "ablation: batch 64"
NO_DROPOUT = "bound: + no dropout masks outside attention (embeddings, FFN, head at p = 0)"
BF16_WEIGHTS = "bound: + weights kept in bf16 (model.to(bfloat16), no autocast casts, no fp32 master copy)"
BATCH64_COMPACT = "ablation: batch 64, + runtime.compact_vocabulary"
ALL_ROUTES = "bound: every route at once (compact vocabulary, batch 64, weights in bf16, no dropout masks outside attention)"
COMPILED = "proposal: + torch.compile (TorchInductor, dynamic shapes; compiled during the warm-up steps)"


def _drop_masks(model):
    """Set every dropout outside attention to p = 0; returns the undo.

    Attention's own dropout stays: at p = 0 SDPA switches to another CPU kernel whose backward is
    slower here, which would mix a kernel change into what the masks cost.
    """
    mods = [m for name, m in model.named_modules() if isinstance(m, torch.nn.Dropout) and "attention" not in name]
    old = [m.p for m in mods]
    for m in mods:
        m.p = 0.0
    return lambda: [setattr(m, "p", p) for m, p in zip(mods, old)]


def _compiled(model):
    """``model.compile(dynamic=True)`` (TorchInductor; sequence lengths vary under bucketing); returns the undo."""
    model.compile(dynamic=True)
    return lambda: (setattr(model, "_compiled_call_impl", None), torch._dynamo.reset())


def _bf16_weights(model):
    """Cast the model to bf16 (trained without autocast); returns the undo (back to fp32)."""
    model.to(torch.bfloat16)
    return lambda: model.float()


def _both(model):
    """:func:`_drop_masks` and :func:`_bf16_weights` together; returns the undo of both."""
    undo_masks, undo_cast = _drop_masks(model), _bf16_weights(model)
    return lambda: (undo_cast(), undo_masks())


def synthetic_teacher_logits(n: int, k: int = len(TEACHERS), seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return 2.0 * torch.randn(k, n, NUM_CLASSES, generator=g, dtype=torch.float64)


def single_targets(z: torch.Tensor) -> torch.Tensor:
    from mtkd.fusion import FusionContext, fuse

    return fuse(f"single_{TEACHERS[0]}", z, T, FusionContext(TEACHERS)).float()


def _frame_rows(setup, enc):
    """The train frame's rows of a subset (same order), for the reference dataset."""
    pos = {i: n for n, i in enumerate(setup.frames["train"]["id"].astype(str))}
    return setup.frames["train"].iloc[[pos[i] for i in enc.ids]].reset_index(drop=True)


def _sizes(opts) -> tuple[int | None, int, int]:
    """(examples or None for the full split, warm-up steps, timed steps)."""
    if opts.full:
        return None, opts.warmup, 0
    return (opts.warmup + opts.steps) * 32, opts.warmup, opts.steps


def _ours(setup, model, enc, *, opts, seed, bucketing, amp, objective, args, compact_vocabulary=False):
    """The library's own loop (:func:`mtkd.training.train`, on the library's device), timed per step."""
    clock = StepClock(opts.warmup, opts.device)
    library_train(setup, model, enc, args, seed=seed, bucketing=bucketing, bf16=(amp == "bf16"), objective=objective,
                  clock=clock, compact_vocabulary=compact_vocabulary)
    return clock


def _row(name, clock, sh, peaks, dtype):
    return {"name": name, **clock.summary(), **utilisation(sh, clock, peaks, dtype)}


def student(setup, opts, peaks) -> dict:
    n, warm, steps = _sizes(opts)
    enc = subset(setup.encoded["train"], n, seed=1)
    # The batch-64 row takes as many steps as the others: twice the examples (its own subset).
    enc64 = subset(setup.encoded["train"], None if n is None else 2 * n, seed=1)
    targets = single_targets(synthetic_teacher_logits(max(len(enc), len(enc64))))  # indexed by position in either
    scfg = default_params()["student"]
    args = train_args({**scfg, "model_name_or_path": setup.model_path}, num_train_epochs=1)
    lr = args.learning_rate
    dev = opts.device
    targets_dev = targets.to(dev)

    def objective(logits, hidden, idx, y, progress):
        from mtkd.losses import kd_loss

        return kd_loss(logits, targets_dev[torch.as_tensor(idx, device=dev)], y, T, ALPHA)

    base = setup.build_student(seed=0)
    init = {k: v.clone() for k, v in base.state_dict().items()}
    sh = shape(base)
    runs, clocks = {}, {}
    # (name, bucketing, autocast, changes to the student params, runtime.compact_vocabulary, model edit).
    # "ours" is the library's loop with the default student params and the full vocabulary. No fp16
    # row: the library's loop autocasts to bf16 or not at all. A model edit returns its own undo.
    variants = [("ours: bucketing + bf16 autocast", True, "bf16", {}, False, None)]
    if opts.ablation:
        variants += [("ablation: dynamic padding, fp32", False, "fp32", {}, False, None),
                     ("ablation: + length bucketing, fp32", True, "fp32", {}, False, None),
                     ("ablation: dynamic padding + bf16", False, "bf16", {}, False, None)]
    # The ablation flips student.freeze_word_embeddings (default false: it freezes the word embeddings).
    variants += [(EMB_ALT, True, "bf16", {"freeze_word_embeddings": not args.freeze_word_embeddings}, False, None),
                 (COMPACT, True, "bf16", {}, True, None),
                 (BATCH64, True, "bf16", {"per_device_train_batch_size": 64}, False, None)]
    if opts.ablation and dev == "cpu":
        # Upper bounds of two of issue #14's candidate routes, on top of what the stages train
        # (compact vocabulary): cheaper dropout masks can save at most what no masks save, and a bf16
        # weight copy for the forward at most what never casting (and never keeping fp32 weights) saves.
        variants += [(NO_DROPOUT, True, "bf16", {}, True, _drop_masks),
                     (BF16_WEIGHTS, True, "fp32", {}, True, _bf16_weights),
                     (BATCH64_COMPACT, True, "bf16", {"per_device_train_batch_size": 64}, True, None),
                     (ALL_ROUTES, True, "fp32", {"per_device_train_batch_size": 64}, True, _both),
                     (COMPILED, True, "bf16", {}, True, _compiled)]
    emb = base.get_input_embeddings().weight
    for name, bucketing, amp, changes, compact, edit in variants:
        run_args = args.model_copy(update=changes) if changes else args
        run_enc = enc64 if run_args.per_device_train_batch_size == 64 else enc

        def go(run_args=run_args, run_enc=run_enc, bucketing=bucketing, amp=amp, compact=compact, edit=edit):
            base.load_state_dict(init)
            emb.requires_grad_(True)
            undo = edit(base) if edit else None
            try:
                return _ours(setup, base, run_enc, opts=opts, seed=0, bucketing=bucketing, amp=amp, objective=objective,
                             args=run_args, compact_vocabulary=compact)
            finally:
                if undo:
                    undo()
                emb.requires_grad_(True)
        try:
            clock = clocks[name] = guarded(f"student {name}", go)
        except Exception as exc:  # a proposal that cannot run here (e.g. Inductor without a C++ compiler) is a row, not a lost section
            if not name.startswith("proposal:"):
                raise
            runs[name] = {"name": name, "error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"}
            print(f"  student {name}: failed ({runs[name]['error']})", flush=True)
            continue
        # A bf16 model does bf16 arithmetic without autocast: its MFU is against the bf16 peak too.
        runs[name] = _row(name, clock, sh, peaks, "bf16" if amp != "fp32" or edit in (_bf16_weights, _both) else "fp32")
        if amp == "bf16" and "fp32" in peaks:
            runs[name].update({k: v for k, v in utilisation(sh, clock, peaks, "fp32").items() if k.startswith(("mfu", "hfu"))})
        print(f"  student {name}: {runs[name]['examples_per_s']} ex/s", flush=True)

    # The reference: HF Trainer, max_length padding, fp32, teacher targets looked up per batch.
    ds = max_length_dataset(setup.tokenizer, _frame_rows(setup, enc), args.max_seq_length)

    def go_ref():
        base.load_state_dict(init)
        clock = StepClock(warm, dev)
        return reference_train(base.to(dev), ds, device=dev, batch_size=32, lr=lr, weight_decay=args.weight_decay,
                               warmup_ratio=args.warmup_ratio, seed=0, clock=clock, targets=targets, T=T, alpha=ALPHA,
                               max_steps=None if opts.full else warm + steps)
    clock = guarded("student reference", go_ref)
    ref = _row("reference: HF Trainer, max_length=64, fp32", clock, sh, peaks, "fp32")
    print(f"  student reference: {ref['examples_per_s']} ex/s", flush=True)
    for r in runs.values():
        if "error" in r:
            continue
        r["ratio_vs_reference"] = round(r["examples_per_s"] / ref["examples_per_s"], 3)
    # The pre-torch-2.8 HF default optimizer (unfused AdamW): what the 33.5 ex/s reference most likely ran.
    def go_unfused():
        base.load_state_dict(init)
        return reference_train(base.to(dev), ds, device=dev, batch_size=32, lr=lr, weight_decay=args.weight_decay,
                               warmup_ratio=args.warmup_ratio, seed=0, clock=StepClock(warm, dev), targets=targets, T=T,
                               alpha=ALPHA, max_steps=None if opts.full else warm + steps, optim="adamw_torch")
    unfused = _row("reference variant: optim=adamw_torch (unfused)", guarded("student reference unfused", go_unfused),
                   sh, peaks, "fp32")
    print(f"  student reference, unfused AdamW: {unfused['examples_per_s']} ex/s", flush=True)
    ours_main = runs["ours: bucketing + bf16 autocast"]
    unfused["ours_ratio_vs_this"] = round(ours_main["examples_per_s"] / unfused["examples_per_s"], 3)
    bound = matmul_bounds(base, {name: clocks[name] for name in (COMPACT, BATCH64_COMPACT) if name in clocks}, ref["examples_per_s"],
                          dev, amp_dtype=torch.bfloat16, quick=opts.quick)
    for name, b in bound.items():
        b["ours"] = runs[name]["examples_per_s"]
        b["ours_share_of_bound"] = round(runs[name]["examples_per_s"] / b["examples_per_s"], 3)
    return {"matmul_only_bound": bound, "reference_unfused_adamw": unfused, "model": "3-layer DistilBERT from MiniLM-L6 layers 0/2/4", "shape": sh, "batch_size": 32, "learning_rate": lr,
            "examples": len(enc), "reference": ref, "ours": runs}


def matmul_bounds(model, clocks: dict, ref_rate: float, device: str, *, amp_dtype, quick: bool) -> dict:
    """Per timed run: the rate of a step doing only its transformer blocks' linear products (bench.mfu).

    Rows are the run's mean *real* tokens per timed step (no padding at all), so the bound holds
    for any loop over these batches; its ratio to the reference is the most that run's batch
    size can give on this machine without fewer FLOPs.
    """
    from bench.mfu import block_linear_shapes, matmul_only_rate

    shapes = block_linear_shapes(model)
    out = {}
    for name, clock in clocks.items():
        sl, _ = clock.window()
        steps = max(1, len(clock.n[sl]))
        tokens = round(sum(clock.tok[sl]) / steps)
        examples = round(sum(clock.n[sl]) / steps)
        row = matmul_only_rate(shapes, tokens, examples, device, amp_dtype, seconds=0.7 if quick else 1.5)
        row["ratio_vs_reference"] = round(row["examples_per_s"] / ref_rate, 3)
        out[name] = row
    return out


def teacher(setup, opts, peaks) -> dict:
    n, warm, steps = _sizes(opts)
    enc = subset(setup.encoded["train"], n, seed=2)
    tcfg = default_params()["teachers"]["minilm_l6"]
    args = train_args({**tcfg, "model_name_or_path": setup.model_path}, num_train_epochs=1)
    dev = opts.device
    ce = lambda logits, hidden, idx, y, progress: torch.nn.functional.cross_entropy(logits.float(), y)  # noqa: E731
    base = setup.build_teacher()
    init = {k: v.clone() for k, v in base.state_dict().items()}
    sh = shape(base)
    clock = guarded("teacher ours", lambda: (base.load_state_dict(init), _ours(
        setup, base, enc, opts=opts, seed=0, bucketing=True, amp="bf16", objective=ce, args=args))[1])
    ours = _row("ours: bucketing + bf16 autocast", clock, sh, peaks, "bf16")
    print(f"  teacher ours: {ours['examples_per_s']} ex/s", flush=True)
    ds = max_length_dataset(setup.tokenizer, _frame_rows(setup, enc), args.max_seq_length)

    def go_ref():
        base.load_state_dict(init)
        return reference_train(base.to(dev), ds, device=dev, batch_size=32, lr=args.learning_rate,
                               weight_decay=args.weight_decay, warmup_ratio=args.warmup_ratio, seed=0,
                               clock=StepClock(warm, dev), targets=None, max_steps=None if opts.full else warm + steps)
    clock = guarded("teacher reference", go_ref)
    ref = _row("reference: HF Trainer, max_length=64, fp32", clock, sh, peaks, "fp32")
    print(f"  teacher reference: {ref['examples_per_s']} ex/s", flush=True)
    ours["ratio_vs_reference"] = round(ours["examples_per_s"] / ref["examples_per_s"], 3)
    return {"model": "MiniLM-L6 (all-MiniLM-L6-v2) + fresh head", "shape": sh, "batch_size": 32,
            "learning_rate": args.learning_rate, "examples": len(enc), "reference": ref, "ours": ours}


def extraction(setup, opts, peaks) -> dict:
    """Logits of the MiniLM-L6 teacher over (part of) the train split: ours vs max_length fp32 ``Trainer.predict``."""
    from mtkd.training import encode, predict

    n = None if opts.full else opts.extract_examples
    enc_all = subset(setup.encoded["train"], n, seed=3)
    frame = _frame_rows(setup, enc_all)
    dev = opts.device
    model = setup.build_teacher(checkpoint=getattr(opts, "teacher", None)).to(dev)
    sh = shape(model)
    lengths = enc_all.lengths.astype(np.float64)
    flops = (2 * sh["N_layers"] * lengths.sum() + 4 * sh["L"] * (lengths ** 2).sum() * sh["H"]
             + 2 * sh["params_head"] * len(lengths))

    t0 = time.perf_counter()
    enc = encode(setup.tokenizer, frame, 64)
    t_tok = time.perf_counter() - t0
    warm = subset(enc, 256, seed=4)
    def go():  # the library's predict, on the library's device (mtkd.engine)
        predict(model, warm, setup.pad_id, 128, True)
        sync(dev)
        t0 = time.perf_counter()
        logits = predict(model, enc, setup.pad_id, 128, True)
        sync(dev)
        return logits, time.perf_counter() - t0
    ours_logits, t_ours = guarded("extraction ours", go)

    t0 = time.perf_counter()
    ds = max_length_dataset(setup.tokenizer, frame, 64, with_index=False)
    t_ref_tok = time.perf_counter() - t0
    def go_ref():
        reference_predict(model, ds.select(range(256)) if hasattr(ds, "select") else ds[:256], device=dev, batch_size=128)
        return reference_predict(model, ds, device=dev, batch_size=128)
    ref_logits, t_ref = guarded("extraction reference", go_ref)
    padded = 64.0 * len(lengths)
    ref_hw = 2 * sh["N_layers"] * padded + 4 * sh["L"] * 64.0 * padded * sh["H"] + 2 * sh["params_head"] * len(lengths)
    # Proposals for the missed target: a wider batch, and the weights cast to bf16 once instead of per batch by autocast.
    proposals = {}  # name -> (seconds, logits)
    if dev == "cpu":
        def timed_predict(m, batch_size, autocast):  # warm, then time one pass over the split
            predict(m, warm, setup.pad_id, batch_size, autocast)
            t0 = time.perf_counter()
            return predict(m, enc, setup.pad_id, batch_size, autocast), time.perf_counter() - t0
        logits, t = guarded("extraction proposal batch 256", lambda: timed_predict(model, 256, True))
        proposals["proposal: batch 256"] = t, logits
        import copy

        m16 = copy.deepcopy(model).to(torch.bfloat16)

        logits, t = guarded("extraction proposal bf16 weights", lambda: timed_predict(m16, 128, False))
        proposals["proposal: model.to(bfloat16), no autocast"] = t, logits
        del m16
        # int8 linear layers (VNNI on AVX-512 CPUs): weights quantised once, activations per batch.
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch.ao's notice that eager quantisation moves to torchao
            q8 = torch.ao.quantization.quantize_dynamic(copy.deepcopy(model), {torch.nn.Linear}, dtype=torch.qint8)
            logits, t = guarded("extraction proposal int8", lambda: timed_predict(q8, 128, False))
        proposals["proposal: int8 linear layers (torch quantize_dynamic), no autocast"] = t, logits
        del q8
    diff = np.abs(ours_logits - ref_logits)
    # The most any loop can give here without fewer FLOPs: a batch of 128 that did only its linear
    # layers' forward products over its real tokens (bench.mfu), against the reference's rate.
    from bench.mfu import block_linear_shapes, matmul_only_rate

    batch = min(128, len(enc))
    bound = matmul_only_rate(block_linear_shapes(model), round(float(lengths.mean()) * batch), batch, dev,
                             torch.bfloat16, seconds=0.7 if opts.quick else 1.5, backward=False)
    bound["ratio_vs_reference"] = round(bound["examples_per_s"] * t_ref / len(enc), 3)
    out = {"matmul_only_bound": bound,
        "model": "MiniLM-L6 teacher" + (f" ({opts.teacher})" if getattr(opts, "teacher", None) else " (fresh head)"),
        "examples": len(enc), "batch_size": 128,
        "ours": {"name": "ours: predict(), longest-first dynamic padding + bf16", "seconds": round(t_ours, 3),
                 "examples_per_s": round(len(enc) / t_ours, 1), "tokenise_s": round(t_tok, 3),
                 "model_tflops": round(flops / t_ours / 1e12, 4), "mfu_vs_bf16": round(flops / t_ours / peaks["bf16"], 4)},
        "reference": {"name": "reference: Trainer.predict, max_length=64, fp32", "seconds": round(t_ref, 3),
                      "examples_per_s": round(len(enc) / t_ref, 1), "tokenise_s": round(t_ref_tok, 3),
                      "model_tflops": round(flops / t_ref / 1e12, 4), "mfu_vs_fp32": round(flops / t_ref / peaks["fp32"], 4),
                      "hfu_padded_vs_fp32": round(ref_hw / t_ref / peaks["fp32"], 4)},
        "agreement": {"max_abs_logit_diff": round(float(diff.max()), 5), "mean_abs_logit_diff": round(float(diff.mean()), 5),
                      "argmax_agreement": round(float((ours_logits.argmax(1) == ref_logits.argmax(1)).mean()), 5)},
    }
    out["ours"]["ratio_vs_reference"] = round(out["ours"]["examples_per_s"] / out["reference"]["examples_per_s"], 3)
    for name, (t, logits) in proposals.items():
        out[name] = {"seconds": round(t, 3), "examples_per_s": round(len(enc) / t, 1),
                     "ratio_vs_reference": round(t_ref / t, 3), "mfu_vs_bf16": round(flops / t / peaks["bf16"], 4),
                     "max_abs_logit_diff_vs_reference": round(float(np.abs(logits - ref_logits).max()), 5),
                     "argmax_agreement_vs_reference": round(float((logits.argmax(1) == ref_logits.argmax(1)).mean()), 5)}
    print(f"  extraction ours {out['ours']['examples_per_s']} ex/s, reference {out['reference']['examples_per_s']} ex/s",
          flush=True)
    return out
