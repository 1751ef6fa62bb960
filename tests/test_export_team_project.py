"""A run read from the team's own REFI-QDA project exports that project with Consensa's
work added; notes from the review carry the time they were written; sets of cases
follow the review's subgroup rule.

The project is built here, MAXQDA-style (upper-case GUIDs, a source named with its
file extension, codings by two coders, memos on a code, a document and the project,
document variables, sets), from the invented study of tests/study.py.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import uuid
import zipfile
from pathlib import Path
from xml.etree import ElementTree as ET
from xml.sax.saxutils import escape, quoteattr

import pandas as pd
import pytest
import yaml

from pipeline.cli import main
from pipeline.exchange.refi import NS_PROJECT, read_project
from tests.refi_schema import schema_errors
from tests.study import TOPICS, study_config, write_study

P = f"{{{NS_PROJECT}}}"
STAMP = "2025-03-14T10:22:31Z"
#: the team's code system: parent -> (colour, description, children)
CODES = {"Training": ("#FF0000", "Where the therapist learned (or did not) about tears.",
                      ["Silent programmes", "Learned on the job"]),
         "Support": ("#0000FF", "", ["Supervision"]),
         "Client": ("", "", [])}
#: (source, code path, sentence, coder)
CODINGS = [("case01.txt", "Training/Silent programmes", TOPICS["training"][0], "RH"),
           ("case01.txt", "Support/Supervision", TOPICS["supervision"][1], "JK"),
           ("case02", "Training/Learned on the job", TOPICS["training"][3], "RH"),
           ("case02", "Client", TOPICS["client"][3], "JK"),
           ("case03", "Support", TOPICS["supervision"][3], "RH")]
VARIABLES = {"orientation": "Text", "years_in_role": "Integer"}


def _g(*parts) -> str:
    """A stable upper-case GUID, as MAXQDA writes them."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, "/".join(parts))).upper()


def build_project(folder: Path, target: Path, *, form_feed_in: str = "",
                  on_sources: bool = False) -> dict:
    """The study's transcripts as a MAXQDA-style project at ``target``; returns the
    GUIDs and the quotes of its codings, for the checks. ``form_feed_in`` names a source
    whose text gets a form feed, which the run reads as a space (so its text differs);
    ``on_sources`` gives the variables' values on the sources themselves (MAXQDA's
    document variables) and writes no cases."""
    names = {f"case{k:02d}": (f"case{k:02d}.txt" if k == 1 else f"case{k:02d}")
             for k in range(1, 7)}
    texts = {names[f.stem]: f.read_text(encoding="utf-8")
             for f in sorted(folder.glob("case*.txt"))}
    if form_feed_in:
        texts[form_feed_in] = texts[form_feed_in].replace("Yeah, sure.", "Yeah,\x0csure.")
    users = {"RH": _g("user", "RH"), "JK": _g("user", "JK")}
    code = {}
    out = ['<?xml version="1.0" encoding="utf-8"?>',
           f'<Project xmlns="{NS_PROJECT}" name="Tears in therapy (team)" '
           f'origin="MAXQDA 2022" creatingUserGUID="{users["RH"]}" creationDateTime="{STAMP}">',
           "<Users>", *(f'<User guid="{g}" name="{n}"/>' for n, g in users.items()),
           "</Users><CodeBook><Codes>"]
    for parent, (colour, desc, kids) in CODES.items():
        code[parent] = _g("code", parent)
        out.append(f'<Code guid="{code[parent]}" name={quoteattr(parent)} isCodable="true"'
                   + (f' color="{colour}"' if colour else "") + ">")
        if desc:
            out.append(f"<Description>{escape(desc)}</Description>")
        if parent == "Training":
            out.append(f'<NoteRef targetGUID="{_g("note", "code")}"/>')
        for kid in kids:
            code[f"{parent}/{kid}"] = _g("code", parent, kid)
            out.append(f'<Code guid="{code[f"{parent}/{kid}"]}" name={quoteattr(kid)} '
                       'isCodable="true"/>')
        out.append("</Code>")
    out.append("</Codes></CodeBook><Variables>")
    out += [f'<Variable guid="{_g("var", n)}" name="{n}" typeOfVariable="{t}"/>'
            for n, t in VARIABLES.items()]
    out.append("</Variables>")

    def values(k: int) -> str:
        return (f'<VariableValue><VariableRef targetGUID="{_g("var", "orientation")}"/>'
                f'<TextValue>{"CBT" if k % 2 else "psychodynamic"}</TextValue></VariableValue>'
                f'<VariableValue><VariableRef targetGUID="{_g("var", "years_in_role")}"/>'
                f"<IntegerValue>{3 + 2 * k}</IntegerValue></VariableValue>")

    if not on_sources:
        out.append("<Cases>")
        for k, name in enumerate(texts):
            out.append(f'<Case guid="{_g("case", name)}" name={quoteattr(name)}>{values(k)}'
                       f'<SourceRef targetGUID="{_g("source", name)}"/></Case>')
        out.append("</Cases>")
    out.append("<Sources>")
    quotes = {}
    for name, text in texts.items():
        g = _g("source", name)
        out.append(f'<TextSource guid="{g}" name={quoteattr(name)} '
                   f'plainTextPath="internal://{g}.txt" creatingUser="{users["RH"]}" '
                   f'creationDateTime="{STAMP}">')
        for source, path, quote, who in CODINGS:
            if source != name:
                continue
            start = text.index(quote)
            sel = _g("selection", name, path)
            quotes[sel] = (g, quote)
            out.append(f'<PlainTextSelection guid="{sel}" startPosition="{start}" '
                       f'endPosition="{start + len(quote)}" creatingUser="{users[who]}" '
                       f'creationDateTime="{STAMP}"><Coding guid="{_g("coding", name, path)}" '
                       f'creatingUser="{users[who]}"><CodeRef targetGUID="{code[path]}"/>'
                       "</Coding></PlainTextSelection>")
        if name == "case02":
            out.append(f'<NoteRef targetGUID="{_g("note", "document")}"/>')
        if on_sources:
            out.append(values(list(texts).index(name)))
        out.append("</TextSource>")
    out.append("</Sources><Notes>")
    for key, who, body in (("code", "RH", "Split training into programme and placement?"),
                           ("document", "JK", "Member check done on 20 February."),
                           ("project", "RH", "Code participant speech only.")):
        out.append(f'<Note guid="{_g("note", key)}" name="Memo {key}" '
                   f'creatingUser="{users[who]}" creationDateTime="{STAMP}">'
                   f"<PlainTextContent>{escape(body)}</PlainTextContent></Note>")
    out.append("</Notes><Sets>")
    out.append(f'<Set guid="{_g("set", "sources")}" name="First interviews">'
               + "".join(f'<MemberSource targetGUID="{_g("source", n)}"/>'
                         for n in ("case01.txt", "case02")) + "</Set>")
    out.append(f'<Set guid="{_g("set", "codes")}" name="Core codes">'
               f'<MemberCode targetGUID="{code["Training"]}"/></Set>')
    out.append("</Sets><Description>The team's study of tears in therapy.</Description>"
               f'<NoteRef targetGUID="{_g("note", "project")}"/></Project>')
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("project.qde", "\n".join(out).encode("utf-8"))
        for name, text in texts.items():
            zf.writestr(f"sources/{_g('source', name)}.txt", text.encode("utf-8"))
    return {"code": code, "users": users, "quotes": quotes}


def _run_from_project(root: Path, **build) -> tuple[Path, Path, dict]:
    folder = write_study(root / "study")
    project = root / "project.qdpx"
    built = build_project(folder, project, **build)
    shutil.rmtree(folder)                   # the project is all the run reads
    cfg = study_config(root, ingest={"paths": [str(project)]})
    (root / "config.yaml").write_text(yaml.safe_dump(cfg))
    assert main(["run", str(root / "config.yaml"), "--out", str(root / "run"), "-q"]) == 0
    return root / "run", project, built


@pytest.fixture(scope="module")
def team_run(tmp_path_factory):
    return _run_from_project(tmp_path_factory.mktemp("team"))


def _export(run: Path, out: Path, capsys) -> tuple[ET.Element, dict[str, str], str]:
    capsys.readouterr()
    assert main(["export", "qdpx", str(run), "--out", str(out)]) == 0
    said = capsys.readouterr().out
    with zipfile.ZipFile(out) as zf:
        root = ET.fromstring(zf.read("project.qde"))
        files = {n: zf.read(n).decode("utf-8") for n in zf.namelist() if n != "project.qde"}
    return root, files, said


def _text_of(src: ET.Element, files: dict[str, str]) -> str:
    return files["Sources/" + src.get("plainTextPath").removeprefix("internal://")]


def test_the_teams_project_is_carried_into_the_export(team_run, tmp_path, capsys):
    run, _, built = team_run
    out = tmp_path / "team.qdpx"
    root, files, said = _export(run, out, capsys)
    assert schema_errors(out) == []
    assert "carried over from project.qdpx" in said
    # the project reads as the same project: its name, its description first
    assert root.get("name") == "Tears in therapy (team)"
    assert root.find(f"{P}Description").text.startswith("The team's study of tears")
    # its users, codes (hierarchy, colours, descriptions), notes, sets, variables
    users = {u.get("name"): u.get("guid") for u in root.iter(f"{P}User")}
    assert users["RH"] == built["users"]["RH"] and users["JK"] == built["users"]["JK"]
    top = list(root.find(f"{P}CodeBook/{P}Codes"))
    assert [c.get("name") for c in top[:3]] == list(CODES)
    training = top[0]
    assert training.get("guid") == built["code"]["Training"]
    assert training.get("color") == "#FF0000"
    assert training.find(f"{P}Description").text == CODES["Training"][1]
    assert [c.get("name") for c in training.findall(f"{P}Code")] == CODES["Training"][2]
    assert training.find(f"{P}NoteRef").get("targetGUID") == _g("note", "code")
    # Consensa's codes: one parent code of their own, beside the team's
    assert len(top) == 4 and top[3].get("name").startswith("Consensa: ")
    assert top[3].findall(f"{P}Code")
    notes = {n.get("guid"): n for n in root.iter(f"{P}Note")}
    assert {_g("note", k) for k in ("code", "document", "project")} <= set(notes)
    assert notes[_g("note", "document")].get("creationDateTime") == STAMP
    assert _g("note", "project") in {r.get("targetGUID") for r in root.findall(f"{P}NoteRef")}
    sets = {s.get("name") for s in root.iter(f"{P}Set")}
    assert {"First interviews", "Core codes"} <= sets
    names = [v.get("name") for v in root.iter(f"{P}Variable")]
    assert sorted(names) == sorted(VARIABLES)              # the team's, not twice
    # the sources keep their GUIDs and names ("case01.txt", not the case id)
    sources = {s.get("guid"): s for s in root.iter(f"{P}TextSource")}
    assert len(sources) == 6
    assert sources[_g("source", "case01.txt")].get("name") == "case01.txt"
    # every coding of the team's is there, on the same text, by its coder
    for sel_guid, (src_guid, quote) in built["quotes"].items():
        src = sources[src_guid]
        sel = next(s for s in src.iter(f"{P}PlainTextSelection") if s.get("guid") == sel_guid)
        text = _text_of(src, files)
        assert text[int(sel.get("startPosition")):int(sel.get("endPosition"))] == quote
    assert sources[_g("source", "case02")].find(f"{P}NoteRef").get("targetGUID") == \
        _g("note", "document")
    # ... and Consensa's codings beside them, on the same sources, at their segments
    seg = pd.read_parquet(run / "segments.parquet").set_index("segment_id")
    consensus = users["Consensa"]
    ours = [s for s in root.iter(f"{P}PlainTextSelection") if s.get("creatingUser") == consensus]
    assert ours
    for sel in ours:
        src = next(s for s in sources.values() if sel in list(s))
        text = _text_of(src, files)
        row = seg.loc[sel.get("name")]
        assert text[int(sel.get("startPosition")):int(sel.get("endPosition"))] == row["text"]
    # a REFI reader finds both coders' codings and Consensa's
    back = read_project(out)
    assert {"RH", "JK", "Consensa"} <= set(back.codings["coder"])
    assert len(back.codings[back.codings["coder"].isin(["RH", "JK"])]) == len(CODINGS)


def test_a_source_whose_text_differs_keeps_the_teams_codings_and_says_so(tmp_path, capsys):
    run, _, built = _run_from_project(tmp_path, form_feed_in="case02")
    out = tmp_path / "team.qdpx"
    root, files, said = _export(run, out, capsys)
    assert schema_errors(out) == []
    assert "1 source(s) of the project differ from the text the run read" in said
    assert "'case02'" in said
    sources = {s.get("name"): s for s in root.iter(f"{P}TextSource")}
    theirs, ours = sources["case02"], sources["case02 (as Consensa read it)"]
    # the team's source is as it was, with its codings on its own text
    assert theirs.get("guid") == _g("source", "case02")
    assert "\x0c" in _text_of(theirs, files)
    for sel in theirs.iter(f"{P}PlainTextSelection"):
        quote = built["quotes"][sel.get("guid")][1]
        text = _text_of(theirs, files)
        assert text[int(sel.get("startPosition")):int(sel.get("endPosition"))] == quote
    # Consensa's codings are on the text the run read
    seg = pd.read_parquet(run / "segments.parquet").set_index("segment_id")
    text = _text_of(ours, files)
    assert "\x0c" not in text and list(ours.iter(f"{P}PlainTextSelection"))
    for sel in ours.iter(f"{P}PlainTextSelection"):
        row = seg.loc[sel.get("name")]
        assert text[int(sel.get("startPosition")):int(sel.get("endPosition"))] == row["text"]


def test_a_missing_project_is_not_carried_over_and_says_so(team_run, tmp_path):
    """A project no longer there, or one changed since a run folder that recorded only
    the project file's sha256 (no text_sha256 per source), is not carried over."""
    from pipeline.exchange.codes import load_run
    from pipeline.exchange.teamproject import team_project

    run, project, _ = team_run
    data = load_run(run)
    assert team_project(data)[0] is not None
    changed = tmp_path / "changed.qdpx"
    shutil.copy(project, changed)
    with zipfile.ZipFile(changed, "a") as zf:         # the same texts, one file more
        zf.writestr("Sources/extra.txt", "added in the QDA program")
    older = [{k: v for k, v in i.items() if k != "text_sha256"}
             for i in data.manifest["inputs"]]
    for where, inputs, said in ((changed, older, "has changed since the run read it"),
                                (tmp_path / "gone.qdpx", data.manifest["inputs"],
                                 "is no longer there")):
        data.manifest["inputs"] = [{**i, "path": str(where)} for i in inputs]
        team, notes = team_project(data)
        assert team is None and said in notes[0] and "Consensa's work only" in notes[0]


def test_a_project_the_team_saved_again_still_exports_as_it_is_now(tmp_path, capsys):
    """The team went on coding in its QDA program and saved the project again: the
    file's sha256 changed, not the texts the run read, and the export stopped ("put
    the transcripts back"). Each source's text has its own sha256 in the manifest: the
    export carries the project as it is now, and says so."""
    run, project, _ = _run_from_project(tmp_path)
    inputs = json.loads((run / "manifest.json").read_text())["inputs"]
    assert all(i["text_sha256"] for i in inputs)
    with zipfile.ZipFile(project, "a") as zf:        # the same texts, one file more
        zf.writestr("Sources/extra.txt", "added in the QDA program")
    root, files, said = _export(run, tmp_path / "team.qdpx", capsys)
    assert "was saved again since" in said and "carried over from project.qdpx" in said
    assert "Sources/extra.txt" in files
    assert root.get("name") == "Tears in therapy (team)"


def test_sets_of_cases_follow_the_reviews_subgroup_rule(team_run, tmp_path, capsys):
    """years_in_role gives every case its own value: no set per year, and the review's
    subgroups compare no groups of it either; orientation makes two sets."""
    run, _, _ = team_run
    root, _, _ = _export(run, tmp_path / "team.qdpx", capsys)
    sets = {s.get("name") for s in root.iter(f"{P}Set")}
    assert {"orientation = CBT", "orientation = psychodynamic"} <= sets
    assert not [s for s in sets if s.startswith("years_in_role")]
    from pipeline.review.evidence import subgroup_attributes
    from pipeline.review.model import load_run as review_run

    assert set(subgroup_attributes(review_run(run))) == {"orientation"}


def test_review_notes_carry_the_time_they_were_written(review_run, tmp_path, capsys):
    run = review_run
    assert main(["review", "export", str(run), "--judges", "ana,ben", "--auditor", "dee"]) == 0
    for step in (["--theme", "0", "--decision", "reject", "--comment", "not a theme"],
                 ["--theme", "1", "--decision", "rename", "--name", "Help",
                  "--core-idea", "Their supervisor helped."],
                 ["--theme", "2", "--decision", "accept"],
                 ["--domain", "0", "--decision", "accept"],
                 ["--domain", "1", "--decision", "accept"]):
        assert main(["review", "resolve", str(run), *step, "--by", "team"]) == 0
    assert main(["review", "audit", str(run), "--theme", "1", "--by", "dee",
                 "--comment", "check the quotes"]) == 0
    con = sqlite3.connect(run / "review" / "decisions.sqlite")
    when = {r[0]: r[1] for r in con.execute("SELECT item, at FROM consensus")}
    audited = con.execute("SELECT at FROM audit_comments").fetchone()[0]
    con.close()
    started = json.loads((run / "manifest.json").read_text())["started_at"]

    def z(at: str) -> str:
        return at.replace("+00:00", "Z")

    for source in (run, run / "review" / "codebook.yaml"):
        if source != run:
            assert main(["review", "apply", str(run)]) == 0
        root, _, _ = _export(source, tmp_path / "out.qdpx", capsys)
        notes = {n.get("name"): n.get("creationDateTime") for n in root.iter(f"{P}Note")}

        def note(prefix: str, notes: dict = notes) -> str:
            return notes[next(k for k in notes if k.startswith(prefix))]

        assert note("Auditor dee (round 1)") == z(audited)
        assert note("Consensus comment (round 1)") == z(when["theme:0"])
        if source == run:           # the codebook.yaml keeps no time of its core ideas
            assert note("Core idea (the judges)") == z(when["theme:1"])
            assert note("Rejected: theme 0") == z(when["theme:0"])
        assert z(started) not in {note("Auditor dee"), note("Consensus comment")}


def test_the_export_compared_with_its_run_reads_consensas_branch_as_no_level(team_run,
                                                                             tmp_path, capsys):
    """Consensa's codes sit under their own top-level code in the team's project: read
    as the domain level, every one of Consensa's codings was in one domain and the
    comparison of the run with its own export gave a domain-level agreement of 0.00."""
    from pipeline.compare import compare, summary_text

    run, _, _ = team_run
    _export(run, tmp_path / "team.qdpx", capsys)
    res = compare(run, tmp_path / "team.qdpx")
    # the team's codes lie over a few segments too: near full agreement, not 0.00
    assert res.levels["domain"].metrics["ari"] > 0.8
    assert res.levels["category"].metrics["ari"] > 0.9
    domains = set(res.codes.codebook["domain"])
    assert set(CODES) <= domains and not any(d.startswith("Consensa: ") for d in domains)
    assert "is Consensa's own branch of the project; it is not read as a level" in \
        summary_text(res)


def test_consensas_codings_and_coders_of_no_shared_code_are_not_coders_agreeing(
        team_run, tmp_path, capsys):
    """The run compared with its export into the team's project: Consensa's user was
    counted as a coder beside the team's (kappa 0.00, alpha below 0, as if they had
    disagreed). It is left out, and coders who share no code are not paired."""
    from pipeline.compare import compare, summary_text

    run, _, _ = team_run
    _export(run, tmp_path / "team.qdpx", capsys)
    res = compare(run, tmp_path / "team.qdpx", level="domain")
    assert "Consensa" in res.codes.coders
    # RH and JK code no category alike (Training's and Support's children, Client),
    # but both code under Support: agreement at the domain level only, between them
    assert "category" not in res.coders
    assert res.coders["domain"].coders == ["JK", "RH"]
    text = summary_text(res)
    assert "(qdpx; 8 codes, 2 coders and Consensa's 'Consensa')" in text
    assert "between coders: 'Consensa' is Consensa's own user" in text
    assert "left out of the agreement between coders" in text
    assert "between 2 coders" in text
    notes = " | ".join(res.notes)
    assert "between coders (category level): 'JK', 'RH' share no code with the other " \
           "coder(s)" in notes
    assert "between coders (category level): not computed: no two of the coders share a " \
           "code" in notes
    # one human coder and Consensa's codings: no agreement, and why
    from pipeline.compare import agreeing_coders

    kept, said = agreeing_coders(res.placed[res.placed["coder"] != "JK"],
                                 ["Consensa", "RH"], "domain", None)
    assert kept == [] and said == ["not computed: one human coder ('RH')"]


def test_document_variables_are_not_written_again_on_consensas_cases(tmp_path, capsys):
    """MAXQDA gives its variables on each document: the run's case attributes came from
    them, and the export kept them there and wrote them again on a case of its own for
    each source, every value twice."""
    run, _, _ = _run_from_project(tmp_path, on_sources=True)
    cases = pd.read_csv(run / "cases.csv")
    assert list(cases.columns) == ["case_id", "orientation", "years_in_role"]
    root, _, _ = _export(run, tmp_path / "team.qdpx", capsys)
    assert schema_errors(tmp_path / "team.qdpx") == []
    sources = list(root.iter(f"{P}TextSource"))
    assert len(sources) == 6
    assert all(len(s.findall(f"{P}VariableValue")) == 2 for s in sources)
    # Consensa's cases hold their source (a case's core ideas are linked to it), and no
    # value the source gives already
    held = list(root.iter(f"{P}Case"))
    assert len(held) == 6 and all(c.find(f"{P}SourceRef") is not None for c in held)
    assert not [v for c in held for v in c.findall(f"{P}VariableValue")]
    assert sorted(v.get("name") for v in root.iter(f"{P}Variable")) == sorted(VARIABLES)
    # the sets of cases are made from the values all the same
    assert {"orientation = CBT", "orientation = psychodynamic"} <= {
        s.get("name") for s in root.iter(f"{P}Set")}


def test_a_run_read_from_an_earlier_export_replaces_the_sets_consensa_wrote(team_run, tmp_path,
                                                                            capsys):
    """A run made from a project Consensa exported, exported in turn: the sets the first
    export wrote ("typical categories", "orientation = CBT") came twice, same names,
    same members. Consensa's own sets are replaced, keeping their GUIDs; the team's
    stay as they were."""
    run, _, _ = team_run
    first, _, _ = _export(run, tmp_path / "first.qdpx", capsys)
    before = {s.get("name"): s.get("guid") for s in first.iter(f"{P}Set")}
    assert {"orientation = CBT", "First interviews"} <= set(before)
    cfg = study_config(tmp_path, name="again", ingest={"paths": [str(tmp_path / "first.qdpx")]})
    (tmp_path / "again.yaml").write_text(yaml.safe_dump(cfg))
    assert main(["run", str(tmp_path / "again.yaml"), "--out", str(tmp_path / "again"),
                 "-q"]) == 0
    root, _, said = _export(tmp_path / "again", tmp_path / "second.qdpx", capsys)
    assert schema_errors(tmp_path / "second.qdpx") == []
    names = [s.get("name") for s in root.iter(f"{P}Set")]
    assert len(names) == len(set(names)) and set(before) <= set(names)
    after = {s.get("name"): s for s in root.iter(f"{P}Set")}
    for name, g in before.items():
        assert after[name].get("guid") == g
    # the team's sets as they were; Consensa's hold this export's members
    assert [m.get("targetGUID") for m in after["Core codes"]
            if m.tag == f"{P}MemberCode"] == [_g("code", "Training")]
    branch = [c for c in root.find(f"{P}CodeBook/{P}Codes")
              if c.get("name") == "Consensa: again (Consensa's proposal)"][0]
    ours = {c.get("guid") for c in branch.iter(f"{P}Code")}
    labelled = [m.get("targetGUID") for n, s in after.items() if n.endswith(" categories")
                for m in s.findall(f"{P}MemberCode")]
    assert labelled and set(labelled) <= ours
    assert "were replaced by this export's sets of the same name, keeping their GUIDs" in said
