"""The CQR analysis of a run (``analysis: consensa.CQR.v1``, pipeline/analysis.py),
end to end on the invented study: domains from the protocol, the frame set apart,
categories with names their quotes contain, honest labels, flags, core ideas, and
the protocol file a team edits and passes back."""

from __future__ import annotations

import re
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from markupsafe import escape

from pipeline.cli import main
from pipeline.runfolder import RunFolder, read_raw_csv
from pipeline.stages.coreideas import count_words
from pipeline.stages.cqr import CQRConfig, cqr_markdown, frequency_label
from pipeline.stages.naming import name_occurs_in
from tests.study import study_config, write_study


def _run(root: Path, **sections) -> Path:
    folder = root / "study"
    if not folder.exists():
        write_study(folder)
    cfg = study_config(folder, analysis="consensa.CQR.v1", **sections)
    path = root / f"config-{len(list(root.glob('config-*')))}.yaml"
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    out = root / f"run-{path.stem}"
    assert main(["run", str(path), "--out", str(out)]) == 0
    return out


@pytest.mark.parametrize("greeting", [False, True])
def test_answers_without_their_questions_take_the_domains_of_the_protocol_given(
        tmp_path, capsys, greeting):
    """Transcripts of the participants' words only (the questions were not transcribed),
    or of a greeting and then the participant's story, with the team's protocol in the
    config: the areas' questions place the answers, and the run says so. Before, no
    segment had a domain (or every one answered the greeting, in the frame) and the run
    stopped."""
    from tests.study import TOPICS

    folder = write_study(tmp_path / "study")
    for path in folder.glob("*.txt"):
        lines = path.read_text(encoding="utf-8").splitlines()
        kept = [line for line in lines if line.startswith("Therapist:")]
        if greeting:                          # "Interviewer: Thank you for joining me today."
            kept.insert(0, lines[0])
        path.write_text("\n\n".join(kept), encoding="utf-8")
    # the protocol's wording, as a team writes it (the test's embedder knows only the
    # answers' words)
    questions = {"training": "What did your training teach you about crying in session?",
                 "supervision": "What did your supervisor say?",
                 "client": "How did the client respond when you cried?"}
    areas = [{"name": topic.capitalize(), "questions": [questions[topic]]} for topic in TOPICS]
    out = _run(tmp_path, protocol={"areas": areas})
    printed = capsys.readouterr().out
    seg = RunFolder.open(out).segments()
    frame = RunFolder.open(out).domains().query("kind == 'frame'")["domain_id"].tolist()
    assert seg["question_domain_id"].isin([-1, *frame]).all()
    assert greeting == seg["question_domain_id"].isin(frame).any()
    placed = RunFolder.open(out).manifest["counts"]["segments_placed_by_content"]
    assert placed >= 0.9 * len(seg)
    assert f"note: {placed} segments answer no question of the protocol" in printed
    # most answers about each topic went to that topic's domain
    topic_of = {s: t for t, sentences in TOPICS.items() for s in sentences}
    for topic in TOPICS:
        rows = seg[seg["domain_name"] == topic.capitalize()]
        said = [topic_of[s] for text in rows["text"] for s in topic_of if s in text]
        assert said.count(topic) >= 0.7 * len(said) > 0, topic


def test_a_study_without_questions_is_told_where_to_write_its_protocol(tmp_path, capsys):
    folder = write_study(tmp_path / "study")
    for path in folder.glob("*.txt"):
        kept = [line for line in path.read_text(encoding="utf-8").splitlines()
                if line.startswith("Therapist:")]
        path.write_text("\n\n".join(kept), encoding="utf-8")
    out = _run(tmp_path)
    printed = capsys.readouterr().out
    assert (f"protocol:   {out / 'protocol.yaml'} (no interviewer question was found: write "
            "the interviews' topic areas there and pass it as protocol.file)") in printed
    assert "No interviewer question was found" in (out / "protocol.yaml").read_text()


@pytest.fixture(scope="module")
def cqr_run(tmp_path_factory) -> Path:
    return _run(tmp_path_factory.mktemp("cqr"))


def test_domains_start_from_the_interviewers_questions(cqr_run):
    folder = RunFolder.open(cqr_run)
    domains = folder.domains()
    prompts = pd.read_csv(cqr_run / "protocol_prompts.csv", keep_default_na=False)
    asked = set(prompts["question"].str.rstrip("?"))
    areas = domains[domains["kind"] == "area"]
    assert len(areas) >= 2
    # each protocol domain is named after a question the interviewer asked
    assert all(name in asked for name in areas["name"])
    frame = domains[domains["kind"] == "frame"]
    assert len(frame) == 1 and not frame["in_cross_analysis"].iat[0]
    assert frame["frequency_label"].iat[0] == ""          # the frame is not a finding
    # a follow-up by its words ("it"), asked in every case and answered apart from the
    # training question, is not pushed into the nearest area: it opens its own
    supervision = prompts[prompts["question"] == "Did you bring it to supervision?"]
    assert len(supervision) == 6 and set(supervision["kind"]) == {"main"}
    training = prompts[prompts["question"].str.startswith("Did your training prepare")]
    assert supervision["area_id"].nunique() == 1 and training["area_id"].nunique() == 1
    assert set(supervision["area_id"]) != set(training["area_id"])


def assert_counts_trace_to_segments(run: Path) -> None:
    """Every count of a CQR run folder's categories and domains is the count of rows of
    its segments table: a category's or subcategory's segments, cases, counted cases
    and reassigned outliers, and a domain's segments moved in and out (from the domain
    of the question they answer)."""
    folder = RunFolder.open(run)
    seg = folder.segments()
    cats = folder.table("categories")
    for c in cats.itertuples():
        top = int(c.parent_id) < 0
        mine = seg[(seg["theme"] == int(c.theme_id)) if top
                   else (seg["subcategory_id"] == int(c.category_id))]
        counts = mine["counted"] if top else mine["subcategory_counted"]
        assert sorted(mine["segment_id"]) == sorted(c.segment_ids), c.name
        assert int(c.n_segments) == len(mine) and int(c.n_cases) == mine["case_id"].nunique()
        assert sorted(c.counted_cases) == sorted(set(mine.loc[counts, "case_id"])), c.name
        if top:
            assert int(c.n_reassigned) == int(mine["reassigned"].sum()), c.name
    domains = folder.domains()
    moved = seg["domain_id"] != seg["question_domain_id"]
    assert int(seg["moved_domain"].sum()) <= int(moved.sum())
    for d in domains.itertuples():
        assert int(d.n_segments) == int((seg["domain_id"] == d.domain_id).sum())
        assert int(d.n_moved_in) == int((moved & (seg["domain_id"] == d.domain_id)).sum())
        assert int(d.n_moved_out) == int((moved & (seg["question_domain_id"] == d.domain_id)).sum())


def test_every_count_traces_to_the_segments_table(cqr_run):
    assert_counts_trace_to_segments(cqr_run)
    seg = RunFolder.open(cqr_run).segments()
    assert {"subcategory_id", "subcategory_counted", "question_domain_id"} <= set(seg.columns)
    assert (seg.loc[seg["moved_domain"], "question_domain_id"]
            != seg.loc[seg["moved_domain"], "domain_id"]).all()


def test_no_category_is_made_of_the_interview_frame(cqr_run):
    folder = RunFolder.open(cqr_run)
    seg, themes, domains = folder.segments(), folder.themes(), folder.domains()
    frame_id = int(domains.loc[domains["kind"] == "frame", "domain_id"].iat[0])
    assert frame_id not in set(themes["domain_id"])
    in_frame = seg[seg["domain_id"] == frame_id]
    assert len(in_frame) and (in_frame["theme"] == -1).all()
    # and no frame segment counts toward any category
    assert not seg.loc[seg["domain_id"] == frame_id, "counted"].any()


def test_every_category_has_a_name_its_quotes_contain(cqr_run):
    folder = RunFolder.open(cqr_run)
    seg = folder.segments().set_index("segment_id")
    cats = folder.table("categories")
    assert len(cats)
    for r in cats.itertuples():
        assert r.name.strip(), r
        quotes = seg.loc[list(r.segment_ids), "text"].tolist()
        assert name_occurs_in(r.name, quotes), (r.name, quotes[:2])


def test_labels_count_only_the_counted_cases_and_flags_follow_their_rules(cqr_run):
    folder = RunFolder.open(cqr_run)
    seg = folder.segments().set_index("segment_id")
    cats = folder.table("categories")
    n_total = folder.segments()["case_id"].nunique()
    for r in cats.itertuples():
        assert r.frequency_label == frequency_label(len(r.counted_cases), n_total, CQRConfig())
        assert r.label_if_reassigned_counted == frequency_label(r.n_cases, n_total, CQRConfig())
        assert set(r.counted_cases) <= set(r.cases)
        shares = seg.loc[list(r.segment_ids), "case_id"].value_counts(normalize=True)
        assert ("single story" in list(r.flags)) == bool(shares.max() > 0.5), r
    # the themes table (the review's unit) carries the same honest label
    themes = folder.themes()
    top = cats[cats["kind"] == "category"].set_index("theme_id")
    for t in themes.itertuples():
        assert t.frequency_label == top.loc[t.theme_id, "frequency_label"]
        assert list(t.flags) == list(top.loc[t.theme_id, "flags"])


def test_core_ideas_are_short_and_trace_back_to_the_case_and_domain(cqr_run):
    folder = RunFolder.open(cqr_run)
    seg = folder.segments().set_index("segment_id")
    ideas = folder.table("core_ideas")
    domains = folder.domains()
    in_cross = set(domains.loc[domains["in_cross_analysis"], "domain_id"])
    assert len(ideas)
    for r in ideas.itertuples():
        assert r.domain_id in in_cross
        assert 0 < count_words(r.core_idea) <= 40       # "…" between pieces is no word
        assert len(r.segment_ids) >= 1
        assert (seg.loc[list(r.segment_ids), "case_id"] == r.case_id).all()
        assert (seg.loc[list(r.segment_ids), "domain_id"] == r.domain_id).all()
    # every case that speaks in a domain has a core idea there
    spoken = seg[seg["domain_id"].isin(in_cross)].reset_index()[["case_id", "domain_id"]]
    assert set(map(tuple, spoken.drop_duplicates().to_numpy())) == \
        set(zip(ideas["case_id"], ideas["domain_id"]))


def test_the_cqr_table_core_idea_traces_to_its_segments_and_is_the_one_judges_see(cqr_run):
    """Every sentence of an illustrative core idea comes from a segment the table
    names (of the row's case and category), and the judges' workbook and web pages
    (themes.core_idea) show the text the table shows."""
    from pipeline.stages.coreideas import GAP, tidy_utterance
    folder = RunFolder.open(cqr_run)
    seg = folder.segments().set_index("segment_id")
    table, cats, themes = folder.table("cqr"), folder.table("categories"), folder.themes()
    members = dict(zip(cats["category_id"], cats["segment_ids"]))
    for r in table.itertuples():
        ids = list(r.quote_segment_ids)
        assert ids and r.quote_segment_id == ids[0]
        assert set(ids) <= set(members[r.category_id])
        assert (seg.loc[ids, "case_id"] == r.quote_case).all()
        tidied = " ".join(tidy_utterance(seg.at[i, "text"]) for i in ids)
        for sentence in r.quote.split(GAP):
            assert sentence in tidied, (sentence, ids)
    top = table[table["level"] == "category"]
    shown = dict(zip(top["category"], top["quote"]))
    assert themes["core_idea"].tolist() == [shown[n] for n in themes["name"]]


def test_the_cqr_table_shows_subcategories_flags_and_the_label_outliers_would_give():
    table = pd.DataFrame([
        {"domain": "Training", "category": "Never mentioned", "frequency_label": "typical",
         "n_cases": 4, "cases_total": 6, "quote": "It never | came up.", "quote_case": "c1",
         "quote_segment_id": "c1:1:0", "level": "category", "flags": ["single story"],
         "label_if_reassigned_counted": "general"},
        {"domain": "Training", "category": "On the job", "frequency_label": "variant",
         "n_cases": 2, "cases_total": 6, "quote": "I learned it.", "quote_case": "c2",
         "quote_segment_id": "c2:1:0", "level": "subcategory", "flags": [],
         "label_if_reassigned_counted": "variant"},
    ])
    md = cqr_markdown(table).splitlines()
    assert md[0].endswith("| Flags |")
    assert "single story; general if reassigned outliers counted" in md[2]
    assert "It never \\| came up." in md[2]
    assert md[3].startswith("|  | ↳ On the job | variant | 2/6 |")


def test_a_stance_subcategory_is_shown_with_its_pole():
    """The two halves of a category split by the participants' judgement carry phrase
    names that seldom say the judgement: the table says which pole each stands for."""
    row = {"domain": "Training", "frequency_label": "variant", "n_cases": 2,
           "cases_total": 6, "quote": "It helped.", "quote_case": "c2",
           "quote_segment_id": "c2:1:0", "flags": [], "label_if_reassigned_counted": "variant"}
    table = pd.DataFrame([
        {**row, "category": "Role plays", "level": "category", "pole": ""},
        {**row, "category": "Tutor's advice", "level": "subcategory", "pole": "helpful"},
        {**row, "category": "On the job", "level": "subcategory", "pole": ""},
    ])
    md = cqr_markdown(table).splitlines()
    assert md[2].startswith("| Training | Role plays | variant |")
    assert md[3].startswith("|  | ↳ Tutor's advice (stance: helpful) | variant |")
    assert md[4].startswith("|  | ↳ On the job | variant |")


def test_the_protocol_file_passed_back_gives_the_same_domains(cqr_run, tmp_path):
    folder = RunFolder.open(cqr_run)
    protocol = cqr_run / "protocol.yaml"
    assert protocol.is_file()
    again = _run(cqr_run.parent, protocol={"file": str(protocol)})
    want = folder.domains()
    got = RunFolder.open(again).domains()
    areas = lambda d: list(d.loc[d["kind"] == "area", "name"])      # noqa: E731
    assert areas(got) == areas(want)
    # a team's edit is what the next run uses: rename an area
    data = yaml.safe_load(protocol.read_text(encoding="utf-8"))
    area = next(a for a in data["areas"] if not a["frame"])
    area["name"] = "Training and supervision"
    edited = tmp_path / "protocol.yaml"
    edited.write_text(yaml.safe_dump(data), encoding="utf-8")
    renamed = _run(cqr_run.parent, protocol={"file": str(edited)})
    assert "Training and supervision" in set(RunFolder.open(renamed).domains()["name"])


def test_an_area_of_the_protocol_file_no_question_matched_is_named_in_the_summary(
        cqr_run, tmp_path, capsys):
    """A team's protocol file can list a question no interviewer asked in words near
    it: it holds no segment, and the run says which area and what to do, rather than
    leave the team to find an empty domain in the report; no domain is proposed for it,
    which the judges would have had to settle in every round."""
    data = yaml.safe_load((cqr_run / "protocol.yaml").read_text(encoding="utf-8"))
    data["areas"].insert(1, {"name": "Holidays abroad", "frame": False,
                             "questions": ["Where did you travel last summer, by train or air?"]})
    edited = tmp_path / "protocol.yaml"
    edited.write_text(yaml.safe_dump(data), encoding="utf-8")
    capsys.readouterr()
    run = _run(cqr_run.parent, protocol={"file": str(edited)})
    out = capsys.readouterr().out
    assert "1 area of the protocol matched no question in any interview, so it proposes " \
           "no domain: 'Holidays abroad'" in out
    domains = RunFolder.open(run).domains()
    assert "Holidays abroad" not in set(domains["name"]) and (domains["n_segments"] > 0).all()
    assert "Holidays abroad" in (run / "protocol.yaml").read_text(encoding="utf-8")
    # a run whose areas all matched says nothing of it
    capsys.readouterr()
    _run(cqr_run.parent, protocol={"file": str(cqr_run / "protocol.yaml")})
    assert "matched no question" not in capsys.readouterr().out


def test_an_empty_inferred_area_is_not_sent_to_a_protocol_file(cqr_run, monkeypatch, capsys):
    """An inferred area is made of questions the interviewer asked, so "add the
    interviewer's own wordings to the protocol file" is wrong advice when its domain is
    empty (its answers were small talk, the frame, or moved by content; 8 such areas in
    a run on 133 counselling sessions): the run says so without sending the user to a
    file they never wrote."""
    import pipeline.cli as cli

    monkeypatch.setattr(cli, "_empty_protocol_domains", lambda run: ["Holidays abroad"])
    capsys.readouterr()
    _run(cqr_run.parent)
    out = capsys.readouterr().out
    assert "1 inferred area kept no answer segment, so it proposes no domain: " \
           "'Holidays abroad' (protocol_prompts.csv lists their questions)" in out
    assert "protocol file" not in out


def test_a_broken_protocol_file_stops_the_run_naming_file_and_line(tmp_path, capsys):
    write_study(tmp_path / "study")
    bad = tmp_path / "protocol.yaml"
    bad.write_text("areas:\n  - name: Training\n    questions: []\n", encoding="utf-8")
    cfg = study_config(tmp_path / "study", analysis="consensa.CQR.v1",
                       protocol={"file": str(bad)})
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    assert main(["run", str(path), "--out", str(tmp_path / "run")]) != 0
    err = capsys.readouterr().err
    assert "protocol.yaml" in err and "line" in err and "Traceback" not in err
    assert not (tmp_path / "run").exists()


def test_an_unknown_analysis_is_refused_naming_the_key(tmp_path, capsys):
    write_study(tmp_path / "study")
    cfg = study_config(tmp_path / "study", analysis="consensa.CQR.v9")
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    assert main(["validate", str(path)]) != 0
    assert "analysis" in capsys.readouterr().err


def test_the_run_summary_states_the_reassigned_share(tmp_path, capsys):
    out = _run(tmp_path)
    printed = capsys.readouterr().out
    manifest = RunFolder.open(out).manifest
    c = manifest["counts"]
    share = c["reassigned"] / c["segment_segments"]
    assert f"reassigned outliers: {c['reassigned']} ({share:.1%})" in printed
    assert f"interview frame: {c['frame_segments']} (set apart)" in printed
    assert manifest["reassigned_share"] == round(share, 4)
    assert np.isclose(manifest["outlier_share"], c["unassigned"] / c["segment_segments"],
                      atol=1e-4)
    # the report counts what the summary counts: the frame is set apart, not unassigned
    assert c["frame_segments"] > 0
    html = (out / "report.html").read_text(encoding="utf-8")
    n = c["segment_segments"]
    assert f"({c['unassigned']} of {n})" in re.search(
        r"Unassigned segments</dt>\s*<dd>([^<]*)</dd>", html).group(1)
    assert f"({c['frame_segments']} of {n})" in re.search(
        r"Interview frame \(set apart\)</dt>\s*<dd>([^<]*)</dd>", html).group(1)
    assert f"the {c['frame_segments']} segments of the interview frame" in html
    caption = re.search(r"<figcaption>Each dot is a segment(.*?)</figcaption>", html, re.S).group(1)
    assert re.search(r"light grey = unassigned \((\d+) segments?\)", caption).group(1) == \
        str(c["unassigned"])
    assert re.search(r"the interview frame, set apart [^(]*\((\d+) segments?\)",
                     caption).group(1) == str(c["frame_segments"])


def test_the_report_shows_the_protocol_and_the_core_ideas(cqr_run):
    html = (cqr_run / "report.html").read_text(encoding="utf-8")
    ideas = RunFolder.open(cqr_run).table("core_ideas")
    assert 'id="protocol"' in html and 'id="core-ideas"' in html
    assert "cqr.count_reassigned_above" in html
    first = ideas["core_idea"].iat[0]
    import html as htmllib
    assert htmllib.escape(first, quote=False).split(".")[0] in html


@pytest.mark.slow
def test_the_demo_proposes_what_a_cqr_team_could_adopt(tmp_path):
    """The demo (configs/demo.yaml) with the real model: domains follow its protocol,
    the frame is set apart, every name is a phrase its quotes contain, every single
    story is flagged, and every case has core ideas."""
    root = Path(__file__).resolve().parent.parent
    out = tmp_path / "demo"
    assert main(["run", str(root / "configs" / "demo.yaml"), "--out", str(out)]) == 0
    folder = RunFolder.open(out)
    domains, cats, seg = folder.domains(), folder.table("categories"), folder.segments()
    areas = domains[domains["kind"] == "area"]
    assert len(areas) >= 8                 # the demo's protocol has ten main questions
    assert any("training" in n.lower() for n in areas["name"])
    assert any("supervision" in n.lower() for n in areas["name"])
    frame = set(domains.loc[domains["kind"] == "frame", "domain_id"])
    assert frame and not (set(cats["domain_id"]) & frame)
    by_id = seg.set_index("segment_id")
    for r in cats.itertuples():
        quotes = by_id.loc[list(r.segment_ids), "text"].tolist()
        assert name_occurs_in(r.name, quotes), r.name
        top_share = by_id.loc[list(r.segment_ids), "case_id"].value_counts(normalize=True).max()
        assert ("single story" in list(r.flags)) == bool(top_share > 0.5)
    ideas = folder.table("core_ideas")
    assert set(ideas["case_id"]) == set(seg["case_id"])


# --- the local language model, end to end against a fake server on loopback -------

@contextmanager
def _llm_server(answer_core_idea: bool, names: str = "distinct"):
    """A fake OpenAI-compatible server. For a category: a name and definition of its
    own ("distinct", numbered in the order asked), the same name for every category
    ("same"), or HTTP 500 ("http_500"). For a core idea: the first ten words of the
    case's first text (close to the participant's words), or prose that is no JSON
    when told not to answer."""
    import json
    import threading
    from http.server import BaseHTTPRequestHandler

    from tests.test_llm import Server, chat, raw

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
            self.server.bodies.append(body)
            user = body["messages"][-1]["content"]
            if "core_idea" in body["messages"][0]["content"] + user:
                if not answer_core_idea:
                    return chat("I cannot summarise this.")(self)
                first = next(json.loads(line) for line in user.splitlines()
                             if line.startswith('"'))
                return chat(json.dumps({"core_idea": " ".join(first.split()[:10])}))(self)
            if names == "http_500":
                return raw(500, {"error": {"message": "model runner crashed"}})(self)
            n = len(self.server.bodies)
            name = "Learning about tears" + (f" number {n}" if names == "distinct" else "")
            chat(json.dumps({"name": name,
                             "definition": f"What the therapists learned about crying ({n})."}))(self)

        def log_message(self, *args):
            pass

    server = Server(("127.0.0.1", 0), Handler)
    server.bodies = []
    server.base_url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                     daemon=True).start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def test_a_local_model_names_categories_and_writes_core_ideas_and_every_call_is_logged(
        tmp_path, capsys):
    from pipeline.exchange.codes import load_run
    from pipeline.exchange.refi import codebook_from_run, iter_codes

    with _llm_server(answer_core_idea=True) as server:
        llm = {"name": "consensa.LocalLLM.v1", "model": "test-model",
               "base_url": server.base_url, "timeout_s": 5}
        out = _run(tmp_path, llm=llm)
    folder = RunFolder.open(out)
    cats, ideas = folder.table("categories"), folder.table("core_ideas")
    assert cats["name"].str.startswith("Learning about tears number ").all()
    assert (cats["extractive_name"] != cats["name"]).all()        # the phrase name is kept
    assert cats["definition"].str.startswith("What the therapists learned about crying").all()
    assert (ideas["core_idea"] != ideas["extractive_core_idea"]).any()
    log = (out / "llm_log.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(log) == len(server.bodies) == len(cats) + len(ideas)
    c = folder.manifest["counts"]
    assert c["llm_calls"] == len(log) and c["llm_answered"] == len(log)
    assert folder.manifest["llm"]["reasons"] == {} and folder.manifest["llm"]["not_asked"] == 0
    printed = capsys.readouterr().out
    assert f"language model: {len(log)} of {len(log)} answered" in printed
    assert "extractive names and core ideas kept" not in printed
    # only quotes and keywords leave the process: no case id, no file name
    sent = "\n".join(m["content"] for b in server.bodies for m in b["messages"])
    assert "case01" not in sent and ".txt" not in sent
    # the model's definition and Consensa's own name reach the report and the export
    import html
    report = html.unescape((out / "report.html").read_text(encoding="utf-8"))
    top = folder.themes()
    for r in top.itertuples():
        assert r.definition in report and r.extractive_name in report
    assert "Extractive name" in report
    descriptions = {code.name: code.description
                    for _, code in iter_codes(codebook_from_run(load_run(out, sources=False)))}
    for r in top.itertuples():
        assert descriptions[r.name].startswith(r.definition)
        assert f"Extractive name: \u201c{r.extractive_name}\u201d" in descriptions[r.name]


def test_one_model_name_for_several_categories_gives_back_the_extractive_names(
        tmp_path, capsys):
    """The model names every category alike: in one domain or across domains, two
    codes of one name read as one, so every category keeps its extractive name."""
    with _llm_server(answer_core_idea=True, names="same") as server:
        llm = {"name": "consensa.LocalLLM.v1", "model": "test-model",
               "base_url": server.base_url, "timeout_s": 5}
        out = _run(tmp_path, llm=llm)
    folder = RunFolder.open(out)
    cats = folder.table("categories")
    per_domain = cats.groupby("domain_id")["category_id"].transform("size")
    assert (per_domain > 1).any() and cats["domain_id"].nunique() > 1   # within and across
    assert (cats["name"] == cats["extractive_name"]).all()
    assert (cats["definition"] == "").all()
    assert cats["name"].is_unique, list(cats["name"])
    assert folder.manifest["llm"]["duplicate_names"] == len(cats)
    assert f"{len(cats)} x a name another category of the run also has" \
        in capsys.readouterr().out


def test_a_model_that_fails_every_call_is_visible_and_its_reasons_are_kept(tmp_path, capsys):
    with _llm_server(answer_core_idea=False, names="http_500") as server:
        llm = {"name": "consensa.LocalLLM.v1", "model": "test-model", "fallback": "extractive",
               "base_url": server.base_url, "timeout_s": 5}
        out = _run(tmp_path, llm=llm)
    folder = RunFolder.open(out)
    n_cats, n_ideas = len(folder.table("categories")), len(folder.table("core_ideas"))
    n = n_cats + n_ideas
    assert folder.manifest["llm"]["reasons"] == {"http_error": n_cats, "bad_format": n_ideas}
    assert folder.manifest["llm"]["details"] == {"HTTP 500": n_cats, "bad format": n_ideas}
    line = (f"language model: 0 of {n} answered ({max(n_cats, n_ideas)} x "
            f"{'HTTP 500' if n_cats >= n_ideas else 'bad format'}")
    printed = capsys.readouterr().out
    assert line in printed and "extractive names and core ideas kept" in printed
    assert line in (out / "report.html").read_text(encoding="utf-8")


def test_a_model_that_stops_the_run_keeps_its_log_and_says_where(tmp_path, capsys):
    with _llm_server(answer_core_idea=True, names="http_500") as server:
        write_study(tmp_path / "study")
        cfg = study_config(tmp_path / "study", analysis="consensa.CQR.v1",
                           llm={"name": "consensa.LocalLLM.v1", "model": "test-model",
                                "base_url": server.base_url, "timeout_s": 5})
        path = tmp_path / "c.yaml"
        path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
        assert main(["run", str(path), "--out", str(tmp_path / "run")]) != 0
    err = capsys.readouterr().err
    assert not (tmp_path / "run").exists()
    kept = tmp_path / "run-llm_log.jsonl"
    assert f"every prompt and answer is in {kept}" in " ".join(err.split())
    lines = kept.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 1 and '"status": "error"' in lines[0]
    assert "HTTP 500: model runner crashed" in err and "What to do: or" not in err
    assert "naming category 0" in err
    assert "Traceback" not in err


def test_a_bad_answer_falls_back_to_the_extractive_core_idea_when_asked(tmp_path):
    with _llm_server(answer_core_idea=False) as server:
        llm = {"name": "consensa.LocalLLM.v1", "model": "test-model", "fallback": "extractive",
               "base_url": server.base_url, "timeout_s": 5}
        out = _run(tmp_path, llm=llm)
    folder = RunFolder.open(out)
    ideas = folder.table("core_ideas")
    assert (ideas["core_idea"] == ideas["extractive_core_idea"]).all()
    assert folder.manifest["counts"]["llm_fallbacks"] == len(ideas)


def test_a_model_endpoint_that_is_down_stops_the_run_with_a_clear_error(tmp_path, capsys):
    import socket

    with socket.socket() as s:              # a loopback port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    write_study(tmp_path / "study")
    cfg = study_config(tmp_path / "study", analysis="consensa.CQR.v1",
                       llm={"name": "consensa.LocalLLM.v1", "model": "m",
                            "base_url": f"http://127.0.0.1:{port}/v1", "timeout_s": 2})
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    assert main(["run", str(path), "--out", str(tmp_path / "run")]) != 0
    err = capsys.readouterr().err
    assert "Traceback" not in err and str(port) in err
    assert not (tmp_path / "run").exists()
    assert (tmp_path / "run-llm_log.jsonl").is_file()          # what was asked is kept
    assert str(tmp_path / "run-llm_log.jsonl") in " ".join(err.split())


def test_a_model_server_that_is_down_is_given_up_after_a_few_calls(tmp_path, capsys):
    import socket

    from pipeline.stages.llm import MAX_CONSECUTIVE_UNREACHABLE

    with socket.socket() as s:              # a loopback port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = _run(tmp_path, llm={"name": "consensa.LocalLLM.v1", "model": "m",
                              "fallback": "extractive",
                              "base_url": f"http://127.0.0.1:{port}/v1", "timeout_s": 2})
    folder = RunFolder.open(out)
    stats = folder.manifest["llm"]
    assert stats["calls"] == MAX_CONSECUTIVE_UNREACHABLE
    assert stats["not_asked"] > 0 and "not asked again" in stats["stopped"]
    assert len((out / "llm_log.jsonl").read_text(encoding="utf-8").splitlines()) == \
        MAX_CONSECUTIVE_UNREACHABLE
    cats = folder.table("categories")
    assert (cats["name"] == cats["extractive_name"]).all()
    captured = capsys.readouterr()
    assert f"{stats['not_asked']} not asked: {MAX_CONSECUTIVE_UNREACHABLE} calls in a row " \
        "found no server (connection refused)" in captured.out


def test_a_remote_model_is_refused_before_any_work(tmp_path, capsys):
    write_study(tmp_path / "study")
    cfg = study_config(tmp_path / "study", analysis="consensa.CQR.v1",
                       llm={"name": "consensa.LocalLLM.v1", "model": "m",
                            "base_url": "http://203.0.113.5:11434/v1"})
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    assert main(["run", str(path), "--out", str(tmp_path / "run")]) != 0
    err = capsys.readouterr().err
    assert "llm.base_url" in err or "allow_remote" in err


def test_stability_of_a_cqr_run_regroups_within_domains_and_flags_unstable_categories(
        cqr_run, tmp_path, monkeypatch):
    import shutil

    import pipeline.stability as stability
    from pipeline.config import StabilityConfig

    run = Path(shutil.copytree(cqr_run, tmp_path / "run"))
    settings = StabilityConfig(resamples=4, leave_out=1, bootstrap=False)
    # the invented study's categories are made of the same sentences in every case:
    # regrouped within their domains, every one comes back
    result = stability.stability_for_run(run, settings)
    assert result.table["stable"].all() and result.reproduced == 1.0
    assert not any("unstable" in list(f) for f in RunFolder.open(run).table("categories")["flags"])

    # a regrouping that finds none of them marks every category unstable, in every table
    real = stability.cqr_regroup
    calls = []

    def lost(segments, domains, cfg):
        regroup = real(segments, domains, cfg)

        def none_back(x, index, seed):
            calls.append(len(index))
            return np.full(len(index), -1) if len(calls) > 1 else regroup(x, index, seed)
        return none_back

    monkeypatch.setattr(stability, "cqr_regroup", lost)
    result = stability.stability_for_run(run, settings)
    assert calls and not result.table["stable"].any()
    folder = RunFolder.open(run)
    cats = folder.table("categories")
    for r in cats.itertuples():
        assert list(r.flags).count("unstable") == (1 if r.parent_id < 0 else 0)
    assert all("unstable" in list(f) for f in folder.themes()["flags"])
    assert "unstable" in (run / "cqr_table.md").read_text(encoding="utf-8")
    # the summary names every file the check rewrote
    assert stability.written_files(folder) == [
        "stability.csv", "stability.md", "themes.csv (column 'stability')", "categories.csv",
        "cqr_table.csv", "cqr_table.md", "report.html"]


def test_a_large_domain_finds_its_categories_on_a_case_stratified_sample():
    from pipeline.stages.crossanalysis import CrossAnalysisConfig, cross_analyse, stratified_sample

    rng = np.random.default_rng(0)
    n = 600
    cases = np.array([f"c{i % 12}" for i in range(n)])
    topic = rng.integers(0, 3, n)
    X = rng.normal(size=(3, 32))[topic] + 0.3 * rng.normal(size=(n, 32))
    seg = pd.DataFrame({"segment_id": [f"s{i}" for i in range(n)], "case_id": cases,
                        "text": ["one two three four five six seven eight nine ten"] * n})
    sample = stratified_sample(cases, 200, seed=0)
    assert 190 <= len(sample) <= 210 and len(set(cases[sample])) == 12   # every case kept
    full = cross_analyse(seg, X, np.zeros(n, int), CrossAnalysisConfig(stance=False))
    cfg = CrossAnalysisConfig(stance=False, max_fit_segments=200)
    part = cross_analyse(seg, X, np.zeros(n, int), cfg)
    assert "fitted_on_sample" not in full.counts
    assert part.counts["fitted_on_sample"] + part.counts["joined_after_sample"] == n
    # the segments left out of the fit join their category, as reassigned segments
    joined = part.reassigned.sum()
    assert joined >= part.counts["joined_after_sample"] - part.counts["unassigned"]
    # and the sample finds the same categories as the whole domain
    same = pd.crosstab(full.category, part.category)
    assert (same.max(axis=1) / same.sum(axis=1)).min() > 0.95


def test_a_run_says_when_its_categories_were_found_on_a_sample_or_a_layout(tmp_path, capsys):
    write_study(tmp_path / "study", n_cases=30)        # domains of more than 100 segments
    out = _run(tmp_path, crossanalysis={"max_fit_segments": 100, "layout_above": 50})
    printed = capsys.readouterr().out
    c = RunFolder.open(out).manifest["counts"]
    assert c["crossanalysis_fitted_on_sample"] > 0
    assert c["crossanalysis_joined_after_sample"] > 0
    assert (f"categories found on a case-stratified sample of "
            f"{c['crossanalysis_fitted_on_sample']} segments") in printed
    report = (out / "report.html").read_text(encoding="utf-8")
    assert "Categories found on a sample" in report
    # each sampled domain's sample (about 100 segments) was clustered on a layout
    assert c["crossanalysis_laid_out_domains"] >= 1
    assert c["crossanalysis_laid_out_segments"] >= c["crossanalysis_fitted_on_sample"]
    assert (f"({c['crossanalysis_laid_out_segments']} segments) clustered on a UMAP layout"
            in printed)
    assert "Categories found on a layout" in report


def _crowded(n: int, k: int = 6, noise: float = 3.0) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """``n`` segments of ``k`` topics in 384 dimensions, each its topic's direction under
    noise three times as long (cosine to it about 0.3, as a turn is to its topic), told
    by 40 cases (seeded)."""
    rng = np.random.default_rng(0)
    topic = rng.integers(0, k, n)
    X = rng.normal(size=(k, 384))[topic] + noise * rng.normal(size=(n, 384))
    seg = pd.DataFrame({"segment_id": [f"s{i}" for i in range(n)],
                        "case_id": [f"c{i % 40}" for i in range(n)],
                        "text": ["one two three four five six seven eight nine ten"] * n})
    return seg, X, topic


def test_a_large_domain_whose_groups_crowd_together_is_clustered_on_a_layout():
    """In many dimensions the distances between many segments crowd together and the
    density clusterer calls most of them outliers; a layout of the domain (as the
    whole-corpus themes have) finds its topics."""
    from sklearn.metrics import adjusted_mutual_info_score

    from pipeline.stages.crossanalysis import CrossAnalysisConfig, cross_analyse

    seg, X, topic = _crowded(400)
    n = len(seg)
    plain = cross_analyse(seg, X, np.zeros(n, int),
                          CrossAnalysisConfig(stance=False, layout_above=None))
    laid = cross_analyse(seg, X, np.zeros(n, int),
                         CrossAnalysisConfig(stance=False, layout_above=200))
    assert "laid_out_domains" not in plain.counts
    assert laid.counts["laid_out_domains"] == 1 and laid.counts["laid_out_segments"] == n
    assert adjusted_mutual_info_score(topic, plain.category) < 0.6
    assert (plain.category < 0).sum() > 0.1 * n
    assert adjusted_mutual_info_score(topic, laid.category) > 0.95
    assert (laid.category < 0).sum() < 0.02 * n
    # a domain no larger than layout_above is clustered as before: on the vectors
    small = cross_analyse(seg, X, np.zeros(n, int),
                          CrossAnalysisConfig(stance=False, layout_above=n))
    assert np.array_equal(small.category, plain.category)


def test_a_domain_of_a_few_hundred_segments_is_clustered_on_a_layout_by_default():
    """A study without a protocol makes one domain of a few hundred segments; on the
    vectors most of them were called outliers (PDPilot: 54% left out or reassigned),
    so the default lays such a domain out too, while the tens of segments of a CQR
    sample's domain are clustered as they are."""
    from sklearn.metrics import adjusted_mutual_info_score

    from pipeline.stages.crossanalysis import CrossAnalysisConfig, cross_analyse

    seg, X, topic = _crowded(300)
    n = len(seg)
    out = cross_analyse(seg, X, np.zeros(n, int), CrossAnalysisConfig(stance=False))
    assert out.counts["laid_out_domains"] == 1
    assert adjusted_mutual_info_score(topic, out.category) > 0.9
    assert (out.category < 0).sum() < 0.05 * n
    few, Xf, _ = _crowded(60)
    small = cross_analyse(few, Xf, np.zeros(60, int), CrossAnalysisConfig(stance=False))
    assert "laid_out_domains" not in small.counts


@pytest.mark.parametrize("text, little", [
    ("Yeah, I guess so.", True), ("Yes, I have.", True), ("I think I could do that.", True),
    ("-you know,-", True), ("I don't know.", True), ("A little bit.", True),
    ("Um, maybe like a four or five.", True), ("Thanks for having me. All right.", True),
    ("E-exactly. [sighs]", True), ("", True),
    ("Three weeks, one day.", False), ("I cried in the session.", False),
    ("I can't stop drinking.", False), ("My supervisor was kind.", False),
    ("I-I got the job.", False),
])
def test_a_reply_that_says_nothing_of_its_own_is_told_apart(text, little):
    from pipeline.stages.crossanalysis import says_little

    assert says_little(text) is little


def test_a_category_of_minimal_responses_is_flagged_and_listed_last():
    """Replies such as "Yeah, I guess so." group together by their words, from many
    cases: a category the team would not keep, however general. It is flagged and
    listed after the domain's categories about something; those are not flagged."""
    from pipeline.stages.crossanalysis import MINIMAL, CrossAnalysisConfig, cross_analyse

    rng = np.random.default_rng(3)
    k, per = 10, 3
    centres = rng.normal(size=(2, 64))
    X = np.concatenate([centres[0] + 0.1 * rng.normal(size=(k * per, 64)),
                        centres[1] + 0.1 * rng.normal(size=(k * per // 2, 64))])
    assent = ["Yeah, I guess so.", "Yes, I think so.", "I don't know, really."]
    texts = [assent[i % 3] for i in range(k * per)] + \
        ["Crying with a client changed how I saw the work."] * (k * per // 2)
    cases = [f"c{i % k}" for i in range(k * per)] + [f"c{i % (k // 2)}" for i in range(k * per // 2)]
    seg = pd.DataFrame({"segment_id": [f"s{i}" for i in range(len(texts))], "case_id": cases,
                        "text": texts})
    xa = cross_analyse(seg, X, np.zeros(len(seg), int), CrossAnalysisConfig(stance=False))
    top = xa.categories[xa.categories["parent_id"] < 0].reset_index(drop=True)
    assert len(top) == 2
    assert [MINIMAL in f for f in top["flags"]] == [False, True]       # the replies last
    assert len(top["counted_cases"].iat[1]) > len(top["counted_cases"].iat[0])
    flat = cross_analyse(seg, X, np.zeros(len(seg), int),
                         CrossAnalysisConfig(stance=False, minimal_share=1.0))
    assert not any(MINIMAL in f for f in flat.categories["flags"])


def test_a_category_of_minimal_responses_is_named_after_its_most_central_reply():
    """Not after the one longer segment among its replies, which is where a phrase name
    comes from: the judges see what the category gathers; the phrase stays an
    alternative. A category about something keeps its phrase name."""
    from pipeline.analysis import _name_replies

    seg = pd.DataFrame({"segment_id": ["a", "b", "c", "d", "e"],
                        "text": ["I appreciate your care for my family.", "Um, all right.",
                                 "Yeah, I guess so. [laughs]", "All right.",
                                 "Supervision helped me most."]})
    cats = pd.DataFrame({"category_id": [0, 1], "name": ["Appreciate your care", "Helped me"],
                         "alternatives": [["Your care"], []],
                         "flags": [["minimal responses"], []],
                         "quote_ids": [["a", "b", "c"], ["e"]]})
    names, alternatives = _name_replies(cats, seg, {0: np.array([0, 1, 2, 3]), 1: np.array([4])})
    assert names == ["All right", "Helped me"]
    assert alternatives == [["Appreciate your care", "Your care"], []]
    assert all(name_occurs_in(n, [t]) for n, t in zip(names, ["Um, all right.",
                                                              "Supervision helped me most."]))


def test_a_minimal_reply_that_reads_clean_and_whole_names_its_category_before_a_central_one():
    """"And, uh, well, uh, I think that's, that's all." was the most central reply of a
    real study's category, and named it "And, uh, well, uh, I think": fillers inside,
    cut before what it says. A reply that reads clean in six words, as said, names it;
    with none, the most central reply still does."""
    from pipeline.analysis import _name_replies

    seg = pd.DataFrame({"segment_id": ["a", "b", "c", "d"],
                        "text": ["And, uh, well, uh, I think that's, that's all. That's all.",
                                 "No, that I can, that I can think of right now, but, um.",
                                 "I don't think so.", "Yes, yes, I have, I have."]})
    cats = pd.DataFrame({"category_id": [0, 1], "name": ["That's all", "Yes"],
                         "alternatives": [[], []],
                         "flags": [["minimal responses"], ["minimal responses"]],
                         "quote_ids": [["a", "b"], ["d"]]})
    names, _ = _name_replies(cats, seg, {0: np.array([0, 1, 2]), 1: np.array([3])})
    assert names == ["I don't think so", "Yes, yes, I have, I have"]
    assert name_occurs_in(names[0], ["I don't think so."])


def test_a_run_counts_its_categories_of_minimal_responses_and_lists_them_last(
        tmp_path, monkeypatch, capsys):
    """The summary says how many categories gather minimal responses; the CQR table
    lists each after its domain's other categories, with the flag."""
    import pipeline.stages.crossanalysis as xa

    # the invented study has no such replies: its clients' words stand in for them
    monkeypatch.setattr(xa, "says_little", lambda text: "client" in text.lower())
    out = _run(tmp_path)
    printed = capsys.readouterr().out
    cats = RunFolder.open(out).table("categories")
    top = cats[cats["parent_id"] < 0]
    flagged = [xa.MINIMAL in list(f) for f in top["flags"]]
    assert any(flagged)
    assert f"{sum(flagged)} of minimal responses, listed last)" in printed
    for _, dom in top.groupby("domain_id", sort=False):
        marks = [xa.MINIMAL in list(f) for f in dom["flags"]]
        assert marks == sorted(marks)                  # flagged ones after the others
    table = (out / "cqr_table.md").read_text(encoding="utf-8")
    assert "minimal responses |" in table


def test_the_layout_groups_and_the_vectors_measure():
    """Only the grouping is made on the layout: the clusterer is given the layout (and
    the cases) for a set above the bound and the vectors below it; the layout keeps the
    vectors' median distance, so the same-case penalty keeps its size; the cache key
    says whether and how the set was laid out."""
    from pipeline.stages.crossanalysis import (
        _distances,
        _layout,
        _median_distance,
        hdbscan_cluster_fn,
        layout_cluster_fn,
    )

    seg, X, _ = _crowded(300)
    X = X / np.linalg.norm(X, axis=1, keepdims=True)
    cases = seg["case_id"].to_numpy()
    seen = []

    def inner(vectors, cases_):
        seen.append((vectors.shape, list(cases_)))
        return np.zeros(len(vectors), np.int64), np.ones(len(vectors), np.float32)

    inner.case_aware, inner.cache_params = True, {"clusterer": "spy"}
    fit = layout_cluster_fn(inner, above=200, n_components=5, seed=0)
    assert fit.case_aware
    fit(X, cases)
    fit(X[:200], cases[:200])
    assert seen[0] == ((300, 5), list(cases)) and seen[1] == ((200, 384), list(cases[:200]))
    Y = _layout(X, 5, 0)
    assert np.array_equal(Y, _layout(X, 5, 0))          # seeded: a re-run groups the same
    assert abs(_median_distance(Y) - _median_distance(X)) < 0.05 * _median_distance(X)
    D = _distances(Y)
    assert np.allclose(D, np.linalg.norm(Y[:, None] - Y[None], axis=2), atol=1e-6)
    keys = [layout_cluster_fn(hdbscan_cluster_fn(), above, 5, seed).cache_params
            for above, seed in ((200, 0), (None, 0), (200, 1))]
    assert keys[0] != keys[1] and keys[0] != keys[2]
    assert keys[0]["layout"]["n_components"] == 5


def test_the_phrase_cache_keeps_offsets_and_lemmas_never_the_spoken_words(tmp_path):
    from pipeline.analysis import cached_phrases
    from pipeline.cache import Cache
    from pipeline.stages.naming import extract_phrases

    texts = ["We talked about the Gatekeeping Protocols at length (laughs) in supervision.",
             "My supervisor reviewed the Gatekeeping Protocols with the whole team."]
    direct = extract_phrases(texts)
    assert any("Gatekeeping Protocols" in p.text for ps in direct for p in ps)
    cache = Cache(tmp_path / "cache")
    assert cached_phrases(cache)(texts) == direct              # computed and stored
    assert cached_phrases(cache)(texts) == direct              # read back: the same phrases
    import sqlite3

    con = sqlite3.connect(tmp_path / "cache" / "embeddings.sqlite")
    try:
        entries = [bytes(v).decode("utf-8") for (v,) in
                   con.execute("SELECT value FROM text_rows WHERE kind='phrases'")]
    finally:
        con.close()
    assert len(entries) == len(texts) and "gatekeeping" in " ".join(entries)   # the lemmas
    for stored in entries:
        assert "Gatekeeping" not in stored and "Protocols" not in stored and "laughs" not in stored


def test_the_phrases_of_a_call_are_written_and_read_in_one_transaction_each(tmp_path, monkeypatch):
    """Phrases are a few hundred bytes a text, asked for by the hundred: one file each
    cost a millisecond a text. A damaged row is parsed again, never a failure."""
    import sqlite3

    import pipeline.cache as cache_mod
    from pipeline.analysis import cached_phrases
    from pipeline.cache import Cache
    from pipeline.stages.naming import extract_phrases

    texts = [f"We talked about supervision number {i} at length." for i in range(40)]
    cache = Cache(tmp_path / "cache")
    connects = []
    real = cache_mod.Cache._connect
    monkeypatch.setattr(cache_mod.Cache, "_connect", lambda self: connects.append(1) or real(self))
    first = cached_phrases(cache)(texts)
    assert len(connects) == 2                       # one read, one write
    assert cached_phrases(cache)(texts) == first and len(connects) == 3
    assert not list((tmp_path / "cache").rglob("*.npz"))
    con = sqlite3.connect(tmp_path / "cache" / "embeddings.sqlite")
    with con:
        con.execute("UPDATE text_rows SET value = ? WHERE kind = 'phrases'", (b"\xff{not json",))
    con.close()
    assert cached_phrases(cache)(texts) == extract_phrases(texts)


def test_a_domains_clusterer_compares_all_pairs_and_finds_what_the_tree_search_finds():
    """Within a domain, HDBSCAN runs on the full distance matrix (10x faster in 384
    dimensions, where a tree cannot prune): the same exact algorithm, the same groups.
    Large domains are fitted on a sample of at most that many segments by default."""
    from sklearn.cluster import HDBSCAN

    from pipeline.stages.crossanalysis import BRUTE_MAX_SEGMENTS, CrossAnalysisConfig, hdbscan_cluster_fn

    rng = np.random.default_rng(0)
    centres = rng.normal(size=(6, 384))
    X = centres[rng.integers(0, 6, 700)] + rng.normal(scale=1.5, size=(700, 384))
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    labels, probs = hdbscan_cluster_fn()(X)
    mcs = max(3, round(np.sqrt(700) / 2))
    tree = HDBSCAN(min_cluster_size=mcs, min_samples=max(1, round(mcs / 3)), algorithm="kd_tree",
                   copy=True).fit(X)
    assert len(set(labels) - {-1}) >= 2
    assert np.array_equal(labels, tree.labels_) and np.allclose(probs, tree.probabilities_)
    assert CrossAnalysisConfig().max_fit_segments == BRUTE_MAX_SEGMENTS



def _one_storyteller(story_segments: int = 7) -> tuple[pd.DataFrame, np.ndarray]:
    """One domain where ten cases each speak once to each of two topics, and case C0
    also tells one story over ``story_segments`` turns, in words close to each other,
    near the first topic (seeded)."""
    rng = np.random.default_rng(1)
    topic_a, topic_b = rng.normal(size=32), rng.normal(size=32)
    vectors, cases = [], []
    for i in range(10):
        for topic in (topic_a, topic_b):
            vectors.append(topic + 0.6 * rng.normal(size=32))
            cases.append(f"C{i}")
    story = topic_a + 0.5 * rng.normal(size=32)
    for _ in range(story_segments):
        vectors.append(story + 0.1 * rng.normal(size=32))
        cases.append("C0")
    seg = pd.DataFrame({"segment_id": [f"s{i}" for i in range(len(cases))], "case_id": cases,
                        "text": ["what was said"] * len(cases)})
    return seg, np.array(vectors)


def test_one_participant_s_story_is_no_category_of_its_own():
    """A CQR category is what several cases said. One participant's story told over
    seven turns in close words is a dense group, and on content alone it became a
    category of one case (flagged, but proposed). By default the smallest category
    grows with the cases that spoke in the domain, and turns of one case are held
    apart, so the story joins the topic the other cases spoke to."""
    from pipeline.stages.crossanalysis import CrossAnalysisConfig, cross_analyse

    seg, X = _one_storyteller()
    story = np.flatnonzero(seg["case_id"].eq("C0"))[2:]         # C0's story turns
    domain = np.zeros(len(seg), np.int64)

    content_only = cross_analyse(seg, X, domain, CrossAnalysisConfig(
        stance=False, same_case_distance=0, min_category_case_share=0))
    told = content_only.categories.set_index("category_id").loc[
        int(content_only.category[story[0]])]
    assert set(content_only.category[story].tolist()) == {int(told.name)}
    assert told["n_cases"] == 1 and "single story" in told["flags"]

    default = cross_analyse(seg, X, domain, CrossAnalysisConfig(stance=False))
    cats = default.categories.set_index("category_id")
    assert (cats["n_cases"] > 1).all()
    assert not any("single story" in f for f in cats["flags"])
    [home] = set(default.category[story].tolist())
    topic_a = np.arange(0, 20, 2)                                # every case's first topic
    assert (default.category[topic_a] == home).mean() > 0.5


def test_a_domain_s_cases_reach_the_clusterer_and_its_cache_key(tmp_path):
    """The default clusterer sees which segments share a case: two of one case are
    ``same_case_distance`` further apart than their content says, the same algorithm
    on that distance matrix. The cached groups are keyed on which rows share a case
    too, so a re-run with the same vectors told by other cases clusters again."""
    from sklearn.cluster import HDBSCAN

    from pipeline.cache import Cache
    from pipeline.stages.crossanalysis import _cluster, hdbscan_cluster_fn

    seg, X = _one_storyteller()
    X = X / np.linalg.norm(X, axis=1, keepdims=True)
    cases = seg["case_id"].to_numpy()
    labels, probs = hdbscan_cluster_fn(same_case_distance=0.3)(X, cases)
    D = np.sqrt(np.clip(2 - 2 * X @ X.T, 0, None)) + 0.3 * (cases[:, None] == cases[None, :])
    np.fill_diagonal(D, 0)
    mcs = max(3, round(np.sqrt(len(X)) / 2))
    ref = HDBSCAN(min_cluster_size=mcs, min_samples=max(1, round(mcs / 3)),
                  metric="precomputed", copy=True).fit(D)
    assert np.array_equal(labels, ref.labels_) and np.allclose(probs, ref.probabilities_)
    plain = hdbscan_cluster_fn()(X)                       # no cases: content alone
    assert not np.array_equal(plain[0], labels)

    calls = []
    inner = hdbscan_cluster_fn(same_case_distance=0.3)

    def fit(vectors, cases):
        calls.append(list(cases))
        return inner(vectors, cases)

    fit.case_aware, fit.cache_params = True, inner.cache_params
    memory = Cache(tmp_path / "cache")
    first = _cluster(X, fit, 0.35, "domain 0", memory=memory, cases=cases)
    again = _cluster(X, fit, 0.35, "domain 0", memory=memory, cases=cases)
    assert len(calls) == 1 and calls[0] == list(cases)
    assert all(np.array_equal(a, b) for a, b in zip(first, again))
    others = np.array([f"C{i % 10}" for i in range(len(X))], dtype=object)
    _cluster(X, fit, 0.35, "domain 0", memory=memory, cases=others)
    assert len(calls) == 2 and calls[1] == list(others)


def _blobs(k: int, per: int, dim: int = 32) -> np.ndarray:
    """``k`` tight groups of ``per`` unit vectors each, in group order (seeded)."""
    rng = np.random.default_rng(0)
    X = np.repeat(rng.normal(size=(k, dim)), per, axis=0) + 0.05 * rng.normal(size=(k * per, dim))
    return X / np.linalg.norm(X, axis=1, keepdims=True)


def test_a_group_of_uncounted_outliers_is_no_subcategory():
    """Within a category, a group made only of segments that count for no case (weakly
    reassigned outliers) is not proposed as a subcategory: it would print as "none,
    0 cases"; its segments stay in the category."""
    from pipeline.stages.crossanalysis import (
        CrossAnalysisConfig,
        _Group,
        _subcategories,
        hdbscan_cluster_fn,
    )

    X = _blobs(3, 20)
    rows = np.arange(60)

    def subs(counted):
        g = _Group(0, "category", rows, np.zeros(60, bool), counted, np.ones(60, np.float32),
                   X.mean(axis=0))
        return _subcategories(g, X, hdbscan_cluster_fn(), CrossAnalysisConfig(), 0.5)

    everyone = subs(np.ones(60, bool))
    assert len(everyone) == 3 and all(c.counted.any() for c in everyone)
    counted = np.arange(60) < 40                     # the third group counts for no case
    kept = subs(counted)
    assert len(kept) == 2 and all(c.counted.any() for c in kept)
    assert not set(range(40, 60)) & {int(r) for c in kept for r in c.rows}
    # with only one group left, there are no subcategories at all
    assert subs(np.arange(60) < 20) == []


def test_a_subcategory_keeps_the_category_s_reassigned_outliers():
    """A segment reassigned to a category (an outlier of its domain) is reassigned in the
    subcategory it falls in too: the subcategory's n_reassigned and thin cases see it."""
    from pipeline.stages.crossanalysis import (
        CrossAnalysisConfig,
        _Group,
        _subcategories,
        hdbscan_cluster_fn,
    )

    X = _blobs(2, 20)
    rows = np.arange(40)
    reassigned = np.isin(rows, [0, 1, 20])           # reassigned to the category, counted
    g = _Group(0, "category", rows, reassigned, np.ones(40, bool), np.ones(40, np.float32),
               X.mean(axis=0))
    subs = _subcategories(g, X, hdbscan_cluster_fn(), CrossAnalysisConfig(), 0.5)
    assert len(subs) == 2
    for c in subs:
        assert reassigned[c.rows][~c.reassigned].sum() == 0   # none of them lost
    assert sum(int(c.reassigned[np.isin(c.rows, [0, 1, 20])].sum()) for c in subs) == 3


def test_a_rerun_reads_its_groups_names_and_core_ideas_from_the_cache_and_stores_no_words(
        tmp_path, monkeypatch):
    """A re-run whose categories are what they were pays for none of the CQR steps
    again: the domains' groups, the names and the core ideas come from the cache,
    exactly as computed. The entries hold positions and numbers, never what was said."""
    import pipeline.stages.coreideas as coreideas
    import pipeline.stages.crossanalysis as crossanalysis
    import pipeline.stages.naming as naming

    first = _run(tmp_path)
    kinds = {p.name for p in (tmp_path / "study" / "cache").iterdir()}
    assert {"crossanalysis", "names", "core_ideas"} <= kinds

    def refuse(original):
        def fail(*args, **kwargs):
            raise AssertionError(f"{original.__name__} ran again")
        fail.__module__ = original.__module__       # the cache keys on the module's code
        return fail

    for module, name in ((naming, "name_categories"), (naming, "extract_phrases"),
                         (coreideas, "_core_ideas_now"), (crossanalysis, "_cluster_now"),
                         (crossanalysis, "_stance")):
        monkeypatch.setattr(module, name, refuse(getattr(module, name)))
    second = _run(tmp_path)
    for table in ("categories", "core_ideas", "themes", "cqr"):
        pd.testing.assert_frame_equal(RunFolder.open(first).table(table),
                                      RunFolder.open(second).table(table))
    pd.testing.assert_frame_equal(RunFolder.open(first).segments(), RunFolder.open(second).segments())
    assert (first / "cqr_table.md").read_text(encoding="utf-8") == \
        (second / "cqr_table.md").read_text(encoding="utf-8")

    folder = RunFolder.open(first)
    said = [n for n in folder.table("categories")["name"] if len(str(n).split()) > 1]
    said += [s for idea in folder.table("core_ideas")["core_idea"]
             for s in str(idea).split(". ") if len(s.split()) > 3]
    assert said
    for kind in ("crossanalysis", "names", "core_ideas"):
        for entry in (tmp_path / "study" / "cache" / kind).rglob("*.npz"):
            with np.load(entry) as arrays:
                stored = " ".join(str(arrays[k]) for k in arrays.files).lower()
            assert not [s for s in said if s.lower() in stored], entry


def test_phrases_are_kept_per_text_so_another_sample_parses_only_new_texts(tmp_path, monkeypatch):
    """When a setting changes the categories, the names parse another sample of texts
    in another order; the texts parsed before are read, not parsed again."""
    import pipeline.stages.naming as naming
    from pipeline.analysis import cached_phrases
    from pipeline.cache import Cache

    texts = ["My supervisor reviewed the notes with me.", "We talked about crying in session.",
             "The training never covered tears.", "I held back the tears that day."]
    cache = Cache(tmp_path / "cache")
    first = cached_phrases(cache)(texts[:3])
    parsed = []
    real = naming.extract_phrases

    def counting(batch, **kwargs):
        parsed.extend(batch)
        return real(batch, **kwargs)

    counting.__module__ = real.__module__        # the cache keys on the module's code
    monkeypatch.setattr(naming, "extract_phrases", counting)
    again = cached_phrases(cache)([texts[3], texts[1], texts[0]])
    assert parsed == [texts[3]]
    assert again[1:] == [first[1], first[0]] and again[0] == real([texts[3]])[0]


def test_no_two_rows_of_a_domain_show_the_same_core_idea():
    """A subcategory whose most central case says its part in the sentences that
    illustrate its category shows its next case's core idea instead."""
    from pipeline.analysis import cqr_rows

    segments = pd.DataFrame({"segment_id": ["A:1:0", "B:1:0", "C:1:0"],
                             "case_id": ["A", "B", "C"],
                             "text": ["Tears are not the enemy.", "Find a supervisor.",
                                      "Talk about it after."]})
    domains = pd.DataFrame({"domain_id": [0], "name": ["Advice to trainees"]})
    base = {"domain_id": 0, "frequency_label": "typical", "counted_cases": ["A", "B"],
            "flags": [], "label_if_reassigned_counted": "typical", "pole": ""}
    cats = pd.DataFrame([
        {**base, "category_id": 1, "parent_id": -1, "name": "Your tears",
         "quote_ids": ["A:1:0", "B:1:0"]},
        {**base, "category_id": 2, "parent_id": 1, "name": "Not the enemy",
         "quote_ids": ["A:1:0", "C:1:0", "B:1:0"]},
        {**base, "category_id": 3, "parent_id": 1, "name": "Only one quote",
         "quote_ids": ["A:1:0"]},
    ])
    ideas = {("category", 1, "A"): ("Tears are not the enemy.", ["A:1:0"]),
             ("subcategory", 2, "A"): ("Tears are  not the enemy.", ["A:1:0"]),  # spaced
             ("subcategory", 2, "C"): ("Talk about it after.", ["C:1:0"]),
             ("subcategory", 3, "A"): ("Tears are not the enemy.", ["A:1:0"])}
    table = cqr_rows(cats, domains, segments, 3, ideas)
    assert table["quote"].tolist() == ["Tears are not the enemy.", "Talk about it after.",
                                       "Tears are not the enemy."]
    # the row names the quote its core idea came from
    assert table["quote_case"].tolist() == ["A", "C", "A"]
    assert table["quote_segment_id"].tolist() == ["A:1:0", "C:1:0", "A:1:0"]
    # another text drawn mostly from the segments a row above quotes is a repeat too
    ideas[("subcategory", 2, "A")] = ("Tears are not the enemy. … Really.", ["A:1:0", "A:2:0"])
    assert cqr_rows(cats, domains, segments, 3, ideas)["quote_case"].tolist() == ["A", "C", "A"]


def test_a_core_idea_from_two_segments_names_both():
    """An illustrative core idea stitched from two turns of one case names every
    segment it quotes, not only the category's most central quote: each of its
    sentences traces back to the transcript."""
    from pipeline.analysis import cqr_rows

    segments = pd.DataFrame({"segment_id": ["A:1:0", "A:5:0"], "case_id": ["A", "A"],
                             "text": ["I froze.", "Later I told my supervisor."]})
    domains = pd.DataFrame({"domain_id": [0], "name": ["Supervision"]})
    cats = pd.DataFrame([{"domain_id": 0, "frequency_label": "variant", "counted_cases": ["A"],
                          "flags": [], "label_if_reassigned_counted": "variant",
                          "category_id": 1, "parent_id": -1, "name": "Telling the supervisor",
                          "quote_ids": ["A:5:0", "A:1:0"]}])
    ideas = {("category", 1, "A"): ("I froze. … Later I told my supervisor.",
                                    ["A:1:0", "A:5:0"])}
    row = cqr_rows(cats, domains, segments, 3, ideas).iloc[0]
    assert row["quote_segment_ids"] == ["A:1:0", "A:5:0"]
    assert row["quote_segment_id"] == "A:1:0" and row["category_id"] == 1
    from pipeline.stages.cqr import cqr_markdown
    assert "(A:1:0, A:5:0)" in cqr_markdown(pd.DataFrame([row]))


def test_a_quote_of_fillers_alone_is_shown_as_said_and_no_name_is_line_numbers():
    """A category of minimal responses can have as its quote a segment of fillers alone
    ("Um, uh, mm, er."), which tidies to nothing: the CQR table showed "" and the
    judges could not see what the row was. It shows the quote as said. A category that
    the naming stage left without a name takes the first words of its quote, never a
    run of line numbers, nor the hesitation or joining word it opens with."""
    from pipeline.analysis import _fill_names, cqr_rows

    segments = pd.DataFrame({"segment_id": ["A:1:0", "B:1:0"], "case_id": ["A", "B"],
                             "text": ["Um, uh, mm, er.",
                                      "41 42 43 44 45 46 47 So hard, that one."]})
    domains = pd.DataFrame({"domain_id": [0], "name": ["Crying"]})
    cats = pd.DataFrame([{"domain_id": 0, "frequency_label": "variant", "counted_cases": ["A"],
                          "flags": ["minimal responses"], "label_if_reassigned_counted": "variant",
                          "category_id": c, "parent_id": -1, "name": "", "alternatives": [],
                          "quote_ids": [q]} for c, q in ((1, "A:1:0"), (2, "B:1:0"))])
    table = cqr_rows(cats, domains, segments, 3, {})
    assert table["quote"].tolist()[0] == "Um, uh, mm, er."
    names = _fill_names(cats, segments, phrases=lambda texts: [[] for _ in texts])
    assert names[1] == "Hard, that one."            # not "So hard": how the reply began
    # nor words that leave it open
    segments.loc[1, "text"] = "It's just overwhelming when you see them all."
    names = _fill_names(cats, segments, phrases=lambda texts: [[] for _ in texts])
    assert names[1] == "It's just overwhelming"


def test_a_fallback_name_is_never_a_siblings():
    """Two stance subcategories of one category had no phrase of their own and both
    took the first phrase of their quotes, "Work as a nurse coordinator": the judges
    saw two rows of one name. A fallback name is never one its domain has."""
    from pipeline.analysis import _fill_names

    segments = pd.DataFrame({"segment_id": ["A", "B", "C"], "case_id": ["1", "2", "3"],
                             "text": ["Work as a nurse coordinator, I liked it.",
                                      "Work as a nurse coordinator, I hated it.",
                                      "Work as a nurse coordinator was all right."]})
    cats = pd.DataFrame([{"domain_id": 0, "category_id": c, "name": n, "alternatives": [],
                          "quote_ids": q} for c, n, q in (
        (0, "Work as a nurse coordinator", ["C"]), (1, "", ["A"]), (2, "", ["B"]))])
    names = _fill_names(cats, segments, phrases=lambda texts: [[] for _ in texts])
    assert len({n.casefold() for n in names}) == 3, names
    assert names[1:] == ["Work as a nurse coordinator (2)", "Work as a nurse coordinator (3)"]
    # where a quote has a phrase of its own, it is that, not a number
    names = _fill_names(cats, segments, phrases=lambda texts: [
        [type("P", (), {"text": t.split(", ")[-1].rstrip(".")})()] for t in texts])
    assert names[1:] == ["I liked it", "I hated it"]


def test_fallback_short_reply_and_model_names_are_distinct_across_domains():
    """The naming stage never gives one name twice in a run (name_key: case and
    punctuation aside), as two domains' codes of one name read as one in the codebook
    and the exports; the names given after it kept to one domain. A fallback name, a
    short reply's name and a model's name now keep to the run, by the same rule."""
    from pipeline.analysis import _fill_names, _keep_model_names_distinct, _name_replies
    from pipeline.stages.crossanalysis import MINIMAL
    from pipeline.stages.naming import name_key

    # a fallback name: its quote's first words are another domain's name, written
    # with other capitals and a full stop
    segments = pd.DataFrame({"segment_id": ["A", "B"], "case_id": ["1", "2"],
                             "text": ["Work as a nurse coordinator was fine.",
                                      "Work as a nurse coordinator, I liked it."]})
    cats = pd.DataFrame([{"domain_id": d, "category_id": c, "name": n, "alternatives": [],
                          "quote_ids": q} for d, c, n, q in (
        (0, 0, "work as a nurse coordinator.", ["A"]), (1, 1, "", ["B"]))])
    names = _fill_names(cats, segments, phrases=lambda texts: [[] for _ in texts])
    assert names == ["work as a nurse coordinator.", "Work as a nurse coordinator (2)"]

    # a short reply: two domains' categories of minimal responses whose most central
    # reply is "Yeah, I guess so."; the later takes its next reply, and one with no
    # other keeps its phrase name
    seg = pd.DataFrame({"segment_id": ["a", "b", "c", "d", "e"],
                        "text": ["Yeah, I guess so.", "Yeah, I guess so.", "I don't know.",
                                 "Yeah, I guess so.", "I liked the team a lot, yes."]})
    cats = pd.DataFrame({"category_id": [0, 1, 2], "domain_id": [0, 1, 2],
                         "name": ["Guess so", "Don't know", "Liked the team"],
                         "alternatives": [[], [], []], "flags": [[MINIMAL]] * 3,
                         "quote_ids": [["a"], ["b", "c"], ["d", "e"]]})
    names, alternatives = _name_replies(cats, seg, {0: np.array([0]), 1: np.array([1, 2]),
                                                    2: np.array([3, 4])})
    assert names == ["Yeah, I guess so", "I don't know", "Liked the team"]
    assert alternatives[1] == ["Don't know"] and alternatives[2] == []
    assert len({name_key(n) for n in names}) == 3

    # a model's names: 0 and 1 (one domain) share one, and are given back; 0's
    # extractive name is then 2's model name (another domain), given back too
    cats = pd.DataFrame({"domain_id": [0, 0, 1, 1], "name": ["B", "B", "A", "E"],
                         "extractive_name": ["A", "C", "D", "F"],
                         "definition": ["b", "b", "a", "e"]})
    assert _keep_model_names_distinct(cats) == 3
    assert cats["name"].tolist() == ["A", "C", "D", "E"]
    assert cats["definition"].tolist() == ["", "", "", "e"]


def test_a_category_is_illustrated_by_a_core_idea_that_says_something():
    """A category of 49 segments on a client's sickness was illustrated by "That was
    two weeks ago.", the core idea of its most central case. A candidate of eight
    words or more goes first; a category of minimal responses keeps its most central
    reply, which is what it gathers."""
    from pipeline.analysis import cqr_rows

    segments = pd.DataFrame({"segment_id": ["A:1:0", "B:1:0", "C:1:0"],
                             "case_id": ["A", "B", "C"],
                             "text": ["That was two weeks ago.",
                                      "I was sick for a whole month and could not keep food down.",
                                      "Yeah, I guess so."]})
    domains = pd.DataFrame({"domain_id": [0], "name": ["Health"]})
    ideas = {("category", c, case): (text, [sid])
             for c in (1, 2) for sid, case, text in segments.itertuples(index=False)}
    cats = pd.DataFrame([{"domain_id": 0, "frequency_label": "variant", "counted_cases": ["A"],
                          "flags": flags, "label_if_reassigned_counted": "variant",
                          "category_id": c, "parent_id": -1, "name": "", "alternatives": [],
                          "quote_ids": ["A:1:0", "B:1:0", "C:1:0"]}
                         for c, flags in ((1, []), (2, ["minimal responses"]))])
    cats.loc[1, "quote_ids"] = ["C:1:0", "A:1:0"]
    table = cqr_rows(cats, domains, segments, 3, ideas)
    assert table["quote"].tolist() == [segments["text"][1], "Yeah, I guess so."]
    assert table["quote_case"].tolist() == ["B", "C"]


def test_the_summary_counts_every_category_the_table_shows_with_subcategories():
    """"(N with subcategories)" counts the categories the CQR table shows with rows
    under them: subcategories by size and by the participants' judgement (stance)
    alike. It counted only those by size: the demo printed 2 while its table showed 5."""
    from types import SimpleNamespace

    from pipeline.cli import _categories_with_subcategories

    cats = pd.DataFrame({"category_id": range(7), "parent_id": [-1, 0, 0, -1, 3, 3, -1],
                         "kind": ["category", "subcategory", "subcategory", "category",
                                  "stance", "stance", "category"]})
    assert _categories_with_subcategories(SimpleNamespace(table=lambda name: cats)) == 2
    none = cats[cats["parent_id"] < 0]
    assert _categories_with_subcategories(SimpleNamespace(table=lambda name: none)) == 0


def test_segments_that_answer_no_question_go_to_the_domain_nearest_in_content(tmp_path,
                                                                              capsys):
    """A case with no interviewer answers no question of the protocol. Its segments
    were in no domain, so in no category (half a study's segments, in one report);
    now each goes to the domain nearest in content, and the summary says how many."""
    folder = tmp_path / "study"
    write_study(folder)
    (folder / "case99.txt").write_text(
        "Therapist: The client looked surprised and said nobody had ever been moved by "
        "her story, and she trusted me more after that session.\n\nTherapist: My "
        "supervisor listened, and meeting my supervisor was where I could talk about "
        "that session.\n", encoding="utf-8")
    out = _run(tmp_path)
    printed = capsys.readouterr().out
    c = RunFolder.open(out).manifest["counts"]
    seg = RunFolder.open(out).segments()
    mine = seg[seg["case_id"] == "case99"]
    assert len(mine) >= 2 and (mine["question_domain_id"] == -1).all()
    assert c["segments_placed_by_content"] == len(mine) and (mine["domain_id"] >= 0).all()
    assert f"note: {len(mine)} segments answer no question of the protocol" in printed
    report = (out / "report.html").read_text(encoding="utf-8")
    assert f"{len(mine)} segments answer no question of the protocol" in report
    # each went where the other cases' answers to the same topic are
    asked = seg[seg["question_domain_id"] >= 0]
    for text, domain in zip(mine["text"], mine["domain_id"]):
        word = "supervisor" if "supervisor" in text else "client"
        about = asked[asked["text"].str.contains(word)]
        assert domain == about["question_domain_id"].mode().iloc[0], text
    assert c["crossanalysis_no_domain"] == int((seg["domain_id"] < 0).sum())
    assert c["unassigned"] == int((seg["theme"] < 0).sum() - c["frame_segments"])
    assert f"in no category: {c['unassigned']} (" in printed


def test_what_was_skipped_is_counted_by_item_and_every_turn_and_unit_is_in_skipped_csv(
        tmp_path, capsys):
    """On 40 counselling sessions the summary said "skipped: 3 item(s)" and the report's
    table 1, 1, 1, for 341 backchannel turns, 109 short units and one unit of notes:
    it counted the notes. The notes name 20 places each; skipped.csv holds every turn
    and unit with its words, so that a short "I can quit." can be found."""
    folder = write_study(tmp_path / "study")
    lines = ["Interviewer: How did it start for you?", "",
             "Therapist: I cried with a client whose mother had died, and I still think "
             "about it.", ""]
    for k in range(25):                       # more than the notes name
        lines += [f"Interviewer: And then, part {k}?", "", "Therapist: Mm-hmm.", "",
                  f"Interviewer: What else, part {k}?", "", "Therapist: I can quit.", ""]
    (folder / "case07.txt").write_text("\n".join(lines), encoding="utf-8")
    out = _run(tmp_path)
    printed = capsys.readouterr().out
    folder_ = RunFolder.open(out)
    notes = folder_.manifest["skipped"]
    by_reason = {n["reason"]: n.get("count", 1) for n in notes if n["stage"] == "segment"}
    left = read_raw_csv(out / "skipped.csv")
    assert dict(left["reason"].value_counts()) == by_reason
    mine = left[left["case_id"] == "case07"]
    assert (mine["text"] == "Mm-hmm.").sum() == 25 and (mine["text"] == "I can quit.").sum() == 25
    total = sum(n.get("count", 1) for n in notes if not n.get("kept"))
    assert total >= 50 and f"skipped: {total} item(s), listed" in printed
    assert "every turn and unit in skipped.csv" in printed
    # each row is where it says it is
    source = (folder / "case07.txt").read_text(encoding="utf-8")
    for r in mine.itertuples():
        assert source[int(r.start_char):int(r.end_char)] == r.text
    html = (out / "report.html").read_text(encoding="utf-8")
    part = html[html.index('id="skipped"'):]
    assert f"{total} items left out of the analysis." in part and "skipped.csv" in part
    for reason, n in by_reason.items():
        assert f"<td>{escape(reason)}</td><td class=\"num\">{n}</td>" in part, reason


def test_a_note_on_text_that_was_kept_is_not_counted_as_skipped(tmp_path, capsys):
    """A subtitle cue that goes back in time is kept where the file has it and named;
    the summary, the manifest and the report count it apart from what was left out
    (the summary once said "skipped: 6 item(s)" where five were left out and one was
    read)."""
    folder = write_study(tmp_path / "study")
    (folder / "case07.srt").write_text(
        "1\n00:00:01,000 --> 00:00:03,000\nInterviewer: How did it start for you?\n\n"
        "2\n00:00:10,000 --> 00:00:14,000\nTherapist: I cried with a client whose mother "
        "had died, and I still think about it.\n\n"
        "3\n00:00:05,000 --> 00:00:08,000\nTherapist: My supervisor said it was fine, and "
        "that helped me more than my training.\n", encoding="utf-8")
    out = _run(tmp_path)
    printed = capsys.readouterr().out
    notes = RunFolder.open(out).manifest["skipped"]
    kept = [n for n in notes if n.get("kept") is True]
    assert [Path(n["what"].rsplit(":", 1)[0]).name for n in kept] == ["case07.srt"]
    assert "kept in the file's order" in kept[0]["reason"]
    left = sum(n.get("count", 1) for n in notes if n is not kept[0])
    assert left >= 1 and all("kept" not in n for n in notes if n is not kept[0])
    assert f"skipped: {left} item(s); notes on text that was kept: 1, listed" in printed
    seg = RunFolder.open(out).segments()
    assert seg["text"].str.contains("My supervisor said it was fine").any()
    html = (out / "report.html").read_text(encoding="utf-8")
    part = html[html.index('id="skipped"'):]
    items = "item" if left == 1 else "items"
    assert f"{left} {items} left out of the analysis. 1 note on text that was read and kept" \
        in part


def test_core_ideas_are_chosen_on_a_second_thread_while_the_categories_are_named(
        tmp_path, monkeypatch):
    """Naming (spaCy's parser, on one processor) and choosing the core ideas (mostly the
    embedder) run side by side; the tables are those of the steps run one after the
    other, which the golden demo test holds, and the embedder is entered by one thread
    at a time."""
    import threading

    import pipeline.run as run_mod

    real = run_mod.embed_texts
    callers: list[str] = []

    def watched(*args, **kwargs):
        callers.append(threading.current_thread().name)
        return real(*args, **kwargs)

    monkeypatch.setattr(run_mod, "embed_texts", watched)
    run = _run(tmp_path)
    assert any(name.startswith("consensa-core-ideas") for name in callers)
    assert not RunFolder.open(run).table("core_ideas").empty


def test_the_embedder_shared_by_two_threads_is_entered_by_one_at_a_time():
    """Hugging Face's fast tokenizers refuse a second thread ("Already borrowed"), so the
    encoder the naming and the core ideas share is called one call at a time."""
    import threading
    import time

    from pipeline.analysis import _one_call_at_a_time

    inside, most = [0], [0]
    count = threading.Lock()

    def slow(texts):
        with count:
            inside[0] += 1
            most[0] = max(most[0], inside[0])
        time.sleep(0.02)
        with count:
            inside[0] -= 1
        return np.zeros((len(texts), 2), dtype=np.float32)

    encode = _one_call_at_a_time(slow)
    threads = [threading.Thread(target=lambda: [encode(["a"]) for _ in range(5)]) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert most[0] == 1
