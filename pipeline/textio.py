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

A NUL character never belongs in text, but one can stray into a transcript (a
copy from another program, a glitch of an editor) and it should not cost the whole
interview. A caller that removes control characters and counts them (ingest does)
passes ``stray_nuls=True`` to keep a few isolated NULs in the text it gets back (a
few in a row too, in a file that is otherwise valid UTF-8); every other caller gets
an error naming the line of the first one. Many NULs, or two or more in a row in
bytes that are not UTF-8, are what binary files (images, archives, a Word file
renamed .txt) are made of: such bytes are refused either way.
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
#: f4transkript's and f5transkript's time mark, "#00:01:23-4#" (the digit after the dash
#: a tenth of a second), which they write at the end of every paragraph and MAXQDA
#: reads: the time the turn it ends has reached. Kept in the text; ingest reads the
#: time from it, and the names and vectors leave it out (:mod:`pipeline.stages.naming`).
TIME_MARK = re.compile(r"#(?P<time>(?:\d{1,2}:)?\d{1,2}:\d{2}(?:[-.,]\d{1,3})?)#")
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
_BREAK = re.compile(r"\r\n|\r|\n")
#: At most this many NULs (or one per this many characters in a longer text) may be
#: "a few" stray ones, when none is next to another
_FEW_NULS, _CHARS_PER_NUL = 3, 1000
_SAVE_AS_TEXT = "save the transcript as UTF-8 text (.txt) or as a Word document (.docx)"


#: What a terminal acts on instead of showing it: control characters but tab and newline
#: (an escape sequence recolours or retitles the terminal, a carriage return writes over
#: the line) and the direction marks, overrides and isolates, which show the text after
#: them reversed. A file name may hold any of them.
NOT_SHOWN = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def escaped(text: str, chars: re.Pattern[str] = NOT_SHOWN) -> str:
    """``text`` with each character ``chars`` matches written as its Python escape
    ("\\x1b", "\\u202e"): seen, not acted on, wherever the text is shown."""
    return chars.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)


def read_text_file(path: str | Path, encoding: str = "auto",
                   stray_nuls: bool = False) -> tuple[str, str]:
    """Read and decode a text file; return ``(text, encoding used)``."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise InputError(f"cannot be read ({exc.strerror})", path=path,
                         hint="check that the file exists and is readable") from exc
    return decode_bytes(data, encoding, path=path, stray_nuls=stray_nuls)


def decode_bytes(data: bytes, encoding: str = "auto", path: str | Path | None = None,
                 stray_nuls: bool = False) -> tuple[str, str]:
    """Decode ``data``; return ``(text, encoding used)``. Line endings are kept as they are.

    Raises :class:`InputError` for bytes that are not text in any encoding tried
    (or in the forced ``encoding``), or that look like a binary file. With
    ``stray_nuls``, a few isolated NUL characters are kept in the text for the caller
    to remove (see the module docstring); without it, any NUL is refused.
    """

    def checked(text: str, utf8: bool = False) -> str:
        return _checked(text, path, stray_nuls, utf8)

    if encoding != "auto":
        name = codecs.lookup(encoding).name
        if name == "utf-8" and data.startswith(codecs.BOM_UTF8):
            name = "utf-8-sig"
        try:
            return checked(data.decode(name)), name
        except UnicodeDecodeError as exc:
            raise InputError(
                f"cannot be decoded as {encoding} (invalid bytes at position {exc.start})",
                path=path, hint="set ingest.encoding to the file's encoding, or to 'auto'",
            ) from exc
    for bom, name in _BOMS:
        if data.startswith(bom):
            try:
                return checked(data.decode(name)), name
            except UnicodeDecodeError as exc:
                raise InputError(f"starts with a {name.upper()} byte-order mark but is not "
                                 f"valid {name.upper()} text", path=path,
                                 hint=_SAVE_AS_TEXT) from exc
    name = _utf16_without_bom(data)
    if name is not None:
        try:
            return checked(data.decode(name)), name
        except UnicodeDecodeError:
            raise _binary(path) from None
    # before guessing an encoding: a binary file is not "neither UTF-8 nor Windows-1252"
    utf8 = _is_utf8(data)
    _checked_nuls(data.decode("latin-1"), path, stray_nuls, utf8)   # one character per byte
    try:
        return checked(data.decode("utf-8"), utf8=True), "utf-8"
    except UnicodeDecodeError:
        pass
    name = MIXED if _has_utf8_lines(data) else "cp1252"
    try:
        return checked(data.decode(name)), name
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


def _checked(text: str, path: str | Path | None, stray_nuls: bool, utf8: bool = False) -> str:
    """``text``, unless it holds NULs (but a few stray ones, with ``stray_nuls``) or
    many control characters (a binary file)."""
    _checked_nuls(text, path, stray_nuls, utf8)
    if len(_CONTROL.findall(text)) > 0.05 * len(text):
        raise _binary(path, text)
    return text


def _checked_nuls(text: str, path: str | Path | None, stray_nuls: bool,
                  utf8: bool = False) -> None:
    """Refuse ``text`` with NULs in it, unless ``stray_nuls`` and they are a few
    isolated ones, or a few in bytes that are otherwise valid UTF-8 (``utf8``; see the
    module docstring). Two in a row are a binary file's mark, not a UTF-8 text's: three
    NULs pasted into one sentence cost a whole interview, skipped as binary."""
    count = text.count("\x00")
    if not count:
        return
    few = max(_FEW_NULS, len(text) // _CHARS_PER_NUL)
    if not stray_nuls or count > few or ("\x00\x00" in text and not utf8):
        raise _binary(path, text)


def _binary(path: str | Path | None, text: str = "") -> InputError:
    """The error for a binary file, naming the line of its first NUL if it has one."""
    at = text.find("\x00")
    if at < 0:
        return InputError("looks like a binary file, not text", path=path, hint=_SAVE_AS_TEXT)
    line = len(_BREAK.findall(text, 0, at)) + 1
    return InputError(f"looks like a binary file, not text: it has {text.count(chr(0))} NUL "
                      f"character(s), which text never has (the first on line {line})",
                      path=path, hint=_SAVE_AS_TEXT)
