"""De-identification: what is replaced, consistent pseudonyms, offsets, the run folder,
the mapping file, and recall on (a third of) the project's test set."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import sqlite3
import stat
import tempfile
import zipfile
from pathlib import Path

import pandas as pd
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.cli import main
from pipeline.config import REDACTED_CONFIG_HEADER, load_config, validate_config
from pipeline.errors import ConfigError
from pipeline.stages.deidentify import (
    MAPPING_MARK,
    PLACEHOLDER,
    DeidentifyConfig,
    absolute_study_key,
    combine_summaries,
    corpus_names,
    deidentify_corpus,
    deidentify_text,
    identifying_column,
    mapping_header,
    study_key,
    write_mapping,
)
from pipeline.stages.ingest import IngestConfig, ingest
from pipeline.types import TURN_COLUMNS
from tests.builders import docx_bytes
from tests.study import study_config, write_study

ROOT = Path(__file__).resolve().parent.parent
ON = DeidentifyConfig(enabled=True)
NO_NER = DeidentifyConfig(enabled=True, ner=False)


def replaced(text: str, config: DeidentifyConfig = ON, labels=()) -> str:
    return deidentify_text(text, config, labels).text


def assert_exact(corpus) -> None:
    turns = corpus.turns
    assert list(turns.columns) == list(TURN_COLUMNS)
    for row in turns.itertuples():
        source = corpus.sources[row.case_id]
        assert source.text[row.start_char:row.end_char] == row.text
        assert row.text and row.text == row.text.strip()
        assert row.source_file == source.path


# --- what is replaced -------------------------------------------------------------------

def test_one_person_keeps_one_pseudonym_in_a_case_short_and_long_forms_alike():
    text = ("Dr. Maria Lopez ran the group. Later Maria told me that Lopez is her married "
            "name, and that Maria's sister Ana Ruiz lives in Chicago. Ana was kind.")
    out = replaced(text)
    assert out == ("Dr. PERSON_1 ran the group. Later PERSON_1 told me that PERSON_1 is her "
                   "married name, and that PERSON_1's sister PERSON_2 lives in PLACE_1. "
                   "PERSON_2 was kind.")


def test_a_line_longer_than_spacy_takes_is_read_in_pieces_to_its_end():
    blob = "data:image/png;base64," + "QUJD" * 300_000     # one "word" of 1.2 M characters
    out = replaced(f"Here it is {blob} and then Maria Lopez told me about it.")
    assert "Maria" not in out and "Lopez" not in out
    assert re.search(r"and then PERSON_\d+ told me about it\.$", out)


@pytest.mark.parametrize("header, expected", [
    ("participant_name", "PERSON"), ("Full name", "PERSON"), ("name", "PERSON"),
    ("Surname", "PERSON"), ("E-mail", "EMAIL"), ("email address", "EMAIL"),
    ("Mobile", "PHONE"), ("home address", "ADDRESS"), ("Postcode", "ADDRESS"),
    ("date_of_birth", "DATE"), ("DOB", "DATE"),
    ("therapy_name", None), ("site name", None), ("orientation", None),
    ("years_in_practice", None), ("gender", None), ("cried_in_session", None)])
def test_attribute_columns_that_hold_identifiers_are_known_by_their_header(header, expected):
    assert identifying_column(header) == expected


def test_case_attributes_are_replaced_as_the_case_text_numbers_them():
    from pipeline.stages.deidentify import Deidentifier

    deid = Deidentifier(DeidentifyConfig(enabled=True, ner=False, known_names=["Mara Reyes"]))
    text = "I told Mara Reyes, and later my supervisor Dr. Siobhan Byrne, about it."
    result = deid.pseudonymise("c1", text)
    byrne = next(r.placeholder for r in result.replacements if "Byrne" in r.surface)
    out = deid.pseudonymise_attributes(result, {
        "participant_name": "Oona Vantreight", "supervisor": "Siobhan Byrne",
        "interviewer": "Mara Reyes", "email": "n/a", "orientation": "CBT", "years": 22})
    assert out["supervisor"] == byrne                  # the text's number, kept
    assert out["interviewer"] == "PERSON_1"            # a known name's own number
    assert re.fullmatch(r"PERSON_\d+", out["participant_name"])
    assert out["participant_name"] not in {byrne, "PERSON_1"}
    assert (out["email"], out["orientation"], out["years"]) == ("n/a", "CBT", 22)
    assert {(c, r.surface) for c, r in result.attributes} == {
        ("participant_name", "Oona Vantreight"), ("supervisor", "Siobhan Byrne"),
        ("interviewer", "Mara Reyes")}


def test_an_ambiguous_first_name_gets_its_own_pseudonym():
    out = replaced("Maria Lopez and Maria Chen both said so. Then Maria left.")
    assert out.startswith("PERSON_1 and PERSON_2 both said so.")
    assert "Then PERSON_3 left." in out


@pytest.mark.parametrize("phone", [
    "+44 20 7946 0958", "+44 (0)20 7946 0958", "020 7946 0958", "07700 900123",
    "+1 (555) 012-3456", "(555) 012-3456", "555-012-3456", "555.012.3456", "1-800-555-0199",
    "+49 30 1234567", "0049 30 123 4567", "+33 1 23 45 67 89", "+61 2 9876 5432",
    "+91 98765 43210", "+353 1 234 5678", "+234 803 123 4567", "555-0134 ext. 22",
])
def test_phone_numbers_in_national_and_international_formats(phone):
    out = replaced(f"Call me on {phone}, any time.", NO_NER)
    assert out == "Call me on PHONE_1, any time."


@pytest.mark.parametrize(("text", "expected"), [
    ("Write to maria.lopez@example.org today.", "Write to EMAIL_1 today."),
    ("It's M.Lopez+work@clinic-north.co.uk.", "It's EMAIL_1."),
    ("It's maria dot lopez at gmail dot com, all lower case.", "It's EMAIL_1, all lower case."),
    ("On 3 May 2024 and on May 3rd, 2024 and in March 2019.",
     "On DATE_1 and on DATE_2 and in DATE_3."),
    ("Born 12/03/1980, seen 2021-11-02, left in 1999.", "Born DATE_1, seen DATE_2, left in DATE_3."),
    ("We met in January.", "We met in DATE_1."),
    ("I was 34 when it happened.", "I was AGE_1 when it happened."),
    ("She was a 52-year-old teacher; he's 17, and I'm thirty-four now.",
     "She was a AGE_1-year-old teacher; he's AGE_2, and I'm AGE_3 now."),
    ("Aged 40, she turned sixty last year.", "Aged AGE_1, she turned AGE_2 last year."),
    ("They lived at 12 Kings Road, Brighton BN1 1AA until then.",
     "They lived at ADDRESS_1 until then."),
    ("Flat 3, 27 Elm Avenue, Apt 4B was hers; also PO Box 412.", "ADDRESS_1 was hers; also ADDRESS_2."),
    ("Her mum lived on Maple Street.", "Her mum lived on ADDRESS_1."),
])
def test_structured_identifiers(text, expected):
    assert replaced(text, NO_NER) == expected


@pytest.mark.parametrize("text", [
    "We did CBT together for about three years, then some DBT and EMDR.",
    "I was 5 minutes late that day and I felt terrible about it.",
    "May I say something about that first session?",
    "It cost about $2,000 a month; she scored 27 on the PHQ-9.",
    "Every Thursday we met, for fifty minutes, in 1990-1995 and after.",
    "My mum used to say God never gives you more than you can handle.",
    "I've been practising for twenty-two years now; there were 40 people there.",
    "We read Winnicott and Yalom in training; Carl Rogers would call it congruence.",
    "Interviewer: Mm-hmm. Go on.",
])
def test_ordinary_talk_is_left_alone(text):
    assert replaced(text) == text


def test_known_names_and_name_labels_are_replaced_in_text_and_labels():
    config = DeidentifyConfig(enabled=True, known_names=["Jon Park"])
    result = deidentify_text("Mara Reyes: Hello Jon.\nJon Park: Hi Mara. Reyes, right?\n",
                             config, ["Mara Reyes", "Jon Park"])
    assert result.text == "PERSON_2: Hello PERSON_1.\nPERSON_1: Hi PERSON_2. PERSON_2, right?\n"
    assert result.labels == {"Mara Reyes": "PERSON_2", "Jon Park": "PERSON_1"}


def test_a_name_in_a_labels_aside_is_replaced_and_the_role_kept(tmp_path):
    """ "Interviewer (Mara Reyes):" is a role with a name beside it: the name is the same
    person as "Mara" in the text, and the role word stays, in the text and in the turns."""
    (tmp_path / "A1.txt").write_text("Interviewer (Mara Reyes): When did it start, Sam?\n"
                                     "Sam Lee (P3): In my first year. Mara asked me too.\n",
                                     encoding="utf-8")
    icfg = IngestConfig(paths=["."])
    new = deidentify_corpus(ingest(icfg, tmp_path), ON, icfg).corpus
    assert_exact(new)
    assert new.sources["A1"].text == ("Interviewer (PERSON_1): When did it start, PERSON_2?\n"
                                      "PERSON_2 (P3): In my first year. PERSON_1 asked me too.\n")
    assert list(new.turns["speaker"]) == ["Interviewer (PERSON_1)", "PERSON_2 (P3)"]
    assert list(new.turns["role"]) == ["interviewer", "participant"]


def test_the_times_of_a_turns_cues_move_with_its_words(tmp_path):
    """A segment takes the times of the cues it spans (Corpus.times): once names are
    replaced the cues' offsets are the new text's, so each cue still holds its words."""
    (tmp_path / "A2.vtt").write_text(
        "WEBVTT\n\n00:00:01.000 --> 00:00:02.000\n<v Interviewer>How was it?</v>\n\n"
        "00:00:03.000 --> 00:00:04.000\n<v P1>Maria Lopez met me there.</v>\n\n"
        "00:00:05.000 --> 00:00:06.000\n<v P1>It helped.</v>\n", encoding="utf-8")
    icfg = IngestConfig(paths=["."])
    new = deidentify_corpus(ingest(icfg, tmp_path), NO_NER, icfg).corpus
    text = new.sources["A2"].text
    assert [(text[a:b], t0) for a, b, t0, _ in new.times["A2"]] == [
        ("How was it?", 1.0), ("PERSON_1 met me there.", 3.0), ("It helped.", 5.0)]


def test_types_can_be_chosen_and_keep_words_are_kept():
    config = DeidentifyConfig(enabled=True, types=["EMAIL"], keep=[])
    assert replaced("Maria wrote from a@b.org in 2019.", config) == "Maria wrote from EMAIL_1 in 2019."
    config = DeidentifyConfig(enabled=True, keep=["Rogers"])
    assert replaced("Rogers said it first; Smithers said it too.", config) == \
        "Rogers said it first; PERSON_1 said it too."


def test_deidentifying_twice_changes_nothing_more():
    once = replaced("Dr. Maria Lopez, maria@x.org, +44 20 7946 0958, 3 May 2024, I was 34.")
    assert replaced(once) == once
    assert len(PLACEHOLDER.findall(once)) == 5


@pytest.mark.parametrize(("known", "text", "expected"), [
    (["Ellsworth"], "I spoke to Will Ellsworth yesterday.", "I spoke to PERSON_1 yesterday."),
    (["Quillby"], "I met Zebedee Quillby there; Quillby was kind.",
     "I met PERSON_1 there; PERSON_1 was kind."),
    (["Quillby"], "Priya Quillby came in late.", "PERSON_1 came in late."),
    (["Will Ellsworth"], "Will Ellsworth came in late. Will you say more?",
     "PERSON_1 came in late. Will you say more?"),
    (["Ellsworth"], "Will you call Ellsworth? Mark my words.", "Will you call PERSON_1? Mark my words."),
    (["Hélène Dubois"], "later hélène dubois rang, and hélène cried.",
     "later PERSON_1 rang, and PERSON_1 cried."),
])
def test_the_rest_of_a_half_replaced_name_goes_too(known, text, expected):
    """A name part beside a replaced one is the same name ("Will" of "Will Ellsworth");
    a word that starts a sentence is only taken when it may be a name ("Will you..."
    keeps its verb)."""
    config = DeidentifyConfig(enabled=True, ner=False, known_names=known)
    assert replaced(text, config) == expected


def test_a_name_ner_finds_half_of_loses_its_other_half():
    assert replaced("then hélène dubois rang me, and hélène was upset.") == \
        "then PERSON_1 rang me, and PERSON_1 was upset."
    assert replaced("I spoke to Will Ellsworth yesterday about it.") == \
        "I spoke to PERSON_1 yesterday about it."


@pytest.mark.parametrize(("text", "expected"), [
    ("The client was 34 at the time.", "The client was AGE_1 at the time."),
    ("My eldest is 12 now, and the young woman was 19 then.",
     "My eldest is AGE_1 now, and the young woman was AGE_2 then."),
    ("The patient was only seventeen, and frightened.",
     "The patient was only AGE_1, and frightened."),
    ("He was 40 years of age when he came.", "He was AGE_1 years of age when he came."),
    # not ages: a decade of life (not replaced in de-identification practice), years of
    # practice, counts, durations, and numbers said of things
    ("She was in her thirties then.", "She was in her thirties then."),
    ("I have practised for 22 years.", "I have practised for 22 years."),
    ("We had 34 sessions, and the client was 34 minutes late.",
     "We had 34 sessions, and the client was 34 minutes late."),
    ("The score was 34 at the time; our group was 12 at the start.",
     "The score was 34 at the time; our group was 12 at the start."),
])
def test_ages_said_of_a_person_in_the_common_spoken_forms(text, expected):
    assert replaced(text, NO_NER) == expected


@pytest.mark.parametrize(("text", "expected"), [
    ("[00:01:50] Marguerite Quillfeather-Dunmore: I started that spring.\n",
     "[00:01:50] PERSON_1: I started that spring.\n"),
    ("(00:01:50) Marguerite Quillfeather-Dunmore: I started that spring.\n",
     "(00:01:50) PERSON_1: I started that spring.\n"),
    # the model reads a label and the first word said as one name across the colon:
    # the label was replaced with the word, and the participant's "Walks" was lost
    ("Interviewer: What helped?\n\nMarek Wisniewski: Walks, mostly. Along the canal.\n",
     "Interviewer: What helped?\n\nPERSON_1: Walks, mostly. Along the canal.\n"),
    ("It was the 3rd of May. Then we met.", "It was the DATE_1. Then we met."),
    ("We met on 3 May.", "We met on DATE_1."),
    ("She lived at 12 Kings Rd. Then she moved.", "She lived at ADDRESS_1. Then she moved."),
    ("It was 14 Feb. 2020, I think.", "It was DATE_1, I think."),
])
def test_a_replacement_never_takes_a_time_stamp_a_bracket_or_a_full_stop(text, expected):
    """NER read "[00:01:50] Name" as one ORG from the time to the name's end, and the
    date and street patterns took an abbreviation's full stop that ended the sentence."""
    assert replaced(text) == expected


def test_an_entity_across_a_labels_colon_is_cut_there():
    from pipeline.stages.deidentify import _at_the_label

    line = "Marek Wisniewski: Walks, mostly."
    colon = line.index(":")
    assert _at_the_label(line, 0, 23, colon) == [(0, colon)]
    line = "Sam: Anna Lee said so."
    assert _at_the_label(line, 0, 13, 3) == [(0, 3), (4, 13)]    # a full name after it
    assert _at_the_label(line, 5, 13, 3) == [(5, 13)]            # not across the colon


def test_a_speaker_after_a_time_stamp_keeps_the_stamp_in_the_corpus(tmp_path):
    (tmp_path / "T1.txt").write_text(
        "[00:01:50] Marguerite Quillfeather-Dunmore: I started that spring.\n"
        "[00:02:10] Interviewer: And then?\n"
        "[00:02:30] Marguerite Quillfeather-Dunmore: Then it changed.\n", encoding="utf-8")
    icfg = IngestConfig(paths=["."])
    new = deidentify_corpus(ingest(icfg, tmp_path), ON, icfg).corpus
    assert_exact(new)
    assert new.sources["T1"].text == ("[00:01:50] PERSON_1: I started that spring.\n"
                                      "[00:02:10] Interviewer: And then?\n"
                                      "[00:02:30] PERSON_1: Then it changed.\n")


# --- the corpus -------------------------------------------------------------------------

def test_every_format_keeps_exact_offsets_and_labels_are_pseudonymised(tmp_path):
    (tmp_path / "A1.txt").write_text(
        "Interview with Dr. Maria Lopez, 3 May 2024\n\nMara Reyes: Thanks, Maria. Where "
        "are you based?\r\nMaria Lopez: In Leeds, at 12 Kings Road. Call 07700 900123.\n",
        encoding="utf-8")
    (tmp_path / "A2.docx").write_bytes(docx_bytes([
        "Mara Reyes: How old were you then?", "P2: I was 34, living in Galway with Siobhan."]))
    (tmp_path / "A3.vtt").write_text(
        "WEBVTT\n\n00:00:01.000 --> 00:00:03.000\n<v Mara Reyes>Hello Priya.</v>\n\n"
        "00:00:03.000 --> 00:00:06.000\n<v Priya Natarajan>Hi. Email priya@example.org.</v>\n",
        encoding="utf-8")
    (tmp_path / "turns.csv").write_text(
        "case_id,turn_index,speaker,text\nA4,0,Interviewer,Who helped?\n"
        "A4,1,P4,\"My sister Ana, and Dr. Okafor. She is 41.\"\n", encoding="utf-8")
    icfg = IngestConfig(paths=["."], roles={"Mara Reyes": "interviewer"})
    corpus = ingest(icfg, tmp_path)
    deid = deidentify_corpus(corpus, ON, icfg)
    new = deid.corpus
    assert_exact(new)
    everything = "\n".join(s.text for s in new.sources.values()) + "\n".join(new.turns["speaker"])
    for raw in ("Maria", "Lopez", "Mara", "Reyes", "Leeds", "Kings Road", "07700", "Galway",
                "Siobhan", "Priya", "Natarajan", "priya@", "Ana", "41", "34", "Okafor", "2024"):
        assert raw not in everything, raw
    # the interviewer is one PERSON_n in every case, in the text and in the labels
    interviewer = deid.global_names["Mara Reyes"]
    for case in ("A1", "A2", "A3"):
        speakers = set(new.turns.loc[new.turns["case_id"] == case, "speaker"])
        assert interviewer in speakers
    assert deid.redact_config({"ingest": {"roles": {"Mara Reyes": "interviewer"}},
                               "deidentify": {"known_names": ["x"]}}) == \
        {"ingest": {"roles": {interviewer: "interviewer"}},
         "deidentify": {"known_names": [], "mapping_file": None}}
    assert new.sources["A1"].path == "sources/A1.txt" and new.sources["A1"].encoding == "utf-8"
    a1 = new.turns[new.turns["case_id"] == "A1"]
    assert list(a1["text"]) == ["Thanks, PERSON_2. Where are you based?",
                                "In PLACE_1, at ADDRESS_1. Call PHONE_1."]
    assert new.sources["A1"].text.startswith("Interview with Dr. PERSON_2, DATE_1\n")
    counts = deid.counts()
    assert counts["PERSON"] >= 7 and counts["EMAIL"] == 1 and counts["AGE"] == 2
    mapping = pd.read_csv(io.StringIO(deid.mapping_csv()), dtype=str)
    assert list(mapping.columns) == ["case_id", "type", "placeholder", "original", "occurrences"]
    assert {"Maria Lopez", "Maria", "Leeds", "07700 900123", "Priya Natarajan"} <= \
        set(mapping["original"])


def test_a_corpus_de_identified_in_parts_gets_the_placeholders_of_one_pass(tmp_path):
    folder = tmp_path / "t"
    folder.mkdir()
    # a participant's name is a speaker label in a.txt, a line label with no speech in c.txt
    (folder / "a.txt").write_text("Interviewer: How was it?\nMara Reyes: Hard. I rang "
                                  "020 7946 0958 in March.\n", encoding="utf-8")
    (folder / "b.txt").write_text("Interviewer: And then?\nP2: The training with Mara Reyes "
                                  "was good, and Tomasz Wilk came too.\n", encoding="utf-8")
    (folder / "c.txt").write_text("Tomasz Wilk:\nInterviewer: Go on.\nP3: Fine.\n",
                                  encoding="utf-8")
    icfg = IngestConfig(paths=[folder])
    whole = deidentify_corpus(ingest(icfg), NO_NER, icfg)
    parts = [ingest(IngestConfig(paths=[folder / n])) for n in ("a.txt", "b.txt", "c.txt")]
    alone = deidentify_corpus(parts[1], NO_NER, icfg)
    assert "Mara Reyes" in alone.files["sources/b.txt"]         # b alone does not know them
    names = corpus_names(parts, icfg)
    assert json.loads(json.dumps(names)) == names                # plain data for the workers
    shards = [deidentify_corpus(p, NO_NER, icfg, known=names) for p in parts]
    files = {path: text for s in shards for path, text in s.files.items()}
    assert files == dict(whole.files)
    assert not any(n in files["sources/b.txt"] for n in ("Mara", "Reyes", "Tomasz", "Wilk"))
    for s in shards:
        assert_exact(s.corpus)
    assert combine_summaries(s.summary() for s in shards) == whole.summary()


def test_notes_about_skipped_items_lose_the_names_too(tmp_path):
    (tmp_path / "T32.txt").write_text("Mara Reyes: Hello.\nJon Park: Hi.\nMara Reyes: Ready?\n",
                                      encoding="utf-8")
    icfg = IngestConfig(paths=["."])
    corpus = ingest(icfg, tmp_path)
    assert any("Mara Reyes" in s.reason for s in corpus.skipped)
    new = deidentify_corpus(corpus, NO_NER, icfg).corpus
    reasons = " ".join(s.reason for s in new.skipped)
    assert "Mara" not in reasons and "Jon" not in reasons and "PERSON_1" in reasons


@pytest.mark.parametrize("case_id, expected", [
    ("Kowalczyk", "PERSON_1"), ("kowalczyk", "PERSON_1"), ("P07_helen_okafor", "P07_PERSON_2"),
    ("Okafor-2", "PERSON_2-2"), ("Helen Okafor interview", "PERSON_2 interview"),
    ("byrne_session", "PERSON_3_session"), ("T01", "T01"), ("interview_03", "interview_03")])
def test_a_case_id_that_holds_a_name_is_given_its_placeholder(case_id, expected):
    from pipeline.stages.deidentify import Deidentifier

    deid = Deidentifier(DeidentifyConfig(enabled=True, ner=False,
                                         known_names=["Kowalczyk", "Helen Okafor"]))
    # a name found in the case's own text counts too (here by its title)
    result = deid.pseudonymise(case_id, "Interviewer: Who?\nP: Dr. Siobhan Byrne.")
    assert [(r.surface, r.placeholder) for r in result.replacements] == [
        ("Siobhan Byrne", "PERSON_3")]
    assert deid.pseudonymise_case_id(case_id, result) == expected


def test_files_named_after_a_participant_leave_the_name_out_of_every_case_id(tmp_path):
    (tmp_path / "Kowalczyk.txt").write_text(
        "Interviewer: How was it?\nP: Hard. Kowalczyk is my name.\n", encoding="utf-8")
    (tmp_path / "kowalczyk 2.txt").write_text("Interviewer: And then?\nP: Better.\n",
                                               encoding="utf-8")
    (tmp_path / "T01.txt").write_text("Interviewer: Hello.\nP: Hi.\nInterviewer: Bye.\n",
                                      encoding="utf-8")
    (tmp_path / "cases.csv").write_text("case_id,orientation\nKowalczyk,CBT\nT01,DBT\n",
                                        encoding="utf-8")
    icfg = IngestConfig(paths=["."], cases_table="cases.csv")
    corpus = ingest(icfg, tmp_path)
    config = DeidentifyConfig(enabled=True, ner=False, known_names=["Kowalczyk"])
    deid = deidentify_corpus(corpus, config, icfg)
    new = deid.corpus
    assert_exact(new)
    assert set(new.sources) == {"PERSON_1", "PERSON_1 2", "T01"}
    assert set(new.turns["case_id"]) == set(new.sources)
    assert {s.path for s in new.sources.values()} == {
        "sources/PERSON_1.txt", "sources/PERSON_1_2.txt", "sources/T01.txt"}
    cases = new.cases.set_index("case_id")["orientation"]
    assert (cases["PERSON_1"], cases["T01"]) == ("CBT", "DBT")
    assert any("kowalczyk" in f"{n.what} {n.reason}" for n in corpus.skipped)
    assert deid.original_sources["PERSON_1"].path.endswith("Kowalczyk.txt")
    assert deid.summary()["case_ids_replaced"] == 2
    assert "Kowalczyk" not in json.dumps(deid.summary())
    assert not any("owalczyk" in f"{n.what} {n.reason}" for n in new.skipped)
    mapping = pd.read_csv(io.StringIO(deid.mapping_csv()), dtype=str)
    ids = mapping[mapping["type"] == "CASE_ID"]
    assert dict(zip(ids["original"], ids["case_id"], strict=True)) == {
        "Kowalczyk": "PERSON_1", "kowalczyk 2": "PERSON_1 2"}
    # the config written to the run folder lists such a file by the case's new id
    paths = [str(tmp_path / "Kowalczyk.txt"), "kowalczyk 2.txt", "T01.txt"]
    assert deid.redact_config({"ingest": {"paths": paths}})["ingest"]["paths"] == [
        f"{tmp_path.as_posix()}/PERSON_1.txt", "PERSON_1 2.txt", "T01.txt"]


_PIECES = st.sampled_from([
    "Interviewer: ", "P1: ", "Mara Reyes: ", "\n", "\r\n", "\n\n", " ", "Dr. Maria Lopez",
    "Maria", "maria@x.org", "+44 20 7946 0958", "(555) 012-3456", "3 May 2024", "in 1999",
    "I was 34", "a 52-year-old", "12 Kings Road", "Leeds", "CBT", "three years", "and then",
    "she said.", "PERSON_1", "é", ",", "?", "Mm-hmm.",
])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pieces=st.lists(_PIECES, min_size=1, max_size=25))
def test_offsets_stay_exact_and_structured_identifiers_never_survive(pieces):
    """Any text: turns stay exact slices; patterns and known names always catch theirs."""
    text = "Interviewer: Hello.\n" + " ".join(pieces)
    with tempfile.TemporaryDirectory() as folder:
        Path(folder, "F1.txt").write_text(text, encoding="utf-8", newline="")
        icfg = IngestConfig(paths=["."])
        corpus = ingest(icfg, Path(folder))
    known = NO_NER.model_copy(update={"known_names": ["Mara Reyes", "Maria Lopez"]})
    deid = deidentify_corpus(corpus, known, icfg)
    assert_exact(deid.corpus)
    out = deid.corpus.sources["F1"].text
    for raw in ("maria@x.org", "7946", "012-3456", "May 2024", "1999", "Kings Road", "Maria",
                "Mara"):
        assert raw not in out, (raw, out)
    case = deid.cases["F1"]
    rebuilt = case.original
    for r in reversed(case.replacements):
        rebuilt = rebuilt[:r.start] + r.placeholder + rebuilt[r.end:]
    assert rebuilt == out


# --- a run ------------------------------------------------------------------------------

IDENTIFIED = (
    "Interview with Dr. Maria Lopez, 3 May 2024\n\n"
    "Mara Reyes: Thank you for joining me today, Maria.\n\n"
    "Therapist: My training program never mentioned crying in the room, not once in three "
    "years. I trained at Riverside Community Clinic in Leeds. I was 34 then.\n\n"
    "Mara Reyes: Did you bring it to supervision?\n\n"
    "Therapist: My supervisor listened and helped me understand what the tears meant. "
    "Siobhan Byrne was her name; you can write to her at s.byrne@example.org or ring "
    "+44 20 7946 0958. She lives at 12 Kings Road now.\n\n"
    "Mara Reyes: How did the client respond when you cried?\n\n"
    "Therapist: The client said she felt truly seen when she noticed my eyes were wet.\n"
)
RAW = ["Maria", "Lopez", "Mara", "Reyes", "Riverside", "Leeds", "Siobhan", "Byrne",
       "s.byrne@example.org", "7946", "Kings Road", "3 May 2024"]


def run_config(tmp_path, **deid):
    study = write_study(tmp_path / "study")
    (study / "case07.txt").write_text(IDENTIFIED, encoding="utf-8")
    cfg = study_config(study)
    cfg["ingest"] = {"paths": [str(study)], "roles": {"Mara Reyes": "interviewer"}}
    cfg["deidentify"] = {"enabled": True, "known_names": ["Maria Lopez"], **deid}
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    return path


def all_text(folder: Path) -> str:
    """Every file's text, with a zip archive's (a .qdpx) members read unpacked: its packed
    bytes would hide a name from the search rather than show it."""
    parts = []
    for path in sorted(folder.rglob("*")):
        if path.suffix == ".parquet":
            parts.append(pd.read_parquet(path).astype(str).to_csv())
        elif path.is_file() and zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                for member in archive.namelist():
                    parts += [member, archive.read(member).decode("utf-8", errors="replace")]
        elif path.is_file():
            parts.append(path.read_bytes().decode("utf-8", errors="replace"))
    return "\n".join(parts)


#: GUIDs, hashes and vector bytes are hexadecimal or binary: a run of digits inside one is
#: chance, not a phone number. Digits count as found where no word character or point
#: touches them ("7946" of "+44 20 7946 0958", not of "...26e7946640c6" or "0.27946").
_HEX_RUN = re.compile(r"[0-9a-fA-F]{8}(?:-?[0-9a-fA-F]{4,})+")


def holds(text: str, raw: str) -> bool:
    if not any(ch.isdigit() for ch in raw):
        return raw in text
    unhexed = _HEX_RUN.sub("#", text)
    return re.search(rf"(?<![\w.]){re.escape(raw)}(?!\w)", unhexed) is not None


def test_a_run_with_deidentification_holds_no_identifier(tmp_path, capsys):
    config = run_config(tmp_path, mapping_file="private/mapping.csv")
    # case attributes are de-identified with the texts: a column that holds names is
    # replaced whole, a name typed elsewhere is found, a study variable stays
    (tmp_path / "cases.csv").write_text(
        "case_id,orientation,years,participant_name,E-mail,supervisor\n"
        "case07,CBT,22,Wilhelmina Dart,w.dart@example.org,Siobhan Byrne\n"
        "case01,psychodynamic,9,Quince,,\n", encoding="utf-8")
    cfg = yaml.safe_load(config.read_text())
    cfg["ingest"]["cases_table"] = str(tmp_path / "cases.csv")
    config.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    out = tmp_path / "out"
    assert main(["run", str(config), "--out", str(out)]) == 0
    cases = pd.read_csv(out / "cases.csv", dtype=str, keep_default_na=False).set_index("case_id")
    assert cases.loc["case07", "orientation"] == "CBT" and cases.loc["case07", "years"] == "22"
    assert cases.loc["case01", "orientation"] == "psychodynamic"
    assert re.fullmatch(r"PERSON_\d+", cases.loc["case07", "participant_name"])
    assert re.fullmatch(r"PERSON_\d+", cases.loc["case01", "participant_name"])
    assert re.fullmatch(r"EMAIL_\d+", cases.loc["case07", "E-mail"])
    # the supervisor named in case07's text keeps her placeholder of that text
    supervisor = cases.loc["case07", "supervisor"]
    assert supervisor in (out / "sources" / "case07.txt").read_text(encoding="utf-8")
    assert cases.loc["case01", "E-mail"] == ""
    # exports read the folder's de-identified attributes, never the original table
    assert main(["export", "qdpx", str(out)]) == 0
    assert main(["export", "csv", str(out)]) == 0
    exported = all_text(out / "export")
    assert supervisor in exported and "psychodynamic" in exported
    # the run folder, the report and the embedding cache hold none of the identifiers
    text = all_text(out)
    cache = tmp_path / "study" / "cache" / "embeddings.sqlite"
    if cache.exists():             # the LSA embedder of the fast config caches nothing
        with sqlite3.connect(cache) as con:
            text += "\n".join(str(row) for row in con.execute("SELECT * FROM vectors"))
    for raw in RAW + ["Wilhelmina", "Dart", "Quince"]:
        assert not holds(text, raw), raw
    # quotes trace back to the de-identified sources in the run folder
    seg = pd.read_parquet(out / "segments.parquet")
    assert set(seg["source_file"]) == {f"sources/case{i:02d}.txt" for i in range(1, 8)}
    for row in seg.itertuples():
        source = (out / row.source_file).read_text(encoding="utf-8")
        assert source[row.start_char:row.end_char] == row.text
    assert "PERSON_" in (out / "sources" / "case07.txt").read_text(encoding="utf-8")
    from pipeline.exchange.codes import load_run

    assert all(load_run(out).exact.values())      # compare/export read the same sources
    manifest = json.loads((out / "manifest.json").read_text())
    section = manifest["deidentify"]
    assert section["enabled"] and section["mapping_file"] == "written outside the run folder"
    assert section["replacements"]["PERSON"] == 6 and section["replacements"]["EMAIL"] == 1
    assert section["replacements_per_case"]["case07"]["PHONE"] == 1
    assert "deidentify" in manifest["timings"]
    assert all(i["deidentified"] and len(i["original_sha256"]) == 64 for i in manifest["inputs"])
    resolved = yaml.safe_load((out / "config.yaml").read_text())
    assert resolved["deidentify"]["known_names"] == [] and resolved["deidentify"]["enabled"]
    assert list(resolved["ingest"]["roles"]) == ["PERSON_2"]
    validate_config(resolved)                        # still valid settings (precode reads them)
    assert manifest["deidentify"]["config_names_removed"]
    # but not a config to repeat the run with: on the original transcripts its roles would
    # match no speaker and leave their cases out; it says so at its top and is refused
    assert (out / "config.yaml").read_text().startswith(REDACTED_CONFIG_HEADER)
    with pytest.raises(ConfigError, match="de-identified run wrote into its folder"):
        load_config(out / "config.yaml")
    capsys.readouterr()
    assert main(["run", str(out / "config.yaml"), "--out", str(tmp_path / "again")]) == 2
    assert "the team's own config" in capsys.readouterr().err
    # a comparison with codes made on the original transcripts writes their words:
    # not into the run's folder, which is shared; given --out elsewhere, it runs
    codes = tmp_path / "codes.csv"
    codes.write_text("case,code,text\ncase07,Named,Maria Lopez\n", encoding="utf-8")
    capsys.readouterr()
    assert main(["compare", str(out), str(codes)]) == 2
    assert "the run was de-identified" in capsys.readouterr().err
    assert not (out / "compare").exists()
    assert main(["compare", str(out), str(codes), "--out", str(out / "cmp")]) == 2
    capsys.readouterr()
    main(["compare", str(out), str(codes), "--out", str(tmp_path / "private" / "cmp")])
    assert "the run was de-identified" not in capsys.readouterr().err
    # the mapping is kept apart, for the team: it says what it is and whose, on line 1
    path = tmp_path / "private" / "mapping.csv"
    assert path.read_text(encoding="utf-8").startswith(MAPPING_MARK + "; study mini; study key ")
    mapping = pd.read_csv(path, dtype=str, skiprows=1)
    assert {"Maria Lopez", "Siobhan Byrne", "s.byrne@example.org", "Wilhelmina Dart",
            "w.dart@example.org", "Quince"} <= set(mapping["original"])
    assert section["attribute_replacements"] == {"E-mail": 1, "participant_name": 2,
                                                 "supervisor": 1}
    assert not list((tmp_path / "private").glob(".*tmp"))
    # owner-only, whatever the umask was
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "private").stat().st_mode) == 0o700
    # a second run of the same study adds to it (same transcripts, another run folder):
    # here nothing new, so the rows stay as they were, and owner-only again
    first = path.read_bytes()
    os.chmod(path, 0o644)
    assert main(["run", str(config), "--out", str(tmp_path / "out2")]) == 0
    assert path.read_bytes() == first and stat.S_IMODE(path.stat().st_mode) == 0o600
    # a row that cannot be read stops the run, naming its line, and nothing is lost
    path.write_bytes(first + b"stale,row\n")
    capsys.readouterr()
    assert main(["run", str(config), "--out", str(tmp_path / "out3")]) == 2
    err = capsys.readouterr().err
    assert f"line {len(first.splitlines()) + 1}" in err and "deidentify.mapping_file" in err
    assert path.read_bytes() == first + b"stale,row\n" and not (tmp_path / "out3").exists()
    path.write_bytes(first)
    # a de-identified folder without cases.csv (as written before attributes were
    # de-identified) exports no case variables, never the config's original table
    shutil.rmtree(out / "export")
    (out / "cases.csv").unlink()
    capsys.readouterr()
    assert main(["export", "qdpx", str(out)]) == 0
    assert "the run was de-identified" in capsys.readouterr().out
    assert "Wilhelmina" not in all_text(out / "export")


def test_the_mapping_file_is_refused_inside_the_run_folder(tmp_path, capsys):
    out = tmp_path / "out"
    config = run_config(tmp_path, mapping_file=str(out / "mapping.csv"))
    assert main(["run", str(config), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "deidentify.mapping_file" in err and "inside the run folder" in err
    assert "What to do:" in err and "Traceback" not in err
    assert not out.exists() and not list(tmp_path.glob(".out.partial*"))
    config = run_config(tmp_path, mapping_file="study/runs/m.csv")     # among the runs
    assert main(["run", str(config)]) == 2
    assert "inside the output folder" in capsys.readouterr().err


def test_off_by_default(tmp_path):
    study = write_study(tmp_path / "study", n_cases=3)
    cfg, _ = load_config(_write(tmp_path, study_config(study)))
    assert cfg.deidentify.enabled is False
    from pipeline.run import build

    result = build(cfg, tmp_path)
    assert result.manifest["deidentify"] == {"enabled": False}
    assert not hasattr(result, "files")


def _write(tmp_path, data):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def test_the_demo_share_config_is_valid():
    cfg, _ = load_config(ROOT / "configs" / "demo-share.yaml")
    assert cfg.deidentify.enabled and cfg.deidentify.mapping_file is not None
    assert "Mara Reyes" in cfg.deidentify.known_names


# --- recall on the project's test set ----------------------------------------------------

def _covered(text, start, end, spans):
    mask = [False] * (end - start)
    for s, e in spans:
        for i in range(max(s, start), min(e, end)):
            mask[i - start] = True
    return all(m for ch, m in zip(text[start:end], mask) if ch.isalnum())


def test_recall_on_a_third_of_the_test_set():
    """tests/data/deid_small.jsonl: every third record of bench/deid/testset.jsonl."""
    records = [json.loads(line) for line in
               (ROOT / "tests" / "data" / "deid_small.jsonl").read_text().splitlines()]
    from pipeline.stages.ingest import DEFAULT_INTERVIEWER_SPEAKERS, DEFAULT_PARTICIPANT_SPEAKERS

    gold, found, extra, predicted = {}, {}, 0, 0
    for r in records:
        cfg = ON.model_copy(update={"known_names": r["known_names"]})
        result = deidentify_text(r["text"], cfg, r["labels"],
                                 DEFAULT_INTERVIEWER_SPEAKERS + DEFAULT_PARTICIPANT_SPEAKERS)
        spans = [(x.start, x.end) for x in result.replacements]
        for g in r["spans"]:
            gold[g["type"]] = gold.get(g["type"], 0) + 1
            found[g["type"]] = found.get(g["type"], 0) + _covered(r["text"], g["start"],
                                                                  g["end"], spans)
        predicted += len(spans)
        extra += sum(1 for s, e in spans
                     if not any(s < g["end"] and g["start"] < e for g in r["spans"]))
    assert sum(gold.values()) >= 250
    for typ in ("PERSON", "EMAIL", "PHONE"):
        assert found[typ] / gold[typ] >= 0.95, (typ, found[typ], gold[typ])
    assert sum(found.values()) / sum(gold.values()) >= 0.9
    assert extra / predicted <= 0.05


def test_a_mapping_that_cannot_be_written_leaves_no_run_folder(tmp_path, capsys):
    (tmp_path / "blocker").write_text("a file, not a folder")
    config = run_config(tmp_path, mapping_file="blocker/mapping.csv")
    out = tmp_path / "out"
    assert main(["run", str(config), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "mapping cannot be written" in err and "no run folder was written" in err
    assert not out.exists() and not list(tmp_path.glob(".out.partial*"))


# --- the mapping file: never shared, never over another file, owner-only ------------------

def test_the_mapping_is_refused_in_the_output_folder_when_out_names_the_run_folder(
        tmp_path, capsys):
    # output_dir is study/runs: a mapping there would be shared with the runs, --out or not
    config = run_config(tmp_path, mapping_file="study/runs/m.csv")
    out = tmp_path / "out"
    assert main(["run", str(config), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "inside the output folder" in err and "deidentify.mapping_file" in err
    assert not out.exists() and not (tmp_path / "study" / "runs" / "m.csv").exists()
    # run() itself refuses it too, whoever calls it with a run folder of their choosing
    from pipeline.run import run

    cfg, base = load_config(run_config(tmp_path))
    cfg = cfg.model_copy(update={"deidentify": cfg.deidentify.model_copy(
        update={"mapping_file": Path("study/runs/m.csv")})})
    with pytest.raises(ConfigError, match="inside the output folder"):
        run(cfg, base, out)
    assert not out.exists() and not (tmp_path / "study" / "runs" / "m.csv").exists()


def test_a_batch_folder_is_refused_for_the_mapping_too(tmp_path):
    from pipeline.run import run

    cfg, _ = load_config(run_config(tmp_path, mapping_file=str(tmp_path / "batch" / "m.csv")))
    with pytest.raises(ConfigError, match="a folder of shared outputs"):
        run(cfg, tmp_path, tmp_path / "batch" / "run1", shared=(tmp_path / "batch",))
    assert not (tmp_path / "batch").exists()


@pytest.mark.parametrize(("existing", "why"), [
    (b"participant codes - do not delete\n", "not a Consensa mapping"),
    (b"case_id,type,placeholder,original,occurrences\n", "not a Consensa mapping"),
    (mapping_header("mini", "0" * 16).encode() + b"case_id,type\n", "another study"),
])
def test_the_mapping_never_overwrites_another_file(tmp_path, capsys, existing, why):
    config = run_config(tmp_path, mapping_file="private/mapping.csv")
    path = tmp_path / "private" / "mapping.csv"
    path.parent.mkdir()
    path.write_bytes(existing)
    out = tmp_path / "out"
    assert main(["run", str(config), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert why in err and "never overwrites" in err and "Traceback" not in err
    assert path.read_bytes() == existing and not out.exists()


def test_write_mapping_is_owner_only_from_creation_and_atomic(tmp_path, monkeypatch):
    seen = []
    real_link = os.link

    def spy(src, dst):                     # the file as it is the moment it takes its name
        seen.append(stat.S_IMODE(os.stat(src).st_mode))
        return real_link(src, dst)

    monkeypatch.setattr(os, "link", spy)
    old = os.umask(0)
    try:
        path = tmp_path / "private" / "m.csv"
        write_mapping(path, "case_id,type\nA,PERSON\n", "mini", "a" * 16)
    finally:
        os.umask(old)
    assert seen == [0o600] and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text().splitlines()[1:] == ["case_id,type", "A,PERSON"]
    assert [p.name for p in path.parent.iterdir()] == ["m.csv"]
    # a foreign file that appears after the check is not replaced either
    path.write_bytes(b"someone else's file\n")
    with pytest.raises(ConfigError, match="not a Consensa mapping"):
        write_mapping(path, "case_id\n", "mini", "a" * 16)
    assert path.read_bytes() == b"someone else's file\n"
    assert [p.name for p in path.parent.iterdir()] == ["m.csv"]


def test_the_mapping_csv_never_starts_a_formula(tmp_path):
    (tmp_path / "F1.txt").write_text("Interviewer: Your number?\nP1: It's +44 20 7946 0958.\n",
                                     encoding="utf-8")
    icfg = IngestConfig(paths=["."])
    deid = deidentify_corpus(ingest(icfg, tmp_path), NO_NER, icfg)
    cells = pd.read_csv(io.StringIO(deid.mapping_csv()), dtype=str)["original"].tolist()
    assert cells == ["'+44 20 7946 0958"]
    from pipeline.sheets import restore

    assert restore(cells[0]) == "+44 20 7946 0958"


def test_the_study_key_is_the_transcripts_read(tmp_path):
    m = tmp_path / "private" / "m.csv"
    assert study_key([tmp_path / "a", tmp_path / "b"], m) == study_key([tmp_path / "b",
                                                                       tmp_path / "a"], m)
    assert study_key([tmp_path / "a"], m) != study_key([tmp_path / "b"], m)
    # the same transcripts from the mapping's folder: the study moved whole
    moved = tmp_path / "elsewhere"
    assert study_key([tmp_path / "a"], m) == study_key([moved / "a"], moved / "private" / "m.csv")
    assert study_key([tmp_path / "a"], m) != study_key([moved / "a"], m)


def moved_study(tmp_path: Path) -> tuple[Path, Path]:
    """A study folder whose config names everything from its own folder: the
    transcripts, the outputs and the private mapping folder."""
    root = tmp_path / "laptop" / "study"
    study = write_study(root / "transcripts")
    (study / "case07.txt").write_text(
        "Interviewer: Who helped?\n\nTherapist: My supervisor Dr. Ambrose Quillfeather "
        "helped, and Tamsin Orchardley too.\n", encoding="utf-8")
    cfg = study_config(study)
    cfg.update({"output_dir": "runs", "cache_dir": "cache", "ingest": {"paths": ["transcripts"]},
                "deidentify": {"enabled": True, "ner": False, "mapping_file": "private/m.csv",
                               "known_names": ["Tamsin Orchardley"]}})
    (root / "run.yaml").write_text(yaml.safe_dump(cfg), encoding="utf-8")
    return root, root / "private" / "m.csv"


def test_a_study_moved_whole_keeps_its_mapping_and_its_placeholders(tmp_path, capsys):
    root, mapping = moved_study(tmp_path)
    assert main(["run", str(root / "run.yaml"), "--out", str(root / "runs" / "a")]) == 0
    first = pd.read_csv(mapping, dtype=str, skiprows=1)
    # the team copies its whole study folder to another laptop (another path)
    moved = tmp_path / "other-laptop" / "encrypted" / "study"
    shutil.copytree(root, moved)
    shutil.rmtree(root)
    mapping = moved / "private" / "m.csv"
    assert main(["validate", str(moved / "run.yaml")]) == 0
    assert main(["run", str(moved / "run.yaml"), "--out", str(moved / "runs" / "b")]) == 0, \
        capsys.readouterr().err
    second = pd.read_csv(mapping, dtype=str, skiprows=1)
    assert second.equals(first)                        # nothing renumbered, nothing added
    for run in ("a", "b"):
        text = (moved / "runs" / run / "sources" / "case07.txt").read_text(encoding="utf-8")
        assert "My supervisor Dr. PERSON_2 helped, and PERSON_1 too." in text, text
    # a config copied for another study (other transcripts) is still refused
    other = write_study(tmp_path / "other-study")
    cfg = yaml.safe_load((moved / "run.yaml").read_text(encoding="utf-8"))
    cfg["ingest"] = {"paths": [str(other)]}
    (moved / "other.yaml").write_text(yaml.safe_dump(cfg), encoding="utf-8")
    capsys.readouterr()
    before = mapping.read_bytes()
    assert main(["run", str(moved / "other.yaml"), "--out", str(moved / "runs" / "c")]) == 2
    err = capsys.readouterr().err
    assert "the mapping of another study" in err and "never overwrites" in err
    assert mapping.read_bytes() == before and not (moved / "runs" / "c").exists()


def test_a_mapping_with_the_old_absolute_key_is_still_this_studys(tmp_path, capsys):
    """Files written when the key was the transcripts' absolute paths keep working in
    place; the run that adds to one gives it the key a move keeps."""
    root, mapping = moved_study(tmp_path)
    assert main(["run", str(root / "run.yaml"), "--out", str(root / "runs" / "a")]) == 0
    lines = mapping.read_text(encoding="utf-8").split("\n", 1)
    old = absolute_study_key([root / "transcripts"])
    new = study_key([root / "transcripts"], mapping)
    assert f"study key {new};" in lines[0] and old != new
    mapping.write_text(lines[0].replace(new, old) + "\n" + lines[1], encoding="utf-8")
    assert main(["run", str(root / "run.yaml"), "--out", str(root / "runs" / "b")]) == 0, \
        capsys.readouterr().err
    assert pd.read_csv(mapping, dtype=str, skiprows=1).equals(
        pd.read_csv(io.StringIO(lines[1]), dtype=str))
    assert f"study key {new};" in mapping.read_text(encoding="utf-8").split("\n", 1)[0]
    # an old key of other transcripts is another study's
    other = absolute_study_key([tmp_path / "other-study"])
    mapping.write_text(mapping_header("mini", other) + lines[1], encoding="utf-8")
    assert main(["run", str(root / "run.yaml"), "--out", str(root / "runs" / "c")]) == 2
    assert "the mapping of another study" in capsys.readouterr().err


# --- lower-case transcripts, spoken numbers, postcodes, holidays --------------------------

def test_known_names_are_found_in_any_case_but_not_as_ordinary_words():
    config = DeidentifyConfig(enabled=True, known_names=["Helen Okafor", "Will Hart"])
    assert replaced("i talked to helen okafor yesterday, and helen said HELEN OKAFOR signs.",
                    config) == "i talked to PERSON_1 yesterday, and PERSON_1 said PERSON_1 signs."
    assert replaced("will hart said i will be fine, Will.", config) == \
        "PERSON_2 said i will be fine, PERSON_2."


@pytest.mark.parametrize(("text", "expected"), [
    ("so i told priya about it and she just listened.",
     "so i told PERSON_1 about it and she just listened."),
    ("my sister siobhan rang me the next morning.", "my sister PERSON_1 rang me the next morning."),
    ("it was dmitri volkov who ran the group.", "it was PERSON_1 who ran the group."),
    ("her name was ximena urquhart, and she was nineteen.",
     "her name was PERSON_1, and she was AGE_1."),
    ("only ravi and ines both said the same thing.",
     "only PERSON_1 and PERSON_2 both said the same thing."),
])
def test_lower_case_names_of_automatic_transcripts(text, expected):
    assert replaced(text) == expected


@pytest.mark.parametrize("text", [
    "i will say, i hope it helps, and may i add that grace under pressure is hard.",
    "we counted one, two, three, four, five, six, seven, eight breaths together.",
    "it was a nine to five job, two or three days a week, one or two clients a day.",
    "in room D02, past the a6 and the m6; she was on B12 injections; 10000 people waited.",
    "Christmas is always hard for my clients, and Easter too.",
    "so my mum said to the therapist, you know, mark my words.",
    "I think Carl Rogers would call it congruence.",
])
def test_look_alikes_are_left_alone(text):
    assert replaced(text) == text


@pytest.mark.parametrize(("text", "expected"), [
    ("Her mum wasn't. Her mom didn't, and it wasn't said to Maria Lopez.",
     "Her mum wasn't. Her mom didn't, and it wasn't said to PERSON_1."),
    ("her mum wasn't there, and it wasn't said, but my sister siobhan didn't mind.",
     "her mum wasn't there, and it wasn't said, but my sister PERSON_1 didn't mind."),
    ("I think Dr Okafor wasn't in; Okafor wasn't told.",
     "I think Dr PERSON_1 wasn't in; PERSON_1 wasn't told."),
])
def test_a_negated_verb_is_never_a_name(text, expected):
    """A name context ("her mum ...", "... said") saw "wasn't" as a rare word, so
    every "wasn't" of the case became one person; the names beside them still go."""
    assert replaced(text) == expected


@pytest.mark.parametrize(("text", "expected"), [
    ("My therapist normalised it, and my sister Siobhan agreed.",
     "My therapist normalised it, and my sister PERSON_1 agreed."),
    ("My supervisor reframed it, and then Anna Byrne said so.",
     "My supervisor reframed it, and then PERSON_1 said so."),
    ("We grew heather and rosemary in the garden.", "We grew heather and rosemary in the garden."),
    ("Normalised said nothing, but Maria did.", "Normalised said nothing, but PERSON_1 did."),
    # where names are written in lower case too, they still go
    ("her mum normalised it, and my sister siobhan rang.",
     "her mum normalised it, and my sister PERSON_1 rang."),
    ("So I told Helen, and I told priya too.", "So I told PERSON_1, and I told PERSON_2 too."),
    ("Then i told priya.", "Then i told PERSON_1."),
])
def test_a_lower_case_word_in_a_sentence_that_capitalises_names_is_a_word(text, expected):
    """"My therapist normalised it" read as "my sister siobhan": "normalised" is rare
    in the word list, so it passed for a lower-case name. A sentence that starts with
    a capital writes names with one; a lower-case word there is a name only when the
    lexicon writes it capitalised, or it is a given name of the list ("I told priya")."""
    assert replaced(text) == expected


def test_a_common_word_written_with_a_hyphen_is_not_a_name():
    """The model read "My Wi-Fi went down" as a person, and "Fi died" was a name
    before a speech verb, so every "Wi-Fi" of the case went; hyphenated names beside
    them still go, whole."""
    assert replaced("Hello? Sorry, sorry. My Wi-Fi went down again, so I rejoined. My "
                    "sister Mary-Kate said Zephyrine Quayle-Ndiaye fixed the Wi-Fi.") == \
        ("Hello? Sorry, sorry. My Wi-Fi went down again, so I rejoined. My "
         "sister PERSON_1 said PERSON_2 fixed the Wi-Fi.")
    assert replaced("The Wi-Fi died twice. Then Quayle-Ndiaye said so.") == \
        "The Wi-Fi died twice. Then PERSON_1 said so."


@pytest.mark.parametrize(("text", "expected"), [
    ("And also, I come from a Tamil family, and my sister Priya knew it.",
     "And also, I come from a Tamil family, and my sister PERSON_1 knew it."),
    ("We spoke Igbo and Yoruba at home; the Sikhs came too, Kwame Mensah said.",
     "We spoke Igbo and Yoruba at home; the Sikhs came too, PERSON_1 said."),
    ("Dr Tamil said so.", "Dr PERSON_1 said so."),          # a context says it is a name
])
def test_a_language_or_a_people_is_not_a_name(text, expected):
    """The model reads "Tamil", "Igbo", "Yoruba" as people or places
    (pipeline/data/peoples.txt lists such words); the names beside them still go."""
    assert replaced(text) == expected


@pytest.mark.parametrize(("text", "expected"), [
    ("My dad's Swedish, my mum's from Yorkshire, and my sister Siobhan lives there.",
     "My dad's Swedish, my mum's from PLACE_1, and my sister PERSON_1 lives there."),
    ("The Wi-Fi kept dropping out during the session with Dr Okafor.",
     "The Wi-Fi kept dropping out during the session with Dr PERSON_1."),
    ("My supervisor reframed it, and then Dr Okafor said so.",
     "My supervisor reframed it, and then Dr PERSON_1 said so."),
])
def test_a_context_or_a_title_types_what_the_model_mistyped(text, expected):
    """The model read "Yorkshire" as a person and "Dr Okafor" as a place or an
    employer (title and all); a place context outvotes the model, and an entity
    starting with a title is a person, whose title stays."""
    assert replaced(text) == expected


@pytest.mark.parametrize(("text", "expected"), [
    ("Interview C01\n\nInterviewer: How did you start?\n",
     "Interview C01\n\nInterviewer: How did you start?\n"),
    ("Interview P07 transcript\n\nParticipant: Fine.\n",
     "Interview P07 transcript\n\nParticipant: Fine.\n"),
    ("Interview C01 - Bristol\n\nParticipant: Fine.\n",
     "Interview C01 - PLACE_1\n\nParticipant: Fine.\n"),
    ("Interview C01, Bristol\n\nParticipant: I was at Bristol then, my sister Priya knows.\n",
     "Interview C01, PLACE_1\n\nParticipant: I was at PLACE_1 then, my sister PERSON_1 knows.\n"),
    ("Participant: Then Bristol, then New York.\n",
     "Participant: Then PLACE_1, then PLACE_2.\n"),
])
def test_a_case_heading_is_kept_and_a_city_is_a_place(text, expected):
    """The model read a heading naming the case ("Interview C01") as an organisation,
    so the words that say which interview it is went, and a city alone ("Bristol" on
    the heading, "at Bristol") became ORG_1, which told the reader of an employer; a
    city of pipeline/data/places.txt is a place, still replaced."""
    assert replaced(text, labels=["Interviewer", "Participant"]) == expected


@pytest.mark.parametrize("spoken", [
    "oh seven seven double oh, nine double oh one two three",
    "zero two zero, seven nine four six, triple oh five eight",
    "five five five, oh one two, three four five six",
    "five five five oh one nine nine",
])
def test_phone_numbers_spoken_as_words(spoken):
    assert replaced(f"my number's {spoken} if you need it.", NO_NER) == \
        "my number's PHONE_1 if you need it."


@pytest.mark.parametrize(("code", "expected"), [
    ("D02 X285", "ADDRESS_1"), ("D6W Y2P4", "ADDRESS_1"), ("h91 r2kn", "ADDRESS_1"),  # Eircodes
    ("LS6 3QH", "ADDRESS_1"), ("cf10 3at", "ADDRESS_1"),                              # UK
    ("M5V 3L9", "ADDRESS_1"), ("h2x 1y4", "ADDRESS_1"),                               # Canada
    ("zip code 97214", "zip code ADDRESS_1"), ("02139-4307", "ADDRESS_1"),            # US
    ("Texas 78701", "ADDRESS_1"), ("the 97214 form", "the 97214 form"),
])
def test_postcodes_of_the_uk_ireland_the_us_and_canada_go_whole(code, expected):
    out = replaced(f"It went to {code}, then nowhere.", NO_NER)
    assert out == f"It went to {expected}, then nowhere."


@pytest.mark.parametrize(("text", "expected"), [
    ("She lives in Leeds LS6 2AB now.", "She lives in PLACE_1 ADDRESS_1 now."),
    ("Just off Gloucester Road, Bristol BS7 8AE. I loved Bristol.",
     "Just off ADDRESS_1, PLACE_1 ADDRESS_2. I loved PLACE_1."),
    ("Newcastle upon Tyne NE1 4ST, that was the office.", "PLACE_1 ADDRESS_1, that was the office."),
    ("Send it to 12 Kings Road\nLeeds\nLS6 2AB\n", "Send it to ADDRESS_1\nPLACE_1\nADDRESS_2\n"),
    ("He lived at 12 Kings Road, Leeds and I visited.", "He lived at ADDRESS_1, PLACE_1 and I visited."),
    ("She moved to Toronto, ON M5V 3L9 in the end.", "She moved to PLACE_1, ON ADDRESS_1 in the end."),
    ("i lived in cardiff cf10 3at back then.", "i lived in PLACE_1 ADDRESS_1 back then."),
    ("We were in a basement flat, LS6 3QH, and the damp got in.",
     "We were in a basement flat, ADDRESS_1, and the damp got in."),
])
def test_the_town_beside_a_postcode_or_a_street_goes_too(text, expected):
    """A postcode narrows a place to a street; the town before it says which one."""
    assert replaced(text, NO_NER) == expected


@pytest.mark.parametrize("holiday", [
    "Christmas Eve", "christmas eve", "Easter Monday", "Boxing Day", "Thanksgiving",
    "St Patrick's Day", "St. Patrick’s Day", "new year's eve", "Good Friday", "Halloween",
    "Mother's Day",
])
def test_holidays_that_name_a_day_are_dates(holiday):
    assert replaced(f"She died on {holiday}, a week after.", NO_NER) == \
        "She died on DATE_1, a week after."
    kept = DeidentifyConfig(enabled=True, ner=False, keep=[holiday])
    assert replaced(f"She died on {holiday}, a week after.", kept) == \
        f"She died on {holiday}, a week after."


def test_recall_and_precision_on_the_hard_subset():
    """The hard subset of bench/deid/testset.jsonl (all of it is in deid_small.jsonl):
    lower-case and unusual names, spoken phone numbers, postcodes, holidays."""
    records = [json.loads(line) for line in
               (ROOT / "tests" / "data" / "deid_small.jsonl").read_text().splitlines()]
    records = [r for r in records if r.get("subset") == "hard"]
    from pipeline.stages.ingest import DEFAULT_INTERVIEWER_SPEAKERS, DEFAULT_PARTICIPANT_SPEAKERS

    gold = found = extra = predicted = 0
    for r in records:
        cfg = ON.model_copy(update={"known_names": r["known_names"]})
        result = deidentify_text(r["text"], cfg, r["labels"],
                                 DEFAULT_INTERVIEWER_SPEAKERS + DEFAULT_PARTICIPANT_SPEAKERS)
        spans = [(x.start, x.end) for x in result.replacements]
        gold += len(r["spans"])
        found += sum(_covered(r["text"], g["start"], g["end"], spans) for g in r["spans"])
        predicted += len(spans)
        extra += sum(1 for s, e in spans
                     if not any(s < g["end"] and g["start"] < e for g in r["spans"]))
    assert len(records) >= 30 and gold >= 40
    assert found / gold >= 0.95, (found, gold)
    assert extra / predicted <= 0.05, (extra, predicted)


# --- a de-identified run with subtitle files exports to REFI-QDA --------------------------

VTT = ("WEBVTT\n\n00:00:01.000 --> 00:00:04.000\n<v Mara Reyes>Did your training prepare you "
       "for crying in session?</v>\n\n00:00:04.000 --> 00:00:09.000\n<v Helen Okafor>My training "
       "program never mentioned crying in the room, not once in three years. Nobody in my "
       "training taught us what to do when our own tears come.</v>\n\n00:00:09.000 --> "
       "00:00:12.000\n<v Mara Reyes>Did you bring it to supervision?</v>\n\n00:00:12.000 --> "
       "00:00:18.000\n<v Helen Okafor>My supervisor listened and helped me understand what the "
       "tears meant. Call me on 07700 900123.</v>\n")
SRT = ("1\n00:00:01,000 --> 00:00:04,000\nMara Reyes: How did the client respond when you "
       "cried?\n\n2\n00:00:04,000 --> 00:00:09,000\nPriya Natarajan: The client said she felt "
       "truly seen when she noticed my eyes were wet. Write to priya@example.org.\n\n3\n00:00:09,000 --> "
       "00:00:14,000\nPriya Natarajan: The client told me later that seeing me cry made him "
       "feel less alone with it.\n")


def test_a_deidentified_run_with_vtt_and_srt_exports_to_qdpx(tmp_path, capsys):
    study = write_study(tmp_path / "study", n_cases=4)
    (study / "case05.vtt").write_text(VTT, encoding="utf-8")
    (study / "case06.srt").write_text(SRT, encoding="utf-8")
    cfg = study_config(study)
    cfg["ingest"] = {"paths": [str(study)], "roles": {"Mara Reyes": "interviewer"}}
    cfg["deidentify"] = {"enabled": True, "ner": False, "known_names": ["Helen Okafor"]}
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    out = tmp_path / "out"
    assert main(["run", str(config), "--out", str(out)]) == 0
    from pipeline.exchange.codes import load_run

    run = load_run(out)
    assert run.exact == {f"case0{i}": True for i in range(1, 7)}, run.notes
    qdpx = tmp_path / "run.qdpx"
    assert main(["export", "qdpx", str(out), "--out", str(qdpx)]) == 0, capsys.readouterr().err
    with zipfile.ZipFile(qdpx) as zf:
        texts = {zf.read(n).decode("utf-8") for n in zf.namelist() if n.startswith("Sources/")}
    for case, placeholder in (("case05", "PHONE_1"), ("case06", "EMAIL_1")):
        source = (out / "sources" / f"{case}.txt").read_text(encoding="utf-8")
        assert source in texts and placeholder in source
    assert not any(raw in t for t in texts for raw in ("Helen", "Priya", "07700", "example.org"))


@pytest.mark.parametrize("text, gone", [
    ("I grew up in Stoke-on-Trent, near the potteries.", "Trent"),
    ("She lives in Stratford-upon-Avon now.", "Avon"),
    ("Then Quayle-Ndiaye said no.", "Quayle"),
])
def test_a_replaced_name_takes_its_whole_hyphenated_word(text, gone):
    """A span found inside a hyphenated name or place left the rest of it beside the
    placeholder ("PLACE_1-Trent"): the part left names the place."""
    out = deidentify_text(text, ON).text
    assert gone not in out and "-" not in out, out


def test_one_cases_roles_lose_their_names_and_the_case_its_id(tmp_path):
    """ingest.case_roles holds speakers' names and case ids, which may be names too: the
    config a de-identified run writes gives them as placeholders, as it does
    ingest.roles; written as given, they put the names back beside the run."""
    (tmp_path / "Kowalczyk.txt").write_text(
        "Mara Reyes: How did it start, Anna?\nAnna Kowalczyk: Slowly.\n"
        "Mara Reyes: And then?\nAnna Kowalczyk: It got better.\n", encoding="utf-8")
    icfg = IngestConfig(paths=["."], case_roles={
        "Kowalczyk": {"Mara Reyes": "interviewer", "Anna Kowalczyk": "participant"}})
    corpus = ingest(icfg, tmp_path)
    assert list(corpus.turns["role"]) == ["interviewer", "participant"] * 2
    deid = deidentify_corpus(corpus, ON, icfg)
    written = deid.redact_config({"ingest": icfg.model_dump(mode="json"), "deidentify": {}})
    assert "Kowalczyk" not in str(written) and "Mara" not in str(written)
    (case, given), = written["ingest"]["case_roles"].items()
    assert case == deid.case_ids["Kowalczyk"]
    assert sorted(given.values()) == ["interviewer", "participant"]


def test_names_in_the_paths_of_files_left_unread_are_replaced_too(tmp_path, capsys):
    # files named after participants that could not be read (binary, empty, a subfolder
    # left out) are still listed in the manifest and the report: by their new names
    study = write_study(tmp_path / "study")
    (study / "C08_Rowan_Tillery.txt").write_bytes(b"Interviewer: Hi\n\x00\x00P: Hello\n")
    (study / "C09 Orla Quigg.txt").write_text("", encoding="utf-8")
    (study / "Bláithín Okonjo extra").mkdir()
    (study / "Bláithín Okonjo extra" / "notes.txt").write_text(
        "Interviewer: Hi\nP: Hello there.\n", encoding="utf-8")
    cfg = study_config(study)
    names = ["Rowan Tillery", "Orla Quigg", "Bláithín Okonjo"]
    cfg["deidentify"] = {"enabled": True, "known_names": names}
    config = tmp_path / "Orla Quigg.yaml"          # a config named after a person too
    config.write_text(yaml.safe_dump(cfg, allow_unicode=True), encoding="utf-8")
    out = tmp_path / "out"
    assert main(["run", str(config), "--out", str(out)]) == 0
    capsys.readouterr()
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    whats = [s["what"] for s in manifest["skipped"]]
    assert any(w.endswith("/C08_PERSON_1.txt") for w in whats), whats
    assert any(w.endswith("/C09 PERSON_2.txt") for w in whats), whats
    assert any(w.endswith("/PERSON_3 extra") for w in whats), whats
    assert manifest["config_given"]["path"].endswith("/PERSON_2.yaml")
    for name in ("manifest.json", "report.html", "config.yaml"):
        text = (out / name).read_text(encoding="utf-8")
        for word in ("Tillery", "Quigg", "Okonjo", "Rowan", "Orla", "Bláithín"):
            assert word not in text, (name, word)


def test_names_given_with_set_are_not_written_to_the_manifest(tmp_path, capsys):
    study = write_study(tmp_path / "study")
    cfg = study_config(study)
    cfg["deidentify"] = {"enabled": True, "mapping_file": str(tmp_path / "private" / "m.csv")}
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    out = tmp_path / "out"
    assert main(["run", str(config), "--out", str(out),
                 "--set", "deidentify.known_names=[Ottilie Brannagh, Cosmo Fairweather]",
                 "--set", "ingest.roles={Ysolde Marchbank: interviewer}",
                 "--set", "segment.min_words=3"]) == 0
    capsys.readouterr()
    text = (out / "manifest.json").read_text(encoding="utf-8")
    for word in ("Ottilie", "Brannagh", "Cosmo", "Fairweather", "Ysolde", "Marchbank"):
        assert word not in text, word
    given = json.loads(text)["config_given"]["set"]
    assert given[0].startswith("deidentify.known_names=(withheld")
    assert re.fullmatch(r"ingest\.roles=\{PERSON_\d+: interviewer\}", given[1]), given
    assert given[2] == "segment.min_words=3"


def test_the_mapping_is_added_to_never_renumbered_when_known_names_change(tmp_path, capsys):
    study = write_study(tmp_path / "study")
    (study / "case07.txt").write_text(
        "Interviewer: Who helped?\n\nTherapist: My supervisor Dr. Ambrose Quillfeather "
        "helped, and Tamsin Orchardley too. Later Wenonah came to the group.\n",
        encoding="utf-8")
    cfg = study_config(study)
    mapping = tmp_path / "private" / "m.csv"
    cfg["deidentify"] = {"enabled": True, "ner": False, "mapping_file": str(mapping),
                         "known_names": ["Tamsin Orchardley"]}
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    assert main(["run", str(config), "--out", str(tmp_path / "a")]) == 0
    first = pd.read_csv(mapping, dtype=str, skiprows=1)
    ambrose = first.loc[first["original"] == "Ambrose Quillfeather", "placeholder"].item()
    assert ambrose == "PERSON_2"                # the per-case numbers follow the known ones
    # a later run of the study adds a name to the list: nobody's number changes
    cfg["deidentify"]["known_names"] = ["Wenonah", "Tamsin Orchardley"]
    config.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    assert main(["run", str(config), "--out", str(tmp_path / "b")]) == 0
    capsys.readouterr()
    second = pd.read_csv(mapping, dtype=str, skiprows=1)
    assert second.iloc[:len(first)].equals(first)              # earlier rows stay as they were
    rows = {(r.original, r.placeholder) for r in second.itertuples()}
    assert ("Tamsin Orchardley", "PERSON_1") in rows and ("Ambrose Quillfeather", ambrose) in rows
    wenonah = {p for o, p in rows if o == "Wenonah"}
    assert wenonah and not wenonah & {"PERSON_1", "PERSON_2"}
    text = (tmp_path / "b" / "sources" / "case07.txt").read_text(encoding="utf-8")
    assert f"Dr. {ambrose} helped" in text
    # each run records the sha256 of the mapping its placeholders are read with
    import hashlib

    for run, data in (("b", mapping.read_bytes()),):
        manifest = json.loads((tmp_path / run / "manifest.json").read_text())
        assert manifest["deidentify"]["mapping_sha256"] == hashlib.sha256(data).hexdigest()
    manifest = json.loads((tmp_path / "a" / "manifest.json").read_text())
    assert len(manifest["deidentify"]["mapping_sha256"]) == 64


@pytest.mark.parametrize(("text", "expected"), [
    # a verb after a relation is no name, though the word frequencies lack "lets"
    ("P: My supervisor lets me grieve, she doesn't rush me.",
     "P: My supervisor lets me grieve, she doesn't rush me."),
    ("P: my supervisor lets me grieve.", "P: my supervisor lets me grieve."),
    # a name as an aside after a word for a person, an ordinary word though it is
    ("P: A year eleven girl, Jade, left school suddenly.",
     "P: A year eleven girl, PERSON_1, left school suddenly."),
    ("P: My brother, however, did not come.", "P: My brother, however, did not come."),
    # an area named by its town; where someone worked or volunteered
    ("P: I'm a school counsellor, secondary school, Manchester area, five years.",
     "P: I'm a school counsellor, secondary school, PLACE_1 area, five years."),
    ("P: Grey area, that one.", "P: Grey area, that one."),
    ("P: Before that I worked for Samaritans as a volunteer.",
     "P: Before that I worked for ORG_1 as a volunteer."),
    ("P: I worked for Years and Years.", "P: I worked for Years and Years."),
])
def test_verbs_asides_areas_and_employers(text, expected):
    assert replaced(text, labels=["P"]) == expected
