"""Write the README's "Findings" sections from stored metrics, never by hand.

    python -m mtkd.findings               # after `dvc repro`: rewrite every section in README.md
    python -m mtkd.findings --check       # exit 1 if README.md disagrees with the metrics
    python -m mtkd.findings --keep vader5 # after a profile's `dvc repro` (in its own worktree or branch):
                                          # keep its metrics/, params.yaml and dvc.lock in results/vader5/

Each section sits between two HTML comments in README.md: the default run's between
``<!-- findings:start -->`` and ``<!-- findings:end -->`` (from ``metrics/``), a kept profile run's
between ``<!-- findings:<name>:start -->`` and ``<!-- findings:<name>:end -->`` (from
``results/<name>/``, its teachers' confidence set beside the default run's). A section holds one
table per task (teachers and students, test primary metric with its 95% interval over seeds ×
test groups) and the analysis' own reading sentences, so the README stays true after every run.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from mtkd.analysis import (agreement_sentence, comparisons_sentence, confidence_sentence, failures_sentence, gap_sentence,
                           headline_sentence)
from mtkd.analysis.readings import human_sentence, longer_sentence, transfer_sentence
from mtkd.errors import MtkdError

START, END = "<!-- findings:start -->", "<!-- findings:end -->"
RESULTS = Path("results")  # kept profile runs: results/<name>/
# What --keep copies from a profile's run: the analysis' metrics, and the params and lock that made them.
KEPT = ("summary.json", "comparisons.json", "agreement.json", "failures.json", "teacher_confidence.json",
        "results.csv", "params.yaml", "dvc.lock")


def markers(name: str | None = None) -> tuple[str, str]:
    """The comments around the default run's section (``name`` None) or a kept run's."""
    return (START, END) if name is None else (f"<!-- findings:{name}:start -->", f"<!-- findings:{name}:end -->")


def _fmt(v: float | None, metric: str) -> str:
    if v is None:
        return "–"
    return f"{100 * v:.2f}" if metric in ("accuracy", "f1", "macro_f1") else f"{v:.4f}"


def task_table(task: str, s: dict) -> str:
    m = s["primary_metric"]
    unit = f"{s.get('group_by', 'example')}s"
    rows = [f"| method | kind | test {m} | 95% interval (seeds × test {unit}) | rank |", "|---|---|---|---|---|"]
    for name, v in sorted(s["teachers"].items(), key=lambda kv: -kv[1]["test"]):
        rows.append(f"| teacher `{name}` | teacher | {_fmt(v['test'], m)} | | |")
    for name, v in sorted(s["strategies"].items(), key=lambda kv: kv[1]["rank"]):
        rows.append(f"| `{name}` | {v['kind']} | {_fmt(v['test'], m)} | "
                    f"[{_fmt(v['ci95_low'], m)}, {_fmt(v['ci95_high'], m)}] | {v['rank']} |")
    return "\n".join(rows)


def confidence_table(confidence: dict) -> str:
    """Each teacher's test confidence on each task side by side (the seed's mechanism: near-certain
    teachers carry little beyond the label). ``confidence``: task → teacher_confidence.json's block."""
    tasks = list(confidence)
    names = list(dict.fromkeys(t for c in confidence.values() for t in c if t != "all_teachers")) + ["all_teachers"]
    rows = ["| teacher | " + " | ".join(f"{task}: mean max prob | {task}: share > 0.95" for task in tasks) + " |",
            "|---|" + "---|---|" * len(tasks)]
    for name in names:
        cells = []
        for task in tasks:
            c = confidence[task].get(name, {}).get("test")
            cells += ([f"{c['mean_max_prob']:.3f}", f"{100 * c['high_confidence_share']:.1f}%"] if c else ["–", "–"])
        label = "all teachers pooled" if name == "all_teachers" else f"`{name}`"
        rows.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def _read_metrics(metrics_dir: Path) -> dict:
    def read(name):
        path = metrics_dir / name
        return json.loads(path.read_text()) if path.is_file() else {}

    return {key: read(f"{key}.json") for key in ("summary", "agreement", "failures", "teacher_confidence", "comparisons")}


def _epochs(run_dir: Path) -> float | None:
    import yaml

    params = run_dir / "params.yaml"
    return yaml.safe_load(params.read_text()).get("student", {}).get("num_train_epochs") if params.is_file() else None


def _longer_reading(task: str, s: dict, run_dir: Path, against: Path) -> str | None:
    """The longer-training sentence of ``task``: this run's students paired by seed with ``against``'s."""
    from mtkd.analysis.transfer import longer_training

    other = _read_metrics(against)["summary"].get(task, {})
    if "transfer" not in other:
        return None
    rows = longer_training(other["transfer"], s["transfer"])
    return longer_sentence(task, rows, s["primary_metric"], (_epochs(against), _epochs(run_dir)),
                           f"{RESULTS.as_posix()}/{against.name}/")


def render(metrics_dir: Path, name: str | None = None, beside: Path | None = None, against: Path | None = None) -> str:
    """One section: the default run's (``name`` None) or the kept run ``name``'s, whose teacher
    confidence is set beside the run in ``beside`` (the default run's metrics). ``against``: another
    kept run that differs from this one in the students' epochs only (``--keep NAME --against OTHER``):
    each student is paired with its own seed's there (what training longer moved)."""
    start, end = markers(name)
    m = _read_metrics(metrics_dir)
    summary, agreement, failures, confidence, comparisons = (
        m[k] for k in ("summary", "agreement", "failures", "teacher_confidence", "comparisons"))
    if not summary:
        return f"{start}\n_No results yet: run `dvc repro`, then `python -m mtkd.findings`._\n{end}"
    source = ("`metrics/` of the last `dvc repro`" if name is None else
              f"`{RESULTS.as_posix()}/{name}/`, kept from the `{name}` profile's `dvc repro` "
              f"(`python -m mtkd.findings --keep {name}`)")
    parts = [start, f"_Generated by `python -m mtkd.findings` from {source}; "
                    "students chosen on validation, reported on the held-out test split._", ""]
    for task, s in summary.items():
        groups = f", {s['n_groups']} {s.get('group_by', 'example')}s" if s.get("n_groups") else ""
        parts += [f"**{task}** ({s['n_test']} test examples{groups}, {s['n_seeds']} seeds):", "", task_table(task, s), "",
                  "_Ranks order point estimates; whether two students differ is what the comparisons below say "
                  "(Holm-adjusted over the whole matrix, `metrics/comparisons.json`)._", "",
                  f"- {headline_sentence(task, s)}"]
        if task in comparisons:
            parts.append(f"- {comparisons_sentence(task, comparisons[task])}")
        parts.append(f"- {gap_sentence(task, s)}")
        if task in agreement:
            parts.append(f"- {agreement_sentence(task, agreement[task])}")
        if task in failures:
            parts.append(f"- {failures_sentence(task, failures[task])}")
        if "human" in s:
            parts.append(f"- {human_sentence(task, s)}")
        if "transfer" in s:
            parts.append(f"- {transfer_sentence(task, s)}")
        if against is not None and "transfer" in s:
            if (reading := _longer_reading(task, s, metrics_dir, against)) is not None:
                parts.append(f"- {reading}")
        parts.append("")
    if confidence:
        parts += [f"Teacher confidence: {confidence_sentence(confidence)}", ""]
        if beside is not None and (other := _read_metrics(beside)["teacher_confidence"]):
            both = {**{t: c for t, c in other.items() if t not in confidence}, **confidence}
            parts += ["Teacher confidence on test, beside the default run's:", "", confidence_table(both), ""]
    limits = list(dict.fromkeys(limit for s in summary.values() for limit in s.get("limits", [])))
    if limits:
        parts += ["What this design cannot tell:", "", *(f"- {limit}" for limit in limits), ""]
    return "\n".join(parts + [end])


def update(readme: str, section: str, name: str | None = None) -> str:
    start, end = markers(name)
    pattern = re.compile(re.escape(start) + ".*?" + re.escape(end), re.S)
    if not pattern.search(readme):
        raise ValueError(f"README has no {start} … {end} markers")
    return pattern.sub(lambda _: section, readme)


def kept_runs(readme: str) -> list[str]:
    """The names of the kept runs whose sections README holds, in its order."""
    return re.findall(r"<!-- findings:([\w-]+):start -->", readme)


AGAINST = "against"  # results/<name>/against: the kept run this one is paired with (--against)


def keep(name: str, metrics_dir: Path, root: Path, against: str | None = None) -> Path:
    """Copy a profile run's analysis metrics, params.yaml and dvc.lock into ``root/results/<name>/``;
    ``against``: the kept run it differs from in the students' epochs only (recorded beside them)."""
    from mtkd.io import write_text

    if not re.fullmatch(r"[\w-]+", name):
        raise MtkdError(f"--keep: '{name}' is not a name (letters, digits, _ and -)")
    if against is not None and not (root / RESULTS / against / "summary.json").is_file():
        raise MtkdError(f"--against {against}: no kept run {RESULTS.as_posix()}/{against}/ to pair with")
    sources = [metrics_dir / f for f in KEPT if f.endswith((".json", ".csv"))] + [root / "params.yaml", root / "dvc.lock"]
    if missing := [str(p) for p in sources if not p.is_file()]:
        raise MtkdError(f"--keep {name}: {missing[0]} is missing (run the profile's `dvc repro` first)")
    dest = root / RESULTS / name
    for src in sources:  # read everything first: a missing file leaves results/<name>/ untouched
        write_text(dest / src.name, src.read_text())
    if against is not None:
        write_text(dest / AGAINST, against + "\n")
    return dest


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="README Findings from metrics/ and kept runs (results/<name>/)")
    ap.add_argument("--readme", default="README.md")
    ap.add_argument("--metrics", default="metrics", help="the default run's metrics")
    ap.add_argument("--check", action="store_true", help="exit 1 if any section disagrees with its metrics")
    ap.add_argument("--keep", metavar="NAME", help="keep ./metrics, params.yaml and dvc.lock as results/NAME/ first")
    ap.add_argument("--against", metavar="OTHER", help="with --keep: the kept run NAME differs from in the students' "
                                                         "epochs only; its section pairs each student with OTHER's")
    args = ap.parse_args(argv)
    readme = Path(args.readme)
    root = readme.resolve().parent
    text = readme.read_text()
    try:
        if args.against and not args.keep:
            raise MtkdError("--against goes with --keep NAME (the run kept now is paired with OTHER)")
        if args.keep:
            if args.keep not in kept_runs(text):
                raise MtkdError(f"--keep {args.keep}: {readme} has no {markers(args.keep)[0]} … {markers(args.keep)[1]} section")
            dest = keep(args.keep, Path(args.metrics), root, args.against)
            # README is not rewritten here: ./metrics is the profile's run, not the default's.
            print(f"kept {dest}; bring it to the default run's checkout and run: python -m mtkd.findings")
            return 0
        new = update(text, render(Path(args.metrics)))
        for name in kept_runs(text):
            kept = root / RESULTS / name
            if not kept.is_dir():
                raise MtkdError(f"{readme}: section '{name}' has no kept run ({kept} is missing)")
            other = (kept / AGAINST).read_text().strip() if (kept / AGAINST).is_file() else None
            if other is not None and not (root / RESULTS / other).is_dir():
                raise MtkdError(f"{kept / AGAINST}: names '{other}', which has no kept run")
            new = update(new, render(kept, name, beside=Path(args.metrics),
                                     against=None if other is None else root / RESULTS / other), name)
    except MtkdError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.check:
        if new != text:
            print(f"error: {readme} Findings are stale; run: python -m mtkd.findings", file=sys.stderr)
            return 1
        return 0
    from mtkd.io import write_text

    write_text(readme, new)
    print(f"updated Findings in {readme}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
