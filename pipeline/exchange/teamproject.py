"""The team's own REFI-QDA project, when a run read its transcripts from it.

A team that keeps its interviews in MAXQDA, NVivo or ATLAS.ti gives Consensa the
project itself (``ingest: {paths: [project.qdpx]}``). Its export must then be that
project with Consensa's work added, not a new project holding only what Consensa
made: the team imports it and expects its own code system, codings, memos, sets and
variables next to the agreed codebook. :func:`team_project` finds the project the
run read (the run's manifest lists it for every case, with the project file's sha256
and each source's text's), checks that it is still there, and reads it as it is now
(the team may have saved it again after more coding): its XML tree, the other files of its
archive, and for each case the run read from it, the source element that holds the
case and whether its text is the very text the run read (so that the team's codings
and Consensa's can share one source). The project writer
(:func:`pipeline.exchange.refi.project_bytes`) merges it with Consensa's content.

Nothing is carried over when the run was de-identified (the project holds the real
names the run kept out), when it read more than one project, or when the project is
gone (or, for a run folder that kept only the file's sha256, has changed since):
each is said in words for the command's output.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from ..errors import InputError
from ..fsutil import file_sha256
from ..runfolder import RunFolder
from .qde import (
    MAX_RATIO,
    MAX_UNPACKED_BYTES,
    open_project,
    source_text,
    text_elements,
    xml_local,
)


@dataclass
class TeamSource:
    """The element of the team's project that holds one case the run read."""

    case_id: str
    element: object                 # the TextSource (or a recording's Transcript)
    name: str                       # the source's name in the project ("C02.txt")
    text: str | None                # its text as the project holds it
    #: whether it is a TextSource whose text is, character for character, the text the
    #: run read: only then do the team's codings and Consensa's share the source
    same: bool
    why: str = ""                   # why not, in words


@dataclass
class TeamProject:
    path: Path
    root: object                    # the project.qde tree (parsed safely, see qde.py)
    #: the archive's other files (the sources' texts, pictures, PDFs), by name in the zip
    members: dict[str, bytes] = field(default_factory=dict)
    sources: dict[str, TeamSource] = field(default_factory=dict)   # by case id

    @property
    def guid(self) -> dict[str, str]:
        """Case id -> the GUID of the team's source that holds it (same text only)."""
        return {c: s.element.get("guid") for c, s in self.sources.items() if s.same}


def team_project(run, *, max_bytes: int = MAX_UNPACKED_BYTES,
                 max_ratio: float = MAX_RATIO) -> tuple[TeamProject | None, list[str]]:
    """The REFI-QDA project ``run`` (a :class:`~pipeline.exchange.codes.RunData`) read
    its transcripts from, ready to carry into its export, or None; and what to tell
    the user about it (why it is not carried over, which sources differ)."""
    from ..stages.ingest import source_case_id

    inputs = [i for i in run.manifest.get("inputs") or [] if isinstance(i, dict)]
    projects = {str(i.get("path")): i for i in inputs
                if str(i.get("path") or "").lower().endswith(".qdpx")}
    if not projects:
        return None, []
    if ((run.manifest.get("deidentify") or {}).get("enabled")
            or any(i.get("deidentified") for i in inputs)):
        return None, ["the run was de-identified, so the project it read "
                      f"({', '.join(Path(p).name for p in projects)}) is not carried into the "
                      "export: it holds the names the run kept out; the export holds "
                      "Consensa's work only"]
    if len(projects) > 1:
        return None, [f"the run read {len(projects)} projects "
                      f"({', '.join(Path(p).name for p in sorted(projects))}); only a run read "
                      "from one project carries it into the export, so the export holds "
                      "Consensa's work only"]
    given, item = next(iter(projects.items()))
    path = RunFolder(run.folder).input_path(item)
    lost = (f"the project the run read ({given}) {{}}, so its codes, codings, memos, sets and "
            "variables are not in the export: it holds Consensa's work only")
    if path is None:
        return None, [lost.format("is no longer there")]
    recorded = {str(i.get("sha256")) for i in inputs
                if str(i.get("path")) == given and i.get("sha256")}
    resaved = bool(recorded) and recorded != {file_sha256(path)}
    by_text = all(i.get("text_sha256") for i in inputs if str(i.get("path")) == given)
    if resaved and not by_text:
        # a run folder written before each source's text had its own sha256
        return None, [lost.format("has changed since the run read it (its sha256 differs)")]
    try:
        root, _, _, archive = open_project(path, max_bytes, max_ratio)
    except InputError as exc:
        return None, [lost.format(f"could not be read again ({exc.reason})")]
    team = TeamProject(path, root)
    if archive is not None:
        for key, info in sorted(archive.members.items()):
            name = info.filename.replace("\\", "/")
            if name.endswith("/") or (key.endswith(".qde") and "/" not in key):
                continue
            parts = PurePosixPath(name).parts
            if parts and parts[0].casefold() == "sources":     # one folder, as REFI names it
                name = "/".join(("Sources", *parts[1:]))
            try:
                team.members[name] = archive.read(info)
            except InputError as exc:
                return None, [lost.format(f"could not be read again ({exc.reason})")]
    notes: list[str] = []
    if resaved:
        # the team went on working in its QDA program: its codings and memos as they
        # are now go into the export; each source's text is compared below
        notes.append(f"the project the run read ({path.name}) was saved again since; the "
                     "export carries it as it is now, and each source's text is compared "
                     "with the text the run read")
    elements, _ = text_elements(root)
    by_case: dict[str, list[tuple]] = {}
    for element, name, written, _owner in elements:
        by_case.setdefault(source_case_id(name), []).append((element, written))
    for case_id, found in by_case.items():
        if case_id not in run.sources:
            continue
        element, written = found[0]
        text, _ = source_text(element, archive)
        why = ""
        if len(found) > 1:
            why = f"{len(found)} sources of the project are named like case {case_id}"
        elif xml_local(element.tag) != "TextSource":
            why = "it is a recording's transcript, which holds no text selections"
        elif text is None:
            why = "the project does not hold its text"
        elif not run.exact.get(case_id):
            why = "the run's text of the case could not be read again"
        elif text != run.sources[case_id]:
            why = _difference(text, run.sources[case_id])
        team.sources[case_id] = TeamSource(case_id, element, written, text, not why, why)
    missing = sorted(c for c in run.sources if c not in team.sources)
    if missing and all(str(i.get("path")) == given for i in inputs):
        notes.append(f"{len(missing)} case(s) the run read are not sources of {path.name} "
                     f"any more ({', '.join(missing[:5])}); they are added as sources of "
                     "their own")
    return team, notes


def _difference(theirs: str, ours: str) -> str:
    """Where the project's text of a source first differs from the run's, in words."""
    at = next((k for k, (a, b) in enumerate(zip(theirs, ours)) if a != b),
              min(len(theirs), len(ours)))
    return (f"its text in the project differs from the text the run read (from character "
            f"{at}; {len(theirs)} against {len(ours)} characters)")


def selections_in(element) -> list:
    """The PlainTextSelections of a team's source."""
    return [c for c in element if xml_local(c.tag) == "PlainTextSelection"]
