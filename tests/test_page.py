"""The one page builder (report, sweep, compare): plotly inline once, every figure with its reading."""

import re

import plotly.graph_objects as go
import pytest

from mtkd.analysis.page import Page, page_command
from mtkd.errors import MtkdError


def _page():
    page = Page("a <title>")
    page.heading("Results & more", level=1)
    page.note("x < y")
    page.table(["name", "value"], [["a&b", 1.5]])
    page.figure(go.Figure(go.Bar(x=[1], y=[2])), "fig-one", "One <b>reading</b>.")
    page.figure(go.Figure(go.Bar(x=[1], y=[3])), "fig-two", "Two.")
    return page


def test_figures_declared_in_order_each_with_its_reading():
    page = _page()
    text = page.html()
    assert page.figure_ids == ["fig-one", "fig-two"] and page.readings == ["One <b>reading</b>.", "Two."]
    assert '<meta name="mtkd-figures" content="fig-one fig-two">' in text
    assert text.count('<figure class="mtkd-figure"') == 2
    assert '<figcaption class="reading">One &lt;b&gt;reading&lt;/b&gt;.</figcaption>' in text
    assert text.index('data-figure="fig-one"') < text.index('data-figure="fig-two"')


def test_plotly_inline_once_and_nothing_from_a_network():
    text = _page().html()
    assert not re.search(r"<script[^>]*\bsrc=", text)
    assert text.count("plotly.js v") == 1 and len(text) > 1_000_000


def test_text_is_escaped_and_the_page_is_deterministic(tmp_path):
    text = _page().html()
    assert "<title>a &lt;title&gt;</title>" in text and "<h1>Results &amp; more</h1>" in text
    assert '<p class="note">x &lt; y</p>' in text and "<td>a&amp;b</td><td>1.5</td>" in text
    _page().write(tmp_path / "p.html")
    assert (tmp_path / "p.html").read_bytes() == text.encode("utf-8")


def test_duplicate_figure_id_is_refused():
    page = _page()
    with pytest.raises(ValueError, match="duplicate figure id fig-one"):
        page.figure(go.Figure(), "fig-one", "Again.")


def test_page_command_writes_or_exits_2_with_one_line(tmp_path, capsys):
    assert page_command(_page, tmp_path / "ok.html") == 0
    assert (tmp_path / "ok.html").is_file() and "(2 figures)" in capsys.readouterr().out

    def missing():
        raise MtkdError("metrics/summary.json: not found (run `dvc repro analyze`)")

    assert page_command(missing, tmp_path / "no.html") == 2
    assert capsys.readouterr().err == "error: metrics/summary.json: not found (run `dvc repro analyze`)\n"
    assert not (tmp_path / "no.html").exists()
