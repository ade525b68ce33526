"""An HTML template for ``dvc plots show`` / ``dvc plots diff`` that renders offline.

DVC's own page loads vega, vega-lite and vega-embed from a CDN, so without a network the
plots are blank. This module writes a template (``.cache/plots/offline.html``, the file
``.dvc/config``'s ``plots.html_template`` names) that carries the three libraries inline.
They come from their npm tarballs, pinned by SHA-512 in ``requirements/npm.txt``: fetched
with ``npm pack`` into ``.cache/npm/`` when missing, checked against the pin (a mismatch is
deleted and refused), and read without extracting; node never runs them.

The template has DVC's placeholders ``{plot_divs}`` (each plot's ``<div>`` with its inline
``vegaEmbed(...)`` call) and ``{refresh_tag}``, and deliberately no ``{scripts}``: that is
where DVC would put its CDN ``<script src=...>`` tags.

    python -m mtkd.plot_template          # `make setup` runs it; prints the template's path
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import re
import shutil
import subprocess
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path

from mtkd.errors import MtkdError
from mtkd.io import write_text

ROOT = Path(__file__).resolve().parents[1]
PINS = ROOT / "requirements" / "npm.txt"
CACHE = ROOT / ".cache" / "npm"
TEMPLATE = ROOT / ".cache" / "plots" / "offline.html"
# Each package's browser build (UMD: sets window.vega, window.vegaLite, window.vegaEmbed), in load order.
BUILDS = {"vega": "package/build/vega.min.js", "vega-lite": "package/build/vega-lite.min.js",
          "vega-embed": "package/build/vega-embed.min.js"}
# DVC fills the template with str.replace on these: an inlined library must not contain them.
PLACEHOLDERS = ("{plot_divs}", "{scripts}", "{refresh_tag}")

PAGE = """<!DOCTYPE html>
<html>
<head>
    <meta charset="utf-8">
    {refresh_tag}
    <title>DVC Plot</title>
    <!-- Written by `python -m mtkd.plot_template`: {versions}, inline (renders offline). -->
{libraries}
    <style>
        table {
            border-spacing: 15px;
        }
    </style>
</head>
<body>
    {plot_divs}
</body>
</html>
"""


@dataclass(frozen=True)
class Pin:
    name: str
    version: str
    integrity: str  # "sha512-<base64>", npm's dist.integrity

    @property
    def spec(self) -> str:
        return f"{self.name}@{self.version}"

    @property
    def tarball(self) -> str:  # what `npm pack` names it (unscoped packages)
        return f"{self.name}-{self.version}.tgz"


def read_pins(path: Path = PINS) -> list[Pin]:
    pins = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        m = re.fullmatch(r"([a-z0-9][a-z0-9._-]*)@(\d+\.\d+\.\d+)\s+(sha512-[A-Za-z0-9+/]+={0,2})", line)
        if not m:
            raise MtkdError(f"{path}:{number}: expected 'name@x.y.z sha512-<base64>', got {line!r}")
        pins.append(Pin(*m.groups()))
    if sorted(p.name for p in pins) != sorted(BUILDS):
        raise MtkdError(f"{path}: needs one pin each for {', '.join(BUILDS)}, has {[p.spec for p in pins]}")
    return sorted(pins, key=lambda p: list(BUILDS).index(p.name))


def integrity(path: Path) -> str:
    return "sha512-" + base64.b64encode(hashlib.sha512(path.read_bytes()).digest()).decode()


def fetch(pins: list[Pin], cache: Path = CACHE) -> dict[str, Path]:
    """Each pinned tarball in ``cache``, fetched with ``npm pack`` if missing; every one hash-checked."""
    cache.mkdir(parents=True, exist_ok=True)
    missing = [p for p in pins if not (cache / p.tarball).is_file()]
    if missing:
        npm = shutil.which("npm")
        if npm is None:
            raise MtkdError("npm not found: it fetches the pinned vega tarballs (requirements/npm.txt); "
                            "install Node.js and npm (Debian: apt-get install -y npm), then run: python -m mtkd.plot_template")
        proc = subprocess.run([npm, "pack", "--silent", "--pack-destination", str(cache), *(p.spec for p in missing)],
                              capture_output=True, text=True, cwd=cache)
        if proc.returncode != 0:
            tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            raise MtkdError(f"npm pack {' '.join(p.spec for p in missing)} failed ({proc.returncode}): {tail}")
    out = {}
    for p in pins:
        path = cache / p.tarball
        if not path.is_file():
            raise MtkdError(f"npm pack did not write {path}")
        got = integrity(path)
        if got != p.integrity:
            path.unlink()
            raise MtkdError(f"{path}: SHA-512 {got} does not match the pin {p.integrity} in {PINS.name}; "
                            f"deleted it: run python -m mtkd.plot_template again to fetch {p.spec} anew")
        out[p.name] = path
    return out


def library(name: str, tarball: Path) -> str:
    """The minified browser build of ``name`` from its tarball, ready to sit in a ``<script>`` element."""
    with tarfile.open(tarball, "r:gz") as tar:
        try:
            member = tar.extractfile(BUILDS[name])
        except KeyError:
            member = None
        if member is None:
            raise MtkdError(f"{tarball}: no {BUILDS[name]}")
        js = member.read().decode("utf-8")
    js = re.sub(r"\n?//# sourceMappingURL=\S+\s*$", "", js)  # the .map is not shipped in the page
    # A script element ends at the first "</script" (any case); "<!--" changes how it is parsed.
    for bad in (*PLACEHOLDERS, "</script", "<!--"):
        if bad in js.lower():
            raise MtkdError(f"{tarball}: {BUILDS[name]} contains {bad!r}, which cannot be inlined in the template")
    return js


def render(pins: list[Pin], tarballs: dict[str, Path]) -> str:
    scripts = "\n".join(f'    <script type="text/javascript" data-package="{p.spec}">\n{library(p.name, tarballs[p.name])}\n    </script>'
                        for p in pins)
    return PAGE.replace("{versions}", ", ".join(p.spec for p in pins)).replace("{libraries}", scripts)


def build(out: Path = TEMPLATE, cache: Path = CACHE, pins_path: Path = PINS) -> Path:
    """Fetch (if needed) and check the pinned tarballs, then write the template to ``out``."""
    pins = read_pins(pins_path)
    write_text(out, render(pins, fetch(pins, cache)))
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mtkd.plot_template", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=TEMPLATE, help=f"template to write (default {TEMPLATE.relative_to(ROOT)})")
    parser.add_argument("--cache", type=Path, default=CACHE, help=f"npm tarballs (default {CACHE.relative_to(ROOT)})")
    args = parser.parse_args(argv)
    try:
        print(build(args.out, args.cache))
    except MtkdError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
