"""The protocol stage: areas from recurring questions, the interview frame, the
protocol file, and domains checked against content. A deterministic bag-of-words
encoder stands in for the embedding model (one slow test uses the real one)."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from pipeline.errors import ConfigError, ConsensaError
from pipeline.stages.protocol import (
    FRAME_DOMAIN,
    PROMPT_COLUMNS,
    REDACTED_AREA,
    Area,
    Protocol,
    ProtocolConfig,
    area_name,
    infer_protocol,
    load_protocol,
    propose_domains_from_protocol,
    protocol_to_yaml,
    question_core,
)
from pipeline.types import SEGMENT_COLUMNS, TURN_COLUMNS

ROOT = Path(__file__).resolve().parent.parent

# --- a fake encoder: hashed bag of content words, unit length --------------------

_FAKE_STOP = set("""
a an the and or but if of to in on at for with about as by from into is are was were be been
am do does did have has had i me my you your he him his she her they them their we us our it
its this that these those there what which who when where why how not no so can could would
should will just then now also any some all more tell say said me mm hmm okay right well um
yeah like really you'd you've you're i'd i've i'm that's it's there's
""".split())


def _stem(word: str) -> str:
    for suffix in ("ing", "ed", "s"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 4:
            return word[: -len(suffix)]
    return word


def fake_encode(texts: list[str], dim: int = 512) -> np.ndarray:
    out = np.zeros((len(texts), dim), dtype=np.float32)
    for i, text in enumerate(texts):
        for w in re.findall(r"[a-z]+(?:'[a-z]+)?", text.lower()):
            w = w.removesuffix("'s")
            if w in _FAKE_STOP:
                continue
            h = int(hashlib.sha1(_stem(w).encode()).hexdigest(), 16)
            out[i, h % dim] += 1.0
        n = np.linalg.norm(out[i])
        if n:
            out[i] /= n
    return out


def test_fake_encoder_sees_paraphrases_as_alike():
    v = fake_encode(["Can you describe a time you gave a supervisee difficult feedback?",
                     "Tell me about an occasion when you gave difficult feedback to a supervisee.",
                     "Did your training prepare you for this?"])
    assert v[0] @ v[1] > 0.6 and v[0] @ v[2] < 0.2


# --- building small studies ------------------------------------------------------

_I, _P, _T = "Interviewer", "Participant", "Task"
_ROLE = {_I: "interviewer", _P: "participant", _T: "other"}


def build(cases: dict[str, list[tuple[str, str]]]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Turns and one segment per participant turn; a segment's question is the last
    interviewer turn before it that is not a backchannel (as segmentation does)."""
    turns, segs = [], []
    for case, lines in cases.items():
        pos, q_text, q_idx = 0, "", -1
        for ti, (speaker, text) in enumerate(lines):
            role = _ROLE.get(speaker, "other")
            turns.append({"case_id": case, "turn_index": ti, "speaker": speaker, "role": role,
                          "text": text, "start_char": pos, "end_char": pos + len(text),
                          "start_time": float("nan"), "end_time": float("nan"),
                          "source_file": f"{case}.txt"})
            if role == "participant":
                segs.append({"segment_id": f"{case}:{ti}:0", "case_id": case, "turn_index": ti,
                             "speaker": speaker, "role": role, "text": text, "start_char": pos,
                             "end_char": pos + len(text), "start_time": float("nan"),
                             "end_time": float("nan"), "source_file": f"{case}.txt",
                             "question": q_text, "question_turn_index": q_idx,
                             "n_words": len(text.split())})
            elif role == "interviewer" and (len(text.split()) >= 4 or "?" in text):
                q_text, q_idx = text, ti
            pos += len(text) + 1
    return (pd.DataFrame(turns, columns=list(TURN_COLUMNS)),
            pd.DataFrame(segs, columns=list(SEGMENT_COLUMNS)))


# Five interviews with clinical supervisors about giving difficult feedback. The same
# four main questions recur, worded differently; probes and reflections follow what
# each participant said; each interview opens and closes with the frame.
OPENINGS = ["Hi, thanks for joining. Is the recording working on your side?",
            "Hello and welcome. We're recording now, thank you for taking part.",
            "Thanks for making the time. I've started the recording.",
            "Hi there, thank you for agreeing to do this. Can you hear me okay?",
            "Good morning, thanks for coming in. The recorder is running."]
BACKGROUND = ["Could you start with your background? How many years have you been in practice?",
              "How long have you been practising, and what is your current role?",
              "To begin, can you tell me a bit about yourself and your training?",
              "First, how many years have you been supervising, and what is your current role?",
              "Could you say a little about your background and your current role?"]
BACKGROUND_ANSWERS = ["I've been practising for twelve years, mostly in a community clinic.",
                      "About twenty years now. I'm the clinical lead for our service.",
                      "I trained as a counselling psychologist and qualified in 2009.",
                      "Nine years supervising; my current role is head of training.",
                      "I have been qualified for fifteen years and work in private practice."]
Q_FEEDBACK = ["Can you describe a time you gave a supervisee difficult feedback?",
              "Tell me about an occasion when you gave difficult feedback to a supervisee.",
              "Could you describe a moment when you had to give a supervisee difficult feedback?",
              "I'd like to hear about a time you gave difficult feedback to a supervisee.",
              "Think of an occasion when you gave a supervisee difficult feedback. What happened?"]
Q_REACTION = ["How did the supervisee react to the feedback afterwards?",
              "What was the supervisee's reaction afterwards, after the feedback?",
              "And afterwards, how did your supervisee react to hearing that feedback?",
              "How did the supervisee react, in the weeks afterwards?",
              "What was the reaction from the supervisee afterwards?"]
Q_TRAINING = ["Did your own supervision training prepare you for conversations like this?",
              "How well did your supervision training prepare you for this kind of conversation?",
              "Did any supervision training prepare you for such conversations?",
              "Looking back, did supervision training prepare you for this conversation?",
              "Was there supervision training that prepared you for conversations like this?"]
Q_ADVICE = ["What advice would you give to new supervisors about difficult feedback?",
            "What advice would you give a new supervisor who dreads giving feedback?",
            "If a new supervisor asked for your advice about feedback, what would you say?",
            "What advice do you have for new supervisors?",
            "Any advice for new supervisors facing this?"]
CLOSING_Q = ["Is there anything else you'd like to add?",
             "Anything I haven't asked about that you want to mention?",
             "Is there anything else you want to add before we stop?",
             "Is there anything we haven't covered that you'd like to add?",
             "Anything else you would like to add?"]
CLOSING_THANKS = ["Thank you so much, that's all my questions.",
                  "Thanks again, I'll stop the recording now.",
                  "Thank you, this was really helpful.",
                  "Great, thank you for your time today.",
                  "Thank you, that's a lovely place to end."]
PROBES = ["Can you say more about that?", "How did that feel?", "What do you mean?",
          "Could you tell me more?", "Why?"]
STORIES = ["She kept missing sessions with her clients and I told her plainly that it had to stop.",
           "He was dismissive with a client and I named it directly in our supervision meeting.",
           "I had to tell a supervisee that her notes were not safe enough for the service.",
           "A supervisee took on too many clients and I said the caseload was harming the work.",
           "I told him his boundaries with one client had slipped and we needed a plan."]


def supervision_study() -> dict[str, list[tuple[str, str]]]:
    cases = {}
    for k in range(5):
        lines = [(_I, OPENINGS[k]), (_P, "Yes, all fine, go ahead."),
                 (_I, BACKGROUND[k]), (_P, BACKGROUND_ANSWERS[k]),
                 (_I, "Mm-hmm."), (_P, "And I still see a few clients myself each week."),
                 (_I, Q_FEEDBACK[k]), (_P, STORIES[k]),
                 (_I, PROBES[k]), (_P, "I felt anxious before the meeting, my stomach was in knots."),
                 (_I, "So you were dreading it."), (_P, "Dreading it, yes, for days beforehand."),
                 (_I, Q_REACTION[k]),
                 (_P, "At first there was hurt and some defensiveness, then over weeks it settled."),
                 (_I, PROBES[(k + 1) % 5]),
                 (_P, "The relationship recovered, we talk more honestly now than before."),
                 (_I, Q_TRAINING[k]),
                 (_P, "Not really, the course covered models of supervision but never conflict."),
                 (_I, Q_ADVICE[k]), (_P, "Say the hard thing early and kindly, and write it down."),
                 (_I, "Right."), (_P, "Thanks, good luck with the study."),
                 (_I, CLOSING_Q[k]),
                 (_P, "Only that supervisors need their own supervision for these moments."),
                 (_I, CLOSING_THANKS[k]), (_P, "You're welcome, happy to help.")]
        if k == 2:      # a case-specific follow-up question after the story
            lines[10:10] = [(_I, "Was that the same supervisee whose client complained last year?"),
                            (_P, "Yes, the same one, which made it more delicate.")]
        cases[f"S{k + 1}"] = lines
    return cases


@pytest.fixture(scope="module")
def inferred():
    turns, segs = build(supervision_study())
    result = infer_protocol(turns, segs, fake_encode, ProtocolConfig())
    return turns, segs, result


def _area_of(result, case: str, turn: int) -> int:
    t = result.turns
    return int(t.loc[(t["case_id"] == case) & (t["turn_index"] == turn), "area_id"].iloc[0])


def _second_prompt_in_frame(result) -> set[bool]:
    """Whether each case's second interviewer turn (turn 2) is in a frame area."""
    frame = {a.area_id for a in result.protocol.areas if a.frame}
    return {_area_of(result, c, 2) in frame for c in ("S1", "S2", "S3", "S4", "S5")}


def _kind_of(result, case: str, turn: int) -> str:
    t = result.turns
    return str(t.loc[(t["case_id"] == case) & (t["turn_index"] == turn), "kind"].iloc[0])


# --- inference --------------------------------------------------------------------

def test_recurring_questions_are_grouped_across_cases(inferred):
    turns, segs, result = inferred
    assert list(result.turns.columns) == list(PROMPT_COLUMNS)
    content = [a for a in result.protocol.areas if not a.frame]
    assert len(content) == 4, [a.name for a in content]
    for offset in (6, 12, 16, 18):          # the four main questions
        areas = {_area_of(result, c, offset + (2 if c == "S3" and offset > 6 else 0))
                 for c in ("S1", "S2", "S3", "S4", "S5")}
        assert len(areas) == 1 and areas != {-1}, (offset, areas)
    # in interview order, named after their own words
    names = [a.name for a in content]
    assert "difficult feedback" in names[0].lower() and "react" in names[1].lower()
    assert "training" in names[2].lower() and "advice" in names[3].lower() or \
        "advise" in names[3].lower()
    assert all(a.source == "inferred" for a in result.protocol.areas)
    assert [a.area_id for a in result.protocol.areas] == list(range(len(result.protocol.areas)))


def test_probes_and_follow_ups_join_the_main_question_they_follow(inferred):
    _, segs, result = inferred
    for case in ("S1", "S2", "S4", "S5"):
        main = _area_of(result, case, 6)
        assert _kind_of(result, case, 8) == "probe" and _area_of(result, case, 8) == main
        assert _kind_of(result, case, 10) == "follow_up" and _area_of(result, case, 10) == main
        reaction = _area_of(result, case, 12)
        assert _kind_of(result, case, 14) == "probe" and _area_of(result, case, 14) == reaction
    # a question asked in one case only follows the area in progress
    assert _kind_of(result, "S3", 10) == "follow_up"
    assert _area_of(result, "S3", 10) == _area_of(result, "S3", 6)
    # segments answering a probe get the area of its main question
    probe_answer = segs.index[(segs["case_id"] == "S1") & (segs["turn_index"] == 9)][0]
    assert result.segment_area[probe_answer] == _area_of(result, "S1", 6)


def test_frame_areas_are_detected(inferred):
    _, segs, result = inferred
    frame = {a.name: a for a in result.protocol.areas if a.frame}
    assert set(frame) == {"Interview frame: opening", "Interview frame: background",
                          "Interview frame: closing"}
    by_name = {a.name: a.area_id for a in result.protocol.areas}
    for case in ("S1", "S2", "S3", "S4", "S5"):
        assert _area_of(result, case, 0) == by_name["Interview frame: opening"]
        assert _area_of(result, case, 2) == by_name["Interview frame: background"]
        last = len([t for t in supervision_study()[case]])
        assert _area_of(result, case, last - 4) == by_name["Interview frame: closing"]
        assert _area_of(result, case, last - 2) == by_name["Interview frame: closing"]
    # the background answers and the backchannel follow-up stay in the background
    bg = segs.index[(segs["case_id"] == "S2") & segs["turn_index"].isin([3, 5])]
    assert set(result.segment_area[bg]) == {by_name["Interview frame: background"]}
    assert result.segment_frame[bg].all()
    # frame areas open and close the protocol
    assert result.protocol.areas[0].frame and result.protocol.areas[-1].frame
    assert result.counts["frame_areas"] == 3


def test_small_talk_is_flagged_even_when_its_question_is_not_frame(inferred):
    _, segs, result = inferred
    talk = segs["text"] == "Thanks, good luck with the study."
    assert talk.sum() == 5
    assert result.segment_small_talk[talk.to_numpy()].all()
    # its question is the advice question, a content area
    advice = result.segment_area[talk.to_numpy()]
    assert not any(result.protocol.areas[a].frame for a in advice)
    assert result.segment_frame[talk.to_numpy()].all()
    story = (segs["text"] == STORIES[0]).to_numpy()
    assert not result.segment_small_talk[story].any() and not result.segment_frame[story].any()


def test_a_question_repeated_through_each_interview_is_a_probe_not_an_area():
    study = supervision_study()
    for case, lines in study.items():
        for at in (8, 14) if case != "S5" else (8,):     # twice in 4 of the 5 interviews
            lines[at] = (_I, "And what were you noticing in your body, right then?")
    turns, segs = build(study)
    result = infer_protocol(turns, segs, fake_encode, ProtocolConfig())
    assert not any("noticing" in a.name.lower() for a in result.protocol.areas)
    assert _kind_of(result, "S1", 8) == "probe"
    assert _area_of(result, "S1", 8) == _area_of(result, "S1", 6)
    # asked twice in fewer than probe_repeat_share of its cases, it would be an area
    lax = infer_protocol(turns, segs, fake_encode, ProtocolConfig(probe_repeat_share=0.9))
    assert any("noticing" in a.name.lower() for a in lax.protocol.areas)


def test_a_short_prompt_that_names_no_topic_word_does_not_make_an_area():
    """Two cases asking things the embedder finds alike ("And did you?" and "And what
    brought you to it?") are no protocol question when the short one names no topic
    word of the full one; "And supervision?" beside a full supervision question is."""
    study = supervision_study()
    study["S1"][10] = (_I, "And did you?")
    study["S2"][10] = (_I, "And what brought you to it?")
    alike = {"And did you?": "And what brought you to it?"}

    def encode(texts):
        return fake_encode([alike.get(t, t) for t in texts])

    turns, segs = build(study)
    result = infer_protocol(turns, segs, encode, ProtocolConfig())
    assert not any("brought" in a.name.lower() for a in result.protocol.areas)
    assert _kind_of(result, "S2", 10) == "follow_up"
    # a short prompt that names the topic counts for its case
    study["S1"][10] = (_I, "And the brother?")
    study["S2"][10] = (_I, "What did his brother make of the feedback then?")
    turns, segs = build(study)
    result = infer_protocol(turns, segs, fake_encode, ProtocolConfig())
    assert any("brother" in a.name.lower() for a in result.protocol.areas)


TRAINEES = "What would you tell trainees about tears in the room?"
CULTURE = "How does your culture shape tears in the room?"
ADVICE = ["Know your own grief, get good supervision, and let the tears be human.",
          "Let the tears be human, know your own grief, and take it to supervision.",
          "Get good supervision and know your own grief; the tears can be human.",
          "Tears can be human if you know your own grief and use supervision.",
          "Know your grief, trust supervision, and let tears be human."]
FAMILIES = ["In my family grief is loud and communal; wailing at funerals is respectful.",
            "At church and at funerals our families wail; loud communal grief is respect."]


def test_a_question_few_interviews_ask_beside_another_opens_its_own_area():
    """"How does your culture ... shape how you see tears in the room?", asked in two
    of fourteen interviews, each of which also asked "What would you tell trainees
    about tears in the room?", shares "tears in the room" with it and was grouped
    with it: what those two said about culture was counted as advice to trainees.
    A question a minority of a group's interviews ask beside its other question, with
    answers far from the others' answers, is an area of its own."""
    cases = {}
    for k in range(5):
        lines = [(_I, Q_TRAINING[k]), (_P, f"Not really, I learned it on the job {k}."),
                 (_I, TRAINEES), (_P, ADVICE[k])]
        if k < 2:
            lines[2:2] = [(_I, CULTURE), (_P, FAMILIES[k])]
        cases[f"c{k}"] = lines
    turns, segs = build(cases)
    result = infer_protocol(turns, segs, fake_encode, ProtocolConfig())
    trainees, culture = _area_of(result, "c0", 4), _area_of(result, "c0", 2)
    assert culture != trainees and culture == _area_of(result, "c1", 2)
    assert result.protocol.area(culture).questions == (CULTURE,)
    assert result.protocol.area(culture).name == area_name(CULTURE)
    assert CULTURE not in result.protocol.area(trainees).questions
    # its answers are not counted with the advice
    on_culture = segs["text"].isin(FAMILIES).to_numpy()
    assert (result.segment_area[on_culture] == culture).all()
    assert (result.segment_area[segs["text"].isin(ADVICE).to_numpy()] == trainees).all()
    # answered as the trainees question is, it is that question asked again, and stays
    for k in (0, 1):
        cases[f"c{k}"][3] = (_P, ADVICE[k + 2])
    turns, segs = build(cases)
    again = infer_protocol(turns, segs, fake_encode, ProtocolConfig())
    assert _area_of(again, "c0", 2) == _area_of(again, "c0", 4)


def test_follow_ups_of_several_interviews_about_a_topic_no_area_covers_open_an_area():
    """Two interviewers raised a new topic in their own words ("Has working by video
    changed any of this for you?", "And the online sessions, did that make a
    difference?"): the questions are too unlike to be grouped, and each was a
    follow-up of the area before it, its answers counted there. What the two said
    is nearer each other than anything the other interviews said: they open an area
    of their own."""
    video = "Has working by video changed any of this for you?"
    online = "And the online sessions, did that make a difference?"
    said = {video: ["On video the screen shows my face huge, the camera catches every tear.",
                    "I switched the camera self view off, watching my face on screen."],
            online: ["Online my face is huge on their screen, so a tear shows on camera.",
                     "The screen freezes and the camera lags when a tear comes online."]}
    study = supervision_study()
    for case, question in (("S1", video), ("S4", online)):
        lines = study[case]
        at = next(i for i, (_, t) in enumerate(lines) if t in Q_TRAINING) + 2
        lines[at:at] = [(_I, question)] + [(_P, t) for t in said[question]]
    turns, segs = build(study)
    result = infer_protocol(turns, segs, fake_encode, ProtocolConfig())
    s1 = _turn_of(study, "S1", video)
    area = _area_of(result, "S1", s1)
    assert area == _area_of(result, "S4", _turn_of(study, "S4", online))
    assert area != _area_of(result, "S1", s1 - 2)          # not the training area's
    assert set(result.protocol.area(area).questions) == {video, online}
    assert _kind_of(result, "S1", s1) == "main"
    on_topic = segs["text"].isin(said[video] + said[online]).to_numpy()
    assert (result.segment_area[on_topic] == area).all()
    assert result.counts["follow_ups_made_an_area"] == 2


def test_a_follow_up_whose_answer_belongs_to_a_later_area_opens_it():
    """An interviewer who asks a protocol question in words of their own, as a
    follow-up, opens that question's area when the answer says what the other
    participants said there; the probe after it goes with it. A case-specific
    follow-up whose answer fits its own area stays a follow-up."""
    study = supervision_study()
    answers = ["Not really, the course covered models of supervision but never conflict.",
               "The course covered supervision models, conflict never came up.",
               "No, supervision training covered models and never any conflict.",
               "Our course covered models of supervision; conflict was never covered.",
               "Not really, the course covered models of supervision but never conflict."]
    for k, case in enumerate(("S1", "S2", "S3", "S4", "S5")):
        study[case][17] = (_P, answers[k])
    # S5 asks the training question in words none of the others used, right after
    # the reaction question's probe, and skips the usual wording later
    study["S5"][16] = (_I, "And the course you did back then, what did it give you for that?")
    study["S5"][18:18] = [(_I, "Mm, go on?"),
                          (_P, "The course covered supervision models but never conflict.")]
    turns, segs = build(study)
    result = infer_protocol(turns, segs, fake_encode, ProtocolConfig())
    training = _area_of(result, "S1", 16)
    assert _area_of(result, "S5", 16) == training and _kind_of(result, "S5", 16) == "main"
    assert _area_of(result, "S5", 18) == training            # the probe goes with it
    assert result.counts["follow_ups_rehomed_by_content"] == 1
    assert _kind_of(result, "S3", 10) == "follow_up"
    assert _area_of(result, "S3", 10) == _area_of(result, "S3", 6)
    never = infer_protocol(turns, segs, fake_encode, ProtocolConfig(rehome_margin=2))
    assert _area_of(never, "S5", 16) == _area_of(never, "S5", 12)


def test_one_question_is_background_in_every_interview_or_in_none():
    """A question that the background patterns catch in some wordings and miss in
    others is decided once: content in every case when most cases' wordings were
    missed (they join the content area), frame in every case when most were caught."""
    def study_with(caught: tuple[str, ...]):
        study = supervision_study()
        for case in ("S1", "S2", "S3", "S4", "S5"):
            study[case][2] = (_I, "To begin, can you say a bit about the service you run and the "
                                  "supervising you do there?")
            study[case][3] = (_P, "It is a small team in a busy clinic, four supervisees.")
        for case in caught:             # these wordings name the background outright
            study[case][2] = (_I, "To begin, can you say a bit about your background, the "
                                  "service you run and the supervising you do there?")
        return build(study)

    result = infer_protocol(*study_with(("S4", "S5")), fake_encode, ProtocolConfig())
    assert _second_prompt_in_frame(result) == {False}
    assert result.counts["background_prompts_made_content"] == 2
    result = infer_protocol(*study_with(("S2", "S3", "S4", "S5")), fake_encode, ProtocolConfig())
    assert _second_prompt_in_frame(result) == {True}


def test_a_greeting_before_the_first_question_does_not_make_it_frame():
    """"Thanks for joining. Could you tell me how you came to supervise?" opens every
    interview with a greeting, but its question is the protocol's first: an area in
    the cross-analysis, not the interview frame (all its answers were set apart)."""
    first = "Thanks for joining. Could you tell me how you first came to supervise others?"
    cases = {}
    for k in range(4):
        cases[f"c{k}"] = [(_I, first), (_P, STORIES[k]),
                          (_I, Q_FEEDBACK[k]), (_P, STORIES[k + 1]),
                          (_I, Q_TRAINING[k]), (_P, f"Not really, I learned it on the job {k}."),
                          (_I, CLOSING_THANKS[k]), (_P, "Thank you.")]
    turns, segs = build(cases)
    result = infer_protocol(turns, segs, fake_encode, ProtocolConfig())
    areas = {a.name: a for a in result.protocol.areas}
    assert "How you first came to supervise others" in areas, list(areas)
    assert not areas["How you first came to supervise others"].frame
    # a thank-you with a recording check is still the frame
    checks = {f"c{k}": [(_I, OPENINGS[0]), (_P, "Yes, all fine."), (_I, Q_FEEDBACK[k]),
                        (_P, STORIES[k]), (_I, Q_TRAINING[k]), (_P, "Not really.")]
              for k in range(4)}
    turns, segs = build(checks)
    result = infer_protocol(turns, segs, fake_encode, ProtocolConfig())
    opening = [a for a in result.protocol.areas
               if any("recording" in q.lower() for q in a.questions)]
    assert len(opening) == 1 and opening[0].frame


def test_an_informal_greeting_opens_the_frame():
    """"Hey, can I help you?" and "Hiya, come on in" open counselling sessions as
    "Hello" does; they were read as questions of the protocol, and their cases' first
    answers went to an area of small talk."""
    _assert_opens_the_frame(["Hey, can I help you?", "Hiya, come on in, how are you doing?",
                             "Hey there, how have you been?",
                             "Hey, good to see you again, how are things?"],
                            "Yes, fine thanks.")


def _assert_opens_the_frame(openers: list[str], reply: str) -> None:
    """Four interviews, each opened by one of ``openers`` and answered ``reply``, then two
    protocol questions: the opener is in the frame, the first question is not."""
    cases = {f"c{k}": [(_I, openers[k]), (_P, reply),
                       (_I, Q_FEEDBACK[k]), (_P, STORIES[k]),
                       (_I, Q_TRAINING[k]), (_P, f"Not really, I learned it on the job {k}.")]
             for k in range(4)}
    turns, segs = build(cases)
    result = infer_protocol(turns, segs, fake_encode, ProtocolConfig())
    frame = {a.area_id for a in result.protocol.areas if a.frame}
    for case in cases:
        assert _area_of(result, case, 0) in frame, [a.name for a in result.protocol.areas]
        assert _area_of(result, case, 2) not in frame


def test_asking_leave_to_record_opens_the_frame_however_often_it_is_asked():
    """"We're recording now, is that okay?", asked in most interviews, was a courtesy
    turn frame only tentatively, and as a question many cases share it became a content
    area, its "Yes, that's okay" a category at the top of the CQR table. A question
    that asks leave to record, or about the consent form, opens the frame."""
    _assert_opens_the_frame(["We're recording now, is that okay?", "Is it okay if I record?",
                             "Are you okay with me recording the interview?",
                             "You've had the consent form, any questions about it?"],
                            "Yes, that's fine.")


def test_what_follows_a_greeting_and_is_none_is_not_set_apart_with_it():
    """A counselling session opens "Hi, thanks for coming in" and goes on "Can you tell
    me more about your concerns about vaccines?": a probe, asked in that session only.
    It and the reflections after it followed the greeting into the interview frame, and
    most of what the client said was left out of the cross-analysis. What follows a
    greeting and is no greeting is content: no area of the frame."""
    own = ["Can you tell me more about your worries about the vaccines?",
           "Tell me more about the drinking at the weekends.",
           "So what made you decide to come and see me about your sleep?",
           "Can you say more about the arguments at home?"]
    cases = {}
    for k in range(4):
        cases[f"c{k}"] = [(_I, OPENINGS[k]), (_P, "Yes, all fine."),
                          (_I, own[k]), (_P, STORIES[k]),
                          (_I, "So it has been weighing on you for a while."),
                          (_P, STORIES[k + 1]),
                          (_I, Q_TRAINING[k]), (_P, f"Not really, I learned it on the job {k}.")]
    turns, segs = build(cases)
    result = infer_protocol(turns, segs, fake_encode, ProtocolConfig())
    frame = {a.area_id for a in result.protocol.areas if a.frame}
    assert frame, [a.name for a in result.protocol.areas]
    for case in cases:
        assert _area_of(result, case, 0) in frame           # the greeting is the frame
        for turn in (2, 4):                                  # what follows it is not
            assert _area_of(result, case, turn) not in frame, (case, turn)


def test_task_lines_become_areas_in_a_think_aloud_study():
    tasks = ["Find the cheapest train from York to Leeds on Friday morning.",
             "Change the booking so that the return journey is on Sunday."]
    cases = {}
    for k in range(4):
        cases[f"U{k + 1}"] = [
            (_I, "Thanks for coming in. Please think aloud as you work through the tasks."),
            (_P, "Okay, sure, I'll try."),
            (_T, tasks[0]),
            (_P, "So I'm looking for the search box, there it is, typing York."),
            (_I, "What are you thinking now?"),
            (_P, "The date picker is confusing, it starts on Sunday."),
            (_I, "Keep talking."),
            (_P, "Found a fare list, sorting by price now."),
            (_T, tasks[1]),
            (_P, "I need my bookings page, maybe under the account menu."),
            (_I, "What are you thinking now?"),
            (_P, "It does not say whether changing costs extra."),
        ]
    turns, segs = build(cases)
    result = infer_protocol(turns, segs, fake_encode, ProtocolConfig())
    task_areas = [a for a in result.protocol.areas if not a.frame]
    assert len(task_areas) == 2
    assert "cheapest train" in task_areas[0].name.lower()
    assert "booking" in task_areas[1].name.lower()
    for case in cases:
        assert _kind_of(result, case, 2) == "task"
        first, second = _area_of(result, case, 2), _area_of(result, case, 8)
        assert first != second and _area_of(result, case, 4) == first
        assert _area_of(result, case, 10) == second
        # segments after a task line answer the task, not the interviewer's earlier turn
        after = segs.index[(segs["case_id"] == case) & (segs["turn_index"] == 9)][0]
        assert segs.loc[after, "question_turn_index"] == 4
        assert result.segment_area[after] == second
        assert result.segment_prompt_turn[after] == 8


SILENCE_QUESTIONS = [
    ["Can you tell me about a time when a client's silence in session felt meaningful?",
     "Could you describe a time a client's silence in a session felt really meaningful?",
     "Tell me about a client's silence in session that felt meaningful to you.",
     "I'd like to hear about a time a client's silence felt meaningful in session.",
     "Can you think of a session where a client's silence felt meaningful?"],
    ["What was going on inside you while the silence went on?",
     "What was going on inside you during that silence?",
     "While the silence went on, what was going on inside you?",
     "What was happening inside you as the silence went on?",
     "What went on inside you during the silence?"],
    ["How did you respond to the silence in the end?",
     "In the end, how did you respond to the silence?",
     "How did you eventually respond to that silence?",
     "How did you respond to the client's silence in the end?",
     "What did you do in response to the silence in the end?"],
    ["How did your training prepare you for long silences with clients?",
     "Did your training prepare you for long silences?",
     "How well did training prepare you for long silences with clients?",
     "Looking back, did your training prepare you for silences like that?",
     "Was there training that prepared you for long silences with clients?"]]


def test_headings_in_one_case_do_not_join_questions_every_case_asks():
    """One Word transcript with a heading per section among plain ones: a linkage group
    holding a heading was kept whole, so the questions about silence, asked in every
    case, became one area. (The fake encoder is sparser than the model: a lower
    area_similarity lets the linkage group those questions together, as the model did.)"""
    answers = ["He had lost his father and stopped talking for ten minutes.",
               "I felt a strong urge to fill it and rescue him.",
               "I stayed with it and kept my posture open until he spoke.",
               "Training barely mentioned it, I learned it from my own therapist."]
    headings = ["A meaningful silence", "Inner experience", "Responding", "Training"]
    cases = {}
    for k in range(5):
        lines = []
        for questions, answer, heading in zip(SILENCE_QUESTIONS, answers, headings,
                                              strict=True):
            lines += [("Heading", heading)] * (k == 2) + [(_I, questions[k]), (_P, answer)]
        cases[f"S{k + 1}"] = lines
    turns, segs = build(cases)
    result = infer_protocol(turns, segs, fake_encode, ProtocolConfig(area_similarity=0.2))
    asked = {}                               # each question's area, in every case
    for case, lines in cases.items():
        spoken = [i for i, (who, _) in enumerate(lines) if who == _I]
        for n, turn in enumerate(spoken):
            asked.setdefault(n, set()).add(_area_of(result, case, turn))
    assert all(len(areas) == 1 for areas in asked.values())
    assert len(set.union(*asked.values())) == 4          # four questions, four areas
    # a heading goes with the question it names; "Inner experience" names none here
    assert _area_of(result, "S3", 0) == next(iter(asked[0]))
    assert _area_of(result, "S3", 9) == next(iter(asked[3]))


def test_a_labelled_section_heading_opens_an_area_and_other_speakers_do_not():
    cases = {}
    for k in range(3):
        cases[f"H{k + 1}"] = [
            (_I, BACKGROUND[k]), (_P, BACKGROUND_ANSWERS[k]),
            ("Section B", "Training and preparation for supervision work"),
            (_P, "My course had one lecture on supervision and nothing on conflict."),
            ("Note", "The participant pauses to take a phone call here."),
            (_P, "Sorry about that. The rest I learned from my own supervisor."),
        ]
    turns, segs = build(cases)
    result = infer_protocol(turns, segs, fake_encode, ProtocolConfig())
    content = [a for a in result.protocol.areas if not a.frame]
    assert [a.name for a in content] == ["Training and preparation for supervision work"]
    for case in cases:
        assert _kind_of(result, case, 2) == "task" and _kind_of(result, case, 4) == "other"
        assert _area_of(result, case, 4) == _area_of(result, case, 2) == content[0].area_id
        after = segs.index[(segs["case_id"] == case) & (segs["turn_index"] == 5)][0]
        assert result.segment_area[after] == content[0].area_id


def test_a_study_without_prompts_and_misaligned_vectors():
    turns, segs = build({"X1": [(_P, "I just talked, nobody asked anything at all."),
                                (_P, "And then I talked some more about my week.")]})
    result = infer_protocol(turns, segs, fake_encode, ProtocolConfig())
    assert result.protocol.areas == () and (result.segment_area == -1).all()
    assert result.counts["segments_without_question"] == 2
    with pytest.raises(ConsensaError, match="one row per segment"):
        infer_protocol(turns, segs, fake_encode, ProtocolConfig(),
                       segment_vectors=np.zeros((1, 512), np.float32))
    with pytest.raises(ConsensaError, match="one row per segment"):
        propose_domains_from_protocol(np.zeros((2, 4)), np.array([-1]), Protocol(),
                                      ProtocolConfig(), ["X1", "X1"])


def test_a_given_protocol_is_used_and_the_frame_added():
    turns, segs = build(supervision_study())
    config = ProtocolConfig(areas=[
        {"name": "Giving difficult feedback", "questions": [Q_FEEDBACK[0]]},
        {"name": "Reactions", "questions": [Q_REACTION[0], "What was the supervisee's reaction?"]},
        {"name": "Training", "questions": [Q_TRAINING[0]]},
        {"name": "Advice", "questions": [Q_ADVICE[0]]}])
    result = infer_protocol(turns, segs, fake_encode, config)
    names = [a.name for a in result.protocol.areas]
    assert names[:4] == ["Giving difficult feedback", "Reactions", "Training", "Advice"]
    assert [a.source for a in result.protocol.areas[:4]] == ["given"] * 4
    assert set(names[4:]) == {"Interview frame: opening", "Interview frame: background",
                              "Interview frame: closing"}
    for case in ("S1", "S2", "S4", "S5"):
        assert _area_of(result, case, 6) == 0 and _area_of(result, case, 8) == 0
        assert _area_of(result, case, 12) == 1 and _area_of(result, case, 16) == 2
        assert _area_of(result, case, 18) == 3


def test_a_question_asked_as_the_file_words_it_opens_the_area_that_lists_it():
    """A closing question that names the study's topic ("Is there anything else about
    difficult feedback you'd like to add?") is not known as frame by its words, and a
    question past the opening was kept from frame areas: the team's file listed it
    under its closing area, yet it opened a content area, and the closing remarks of
    every case were cross-analysed there. Asked word for word, it opens its area."""
    closing = ("Is there anything else about giving supervisees difficult feedback, or your "
               "supervision training, that you'd like to add?")
    study = {case: [(who, closing if text in CLOSING_Q else text) for who, text in lines]
             for case, lines in supervision_study().items()}
    turns, segs = build(study)
    config = ProtocolConfig(areas=[
        {"name": "Giving difficult feedback", "questions": [Q_FEEDBACK[0]]},
        {"name": "Reactions", "questions": [Q_REACTION[0]]},
        {"name": "Training", "questions": [Q_TRAINING[0]]},
        {"name": "Advice", "questions": [Q_ADVICE[0]]},
        {"name": "Closing", "frame": True, "questions": [closing.upper().rstrip("?")]}])
    result = infer_protocol(turns, segs, fake_encode, config)
    for case in ("S1", "S2", "S4", "S5"):
        assert _area_of(result, case, 22) == 4, case
        assert _area_of(result, case, 18) == 3, case
    assert result.counts["prompts_matched_word_for_word"] >= 5


def test_a_team_question_asked_in_the_interviewers_own_words_opens_its_area():
    """A team writes each question once; the interviewers word it their own way. Here
    only S5's wording is near the file's; the others' stay below ``join_similarity``
    and used to be follow-ups of the feedback area. The wording matched in S5, and
    the question the other four interviews share, open the reactions area."""
    turns, segs = build(supervision_study())
    team = "What was the reaction of the supervisee, in the end?"
    cores = fake_encode([question_core(q) for q in Q_REACTION])
    assert (cores[:4] @ fake_encode([team])[0] < 0.6).all()   # the file's words reach S5 only
    config = ProtocolConfig(areas=[
        {"name": "Giving difficult feedback", "questions": [Q_FEEDBACK[0]]},
        {"name": "Reactions", "questions": [team]},
        {"name": "Training", "questions": [Q_TRAINING[0]]},
        {"name": "Advice", "questions": [Q_ADVICE[0]]}])
    result = infer_protocol(turns, segs, fake_encode, config)
    asked = {"S1": 12, "S2": 12, "S3": 14, "S4": 12, "S5": 12}   # S3 reflects first
    for case, turn in asked.items():
        assert _area_of(result, case, turn) == 1, case
    for case in ("S1", "S2", "S4", "S5"):
        assert _area_of(result, case, 16) == 2 and _area_of(result, case, 18) == 3
    assert result.counts["prompts_matched_by_interviewer_wording"] == 4
    # reached by no wording of the file, the question the five interviews share opens
    # the area nearest to the centre of their wordings, when it is near enough
    loose = [{**a.model_dump(), "questions": ["Tell me about the supervisee's response."]}
             if a.name == "Reactions" else a.model_dump() for a in config.areas]
    for floor, area in ((0.4, 1), (0.6, 0)):
        held = infer_protocol(turns, segs, fake_encode,
                              ProtocolConfig(areas=loose, wording_similarity=floor))
        assert [_area_of(held, c, t) for c, t in asked.items()] == [area] * 5, floor


def test_a_short_question_naming_another_areas_word_opens_that_area():
    """With the team's protocol given, "And contacting her parents?" (four words, so a
    probe by length, and at a cosine of 0.37 to the file's "How did you involve the
    student's parents or carers?") was a probe of the area asked before it, and its
    answer about the parents stayed there. A short question that names a word only
    one area's questions use opens that area; one naming the area in progress, or a
    word two areas share, stays a probe."""
    cases = {}
    for k in range(3):
        cases[f"C{k + 1}"] = [
            (_I, "Could you tell me about a time a student disclosed self-harm to you?"),
            (_P, "A girl in year nine showed me her arm after a lesson, quite calmly."),
            (_I, "How did you respond in that moment?"),
            (_P, "I stayed calm and followed the risk steps we have at the school."),
            (_I, ["And contacting her parents?", "And the risk steps?",
                  "Anything more, later?"][k]),
            (_P, "Her father was angry at first and then very quiet on the phone."),
        ]
    turns, segs = build(cases)
    config = ProtocolConfig(areas=[
        {"name": "A student's disclosure", "questions": [
            "Could you tell me about a time a student disclosed self-harm to you?"]},
        {"name": "Responding in the moment", "questions": [
            "How did you respond in that moment?", "Which risk steps did you follow?"]},
        {"name": "Involving parents and carers", "questions": [
            "How did you involve the student's parents or carers?"]}])
    result = infer_protocol(turns, segs, fake_encode, config)
    assert _area_of(result, "C1", 4) == 2 and _kind_of(result, "C1", 4) == "main"
    assert _area_of(result, "C2", 4) == 1          # the area in progress: it stays
    assert result.counts["prompts_matched_by_area_word"] == 1
    # "student" is in the disclosure area's and the parents area's questions alike
    from pipeline.stages.protocol import _area_words, _named_area, protocol_from_specs

    words = _area_words(protocol_from_specs(config.areas))
    assert _named_area("And the student, later?", words, current=1) is None
    assert _named_area("And her carers?", words, current=1) == 2
    assert _named_area("And her carers?", words, current=2) is None


def test_a_question_the_file_omits_after_the_frame_is_not_sent_to_the_frame():
    # the feedback question is not in the file: it comes right after the background
    # question (the frame), and its answers are substance, not small talk
    turns, segs = build(supervision_study())
    config = ProtocolConfig(areas=[
        {"name": "Reactions", "questions": [Q_REACTION[0], "What was the supervisee's reaction?"]},
        {"name": "Training", "questions": [Q_TRAINING[0]]},
        {"name": "Advice", "questions": [Q_ADVICE[0]]}])
    result = infer_protocol(turns, segs, fake_encode, config)
    for case in ("S1", "S2", "S4", "S5"):
        assert _area_of(result, case, 6) == -1 and _area_of(result, case, 8) == -1
        assert _area_of(result, case, 12) == 0 and _area_of(result, case, 16) == 1
    assert result.counts["prompts_not_in_protocol_after_frame"] >= 4


def test_a_late_question_is_not_matched_to_a_frame_area_by_its_words_alone():
    """"Looking back, has it changed how you practise?", asked late, was nearer in words
    to the file's "How long have you been practising?" (the background, in the frame)
    than to "How has it changed the way you work?", and its answer was set apart with
    the frame. Past the opening, a question nothing marks as frame is matched to the
    content areas only; the background question asked first still opens the frame."""
    late = ["Has practising for so long changed you?",
            "Has practising for so long changed you, do you think?",
            "And has practising for so long changed you?"]
    cases = {f"L{k}": [(_I, "How long have you been practising?"),
                       (_P, f"About {k + 8} years, in a clinic."),
                       (_I, Q_FEEDBACK[k]), (_P, STORIES[k]),
                       (_I, Q_TRAINING[k]), (_P, f"Not really, I learned it on the job {k}."),
                       (_I, late[k]), (_P, "I check the admin notes now and get curious.")]
             for k in range(3)}
    turns, segs = build(cases)
    config = ProtocolConfig(areas=[
        {"name": "Background", "frame": True,
         "questions": ["How long have you been practising in this field?"]},
        {"name": "Feedback", "questions": [Q_FEEDBACK[0]]},
        {"name": "Training", "questions": [Q_TRAINING[0]]},
        {"name": "Change", "questions": ["Has it changed you, over the years?"]}])
    result = infer_protocol(turns, segs, fake_encode, config)
    for case in cases:
        assert _area_of(result, case, 0) == 0
        assert _area_of(result, case, 6) not in (0, -1), [a.name for a in result.protocol.areas]


def test_no_protocol_without_inference():
    turns, segs = build(supervision_study())
    result = infer_protocol(turns, segs, fake_encode, ProtocolConfig(infer=False))
    assert result.protocol.areas == ()
    assert (result.segment_area == -1).all() and (result.turns["area_id"] == -1).all()


def test_question_core_and_area_names():
    assert question_core("Mm-hmm. That's really helpful. Is there anything else?") == \
        "Is there anything else?"
    assert question_core("Right. So that brings me to the next part. You said a lot.") == \
        "So that brings me to the next part. You said a lot."
    assert question_core("Did you bring the session with Mr. A. to supervision?") == \
        "Did you bring the session with Mr. A. to supervision?"
    assert area_name("So, um, could you tell me about a time you felt stuck with a client?") == \
        "A time you felt stuck with a client"
    assert area_name("Right. Can you tell me about your first year?") == "Your first year"
    long = ("What would you say to a colleague who is about to start supervising, and who "
            "worries about the first difficult conversation?")
    assert area_name(long, 12) == "What would you say to a colleague who is about to start supervising"


def test_a_long_prompt_of_many_initials_is_read_in_linear_time():
    """Each "Mr. A." that does not end the sentence checked and grew the whole sentence
    so far: this prompt took 11 s, now a few hundredths."""
    import time

    prompt = "So Mr. A. Then " * 2000 + "what happened?"
    started = time.perf_counter()
    assert question_core(prompt) == prompt
    assert area_name(prompt) == "Mr. A. Then So Mr. A. Then So Mr. A. Then…"
    took = time.perf_counter() - started
    assert took < 3, f"{took:.1f} s"


def test_area_names_leave_out_the_speech_around_the_question():
    """Spoken questions restart, repeat words, open with a lead-in or the
    participant's name and break off; the domain name is the question without
    them."""
    cases = {
        "Which, which moments in the session stayed with you?":
            "Which moments in the session stayed with you",
        "Um, so I guess the first question would be, like, how long have you been seeing "
        "clients?": "How long have you been seeing clients",
        "So before we move on, any other things to add about, like, how your training "
        "prepared you?": "Any other things to add about how your training prepared you",
        "Did you, were you able to take it to supervision?":
            "Were you able to take it to supervision",
        "So do you think that it, would you want a written plan from your supervisor before "
        "every session with a new client?":
            "Would you want a written plan from your supervisor before every session…",
        "And-and your-- So, um, you said the rupture came later?": "You said the rupture came later",
        "Jordan, what did your supervisor say?": "What did your supervisor say",
        "XXX, how was that for you?": "How was that for you",
        # the name can close the question or sit between commas
        "So, what brings you here, Bob? What can I do to help?": "What brings you here",
        "And how did that feel, Mrs. Okafor?": "How did that feel",
        "So tell me, Jordan, what made you stay?": "Tell me, what made you stay",
        # a check said as a question is not the question; words joined by a hyphen
        # said twice, and "you know" between commas, are speech, not the name
        "Yeah, that makes sense? Yeah? So how confident are you that-that, you know, you "
        "can do it?": "How confident are you that you can do it",
        "Would-would this feel like a natural time to-to stop?":
            "Would this feel like a natural time to stop",
        # a question that ends on its verb and object is whole, not broken off
        "How often do you do it?": "How often do you do it",
        "(laughs) And when he stopped answering, what went through your mind?":
            "When he stopped answering, what went through your mind",
        "So what would you say are the biggest gaps in your training and are there any changes "
        "that you would want the courses to make?": "What would you say are the biggest gaps in your training",
        # whom the request is made to goes with the request
        "Can you describe that first session for me?": "That first session",
        "Could you describe for me how the first session went?": "How the first session went",
    }
    for question, name in cases.items():
        assert area_name(question) == name, question
    # what only looks like such speech stays: a topic before the comma, "like" as the
    # verb, a preposition a question ends on, a comma inside the question
    assert area_name("Supervision, was it any help?") == "Supervision, was it any help"
    assert area_name("What did you like, and what did you not like about it?") == \
        "What did you like, and what did you not like about it"
    assert area_name("What did you do, then?") == "What did you do, then"
    assert area_name("So which notes do you look at?") == "Which notes do you look at"
    assert area_name("What, for you, was the hardest part?") == "What, for you, was the hardest part"
    assert area_name("A time you cried, or came close to crying, in session?") == \
        "A time you cried, or came close to crying, in session"


def test_an_area_is_named_after_its_most_readable_wording():
    """The wordings of one question are equally representative; the name comes from
    one that reads whole, not from the shortest when that one must be cut short."""
    cut_short = ("How did the supervisee react to the feedback in the weeks that came after "
                 "that difficult supervision meeting?")
    whole = ("And how did the supervisee react to the feedback, in the weeks that came after "
             "that difficult supervision meeting?")
    cases = {}
    for k in range(4):
        cases[f"c{k}"] = [(_I, cut_short if k < 2 else whole), (_P, STORIES[k]),
                          (_I, Q_TRAINING[k]), (_P, f"Not really, I learned it on the job {k}.")]
    turns, segs = build(cases)
    result = infer_protocol(turns, segs, fake_encode, ProtocolConfig())
    names = [a.name for a in result.protocol.areas]
    assert "How did the supervisee react to the feedback" in names, names
    assert not any(n.endswith("…") for n in names), names


def test_an_area_is_named_after_the_question_most_of_its_interviews_ask():
    """"Did you tell anyone how you felt?", asked in one interview beside "Was there a
    moment when you felt stuck ...?", which every interview asked, shares words with it
    and joined its area; scored by mean similarity over distinct wordings the two tied,
    and the shorter named the area and led its questions, in every export."""
    stuck = "Was there a moment in the session when you felt stuck with the client?"
    told = "Did you tell anyone how you felt in the session?"
    cases = {}
    for k in range(4):
        lines = [(_I, Q_FEEDBACK[k]), (_P, STORIES[k]), (_I, stuck),
                 (_P, f"I felt stuck in the session when the client went silent, case {k}.")]
        if k == 0:
            lines += [(_I, told), (_P, "I felt stuck in the session and told my client so.")]
        cases[f"c{k}"] = lines + [(_I, Q_TRAINING[k]),
                                  (_P, f"Not really, I learned it on the job {k}.")]
    turns, segs = build(cases)
    result = infer_protocol(turns, segs, fake_encode, ProtocolConfig())
    area = result.protocol.area(_area_of(result, "c1", 2))
    assert area.name == area_name(stuck), [a.name for a in result.protocol.areas]
    assert area.questions[0] == stuck
    assert _area_of(result, "c0", 4) == area.area_id       # the follow-up is still in it


def test_an_area_is_named_after_a_wording_that_asks():
    """In counselling sessions the counsellor reflects back as often as asking: "So,
    maybe around 20 drinks a week?" named an area whose other wordings asked "How
    many drinks would you say you'd have over a week?". A wording that asks goes
    first; a statement with a tag ("..., isn't it?") does not ask."""
    reflection = "So, maybe around 20 drinks a week?"
    asking = "How many drinks would you say you'd have over a week?"
    for k, (first, second) in enumerate(((reflection, asking), (asking, reflection))):
        cases = {}
        for c in range(4):
            q = first if c < 2 else second
            cases[f"c{c}"] = [(_I, q), (_P, STORIES[c]), (_I, Q_TRAINING[c]),
                              (_P, f"Not really, I learned it on the job {c}.")]
        turns, segs = build(cases)
        names = [a.name for a in infer_protocol(turns, segs, fake_encode,
                                                ProtocolConfig()).protocol.areas]
        assert "How many drinks would you say you'd have over a week" in names, (k, names)
    from pipeline.stages.protocol import _asks

    assert not _asks("That's what you want from friends, isn't it?")
    assert not _asks("Yeah, that makes sense?") and not _asks(reflection)
    assert _asks("That's for the sorting, but for the filtering are there any other ways?")
    assert _asks("Same scale, 0 to 10, how confident are you?") and _asks("Any thoughts on it?")
    assert _asks("Tell me about your supervisor.")


def test_a_redacted_question_names_no_area():
    """De-identified transcripts replace what would identify with marks ("XXX"). A
    question of marks alone made a domain named "XXX XXXX XXX": the area is named
    from a wording with words when one of its cases has it, "Redacted question" when
    none has; a mark inside a question that says something stays in its name."""
    assert area_name("XXX XXX XXX XXXX XXX XXXXX?") == REDACTED_AREA
    assert area_name("So, um, xxxx xxx?") == REDACTED_AREA
    assert area_name("Did XXX help you in supervision?") == "Did XXX help you in supervision"
    redacted = "XXX XXXX XXX XXXXX XXXX XXXXX?"
    for readable, expected in ((True, "How did the supervisee react to the feedback"),
                               (False, REDACTED_AREA)):
        cases = {}
        for k in range(4):
            q = ("How did the supervisee react to the feedback?" if readable and k >= 2
                 else redacted)
            cases[f"c{k}"] = [(_I, q), (_P, STORIES[k]), (_I, Q_TRAINING[k]),
                              (_P, f"Not really, I learned it on the job {k}.")]
        turns, segs = build(cases)
        names = [a.name for a in infer_protocol(turns, segs, fake_encode,
                                                ProtocolConfig()).protocol.areas]
        assert expected in names, names
        assert not any("XXX" in n for n in names), names


# --- protocol file ----------------------------------------------------------------

def test_yaml_round_trip(inferred, tmp_path):
    _, _, result = inferred
    path = tmp_path / "protocol.yaml"
    path.write_text(protocol_to_yaml(result.protocol), encoding="utf-8")
    loaded = load_protocol(path)
    expected = Protocol(tuple(Area(a.area_id, a.name, a.questions, a.frame, "given")
                              for a in result.protocol.areas))
    assert loaded == expected


def test_an_unedited_protocol_file_keeps_the_frames_follow_ups_in_the_frame(tmp_path):
    """The file lists each area's main questions. Given back unedited, a follow-up
    asked after the background question ("And is that private practice?") was a
    question the file omits, asked after the frame: it answered no area, and its
    answers went to the content domain nearest to them. A frame area now lists its
    follow-ups, and given back they stay in the frame, as the inference had them."""
    study = supervision_study()
    asked = ["And is that private practice, or a clinic?", "So mostly trainees these days.",
             "And that was after the hospital job?", "So a lot of group work, then."]
    cases = sorted(study)[:4]
    for case, q in zip(cases, asked):
        study[case][4] = (_I, q)
    turns, segs = build(study)
    result = infer_protocol(turns, segs, fake_encode, ProtocolConfig())
    frame = {a.area_id for a in result.protocol.areas if a.frame}
    assert all(_area_of(result, c, 4) in frame for c in cases)
    path = tmp_path / "protocol.yaml"
    path.write_text(protocol_to_yaml(result.protocol, result.turns), encoding="utf-8")
    given = load_protocol(path)
    assert sorted(q for a in given.areas for q in a.follow_ups) == sorted(asked)
    back = infer_protocol(turns, segs, fake_encode, ProtocolConfig(file=path))
    assert [_area_of(back, c, 4) for c in cases] == [_area_of(result, c, 4) for c in cases]
    assert back.counts.get("prompts_not_in_protocol_after_frame", 0) == 0
    assert back.counts["prompts_matched_as_frame_follow_up"] == 4
    assert (back.segment_area == result.segment_area).all()
    # without them (a file written before), each is a question the file lacks, asked
    # in the frame; its answer ("And I still see a few clients myself each week.")
    # is nearer the frame's answers than any content area's: it stays there, counted
    path.write_text(protocol_to_yaml(result.protocol), encoding="utf-8")
    old = infer_protocol(turns, segs, fake_encode, ProtocolConfig(file=path))
    assert [_area_of(old, c, 4) for c in cases] == [_area_of(result, c, 4) for c in cases]
    assert old.counts["prompts_not_in_protocol_in_frame"] == 4
    assert old.counts.get("prompts_not_in_protocol_after_frame", 0) == 0


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_an_empty_protocol_file_shows_a_protocol_that_loads_once_uncommented(tmp_path):
    """A study whose transcripts hold no interviewer question gets an empty protocol;
    the file shows the form to write, and that form, uncommented, is a protocol."""
    text = protocol_to_yaml(Protocol())
    assert "No interviewer question was found" in text
    note = text.split("No interviewer question was found")[1]
    example = [line[2:] for line in note.splitlines() if line.startswith("#   ")]
    given = load_protocol(_write(tmp_path / "given.yaml", "\n".join(example) + "\n"))
    assert [(a.name, a.frame) for a in given.areas] == [
        ("Experience of crying in session", False), ("Interview frame: background", True)]


def test_yaml_keeps_transcript_text_as_plain_strings(tmp_path):
    tricky = Protocol((Area(0, "=SUM(A1:A2)", ("- not a list item: really?", "*alias? &anchor",
                                               "'quoted' \"twice\" # not a comment"), False),))
    path = tmp_path / "p.yaml"
    path.write_text(protocol_to_yaml(tricky), encoding="utf-8")
    assert load_protocol(path) == tricky


def test_yaml_keeps_line_break_characters_in_questions(tmp_path):
    # NEL (U+0085) came back as a space; U+2028/U+2029 must stay as they are too
    odd = Protocol((Area(0, "Work\x85life", ("How was it?\x85And after?",
                                              "First\u2028second\u2029third", "a\rb"),
                         False),))
    path = tmp_path / "p.yaml"
    path.write_text(protocol_to_yaml(odd), encoding="utf-8")
    assert load_protocol(path) == odd


@pytest.mark.parametrize("text, field, line", [
    ("areas:\n  - name: Training\n    questions: Did it help?\n", "areas[0].questions", 3),
    ("areas:\n  - questions: [Did it help]\n", "areas[0].name", 2),
    ("areas:\n  - name: A\n    questions: [q]\n  - name: B\n    questoins: [q]\n",
     "areas[1].questoins", 5),
    ("areas:\n  - name: A\n    questions: [q]\n  - name: a\n    questions: [r]\n",
     "areas[1].name", 4),
    ("areas:\n  - name: A\n    questions: ['q', '']\n", "areas[0].questions[1]", 3),
    ("areas:\n  - name: A\n    questions: [q]\n    frame: maybe\n", "areas[0].frame", 4),
    ("areas:\n  - name: A\n    questions: [q]\n    follow_ups: So?\n", "areas[0].follow_ups", 4),
    ("areas:\n  - name: A\n    questions: [q]\n    follow_ups: ['', b]\n",
     "areas[0].follow_ups[0]", 4),
    ("areas: []\n", "areas", 1),
    ("name: x\n", "areas", 1),
])
def test_bad_protocol_files_name_the_field_and_line(tmp_path, text, field, line):
    path = tmp_path / "protocol.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        load_protocol(path)
    message = str(err.value)
    assert str(path) in message and f"field '{field}'" in message and f"line {line}" in message


def test_broken_yaml_and_missing_file(tmp_path):
    path = tmp_path / "protocol.yaml"
    path.write_text("areas:\n  - name: [unclosed\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"protocol.yaml, line \d+: not valid YAML"):
        load_protocol(path)
    with pytest.raises(ConfigError, match="protocol file not found"):
        load_protocol(tmp_path / "missing.yaml")
    bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{c}: &{c} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]\n"
        for p, c in zip("abcdef", "bcdefg")) + "areas: *g\n"
    path.write_text(bomb, encoding="utf-8")
    with pytest.raises(ConfigError, match="aliases"):
        load_protocol(path)


def test_a_quote_left_open_is_named_from_where_the_part_it_breaks_begins(tmp_path):
    # YAML fails lines below an open quote: the message names the start of the part too
    path = tmp_path / "protocol.yaml"
    path.write_text("areas:\n- name: Training\n  questions:\n  - 'Did your training help?\n"
                    "- name: Supervision\n  questions:\n  - Did you take it to supervision?\n"
                    "- name: Advice\n  questions: [What would you tell trainees?]\n",
                    encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        load_protocol(path)
    message = str(err.value)
    assert "line 10: not valid YAML" in message      # past the end: where YAML gave up
    assert "begins at line 4: a quote left open between lines 4 and 10" in message


def test_config_refuses_unknown_keys_and_bad_patterns():
    with pytest.raises(ValidationError):
        ProtocolConfig(infer_areas=True)
    with pytest.raises(ValidationError):
        ProtocolConfig(prompt_speakers=["task("])
    with pytest.raises(ValidationError):
        ProtocolConfig(areas=[{"name": " ", "questions": ["q"]}])
    with pytest.raises(ValidationError, match="two areas are named"):
        ProtocolConfig(areas=[{"name": "Training", "questions": ["q"]},
                              {"name": "training", "questions": ["r"]}])


# --- domains from the protocol ------------------------------------------------------

def _basis(i: int, dim: int = 12) -> np.ndarray:
    v = np.zeros(dim, dtype=np.float32)
    v[i] = 1.0
    return v


def _noisy(i: int, k: int, dim: int = 12) -> np.ndarray:
    v = _basis(i, dim) + 0.05 * _basis((i + 1 + k % 3) % dim, dim)
    return v / np.linalg.norm(v)


def _domain_study():
    """Areas 0 and 1 hold their own content; areas 2 and 3 hold the same content;
    area 4 is the frame."""
    protocol = Protocol(tuple(Area(i, n, (f"question {i}?",), i == 4, "inferred") for i, n in
                              enumerate(["Feedback", "Reactions", "Training A", "Training B",
                                         "Interview frame: background"])))
    vecs, areas, cases = [], [], []
    for a, direction in ((0, 0), (1, 1), (2, 2), (3, 2), (4, 3)):
        for k in range(10):
            vecs.append(_noisy(direction, k))
            areas.append(a)
            cases.append(f"C{k % 5}")
    return protocol, vecs, areas, cases


def test_a_segment_whose_content_belongs_elsewhere_is_moved():
    protocol, vecs, areas, cases = _domain_study()
    vecs.append(_noisy(1, 0))         # says what the Reactions answers say ...
    areas.append(0)                   # ... in answer to the Feedback question
    cases.append("C0")
    p = propose_domains_from_protocol(np.stack(vecs), np.array(areas), protocol,
                                      ProtocolConfig(), cases)
    assert p.moved.sum() == 1 and p.moved[-1]
    assert p.segment_domain[-1] == p.area_domain[0]
    assert p.proposed_domain[-1] == p.area_domain[1]
    row = p.domains.set_index("domain_id").loc[p.area_domain[1]]
    assert row["n_moved_in"] == 1 and row["n_segments"] == 11
    # and with a margin it does not clear, it stays
    strict = propose_domains_from_protocol(np.stack(vecs), np.array(areas), protocol,
                                           ProtocolConfig(move_margin=1.5), cases)
    assert not strict.moved.any()


def test_areas_that_hold_the_same_content_are_proposed_for_merging():
    protocol, vecs, areas, cases = _domain_study()
    p = propose_domains_from_protocol(np.stack(vecs), np.array(areas), protocol,
                                      ProtocolConfig(), cases)
    assert p.merges[["area_a", "area_b"]].values.tolist() == [[2, 3]]
    assert p.merges["similarity"].iloc[0] >= 0.9
    # merges are proposals: the areas keep their own domains
    assert p.area_domain[2] != p.area_domain[3]


def test_content_no_area_covers_becomes_a_new_domain():
    protocol, vecs, areas, cases = _domain_study()
    texts = [f"segment {i}" for i in range(len(vecs))]
    for k, (a, case) in enumerate([(0, "C1"), (0, "C2"), (1, "C3"), (1, "C4")]):
        vecs.append(_noisy(7, k))
        areas.append(a)
        cases.append(case)
        texts.append(f"We also talked about the waiting list, part {k}.")
    p = propose_domains_from_protocol(np.stack(vecs), np.array(areas), protocol,
                                      ProtocolConfig(), cases, segment_text=texts)
    new = p.domains[p.domains["kind"] == "new"]
    assert len(new) == 1
    d = int(new["domain_id"].iloc[0])
    assert (p.proposed_domain[-4:] == d).all() and p.uncovered[-4:].all()
    assert new["name"].iloc[0].startswith("Not in the protocol: We also talked about the waiting")
    assert int(new["n_cases"].iloc[0]) == 4 and bool(new["in_cross_analysis"].iloc[0])
    assert int(new["example_row"].iloc[0]) >= len(vecs) - 4


def test_uncovered_content_from_one_case_is_not_a_new_domain():
    protocol, vecs, areas, cases = _domain_study()
    for k in range(4):
        vecs.append(_noisy(7, k))
        areas.append(k % 2)
        cases.append("C1")
    p = propose_domains_from_protocol(np.stack(vecs), np.array(areas), protocol,
                                      ProtocolConfig(), cases)
    assert not (p.domains["kind"] == "new").any()
    assert p.uncovered[-4:].all()
    assert (p.proposed_domain[-4:] == [p.area_domain[k % 2] for k in range(4)]).all()


def test_frame_areas_form_one_domain_outside_the_cross_analysis():
    protocol, vecs, areas, cases = _domain_study()
    talk = np.zeros(len(vecs), bool)
    talk[0] = True                    # small talk in a content area
    p = propose_domains_from_protocol(np.stack(vecs), np.array(areas), protocol,
                                      ProtocolConfig(), cases, segment_small_talk=talk)
    frame = p.domains[p.domains["kind"] == "frame"]
    assert frame["name"].tolist() == [FRAME_DOMAIN] and frame["area_ids"].tolist() == [[4]]
    assert not bool(frame["in_cross_analysis"].iloc[0])
    assert int(frame["n_segments"].iloc[0]) == 11
    assert p.proposed_domain[0] == int(frame["domain_id"].iloc[0])
    included = propose_domains_from_protocol(np.stack(vecs), np.array(areas), protocol,
                                             ProtocolConfig(include_frame=True), cases)
    assert bool(included.domains.loc[included.domains["kind"] == "frame",
                                     "in_cross_analysis"].iloc[0])


def test_nothing_is_moved_into_the_frame():
    protocol, vecs, areas, cases = _domain_study()
    vecs.append(_noisy(3, 0))         # sounds like background, asked in a content area
    areas.append(0)
    cases.append("C0")
    p = propose_domains_from_protocol(np.stack(vecs), np.array(areas), protocol,
                                      ProtocolConfig(), cases)
    assert not p.moved[-1] and p.proposed_domain[-1] == p.area_domain[0]


def test_a_segment_that_answers_no_question_goes_to_the_domain_nearest_in_content():
    protocol, vecs, areas, cases = _domain_study()
    vecs += [_noisy(1, 0), _noisy(7, 0)]   # before any question: Reactions, then nothing known
    areas += [-1, -1]
    cases += ["C0", "C1"]
    p = propose_domains_from_protocol(np.stack(vecs), np.array(areas), protocol,
                                      ProtocolConfig(), cases)
    assert p.proposed_domain[-2] == p.area_domain[1] and p.placed[-2]
    assert not p.placed[-1] and p.uncovered[-1] and p.proposed_domain[-1] == -1
    assert p.segment_domain[-2] == -1 and not p.moved[-2]
    # placed, not moved: the Reactions domain moved nothing in
    assert p.domains.set_index("domain_id").loc[p.area_domain[1], "n_moved_in"] == 0
    # nothing is placed in the frame either
    vecs.append(_noisy(3, 1))
    areas.append(-1)
    cases.append("C2")
    q = propose_domains_from_protocol(np.stack(vecs), np.array(areas), protocol,
                                      ProtocolConfig(), cases)
    frame = int(q.domains.loc[q.domains["kind"] == "frame", "domain_id"].iloc[0])
    assert q.proposed_domain[-1] != frame


def test_a_story_told_after_a_greeting_goes_to_the_domain_of_its_content():
    """A participant who answers "thanks for joining me" with their whole story: the
    greeting's area (the frame) is made of that story, so the move rule, which asks
    for more similarity elsewhere than to the segment's own area, kept it all in the
    frame, out of the cross-analysis. Answers to a greeting are placed by content."""
    protocol = Protocol((Area(0, "Feedback", ("q0?",), False, "inferred"),
                         Area(1, "Reactions", ("q1?",), False, "inferred"),
                         Area(2, "Interview frame: opening", ("Thanks for joining me.",), True,
                              "inferred")))
    vecs = [_noisy(0, k) for k in range(10)] + [_noisy(1, k) for k in range(10)]
    areas = [0] * 10 + [1] * 10
    cases = [f"C{k % 5}" for k in range(20)]
    vecs += [_noisy(1, k + 3) for k in range(6)] + [_noisy(5, 0), _noisy(5, 1)]
    areas += [2] * 8
    cases += ["C9"] * 6 + ["C8"] * 2         # C9 tells its story; C8 chats
    greeted = np.array([False] * 20 + [True] * 8)
    before = propose_domains_from_protocol(np.stack(vecs), np.array(areas), protocol,
                                           ProtocolConfig(), cases)
    frame = int(before.domains.loc[before.domains["kind"] == "frame", "domain_id"].iloc[0])
    assert (before.proposed_domain[20:26] == frame).all()
    p = propose_domains_from_protocol(np.stack(vecs), np.array(areas), protocol,
                                      ProtocolConfig(), cases, segment_greeted=greeted)
    assert (p.proposed_domain[20:26] == p.area_domain[1]).all() and p.moved[20:26].all()
    assert not p.placed.any()               # moved from the greeting, not unanswered
    assert (p.proposed_domain[26:] == frame).all() and not p.moved[26:].any()
    # however many such replies, in however many cases, they make no new domain
    vecs += [_noisy(5, k) for k in range(2, 6)]
    areas += [2] * 4
    cases += ["C5", "C6", "C7", "C8"]
    greeted = np.append(greeted, [True] * 4)
    chat = propose_domains_from_protocol(np.stack(vecs), np.array(areas), protocol,
                                         ProtocolConfig(), cases, segment_greeted=greeted)
    assert not (chat.domains["kind"] == "new").any()
    assert (chat.proposed_domain[26:] == frame).all() and not chat.uncovered[26:].any()


def test_small_talk_after_a_greeting_stays_in_the_frame_when_as_near_to_it():
    """A reply to a greeting that is as near the frame's answers (the background) as
    to a content area is small talk, not content: it stays in the frame. A story told
    after the greeting is nearer its content area by far and still leaves."""
    protocol = Protocol((Area(0, "Feedback", ("q0?",), False, "inferred"),
                         Area(1, "Reactions", ("q1?",), False, "inferred"),
                         Area(2, "Interview frame: opening", ("Thanks for joining me.",), True,
                              "inferred"),
                         Area(3, "Interview frame: background", ("Your background?",), True,
                              "inferred")))
    vecs = [_noisy(0, k) for k in range(10)] + [_noisy(1, k) for k in range(10)] + \
        [_noisy(4, k) for k in range(6)]
    areas = [0] * 10 + [1] * 10 + [3] * 6
    cases = [f"C{k % 5}" for k in range(26)]
    chat = _basis(1) + _basis(4)            # as near the background as the Reactions
    vecs += [chat / np.linalg.norm(chat), _noisy(1, 7)]
    areas += [2, 2]
    cases += ["C7", "C8"]
    greeted = np.array([False] * 26 + [True, True])
    p = propose_domains_from_protocol(np.stack(vecs), np.array(areas), protocol,
                                      ProtocolConfig(), cases, segment_greeted=greeted)
    frame = int(p.domains.loc[p.domains["kind"] == "frame", "domain_id"].iloc[0])
    assert p.proposed_domain[26] == frame and not p.moved[26]
    assert p.proposed_domain[27] == p.area_domain[1] and p.moved[27]


def test_a_reply_to_the_consent_question_stays_in_the_frame_near_its_anchors():
    """"I signed the consent form and sent it back" answers the opening's consent
    question; the opening's replies make no centre, the background's answers were
    nothing like it, and its words were a little nearer a content area's answers:
    it went to the repair domain, and opened a core idea there. The frame's anchor
    phrases (small talk, background, consent) stand for the frame as well."""
    protocol = Protocol((Area(0, "Feedback", ("q0?",), False, "given"),
                         Area(1, "Reactions", ("q1?",), False, "given"),
                         Area(2, "Interview frame: opening", ("Happy for me to record?",), True,
                              "given"),
                         Area(3, "Interview frame: background", ("Your background?",), True,
                              "given")))
    vecs = [_noisy(0, k) for k in range(10)] + [_noisy(1, k) for k in range(10)] + \
        [_noisy(4, k) for k in range(6)]
    areas = [0] * 10 + [1] * 10 + [3] * 6
    cases = [f"C{k % 5}" for k in range(26)]
    consent = 0.6 * _basis(1) + 0.8 * _basis(6)     # some words of Reactions' answers
    vecs += [consent / np.linalg.norm(consent), _noisy(1, 7)]
    areas += [2, 2]
    cases += ["C7", "C8"]
    greeted = np.array([False] * 26 + [True, True])
    near_anchor = np.array([0.1] * 26 + [0.8, 0.1])   # its similarity to the consent anchors
    args = (np.stack(vecs), np.array(areas), protocol, ProtocolConfig(), cases)
    before = propose_domains_from_protocol(*args, segment_greeted=greeted)
    assert before.proposed_domain[26] == before.area_domain[1]     # as it went
    p = propose_domains_from_protocol(*args, segment_greeted=greeted,
                                      segment_frame_similarity=near_anchor)
    frame = int(p.domains.loc[p.domains["kind"] == "frame", "domain_id"].iloc[0])
    assert p.proposed_domain[26] == frame and not p.moved[26]
    # a story told after the greeting is nearer its content area by far and leaves
    assert p.proposed_domain[27] == p.area_domain[1] and p.moved[27]
    with pytest.raises(ConsensaError, match="segment_frame_similarity"):
        propose_domains_from_protocol(*args, segment_frame_similarity=near_anchor[:3])


def test_answers_without_their_questions_start_from_the_areas_questions():
    """The participant's words only, and the team's protocol given: no segment answers
    a prompt, so the areas' questions place the segments, and the centres follow."""
    protocol, vecs, areas, cases = _domain_study()
    truth = np.array(areas)
    unlinked = np.full(len(vecs), -1)
    # each area's questions point where its answers are (area 3 shares area 2's content)
    questions = np.stack([_basis(d) for d in (0, 1, 2, 5, 3)])
    p = propose_domains_from_protocol(np.stack(vecs), unlinked, protocol, ProtocolConfig(),
                                      cases, area_vectors=questions)
    content = truth != 4
    assert p.placed[content].all()
    expect = np.array([p.area_domain[a] for a in np.where(truth == 3, 2, truth)[content]])
    assert (p.proposed_domain[content] == expect).all()
    assert (p.segment_domain == -1).all() and not p.moved.any()
    # the background answers go where the background question would have sent them
    frame = int(p.domains.loc[p.domains["kind"] == "frame", "domain_id"].iloc[0])
    assert (p.proposed_domain[truth == 4] == frame).all() and p.placed[truth == 4].all()
    # without the questions nothing places them: they stay in no domain, as before
    q = propose_domains_from_protocol(np.stack(vecs), unlinked, protocol, ProtocolConfig(),
                                      cases)
    assert (q.proposed_domain == -1).all() and not q.placed.any()
    with pytest.raises(ConsensaError, match="one row per protocol area"):
        propose_domains_from_protocol(np.stack(vecs), unlinked, protocol, ProtocolConfig(),
                                      cases, area_vectors=questions[:2])


# --- the demo study with the real model ---------------------------------------------

@pytest.mark.slow
def test_demo_protocol_with_the_real_embedder(tmp_path):
    from pipeline.cache import Cache
    from pipeline.compose import embed_texts
    from pipeline.config import load_config
    from pipeline.stages.embed import SentenceTransformerEmbedderV2
    from pipeline.stages.ingest import ingest
    from pipeline.stages.segment import SentenceSegmenter

    cfg, base = load_config(ROOT / "configs" / "demo.yaml")
    corpus = ingest(cfg.ingest, base)
    segs = SentenceSegmenter(target_words=40, max_words=80).segment(corpus).segments
    segs = segs.reset_index(drop=True)
    embedder = SentenceTransformerEmbedderV2()
    cache = Cache(tmp_path)

    def encode(texts):
        return embed_texts(embedder, texts, cache)[0]

    result = infer_protocol(corpus.turns, segs, encode, ProtocolConfig())
    names = [a.name.lower() for a in result.protocol.areas]
    print("\n".join(a.name for a in result.protocol.areas))
    assert names[0].startswith("interview frame") and names[-1] == "interview frame: closing"
    assert "interview frame: background" in names
    for words in (("cried",), ("inside you",), ("respond",), ("held", "back"), ("training",),
                  ("supervision",), ("trainees",)):
        assert any(all(w in n for w in words) for n in names), words
    # the main questions are asked in (nearly) every case
    cases_per_area = pd.Series(result.segment_area).groupby(segs["case_id"]).unique()
    for key in ("cried", "training", "trainees"):
        area = next(i for i, n in enumerate(names) if key in n)
        assert sum(area in set(v) for v in cases_per_area) >= 9
    proposal = propose_domains_from_protocol(encode(segs["text"].tolist()), result.segment_area,
                                             result.protocol, ProtocolConfig(),
                                             segs["case_id"].tolist(),
                                             segment_small_talk=result.segment_small_talk)
    assert proposal.moved.mean() < 0.05


def test_many_prompts_are_grouped_on_a_sample_without_losing_a_question(monkeypatch):
    """Average linkage takes time and memory in the square of the prompts (a thousand
    interviews ask tens of thousands of questions). Above LINKAGE_MAX_ROWS the groups
    are found on a case-stratified sample and the rest join them; a question no
    sampled case asked is grouped among the rest, not lost."""
    from sklearn.metrics import adjusted_rand_score

    import pipeline.stages.protocol as protocol

    rng = np.random.default_rng(0)
    dim, n_cases = 24, 40
    questions = rng.normal(size=(4, dim))
    rows, truth, cases = [], [], []
    for c in range(n_cases):
        asked = [0, 1, 2] + ([3] if c in (5, 17) else [])   # question 3: two cases only
        for q in asked:
            rows.append(questions[q] + 0.15 * rng.normal(size=dim))
            truth.append(q)
            cases.append(f"case{c}")
    X = np.asarray(rows, dtype=np.float32)
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    whole = protocol._average_linkage_groups(X, 0.5)
    assert adjusted_rand_score(truth, whole) == 1.0
    sampled = protocol._average_linkage_groups(X, 0.5, cases=cases, max_rows=20)
    assert adjusted_rand_score(truth, sampled) == 1.0
    rare = {int(g) for g, t in zip(sampled, truth) if t == 3}
    assert len(rare) == 1

    # the same protocol from a study's prompts, grouped on a sample
    turns, segs = build(supervision_study())
    full = infer_protocol(turns, segs, fake_encode, ProtocolConfig())
    monkeypatch.setattr(protocol, "LINKAGE_MAX_ROWS", 12)
    part = infer_protocol(turns, segs, fake_encode, ProtocolConfig())
    assert part.counts["prompts_grouped_on_sample"] > 12
    assert [a.name for a in part.protocol.areas] == [a.name for a in full.protocol.areas]
    assert (part.segment_area == full.segment_area).all()


def test_rows_that_group_with_nothing_are_sampled_a_bounded_number_of_times(monkeypatch):
    """Where nothing groups (random vectors) nearly every row joins none of a sample's
    groups; sampling again from what is left until it fits once took 50 rounds at
    200,000 rows (219 s). At most LINKAGE_ROUNDS samples are taken; a group that a
    sample touched is still found whole, and what is still alone stays a row apart."""
    import scipy.cluster.hierarchy as hierarchy

    import pipeline.stages.protocol as protocol

    rng = np.random.default_rng(1)
    noise = rng.normal(size=(3000, 256))
    group = rng.normal(size=256) + 0.05 * rng.normal(size=(300, 256))
    X = np.vstack([group, noise]).astype(np.float32)
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    trees = []
    real = hierarchy.linkage
    monkeypatch.setattr(hierarchy, "linkage", lambda *a, **k: trees.append(1) or real(*a, **k))
    labels = protocol._average_linkage_groups(X, 0.5, max_rows=200)
    assert len(trees) <= protocol.LINKAGE_ROUNDS + 1
    assert len(set(labels[:300])) == 1                      # the group, whole
    assert len(set(labels[300:])) == 3000                   # noise: every row apart
    assert labels[0] not in set(labels[300:])


# --- a protocol whose questions do not recur ------------------------------------------

def _areas(n_cases_per_area: list[int], frame: int = 0) -> pd.DataFrame:
    rows = [{"domain_id": i, "name": f"Area {i}", "kind": "area", "n_segments": 3 * n,
             "n_cases": n} for i, n in enumerate(n_cases_per_area)]
    rows += [{"domain_id": 99, "name": "Interview frame", "kind": "frame", "n_segments": 40,
              "n_cases": frame}] if frame else []
    return pd.DataFrame(rows)


def test_a_protocol_whose_areas_recur_little_gets_a_note():
    """Counselling sessions, not interviews: an inferred "protocol" of one session's
    questions each (a median of 3 of 133 cases) made domains named after what one
    session asked, with nothing in the output to say so. A semi-structured study, even one whose
    areas spread (a median of 2 of 7), and a small study get no note; the frame and
    empty areas do not count."""
    from pipeline.report.render import _protocol_section
    from pipeline.stages.protocol import scattered_protocol

    sessions = _areas([3, 2, 7, 3, 1, 2, 4, 3] + [0] * 5, frame=120)
    note = scattered_protocol(sessions, 133)
    assert note is not None
    assert note.startswith("the 8 protocol areas are answered in a median of 3 of 133 cases")
    assert "protocol.file" in note and "consensa.Themes.v1" in note
    assert scattered_protocol(_areas([10, 9, 10, 8, 7]), 10) is None       # the demo's shape
    assert scattered_protocol(_areas([1, 2, 7, 2, 1, 2]), 7) is None       # too few cases
    assert scattered_protocol(_areas([14, 13, 2, 1]), 20) is None          # median 7.5 of 20
    assert scattered_protocol(_areas([1, 1]), 100) is None                 # two areas say little
    assert scattered_protocol(sessions.drop(columns="kind"), 133) is None  # a themes run
    # a protocol the team gave: the advice is to check it, not to give one
    mine = scattered_protocol(sessions, 133, given=True)
    assert "check its wordings against protocol_prompts.csv" in mine
    assert "give it as protocol.file" not in mine and "Themes.v1" not in mine
    # the report's protocol section carries it
    assert _protocol_section("areas: []\n", sessions, 133)["note"] == note
    assert _protocol_section("areas: []\n", sessions, 133, given=True)["note"] == mine
    assert _protocol_section("areas: []\n", sessions, 10)["note"] is None


def test_small_talk_is_courtesy_with_little_else():
    """What pre-coding sets apart as the frame: courtesy and at most two other content
    words, never an answer that thanks and then says something."""
    from pipeline.stages.protocol import is_small_talk

    assert is_small_talk("Not at all, it was good to talk about it.")
    assert is_small_talk("Good luck with the project, and with the writing up.")
    assert not is_small_talk("Thank you. My supervisor helped me sort out the grief "
                             "from my own mother's death.")
    assert not is_small_talk("I cried in the session and she saw it.")


def test_a_how_long_question_answered_in_years_is_background():
    """"How long you have supervised trainees" names the work in words no pattern
    lists; its answers give a number of years ("About ten years now"), so at the start
    of the interview it is background. The same question answered with events ("Two
    years ago a supervisee ...") dates them and stays content."""
    def study_with(answers):
        study = supervision_study()
        for k, case in enumerate(("S1", "S2", "S3", "S4", "S5")):
            study[case][2] = (_I, "Can you tell me how long you have supervised trainees?")
            study[case][3] = (_P, answers[k])
        return build(study)

    years = ["About ten years now, mostly counselling trainees in their second year.",
             "Eight years, give or take, at the university clinic.",
             "Only three years. I started after my own accreditation.",
             "Fifteen years, on and off, with a gap when my kids were small.",
             "Um, six years at the community service."]
    result = infer_protocol(*study_with(years), fake_encode, ProtocolConfig())
    assert _second_prompt_in_frame(result) == {True}
    events = ["Two years ago a trainee brought me a case that frightened us both.",
              "Three years ago, when the service was reorganised, we lost our rooms.",
              "A trainee cried in our first session and I did not know what to do.",
              "Supervising changed when the clinic moved online during the pandemic.",
              "Ten years ago I was the one being supervised, and badly."]
    result = infer_protocol(*study_with(events), fake_encode, ProtocolConfig())
    assert _second_prompt_in_frame(result) == {False}


def _team_file(path: Path, follow_ups: dict[str, list[str]] | None = None) -> Path:
    """The supervision study's protocol as a team writes it: the frame's opening,
    background and closing, and the four content questions."""
    follow_ups = follow_ups or {}
    opening = "Thanks for making time for this. Are you happy for me to record?"
    areas = [("Interview frame: opening", True, [opening]),
             ("Interview frame: background", True, [BACKGROUND[0]]),
             ("Feedback", False, [Q_FEEDBACK[0]]), ("Reaction", False, [Q_REACTION[0]]),
             ("Training", False, [Q_TRAINING[0]]), ("Advice", False, [Q_ADVICE[0]]),
             ("Interview frame: closing", True, [CLOSING_Q[0], CLOSING_THANKS[0]])]
    text = "areas:\n"
    for name, frame, questions in areas:
        text += f"- name: {name!r}\n  frame: {str(frame).lower()}\n  questions: {questions!r}\n"
        if follow_ups.get(name):
            text += f"  follow_ups: {follow_ups[name]!r}\n"
    path.write_text(text, encoding="utf-8")
    return path


def test_small_talk_the_file_lacks_stays_in_the_frame_and_is_written_to_it(tmp_path):
    """A time check, a joke about the room and a follow-up of the background that the
    team's file does not list: each answered no area, and its answer ("No, I have
    until three.") went to the content domain nearest in content, and opened a core
    idea there. Asked in the frame and nearer the frame than any content area's
    answers, each stays in the frame area it was asked in, is counted, and the run's
    protocol.yaml lists it under that area's follow_ups, where it stays when the file
    is given back. A question the file lacks whose answer says what another area's
    answers say still leaves the frame."""
    study = supervision_study()
    time_check = "And is now still a good time? You're not rushing off?"
    plant = "It's mostly plastic, I'm afraid."
    trainees = "So mostly trainees these days?"
    reaction = "And how did she take it in the weeks after the feedback?"
    study["S1"][2:2] = [(_I, time_check), (_P, "No, no, I have until three. It's fine."),
                        (_I, plant), (_P, "Well, it fooled me.")]
    study["S2"][4] = (_I, trainees)             # after the background question
    study["S3"][4] = (_I, reaction)             # the reaction's question, asked early
    study["S3"][5] = (_P, "At first there was hurt and some defensiveness, then over weeks "
                          "it settled.")
    turns, segs = build(study)
    result = infer_protocol(turns, segs, fake_encode,
                            ProtocolConfig(file=_team_file(tmp_path / "team.yaml")))
    names = [a.name for a in result.protocol.areas]
    assert names[_area_of(result, "S1", 0)] == "Interview frame: opening"
    assert _area_of(result, "S1", 2) == _area_of(result, "S1", 4) == _area_of(result, "S1", 0)
    # in the frame area of the question it followed
    assert _area_of(result, "S2", 4) == _area_of(result, "S2", 2) in result.protocol.frame_ids
    assert _area_of(result, "S3", 4) == -1
    assert result.counts["prompts_not_in_protocol_in_frame"] == 3
    assert result.counts["prompts_not_in_protocol_after_frame"] == 1
    for case, turn in (("S1", 3), ("S1", 5), ("S2", 5)):
        row = segs.index[(segs["case_id"] == case) & (segs["turn_index"] == turn)][0]
        assert result.segment_frame[row] and result.segment_area[row] in \
            result.protocol.frame_ids
    # the run's protocol.yaml lists them where they were asked; given back, they stay
    path = tmp_path / "protocol.yaml"
    path.write_text(protocol_to_yaml(result.protocol, result.turns), encoding="utf-8")
    given = {a.name: a.follow_ups for a in load_protocol(path).areas}
    assert given["Interview frame: opening"][:2] == (time_check, plant)
    assert trainees in given[names[_area_of(result, "S2", 2)]]
    assert reaction not in [q for f in given.values() for q in f]
    back = infer_protocol(turns, segs, fake_encode, ProtocolConfig(file=path))
    assert (back.segment_area == result.segment_area).all()
    assert back.counts["prompts_matched_as_frame_follow_up"] == 3
    assert back.counts.get("prompts_not_in_protocol_in_frame", 0) == 0


def test_a_greeting_stays_in_the_opening_area_of_a_protocol_file(tmp_path):
    """"Hello Isla, thanks for making time for this." shares more words with the
    closing "Thank you so much for your time today." than with the long opening
    question of the team's file: the greeting was put in the closing area (its
    frame_kind still "opening"), and the follow-up after it, listed under the opening
    area's follow_ups, was then a question the file omits, asked after the frame: its
    answer went to no area and the run asked the team to add it to the file. A
    greeting is matched to the frame areas written before the content areas, a
    closing to those after them; and a frame area's listed follow-up is filed there
    when it is asked in another part of the frame."""
    study = supervision_study()
    parked = "That's absolutely fine, as long as you're parked!"
    study["S1"][0:2] = [(_I, "Hello Isla, thanks for making time for this."),
                        (_P, "Hi, no problem. I'm in the car, it's the only quiet place."),
                        (_I, parked), (_P, "I'm parked, I promise, the engine is off."),
                        (_I, "Before we start, are you happy for me to record?"),
                        (_P, "Yes, all fine, go ahead.")]
    still = "And is now still a good time? You're not rushing off?"
    study["S1"][8:8] = [(_I, still), (_P, "No, I have until three, so plenty of time today.")]
    turns, segs = build(study)
    opening = ("Thanks for making time for this. Before we start, have you had a chance to read "
               "the information sheet, and are you happy for me to record?")
    path = tmp_path / "protocol.yaml"
    path.write_text(
        "areas:\n"
        "- name: 'Interview frame: opening'\n  frame: true\n"
        f"  questions: [{opening!r}]\n  follow_ups: [\"{parked}\", \"{still}\"]\n"
        "- name: 'Interview frame: background'\n  frame: true\n"
        f"  questions: [{BACKGROUND[0]!r}]\n"
        f"- name: Feedback\n  questions: [{Q_FEEDBACK[0]!r}]\n"
        f"- name: Reaction\n  questions: [{Q_REACTION[0]!r}]\n"
        f"- name: Training\n  questions: [{Q_TRAINING[0]!r}]\n"
        f"- name: Advice\n  questions: [{Q_ADVICE[0]!r}]\n"
        "- name: 'Interview frame: closing'\n  frame: true\n"
        f"  questions: [{CLOSING_Q[0]!r}, 'Thank you so much for your time today.']\n",
        encoding="utf-8")
    result = infer_protocol(turns, segs, fake_encode, ProtocolConfig(file=path))
    names = [a.name for a in result.protocol.areas]
    t = result.turns.set_index(["case_id", "turn_index"])
    assert names[int(t.loc[("S1", 0), "area_id"])] == "Interview frame: opening"
    assert t.loc[("S1", 0), "frame_kind"] == "opening"
    assert names[int(t.loc[("S1", 2), "area_id"])] == "Interview frame: opening"
    assert result.counts.get("prompts_not_in_protocol_after_frame", 0) == 0
    reply = segs.index[(segs["case_id"] == "S1") & (segs["turn_index"] == 3)][0]
    assert result.segment_area[reply] == names.index("Interview frame: opening")
    # the opening's follow-up, asked after the background question: the opening's
    assert names[int(t.loc[("S1", 6), "area_id"])] == "Interview frame: background"
    assert names[int(t.loc[("S1", 8), "area_id"])] == "Interview frame: opening"
    # a closing thanks, at the end, still goes to the closing area
    assert names[int(t.loc[("S4", 22), "area_id"])] == "Interview frame: closing"


# --- a mentoring study: what helped, what did not, generic probes ---------------------

# Four short interviews about a mentor's advice, as a CQR protocol pairs its questions:
# a time the advice helped, a time it did not, the relationship, advice to mentors. The
# background and closing are worded differently in each, and a generic feeling probe
# follows one story or the other.
M_BACKGROUND = ["To start, could you tell me your age and how long you have had a mentor?",
                "Can you tell me roughly how old you are and how long you have had a mentor?",
                "Can I ask your age, and how long you have had a mentor?",
                "First, what is your age range and how long have you had a mentor?"]
M_HELPED = ["Can you tell me about a time your mentor's advice helped you?",
            "Could you describe a time your mentor's advice helped?",
            "Was there a time your mentor's advice helped you?",
            "Can you think of a time advice from your mentor helped you?"]
M_HINDERED = ["Was there a time your mentor's advice didn't help?",
              "And was there a time advice from your mentor was unhelpful?",
              "Was there ever advice from your mentor that didn't help you?",
              "And a time your mentor's advice wasn't helpful?"]
M_RELATION = ["How did the advice affect your relationship with your mentor?",
              "How did it affect the relationship with your mentor?",
              "What effect did the advice have on your relationship with your mentor?",
              "How has the relationship with your mentor been affected?"]
M_ADVICE = ["What advice would you give mentors about giving advice?",
            "What would you tell mentors about giving advice?",
            "If you could give mentors one piece of advice, what would it be?",
            "What advice would you give new mentors?"]
#: (the bag-of-words encoder puts "How did you feel about that?" on the anchor "How did
#: that feel?"; the real one did not, and these stand in for it)
M_FEEL = ["How did you feel about her telling you that?",
          "How did you feel about him telling you that?"] * 2
M_CLOSING = ["Anything else you'd like to say?", "Anything else you want to say?",
             "Is there anything else you'd like to add?", "Anything else?"]
M_STORY_HELPED = ["She told me to stop rewriting my reports and hand them in, and it worked.",
                  "He said to ask for the promotion, and I got it within the year.",
                  "She suggested a weekly plan, and my deadlines stopped slipping.",
                  "He told me to say no to the extra project, and the pressure eased."]
M_STORY_HINDERED = ["He told me to toughen up when my father was ill, which stung.",
                    "She said everyone struggles at first, and I felt brushed off.",
                    "He pushed me towards management when I wanted research.",
                    "She compared me with her old trainee, and I felt small."]
M_FEELINGS = ["Relieved, honestly, and a bit proud of myself.",
              "Hurt, and then angry with myself for minding.",
              "Grateful, it made the work feel lighter.",
              "Small, like I had failed a test."]


def mentor_study() -> dict[str, list[tuple[str, str]]]:
    cases = {}
    for k in range(4):
        feel = [(_I, M_FEEL[k]), (_P, M_FEELINGS[k])]
        lines = [(_I, "Thanks for coming in. " + M_BACKGROUND[k]),
                 (_P, "I'm in my thirties, and I've had the same mentor for two years."),
                 (_I, M_HELPED[k]), (_P, M_STORY_HELPED[k]),
                 *(feel if k % 2 == 0 else []),
                 (_I, M_HINDERED[k]), (_P, M_STORY_HINDERED[k]),
                 *(feel if k % 2 == 1 else []),
                 (_I, M_RELATION[k]), (_P, "We trust each other more now, mostly."),
                 (_I, M_ADVICE[k]), (_P, "Give advice once, then let the mentee choose."),
                 (_I, M_CLOSING[k]),
                 (_P, ["Only that I'm a mentor myself now.",
                       "Thank you for asking about advice, nobody asks the mentees.",
                       "No, I think that's everything.",
                       "Thank you for asking about advice, nobody asks the mentees."][k]),
                 (_I, "Thank you very much.")]
        cases[f"M{k + 1}"] = lines
    return cases


def _turn_of(study: dict, case: str, text: str) -> int:
    return next(i for i, (_, t) in enumerate(study[case]) if t == text)


def test_a_feeling_probe_about_what_was_just_said_stays_in_the_area_in_progress():
    """"How did you feel about that?", asked once per interview after one story or
    the other, was grouped across the interviews as a protocol question and made a
    domain of its own, which mixed the feelings about the advice that helped and the
    advice that did not. A feeling or elaboration question whose only object refers
    back is a probe of the area in progress; one that names its subject is not."""
    study = mentor_study()
    turns, segs = build(study)
    result = infer_protocol(turns, segs, fake_encode, ProtocolConfig())
    names = [a.name.lower() for a in result.protocol.areas]
    assert not any("feel" in n for n in names), names
    for k, case in enumerate(sorted(study)):
        at = _turn_of(study, case, M_FEEL[k])
        story = M_HELPED[k] if k % 2 == 0 else M_HINDERED[k]
        assert _kind_of(result, case, at) == "probe", case
        assert _area_of(result, case, at) == _area_of(result, case, _turn_of(study, case, story))
    from pipeline.stages.protocol import _generic_probe

    for probe in ("How did you feel about that?", "How did you feel about it?",
                  "How was that for you?", "What did that feel like?", "What happened then?",
                  "Can you tell me more about that?", "How did you feel about him saying that?",
                  "What was it like to hear that?", "How did you react to it?",
                  "How did you feel at the end of it?"):
        assert _generic_probe(probe), probe
    for question in ("How did you feel about your mentor's advice?", "And how did she respond?",
                     "How did it affect your relationship?", "What did you do afterwards?",
                     "How did you feel at the end of therapy?"):
        assert not _generic_probe(question), question
    # "those" is what the turn recalls, not what was just said
    recalled = "You said there were times you held back. Could you say a bit about those?"
    assert not _generic_probe(question_core(recalled), recalled)
    assert _generic_probe("How did you feel about that?", "Take your time. How did you feel "
                                                          "about that?")


def test_background_questions_worded_indirectly_are_background_in_every_interview():
    """"Can you tell me roughly how old you are and ..." was missed by the background
    words and became a frame area of its own ("opening"), and a background question
    about as near a content question as a rewording ("Could you tell me your age, and
    how long your mentor's advice has helped you?") was pulled into that content area, and
    its answer counted there. Nearer to the other interviews' background questions
    than to the content question, it stays background."""
    study = mentor_study()
    study["M4"][0] = (_I, "Could you tell me your age, and how long your mentor's advice "
                          "has helped you?")
    study["M4"][2] = (_I, "Was there something your mentor said that made a difference?")
    study["M4"][4] = (_I, "And the times it went badly?")   # nor is this one in that area
    turns, segs = build(study)
    result = infer_protocol(turns, segs, fake_encode, ProtocolConfig())
    t = result.turns
    first = t[t["turn_index"] == 0].set_index("case_id")["frame_kind"].to_dict()
    assert first == {c: "background" for c in study}, first
    background = next(a.area_id for a in result.protocol.areas if a.name.endswith("background"))
    assert {_area_of(result, c, 0) for c in study} == {background}
    assert result.counts.get("background_prompts_made_content", 0) == 0
    assert len([a for a in result.protocol.areas if a.frame]) == 2      # background, closing


def test_anything_else_you_would_like_to_say_closes_and_its_courtesy_stays_in_the_frame():
    """"Anything else you'd like to say?" at the end of two interviews was no closing
    to the frame's words and became a content domain of one case's remark; and "Thank
    you for asking about advice, nobody asks the mentees." in the closing was moved to
    the advice domain and counted there. The closing takes both; what a participant
    adds there without a courtesy can still move by its content."""
    study = mentor_study()
    turns, segs = build(study)
    config = ProtocolConfig()
    result = infer_protocol(turns, segs, fake_encode, config)
    closing = next(a.area_id for a in result.protocol.areas if a.name.endswith("closing"))
    for k, case in enumerate(sorted(study)):
        assert _area_of(result, case, _turn_of(study, case, M_CLOSING[k])) == closing, case
    assert not any("anything" in a.name.lower() for a in result.protocol.areas)
    courtesy = (segs["text"].str.startswith("Thank you for asking")).to_numpy()
    assert result.segment_small_talk[courtesy].all()
    assert result.counts["segments_closing_courtesy"] == 2
    proposal = propose_domains_from_protocol(fake_encode(segs["text"].tolist()),
                                             result.segment_area, result.protocol, config,
                                             segs["case_id"].tolist(),
                                             segment_small_talk=result.segment_small_talk)
    frame = proposal.domains.loc[proposal.domains["kind"] == "frame", "domain_id"].iloc[0]
    assert (proposal.proposed_domain[courtesy] == frame).all()
    assert not proposal.moved[courtesy].any()


def negation_blind_encode(texts: list[str]) -> np.ndarray:
    """The bag-of-words encoder reading a negated question as a sentence embedder
    does: by the words it shares with the positive one ("didn't help" as "did help",
    "unhelpful" as "helpful")."""
    blind = [re.sub(r"\b(\w+)n't\b", r"\1", re.sub(r"\bun(help\w*)", r"\1", t, flags=re.I))
             for t in texts]
    return fake_encode(blind)


def test_a_question_goes_to_the_team_question_of_its_own_polarity():
    """With a team's file that pairs "a time the advice helped" with "a time it did
    not", the embedder matched "Was there a time your mentor's advice didn't help?"
    to the helped question by the words the two share, and read "...didn't help, or
    felt wrong?" as a follow-up of the helped area; their stories were counted there.
    A question goes to the question of its own polarity when that one is about as
    near; a question of no polarity is matched as before."""
    hindered = ["Was there ever a time your mentor's advice didn't help?",
                "And was there a time advice from your mentor was unhelpful?",
                "Was there ever a time something your mentor advised didn't help, or felt "
                "wrong?"]
    study = mentor_study()
    for k, case in enumerate(("M1", "M2", "M3")):
        study[case] = [(w, hindered[k] if t == M_HINDERED[k] else t) for w, t in study[case]]
    turns, segs = build(study)
    areas = [{"name": "A time the advice helped",
              "questions": ["Can you tell me about a time your mentor's advice helped you?"]},
             {"name": "A time the advice did not help",
              "questions": ["Was there a time a piece of advice from your mentor didn't help?"]},
             {"name": "The relationship",
              "questions": ["How did the advice affect your relationship with your mentor?"]},
             {"name": "Advice to mentors", "questions": ["What advice would you give mentors?"]}]
    result = infer_protocol(turns, segs, negation_blind_encode, ProtocolConfig(areas=areas))
    for k, case in enumerate(("M1", "M2", "M3")):
        asked = _turn_of(study, case, hindered[k])
        assert _area_of(result, case, asked) == 1, case
        assert _area_of(result, case, _turn_of(study, case, M_HELPED[k])) == 0, case
        story = (segs["case_id"] == case) & (segs["text"] == M_STORY_HINDERED[k])
        assert (result.segment_area[story.to_numpy()] == 1).all(), case
    assert _area_of(result, "M1", _turn_of(study, "M1", M_RELATION[0])) == 2
    assert result.counts["prompts_matched_by_polarity"] >= 3
    # "0.1" of similarity is what the pair may differ by: with no margin, only a tie
    held = infer_protocol(turns, segs, negation_blind_encode,
                          ProtocolConfig(areas=areas, polarity_margin=0))
    assert _area_of(held, "M2", _turn_of(study, "M2", hindered[1])) == 0

    from pipeline.stages.protocol import _polarity

    assert [_polarity(q) for q in (*hindered, "Did it hinder you?", "Was any of it wrong?")] \
        == [-1] * 5
    assert [_polarity(q) for q in ("A time it helped?", "Was it useful?")] == [1, 1]
    assert [_polarity(q) for q in ("Did it help or not?", "How did it affect you?")] == [1, 0]
