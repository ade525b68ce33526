"""`dvc plots show` and `dvc plots diff` render offline, with the template of ``mtkd.plot_template``.

DVC's own page loads vega, vega-lite and vega-embed from a CDN. The template carries the pinned
npm builds inline (requirements/npm.txt); ``.dvc/config``'s ``plots.html_template`` names it.
Checked in headless Chromium with every host name unresolvable (as the report is, see
tests/test_report_browser.py): each plot div becomes a vega-embed view with a canvas or svg and
paints coloured pixels; DVC's default page, opened the same way, draws nothing (the control
that shows the network really is off).
"""

import shutil
from pathlib import Path

import numpy as np
import pytest
from configobj import ConfigObj

from tests.helpers import run
from mtkd import plot_template as PT
from mtkd.errors import MtkdError

from tests.test_report_browser import browse, chromium, console_lines, decode_png, parse

pytestmark = pytest.mark.slow  # end to end: `pytest -m "not slow"` skips it

ROOT = Path(__file__).resolve().parents[1]
DIVS = ("plots_strategies_csv", "curves_loss_tsv")  # DVC's div ids: the plot's path, / and . as _


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    """The template, written to a temporary file from the pinned tarballs (fetched into .cache/npm/ if missing)."""
    return PT.build(tmp_path_factory.mktemp("template") / "offline.html")


@pytest.fixture(scope="module")
def plots_repo(tmp_path_factory):
    """A git + DVC repo with a bar plot (like plots/*.csv) and a step curve (like DVCLive's), one commit, then a change."""
    chromium()  # fail first, with the fix, if there is no browser
    repo = tmp_path_factory.mktemp("plots") / "repo"
    (repo / "plots").mkdir(parents=True)
    (repo / "curves").mkdir()
    (repo / "plots/strategies.csv").write_text("strategy,test_primary\nnone,0.80\naverage,0.82\nweighted,0.81\n")
    (repo / "curves/loss.tsv").write_text("step\tloss\n1\t0.9\n2\t0.6\n3\t0.5\n")
    (repo / "dvc.yaml").write_text(
        "plots:\n"
        "  - plots/strategies.csv:\n      template: bar_horizontal\n      x: test_primary\n      y: strategy\n"
        "  - curves/loss.tsv:\n      x: step\n      y: loss\n")
    run("git init -q && dvc init -q && git add -A && git commit -qm plots", repo)
    (repo / "curves/loss.tsv").write_text("step\tloss\n1\t0.8\n2\t0.5\n3\t0.3\n")
    return repo


def test_repo_config_points_at_the_built_template():
    config = ConfigObj(str(ROOT / ".dvc" / "config"))
    assert (ROOT / ".dvc" / config["plots"]["html_template"]).resolve() == PT.TEMPLATE.resolve()
    assert "/.cache/" in (ROOT / ".gitignore").read_text().splitlines(), "the template is a build output, git-ignored"


def test_template_carries_the_pinned_libraries_inline(template):
    html = template.read_text(encoding="utf-8")
    doc = parse(html)
    scripts = doc.find(lambda n: n.tag == "script")
    assert [s.attrs.get("data-package") for s in scripts] == [p.spec for p in PT.read_pins()]
    assert not [s for s in scripts if "src" in s.attrs], "no script is loaded from elsewhere"
    assert all(len("".join(s.text)) > 50_000 for s in scripts)
    assert "{plot_divs}" in html and "{refresh_tag}" in html
    assert "{scripts}" not in html, "DVC would put its CDN <script src> tags there"


def test_plots_show_and_diff_render_offline(plots_repo, template, tmp_path):
    repo = plots_repo
    run(f"dvc config --local plots.html_template {template}", repo)
    run("dvc plots show -o show", repo)
    run("dvc plots diff HEAD -o diff", repo)  # the workspace against the last commit, in one page
    for name in ("show", "diff"):
        page = repo / name / "index.html"
        static = parse(page.read_text(encoding="utf-8"))
        assert not [s for s in static.find(lambda n: n.tag == "script") if "src" in s.attrs], f"{name}: a <script src>"
        proc = browse(page, tmp_path / name, "--dump-dom")
        dom = parse(proc.stdout)
        by_id = {n.attrs.get("id"): n for n in dom.walk() if n.attrs.get("id")}
        for div_id in DIVS:
            div = by_id.get(div_id)
            assert div is not None, f"{name}: no plot div {div_id}"
            assert "vega-embed" in div.classes, f"{name}: vega-embed did not run on {div_id}"
            assert div.find(lambda n: n.tag in ("canvas", "svg")), f"{name}: {div_id} has no canvas or svg"
        # vega-lite warns that DVC's zoom binding does not apply to a bar chart's band scale: a WARN, not a failure.
        bad = [l for l in console_lines(proc.stderr) if '"WARN ' not in l]
        assert not bad, f"{name}: the page logged:\n" + "\n".join(bad)
    shot = tmp_path / "show.png"
    browse(repo / "show" / "index.html", tmp_path / "shot", f"--screenshot={shot}")
    rgb = decode_png(shot.read_bytes())[..., :3].astype(np.int16)
    colour = (rgb.max(axis=2) - rgb.min(axis=2) > 80).mean()  # DVC's bar and line colours
    assert colour > 0.002, f"nothing painted ({100 * colour:.3f}% coloured pixels)"


def test_dvc_default_page_is_blank_offline(plots_repo, tmp_path):
    """The control: without the template, DVC's CDN page draws nothing here (so the network is really off)."""
    repo = plots_repo
    run("dvc config --local --unset plots.html_template", repo, check=False)
    run("dvc plots show -o cdn", repo)
    page = repo / "cdn" / "index.html"
    srcs = [s.attrs["src"] for s in parse(page.read_text()).find(lambda n: n.tag == "script") if "src" in s.attrs]
    assert len(srcs) == 3 and all(src.startswith("https://") for src in srcs), srcs
    dom = parse(browse(page, tmp_path, "--dump-dom").stdout)
    div = next(n for n in dom.walk() if n.attrs.get("id") == DIVS[0])
    assert not div.find(lambda n: n.tag in ("canvas", "svg"))


def test_a_missing_template_is_dvcs_error_the_readme_names(plots_repo, tmp_path):
    proc = run(f"dvc plots show -o missing --html-template {tmp_path / 'offline.html'}", plots_repo, check=False)
    assert proc.returncode != 0 and "HTML template has to contain '{plot_divs}'" in proc.stderr, proc.stderr


def test_a_tampered_tarball_is_refused_and_deleted(template, tmp_path):
    cache = tmp_path / "npm"
    cache.mkdir()
    pins = PT.read_pins()
    for p in pins:
        shutil.copy(PT.CACHE / p.tarball, cache / p.tarball)
    with (cache / pins[-1].tarball).open("ab") as fh:
        fh.write(b"\0")
    with pytest.raises(MtkdError, match=rf"{pins[-1].tarball}: SHA-512 .* does not match the pin"):
        PT.build(tmp_path / "t.html", cache)
    assert not (cache / pins[-1].tarball).exists() and not (tmp_path / "t.html").exists()


def test_a_bad_pin_line_is_named(tmp_path):
    bad = tmp_path / "npm.txt"
    bad.write_text("vega@5 sha512-abc\n")
    with pytest.raises(MtkdError, match=r"npm.txt:1: expected 'name@x.y.z sha512-<base64>'"):
        PT.read_pins(bad)
