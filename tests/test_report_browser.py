"""The report as a person sees it: opened in a real headless browser (Debian's ``chromium``), offline.

Two reports: one built by ``run_analysis`` from the synthetic tree of ``test_analysis`` (every
analysis, known readings), and the real one redrawn from the committed ``metrics/`` and
``plots/curves/`` (``report_from_metrics``: no logits or predictions needed). Each is loaded with
every host name unresolvable, so anything fetched from a network leaves its figure blank.

Checked: no external script or resource; plotly.js inline once; every figure the report declares
(``<meta name="mtkd-figures">``) is drawn by plotly (``plot-container``, sized ``main-svg``, traces,
title); the number drawn equals the number declared; every figure carries its reading sentence;
the page logs nothing to the console; a 1400×3000 screenshot is a real, non-blank picture.

``make test`` installs chromium first (``make browser``). Without it these tests fail, naming the fix.
"""

import os
import shutil
import struct
import subprocess
import zlib
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from mtkd import analysis as A
from mtkd.params import load_params

from tests.test_analysis import _params as synthetic_params
from tests.test_analysis import build_tree

pytestmark = pytest.mark.slow  # end to end: `pytest -m "not slow"` skips it

ROOT = Path(__file__).resolve().parents[1]
WINDOW = (1400, 3000)
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-default-apps", "--disable-extensions", "--mute-audio", "--hide-scrollbars",
         # Offline: every host name fails to resolve, so a network dependency cannot render.
         "--host-resolver-rules=MAP * ~NOTFOUND",
         # Let plotly's timers and promises finish before the DOM is dumped or the page is shot.
         "--virtual-time-budget=15000",
         # Console messages (and uncaught errors) go to stderr as INFO:CONSOLE lines.
         "--enable-logging=stderr", "--v=0"]
NETWORK = ("http:", "https:", "//", "ftp:", "ws:", "wss:")


# ---------------------------------------------------------------------------------------------- the browser


def chromium() -> str:
    """Path of the browser (``MTKD_CHROMIUM`` overrides); a clear failure, never a skip, when there is none."""
    path = os.environ.get("MTKD_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    if not (Path(path).is_file() and os.access(path, os.X_OK)):
        pytest.fail(f"headless browser not found at {path}: the report must be tested in a real browser. "
                    "Install it with `make browser` (Debian: `apt-get install -y chromium`; `make test` does this), "
                    "or point MTKD_CHROMIUM at a Chromium binary.", pytrace=False)
    return path


def browse(page: Path, workdir: Path, *args: str) -> subprocess.CompletedProcess:
    """Run headless chromium on ``page`` with a fresh profile under ``workdir``; fail loudly on a non-zero exit."""
    workdir.mkdir(parents=True, exist_ok=True)
    profile = workdir / f"profile-{len(list(workdir.glob('profile-*')))}"
    cmd = [chromium(), *FLAGS, f"--user-data-dir={profile}", f"--window-size={WINDOW[0]},{WINDOW[1]}", *args,
           page.resolve().as_uri()]
    env = {**os.environ, "HOME": str(workdir), "XDG_CONFIG_HOME": str(workdir / "config"),
           "XDG_CACHE_HOME": str(workdir / "cache")}
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=env)
    except subprocess.TimeoutExpired:
        pytest.fail(f"chromium did not finish within 240 s: {' '.join(cmd)}", pytrace=False)
    if proc.returncode != 0:
        pytest.fail(f"chromium exited {proc.returncode}: {' '.join(cmd)}\n{proc.stderr[-3000:]}", pytrace=False)
    return proc


def console_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if ":CONSOLE" in line]


# ---------------------------------------------------------------------------------------------- a small DOM

VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "param", "source", "track", "wbr"}


class Node:
    def __init__(self, tag: str, attrs: dict, parent=None):
        self.tag, self.attrs, self.parent, self.children, self.text = tag, attrs, parent, [], []

    @property
    def classes(self) -> set[str]:
        return set((self.attrs.get("class") or "").split())

    def walk(self):
        yield self
        for child in self.children:
            yield from child.walk()

    def find(self, pred) -> list["Node"]:
        return [n for n in self.walk() if pred(n)]

    def all_text(self) -> str:
        return "".join("".join(n.text) for n in self.walk())


class TreeBuilder(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.root = Node("#document", {})
        self.stack = [self.root]

    def handle_starttag(self, tag, attrs):
        node = Node(tag, dict(attrs), self.stack[-1])
        self.stack[-1].children.append(node)
        if tag not in VOID:
            self.stack.append(node)

    def handle_startendtag(self, tag, attrs):  # <path .../> in SVG
        self.stack[-1].children.append(Node(tag, dict(attrs), self.stack[-1]))

    def handle_endtag(self, tag):
        for i in range(len(self.stack) - 1, 0, -1):
            if self.stack[i].tag == tag:
                del self.stack[i:]
                return

    def handle_data(self, data):
        self.stack[-1].text.append(data)


def parse(html_text: str) -> Node:
    builder = TreeBuilder()
    builder.feed(html_text)
    builder.close()
    return builder.root


def declared_figures(doc: Node) -> list[str]:
    metas = doc.find(lambda n: n.tag == "meta" and n.attrs.get("name") == "mtkd-figures")
    assert len(metas) == 1, "the report must declare its figures in one <meta name=\"mtkd-figures\">"
    return (metas[0].attrs.get("content") or "").split()


# ---------------------------------------------------------------------------------------------- PNG


def decode_png(data: bytes) -> np.ndarray:
    """8-bit RGB(A), non-interlaced PNG → array [h, w, channels] (all five row filters)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG file"
    pos, idat, ihdr = 8, [], None
    while pos < len(data):
        n, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + n]
        pos += 12 + n
        if kind == b"IHDR":
            ihdr = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat.append(body)
        elif kind == b"IEND":
            break
    w, h, depth, colour, _, _, interlace = ihdr
    assert depth == 8 and colour in (2, 6) and interlace == 0, f"unexpected PNG format {ihdr}"
    bpp = 3 if colour == 2 else 4
    stride = w * bpp
    raw = zlib.decompress(b"".join(idat))
    assert len(raw) == h * (stride + 1), "truncated PNG data"
    rows, prior = [], bytearray(stride)
    for y in range(h):
        kind, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        if kind == 1:  # Sub: running sum along the row, per channel (uint8 wraps like the spec's mod 256)
            line = bytearray(np.cumsum(np.frombuffer(bytes(line), np.uint8).reshape(w, bpp), axis=0,
                                       dtype=np.uint8).tobytes())
        elif kind == 2:  # Up
            line = bytearray((np.frombuffer(bytes(line), np.uint8) + np.frombuffer(bytes(prior), np.uint8)).tobytes())
        elif kind == 3:  # Average
            for i in range(stride):
                left = line[i - bpp] if i >= bpp else 0
                line[i] = (line[i] + ((left + prior[i]) >> 1)) & 255
        elif kind == 4:  # Paeth
            for i in range(stride):
                a = line[i - bpp] if i >= bpp else 0
                b, c = prior[i], (prior[i - bpp] if i >= bpp else 0)
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        else:
            assert kind == 0, f"bad PNG filter {kind}"
        rows.append(bytes(line))
        prior = line
    return np.frombuffer(b"".join(rows), np.uint8).reshape(h, w, bpp)


def test_decode_png_all_filters():
    """The decoder against a hand-built 3×2 RGB image whose rows use every filter type."""
    img = np.array([[[10, 20, 30], [200, 100, 50], [255, 0, 7]],
                    [[11, 22, 33], [190, 110, 40], [0, 255, 9]]], np.uint8)

    def filtered(kind, row, prior):
        out = bytearray()
        for i, x in enumerate(row):
            a = row[i - 3] if i >= 3 else 0
            b, c = prior[i], (prior[i - 3] if i >= 3 else 0)
            p = a + b - c
            paeth = a if abs(p - a) <= abs(p - b) and abs(p - a) <= abs(p - c) else b if abs(p - b) <= abs(p - c) else c
            out.append((x - [0, a, b, (a + b) // 2, paeth][kind]) % 256)
        return bytes([kind]) + bytes(out)

    for kinds in [(0, 1), (1, 2), (2, 3), (3, 4), (4, 4)]:
        prior, raw = bytes(9), b""
        for kind, row in zip(kinds, img):
            raw += filtered(kind, row.tobytes(), prior)
            prior = row.tobytes()

        def chunk(kind, body):
            return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

        png = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 3, 2, 8, 2, 0, 0, 0))
               + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
        assert np.array_equal(decode_png(png), img), kinds


# ---------------------------------------------------------------------------------------------- the reports


@pytest.fixture(scope="module", params=["synthetic", "committed"])
def report(request, tmp_path_factory):
    """(kind, path of the report, {figure id: reading sentence}, work dir): synthetic tree or committed metrics."""
    chromium()  # fail first, with the fix, if there is no browser
    work = tmp_path_factory.mktemp(f"report-{request.param}")
    if request.param == "synthetic":
        root = build_tree(work / "tree")
        out = A.run_analysis(synthetic_params(), root)
        return request.param, root / "reports/report.html", out["figures"], work
    params = load_params(ROOT / "params.yaml")
    rep = A.report_from_metrics(params, ROOT)
    path = work / "report.html"
    rep.write(path)
    return request.param, path, rep.figures, work


@pytest.fixture(scope="module")
def rendered(report):
    """The report's static HTML and its DOM after headless chromium ran plotly (and chromium's stderr)."""
    _, path, _, work = report
    proc = browse(path, work / "dump", "--dump-dom")
    return parse(path.read_text(encoding="utf-8")), parse(proc.stdout), proc.stderr


def test_offline_no_external_resources(report, rendered):
    static, _, _ = rendered
    scripts = static.find(lambda n: n.tag == "script")
    with_src = [s.attrs["src"] for s in scripts if "src" in s.attrs]
    assert not with_src, f"scripts loaded from elsewhere (the report must be self-contained): {with_src}"
    external = [(n.tag, k, v) for n in static.walk() if n.tag != "a" for k, v in n.attrs.items()
                if k in ("src", "href", "data", "poster", "srcset") and v and v.strip().lower().startswith(NETWORK)]
    assert not external, f"resources fetched from a network: {external}"
    plotly = [s for s in scripts if "plotly.js v" in "".join(s.text)[:2000] and len("".join(s.text)) > 1_000_000]
    assert len(plotly) == 1, f"plotly.js must be inline exactly once, found {len(plotly)}"


def test_declared_figures_match_analysis(report, rendered):
    kind, _, figures, _ = report
    static, _, _ = rendered
    declared = declared_figures(static)
    assert declared == list(figures) and len(set(declared)) == len(declared)
    plot_divs = [n.attrs.get("id") for n in static.find(lambda n: "plotly-graph-div" in n.classes)]
    assert plot_divs == declared, "every plotly div is declared, in page order, and nothing else"
    params = synthetic_params() if kind == "synthetic" else load_params(ROOT / "params.yaml")
    registered = A.figure_ids(list(params.data.tasks), list(params.distill.strategies))  # what the registry can draw for these tasks, in page order
    assert declared == [fid for fid in registered if fid in declared], "only registered figures, in registry order"
    if kind == "synthetic":  # the synthetic tree: every analysis of SPEC §9 is there
        assert declared == registered


def test_every_figure_rendered_by_plotly(report, rendered):
    static, dom, stderr = rendered
    declared = declared_figures(static)
    drawn = dom.find(lambda n: "js-plotly-plot" in n.classes)
    assert len(drawn) == len(declared), f"{len(drawn)} figures drawn, {len(declared)} declared"
    by_id = {n.attrs.get("id"): n for n in dom.walk() if n.attrs.get("id")}
    for fid in declared:
        div = by_id.get(fid)
        assert div is not None, f"{fid}: missing from the rendered page"
        assert {"plotly-graph-div", "js-plotly-plot"} <= div.classes, f"{fid}: plotly did not run on it"
        assert div.find(lambda n: "plot-container" in n.classes), f"{fid}: no plot-container"
        svgs = div.find(lambda n: n.tag == "svg" and "main-svg" in n.classes)
        assert svgs, f"{fid}: no main-svg"
        assert all(float(s.attrs.get("width", 0)) > 300 and float(s.attrs.get("height", 0)) > 150 for s in svgs), \
            f"{fid}: drawn at an empty size {[(s.attrs.get('width'), s.attrs.get('height')) for s in svgs]}"
        traces = div.find(lambda n: n.tag == "g" and ("trace" in n.classes or "hm" in n.classes))
        assert traces, f"{fid}: no data drawn (no trace)"
        title = div.find(lambda n: "gtitle" in n.classes)
        assert title and title[0].all_text().strip(), f"{fid}: no title"
    assert not console_lines(stderr), "the page logged to the console:\n" + "\n".join(console_lines(stderr))


def test_every_figure_has_its_reading(report, rendered):
    _, _, figures, _ = report
    _, dom, _ = rendered
    boxes = {n.attrs.get("data-figure"): n for n in dom.find(lambda n: n.tag == "figure" and "mtkd-figure" in n.classes)}
    assert list(boxes) == list(figures)
    for fid, sentence in figures.items():
        box = boxes[fid]
        assert box.find(lambda n: n.attrs.get("id") == fid), f"{fid}: the figure box does not hold its plot"
        captions = box.find(lambda n: n.tag == "figcaption" and "reading" in n.classes)
        assert len(captions) == 1, f"{fid}: needs exactly one reading"
        text = captions[0].all_text().strip()
        assert text == sentence, f"{fid}: reading {text!r} is not the analysis' sentence {sentence!r}"
        assert len(text) > 30 and text.endswith("."), f"{fid}: {text!r} is not a sentence"
        assert "nan" not in text.lower().split() and "None" not in text, f"{fid}: {text!r}"


def test_screenshot_is_a_real_picture(report):
    _, path, _, work = report
    shot = work / "report.png"
    browse(path, work / "shot", f"--screenshot={shot}")
    assert shot.is_file() and shot.stat().st_size > 20_000, "no screenshot (or an almost empty one)"
    img = decode_png(shot.read_bytes())
    assert img.shape[:2] == (WINDOW[1], WINDOW[0])
    rgb = img[..., :3].astype(np.int16)
    ink = (rgb < 235).any(axis=2).mean()                       # anything but the white page
    colour = (rgb.max(axis=2) - rgb.min(axis=2) > 80).mean()   # saturated pixels: bars, markers, heat cells
    assert ink > 0.03, f"the page is nearly blank ({100 * ink:.2f}% non-white pixels)"
    assert colour > 0.01, f"no figure painted ({100 * colour:.2f}% coloured pixels)"
    assert len(np.unique(img[..., :3].reshape(-1, 3)[::97], axis=0)) > 50, "too few colours for a page of plots"


def test_missing_browser_fails_with_the_fix(monkeypatch, tmp_path):
    monkeypatch.setenv("MTKD_CHROMIUM", str(tmp_path / "no-such-chromium"))
    with pytest.raises(pytest.fail.Exception, match=r"make browser"):
        chromium()
