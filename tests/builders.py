"""Input files the tests build at run time (nothing binary is committed)."""

from __future__ import annotations

import io
import zipfile
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


def qdpx_bytes_of(sources: Iterable[tuple], files: dict[str, bytes] | None = None,
                  cases: Iterable[tuple] = ()) -> bytes:
    """A REFI-QDA project (.qdpx) as NVivo, ATLAS.ti or MAXQDA export one: ``sources``
    are ``(kind, name, guid, text_or_path)``, optionally with a fifth item, the
    source's own variable values ``{variable: value}`` (MAXQDA's document variables);
    kind "content" puts the text inside the XML (PlainTextContent), "internal" refers
    to ``internal://<path>`` (its bytes in ``files``, under Sources/), "recording" is an
    audio source holding the transcripts listed in ``text_or_path``, anything else
    ("PDFSource") is a source of that kind. ``cases`` are ``(name, {variable: value},
    [source guids])``: the project's cases, their variable values (an int is written as
    an IntegerValue) and the sources they hold."""
    from xml.sax.saxutils import escape, quoteattr

    sources = [(*s, {}) if len(s) == 4 else tuple(s) for s in sources]
    cases = list(cases)
    names = list(dict.fromkeys([*(v for _, values, _ in cases for v in values),
                                *(v for *_, values in sources for v in values)]))

    def values_of(values: dict) -> str:
        return "".join(
            f'<VariableValue><VariableRef targetGUID="v{names.index(v)}"/>'
            + (f"<IntegerValue>{x}</IntegerValue>" if isinstance(x, int) else
               f"<TextValue>{escape(x)}</TextValue>") + "</VariableValue>"
            for v, x in values.items())

    parts = []
    for kind, name, guid, value, own in sources:
        if kind == "content":
            parts.append(f'<TextSource guid="{guid}" name={quoteattr(name)}>'
                         f"<PlainTextContent>{escape(value)}</PlainTextContent>"
                         f"{values_of(own)}</TextSource>")
        elif kind == "internal":
            parts.append(f'<TextSource guid="{guid}" name={quoteattr(name)} '
                         f'plainTextPath="internal://{value}">{values_of(own)}</TextSource>')
        elif kind == "recording":      # value: the transcripts' texts
            transcripts = "".join(
                f'<Transcript guid="{guid}-t{k}" name="transcript {k}">'
                f"<PlainTextContent>{escape(t)}</PlainTextContent></Transcript>"
                for k, t in enumerate(value, 1))
            parts.append(f'<AudioSource guid="{guid}" name={quoteattr(name)} '
                         f'path="internal://{guid}.mp3">{transcripts}{values_of(own)}'
                         "</AudioSource>")
        else:
            parts.append(f'<{kind} guid="{guid}" name={quoteattr(name)} '
                         f'path="internal://{value}">{values_of(own)}</{kind}>')
    variables = "".join(f'<Variable guid="v{k}" name={quoteattr(v)} typeOfVariable="Text"/>'
                        for k, v in enumerate(names))
    case_parts = []
    for k, (name, values, holds) in enumerate(cases):
        refs = "".join(f'<SourceRef targetGUID="{g}"/>' for g in holds)
        case_parts.append(f'<Case guid="c{k}" name={quoteattr(name)}>{values_of(values)}{refs}'
                          "</Case>")
    extra = (f"<Variables>{variables}</Variables>" if variables else "") + \
        (f"<Cases>{''.join(case_parts)}</Cases>" if case_parts else "")
    qde = ('<?xml version="1.0" encoding="utf-8"?>\n<Project xmlns="urn:QDA-XML:project:1.0" '
           f'name="study">{extra}<Sources>{"".join(parts)}</Sources></Project>')
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("project.qde", qde.encode("utf-8"))
        for name, data in (files or {}).items():
            zf.writestr(f"Sources/{name}", data)
    return buffer.getvalue()
