"""The one place a Jinja2 environment is made, for every HTML page Consensa writes.

The run report, the comparison page, the batch index, the review packet and the web
review all render transcript text, which is data and never markup. Making every
environment here keeps that promise in one line: autoescaping is on for every
template whatever its file suffix (``select_autoescape`` would not match the
``.html.j2`` suffix and would leave transcript text unescaped), and the filters the
templates share are defined once.
"""

from __future__ import annotations

import math
from functools import lru_cache
from pathlib import Path
from typing import Any

import jinja2

from ..sheets import is_list, join_list

__all__ = ["TEMPLATE_DIR", "make_environment", "page_environment", "number", "percent",
           "joined", "counted"]

#: the templates of the report, the comparison page, the batch index and the review packet
TEMPLATE_DIR = Path(__file__).resolve().parent / "templates"


def _absent(x: Any) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x))


def number(x: Any, digits: int = 2) -> str:
    """A measure with ``digits`` decimals; "n/a" for one that could not be computed."""
    return "n/a" if _absent(x) else f"{x:.{digits}f}"


def percent(x: Any) -> str:
    """A share (0..1) as a whole percentage; "n/a" for one that could not be computed."""
    return "n/a" if _absent(x) else f"{x:.0%}"


def joined(x: Any) -> str:
    """A list cell as one line of text, joined as the CSV files join it; text as it is.

    Lists (keywords, cases, quote ids) are kept as lists in memory; a table read back
    from a CSV holds them as text already.
    """
    if is_list(x):
        return join_list(x)
    return "" if _absent(x) else str(x)


def counted(n: Any, noun: str, plural: str | None = None) -> str:
    """``n`` and its noun in the number ``n`` needs: "1 case", "2 cases", "0 cases".

    Counts in the pages are the data's (a category of one case is common in a CQR
    table), so the wording follows the number rather than assuming a plural.
    """
    if _absent(n):
        return f"n/a {plural or noun + 's'}"
    if isinstance(n, float) and n.is_integer():
        n = int(n)  # a count read back from a table as a float
    elif isinstance(n, str) and n.strip().isdigit():
        n = int(n)  # a count already formatted for a page
    return f"{n} {noun if n == 1 else (plural or noun + 's')}"


#: filters every template may use
FILTERS = {"f": number, "pct": percent, "joined": joined, "counted": counted}


def make_environment(folder: str | Path = TEMPLATE_DIR, *,
                     strict: bool = True) -> jinja2.Environment:
    """A new environment over the templates in ``folder``, escaping everything it prints.

    ``strict`` makes an undefined name an error instead of an empty string, so a
    misspelt field fails the render (and its test) rather than silently showing
    nothing. A caller that adds its own filters or globals gets its own environment
    from here; :func:`page_environment` is the shared one for the static pages.
    """
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(folder)),
        autoescape=True,
        undefined=jinja2.StrictUndefined if strict else jinja2.Undefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters.update(FILTERS)
    return env


@lru_cache(maxsize=1)
def page_environment() -> jinja2.Environment:
    """The environment of the static pages (report, comparison, batch index, packet).

    Made once per process, so each template is compiled once; callers must not add
    filters or globals to it.
    """
    return make_environment()
