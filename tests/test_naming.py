"""Category names from the participants' own phrases (pipeline/stages/naming.py).

The texts are written for these tests. The encoder is a deterministic fake (a
hashed bag of words), so no model is loaded; spaCy's small English pipeline is.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from pipeline.errors import InputError
from pipeline.stages.naming import (
    FILLER_WORDS,
    GENERIC_WORDS,
    NAME_COLUMNS,
    NamingConfig,
    Phrase,
    blank_transcriber_notes,
    extract_phrases,
    name_categories,
    name_occurs_in,
    strip_transcriber_notes,
    transcriber_note_spans,
)


def fake_encode(texts):
    """Unit vectors from hashed lower-case words: texts sharing words are similar."""
    out = np.zeros((len(texts), 64), dtype=np.float32)
    for i, t in enumerate(texts):
        for w in re.findall(r"[a-z']+", t.lower()):
            h = int(hashlib.md5(w.encode()).hexdigest(), 16)
            out[i, h % 64] += 1.0 if (h >> 8) % 2 else -1.0
    out[:, 0] += 1e-3
    return out / np.linalg.norm(out, axis=1, keepdims=True)


CASES = ["T1", "T2", "T3", "T4"]
COMMON = "We talked about crying in session, you know."
CATEGORY_LINES = {
    0: ["My training never mentioned crying in the room.",
        "Um, the training never mentioned crying at all (laughs).",
        "I think my training never mentioned crying, not once.",
        "Honestly the course never mentioned crying, [inaudible]."],
    1: ["My supervisor's reaction was warm and steady.",
        "I was scared of my supervisor's reaction, um, at first.",
        "The supervisor's reaction surprised me (pause).",
        "So my supervisor's reaction helped me, you know."],
    2: ["The client felt deeply seen by my tears.",
        "She said she felt deeply seen, um, afterwards.",
        "He told me he felt deeply seen in that moment.",
        "My client felt deeply seen, I mean it mattered."],
}


def study(lines=CATEGORY_LINES, common=COMMON, notes=""):
    texts = {c: [f"{ln} {common} {notes}".strip() for ln in ls] for c, ls in lines.items()}
    cases = {c: CASES[:len(ls)] for c, ls in lines.items()}
    return texts, cases


def run(texts, cases, domains=None, **cfg):
    domains = domains or {c: 0 for c in texts}
    return name_categories(texts, cases, domains, fake_encode, NamingConfig(**cfg))


# --- transcriber notes -------------------------------------------------------------

@pytest.mark.parametrize("note", ["(laughs)", "[inaudible]", "(The participant reads the task)",
                                  "((coughs))", "(??)", "{sighs}", "(long pause)", "(0.5)",
                                  "[00:12:31]", "(Interviewer nods)", "<crosstalk>",
                                  "(unintelligible)", "(clears throat)", "#00:01:23-4#",
                                  "#01:02:03.5#", "//", "///"])
def test_transcriber_notes_are_recognised(note):
    text = f"I was, {note} I was sad."
    assert transcriber_note_spans(text) == [(text.index(note), text.index(note) + len(note))]
    assert strip_transcriber_notes(text) == "I was, I was sad."
    blanked = blank_transcriber_notes(text)
    assert len(blanked) == len(text) and note not in blanked and blanked.endswith("I was sad.")


@pytest.mark.parametrize("aside", ["(and this is the important part of it)", "(which I loved)",
                                   "(my client)", "#1 of the #42", "(see https://x.org)",
                                   "and/or"])
def test_spoken_asides_in_parentheses_are_kept(aside):
    text = f"It was hard {aside} to say."
    assert transcriber_note_spans(text) == []
    assert strip_transcriber_notes(text) == text


@pytest.mark.parametrize("text, kept", [
    # a transcript's line numbers, or a slide's numbering taken down by the transcriber
    ("81 82 83 84 85 86 87", ""),
    ("So we compared the predicted and the actual 1 2 3 4 5 6 7 8 9 10 11",
     "So we compared the predicted and the actual"),
    ("Precisely. And where there is no 75 76 77 78 79 80 trend, it helps.",
     "Precisely. And where there is no trend, it helps."),
    ("It was (laughs) 5 6 7 8 9 hard.", "It was hard."),
    # numbers someone says are kept: too few, not counting up by one, or not alone
    ("I had 2 3 4 5 sessions with her.", "I had 2 3 4 5 sessions with her."),
    ("We saw 2 4 6 8 10 12 clients.", "We saw 2 4 6 8 10 12 clients."),
    ("In 2019, 2020, 2021, 2022 and 2023 I worked there.",
     "In 2019, 2020, 2021, 2022 and 2023 I worked there."),
    ("Version 1.2 3.4 5.6 7.8 9.1 of it.", "Version 1.2 3.4 5.6 7.8 9.1 of it."),
])
def test_runs_of_line_numbers_are_notes(text, kept):
    """Five or more whole numbers in a row, each one more than the last, are line
    numbers (an export's or a transcriber's), never a participant's words."""
    assert strip_transcriber_notes(text) == kept
    blanked = blank_transcriber_notes(text)
    assert len(blanked) == len(text)                    # offsets still index the text
    assert " ".join(blanked.split()) == kept
    assert (transcriber_note_spans(text) == []) == (kept == text)


def test_strip_leaves_no_gap_before_punctuation():
    assert strip_transcriber_notes("It helped (laughs). Really [inaudible] it did.") == \
        "It helped. Really it did."
    assert strip_transcriber_notes("(The participant reads the task)") == ""


# --- the containment rule -------------------------------------------------------------

def test_name_occurs_in_rule():
    quotes = ["We didn’t TALK about [laughs] crying, ever.", "It was physiotherapy."]
    assert name_occurs_in("talk about crying", quotes)           # case, note removed
    assert name_occurs_in("didn't talk", quotes)                  # curly apostrophe
    assert not name_occurs_in("talked about crying", quotes)      # another inflection: no
    assert not name_occurs_in("therapy", quotes)                  # whole words only
    assert not name_occurs_in("about crying ever", quotes)        # punctuation is not skipped
    assert not name_occurs_in("laughs", quotes)                   # the note is gone
    assert not name_occurs_in("", quotes)


# --- phrases -----------------------------------------------------------------------------

def _texts(plist: list[Phrase]) -> set[str]:
    return {p.text.lower() for p in plist}


def test_extract_phrases_noun_and_verb_phrases():
    texts = ["My supervisor's reaction was kind, and I went to personal therapy.",
             "I didn't talk about crying with anyone.",
             "I tried to hold back the tears.",
             "There was no training on therapist emotion.",
             "The two-way plots helped."]
    got = extract_phrases(texts)
    assert len(got) == len(texts)
    assert {"supervisor's reaction", "personal therapy"} <= _texts(got[0])
    assert "didn't talk about crying" in _texts(got[1])     # the negation stays
    assert "talk about crying" not in _texts(got[1])
    assert "hold back the tears" in _texts(got[2])
    assert any(t.startswith("no training") for t in _texts(got[3]))
    assert "two-way plots" in _texts(got[4]) and "way plots" not in _texts(got[4])
    for text, plist in zip(texts, got):
        for p in plist:
            assert text[p.start:p.end] == p.text            # offsets index the given text
            assert 2 <= len(p.text.split()) <= 6


def test_extract_phrases_skips_fillers_notes_pronouns_and_generic_words():
    texts = ["You know, I mean, the kind of thing that, um, happens (The participant reads the task).",
             "[long silence] A lot of people, you know, in a long time.",
             "It was telling me something about the the session."]
    got = extract_phrases(texts)
    words = " ".join(p.text.lower() for plist in got for p in plist)
    for bad in ("participant", "task", "silence", "you know", "i mean", "kind of", "um",
                "lot of people", "long time", "telling me", "the the"):
        assert not re.search(rf"\b{re.escape(bad)}\b", words), bad


# --- names --------------------------------------------------------------------------------

def _check_name(name: str, quotes: list[str]) -> None:
    words = name.split()
    assert 2 <= len(words) <= 6, name
    assert name_occurs_in(name, quotes), name
    low = name.lower()
    for filler in ("um", "uh", "you know", "kind of", "i mean", "sort of"):
        assert not re.search(rf"\b{filler}\b", low), name
    assert not all(w.lower() in GENERIC_WORDS | FILLER_WORDS for w in words), name


def test_names_are_phrases_from_the_quotes():
    texts, cases = study(notes="(laughs) [inaudible]")
    df = run(texts, cases)
    assert list(df.columns) == list(NAME_COLUMNS)
    assert list(df["category_id"]) == [0, 1, 2]
    for c, row in zip(df["category_id"], df.itertuples()):
        _check_name(row.name, texts[c])
        for alt in row.alternatives:
            _check_name(alt, texts[c])
            assert alt != row.name
        assert row.name_support >= 1 and 1 <= row.name_cases <= row.name_support
        assert isinstance(row.keywords, list) and row.keywords
        assert not {"laughs", "inaudible", "um"} & {k.lower() for k in row.keywords}
    names = dict(zip(df["category_id"], df["name"].str.lower()))
    assert "never mentioned crying" in names[0]
    assert "supervisor's reaction" in names[1]
    assert "felt deeply seen" in names[2]


def test_a_phrase_common_to_all_categories_is_not_chosen():
    # "crying in session" is in every segment of every category, in every case:
    # it covers them all, and names none of them
    texts, cases = study(common="Crying in session is hard, crying in session really is.")
    df = run(texts, cases)
    for name in df["name"]:
        assert "crying in session" not in name.lower()
    assert not (df["name"] == "").any()


def test_siblings_in_one_domain_get_different_names():
    # categories 0 and 1 say the same two things; category 2 something else
    lines = {0: CATEGORY_LINES[1], 1: CATEGORY_LINES[1][::-1], 2: CATEGORY_LINES[2]}
    texts, cases = study(lines, common="Her calm voice helped.")
    texts[2] = [t.replace("Her calm voice helped.", "") for t in texts[2]]
    together = run(texts, cases, domains={0: 0, 1: 0, 2: 0})
    assert {together["name"][0].lower(), together["name"][1].lower()} == \
        {"supervisor's reaction", "calm voice"}
    for c in (0, 1):
        _check_name(together["name"][c], texts[c])


@pytest.mark.parametrize("domains", [{0: 0, 1: 1, 2: 0}, {0: 1, 1: 0, 2: 1}])
def test_categories_of_different_domains_never_share_a_name(domains):
    """Two codes of one name in the codebook, the exports and the workbooks read as
    one: the later category (by its order) takes its next-best candidate, whatever
    the domains' ids."""
    from pipeline.stages.naming import name_key

    lines = {0: CATEGORY_LINES[1], 1: CATEGORY_LINES[1][::-1], 2: CATEGORY_LINES[2]}
    texts, cases = study(lines, common="Her calm voice helped.")
    texts[2] = [t.replace("Her calm voice helped.", "") for t in texts[2]]
    df = run(texts, cases, domains=domains)
    assert df["name"][0].lower() == "supervisor's reaction"
    assert df["name"][1] and name_key(df["name"][1]) != name_key(df["name"][0])
    assert df["name"][1] in run(texts, cases, domains={0: 0, 1: 1, 2: 2})["alternatives"][0]
    _check_name(df["name"][1], texts[1])
    assert len({name_key(n) for n in df["name"]}) == 3
    assert name_key("Didn’t  flinch.") == name_key("didn't flinch") == "didnt flinch"
    assert name_key("Keep the same therapist") != name_key("Keep the same therapists")


def test_near_synonyms_between_siblings_are_penalised():
    # Category 1's best phrase, "warm clinical oversight", shares "warm" with category
    # 0's "warm supervision" (cosine 0.41 with the fake encoder): with every similarity
    # counted as redundancy (a floor of 0), the diversity penalty gives category 1 its
    # phrase without the shared word; the default floor (0.7) lets a pair this far
    # apart be.
    lines = {0: ["The warm supervision helped.", "Warm supervision, um, mattered.",
                 "I had warm supervision.", "It was warm supervision."],
             1: ["Warm clinical oversight helped, and calm feedback.",
                 "We had warm clinical oversight.", "Warm clinical oversight, calm feedback.",
                 "Honestly it was fine."]}
    texts, cases = study(lines, common="")
    no_penalty = run(texts, cases, diversity=0.0)
    penalty = run(texts, cases, diversity=1.0, redundancy_floor=0.0)
    assert no_penalty["name"][0].lower() == penalty["name"][0].lower() == "warm supervision"
    assert no_penalty["name"][1].lower() == "warm clinical oversight"
    assert penalty["name"][1].lower() == "clinical oversight"
    assert run(texts, cases)["name"][1].lower() == "warm clinical oversight"


def test_a_name_that_says_a_sibling_s_name_and_more_is_not_given():
    """"Warm clinical supervision" beside a sibling's "warm supervision" reads as one
    topic, however the penalty is set; a judgement of the same subject, or its
    negation, is another name."""
    from pipeline.stages.naming import _says_the_other

    lines = {0: ["The warm supervision helped.", "Warm supervision, um, mattered.",
                 "I had warm supervision.", "It was warm supervision."],
             1: ["Warm clinical supervision helped, and calm feedback.",
                 "We had warm clinical supervision.", "Warm clinical supervision, calm feedback.",
                 "Honestly it was fine."]}
    texts, cases = study(lines, common="")
    for settings in ({"diversity": 0.0}, {}, {"redundancy_floor": 0.9}):
        names = run(texts, cases, **settings)["name"].str.lower().tolist()
        assert names[0] == "warm supervision"
        assert names[1] == "clinical supervision", settings
    apart = run(texts, cases, domains={0: 0, 1: 1})          # not siblings: no rule
    assert apart["name"][1].lower() == "warm clinical supervision"
    assert _says_the_other(("supervisor", "reaction", "warm"), ("supervisor", "reaction"))
    assert not _says_the_other(("supervisor", "reaction", "warm"),
                               ("supervisor", "reaction", "harsh"))
    assert not _says_the_other(("never", "feel", "ashamed"), ("feel", "ashamed"))


def test_person_names_and_extra_stop_words_never_name():
    lines = {0: ["Dr Okafor's reaction was warm.", "I saw Dr Okafor's reaction, um, later.",
                 "Dr Okafor's reaction calmed me.", "The PilotTool export helped Okafor's reaction."],
             1: CATEGORY_LINES[2]}
    texts, cases = study(lines, common="")
    df = run(texts, cases, extra_stop_words=["PilotTool"])
    assert "okafor" not in df["name"][0].lower()
    for alt in df["alternatives"][0]:
        assert "okafor" not in alt.lower() and "pilottool" not in alt.lower()
    assert not {"okafor", "pilottool"} & {k.lower() for k in df["keywords"][0]}


def test_category_without_a_phrase_gets_an_empty_name_and_keywords():
    texts = {0: ["Yes.", "Okay, yes."], 1: CATEGORY_LINES[2]}
    cases = {0: ["T1", "T2"], 1: CASES}
    df = run(texts, cases)
    assert df["name"][0] == "" and np.isnan(df["name_score"][0])
    assert df["alternatives"][0] == [] and df["name_support"][0] == 0
    assert df["name"][1] != ""


def test_phrase_extractor_hook_and_segment_vectors():
    texts, cases = study()
    calls = []

    def caching_extractor(batch, batch_size=64):
        calls.append(list(batch))
        return extract_phrases(batch, batch_size=batch_size)

    vectors = {c: fake_encode(t) for c, t in texts.items()}
    encoded = []

    def counting_encode(batch):
        encoded.extend(batch)
        return fake_encode(batch)

    df = name_categories(texts, cases, {c: 0 for c in texts}, counting_encode, NamingConfig(),
                         vectors_by_category=vectors, phrase_extractor=caching_extractor)
    assert len(calls) == 1 and sorted(calls[0]) == sorted(t for ts in texts.values() for t in ts)
    assert not set(encoded) & set(calls[0])          # segments were not encoded again
    pd.testing.assert_frame_equal(df, run(texts, cases))


def test_parsing_is_bounded_but_counting_covers_every_segment():
    texts, cases = study()
    texts = {c: ts * 5 for c, ts in texts.items()}            # 20 segments per category
    cases = {c: cs * 5 for c, cs in cases.items()}
    parsed = []

    def extractor(batch, batch_size=64):
        parsed.extend(batch)
        return extract_phrases(batch, batch_size=batch_size)

    df = name_categories(texts, cases, {c: 0 for c in texts}, fake_encode,
                         NamingConfig(max_parsed_per_category=3), phrase_extractor=extractor)
    assert len(parsed) == 3 * len(texts)
    assert (df["name_support"] >= 5).all()      # found in unparsed segments too



def test_a_text_in_a_category_and_its_subcategory_is_parsed_once():
    texts, cases = study()
    # category 2 stands for a subcategory of category 0: the same segments again
    texts = {**texts, 2: texts[0][:3]}
    cases = {**cases, 2: cases[0][:3]}
    parsed = []

    def extractor(batch, batch_size=64):
        parsed.extend(batch)
        return extract_phrases(batch, batch_size=batch_size)

    df = name_categories(texts, cases, {c: 0 for c in texts}, fake_encode, NamingConfig(),
                         phrase_extractor=extractor)
    assert len(parsed) == len(set(parsed)) == len({t for ts in texts.values() for t in ts})
    assert (df["name"] != "").all()

def test_bad_inputs_are_clear_errors():
    texts, cases = study()
    with pytest.raises(InputError, match="case ids"):
        run(texts, {**cases, 0: ["T1"]})
    with pytest.raises(InputError, match="no domain"):
        run(texts, cases, domains={0: 0, 1: 0})
    with pytest.raises(InputError, match="vectors"):
        name_categories(texts, cases, {c: 0 for c in texts}, fake_encode, NamingConfig(),
                        vectors_by_category={c: np.zeros((1, 64)) for c in texts})
    with pytest.raises(InputError, match="encoder"):
        name_categories(texts, cases, {c: 0 for c in texts}, lambda b: np.zeros((1, 3)), NamingConfig())
    with pytest.raises(ValidationError):
        NamingConfig(min_words=4, max_words=3)
    with pytest.raises(ValidationError):
        NamingConfig(weight_centrality=0, weight_distinctiveness=0, weight_cases=0)
    with pytest.raises(ValidationError):
        NamingConfig(unknown=1)


@pytest.mark.slow
def test_demo_names_with_the_real_embedder(tmp_path):
    """The demo's segments, grouped by k-means on the real embeddings, all get names
    that keep the rules."""
    from pathlib import Path

    from sklearn.cluster import KMeans

    from pipeline.config import load_config
    from pipeline.stages.embed import SentenceTransformerEmbedder
    from pipeline.stages.ingest import ingest
    from pipeline.stages.segment import SentenceSegmenter

    root = Path(__file__).resolve().parent.parent
    cfg, base = load_config(root / "configs" / "demo.yaml")
    segs = SentenceSegmenter(target_words=40, max_words=80).segment(
        ingest(cfg.ingest, base)).segments
    embedder = SentenceTransformerEmbedder()
    vecs = np.asarray(embedder.encode(segs["text"].tolist()), dtype=np.float32)
    labels = KMeans(12, random_state=0, n_init=4).fit_predict(vecs)
    texts = {int(k): segs["text"][labels == k].tolist() for k in np.unique(labels)}
    cases = {int(k): segs["case_id"][labels == k].tolist() for k in np.unique(labels)}
    df = name_categories(texts, cases, {k: k % 3 for k in texts},
                         lambda b: np.asarray(embedder.encode(list(b))), NamingConfig(),
                         vectors_by_category={k: vecs[labels == k] for k in texts})
    assert (df["name"] != "").all()
    for k, name in zip(df["category_id"], df["name"]):
        _check_name(name, texts[k])
    for d in range(3):
        sib = df[df["category_id"] % 3 == d]["name"].str.lower()
        assert sib.is_unique


def test_a_subject_with_the_judgement_said_of_it_is_a_phrase():
    """"The export was simple" gives "export was simple": the judgement is what the
    category is about, and the subject alone would name "simple" and "confusing"
    alike. A pronoun subject ("it was simple") makes none, and neither does a subject
    whose own words run on after it."""
    from pipeline.stages.naming import extract_phrases

    texts = ["Honestly the export was simple.",
             "The cluster plots looked confusing at first.",
             "The navigation wasn't clear to me.",
             "It was simple.",
             "The part of the tool that I used was useful."]
    got = [_texts(ps) for ps in extract_phrases(texts)]
    assert "export was simple" in got[0]
    assert "cluster plots looked confusing" in got[1]
    assert "navigation wasn't clear" in got[2]                # the negation stays
    assert not any("was simple" in t for t in got[3])
    assert not any(t.endswith("was useful") for t in got[4])


def test_a_verb_cut_from_its_object_is_no_phrase():
    """"Didn't wipe" of "I didn't wipe it away" names half a thought; "wiped the tears"
    keeps its object and stays."""
    from pipeline.stages.naming import extract_phrases

    texts = ["I didn't wipe it away, I was too surprised.",
             "Honestly I can't handle it when they cry.",
             "She decided to name it in the next session.",
             "I wiped the tears from my face and we talked about the supervision group."]
    found = [p.text.lower() for ps in extract_phrases(texts) for p in ps]
    for fragment in ("didn't wipe", "can't handle", "decided to name"):
        assert not any(f.endswith(fragment.split()[-1]) for f in found), (fragment, found)
    assert any("tears" in f for f in found) and any("supervision group" in f for f in found)


def test_a_phrase_does_not_stop_between_an_object_and_its_particle():
    """"Felt my eyes" of "I felt my eyes well up" says something else; the phrase
    runs to the particle, which the parser hangs from the verb as an adverb or tags
    as a particle ("picked the phone up", "gave up"), and not past it when the verb
    takes an object or a clause after it ("sort out" of "sort out whether ...")."""
    from pipeline.stages.naming import extract_phrases

    texts = ["I looked at her face, and I felt my eyes well up.",
             "She wiped the tears away and went on.",
             "I picked the phone up.",
             "I gave up.",
             "The supervisor helped me sort out whether it was my own grief.",
             "I held back the tears."]
    found = [p.text.lower() for ps in extract_phrases(texts) for p in ps]
    # a verb and its particle without the clause or object the verb takes is half too
    assert "sort out" not in found and "held back" not in found
    assert "held back the tears" in found
    assert "felt my eyes" not in found and "felt my eyes well up" in found
    assert "wiped the tears" not in found and "wiped the tears away" in found
    assert "picked the phone" not in found and "picked the phone up" in found
    assert "gave up" in found


def test_a_verb_phrase_never_drops_its_particle():
    """"Haven't given" of "I haven't given up on it" says the opposite of what was
    said. A particle stays with its verb whether the parser tags it a particle, an
    adverb ("moved on") or a preposition with no object of its own ("held on to"),
    and a phrase that ends on the verb without it is no phrase."""
    texts = ["So I haven't given up on it.",
             "We never moved on, as a family.",
             "I never held on to the anger.",
             "I never cried."]
    found = [p.text.lower() for ps in extract_phrases(texts) for p in ps]
    assert "haven't given" not in found and "haven't given up" in found
    assert "never moved" not in found and "never moved on" in found
    assert "never held" not in found and "never held on" in found
    assert "never cried" in found          # a verb with no particle stays


@pytest.mark.parametrize("text, bare, kept", [
    ("I didn't feel like a failure for once.", "didn't feel", None),
    ("And I didn't feel like she was rushing me.", "didn't feel", None),
    ("Honestly, I never felt.", "never felt", None),
    ("I didn't feel judged anymore.", "didn't feel", "didn't feel judged"),
    ("It didn't look good.", "didn't look", "didn't look good"),
])
def test_a_light_verb_with_nothing_after_it_is_no_phrase(text, bare, kept):
    """A negation and a bare light or linking verb ("didn't feel") says nothing: what
    was felt is what a name says."""
    said = [p.text for p in extract_phrases([text])[0]]
    assert bare not in said
    if kept:
        assert kept in said


LIGHT_VERB_LINES = {
    0: ["Relieved, honestly. I didn't feel judged anymore, not by her.",
        "I didn't feel like a failure for once.",
        "Honestly I didn't feel like she was rushing me.",
        "I didn't feel like I had to hide the drinking."],
    1: ["She mentioned her holiday in Spain at the start.",
        "She talked about her garden and her dogs.",
        "He mentioned his divorce once, in passing.",
        "She told me about her own mother's illness."],
}


def test_a_light_verb_said_in_every_case_never_names_the_category():
    """"I didn't feel ..." opens a sentence in every case, so the bare words are the
    category's most common phrase; a category was named "Didn't feel" over "Didn't
    feel judged". Not from the parser, nor from an extractor that gives the bare words."""
    cases = {c: CASES[:4] for c in LIGHT_VERB_LINES}

    def with_bare(batch, batch_size=64):
        out = extract_phrases(batch, batch_size=batch_size)
        for text, ps in zip(batch, out):
            at = text.find("didn't feel")
            if at >= 0:
                ps.append(Phrase("didn't feel", at, at + 11, ("do", "not", "feel"), ("not", "feel"),
                                 "verb+comp"))
        return out

    for extractor in (None, with_bare):
        df = name_categories(LIGHT_VERB_LINES, cases, {0: 0, 1: 1}, fake_encode, NamingConfig(),
                             phrase_extractor=extractor)
        row = df.iloc[0]
        shown = [row["name"], *row["alternatives"]]
        assert "Didn't feel" not in shown, shown
        assert row["name"] == "Didn't feel judged"
        for name in shown:
            _check_name(name, LIGHT_VERB_LINES[0])


def test_a_category_whose_cases_share_no_word_still_has_keywords():
    """Keywords are the words a category's cases share; a category of two cases that
    share none is ranked on all its words, not left with an empty keywords column."""
    from pipeline.stages.naming import _ctfidf

    ranked = _ctfidf({0: [["door", "goodbye"], ["homework", "missed"]],
                      1: [["supervisor", "kind"], ["supervisor", "listened"]]})
    assert ranked[1] == ["supervisor"]                      # shared by both of its cases
    assert set(ranked[0]) == {"door", "goodbye", "homework", "missed"}


def test_spoken_forms_the_parser_splits_are_no_phrase():
    """"Gonna" is tokenised "gon na", "bit" is looked up as "bite", a clitic ("'m")
    is the end of the word before it, and a stutter ("it-it's") leaves a hyphen: none
    may start, fill or make a name. The phrases the same texts do hold stay."""
    from pipeline.stages.naming import extract_phrases

    texts = ["If I was gonna drink, I could probably stop at two.",
             "I'm not gonna drink tonight.",
             "It was a little bit of a shock to the family.",
             "Yeah, it-it's fine, I keep the whisky in the garage now.",
             "I'm not ashamed of the drinking any more."]
    found = [p.text for ps in extract_phrases(texts) for p in ps]
    assert not any(f.lower().startswith(("gon", "'", "’", "-")) or f.lower() == "little bit"
                   or "gonna" in f.lower() or "not gon" in f.lower() for f in found), found
    assert all(f[:1].isalnum() and f[-1:].isalnum() for f in found), found
    assert "keep the whisky in the garage" in found and "shock to the family" in found, found


def test_the_name_says_what_the_category_says_over_a_detail_only_it_mentions():
    """Every segment of category 0 is about regular supervision and mentions a red
    umbrella in passing; the other category mentions regular supervision too, so
    "red umbrella" is the more distinctive phrase. The name is read as the
    category's summary: centrality (the name's similarity to the centre) decides,
    and the detail stays an alternative."""
    lines = {0: ["Regular supervision helped, regular supervision mattered, the red umbrella stayed.",
                 "I had regular supervision, and regular supervision was the anchor; a red umbrella.",
                 "The red umbrella aside, regular supervision and more regular supervision.",
                 "Regular supervision, weekly regular supervision, by the red umbrella."],
             1: ["Regular supervision was offered to the trainees once.",
                 "The trainees had regular supervision and waiting lists.",
                 "Waiting lists for trainees were a rule.",
                 "Waiting lists grew for the trainees."]}
    texts, cases = study(lines, common="")
    df = run(texts, cases, domains={0: 0, 1: 1})
    assert df["name"][0] == "Regular supervision"
    assert "Red umbrella" in df["alternatives"][0]


def test_a_phrase_keeps_the_number_that_counts_its_modifier():
    """"Two way plots" written without its hyphen: the parser reads "two" as counting
    "way", and trimming it (a stop word) left "way plot", half a word. A number that
    counts the noun itself ("one session") is trimmed as before."""
    from pipeline.stages.naming import extract_phrases

    texts = ["I look at the two way plot first, then the residuals.",
             "It was one session only, and then I left the clinic."]
    found = [p.text.lower() for ps in extract_phrases(texts) for p in ps]
    assert "two way plot" in found and "way plot" not in found, found
    assert "one session" not in found, found


def test_a_segment_longer_than_spacy_takes_is_named_from_its_start():
    from pipeline.stages.label import build_vocabulary

    blob = "QUJD" * 300_000                                   # one "word" of 1.2 M characters
    text = f"I kept the garden notebook {blob}"
    (phrases,) = extract_phrases([text])
    assert any(text[p.start:p.end].lower().startswith("garden notebook") for p in phrases)
    assert "garden" in build_vocabulary([text]).docs[0]


def test_the_parser_gives_every_token_the_part_of_speech_of_the_whole_attribute_ruler():
    """The names' parser keeps only the attribute ruler's part-of-speech rules (the
    morphology and lemmas it no longer sets are never read); each token's part of
    speech, which the phrases are cut by, is the one the full ruler gives."""
    from pipeline.stages.naming import SPACY_MODEL, _parser
    from pipeline.stages.nlp import spacy

    demo = Path(__file__).resolve().parent.parent / "data" / "demo"
    texts = [line.split(":", 1)[-1] for path in sorted(demo.glob("*.txt"))
             for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    texts += ["Ain't nobody gonna tell me that.", "There's something about it, isn't there?",
              "Let's say I did, but I didn't.", "That that is, is.", "Whether or not they'd go."]
    assert len(texts) > 100
    full = spacy().load(SPACY_MODEL, exclude=["ner", "lemmatizer"])
    reduced = _parser()
    assert len(reduced.get_pipe("attribute_ruler").patterns) < len(full.get_pipe("attribute_ruler").patterns)
    ours = [[t.pos_ for t in doc] for doc in reduced.pipe(texts)]
    theirs = [[t.pos_ for t in doc] for doc in full.pipe(texts)]
    assert ours == theirs


def test_a_judgement_the_cases_share_is_named_with_its_subject():
    """Three of four participants say the filter panel was useful: "useful" is one of
    the category's keywords, so "Filter panel was useful" is named, as a team codes
    it, over the more central "Filter panel". When one participant alone says so, the
    judgement is not the category's and the subject alone is the name."""
    other = ["The colour legend confused me at first.", "A colour legend with eight colours is too many.",
             "I never understood the colour legend.", "The colour legend needs labels."]
    shared = ["The filter panel was useful for the big tables.", "Honestly the filter panel was useful to me.",
              "The filter panel, useful, saved time.", "We kept the filter panel open all day."]
    texts, cases = study({0: shared, 1: other}, common="")
    assert run(texts, cases)["name"][0] == "Filter panel was useful"
    off = run(texts, cases, judgement_bonus=0.0)
    assert off["name"][0] == "Filter panel"
    assert "Filter panel was useful" in off["alternatives"][0]
    one = ["The filter panel was useful for the big tables.", "Honestly the filter panel was slow to me.",
           "The filter panel, confusing, cost time.", "We kept the filter panel open all day."]
    texts, cases = study({0: one, 1: other}, common="")
    df = run(texts, cases)
    assert "useful" not in df["keywords"][0]
    assert df["name"][0] == "Filter panel"


@pytest.mark.parametrize("text, left_out", [
    ("I didn't want to make supervision into therapy.", "make supervision into therapy"),
    ("I don't think it helped my practice at all.", "helped my practice"),
    ("She did not really explain the feedback.", "explain the feedback"),
])
def test_a_verb_phrase_cut_from_its_negation_is_no_name(text, left_out):
    """Named without the negation that governs it, a phrase says the opposite of what
    was said ("Make supervision into therapy" for people who would not)."""
    said = [p.text for p in extract_phrases([text])[0]]
    assert left_out not in said and not any(left_out in s for s in said)


def test_a_verb_phrase_that_keeps_its_negation_or_has_none_stays():
    assert "never felt safe" in [p.text for p in extract_phrases(["I never felt safe there."])[0]]
    assert "did not help" in [p.text for p in extract_phrases(["It did not help."])[0]]
    assert "make supervision into therapy" in [
        p.text for p in extract_phrases(["I wanted to make supervision into therapy."])[0]]


def test_a_negated_sentence_never_names_the_positive_phrase():
    """A phrase group is found in every segment by its lemmas: "feel relieved" is
    found in "I don't feel relieved about it". Counted there, the negated sentence
    lent the positive phrase its words, and a category was named "Feel relieved" from
    the only quote that said it, negated. A negated occurrence counts for the negated
    phrase ("Don't feel supported at work", "Never felt supported at work"), never
    for the positive one."""
    texts = {
        0: ["So I felt supported at work after that, and calmer.",
            "My manager listened, and I feel supported at work now.",
            "The new rota helped a lot with the night shifts.",
            "We had a debrief every Friday with the whole ward."],
        1: ["Honestly, I don't feel supported at work since the move.",
            "I never felt supported at work, not by anyone on the ward.",
            "Badly. It still bothers me at night when I get home.",
            "It still feels bad, like a weight on my chest every morning."],
        2: ["So I felt relieved. Really relieved, and at peace with the ending.",
            "It still sits heavy. I don't feel relieved about it.",
            "We finished the sessions and said goodbye properly.",
            "I don't think it got repaired, not really."],
    }
    cases = {c: CASES[:4] for c in texts}
    df = run(texts, cases, domains={0: 0, 1: 1, 2: 2})
    shown = {c: [r.name, *r.alternatives] for c, r in zip(df["category_id"], df.itertuples())}
    # said only negated in 1: no positive form of it names 1
    assert not {"Supported at work", "Feel supported at work", "Felt supported at work",
                "Feel supported", "Felt supported"} & set(shown[1])
    assert {"Don't feel supported at work", "Never felt supported at work"} & set(shown[1])
    # said positively in 0, where the positive stays
    assert "Feel supported at work" in shown[0]
    # said once each way in 2: shown in the words said positively, never the negated ones
    assert "Feel relieved" not in shown[2]
    assert "Felt relieved" in shown[2] or "Don't feel relieved" in shown[2]
    for c, names in shown.items():
        for name in names:
            _check_name(name, texts[c])


@pytest.mark.parametrize("text, negated_from", [
    ("I don't feel relieved about it.", "don't feel relieved"),
    ("I didn't feel relieved.", "didn't feel relieved"),
    ("I never felt relieved.", "never felt relieved"),
    ("I'm not feeling relieved, honestly.", "not feeling relieved"),   # not the clitic "'m"
    ("It is not feeling relieved that matters.", "is not feeling relieved"),
    ("There was no feeling relieved.", "no feeling relieved"),
    ("I don't really feel relieved.", ""),           # negated, no negated phrase of its own
    ("I don't think I felt relieved.", ""),
    ("Nobody felt relieved.", ""),
    ("So I felt relieved.", None),
    ("No, I felt relieved.", None),                  # an answer, then the phrase
    ("I never knew that she felt relieved.", None),  # another clause
    ("I wasn't angry and I felt relieved.", None),
])
def test_what_a_negation_before_a_phrase_reaches(text, negated_from):
    """The clause rule of the occurrence search, for the phrase "feel relieved" (any
    form): None, not negated; "", negated with no negated phrase of its own; else
    the negated phrase it starts."""
    from pipeline.stages.naming import _fast_pass, _negated_before
    t = _fast_pass([text], frozenset(), frozenset())[0][0]
    j = t.lemmas.index("feel")
    k = _negated_before(t, j)
    if negated_from is None:
        assert k is None
    elif negated_from == "":
        assert k == -1
    else:
        assert text[t.starts[k]:t.ends[j + 1]] == negated_from


def test_category_keywords_are_the_keywords_name_categories_gives():
    """The codebook computes a changed category's keywords again with
    category_keywords: the same words as the run's, given the same segments."""
    from pipeline.stages.naming import category_keywords

    texts, cases = study()
    df = run(texts, cases)
    again = category_keywords(texts, cases, n_keywords=NamingConfig().n_keywords)
    assert again == {c: list(k) for c, k in zip(df["category_id"], df["keywords"])}
