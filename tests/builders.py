"""Input files the tests build at run time (nothing binary is committed)."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable

#: a two-turn interview, for a test that needs any valid .docx
TWO_TURNS = ("Interviewer: How was it?", "P1: It was hard, but I stayed.")


def docx_bytes(content: Iterable[str] | Callable = TWO_TURNS) -> bytes:
    """A .docx file: one paragraph per string of ``content``, or, when ``content`` is
    callable, whatever ``content(document)`` writes into a new python-docx Document."""
    import docx

    document = docx.Document()
    if callable(content):
        content(document)
    else:
        for paragraph in content:
            document.add_paragraph(paragraph)
    buffer = io.BytesIO()
    document.save(buffer)
    return buffer.getvalue()
