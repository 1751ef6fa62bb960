"""Human codes in any format Consensa reads: a table of codes, or a REFI-QDA project.

One entry point, :func:`read_codes`, above the two readers (:mod:`.codes` for
tables, :mod:`.refi` for .qdpx/.qde), so neither reader imports the other.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from ..errors import InputError
from .codes import SEPARATOR, HumanCodes, read_codes_table
from .refi import read_project


def read_codes(path: str | Path, *, separator: str = SEPARATOR,
               columns: Mapping[str, str] | None = None, sheet: str | int = 0) -> HumanCodes:
    """Read human codes from a table (.csv/.tsv/.xlsx) or a REFI-QDA project (.qdpx/.qde)."""
    path = Path(path)
    if not path.is_file():
        raise InputError("codes file not found", path=path,
                         hint="give a .csv/.xlsx table of codes or a REFI-QDA .qdpx project")
    suffix = path.suffix.lower()
    if suffix in (".qdpx", ".qde"):
        return read_project(path)
    if suffix in (".csv", ".tsv", ".txt", ".xlsx"):
        return read_codes_table(path, separator=separator, columns=columns, sheet=sheet)
    raise InputError(f"unsupported codes file type '{suffix or '(none)'}'", path=path,
                     hint="give a .csv, .tsv or .xlsx table of codes, or a REFI-QDA .qdpx "
                          "project (exported from NVivo, ATLAS.ti, MAXQDA, QDA Miner...)")
