"""matplotlib figures as inline SVG, for the pages Consensa writes (report, comparison).

One version of the drawing plumbing, so every page gets the same guarantees:

* text stays text (``svg.fonttype: none``), so labels are searchable and sharp;
* the output is deterministic: no dates in the metadata and a fixed ``svg.hashsalt``
  per figure, so the same data gives the same bytes;
* matplotlib's object API with the Agg canvas, never pyplot, so no global figure
  state is touched or left behind by a library call;
* the SVG is made fit for inlining: no XML prolog, DOCTYPE or namespace URLs (the
  pages load nothing from elsewhere), and ids prefixed per figure so that several
  figures on one page do not share ``clip-path`` ids;
* labels drawn from transcript or code text go through :func:`mpl_text`, so a "$"
  is not read as mathtext and a control character cannot break the layout.
"""

from __future__ import annotations

import io
import re
import warnings
from collections.abc import Callable, Mapping
from typing import Any

import matplotlib
from markupsafe import Markup, escape
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

__all__ = ["SVG_RC", "figure_svg", "inline_svg", "mpl_text"]

#: the look shared by every figure (callers may override single keys, e.g. the font size)
SVG_RC: dict[str, Any] = {
    "svg.fonttype": "none",
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.labelcolor": "#333333",
    "xtick.color": "#333333",
    "ytick.color": "#333333",
}
#: resolution of the rasterized parts (dense scatters, large heat maps) inside the SVG
DPI = 150

_CTRL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_TAG = re.compile(r"<[^<>]+>")
_ID_REF = re.compile(r'(\bid="|\bhref="#|url\(#)([^"()]+)')


def mpl_text(text: Any, limit: int | None = None) -> str:
    """A label safe for matplotlib: one line, no control chars, "$" not read as math.

    ``limit`` cuts it to at most that many characters, ending in "…".
    """
    s = " ".join(_CTRL.sub(" ", "" if text is None else str(text)).split())
    if limit is not None and len(s) > limit:
        s = s[:limit - 1].rstrip() + "…"
    return s.replace("$", r"\$")


def figure_svg(name: str, size: tuple[float, float], draw: Callable[[Figure], None], *,
               rc: Mapping[str, Any] | None = None, label: str | None = None) -> Markup:
    """Draw a figure with ``draw(fig)`` and return it as inline SVG markup.

    ``name`` identifies the figure in its page: it salts matplotlib's ids, prefixes
    them, and tags the root element (``class="plot plot-NAME"``); it must be unique
    in the page. ``rc`` overrides keys of :data:`SVG_RC`; ``label`` becomes the
    root's ``aria-label``.
    """
    settings = {**SVG_RC, **(rc or {}), "svg.hashsalt": f"consensa-{name}"}
    buf = io.StringIO()
    with matplotlib.rc_context(settings), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # e.g. glyphs missing from DejaVu: text stays text
        fig = Figure(figsize=size, dpi=100, layout="constrained")
        FigureCanvasAgg(fig)
        try:
            draw(fig)
            fig.savefig(buf, format="svg", dpi=DPI, metadata={
                "Date": None, "Creator": None, "Format": None, "Type": None})
        finally:
            fig.clear()
    return Markup(inline_svg(buf.getvalue(), name, label))


def inline_svg(svg: str, name: str, label: str | None = None) -> str:
    """matplotlib's SVG file as an element for an HTML page.

    Drops the XML prolog, DOCTYPE and namespace declarations (not needed inline, and
    they are the only URLs matplotlib writes), and tags the root for CSS.
    """
    svg = svg[svg.index("<svg"):]
    end = svg.index(">")
    root = svg[:end]
    root = re.sub(r'\s+xmlns(?::\w+)?="[^"]*"', "", root)
    attrs = f'class="plot plot-{escape(name)}" role="img"'
    if label is not None:
        attrs += f' aria-label="{escape(label)}"'
    root = root.replace("<svg", f"<svg {attrs}", 1)
    svg = root + svg[end:]
    svg = re.sub(r"<metadata>.*?</metadata>\s*", "", svg, flags=re.S)
    return _TAG.sub(lambda m: _prefix_ids(m.group(0), name), svg).strip()


def _prefix_ids(tag: str, name: str) -> str:
    """Make an SVG's ids (figure_1, axes_1, ...) unique in the page, references too.

    Applied to tags only: text content is escaped by matplotlib and never holds "<".
    """
    return _ID_REF.sub(lambda m: f"{m.group(1)}{name}-{m.group(2)}", tag)
