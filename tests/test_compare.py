import json
import re
import subprocess

import yaml

from mtkd.compare import compare, compare_sentence, main, params_changes


def summary(avg, none):
    return {"rt": {"primary_metric": "accuracy", "teachers": {"t": {"test": 0.9}},
                   "strategies": {"average": {"test": avg, "ci95_low": avg - 0.01, "ci95_high": avg + 0.01},
                                  "none": {"test": none, "ci95_low": none - 0.01, "ci95_high": none + 0.01}}}}


def test_compare_differences():
    d = compare(summary(0.80, 0.75), summary(0.83, 0.75))["rt"]
    assert abs(d["average"]["diff"] - 0.03) < 1e-12 and d["none"]["diff"] == 0 and d["t"]["diff"] == 0


def test_compare_sentence_names_the_largest_difference():
    rows = compare(summary(0.80, 0.75), summary(0.83, 0.74))["rt"]
    assert compare_sentence("rt", rows, "accuracy", "a", "b") == (
        "rt: test accuracy differs for 2 of the 3 methods in both a and b; the largest difference is average (+0.0300).")
    same = compare(summary(0.80, 0.75), summary(0.80, 0.75))["rt"]
    assert compare_sentence("rt", same, "accuracy", "a", "b") == "rt: no method's test accuracy differs between a and b."


def test_params_changes():
    assert params_changes({"distill": {"T": 6, "alpha": 0.7}}, {"distill": {"T": 9, "alpha": 0.7}}) == [("distill.T", 6, 9)]


def test_cli_between_a_commit_and_the_workspace(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "metrics").mkdir()
    (tmp_path / "metrics/summary.json").write_text(json.dumps(summary(0.80, 0.75)))
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"distill": {"T": 6}}))
    env = dict(GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@t", GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@t")
    for cmd in ("git init -q", "git add -A", "git commit -qm base"):
        subprocess.run(cmd, shell=True, check=True, env={**env, "PATH": "/usr/bin:/bin"})
    (tmp_path / "metrics/summary.json").write_text(json.dumps(summary(0.83, 0.75)))
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"distill": {"T": 9}}))
    assert main(["HEAD", "workspace", "--out", "c.html"]) == 0
    html = (tmp_path / "c.html").read_text()
    assert "<td>distill.T</td><td>6</td><td>9</td>" in html
    assert "<td>average</td><td>0.8000</td><td>0.8300</td><td>+0.0300</td>" in html
    assert not re.search(r"<script[^>]*\bsrc=", html)
    assert '<meta name="mtkd-figures" content="compare-rt">' in html  # the shared page builder
    assert ('<figcaption class="reading">rt: test accuracy differs for 1 of the 3 methods in both HEAD and '
            'workspace; the largest difference is average (+0.0300).</figcaption>') in html
    assert main(["nope", "workspace", "--out", "d.html"]) == 2
