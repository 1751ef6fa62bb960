"""Reading a REFI-QDA project safely: the archive, the XML, the text sources.

A ``.qdpx`` is a zip holding ``project.qde`` and the sources under ``Sources/``; a
bare ``.qde`` is the XML alone. What is here is shared by the two readers of a
project: :func:`pipeline.exchange.refi.read_project` (the human codes, for
comparing them with a run) and the ingest stage (the text sources as transcripts,
:func:`text_sources`). It depends on nothing of the orchestration, so a stage can
use it.

A .qdpx is refused before anything is unpacked when a member's name would leave the
archive (zip slip), when the members read would unpack to more than
:data:`MAX_UNPACKED_BYTES` or at a compression ratio above :data:`MAX_RATIO` (zip
bomb); XML is parsed with defusedxml (no DTDs, no entities, nothing fetched).
"""

from __future__ import annotations

import lzma
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from ..errors import InputError

#: Members read from a .qdpx (project.qde and text sources) may unpack to at most this.
MAX_UNPACKED_BYTES = 200 * 1024 * 1024
#: ... at a compression ratio of at most this (for members of 1 MB or more).
MAX_RATIO = 100
MAX_MEMBERS = 100_000
#: Compression methods Python's zipfile unpacks, and names of some it does not.
_ZIP_METHODS = {zipfile.ZIP_STORED: "stored", zipfile.ZIP_DEFLATED: "deflate",
                zipfile.ZIP_BZIP2: "bzip2", zipfile.ZIP_LZMA: "lzma"}
_OTHER_ZIP_METHODS = {9: "Deflate64", 93: "Zstandard", 95: "xz", 96: "JPEG", 97: "WavPack",
                      98: "PPMd", 99: "AES encryption"}


def xml_local(tag: str) -> str:
    """A tag without its namespace: REFI-QDA tools write the same elements in
    different namespaces (or none), so elements are found by local name."""
    return tag.rsplit("}", 1)[-1]


def xml_children(el, name: str):
    return [c for c in el if xml_local(c.tag) == name]


def xml_child(el, name: str):
    return next((c for c in el if xml_local(c.tag) == name), None)


class Archive:
    """The members of a .qdpx, checked before any is read."""

    def __init__(self, path: Path, max_bytes: int, max_ratio: float) -> None:
        self.shown = str(path)
        self.max_bytes = max_bytes
        self.max_ratio = max_ratio
        self.read_bytes = 0
        try:
            self.zip = zipfile.ZipFile(path)
            infos = self.zip.infolist()
        except (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError) as exc:
            raise InputError("is not a valid .qdpx project (not a zip archive, or damaged)",
                             path=self.shown, hint="export the project again from your QDA "
                             "software (REFI-QDA project, .qdpx)") from exc
        if len(infos) > MAX_MEMBERS:
            raise InputError(f"holds {len(infos)} files; at most {MAX_MEMBERS} are accepted",
                             path=self.shown, hint="export the project again without media")
        self.members: dict[str, zipfile.ZipInfo] = {}
        for info in infos:
            name = info.filename.replace("\\", "/")
            parts = PurePosixPath(name).parts
            if name.startswith("/") or ".." in parts or (parts and ":" in parts[0]):
                raise InputError(
                    f"was not opened: it holds a file named '{info.filename}' that points "
                    "outside the archive (a \"zip slip\"; the file may have been tampered "
                    "with)", path=self.shown,
                    hint="export the project again from your QDA software; do not open this "
                         "file elsewhere")
            self.members[name.casefold()] = info

    def find(self, name: str) -> zipfile.ZipInfo | None:
        return self.members.get(name.replace("\\", "/").casefold())

    def read(self, info: zipfile.ZipInfo) -> bytes:
        ratio = info.file_size / max(info.compress_size, 1)
        if self.read_bytes + info.file_size > self.max_bytes or \
                (info.file_size >= 1024 * 1024 and ratio > self.max_ratio):
            raise InputError(
                f"was not opened: '{info.filename}' would unpack to "
                f"{info.file_size / 1e6:.1f} MB (compression ratio {ratio:.0f}); the limits are "
                f"{self.max_bytes / 1e6:.0f} MB in all and a ratio of {self.max_ratio:.0f} "
                "(a \"zip bomb\" is refused)", path=self.shown,
                hint="export the project again from your QDA software, without embedded media")
        data = self._unpack(info)
        if len(data) > info.file_size:
            raise InputError(f"was not opened: '{info.filename}' is larger than its zip entry "
                             "says (the archive may have been tampered with)", path=self.shown,
                             hint="export the project again from your QDA software")
        self.read_bytes += len(data)
        return data

    def _unpack(self, info: zipfile.ZipInfo) -> bytes:
        """The bytes of ``info`` (at most one more than its entry says), or a
        :class:`DamagedPart` saying what is wrong with it and what to do."""
        part = f"its part '{info.filename}'"
        again = "export the project again from your QDA software"
        if info.flag_bits & 0x1 or info.compress_type == 99:
            raise DamagedPart(f"was not opened: {part} is encrypted (password-protected); "
                               "Consensa reads projects without a password", path=self.shown,
                               hint=f"{again} without a password")
        if info.compress_type not in _ZIP_METHODS:
            method = _OTHER_ZIP_METHODS.get(info.compress_type, "unknown")
            raise DamagedPart(
                f"was not opened: {part} is packed with compression method "
                f"{info.compress_type} ({method}), which Consensa cannot unpack (it reads "
                f"{', '.join(_ZIP_METHODS.values())})", path=self.shown,
                hint=f"{again}, or unzip it and zip it again with standard (deflate) "
                     "compression")
        try:
            with self.zip.open(info) as fh:
                return fh.read(info.file_size + 1)
        except zipfile.BadZipFile as exc:    # a bad CRC-32, a broken local header
            problem = "its checksum does not match its contents" if "CRC" in str(exc) \
                else str(exc)
            raise DamagedPart(f"is damaged: {part} cannot be read ({problem})",
                               path=self.shown, hint="copy the file again from where it was "
                               f"saved (the copy may be incomplete), or {again}") from exc
        except (zlib.error, EOFError, OSError, ValueError, NotImplementedError, RuntimeError,
                lzma.LZMAError) as exc:      # corrupt compressed data, an unknown feature
            raise DamagedPart(f"is damaged: {part} cannot be unpacked ({exc})",
                               path=self.shown, hint="copy the file again from where it was "
                               f"saved (the copy may be incomplete), or {again}") from exc


class DamagedPart(InputError):
    """A member of a .qdpx that cannot be unpacked: damaged, encrypted, or packed with a
    method Python cannot unpack. For a source text it is a note (the selections keep
    their positions), for project.qde the error."""


def parse_xml(data: bytes, shown: str):
    from defusedxml import DefusedXmlException
    from defusedxml.ElementTree import ParseError, fromstring

    try:
        return fromstring(data, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except DefusedXmlException as exc:
        raise InputError(f"was not read: its XML declares a DTD or entities "
                         f"({type(exc).__name__}), which REFI-QDA projects never need and "
                         "which can be used to attack the reader", path=shown,
                         hint="export the project again from your QDA software") from exc
    except ParseError as exc:
        raise InputError(f"is not well-formed XML ({exc})", path=shown,
                         hint="export the project again from your QDA software") from exc


@dataclass
class ProjectSource:
    """One source of a REFI-QDA project, for reading it as a transcript."""

    name: str                 # the source's name in the project (unique: see text_sources)
    text: str | None          # its plain text; None when the project does not hold it
    why: str = ""             # why there is no text
    #: the variables of the project's cases that hold this source, and the source's
    #: own (a participant's orientation, years in practice): variable name -> value
    attributes: dict[str, str] = field(default_factory=dict)


#: Sources that can hold transcripts (``<Transcript>``, text like a text source's).
MEDIA_SOURCES = ("AudioSource", "VideoSource")
#: The value elements of a REFI-QDA VariableValue.
_VALUE_TAGS = ("TextValue", "BooleanValue", "IntegerValue", "FloatValue", "DateValue",
               "DateTimeValue")


def text_sources(path: str | Path, *, max_bytes: int = MAX_UNPACKED_BYTES,
                 max_ratio: float = MAX_RATIO) -> tuple[list[ProjectSource], dict[str, int],
                                                        list[str]]:
    """The text sources of a REFI-QDA project in document order, the number of its
    other sources by kind ("PDFSource": 2), and notes on case variables that could not
    be given to a source.

    A team that keeps its transcripts in NVivo, ATLAS.ti or MAXQDA exports them as one
    .qdpx; each text source is one interview. Two sources with one name are told apart
    by their GUID, as :func:`read_project` does, so that no case is silently merged with
    another. An audio or video source's transcripts (``<Transcript>``: an interview
    recorded and transcribed in the QDA program) are text sources too, named after the
    recording. The participants' attributes, which CQR's subgroup comparisons need,
    come in two places, and both are read: the project's cases (``<Case>``, NVivo's
    classified cases), each giving its variables to the sources it holds
    (``<SourceRef>``), and the sources themselves (``<VariableValue>`` on a
    ``<TextSource>``, as MAXQDA's document variables can come; on an audio or video
    source, for each of its transcripts). Two places giving one source different
    values of a variable (two cases, or a case and the source) leave that variable
    blank for the source, with a note, rather than choose one.
    """
    root, _, _, archive = open_project(path, max_bytes, max_ratio)
    found: list[ProjectSource] = []
    by_guid: dict[str, list[ProjectSource]] = {}
    own_values: list[tuple[ProjectSource, object]] = []
    elements, other = text_elements(root)
    for element, name, _, owner in elements:
        text, why = source_text(element, archive)
        found.append(ProjectSource(name, text, why))
        by_guid.setdefault(guid_key(owner), []).append(found[-1])
        if xml_local(element.tag) == "Transcript":   # the schema keeps variables on the
            own_values += [(found[-1], vv)             # recording; any written here are read
                           for vv in xml_children(element, "VariableValue")]
    return found, other, _case_variables(root, by_guid, own_values)


def text_elements(root) -> tuple[list[tuple], dict[str, int]]:
    """``(element, name, name as written, owner's GUID)`` of every element of a project
    that holds an interview's text, in document order, and the number of the other
    sources by kind: a text source, or a transcript inside an audio or video source
    (an interview recorded and transcribed in the QDA program), whose owner is the
    recording. Names are unique: a repeated one gets the element's GUID beside it; a
    recording with several transcripts names each ("Focus group.mp3 (transcript 2)").
    The readers of a project's texts and of its codes both name them so, so that codes
    place on the cases a run read from the same project."""
    out: list[tuple] = []
    names: set[str] = set()
    other: dict[str, int] = {}

    def add(element, name: str, owner: str | None) -> None:
        unique = f"{name} ({element.get('guid')})" if name in names else name
        names.add(unique)
        out.append((element, unique, name, owner))

    sources = xml_child(root, "Sources")
    for src in (list(sources) if sources is not None else []):
        kind_of = xml_local(src.tag)
        name = src.get("name") or src.get("guid") or f"source {len(out) + 1}"
        if kind_of == "TextSource":
            add(src, name, src.get("guid"))
            continue
        transcripts = xml_children(src, "Transcript") if kind_of in MEDIA_SOURCES else []
        if not transcripts:
            other[kind_of] = other.get(kind_of, 0) + 1
        for k, transcript in enumerate(transcripts, 1):
            add(transcript, name if len(transcripts) == 1 else
                f"{name} ({transcript.get('name') or f'transcript {k}'})", src.get("guid"))
    return out, other


def guid_key(value: str | None) -> str:
    """A GUID as references compare it: braces, case and surrounding spaces ignored."""
    return (value or "").strip().strip("{}").lower()


def _case_variables(root, by_guid: dict[str, list[ProjectSource]],
                    own_values: list[tuple[ProjectSource, object]] = ()) -> list[str]:
    """Give each source the variable values of the project's cases that hold it and
    its own (see :func:`text_sources`); the notes say what could not be given.
    ``own_values`` are ``(source, VariableValue)`` written on a transcript itself."""
    variables = xml_child(root, "Variables")
    var_name = {guid_key(v.get("guid")): (v.get("name") or "").strip()
                for v in (xml_children(variables, "Variable") if variables is not None else [])}
    #: (source, variable) -> value -> where it was given ("case 'Ana'", "the source")
    given: dict[tuple[str, str], dict[str, list[str]]] = {}
    undefined = 0                      # values whose variable the project does not define

    def read(holder) -> list[tuple[str, str]]:
        nonlocal undefined
        values: list[tuple[str, str]] = []
        for vv in xml_children(holder, "VariableValue"):
            value = variable_value(vv, var_name)
            undefined += value is None
            values += value or []
        return values

    def give(source: ProjectSource, values: list[tuple[str, str]], where: str) -> None:
        for name, value in values:
            places = given.setdefault((source.name, name), {}).setdefault(value, [])
            if where not in places:
                places.append(where)

    unknown_sources = 0
    cases = xml_child(root, "Cases")
    for case in (xml_children(cases, "Case") if cases is not None else []):
        values = read(case)
        label = f"case '{case.get('name') or case.get('guid') or '?'}'"
        for ref in xml_children(case, "SourceRef"):
            held = by_guid.get(guid_key(ref.get("targetGUID")))
            if held is None:
                unknown_sources += 1
                continue
            for source in held:
                give(source, values, label)
    sources = xml_child(root, "Sources")
    not_text: dict[str, int] = {}      # source name -> its variable values not used
    for src in (list(sources) if sources is not None else []):
        values = read(src)
        held = by_guid.get(guid_key(src.get("guid")))
        if held is None:
            if values:
                not_text[src.get("name") or src.get("guid") or "?"] = len(values)
            continue
        for source in held:
            give(source, values, "the source")
    for source, vv in own_values:
        value = variable_value(vv, var_name)
        undefined += value is None
        give(source, value or [], "the source")
    notes = []
    conflicts: list[str] = []
    named = {s.name: s for held in by_guid.values() for s in held}
    for (source, name), values in given.items():
        if len(values) == 1:
            named[source].attributes[name] = next(iter(values))
        else:
            conflicts.append(f"'{name}' of '{source}' (" + " / ".join(
                f"{value} from {' and '.join(where)}" for value, where in
                sorted(values.items())) + ")")
    if conflicts:
        notes.append(f"{len(conflicts)} variable value(s) differ between the cases that hold "
                     "one source, or between a source and its case, and were left blank: "
                     f"{'; '.join(sorted(conflicts)[:10])}"
                     f"{' ...' if len(conflicts) > 10 else ''}: give each source one value "
                     "(on one case, or on the source)")
    if unknown_sources:
        notes.append(f"{unknown_sources} case reference(s) point at sources that are not text "
                     "sources of the project; their variables were not used")
    if not_text:
        listed = sorted(not_text)
        notes.append(f"the variable values of {len(listed)} source(s) that are not text "
                     f"were not used ({sum(not_text.values())} value(s): "
                     f"{', '.join(listed[:10])}{' ...' if len(listed) > 10 else ''}): "
                     "Consensa reads transcripts as text")
    if undefined:
        notes.append(f"{undefined} variable value(s) refer to a variable the project does "
                     "not define (no named <Variable> with that GUID) and were not used: "
                     "export the project again from your QDA software")
    return notes


def variable_value(vv, var_name: dict[str, str]) -> list[tuple[str, str]] | None:
    """``[(variable, value)]`` of a ``<VariableValue>`` (empty when it holds no value:
    a blank is nothing lost), or None when it names no variable of the project."""
    ref = xml_child(vv, "VariableRef")
    name = var_name.get(guid_key(ref.get("targetGUID") if ref is not None else ""))
    if not name:
        return None
    value = next((xml_child(vv, t) for t in _VALUE_TAGS if xml_child(vv, t) is not None), None)
    if value is None or not (value.text or "").strip():
        return []
    return [(name, value.text.strip())]


def open_project(path: str | Path, max_bytes: int, max_ratio: float):
    """``(root element, path as shown, "qdpx" or "qde", the archive or None)`` of a
    project file, after the checks every reader of one needs (a zip bomb, a DTD, a
    file that is not a project)."""
    path = Path(path)
    shown = str(path)
    if not path.is_file():
        raise InputError("file not found", path=shown,
                         hint="give the .qdpx file your QDA software exported")
    archive = None
    if zipfile.is_zipfile(path):
        archive = Archive(path, max_bytes, max_ratio)
        info = archive.find("project.qde") or next(
            (i for n, i in archive.members.items() if n.endswith(".qde") and "/" not in n), None)
        if info is None:
            raise InputError("holds no project.qde: it is not a REFI-QDA project",
                             path=shown, hint="export a REFI-QDA project (.qdpx) from your "
                             "QDA software")
        xml = archive.read(info)
        kind = "qdpx"
    else:
        if path.suffix.lower() == ".qdpx":
            raise InputError("is not a valid .qdpx project (not a zip archive, or damaged)",
                             path=shown, hint="export the project again from your QDA software")
        if path.stat().st_size > max_bytes:
            raise InputError(f"is larger than {max_bytes / 1e6:.0f} MB", path=shown,
                             hint="export the project again without embedded content")
        xml = path.read_bytes()
        kind = "qde"
    root = parse_xml(xml, shown)
    if xml_local(root.tag) != "Project":
        hint = ("this looks like a codebook (.qdc): it has codes but no codings; export the "
                "whole project (.qdpx)" if xml_local(root.tag) == "CodeBook" else
                "export a REFI-QDA project (.qdpx) from your QDA software")
        raise InputError(f"is not a REFI-QDA project (its root element is "
                         f"<{xml_local(root.tag)}>)", path=shown, hint=hint)
    return root, shown, kind, archive


def source_text(src, archive: Archive | None) -> tuple[str | None, str]:
    content = xml_child(src, "PlainTextContent")
    if content is not None and content.text is not None:
        return content.text, ""
    where = src.get("plainTextPath") or ""
    if not where:
        return None, "it has no plain text (no PlainTextContent and no plainTextPath)"
    if where.startswith("internal://"):
        if archive is None:
            return None, (f"its text is inside a .qdpx ({where}), but a bare .qde was given "
                          "(give the .qdpx for exact placing)")
        info = archive.find("Sources/" + where[len("internal://"):])
        if info is None:
            return None, f"its text {where} is missing from the .qdpx"
        from ..textio import decode_bytes

        try:
            data = archive.read(info)
        except DamagedPart as exc:
            return None, f"its text {where} could not be unpacked ({exc.reason})"
        try:
            return decode_bytes(data, "auto", path=f"{archive.shown}:{info.filename}")[0] \
                .removeprefix("\ufeff"), ""
        except InputError as exc:
            return None, f"its text {where} could not be decoded ({exc.reason})"
    return None, (f"its text is kept outside the project ({where}; export the project with "
                  "its sources embedded for exact placing)")
