from pathlib import Path

import pytest

from mtkd.findings import END, START, main, task_table, update

ROOT = Path(__file__).resolve().parents[1]


def test_readme_findings_match_committed_metrics():
    """The README's numbers are the ones in metrics/: regenerate with `python -m mtkd.findings`."""
    assert main(["--check", "--readme", str(ROOT / "README.md"), "--metrics", str(ROOT / "metrics")]) == 0


def test_update_replaces_only_the_marked_section():
    text = f"intro\n{START}\nold\n{END}\noutro\n"
    assert update(text, f"{START}\nnew\n{END}") == f"intro\n{START}\nnew\n{END}\noutro\n"
    with pytest.raises(ValueError):
        update("no markers", "x")


def test_task_table_orders_by_rank_and_formats_percent():
    s = {"primary_metric": "accuracy", "teachers": {"a": {"test": 0.9}},
         "strategies": {"none": {"kind": "baseline", "test": 0.8, "ci95_low": 0.79, "ci95_high": 0.81, "rank": 2},
                        "average": {"kind": "multi", "test": 0.85, "ci95_low": 0.84, "ci95_high": 0.86, "rank": 1}}}
    lines = task_table("rt", s).splitlines()
    assert lines[2] == "| teacher `a` | teacher | 90.00 | | |"
    assert lines[3] == "| `average` | multi | 85.00 | [84.00, 86.00] | 1 |"
    assert lines[4].startswith("| `none` | baseline | 80.00")


def _kept_readme(tmp_path, name="fine"):
    """A README with the default section and a kept run's, and that run kept under results/<name>/."""
    import shutil

    from mtkd.findings import KEPT, markers

    kept = tmp_path / "results" / name
    kept.mkdir(parents=True)
    for f in KEPT:
        src = ROOT / "metrics" / f if f.endswith((".json", ".csv")) else ROOT / f
        shutil.copy(src, kept / f)
    start, end = markers(name)
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n{START}\n{END}\n## kept\n{start}\nold\n{end}\n")
    return readme, kept


def test_confidence_table_sets_tasks_side_by_side():
    from mtkd.findings import confidence_table

    c = lambda p, share: {"test": {"mean_max_prob": p, "mean_entropy": 0.1, "high_confidence_share": share}}
    table = confidence_table({"rt": {"a": c(0.9, 0.5), "all_teachers": c(0.8, 0.25)},
                              "fine": {"a": c(0.61, 0.0312), "h": c(0.7, 0.0), "all_teachers": c(0.65, 0.01)}})
    assert table.splitlines() == [
        "| teacher | rt: mean max prob | rt: share > 0.95 | fine: mean max prob | fine: share > 0.95 |",
        "|---|---|---|---|---|",
        "| `a` | 0.900 | 50.0% | 0.610 | 3.1% |",
        "| `h` | – | – | 0.700 | 0.0% |",  # a teacher of one task only
        "| all teachers pooled | 0.800 | 25.0% | 0.650 | 1.0% |"]


def test_every_section_is_regenerated_and_checked(tmp_path, monkeypatch):
    import json

    import mtkd.findings as F

    readme, kept = _kept_readme(tmp_path)
    summary = json.loads((kept / "summary.json").read_text())
    summary["rt"]["human"] = {}  # a task with rater data gets its sentence against the raters
    summary["rt"]["transfer"] = {}  # a run with +transfer students, its fidelity against generalisation
    (kept / "summary.json").write_text(json.dumps(summary))
    monkeypatch.setattr(F, "human_sentence", lambda task, s: f"HUMAN {task}")
    monkeypatch.setattr(F, "transfer_sentence", lambda task, s: f"TRANSFER {task}")
    args = ["--readme", str(readme), "--metrics", str(ROOT / "metrics")]
    assert main(["--check", *args]) == 1  # both sections stale
    assert main(args) == 0
    text = readme.read_text()
    default, fine = text.split("## kept")
    assert "HUMAN" not in default and "- HUMAN rt" in fine and "- TRANSFER rt" in fine
    assert "kept from the `fine` profile's `dvc repro`" in fine and "`metrics/` of the last `dvc repro`" in default
    assert "Teacher confidence on test, beside the default run's:" in fine
    assert main(["--check", *args]) == 0
    readme.write_text(text.replace("- HUMAN rt", "- edited by hand"))
    assert main(["--check", *args]) == 1


def test_keep_copies_a_profile_run_and_refuses_what_it_cannot_keep(tmp_path, capsys):
    import shutil

    readme, _ = _kept_readme(tmp_path)
    run = tmp_path / "run"  # a profile's worktree after its dvc repro
    shutil.copytree(ROOT / "metrics", run / "metrics")
    for f in ("params.yaml", "dvc.lock"):
        (run / f).write_text(f"{f} of the profile\n")
    shutil.copy(readme, run / "README.md")
    (run / "results").mkdir()
    before = readme.read_text()
    assert main(["--readme", str(run / "README.md"), "--metrics", str(run / "metrics"), "--keep", "fine"]) == 0
    assert (run / "results/fine/dvc.lock").read_text() == "dvc.lock of the profile\n"
    assert (run / "results/fine/summary.json").read_bytes() == (ROOT / "metrics/summary.json").read_bytes()
    assert (run / "README.md").read_text() == before  # the default section is not rewritten from the profile's run
    capsys.readouterr()
    assert main(["--readme", str(run / "README.md"), "--metrics", str(run / "metrics"), "--keep", "other"]) == 2
    assert "has no <!-- findings:other:start -->" in capsys.readouterr().err
    (run / "metrics/comparisons.json").unlink()
    shutil.rmtree(run / "results/fine")
    assert main(["--readme", str(run / "README.md"), "--metrics", str(run / "metrics"), "--keep", "fine"]) == 2
    assert "comparisons.json is missing" in capsys.readouterr().err
    assert not (run / "results/fine").exists()  # nothing half-kept


def test_a_kept_section_without_its_run_is_one_line(tmp_path, capsys):
    import shutil

    readme, kept = _kept_readme(tmp_path)
    shutil.rmtree(kept)
    assert main(["--readme", str(readme), "--metrics", str(ROOT / "metrics")]) == 2
    assert "section 'fine' has no kept run" in capsys.readouterr().err


def test_a_kept_run_against_another_pairs_their_students(tmp_path, capsys, monkeypatch):
    import json
    import shutil

    import mtkd.findings as F

    readme, short = _kept_readme(tmp_path, "short")
    long = tmp_path / "results" / "long"
    shutil.copytree(short, long)
    text = readme.read_text()
    readme.write_text(text + "<!-- findings:long:start -->\nold\n<!-- findings:long:end -->\n")
    for run, epochs, agreement in ((short, 1, 0.90), (long, 2, 0.93)):
        summary = json.loads((run / "summary.json").read_text())
        summary["rt"]["transfer"] = {"points": _points("average", {"0": (0.8, agreement, 0.2)})}
        (run / "summary.json").write_text(json.dumps(summary))
        (run / "params.yaml").write_text(f"student:\n  num_train_epochs: {epochs}\n")
    monkeypatch.setattr(F, "transfer_sentence", lambda task, s: f"TRANSFER {task}")
    args = ["--readme", str(readme), "--metrics", str(ROOT / "metrics")]
    assert main(args) == 0
    assert "2 epochs instead of" not in readme.read_text()  # not paired until kept --against
    (long / "against").write_text("short\n")
    assert main(args) == 0
    section = readme.read_text().split("<!-- findings:long:start -->")[1]
    assert "- rt: 2 epochs instead of 1 (each student paired with its own seed's in `results/short/`" in section
    assert "average: agreement +3.0 pp" in section
    (long / "against").write_text("nowhere\n")
    capsys.readouterr()
    assert main(args) == 2 and "names 'nowhere', which has no kept run" in capsys.readouterr().err
    assert main([*args, "--against", "short"]) == 2 and "--against goes with --keep" in capsys.readouterr().err
    assert main([*args, "--keep", "long", "--against", "nowhere"]) == 2
    assert "--against nowhere: no kept run results/nowhere/" in capsys.readouterr().err


def _points(strategy: str, by_seed: dict) -> list[dict]:
    return [{"strategy": strategy, "seed": seed, "test": test, "agreement_fused": agr, "kl_fused": kl}
            for seed, (test, agr, kl) in by_seed.items()]
