"""The one HTML page builder of the report, ``mtkd.sweep`` and ``mtkd.compare``.

A :class:`Page` is a list of fragments rendered into one self-contained file: plotly.js is
inlined once, with the first figure, so the page opens offline. Every figure sits in
``<figure class="mtkd-figure" data-figure=ID>`` with its reading sentence in
``<figcaption class="reading">``, and ``<meta name="mtkd-figures">`` lists the figure ids in
page order: the browser test reads that list to know which figures to expect.
"""

from __future__ import annotations

import html
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from mtkd.errors import MtkdError
from mtkd.io import atomic_path

CSS = """
body { font-family: -apple-system, Segoe UI, Helvetica, Arial, sans-serif; max-width: 1150px; margin: 2em auto;
       padding: 0 1em; color: #222; line-height: 1.45; }
h1 { font-size: 1.6em; } h2 { border-bottom: 1px solid #ddd; padding-bottom: .2em; margin-top: 2em; }
table { border-collapse: collapse; margin: .8em 0; font-size: .92em; }
th, td { border: 1px solid #ddd; padding: .3em .6em; text-align: right; }
th { background: #f4f4f4; } td:first-child, th:first-child { text-align: left; }
.reading { background: #f6f8fa; border-left: 4px solid #1f77b4; padding: .5em .8em; margin: .8em 0; }
figure.mtkd-figure { margin: 1.2em 0 1.8em; }
p.note { color: #666; font-size: .9em; }
"""


def escape(text) -> str:
    """Text for an HTML element's content (quotes left as they are: they are safe there)."""
    return html.escape(str(text), quote=False)


def html_table(header: list[str], rows: list[list]) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


@dataclass
class Page:
    """One self-contained HTML page, built in order; every figure comes with its reading sentence."""

    title: str
    parts: list[str] = field(default_factory=list)
    readings: list[str] = field(default_factory=list)
    figures: dict[str, str] = field(default_factory=dict)  # figure div id → its reading sentence

    @property
    def figure_ids(self) -> list[str]:
        return list(self.figures)

    def heading(self, text: str, level: int = 2) -> None:
        self.parts.append(f"<h{level}>{escape(text)}</h{level}>")

    def raw(self, fragment: str) -> None:
        """A fragment of HTML, as it is (the caller escapes what it interpolates)."""
        self.parts.append(fragment)

    def note(self, text: str) -> None:
        self.parts.append(f'<p class="note">{escape(text)}</p>')

    def table(self, header: list[str], rows: list[list]) -> None:
        self.parts.append(html_table(header, rows))

    def reading(self, sentence: str) -> None:
        """A reading sentence that belongs to no figure (the headline's)."""
        self.readings.append(sentence)
        self.parts.append(f'<p class="reading">{escape(sentence)}</p>')

    def figure(self, fig, div_id: str, sentence: str) -> None:
        """A plotly figure (plotly.js inline with the first one) and its reading, in one ``<figure>``."""
        if div_id in self.figures:
            raise ValueError(f"duplicate figure id {div_id}")
        # An explicit div id keeps the page byte-identical from run to run.
        plot = fig.to_html(full_html=False, include_plotlyjs=not self.figures, div_id=div_id,
                           config={"displaylogo": False, "responsive": True})
        self.figures[div_id] = sentence
        self.readings.append(sentence)
        self.parts.append(f'<figure class="mtkd-figure" data-figure="{html.escape(div_id)}">\n{plot}\n'
                          f'<figcaption class="reading">{escape(sentence)}</figcaption>\n</figure>')

    def html(self) -> str:
        return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
                f'<meta name="mtkd-figures" content="{html.escape(" ".join(self.figure_ids))}">\n'
                f"<title>{escape(self.title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n"
                + "\n".join(self.parts) + "\n</body>\n</html>\n")

    def write(self, path: str | Path) -> None:
        """Write the page (UTF-8) through a temporary file, so an interrupted write leaves no half page."""
        with atomic_path(path) as tmp:
            tmp.write_bytes(self.html().encode("utf-8"))


def page_command(build: Callable[[], Page], path: str | Path) -> int:
    """The edge of a command that writes one page: build it and write it to ``path``; exit status 0,
    or 2 with one line on stderr when the inputs are missing or wrong (an MtkdError)."""
    try:
        page = build()
        page.write(path)
    except MtkdError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    n = len(page.figure_ids)
    print(f"wrote {path} ({n} figure{'' if n == 1 else 's'})")
    return 0
