"""``consensa compare``: metrics against hand-computed examples, and whole comparisons."""

from __future__ import annotations

import json
import math
import zipfile
from itertools import product

import numpy as np
import openpyxl
import pandas as pd
import pytest
from scipy.special import comb

from pipeline.cli import main
from pipeline.compare import (
    agreement_metrics,
    best_matching,
    coder_agreement_on_spans,
    compare,
    krippendorff_alpha,
    nominal_agreement,
    summary_text,
    write_compare,
)
from pipeline.errors import InputError
from pipeline.exchange.codes import load_run
from pipeline.exchange.read import read_codes
from pipeline.exchange.refi import qdpx_bytes
from tests.compare_helpers import (
    TEAMS_VTT,
    TOPIC_CODES,
    nfc_lf,
    topic_project,
    topic_rows,
    write_csv,
)
from tests.study import TOPICS

# --- Metrics by hand ----------------------------------------------------------------
# Eight items, codes X/Y, themes 1/2, contingency [[3, 1], [1, 3]].
CODES = ["X", "X", "X", "X", "Y", "Y", "Y", "Y"]
THEMES = [1, 1, 1, 2, 2, 2, 2, 1]


def test_two_by_two_by_hand():
    m = agreement_metrics(CODES, THEMES)
    # ARI: sum C(n_ij, 2) = 3 + 0 + 0 + 3 = 6; rows and columns 2 * C(4, 2) = 12 each;
    # expected 12 * 12 / C(8, 2) = 36/7; max 12: (6 - 36/7) / (12 - 36/7) = 1/8
    assert m["ari"] == pytest.approx(0.125)
    # MI = 2 * 3/8 ln(1.5) + 2 * 1/8 ln(0.5); both entropies ln 2
    mi = 0.75 * math.log(1.5) + 0.25 * math.log(0.5)
    assert m["nmi"] == pytest.approx(mi / math.log(2))
    assert m["homogeneity"] == pytest.approx(mi / math.log(2))
    assert m["completeness"] == pytest.approx(mi / math.log(2))
    # AMI = (MI - E[MI]) / (mean(H) - E[MI]), E[MI] over the hypergeometric model
    assert m["ami"] == pytest.approx((mi - _emi([4, 4], [4, 4])) /
                                     (math.log(2) - _emi([4, 4], [4, 4])))
    # matching pairs X-1 and Y-2: observed 6/8, expected 1/2, kappa = 0.25 / 0.5
    assert m["kappa"] == pytest.approx(0.5)
    assert m["matched_agreement"] == pytest.approx(0.75)
    assert m["n"] == 8


def _emi(a: list[int], b: list[int]) -> float:
    """Expected mutual information of two random labellings with these class sizes."""
    n = sum(a)
    total = 0.0
    for ai, bj in product(a, b):
        for nij in range(max(1, ai + bj - n), min(ai, bj) + 1):
            p = comb(ai, nij) * comb(n - ai, bj - nij) / comb(n, bj)
            total += nij / n * math.log(n * nij / (ai * bj)) * p
    return total


def test_perfect_and_swapped_labels_agree_fully():
    m = agreement_metrics(["a", "a", "b", "b", "c"], [7, 7, 3, 3, 9])
    assert m["ari"] == m["nmi"] == m["kappa"] == pytest.approx(1.0)


def test_more_themes_than_codes_unmatched_themes_never_agree():
    # codes X X Y Y, themes 1 2 3 3: X-1 (or X-2) and Y-3 are matched; one X is unmatched
    m = agreement_metrics(["X", "X", "Y", "Y"], [1, 2, 3, 3])
    assert m["matched_agreement"] == pytest.approx(0.75)
    # observed 3/4; the mapped labels are X, unmatched, Y, Y: expected 2/4*1/4 + 2/4*2/4
    assert m["kappa"] == pytest.approx((0.75 - 0.375) / (1 - 0.375))
    assert m["homogeneity"] == pytest.approx(1.0) and m["completeness"] < 1


def test_best_matching_is_one_to_one_and_optimal():
    table = pd.DataFrame([[5, 4, 0], [4, 0, 0], [0, 0, 0]], index=["A", "B", "C"],
                         columns=[1, 2, 3])
    # greedy would take A-1 (5) and then B gets nothing; the optimum is A-2 + B-1 = 8
    assert best_matching(table) == {2: "A", 1: "B"}     # C-3 share nothing: no match
    assert best_matching(pd.DataFrame()) == {}


def test_two_coders_by_hand():
    r = pd.DataFrame({"A": list("aabb"), "B": list("abbb")})
    out = nominal_agreement(r)
    # Cohen: po 3/4, pe = .5*.25 + .5*.75 = .5 -> .5
    assert out["cohen"] == pytest.approx(0.5)
    assert out["pairs"][("A", "B")] == (pytest.approx(0.5), pytest.approx(0.75), 4)
    # Fleiss: P_i = 1, 0, 1, 1 -> .75; p_a = 3/8, p_b = 5/8 -> Pe = 34/64
    assert out["fleiss"] == pytest.approx((0.75 - 34 / 64) / (1 - 34 / 64))
    # Krippendorff: o_ab = o_ba = 1, n = 8, n_a = 3, n_b = 5: 1 - (2/8) / (30/56)
    assert out["krippendorff"] == pytest.approx(1 - (2 / 8) / (30 / 56))
    assert out["percent"] == pytest.approx(0.75)


def test_three_coders_with_a_missing_rating_by_hand():
    r = pd.DataFrame({"A": ["a", "a", "b", "a", "a"], "B": ["a", "a", "b", "b", None],
                      "C": ["a", "b", "b", "b", "a"]})
    out = nominal_agreement(r)
    # Fleiss on the 4 complete units: P = (1 + 1/3 + 1 + 1/3) / 4 = 2/3, Pe = 1/2 -> 1/3
    assert out["fleiss"] == pytest.approx(1 / 3)
    assert out["n_complete"] == 4 and out["n_units"] == 5
    # Krippendorff: o_aa = 3 + 1 + 2 (unit 5: two values, weight 1) = 6, o_bb = 4,
    # o_ab = o_ba = 2; n = 14, n_a = 8, n_b = 6: 1 - (4/14) / (2*8*6 / (14*13))
    assert out["krippendorff"] == pytest.approx(1 - (4 / 14) / (96 / 182))
    assert krippendorff_alpha(r) == out["krippendorff"]
    # pairs: A-B 3 of 4, A-C 3 of 5, B-C 3 of 4
    assert out["percent"] == pytest.approx((0.75 + 0.6 + 0.75) / 3)


def test_agreement_is_undefined_without_variation():
    out = nominal_agreement(pd.DataFrame({"A": ["x", "x"], "B": ["x", "x"]}))
    assert math.isnan(out["cohen"]) and math.isnan(out["fleiss"])
    assert math.isnan(out["krippendorff"]) and out["percent"] == 1.0


def test_coder_agreement_on_spans_without_a_run(tmp_path):
    rows = []
    labels = {"Ana": "XXYY", "Ben": "XYYY"}
    for coder, labs in labels.items():
        for k, lab in enumerate(labs):
            rows.append({"case": "c1", "code": lab, "coder": coder, "start": 10 * k,
                         "end": 10 * k + 8, "text": ""})
    res = coder_agreement_on_spans(read_codes(write_csv(tmp_path / "c.csv", rows)))
    assert res.overall["cohen"] == pytest.approx(0.5)
    per = res.per_code.set_index("code")
    assert per.at["X", "cohen"] == pytest.approx(0.5) and per.at["X", "n_with_code"] == 2


# --- Whole comparisons ------------------------------------------------------------------

@pytest.fixture()
def plain(study_run):
    folder = study_run()
    return folder, folder.parent / "study-plain"


def test_codes_that_are_the_topics_agree_fully(plain, tmp_path, capsys):
    folder, study = plain
    codes = write_csv(tmp_path / "codes.csv", topic_rows(study))
    out = tmp_path / "cmp"
    assert main(["compare", str(folder), str(codes), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "adjusted Rand index" in printed and "1.00" in printed
    assert "codes (category): 3; 3 found" in printed
    for name in ("compare.html", "agreement.csv", "by_code.csv", "by_theme.csv",
                 "contingency_category.csv", "contingency_domain.csv", "segments.csv",
                 "coding_spans.csv", "disagreements.csv", "disagreements.xlsx", "summary.txt",
                 "compare_manifest.json"):
        assert (out / name).is_file(), name
    agreement = pd.read_csv(out / "agreement.csv")
    cat = agreement[agreement["level"] == "category"].set_index("measure")["value"]
    assert cat["ari"] == pytest.approx(1.0) and cat["kappa"] == pytest.approx(1.0)
    assert set(agreement["level"]) == {"category", "domain"}
    manifest = json.loads((out / "compare_manifest.json").read_text())
    assert len(manifest["codes"]["sha256"]) == 64 and manifest["params"]["level"] == "category"
    assert "review" not in printed
    html = (out / "compare.html").read_text()
    assert "<svg" in html and "<script" not in html and "http://" not in html.replace(
        "http://www.w3.org", "") and "https://" not in html
    assert "replaced the earlier comparison" not in printed
    # a second comparison in the same folder replaces the first, and says so
    other = write_csv(tmp_path / "other.csv", topic_rows(study))
    assert main(["compare", str(folder), str(other), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"replaced the earlier comparison in {out} (with {codes})" in printed


def test_compare_on_a_reviewed_run_says_it_compares_the_proposal(study_run, review_run, tmp_path,
                                                                 capsys):
    study = study_run().parent / "study-plain"
    codes = write_csv(tmp_path / "codes.csv", topic_rows(study))
    assert main(["review", "export", str(review_run), "--judges", "ana,ben"]) == 0
    capsys.readouterr()
    assert main(["compare", str(review_run), str(codes), "--out", str(tmp_path / "c")]) == 0
    assert "compares the run's proposed themes" in capsys.readouterr().out


def test_splits_mixes_new_codes_partial_overlaps_and_the_queue(plain, tmp_path):
    folder, study = plain

    def code_of(topic, k, case):
        if topic == "client":
            return "Support > Supervision" if case == "case01" and k in (2, 3) else None
        if topic == "training":
            return "Preparation > Training gaps" if k < 3 else "Preparation > Taboo"
        return TOPIC_CODES[topic]

    rows = topic_rows(study, code_of=code_of)
    # a code spread over three topics; a code on the interviewer's questions only
    last_two = {s for sentences in TOPICS.values() for s in sentences[4:]}
    spread = [dict(r, code="Misc > Everything") for r in topic_rows(study)
              if r["text"] in last_two]
    text = (study / "case02.txt").read_text()
    q = text.index("Did you bring it to supervision?")
    rows += spread + [{"case": "case02", "code": "Questions", "start": q, "end": q + 32,
                       "text": "Did you bring it to supervision?"}]
    # a code covering a fifth of one segment: a partial overlap
    run = load_run(folder)
    seg = run.segments[run.segments["case_id"] == "case03"].iloc[0]
    n = seg["end_char"] - seg["start_char"]
    rows.append({"case": "case03", "code": "Tiny", "start": seg["start_char"],
                 "end": seg["start_char"] + n // 5, "text": ""})
    res = compare(folder, write_csv(tmp_path / "codes.csv", rows,
                                    ["case", "code", "start", "end", "text"]))
    cat = res.levels["category"]
    by_code = cat.by_code.set_index("code")
    assert by_code.at["Misc > Everything", "status"] == "split"
    assert by_code.at["Misc > Everything", "n_themes"] == 3
    assert by_code.at["Questions", "status"] == "not in the analysed segments"
    assert by_code.at["Tiny", "n_partial"] == 1 and by_code.at["Tiny", "n_segments"] == 0
    assert by_code.at["Support > Supervision", "status"] == "found"
    training = cat.by_theme[cat.by_theme["codes"].str.contains("Preparation > Taboo")]
    assert len(training) == 1 and training["status"].iloc[0].startswith("mixes")
    assert training["matched_code"].iloc[0] in ("Preparation > Taboo",
                                                "Preparation > Training gaps")
    new = cat.by_theme[cat.by_theme["status"].str.startswith("candidate new code")]
    assert len(new) == 1       # the client theme: coded only in case01
    assert cat.counts["partial_overlaps"] >= 1
    # the queue: client segments coded as supervision sit in the client theme
    q = res.queue
    assert len(q) and (q["human_code"] == "Support > Supervision").any()
    kinds = list(q["kind"])
    assert kinds == sorted(kinds, key=lambda k: k != "conflict")     # conflicts first
    for _, grp in q.groupby("kind"):
        assert list(grp["confidence"]) == sorted(grp["confidence"], reverse=True)
    row = q[q["human_code"] == "Support > Supervision"].iloc[0]
    assert row["theme"] != row["code_expected_in_theme"]
    assert "client" in row["quote"]
    assert "domain" in res.levels
    out = write_compare(res, tmp_path / "cmp")
    wb = openpyxl.load_workbook(out / "disagreements.xlsx")
    ws = wb["disagreements"]
    header = [c.value for c in ws[1]]
    assert header[:3] == ["rank", "kind", "segment_id"] and "verdict" in header
    assert ws.data_validations.dataValidation
    assert ws.cell(2, header.index("quote") + 1).value == q.iloc[0]["quote"]
    text = summary_text(res)
    assert len(text.splitlines()) <= 24 and "candidate new codes" in text


def test_sentence_level_codes_are_named_as_such_not_as_outside_the_segments(plain, tmp_path):
    """A code whose codings lie in participant segments but each cover less than half
    of one (sentence-level coding) carries no segment. It is named as coded in short
    passages, with what to do, not "not in the analysed segments", which stays for
    codings outside every segment (the interviewer's questions)."""
    folder, study = plain
    run = load_run(folder)
    rows = topic_rows(study)
    for case in ("case01", "case02"):
        for _, seg in run.segments[run.segments["case_id"] == case].head(2).iterrows():
            n = seg["end_char"] - seg["start_char"]
            rows.append({"case": case, "code": "Short", "start": seg["start_char"],
                         "end": seg["start_char"] + n // 4, "text": ""})
    text = (study / "case02.txt").read_text()
    q = text.index("Did you bring it to supervision?")
    rows.append({"case": "case02", "code": "Questions", "start": q, "end": q + 32,
                 "text": "Did you bring it to supervision?"})
    codes = write_csv(tmp_path / "codes.csv", rows, ["case", "code", "start", "end", "text"])
    res = compare(folder, codes)
    by_code = res.levels["category"].by_code.set_index("code")
    assert by_code.at["Short", "status"] == "coded passages shorter than half a segment " \
        "(4 codings)"
    assert by_code.at["Short", "n_segments"] == 0 and by_code.at["Short", "n_partial"] == 4
    assert by_code.at["Questions", "status"] == "not in the analysed segments"
    note = next(n for n in res.notes if "passages shorter than half a segment" in n)
    assert "Short" in note and "--min-coverage" in note and "Questions" not in note
    summary = summary_text(res)
    assert "1 coded only in short passages" in summary and "1 not in the analysed" in summary
    assert summary.count("--min-coverage") == 1            # once, not again among the notes
    # the hint holds: a lower minimum coverage counts the short passages
    lower = compare(folder, codes, min_coverage=0.2).levels["category"].by_code
    assert lower.set_index("code").at["Short", "n_segments"] == 4


def test_codes_on_some_cases_are_compared_over_those_cases(plain, tmp_path):
    """Coders who coded one transcript of six, perfectly: every code is found and no
    theme is "mostly uncoded". The five cases nobody opened are left out of the
    per-code and per-theme figures, and the summary and page say so."""
    folder, study = plain
    rows = [r for r in topic_rows(study) if r["case"] == "case01"]
    res = compare(folder, write_csv(tmp_path / "codes.csv", rows))
    cat = res.levels["category"]
    assert cat.metrics["ari"] == pytest.approx(1.0)
    assert set(cat.by_code["status"]) == {"found"}
    assert cat.by_code["best_f1"].tolist() == pytest.approx([1.0] * 3)
    themes = cat.by_theme[cat.by_theme["n_segments"] > 0]
    assert len(themes) == 3 and set(themes["status"]) == {"matches a code"}
    assert cat.counts["coded_cases"] == 1 and cat.counts["cases"] == 6
    assert (themes["uncoded_share"] == 0).all()
    assert (themes["n_segments_all_cases"] > themes["n_segments"]).all()
    text = summary_text(res)
    assert "over the 1 coded case of 6" in text
    assert "0 candidate new codes" in text and "3 found" in text
    html = write_compare(res, tmp_path / "cmp").joinpath("compare.html").read_text()
    assert "Per code and per theme: over the 1 coded case of 6" in html
    # with every case coded, nothing is left out and nothing is said about it
    full = compare(folder, write_csv(tmp_path / "all.csv", topic_rows(study)))
    assert "coded case" not in summary_text(full)
    assert (full.levels["category"].by_theme["n_segments_all_cases"] ==
            full.levels["category"].by_theme["n_segments"]).all()


def test_codes_that_could_not_be_placed_are_in_the_per_code_table(plain, tmp_path, capsys):
    """Two codes whose only quotes are not in the transcripts and a coding of a case the
    run does not have: every code of the file has a row, the unplaced ones say so, and
    the note on what was not placed is the first note, in full."""
    folder, study = plain
    rows = topic_rows(study, offsets=False) + [
        {"case": "case01", "code": "Invented > Quote one",
         "text": "A sentence nobody in this study ever said about lighthouses."},
        {"case": "case02", "code": "Invented > Quote two",
         "text": "Another invented line on the price of umbrellas in spring."},
        {"case": "case99", "code": TOPIC_CODES["client"],
         "text": "The client said she felt truly seen when she noticed my eyes were wet."}]
    codes = write_csv(tmp_path / "codes.csv", rows)
    out = tmp_path / "cmp"
    assert main(["compare", str(folder), str(codes), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    by_code = pd.read_csv(out / "by_code.csv")
    cat = by_code[by_code["level"] == "category"].set_index("code")
    assert set(cat.index) == set(TOPIC_CODES.values()) | {"Invented > Quote one",
                                                          "Invented > Quote two"}
    assert cat.at["Invented > Quote one", "status"] == "not placed (1 coding)"
    assert cat.at["Invented > Quote two", "n_not_placed"] == 1
    assert cat.at[TOPIC_CODES["client"], "status"] == "found"
    assert cat.at[TOPIC_CODES["client"], "n_not_placed"] == 1     # the case99 coding
    dom = by_code[by_code["level"] == "domain"].set_index("code")
    assert dom.at["Invented", "status"] == "not placed (2 codings)"
    assert "(table; 5 codes" in printed
    assert "codes (category): 5; 3 found, 2 not placed" in printed
    assert "Invented > Quote one (1), Invented > Quote two (1)" in printed
    notes = printed[printed.index("  notes: "):].splitlines()
    n_rows = len(rows)
    assert notes[0] == (f"  notes: 2 (see compare.html): 3 of {n_rows} coding(s) not placed "
                        "in Consensa's text: 1 case not in the run, 2 text not found in "
                        "Consensa's text (listed in coding_spans.csv)")
    assert "'case99'" in notes[1]
    html = (out / "compare.html").read_text()
    assert "not placed (1 coding)" in html and "Invented &gt; Quote two" in html


def test_two_coders(plain, tmp_path):
    folder, study = plain
    rows = topic_rows(study, coder="Ana")
    rows += topic_rows(study, coder="Ben", code_of=lambda t, k, c: (
        "Support > Supervision" if t == "client" and k == 0 else TOPIC_CODES[t]))
    res = compare(folder, write_csv(tmp_path / "codes.csv", rows))
    cr = res.coders["category"]
    assert cr.coders == ["Ana", "Ben"]
    o = cr.overall
    assert 0 < o["cohen"] < 1 and 0 < o["krippendorff"] < 1 and 0 < o["percent"] < 1
    assert set(o["pairs"]) == {("Ana", "Ben")}
    # the headline counts the segments at least one coder coded; all of them beside it
    seg = res.segments
    assert o["n_units"] == sum(1 for c in seg["coders"] if len(c)) <= len(seg)
    assert cr.all_units["n_units"] == len(seg)
    per = cr.per_code.set_index("code")
    assert per.at["Preparation > Training gaps", "percent"] == pytest.approx(1.0)
    assert per.at["Relationship > Client response", "percent"] < 1
    assert "domain" in res.coders
    out = write_compare(res, tmp_path / "cmp")
    coders = pd.read_csv(out / "coders.csv")
    assert {"cohen", "fleiss", "krippendorff", "percent"} <= set(coders["measure"])
    assert "Between the human coders" in (out / "compare.html").read_text()
    text = summary_text(res)
    assert f"between 2 coders, on the {o['n_units']} segments at least one of them coded" in text
    assert f"on all {len(seg)} segments of the cases they coded" in text
    assert set(coders["scope"]) >= {"overall", "all segments"}


def test_compare_with_a_qdpx_of_crlf_nfd_transcripts(study_run, tmp_path):
    """A QDA program saw the transcripts as LF + NFC; Consensa read CRLF + NFD."""
    folder = study_run("crlf-nfd")
    study = folder.parent / "study-crlf-nfd"
    run = load_run(folder)
    # build the project: a plain-text copy per case, LF + NFC, coded by topic
    sources, sels = [], []
    for k, f in enumerate(sorted(study.glob("case*.txt"))):
        text = nfc_lf(f.read_bytes().decode("utf-8"))
        g = f"00000000-0000-4000-8000-{k:012d}"
        sources.append((f.name, g, text))
        for j, r in enumerate(topic_rows(study, text_of=nfc_lf)):
            if r["case"] == f.stem:
                sels.append((g, r["start"], r["end"], r["code"], f"{k:04d}{j:08d}"))
    code_guid = {c: f"10000000-0000-4000-8000-{i:012d}" for i, c in
                 enumerate(sorted(TOPIC_CODES.values()))}
    codes_xml = "".join(f'<Code guid="{g}" name="{c.split(" > ")[1]}" isCodable="true"/>'
                        for c, g in code_guid.items())
    # nest as Domain > Category
    domains = {}
    for c, g in code_guid.items():
        d = c.split(" > ")[0]
        domains.setdefault(d, []).append(f'<Code guid="{g}" name="{c.split(" > ")[1]}" '
                                         'isCodable="true"/>')
    codes_xml = "".join(f'<Code guid="20000000-0000-4000-8000-{i:012d}" name="{d}" '
                        f'isCodable="true">{"".join(cs)}</Code>'
                        for i, (d, cs) in enumerate(sorted(domains.items())))
    # a code the coders never applied: it has its row in the per-code table all the same
    codes_xml += '<Code guid="50000000-0000-4000-8000-000000000001" name="Never used" ' \
                 'isCodable="true"/>'

    src_xml = ""
    for name, g, _ in sources:
        sel_xml = "".join(
            f'<PlainTextSelection guid="30000000-0000-4000-8000-{sid}" startPosition="{s}" '
            f'endPosition="{e}"><Coding guid="40000000-0000-4000-8000-{sid}">'
            f'<CodeRef targetGUID="{code_guid[c]}"/></Coding></PlainTextSelection>'
            for sg, s, e, c, sid in sels if sg == g)
        src_xml += (f'<TextSource guid="{g}" name="{name}" plainTextPath="internal://{g}.txt">'
                    f'{sel_xml}</TextSource>')
    qde = (f'<?xml version="1.0" encoding="utf-8"?><Project xmlns="urn:QDA-XML:project:1.0" '
           f'name="t"><CodeBook><Codes>{codes_xml}</Codes></CodeBook><Sources>{src_xml}'
           f'</Sources></Project>')
    path = tmp_path / "p.qdpx"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("project.qde", qde)
        for _, g, text in sources:
            zf.writestr(f"Sources/{g}.txt", text.encode("utf-8"))
    res = compare(folder, path)
    placed = res.placed
    assert (placed["status"] == "placed").all() and set(placed["how"]) == {"normalised"}
    truth = {(r["case"], r["code"], r["start"], r["end"]) for r in topic_rows(study)}
    assert {(r.case_id, r.code, r.start_char, r.end_char) for r in placed.itertuples()} == truth
    assert res.levels["category"].metrics["ari"] == pytest.approx(1.0)
    assert run.sources["case01"].count("\r\n") > 10
    for lv in ("category", "domain"):
        rows = res.levels[lv].by_code.set_index("code")
        assert rows.at["Never used", "status"] == "not used (0 codings)"
        assert set(rows.index) - {"Never used"} == {
            c if lv == "category" else c.split(" > ")[0] for c in TOPIC_CODES.values()}


def test_exported_project_compared_with_its_run_agrees_fully(plain, tmp_path):
    folder, _ = plain
    path = tmp_path / "run.qdpx"
    path.write_bytes(qdpx_bytes(load_run(folder)))
    res = compare(folder, path)
    for lv in ("category", "domain"):
        assert res.levels[lv].metrics["ari"] == pytest.approx(1.0)
        assert res.levels[lv].metrics["kappa"] == pytest.approx(1.0)
    assert res.queue.empty and set(res.placed["how"]) == {"identical"}


def test_a_top_level_code_holding_the_code_system_is_not_the_domain_level(plain, tmp_path):
    """NVivo writes its codes under one top-level code, "Nodes", not codable: read as
    the domain level it put every coding in one domain, and the domain-level agreement
    was 0.00 whatever the coding, without a word. It is passed over, and said; so is a
    single top-level code with no coding of its own."""
    folder, study = plain
    rows = topic_rows(study, coder="Ana")
    bare = compare(folder, topic_project(study, tmp_path / "bare.qdpx", rows))
    assert bare.levels["domain"].metrics["ari"] > 0.5
    assert not bare.codes.info["wrappers"]
    for codable in (False, True):
        path = topic_project(study, tmp_path / f"nodes-{codable}.qdpx", rows, wrap="Nodes",
                             wrap_codable=codable)
        res = compare(folder, path)
        for lv in ("category", "domain"):
            assert res.levels[lv].metrics == bare.levels[lv].metrics
        assert set(res.codes.codebook["code"]) == set(bare.codes.codebook["code"])
        text = summary_text(res)
        why = "has no coding of its own" if codable else "is not codable"
        assert f"levels: the top-level code 'Nodes' holds the whole code system and {why}" \
            in text
    # a codebook converted to another format keeps the code as it is
    from pipeline.exchange.refi import export_codebook

    codes, _ = export_codebook(tmp_path / "nodes-False.qdpx")
    assert [c.name for c in codes] == ["Nodes"]
    # a single top-level code that is coded itself is a level
    coded = rows + [{**rows[0], "code": "Nodes"}]
    path = topic_project(study, tmp_path / "coded.qdpx", coded, wrap="Nodes",
                         wrap_codable=True)
    codes = read_codes(path)
    assert not codes.info["wrappers"] and set(codes.codebook["domain"]) == {"Nodes"}


def test_a_subtitle_case_exported_with_speaker_names_places_exactly(tmp_path):
    """A subtitle transcript goes into the project with each speaker's name before their
    turn (its text has none); compared with the run that exported it, the names are set
    aside and every coding lands on its segment, with no "differs" note."""
    from pipeline.config import validate_config
    from pipeline.run import run
    from tests.study import study_config, write_study

    folder = write_study(tmp_path / "study")
    (folder / "case90.vtt").write_text(TEAMS_VTT, encoding="utf-8")
    out = run(validate_config(study_config(folder)), folder, tmp_path / "run")
    path = tmp_path / "run.qdpx"
    path.write_bytes(qdpx_bytes(load_run(out)))
    res = compare(out, path)
    assert not [n for n in res.notes if "differs" in n or "% of its characters" in n]
    assert any("case90" in n and "speaker's name before their turn" in n
               and "the rest matched exactly" in n for n in res.notes)
    for lv in ("category", "domain"):
        assert res.levels[lv].metrics["ari"] == pytest.approx(1.0)
    seg = load_run(out).segments
    mine = res.placed[res.placed["case_id"] == "case90"]
    assert len(mine) == int((seg["case_id"] == "case90").sum()) > 0
    assert set(mine["status"]) == {"placed"} and set(mine["match"]) == {1.0}
    assert sorted(zip(mine["start_char"], mine["end_char"])) == sorted(
        zip(*(seg.loc[seg["case_id"] == "case90", c] for c in ("start_char", "end_char"))))


def test_html_escapes_code_names_and_quotes(plain, tmp_path):
    folder, study = plain
    # ">" separates code levels, so a hostile name is written without it
    rows = topic_rows(study, code_of=lambda t, k, c: "<img src=x onerror=alert(1) & co"
                      if t == "client" else TOPIC_CODES[t])
    res = compare(folder, write_csv(tmp_path / "codes.csv", rows))
    html = write_compare(res, tmp_path / "cmp").joinpath("compare.html").read_text()
    assert "<img" not in html and "&lt;img src=x onerror=alert(1) &amp; co" in html


def test_a_coding_whose_offsets_excel_mangled_is_counted_not_placed(plain, tmp_path, capsys):
    """Offsets Excel wrote as "1,927" or 2.5E+03, with no text: the rows were dropped, the
    note said their text was used, and their codes had no row in by_code.csv."""
    folder, study = plain
    rows = topic_rows(study, offsets=False) + [
        {"case": "case01", "code": "Mangled", "start": "1,927", "end": "2,176"},
        {"case": "case01", "code": "Mangled too", "start": "2.5E+03", "end": "2730"}]
    out = tmp_path / "cmp"
    table = write_csv(tmp_path / "codes.csv", rows, columns=["case", "code", "text", "start",
                                                              "end"])
    assert main(["compare", str(folder), str(table), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    cat = pd.read_csv(out / "by_code.csv").query("level == 'category'").set_index("code")
    assert cat.at["Mangled", "status"] == "not placed (1 coding)"
    assert cat.at["Mangled too", "n_not_placed"] == 1
    assert "2 offsets unusable (not whole numbers, or start not before end), no text" in printed


def test_output_folder_is_replaced_but_a_foreign_folder_is_not_touched(plain, tmp_path):
    folder, study = plain
    res = compare(folder, write_csv(tmp_path / "codes.csv", topic_rows(study)))
    out = write_compare(res, tmp_path / "cmp")
    (out / "extra.txt").write_text("old")
    write_compare(res, out)
    assert not (out / "extra.txt").exists() and (out / "compare.html").is_file()
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(InputError, match="not a folder written by `consensa compare`"):
        write_compare(res, foreign)
    assert (foreign / "notes.txt").read_text() == "keep me"


def test_compare_errors_exit_2(plain, tmp_path, capsys):
    folder, _ = plain
    bad = write_csv(tmp_path / "codes.csv", [{"case": "nobody", "code": "A", "text": "x"}])
    assert main(["compare", str(folder), str(bad)]) == 2
    err = capsys.readouterr().err
    assert "none of the codes could be placed" in err and "case01" in err
    assert "1 case not in the run" in err and "name the cases as the run's case ids" in err
    # a case the run has, a text it does not: the message says so, not "check the names"
    absent = write_csv(tmp_path / "absent.csv", [{"case": "case01", "code": "A",
                                                  "text": "Words nobody in this study said."}])
    assert main(["compare", str(folder), str(absent)]) == 2
    err = capsys.readouterr().err
    assert "1 text not found in Consensa's text" in err and "name the cases" not in err
    flat = write_csv(tmp_path / "flat.csv", [{"case": "case01", "code": "A",
                                              "text": "Thank you for joining me today."}])
    assert main(["compare", str(folder), str(flat), "--level", "domain"]) == 2
    assert "needs hierarchical codes" in capsys.readouterr().err
    for depth in ("0", "-1"):
        assert main(["compare", str(folder), str(flat), "--depth", depth]) == 2
        assert f"--depth must be 1 or more; got {depth}" in capsys.readouterr().err
    assert main(["compare", str(tmp_path), str(flat)]) == 2
    assert "not a Consensa run folder" in capsys.readouterr().err


def test_depth_cuts_code_paths(plain, tmp_path):
    folder, study = plain
    rows = topic_rows(study, code_of=lambda t, k, c: f"{TOPIC_CODES[t]} > sentence {k % 2}")
    res = compare(folder, write_csv(tmp_path / "codes.csv", rows), depth=2)
    assert set(res.levels["category"].by_code["code"]) == set(TOPIC_CODES.values())
    assert np.isclose(res.levels["category"].metrics["ari"], 1.0)


def test_coder_agreement_counts_only_coded_units_by_hand():
    """Ten segments of one case; both coders coded in it. Four segments carry a code by
    at least one coder; six carry none by either, and are not agreement about codes."""
    from pipeline.compare import _coders

    seg = pd.DataFrame({"segment_id": [f"s{i}" for i in range(1, 11)], "case_id": "c1"})
    placed = pd.DataFrame({"status": "placed", "coder": ["A", "B"], "case_id": "c1"})
    per = pd.DataFrame([("s1", "A", "x"), ("s1", "B", "x"), ("s2", "A", "x"), ("s2", "B", "y"),
                        ("s3", "A", "y"), ("s3", "B", "y"), ("s4", "A", "y")],
                       columns=["segment_id", "coder", "code"]).assign(coverage=1.0)
    votes = per.groupby(["segment_id", "code"]).size().to_dict()
    res = _coders(seg, placed, per, ["A", "B"], 0.5, votes)
    o, a = res.overall, res.all_units
    # coded units: A x x y y, B x y y -; po = 2/4; pe = .5*.25 + .5*.5 + 0*.25 = .375
    assert o["n_units"] == 4 and o["cohen"] == pytest.approx((0.5 - 0.375) / (1 - 0.375))
    # Krippendorff: o_xx 2, o_yy 2, o_xy = o_yx = o_y- = o_-y = 1; n 8, n_x 3, n_y 4, n_- 1
    assert o["krippendorff"] == pytest.approx(1 - (4 / 8) / (2 * (12 + 3 + 4) / 56))
    # all ten units: po = 8/10; pe = .2*.1 + .2*.2 + .6*.7 = .48 -> 0.615, inflated
    assert a["n_units"] == 10 and a["cohen"] == pytest.approx((0.8 - 0.48) / (1 - 0.48))
    assert a["cohen"] > o["cohen"]
    per_code = res.per_code.set_index("code")
    assert (per_code["n_units"] == 4).all()
    # code x present/absent on the 4 coded units: A 1 1 0 0, B 1 0 0 0 -> po 3/4
    assert per_code.at["x", "percent"] == pytest.approx(0.75)


def test_a_summary_line_of_notes_shows_the_first_even_when_it_is_long():
    from pipeline.compare import _listing

    long = "case 'N99' is not in the run: " + "its codings were left out " * 8
    line = _listing([long, "text not found"], 120)
    assert line.startswith("case 'N99' is not in the run") and line.endswith(", ... (+1)")
    assert len(line) < 140 and _listing(["a", "b"], 120) == "a, b"
