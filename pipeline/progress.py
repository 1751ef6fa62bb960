"""Progress for whoever is watching: log messages, and a bar where work is long.

Library code says what it is doing through :mod:`logging`, on loggers under
``"consensa."``, and never prints: the caller decides where messages go. The
command line (:mod:`pipeline.cli`) sends them to stderr in its plain style; a
notebook or a script gets nothing unless it sets up logging.

A progress bar is drawn only for a person at a terminal: when ``sys.stderr`` is
a TTY, ``CI`` is not set, and the ``consensa`` logger would show INFO messages
(so ``--quiet``, and library use without logging set up, draw no bar). In a
piped or CI log a bar is only noise: carriage returns and redrawn lines.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterable
from typing import TypeVar

#: the logger every Consensa module logs under ("consensa.run", "consensa.stability", ...)
ROOT_LOGGER = "consensa"

T = TypeVar("T")


def bars_wanted() -> bool:
    """Whether a progress bar may be drawn now (see the module docstring)."""
    try:
        tty = sys.stderr is not None and sys.stderr.isatty()
    except (AttributeError, ValueError):         # a replaced or closed stream
        tty = False
    in_ci = os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")
    return tty and not in_ci and logging.getLogger(ROOT_LOGGER).isEnabledFor(logging.INFO)


def progress(items: Iterable[T], desc: str, *, total: int | None = None,
             unit: str = "it") -> Iterable[T]:
    """``items`` with a tqdm bar on stderr when :func:`bars_wanted`, else ``items`` as is.

    The bar is removed when the loop ends (``leave=False``): the log lines and the
    summary that follow are what stays on the screen.
    """
    if not bars_wanted():
        return items
    from tqdm import tqdm

    return tqdm(items, desc=desc, total=total, unit=unit, leave=False, file=sys.stderr,
                dynamic_ncols=True)
