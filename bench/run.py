"""Benchmark: is the pipeline fast? (issue #6)  — ``python -m bench.run [--quick] [--device cpu|cuda] [--pipeline]``

Measures, in one run, on the same model, data and batch size: our loop vs the reference
(HF Trainer, max_length padding, fp32) for student distillation, teacher fine-tuning and
logit extraction; MFU against the measured matmul peak; per-step fusion overhead of each
strategy; the per-phase profile of a student step; the peak RSS of every stage (tiny
profile; the default one with --pipeline); `dvc repro` wall times (--pipeline); and the
accuracy check that bucketing + bf16 cost nothing; with ``--only queue`` (or --pipeline), queued experiments
under `dvc queue start -j N` × M threads (bench/queue_bench.py). Writes ``bench/results/<device>.json``
and ``bench/results/<device>.md``. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from pathlib import Path

from bench.common import ROOT, ContentionMonitor, machine, make_setup, self_peak_rss_mb, set_env, wait_idle

SECTIONS = ["throughput", "mfu", "fusion", "profile", "accuracy", "rss", "pipeline", "queue"]
SLOW = {"pipeline", "queue"}  # only with --pipeline or --only


def parse(argv=None):
    ap = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer steps and seeds (a few minutes on 2 CPU cores)")
    ap.add_argument("--full", action="store_true", help="whole epochs / the whole train split instead of fixed step counts")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--pipeline", action="store_true",
                    help="also time the default `dvc repro` (~20 min on 2 cores), a no-op repro and `dvc exp run -S distill.T=9`"
                         " in a temporary copy, with the peak RSS of every default stage; and the queue section")
    ap.add_argument("--only", default=None, help=f"comma-separated sections ({', '.join(SECTIONS)})")
    ap.add_argument("--skip", default="", help="comma-separated sections to skip")
    ap.add_argument("--data-dir", default=None, help="an already prepared data dir (with rt/); default: prepare into a temp dir")
    ap.add_argument("--threads", type=int, default=2, help="torch threads on the CPU (the stages' runtime.num_threads)")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results"), help="where <device>.json / .md go")
    ap.add_argument("--tag", default=None, help="file name stem (default: the device, e.g. cpu, cuda-h100)")
    ap.add_argument("--wait-idle", type=float, default=0.0, metavar="S",
                    help="before each section, wait (at most S seconds) until no other stage or test process has run for 10 s")
    ap.add_argument("--keep", action="store_true",
                    help="start from the existing <out>/<tag>.json and replace only the sections run now")
    ap.add_argument("--queue-configs", default=None, metavar="JxT,...",
                    help="queue section: `dvc queue start -j J` with MTKD_NUM_THREADS=T, each (default 1x2,2x1,2x2)")
    ap.add_argument("--queue-examples", type=int, default=None, metavar="N",
                    help="queue section: data.max_examples of the queued configuration (default 8000; quick 400, tiny profile)")
    ap.add_argument("--teacher", default=None, metavar="DIR",
                    help="a fine-tuned teacher checkpoint for the extraction section (e.g. models/teachers/minilm_l6-rt after "
                         "`dvc repro`), so logit and argmax agreement are measured on a trained head; default: the MiniLM-L6 "
                         "asset with a fresh head")
    ap.add_argument("--steps", type=int, default=None, help="timed steps per run (default 60, quick 20)")
    ap.add_argument("--warmup", type=int, default=None, help="warm-up steps per run (default 5, quick 3)")
    opts = ap.parse_args(argv)
    opts.parts = None
    if opts.only:  # `--only extraction` (or student, teacher): one part of the throughput section
        parts = [p for p in opts.only.split(",") if p in ("student", "teacher", "extraction")]
        if parts:
            opts.parts = parts
            opts.only = ",".join([p for p in opts.only.split(",") if p not in parts] + ["throughput"])
    opts.steps_explicit = opts.steps is not None  # an explicit --steps also overrides a section's own quick count
    opts.warmup = opts.warmup if opts.warmup is not None else (3 if opts.quick else 5)
    opts.steps = opts.steps if opts.steps is not None else (20 if opts.quick else 60)
    opts.extract_examples = 1024 if opts.quick else 4096
    opts.ablation = True
    only = set(opts.only.split(",")) if opts.only else set(SECTIONS) - (SLOW if not opts.pipeline else set())
    if opts.device != "cpu":
        only -= {"rss", "pipeline", "accuracy", "queue"}  # stages and dvc run on the CPU
    opts.sections = [s for s in SECTIONS if s in only and s not in set(opts.skip.split(","))]
    return opts


def main(argv=None) -> int:
    set_env()
    opts = parse(argv)
    if opts.device == "cpu":
        # The library trains and predicts on CUDA whenever torch sees it (mtkd.engine): hide it
        # (before torch loads), so that a CPU bench on a GPU machine times the CPU.
        import os

        os.environ["CUDA_VISIBLE_DEVICES"] = ""
    import torch

    from mtkd.io import write_json, write_text

    if opts.device == "cpu":
        from types import SimpleNamespace

        from mtkd.cli import set_threads

        set_threads(SimpleNamespace(num_threads=opts.threads))  # as every stage does
    elif not torch.cuda.is_available():
        print("error: --device cuda but torch sees no CUDA device", file=sys.stderr)
        return 2
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()

    from bench import mfu, report

    stem = opts.tag or ("cpu" if opts.device == "cpu" else "cuda-" + torch.cuda.get_device_name(0).split()[1].lower())
    results = {"bench": "mtkd issue #6", "command": "python -m bench.run " + " ".join(argv if argv is not None else sys.argv[1:]),
               "mode": "full" if opts.full else ("quick" if opts.quick else "default"),
               "steps": {"warmup": opts.warmup, "timed": opts.steps}, "machine": machine(opts.device),
               "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "contention": {}, "sections": {}, "errors": {}}
    out_dir = Path(opts.out)
    t_start = time.perf_counter()
    if opts.keep and (out_dir / f"{stem}.json").is_file():
        old = json.loads((out_dir / f"{stem}.json").read_text())
        for key in ("sections", "contention", "section_seconds", "errors"):
            results[key] = dict(old.get(key, {}))
        for section in opts.sections:  # a section run now replaces its old error
            results["errors"].pop(section, None)
        results["command"] = old.get("command", "") + " ; " + results["command"]

    def save():
        results["elapsed_s"] = round(time.perf_counter() - t_start, 1)
        results["bench_peak_rss_mb"] = round(self_peak_rss_mb(), 1)
        results["targets"] = report.targets(results)
        write_json(out_dir / f"{stem}.json", results)
        write_text(out_dir / f"{stem}.md", report.markdown(results))

    from bench.common import GUARD

    GUARD["max_wait"] = opts.wait_idle
    results["runs_contention"] = GUARD["log"]
    print(f"bench: device {opts.device}, sections {', '.join(opts.sections)}", flush=True)
    setup = None
    peaks = None
    for section in opts.sections:
        if opts.wait_idle:
            waited = wait_idle(opts.wait_idle)
            print(f"[{section}] waited {waited:.0f} s for an idle machine", flush=True)
        print(f"[{section}]", flush=True)
        t0 = time.perf_counter()
        monitor = ContentionMonitor().__enter__()
        try:
            if section in ("throughput", "mfu", "fusion", "profile", "accuracy") and setup is None:
                setup = make_setup(opts.device, opts.data_dir)
            if peaks is None and section in ("throughput", "mfu", "fusion", "profile"):
                peaks = mfu.peaks(opts.device, opts.quick)
                results["sections"]["peak"] = {k: round(v / 1e12, 4) for k, v in peaks.items()}
                results["sections"]["peak"]["unit"] = "TFLOP/s (best matmul loop)"
            if section == "throughput":
                from bench import throughput

                parts = opts.parts or ["student", "teacher", "extraction"]
                for part in parts:
                    results["sections"][part] = getattr(throughput, part)(setup, opts, peaks)
                    save()
            elif section == "mfu":
                results["sections"]["mfu"] = {"formula": mfu.FORMULA, "peak_matmul_n": 8192 if opts.device == "cuda" else 2048}
            elif section == "fusion":
                from bench import fusion_bench

                results["sections"]["fusion"] = fusion_bench.run(setup, opts)
            elif section == "profile":
                from bench import profile_step

                results["sections"]["profile"] = profile_step.run(setup, opts, peaks)
            elif section == "rss":
                from bench import pipeline_bench

                results["sections"]["rss_tiny"] = pipeline_bench.stage_rss(profile="tiny")
            elif section == "pipeline":
                from bench import pipeline_bench

                results["sections"]["pipeline"] = pipeline_bench.dvc_times()
            elif section == "queue":
                from bench import queue_bench

                results["sections"]["queue"] = queue_bench.run(opts)
            elif section == "accuracy":
                from bench import accuracy

                results["sections"]["accuracy"] = accuracy.run(setup, opts)
        except Exception as exc:  # one broken section must not lose the others
            traceback.print_exc()
            results["errors"][section] = f"{type(exc).__name__}: {exc}"
        monitor.__exit__(None, None, None)
        results["contention"][section] = monitor.report()
        if monitor.busy:
            print(f"warning: other stage/test processes ran during {monitor.report()['contended_fraction']:.0%} of"
                  f" '{section}': its timings are contended", flush=True)
        results.setdefault("section_seconds", {})[section] = round(time.perf_counter() - t0, 1)
        save()
    print(report.markdown(results))
    print(f"wrote {out_dir / (stem + '.json')} and {out_dir / (stem + '.md')}")
    return 1 if results["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
