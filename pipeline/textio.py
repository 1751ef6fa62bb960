"""Decode transcript bytes into text, guessing the encoding the way Windows tools write it.

``encoding="auto"`` tries, in order: a byte-order mark (UTF-8, UTF-16 and UTF-32,
as Word's "Unicode text" writes), UTF-16 without a mark (many NUL bytes in
alternate positions), strict UTF-8, then Windows-1252. The name returned is one
that decodes the same bytes to the same text again (``data.decode(name)``).

A file that mixes the two (a UTF-8 transcript with lines pasted from an old
Windows program, or the reverse) is not UTF-8 as a whole; read as Windows-1252
its UTF-8 lines would turn into mojibake ("cafÃ©"). When some lines with
accented letters are valid UTF-8 and others are not, each line is decoded on its
own: UTF-8 when it is valid UTF-8, else Windows-1252. That mixture is the codec
:data:`MIXED` (registered here, so ``data.decode(MIXED)`` works), and
:func:`cp1252_lines` says which lines were Windows-1252, for a note to the user.
"""

from __future__ import annotations

import codecs
import re
from pathlib import Path

from .errors import InputError

_BOMS = (  # UTF-32 first: its little-endian mark starts with the UTF-16 one
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
#: The codec of a file whose lines are UTF-8 or Windows-1252 (see the module docstring).
MIXED = "utf-8-with-cp1252-lines"
_LINE = re.compile(rb"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+$")


def _line_bytes(data: bytes) -> list[bytes]:
    """The lines of ``data``, each with its line break (\\r\\n, \\r or \\n)."""
    return _LINE.findall(data)


def _is_utf8(line: bytes) -> bool:
    try:
        line.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _decode_mixed(data: bytes, errors: str = "strict") -> tuple[str, int]:
    """Each line as UTF-8 when it is valid UTF-8, else as Windows-1252 (line breaks are
    the same bytes in both, and never inside a UTF-8 character)."""
    data = bytes(data)
    parts, at = [], 0
    for line in _line_bytes(data):
        try:
            parts.append(line.decode("utf-8") if _is_utf8(line)
                         else line.decode("cp1252", errors))
        except UnicodeDecodeError as exc:      # where in the whole file, not in the line
            raise UnicodeDecodeError(MIXED, data, at + exc.start, at + exc.end,
                                     exc.reason) from None
        at += len(line)
    return "".join(parts), len(data)


def _has_utf8_lines(data: bytes) -> bool:
    """True when a line with non-ASCII bytes is valid UTF-8: the file is not
    Windows-1252 throughout (Windows-1252 text is almost never valid UTF-8 by chance)."""
    return any(not line.isascii() and _is_utf8(line) for line in _line_bytes(data))


def cp1252_lines(data: bytes) -> list[int]:
    """1-based numbers of the lines :data:`MIXED` decodes as Windows-1252."""
    return [n for n, line in enumerate(_line_bytes(data), 1) if not _is_utf8(line)]


def _search_codec(name: str) -> codecs.CodecInfo | None:
    if name.replace("-", "_").replace(" ", "_") != MIXED.replace("-", "_"):
        return None
    return codecs.CodecInfo(name=MIXED, encode=codecs.utf_8_encode, decode=_decode_mixed)


codecs.register(_search_codec)

_CONTROL = re.compile(r"[\x00-\x08\x0e-\x1f\x7f]")
_SAVE_AS_TEXT = "save the transcript as UTF-8 text (.txt) or as a Word document (.docx)"


def read_text_file(path: str | Path, encoding: str = "auto") -> tuple[str, str]:
    """Read and decode a text file; return ``(text, encoding used)``."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise InputError(f"cannot be read ({exc.strerror})", path=path,
                         hint="check that the file exists and is readable") from exc
    return decode_bytes(data, encoding, path=path)


def decode_bytes(data: bytes, encoding: str = "auto",
                 path: str | Path | None = None) -> tuple[str, str]:
    """Decode ``data``; return ``(text, encoding used)``. Line endings are kept as they are.

    Raises :class:`InputError` for bytes that are not text in any encoding tried
    (or in the forced ``encoding``), or that look like a binary file.
    """
    if encoding != "auto":
        name = codecs.lookup(encoding).name
        if name == "utf-8" and data.startswith(codecs.BOM_UTF8):
            name = "utf-8-sig"
        try:
            return _checked(data.decode(name), path), name
        except UnicodeDecodeError as exc:
            raise InputError(
                f"cannot be decoded as {encoding} (invalid bytes at position {exc.start})",
                path=path, hint="set ingest.encoding to the file's encoding, or to 'auto'",
            ) from exc
    for bom, name in _BOMS:
        if data.startswith(bom):
            try:
                return _checked(data.decode(name), path), name
            except UnicodeDecodeError as exc:
                raise InputError(f"starts with a {name.upper()} byte-order mark but is not "
                                 f"valid {name.upper()} text", path=path,
                                 hint=_SAVE_AS_TEXT) from exc
    name = _utf16_without_bom(data)
    if name is not None:
        try:
            return _checked(data.decode(name), path), name
        except UnicodeDecodeError:
            raise _binary(path) from None
    if b"\x00" in data:
        raise _binary(path)
    try:
        return _checked(data.decode("utf-8"), path), "utf-8"
    except UnicodeDecodeError:
        pass
    name = MIXED if _has_utf8_lines(data) else "cp1252"
    try:
        return _checked(data.decode(name), path), name
    except UnicodeDecodeError:
        pass
    raise InputError("is neither UTF-8 nor Windows-1252 text", path=path,
                     hint=f"{_SAVE_AS_TEXT}, or set ingest.encoding to its encoding")


def _utf16_without_bom(data: bytes) -> str | None:
    """'utf-16-le'/'utf-16-be' when NUL bytes fill one of the two byte positions."""
    if len(data) < 4 or len(data) % 2:
        return None
    half = len(data) // 2
    nul_even, nul_odd = data[0::2].count(0), data[1::2].count(0)
    if nul_odd > 0.3 * half and nul_even < 0.05 * half:
        return "utf-16-le"
    if nul_even > 0.3 * half and nul_odd < 0.05 * half:
        return "utf-16-be"
    return None


def _checked(text: str, path: str | Path | None) -> str:
    """``text``, unless it holds NULs or many control characters (a binary file)."""
    if "\x00" in text or len(_CONTROL.findall(text)) > 0.05 * len(text):
        raise _binary(path)
    return text


def _binary(path: str | Path | None) -> InputError:
    return InputError("looks like a binary file, not text", path=path, hint=_SAVE_AS_TEXT)
