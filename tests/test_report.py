"""The HTML report: self-contained, escaped, complete, deterministic."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import numpy as np
import pandas as pd
import pytest
from scipy.cluster.hierarchy import linkage

from pipeline.errors import ConsensaError
from pipeline.report.render import MAX_MAP_POINTS, MAX_UNASSIGNED_LISTED, render_report
from pipeline.types import (
    ASSIGNED_SEGMENT_COLUMNS,
    CONCEPT_COLUMNS,
    CQR_COLUMNS,
    DOMAIN_COLUMNS,
    THEME_COLUMNS,
    RunResult,
)

SCRIPT = "<script>alert(1)</script>"
VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta",
        "source", "track", "wbr"}


# --- A small run, built by hand -------------------------------------------------

# (case, turn, speaker, text, theme, question)
ROWS = [
    ("T1", 1, "Therapist", "I cried with her, and I didn't hide it.", 0, "When did you cry?"),
    ("T1", 3, "Therapist", "Tears came when she described her mother's funeral.", 0, "What happened?"),
    ("T1", 5, "Therapist", "Afterwards I worried it was about me & my own grief.", 1,
     "How did you feel afterwards? " + "Tell me more about that. " * 20),
    ("T1", 7, "Therapist", "I took it to supervision the next week.", 1, "Did you talk to anyone?"),
    ("T2", 1, "P2", "My eyes welled up; I let the client see it.", 0, "When did you cry?"),
    ("T2", 3, "P2", f"Honestly {SCRIPT} I don't remember the rest.", -1, "Anything else?"),
    ("T2", 5, "P2", "Supervision helped me see it as \"countertransference\".", 1, "Did you talk to anyone?"),
    ("T2", 7, "P2", "The weather that day was grey.", 2, ""),
    ("T3", 1, "P3", "I felt a lump in my throat and paused.", 0, "When did you cry?"),
    ("T3", 3, "P3", "I was ashamed, then relieved, when she thanked me.", 1, "How did you feel?"),
    ("T3", 5, "P3", "My colleague said it was unprofessional.", 1, "Did you talk to anyone?"),
    ("T3", 7, "P3", "We had moved offices that spring.", 2, ""),
]
THEME_NAMES = {0: "tears / crying / client", 1: "supervision <b>shame</b> & $cost$",
               2: "offices / weather"}
THEME_DOMAIN = {0: 0, 1: 0, 2: 1}


def _segments() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    recs, offsets = [], {}
    for case, turn, speaker, text, theme, question in ROWS:
        start = offsets.get(case, 0)
        offsets[case] = start + len(text) + 20
        recs.append({
            "segment_id": f"{case}:{turn}:0", "case_id": case, "turn_index": turn,
            "speaker": speaker, "role": "participant", "text": text,
            "start_char": start, "end_char": start + len(text),
            "start_time": float("nan") if case != "T3" else 61.0 * turn, "end_time": float("nan"),
            "source_file": f"data/{case}.txt", "question": question,
            "question_turn_index": turn - 1 if question else -1, "n_words": len(text.split()),
            "theme": theme, "theme_name": THEME_NAMES.get(theme, ""),
            "domain_id": THEME_DOMAIN.get(theme, -1),
            "domain_name": {0: "Crying in session", 1: "Miscellaneous"}.get(
                THEME_DOMAIN.get(theme, -1), ""),
            "strength": 0.0 if theme < 0 else float(rng.uniform(0.5, 1)),
            "reassigned": (case, turn) == ("T3", 5),
            "map_x": float(rng.normal(theme * 3)), "map_y": float(rng.normal(theme))})
    return pd.DataFrame(recs, columns=list(ASSIGNED_SEGMENT_COLUMNS))


def _themes(seg: pd.DataFrame) -> pd.DataFrame:
    labels = {0: "general", 1: "general", 2: "variant"}
    quotes = {0: ["T1:1:0", "T2:1:0", "T3:1:0"], 1: ["T1:5:0", "T2:5:0", "T3:3:0"],
              2: ["T2:7:0", "T3:7:0"]}
    rows = []
    for t, name in THEME_NAMES.items():
        members = seg[seg["theme"] == t]
        rows.append({
            "theme_id": t, "name": name, "domain_id": THEME_DOMAIN[t],
            "keywords": name.split(" / "), "key_phrases": [f"phrase {t}a", f"phrase {t}b"],
            "n_segments": len(members), "n_cases": members["case_id"].nunique(),
            "cases": sorted(members["case_id"].unique()),
            "frequency_label": labels[t], "quote_ids": quotes[t],
            "core_idea": seg.set_index("segment_id").loc[quotes[t][0], "text"],
            "mean_strength": float(members["strength"].mean()),
            "n_reassigned": int(members["reassigned"].sum())})
    return pd.DataFrame(rows, columns=list(THEME_COLUMNS))


def make_result(**manifest_overrides) -> RunResult:
    seg = _segments()
    themes = _themes(seg)
    domains = pd.DataFrame([
        {"domain_id": 0, "name": "Crying in session", "keywords": ["tears", "supervision"],
         "theme_ids": [0, 1], "n_themes": 2, "n_segments": 9, "n_cases": 3,
         "frequency_label": "general", "is_miscellaneous": False},
        {"domain_id": 1, "name": "Miscellaneous", "keywords": ["offices"],
         "theme_ids": [2], "n_themes": 1, "n_segments": 2, "n_cases": 2,
         "frequency_label": "variant", "is_miscellaneous": True},
    ], columns=list(DOMAIN_COLUMNS))
    text = dict(zip(seg["segment_id"], seg["text"]))
    cqr = pd.DataFrame([
        {"domain": "Crying in session", "category": THEME_NAMES[0], "frequency_label": "general",
         "n_cases": 3, "cases_total": 3, "quote": text["T1:1:0"], "quote_case": "T1",
         "quote_segment_id": "T1:1:0"},
        {"domain": "Crying in session", "category": THEME_NAMES[1], "frequency_label": "general",
         "n_cases": 3, "cases_total": 3, "quote": text["T1:5:0"], "quote_case": "T1",
         "quote_segment_id": "T1:5:0"},
        {"domain": "Miscellaneous", "category": THEME_NAMES[2], "frequency_label": "variant",
         "n_cases": 2, "cases_total": 3, "quote": text["T2:7:0"], "quote_case": "T2",
         "quote_segment_id": "T2:7:0"},
    ], columns=list(CQR_COLUMNS))
    concepts = pd.DataFrame([
        {"concept": "genuineness", "description": "being real and human with the client",
         "status": "supported", "theme_ids": [0], "similarity": 0.61, "n_segments": 4,
         "n_cases": 3, "quote_ids": ["T2:1:0", "T3:1:0"]},
        {"concept": "rupture and repair", "description": "", "status": "unsupported",
         "theme_ids": [], "similarity": 0.21, "n_segments": 1, "n_cases": 1, "quote_ids": []},
    ], columns=list(CONCEPT_COLUMNS))
    centroids = np.random.default_rng(1).normal(size=(3, 8))
    manifest = {
        "started_at": "2024-05-31T10:15:00+00:00",
        "timings": {"ingest": 0.5, "segment": 1.25, "embed": 30.0, "cluster": 2.0},
        "frequency_cutoffs": {"general": [2, 3], "variant": [2, 2], "single case": [1, 1]},
        "skipped": [
            {"what": "data/notes.pdf", "reason": "unsupported file type", "stage": "ingest"},
            {"what": "data/T4.txt", "reason": "empty transcript", "stage": "ingest"},
            {"what": "data/old.pdf", "reason": "unsupported file type", "stage": "ingest"},
        ],
        "counts": {"segments_backchannel": 7, "segments_interviewer": 12},
        "versions": {"consensa": "0.1.0", "numpy": np.__version__, "pandas": pd.__version__},
        "seed": 42,
        "inputs": [{"path": f"data/T{i}.txt", "sha256": f"{i}" * 64} for i in (1, 2, 3)],
    }
    manifest.update(manifest_overrides)
    config = {"name": "Crying in therapy <pilot>", "seed": 42,
              "clusterer": {"name": "consensa.HDBSCAN.v1", "min_cluster_size": 3},
              "concepts": {"items": [{"name": "genuineness"}]}}
    return RunResult(segments=seg, themes=themes, domains=domains, cqr=cqr, concepts=concepts,
                     theme_linkage=linkage(centroids, method="average", metric="cosine"),
                     manifest=manifest, config=config)


# --- An HTML checker ---------------------------------------------------------------

class Checker(HTMLParser):
    """Balanced tags, ids, and every URL-bearing attribute and CSS text."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.ids: list[str] = []
        self.urls: list[str] = []
        self.css: list[str] = []
        self.tags: set[str] = set()
        self.text: list[str] = []
        self._in_style = False

    def handle_starttag(self, tag, attrs):
        self._attrs(tag, attrs)
        if tag not in VOID:
            self.stack.append(tag)
        self._in_style = tag == "style"

    def handle_startendtag(self, tag, attrs):
        self._attrs(tag, attrs)

    def handle_endtag(self, tag):
        if tag in VOID:
            return
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"unexpected </{tag}>, open: {self.stack[-3:]}")
            return
        self.stack.pop()
        self._in_style = False

    def handle_data(self, data):
        if self._in_style:
            self.css.append(data)
        else:
            self.text.append(data)

    def _attrs(self, tag, attrs):
        self.tags.add(tag)
        for name, value in attrs:
            if name == "id":
                self.ids.append(value)
            if name in ("src", "href", "xlink:href", "action", "poster", "data", "srcset"):
                self.urls.append(value or "")
            if name == "style" or "url(" in (value or ""):
                self.css.append(value or "")


def parse(html: str) -> Checker:
    checker = Checker()
    checker.feed(html)
    checker.close()
    return checker


@pytest.fixture(scope="module")
def result() -> RunResult:
    return make_result()


@pytest.fixture(scope="module")
def html(result) -> str:
    return render_report(result)


# --- Tests -----------------------------------------------------------------------------

def test_is_well_formed_html(html):
    assert html.lstrip().startswith("<!DOCTYPE html>")
    doc = parse(html)
    assert doc.errors == []
    assert doc.stack == []
    assert {"html", "head", "body", "style", "table", "svg"} <= doc.tags
    assert len(doc.ids) == len(set(doc.ids)), "duplicate ids"


def test_sections_in_order(html):
    anchors = ['id="summary"', 'id="cqr"', 'id="map"', 'id="heatmap"', 'id="domains"',
               'id="concepts"', 'id="themes"', 'id="unassigned"', 'id="skipped"',
               'id="provenance"']
    positions = [html.index(a) for a in anchors]
    assert positions == sorted(positions)


def test_contains_every_quote_and_the_unassigned_text(result, html):
    seg = result.segments.set_index("segment_id")
    ids = set()
    for col in (result.themes["quote_ids"], result.concepts["quote_ids"]):
        for cell in col:
            ids.update(cell)
    assert ids
    doc_text = "".join(parse(html).text)
    for sid in ids:
        assert seg.loc[sid, "text"] in doc_text, sid       # complete, unescaped after parsing
    unassigned = result.segments.loc[result.segments["theme"] == -1, "text"]
    assert len(unassigned) == 1
    assert unassigned.iloc[0] in doc_text


def test_user_text_is_escaped(html):
    assert SCRIPT not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<b>shame</b>" not in html                    # theme name, also inside the SVGs
    assert "&lt;b&gt;shame&lt;/b&gt;" in html
    assert "Crying in therapy &lt;pilot&gt;" in html
    assert "<script" not in html.lower()


def test_theme_anchors_and_links(result, html):
    doc = parse(html)
    for t in result.themes["theme_id"]:
        assert f"theme-{t}" in doc.ids
    assert 'href="#theme-0"' in html
    cqr = html[html.index('id="cqr"'):html.index('id="map"')]
    assert 'href="#theme-0"' in cqr and 'href="#theme-1"' in cqr and 'href="#theme-2"' in cqr
    local = [u for u in doc.urls if u.startswith("#")]
    targets = set(doc.ids)
    for u in local:
        assert u[1:] in targets, u


def test_cqr_labels_and_frequency_cutoffs(html):
    cqr = html[html.index('id="cqr"'):html.index('id="map"')]
    for label in ("general", "variant"):
        assert f'freq-{label}' in cqr
    assert "3 of 3" in cqr and "2 of 3" in cqr
    assert "Domain: Crying in session" in cqr and "Domain: Miscellaneous" in cqr
    assert "general = 2–3 cases" in cqr and "single case = 1 case" in cqr


def test_default_frequency_text_without_cutoffs():
    out = render_report(make_result(frequency_cutoffs=None))
    assert "all but one" in out and "more than 15 cases" in out


def test_no_external_resources(html):
    doc = parse(html)
    for url in doc.urls:
        assert not re.match(r"\s*(https?:)?//", url, re.I), url
        assert url.startswith(("#", "data:")), url
    for css in doc.css:
        for ref in re.findall(r"url\(\s*['\"]?([^)'\"]*)", css):
            assert ref.startswith(("#", "data:")), ref
        assert "@import" not in css
    assert "http://" not in html and "https://" not in html
    assert "<link" not in html and "<img" not in html


def test_header_counts(html):
    head = html[:html.index('id="cqr"')]
    assert "Crying in therapy &lt;pilot&gt;" in head
    assert "2024-05-31T10:15:00+00:00" in head
    assert "Consensa proposes; the judges decide." in head
    assert "8.3 % (1 of 12)" in head            # unassigned and reassigned shares
    assert "33.8 s" in head                     # wall time, summed over stages


def test_concepts_supported_and_unsupported(html):
    part = html[html.index('id="concepts"'):html.index('id="themes"')]
    assert "status-supported" in part and "status-unsupported" in part
    assert "genuineness" in part and "rupture and repair" in part


def test_theme_card_details(result, html):
    card = html[html.index('id="theme-1"'):html.index('id="theme-2"')]
    assert "chars " in card and "turn 5" in card
    assert 'class="question"' in card
    assert "How did you feel afterwards?" in card
    long_q = result.segments.loc[result.segments["segment_id"] == "T1:5:0", "question"].iloc[0]
    assert long_q.strip() not in card.split('title="')[0]    # shown truncated (full in title)
    assert "mean strength" in card and "reassigned" in card
    assert "phrase 1a" in card


def t3_not_counted_in_theme_1(base: RunResult) -> RunResult:
    """``base`` as a CQR run (segments say which count toward their theme's label)
    in which T3's segments of theme 1 are weakly reassigned outliers: theme 1 has 3
    cases, and its label counts 2."""
    seg = base.segments.copy()
    seg["counted"] = ~((seg["case_id"] == "T3") & (seg["theme"] == 1))
    return RunResult(segments=seg, themes=base.themes, domains=base.domains, cqr=base.cqr,
                     concepts=base.concepts, theme_linkage=base.theme_linkage,
                     manifest=base.manifest, config=base.config)


def test_a_cqr_theme_card_says_which_cases_its_label_counts():
    """In a CQR run a case whose only segments in a theme are outliers reassigned below
    cqr.count_reassigned_above has the theme but does not count toward its label: the
    card gives the counted number and marks that case (it listed every case alike)."""
    base = make_result()
    out = render_report(t3_not_counted_in_theme_1(base))
    assert parse(out).errors == []
    one = out[out.index('id="theme-1"'):out.index('id="theme-2"')]
    cases = re.search(r"<dt>Cases</dt><dd>(.*?)</dd>", one, re.S).group(1)
    assert "(2 counted toward the label)" in cases
    assert re.search(r"T3 <span[^>]*>\(2\)</span> <span class=\"meta not-counted\">not counted",
                     cases)
    assert cases.count("not counted") == 1
    zero = out[out.index('id="theme-0"'):out.index('id="theme-1"')]
    assert "counted toward" not in zero and "not counted" not in zero
    # a themes run (no counted column) marks nothing
    assert "not counted" not in render_report(base)


def test_a_stance_subcategory_row_names_its_pole():
    """The CQR table of the report prints a stance subcategory with the pole it stands
    for, as cqr_table.md does; its phrase name alone does not say it."""
    from dataclasses import replace
    from html import escape
    base = make_result()
    cqr = base.cqr.copy()
    cqr["level"] = ["category", "subcategory", "category"][:len(cqr)]
    cqr["flags"] = [[] for _ in range(len(cqr))]
    cqr["label_if_reassigned_counted"] = cqr["frequency_label"]
    cqr["pole"] = ["", "not helpful", ""][:len(cqr)]
    out = render_report(replace(base, cqr=cqr))
    assert parse(out).errors == []
    table = out[out.index('id="cqr"'):out.index('id="map"')]
    assert escape(f"{THEME_NAMES[1]} (stance: not helpful)", quote=False) in table
    assert escape(f"{THEME_NAMES[0]} (stance", quote=False) not in table


def with_interview_frame(base: RunResult) -> RunResult:
    """``base`` as a CQR run whose interview frame (greetings, thanks) holds two
    segments: in no theme, on purpose, in a domain left out of the cross-analysis.
    The one segment of T2 in no theme stays the run's only unassigned one."""
    seg = base.segments
    hello = seg[seg["turn_index"] == 1].iloc[:2].copy()
    hello["segment_id"] = [f"{c}:0:0" for c in hello["case_id"]]
    hello["turn_index"] = 0
    hello["text"] = ["Thanks for having me <i>today</i>.", "Hello, shall we start?"]
    hello["question"] = ""
    hello["theme"], hello["theme_name"], hello["strength"] = -1, "", 0.0
    hello["domain_id"], hello["domain_name"] = 2, "Interview frame"
    hello["map_x"], hello["map_y"] = [9.0, 9.5], [-4.0, -4.5]
    domains = pd.concat([
        base.domains.assign(in_cross_analysis=True),
        pd.DataFrame([{"domain_id": 2, "name": "Interview frame", "keywords": [], "theme_ids": [],
                       "n_themes": 0, "n_segments": 2, "n_cases": 2, "frequency_label": "",
                       "is_miscellaneous": True, "in_cross_analysis": False}])],
        ignore_index=True)
    return RunResult(segments=pd.concat([seg, hello], ignore_index=True), themes=base.themes,
                     domains=domains, cqr=base.cqr, concepts=base.concepts,
                     theme_linkage=base.theme_linkage, manifest=base.manifest,
                     config=base.config)


def test_a_cqr_report_names_categories_and_no_context_blend_it_never_made():
    """A CQR run's header counts categories, and its 'How this was made' said each
    segment was read with the segments around it, from the context section's defaults,
    which the CQR analysis does not use."""
    from dataclasses import replace

    base = with_interview_frame(make_result())
    cqr = replace(base, manifest={**base.manifest, "analysis": "consensa.CQR.v1"},
                  config={**base.config, "context": {"window": 2, "weight": 0.2}})
    out = render_report(cqr)
    head = out[:out.index('id="cqr"')]
    assert "Categories</dt>" in head and "Themes</dt>" not in head
    assert "Context</dt><dd>not used" in out and "segments before and after" not in out
    themes_run = render_report(replace(cqr, manifest=base.manifest))
    assert "Themes</dt>" in themes_run[:themes_run.index('id="cqr"')]
    assert "2 segments before and after it" in themes_run


def test_a_protocol_that_recurs_little_is_noted_at_the_top_of_the_report(result, monkeypatch):
    """Counselling sessions run as a CQR study: the note that their "protocol" is one
    session's questions each stood in the protocol section, far down the page, while
    the summary printed it at once. The report says it under its summary too."""
    from dataclasses import replace

    import pipeline.stages.protocol as protocol

    note = "the 46 protocol areas are answered in a median of 3 of 40 cases: ..."
    monkeypatch.setattr(protocol, "scattered_protocol", lambda *a, **k: note)
    out = render_report(replace(result, protocol="areas: []\n"))
    top = out[out.index('id="summary"'):out.index('id="cqr"')]
    assert "The 46 protocol areas are answered in a median of 3 of 40 cases" in top
    monkeypatch.setattr(protocol, "scattered_protocol", lambda *a, **k: None)
    out = render_report(replace(result, protocol="areas: []\n"))
    assert "protocol-note" not in out[out.index('id="summary"'):out.index('id="cqr"')]


def test_the_map_counts_the_interview_frame_apart_from_the_unassigned():
    """The frame's segments are in no theme on purpose: the header, the run's summary
    and the manifest count them apart from the unassigned ones, and so does the map
    (its caption called all three segments in no theme unassigned, and drew them
    alike in light grey)."""
    out = render_report(with_interview_frame(make_result()))
    assert parse(out).errors == []
    head = out[:out.index('id="cqr"')]
    assert re.search(r"Unassigned segments</dt><dd>[^<]*\(1 of 14\)", head)
    assert re.search(r"Interview frame \(set apart\)</dt><dd>[^<]*\(2 of 14\)", head)
    # the frame is named among the domains, not counted, as the run's summary says it
    assert "Domains</dt><dd>2 and the interview frame</dd>" in head
    # the unassigned share is of all segments, and said so; of the cross-analysis's
    # segments (the frame set apart) it is given beside it
    part = out[out.index('<section id="unassigned"'):]
    assert "The share above is of all 14 segments" in part
    assert "of the 12 segments in the cross-analysis, 8.3 % are unassigned" in part
    part = out[out.index('<section id="map"'):out.index('<section id="heatmap"')]
    caption = re.search(r"<figcaption>(.*?)</figcaption>", part, re.S).group(1)
    assert "light grey = unassigned (1 segment)" in caption
    assert "grey rings = the interview frame, set apart from the cross-analysis on purpose " \
           "(2 segments)" in caption
    from pipeline.report.render import FRAME_COLOUR, UNASSIGNED_COLOUR

    svg = part[:part.index("<figcaption>")]
    # the figure agrees with its caption: one light-grey dot, two rings
    assert svg.count(f"fill: {UNASSIGNED_COLOUR}") == 1
    assert svg.count(f"stroke: {FRAME_COLOUR}") == 2
    legend = part[part.index('class="legend"'):]
    assert "unassigned</li>" in legend and "interview frame (set apart)</li>" in legend
    # the frame's text is data, escaped wherever it is shown
    assert "<i>today</i>" not in out
    # a run without a frame draws and captions as before, with no frame key
    plain = render_report(make_result())
    assert "light grey = unassigned (1 segment)." in plain
    assert "grey rings" not in plain and "interview frame (set apart)</li>" not in plain


def test_the_domains_tree_says_the_interview_frame_has_no_label_on_purpose():
    """The frame is left out of the cross-analysis and so has no frequency label; the
    tree showed "not recorded" beside its cases, as if the label had gone missing."""
    out = render_report(with_interview_frame(make_result()))
    part = out[out.index('id="domain-2"'):out.index("</li>", out.index('id="domain-2"'))]
    text = " ".join(re.sub(r"<[^>]+>", " ", part).split())
    assert "not recorded" not in text
    assert "Interview frame miscellaneous not in the cross-analysis, so no frequency label · " \
           "2 cases · 2 segments" in text
    # the other domains keep their labels
    assert "freq-general" in out[out.index('id="domain-0"'):out.index('id="domain-1"')]


def test_the_domains_tree_gives_the_cases_a_label_counts():
    """Beside a theme's label the domains' tree gave every case with a segment there,
    while a CQR label counts fewer ("typical" beside 10 cases of 10): it gives the
    counted cases, as the CQR table does, and every case where that differs, worded
    as the table's flag words the other label."""
    def tree_row(html: str, tid: int) -> str:
        part = html[html.index('<section id="domains"'):html.index('<section id="themes"')]
        row = re.search(rf'<a href="#theme-{tid}">.*?</li>', part, re.S).group(0)
        return " ".join(re.sub(r"<[^>]+>", " ", row).split())

    out = render_report(t3_not_counted_in_theme_1(make_result()))
    assert parse(out).errors == []
    assert "general 2 cases counted, 3 if reassigned outliers counted · 5 segments" in \
        tree_row(out, 1)
    # a theme whose label counts every case it has, and a themes run, say it once
    assert "general 3 cases · 4 segments" in tree_row(out, 0)
    plain = render_report(make_result())
    assert "general 3 cases · 5 segments" in tree_row(plain, 1)
    assert "if reassigned outliers counted" not in plain


def test_skipped_counts_and_provenance(html):
    part = html[html.index('id="skipped"'):]
    assert "unsupported file type" in part and "empty transcript" in part
    assert re.search(r"unsupported file type</td><td class=\"num\">2<", part)
    assert ">Segments backchannel</td>" in part       # a key with no words of its own
    assert "min_cluster_size: 3" in part          # config as YAML
    assert "1" * 64 in part and "seed" in part.lower()


def test_the_counts_table_speaks_words_and_keeps_every_count():
    """The Counts table is for the researcher: each count in words, grouped by what it
    is about, none left out, and none shown by the manifest's key ("segment_segments")."""
    counts = {"cases": 6, "cases_analysed": 6, "turns": 84, "segment_turns": 84,
              "segment_turns_not_analysed_role": 42, "segment_turns_backchannel": 6,
              "segment_segments": 72, "themes": 17, "domains": 7, "reassigned": 3,
              "unassigned": 5, "embedded": 70, "embeddings_from_cache": 2,
              "cue_times_dropped": 1, "crossanalysis_frame_skipped": 4,
              "protocol_main_questions": 18, "frame_segments": 4,
              "protocol_prompts_matched_by_area_word": 11}
    out = render_report(make_result(counts=counts, analysis="consensa.CQR.v1"))
    part = out[out.index("<h3>Counts</h3>"):out.index("</section>", out.index("<h3>Counts"))]
    rows = re.findall(r'<td title="[^"]*">([^<]*)</td><td class="num">([^<]*)</td>', part)
    assert len(rows) == len(counts)                       # every count, once
    assert not [w for w, _ in rows if "_" in w]            # no snake_case key shown
    assert ("Segments analysed", "72") in rows and ("Categories", "17") in rows
    assert ("Speaker turns read", "84") in rows
    assert ("Prompts matched by area word", "11") in rows  # the stage's words, as a fallback
    assert "<th colspan=\"2\" scope=\"rowgroup\">Interview protocol</th>" in part
    # the key stays findable in manifest.json, on hover
    assert 'title="manifest.json: counts.segment_segments"' in part


def test_dendrogram_and_plots_present(html):
    assert html.count("<svg") == 2               # map, dendrogram (the heat map is a table)
    assert html.count('<table class="heatmap">') == 1
    assert "Dendrogram" in html
    assert "<metadata" not in html               # no dates or creator in the SVGs


def test_deterministic(result, html):
    assert render_report(result) == html
    assert render_report(make_result()) == html


def test_missing_manifest_keys_and_empty_tables():
    base = make_result()
    empty = RunResult(
        segments=base.segments.iloc[0:0], themes=base.themes.iloc[0:0],
        domains=base.domains.iloc[0:0], cqr=base.cqr.iloc[0:0],
        concepts=base.concepts.iloc[0:0], theme_linkage=None, manifest={}, config={})
    out = render_report(empty)
    doc = parse(out)
    assert doc.errors == [] and doc.stack == []
    assert "not recorded" in out
    assert 'id="concepts"' not in out


def test_large_run_is_subsampled_and_unassigned_capped():
    base = make_result()
    n = 30_000
    rng = np.random.default_rng(3)
    seg = pd.concat([base.segments] * (n // len(base.segments)), ignore_index=True)
    seg["segment_id"] = [f"X{i // 100}:{i % 100}:0" for i in range(len(seg))]
    seg["case_id"] = [f"X{i // 100}" for i in range(len(seg))]
    seg["turn_index"] = [i % 100 for i in range(len(seg))]
    seg["map_x"] = rng.normal(size=len(seg))
    seg["map_y"] = rng.normal(size=len(seg))
    themes = base.themes.copy()
    themes["quote_ids"] = [["X0:0:0"], ["X0:4:0"], ["X0:7:0"]]
    res = RunResult(segments=seg, themes=themes, domains=base.domains, cqr=base.cqr,
                    concepts=base.concepts.iloc[0:0], theme_linkage=base.theme_linkage,
                    manifest=base.manifest, config=base.config)
    out = render_report(res)
    n_unassigned = int((seg["theme"] == -1).sum())
    assert n_unassigned > MAX_UNASSIGNED_LISTED
    assert f"first {MAX_UNASSIGNED_LISTED} of {n_unassigned}" in out
    drawn, total = re.search(r"subsample of ([\d,]+) of ([\d,]+) segments", out).groups()
    assert int(drawn.replace(",", "")) <= MAX_MAP_POINTS and total == f"{len(seg):,}"
    assert 'id="concepts"' not in out
    assert len(out) < 8_000_000


def test_leaves_no_pyplot_figures(html):
    import matplotlib.pyplot as plt
    assert plt.get_fignums() == []


def test_defensive_about_odd_inputs():
    base = make_result()
    themes = base.themes.copy()
    themes.at[2, "quote_ids"] = ["T9:9:9", "T2:7:0"]          # a quote not in segments
    themes.loc[2, "frequency_label"] = "single case"
    concepts = base.concepts.copy()
    concepts.at[0, "theme_ids"] = [0, 7]                       # theme 7 does not exist
    res = RunResult(segments=base.segments, themes=themes, domains=base.domains, cqr=base.cqr,
                    concepts=concepts, theme_linkage=np.zeros((0, 4)),
                    manifest={"skipped": [], "counts": {}}, config={"name": "odd"})
    out = render_report(res)
    doc = parse(out)
    assert doc.errors == [] and doc.stack == []
    assert "T9:9:9" in out and "not among the segments" in out
    assert "freq-single-case" in out
    assert "Nothing was skipped." in out
    assert "Dendrogram" not in out
    # a linkage that does not match the themes is drawn with positional labels, and said so
    mismatched = RunResult(segments=base.segments, themes=base.themes, domains=base.domains,
                           cqr=base.cqr, concepts=base.concepts,
                           theme_linkage=linkage(np.random.default_rng(2).normal(size=(2, 4))),
                           manifest=base.manifest, config=base.config)
    assert "2 leaves but there are 3 themes" in render_report(mismatched)


def test_a_table_without_a_documented_column_is_refused_by_name():
    base = make_result()
    res = RunResult(segments=base.segments, themes=base.themes.drop(columns=["key_phrases"]),
                    domains=base.domains, cqr=base.cqr, concepts=base.concepts,
                    theme_linkage=None, manifest=base.manifest, config=base.config)
    with pytest.raises(ConsensaError, match=r"the run's themes lacks the columns \['key_phrases'\]"):
        render_report(res)


def test_provenance_states_context_and_de_identification():
    def footer(result):
        html = render_report(result)
        return re.sub(r"\s+", " ", html[html.index('id="provenance"'):])

    part = footer(make_result())
    assert "<dt>Context</dt><dd>not recorded</dd>" in part
    assert "<dt>De-identified</dt><dd>not recorded</dd>" in part
    r = make_result(deidentify={"enabled": True, "replacements": {"PERSON": 4, "PLACE": 2}})
    object.__setattr__(r, "config", {**r.config, "context": {"window": 2, "weight": 0.2}})
    part = footer(r)
    assert "the 2 segments before and after it in its interview, at weight 0.2" in part
    assert "yes: identifiers replaced with placeholders before analysis (6 replacements)" in part
    r = make_result(deidentify={"enabled": False})
    object.__setattr__(r, "config", {**r.config, "context": {"window": 2, "weight": 0}})
    part = footer(r)
    assert "off: each segment grouped by its own words only" in part
    assert "<dt>De-identified</dt><dd>no</dd>" in part


def test_heat_map_of_many_cases_labels_every_nth_case_only():
    from pipeline.report.render import MAX_CASE_LABELS, _heatmap_section

    cases = [f"C{i:03d}" for i in range(130)]
    # more cases than a table labels: the drawn figure
    themes = pd.DataFrame({"theme_id": [0, 1], "name": ["grief / loss", "training"],
                           "domain_id": [0, 0]})
    counts = {0: {c: 1 + i % 3 for i, c in enumerate(cases)}, 1: {"C001": 2}}
    out = _heatmap_section(themes, {0: "Crying"}, cases, counts)
    step = -(-130 // MAX_CASE_LABELS)
    assert f"130 cases: one in every {step} is labelled" in out["caption"]
    svg = str(out["svg"])
    assert "C000" in svg and f"C{step:03d}" in svg and "C001" not in svg
    few = _heatmap_section(themes, {0: "Crying"}, cases[:12], counts)
    assert "labelled" not in few["caption"] and few["table"]["cases"] == cases[:12]


def test_a_small_heat_map_is_a_table_of_the_counts_with_names_as_text():
    """Up to MAX_CASE_LABELS cases the heat map is a table: every theme's row holds
    its count for each case, under its domain's heading, and names are text, never
    markup."""
    from pipeline.report.render import MAX_CASE_LABELS, TABLE_MAX_CELLS, _heatmap_section
    from pipeline.report.templating import page_environment

    cases = ["case01", "case02", "case03"]
    themes = pd.DataFrame({"theme_id": [0, 1, 2], "domain_id": [0, 0, 1],
                           "name": ["<b>tears</b>", "=SUM(A1)", "training"]})
    counts = {0: {"case01": 4, "case03": 1}, 1: {"case02": 2}, 2: {"case01": 1, "case02": 1}}
    out = _heatmap_section(themes, {0: "Crying <i>in</i> session", 1: "Training"}, cases, counts)
    assert out["svg"] is None and 3 <= MAX_CASE_LABELS and 9 <= TABLE_MAX_CELLS
    html = page_environment().from_string(
        "{% set heatmap = h %}" + _template_part("heatmap")).render(h=out)
    doc = parse(html)
    assert "b" not in doc.tags and "i" not in doc.tags
    assert "&lt;b&gt;tears&lt;/b&gt;" in html and "Crying &lt;i&gt;in&lt;/i&gt; session" in html
    rows = re.findall(r'<tr><th scope="row">(\d+) [^<]*</th>(.*?)</tr>', html)
    got = {int(t): [re.sub(r"<[^>]+>", "", c) for c in re.findall(r"<td[^>]*>[^<]*</td>", cells)]
           for t, cells in rows}
    assert got == {0: ["4", "", "1"], 1: ["", "2", ""], 2: ["1", "1", ""]}
    # the darkest cell is the largest count, and says whose it is when pointed at
    assert re.search(r'<td style="background: #[0-9a-f]{6}" class="dark" '
                     r'title="case01, theme 0: 4">4</td>', html)
    assert html.index("Crying") < html.index("=SUM(A1)") < html.index(">Training<")
    # past TABLE_MAX_CELLS cells, however few the cases, the figure
    many = pd.DataFrame({"theme_id": range(51), "domain_id": [0] * 51,
                         "name": [f"theme {i}" for i in range(51)]})
    assert 51 * MAX_CASE_LABELS > TABLE_MAX_CELLS
    drawn = _heatmap_section(many, {0: "Crying"}, [f"c{i}" for i in range(MAX_CASE_LABELS)], {})
    assert drawn["table"] is None and drawn["svg"] is not None


def _template_part(section: str) -> str:
    """The report template's ``<section id=SECTION>``, to render on its own."""
    from pathlib import Path

    import pipeline.report as report

    text = (Path(report.__file__).parent / "templates" / "report.html.j2").read_text("utf-8")
    start = text.index(f'<section id="{section}">')
    return text[start:text.index("</section>", start) + len("</section>")]
