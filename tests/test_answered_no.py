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
])
def test_an_answer_that_does_not_say_no(text):
    assert negative_reply(text) == ""


def _answers():
    """Four cases asked the main question at turn 2 (and c0 a probe at turn 6): c0 and
    c1 open "No", c2 and c3 tell of a time it helped. c3 says "No" to its probe."""
    rows = [
        ("c0", 3, 2, 0, "Not really, no. She told me about her divorce."),
        ("c0", 3, 2, 60, "It made me feel I had to look after her."),
        ("c0", 5, 2, 0, "And then I stopped going."),              # after a backchannel
        ("c0", 7, 6, 0, "Yes, it was awful."),                      # a probe's answer
        ("c1", 3, 2, 0, "[laughs] No. Nothing she said helped."),
        ("c2", 3, 2, 0, "Yes, when she said she had lost her father too."),
        ("c3", 3, 2, 0, "Once, early on, she said she understood panic."),
        ("c3", 7, 6, 0, "No, nobody."),                             # "No" to a probe
    ]
    return pd.DataFrame([{"segment_id": f"{c}:{t}:{a}", "case_id": c, "turn_index": t,
                          "question_turn_index": q, "start_char": a, "text": x}
                         for c, t, q, a, x in rows])


def test_the_whole_answer_to_a_main_question_that_opens_no_and_nothing_else():
    seg = _answers()
    main = [(c, 2) for c in ("c0", "c1", "c2", "c3")]
    mask = answered_no_mask(seg, main)
    assert seg.loc[mask, "segment_id"].tolist() == ["c0:3:0", "c0:3:60", "c0:5:0", "c1:3:0"]
    # the probes are no main questions: their "No" is no answer to the domain's question
    assert not answered_no_mask(seg, main + [("c0", 6)])[seg["segment_id"] == "c0:7:0"].any()
    assert answered_no_mask(seg, main + [("c3", 6)])[seg["segment_id"] == "c3:7:0"].all()
    assert not answered_no_mask(seg, []).any()


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
    assert names == ["Not at all", "Person-centred module"]
    assert alternatives[0] == ["Vicarious trauma", "One lecture"]
    assert name_occurs_in(names[0], texts[:1])
    taken = cats.assign(name=["Vicarious trauma", "Not at all"])
    assert _name_replies(taken, seg, {0: np.arange(5), 1: np.array([5])})[0][0] == "No"
