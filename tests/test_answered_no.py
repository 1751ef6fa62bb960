"""The answers to a domain's main question that open "No." are a category of their own
(pipeline/stages/crossanalysis.py, *answered no*; the name in pipeline/analysis.py).

The texts are written for these tests; the vectors are made up, so no model is loaded.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipeline.stages.crossanalysis import (
    ANSWERED_NO,
    CrossAnalysisConfig,
    answered_no_mask,
    cross_analyse,
    negative_reply,
)
from pipeline.stages.naming import name_occurs_in


@pytest.mark.parametrize("text, reply", [
    ("No.", "No"),
    ("No, not really. We had one lecture on it.", "No, not really"),
    ("[laughs] No. Nothing. Not a word.", "No"),
    ("Not at all. We had one lecture on vicarious trauma.", "Not at all"),
    ("Not really at all. Lots of theory, though.", "Not really at all"),
    ("Zero. Like, genuinely not once.", "Zero"),
    ("[laughs] Prepare me? No. In the institute it was neutrality.", "No"),
    ("Um, no, I don't think so.", "no, I don't think so"),
    ("I don't, I don't think so, no. She was very kind.", "I don't think so, no"),
    ("Honestly? No.", "No"),
    ("Um, not really helpful, no. She told me about her own illness.", "not really helpful, no"),
    ("Nope.", "Nope"),
    ("Not at all, honestly. Skills, assessment.", "Not at all"),
    ("None that I can think of.", "None that I can think of"),
    ("Nothing comes to mind.", "Nothing comes to mind"),
    ("No regrets, no.", "No regrets, no"),
    ("Never, thank goodness.", "Never"),
])
def test_an_answer_that_opens_with_a_negative_reply(text, reply):
    assert negative_reply(text) == reply


@pytest.mark.parametrize("text", [
    "Not really, but there was one time she told me about her son.",
    "No, no, yes, it was helpful.",
    "No one had ever told me that before.",
    "Nobody did, and that was the problem.",
    "Not straight away. I sat on it for two weeks.",
    "So, not to formal supervision. But a couple of us met.",
    "Normally I do.",
    "Not at first.",
    "Nothing like it before. It was new.",
    "Partly.",
    "Yes, definitely.",
    "No worries. Thanks for asking.",
    "No, I said to her, you can't leave yet.",
    "Not really. Well, one. A girl who moved schools.",
    "No. Not really. Well, one. A girl who moved schools.",
    "No? I mean, it depends.",
])
def test_an_answer_that_does_not_say_no(text):
    assert negative_reply(text) == ""


def _interviews():
    """Four cases: turn 2 asks the main question "Did supervision help with endings?",
    turn 6 a probe, turn 8 the next main question (an open one). c0 answers a bare
    "No." (a backchannel to the segmenter: no segment of it) and tells of the probe;
    c1 "Nope. ..." ; c2 and c3 tell of a time it helped, c3 says "No" to its probe;
    c2 answers the open question "Nothing really. Just that...". """
    prompts, turns, segs = [], [], []
    said = {
        "c0": {3: "No.", 7: "We can always carry on in September, I tell them.", 9: "Keep it simple."},
        "c1": {3: "Nope. My supervisor tends to talk about caseloads.", 7: "Not much.",
               9: "Plan the last session."},
        "c2": {3: "Yes, when she said endings are grief too.", 7: "It was kind.",
               9: "Nothing really. Just that it's all right to be sad."},
        "c3": {3: "Once, early on, she said to plan it.", 7: "No, nobody.", 9: "Be honest."},
    }
    questions = {2: "Thank you. Did supervision help with endings?", 6: "Was that planned?",
                 8: "What would you tell a new counsellor about endings?"}
    for c, answers in said.items():
        for t, q in questions.items():
            prompts.append({"case_id": c, "turn_index": t, "kind": "probe" if t == 6 else "main",
                            "question": q})
            turns.append({"case_id": c, "turn_index": t, "role": "interviewer", "text": q})
        for t, text in answers.items():
            turns.append({"case_id": c, "turn_index": t, "role": "participant", "text": text})
            if text != "No.":       # set aside as a backchannel
                segs.append({"segment_id": f"{c}:{t}:0", "case_id": c, "turn_index": t,
                             "question_turn_index": t - 1, "text": text.removeprefix("Nope. ")})
    return pd.DataFrame(segs), pd.DataFrame(turns), pd.DataFrame(prompts)


def test_a_case_that_answered_a_yes_no_question_no_and_its_follow_ups():
    seg, turns, prompts = _interviews()
    mask = answered_no_mask(seg, turns, prompts)
    # c0's bare "No." has no segment, and c1's "Nope." was cut from its segment: the
    # answer is read in the turns; the probe's answer after it goes with it
    assert seg.loc[mask, "segment_id"].tolist() == ["c0:7:0", "c1:3:0", "c1:7:0"]
    # a "No" to a probe, and "Nothing really" to an open question, are no answer no
    assert not mask[seg["segment_id"].isin(["c3:7:0", "c2:9:0"])].any()
    assert not answered_no_mask(seg, turns, prompts.iloc[:0]).any()


@pytest.mark.parametrize("question, polar", [
    ("Did your training prepare you for any of this?", True),
    ("Thank you. Was there a time she shared something that helped?", True),
    ("Can you think of a time she shared something that helped?", True),
    ("Mm. And did you take it to supervision?", True),
    ("Any regrets?", True),
    ("Could you tell me about a time you cried in session?", False),
    ("Could you take me through that session?", False),
    ("What would you tell a new counsellor about endings?", False),
    ("How did she respond?", False),
])
def test_a_question_that_asks_a_yes_or_no(question, polar):
    from pipeline.stages.crossanalysis import polar_question

    assert polar_question(question) is polar


def _domain(no_cases: int, n_yes: int = 8):
    """One domain: ``n_yes`` cases tell of a helpful disclosure (three segments each),
    ``no_cases`` cases answer "No" and tell of one that did not help. The two stories
    lie close in the embedding, as they do in a real study (both tell of a disclosure)."""
    rng = np.random.default_rng(7)
    base = rng.normal(size=64)
    story = base + 0.15 * rng.normal(size=64)
    rows, vecs, said_no = [], [], []
    for k in range(n_yes + no_cases):
        no = k >= n_yes
        for j in range(3):
            text = ("Not really, no. She told me about her divorce." if no and j == 0 else
                    "She said she had been through it too, and it helped." if not no else
                    "It made me feel I had to look after her.")
            rows.append({"segment_id": f"c{k}:{j}", "case_id": f"c{k}", "text": text})
            vecs.append((story if no else base) + 0.15 * rng.normal(size=64))
            said_no.append(no)
    return pd.DataFrame(rows), np.array(vecs), np.array(said_no)


def test_cases_that_answered_no_are_a_category_of_their_own_not_counted_with_the_others():
    """Clustered with the others, the answers of two cases who said no disclosure
    helped were counted in the category of helpful disclosures, general: they are
    one category, flagged, and the others are clustered as before."""
    seg, X, said_no = _domain(2)
    config = CrossAnalysisConfig(stance=False)
    before = cross_analyse(seg, X, np.zeros(len(seg), int), config)
    with_no = cross_analyse(seg, X, np.zeros(len(seg), int), config, answered_no=said_no)
    cats = with_no.categories[with_no.categories["parent_id"] < 0]
    flagged = cats[[ANSWERED_NO in f for f in cats["flags"]]]
    assert len(flagged) == 1
    assert sorted(flagged["counted_cases"].iat[0]) == ["c8", "c9"]
    cid = int(flagged["category_id"].iat[0])
    assert (with_no.category[said_no] == cid).all() and (with_no.category[~said_no] != cid).all()
    # without it, the "no" cases counted in a category of the others' answers
    assert not any(ANSWERED_NO in f for f in before.categories["flags"])
    assert any({"c8", "c9"} <= set(c) and len(c) > 2 for c in before.categories["counted_cases"])
    assert with_no.counts["answered_no_categories"] == 1
    assert with_no.counts["answered_no_segments"] == int(said_no.sum())
    off = cross_analyse(seg, X, np.zeros(len(seg), int),
                        CrossAnalysisConfig(stance=False, negative_answers=False),
                        answered_no=said_no)
    assert off.categories["flags"].tolist() == before.categories["flags"].tolist()


def test_one_case_that_answered_no_stays_with_the_domain():
    seg, X, said_no = _domain(1)
    out = cross_analyse(seg, X, np.zeros(len(seg), int), CrossAnalysisConfig(stance=False),
                        answered_no=said_no)
    assert not any(ANSWERED_NO in f for f in out.categories["flags"])
    one = cross_analyse(seg, X, np.zeros(len(seg), int),
                        CrossAnalysisConfig(stance=False, negative_answer_min_cases=1),
                        answered_no=said_no)
    assert sum(ANSWERED_NO in f for f in one.categories["flags"]) == 1


def test_a_domain_where_every_case_answered_no_is_that_one_category():
    seg, X, said_no = _domain(4, n_yes=0)
    out = cross_analyse(seg, X, np.zeros(len(seg), int), CrossAnalysisConfig(stance=False),
                        answered_no=said_no)
    top = out.categories[out.categories["parent_id"] < 0]
    assert len(top) == 1 and ANSWERED_NO in top["flags"].iat[0]
    assert (out.category == int(top["category_id"].iat[0])).all()


def test_a_category_of_answers_no_is_named_after_the_reply_most_cases_gave():
    """Its phrase name came from what the cases told after the reply ("Vicarious trauma",
    of "one lecture on vicarious trauma"), which read as what the training covered. A
    reply of several words goes before a bare "No"; a reply another category already
    has as its name is not taken twice."""
    from pipeline.analysis import _name_replies

    texts = ["Not at all. We had one lecture on vicarious trauma.", "[laughs] No. Nothing.",
             "Not at all, honestly. Skills, assessment.", "No. Not a word.", "No.",
             "Partly, in the person-centred module."]
    seg = pd.DataFrame({"segment_id": [f"s{i}" for i in range(6)],
                        "case_id": ["a", "b", "c", "d", "e", "f"], "text": texts})
    cats = pd.DataFrame({"category_id": [0, 1], "name": ["Vicarious trauma", "Person-centred module"],
                         "alternatives": [["One lecture"], []],
                         "flags": [[ANSWERED_NO], []], "quote_ids": [["s0"], ["s5"]]})
    names, alternatives = _name_replies(cats, seg, {0: np.arange(5), 1: np.array([5])})
    # "No" (three cases) before "Not at all" (two)
    assert names == ["No", "Person-centred module"]
    assert alternatives[0] == ["Vicarious trauma", "One lecture"]
    assert name_occurs_in(names[0], texts[1:2])
    taken = cats.assign(name=["Vicarious trauma", "No"])
    assert _name_replies(taken, seg, {0: np.arange(5), 1: np.array([5])})[0][0] == "Not at all"
    # of replies as many cases gave, one of several words first
    two = _name_replies(cats, seg.assign(text=texts[:3] + ["Fine.", "Fine.", texts[5]]),
                        {0: np.arange(5), 1: np.array([5])})[0]
    assert two[0] == "Not at all"
