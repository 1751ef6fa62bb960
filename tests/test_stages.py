"""Unit tests of the stages that follow ingest, on small hand-made inputs."""

import re

import numpy as np
import pandas as pd
import pytest

from pipeline.stages.cluster import assign, auto_min_cluster_size
from pipeline.stages.concepts import Concept, ConceptsConfig, match_concepts
from pipeline.stages.domains import MISC, DomainConfig, propose_domains
from pipeline.stages.label import LabelConfig, build_vocabulary, ctfidf, label_themes, representative
from pipeline.stages.reduce import auto_neighbors
from pipeline.stages.segment import SentenceSegmenter, TurnSegmenter, is_backchannel
from pipeline.types import TURN_COLUMNS, Clustering, Corpus, SourceText


def corpus_from(text, roles=None):
    """Turns from 'Label: text' lines, with exact offsets into ``text``."""
    rows, pos = [], 0
    for i, line in enumerate(text.splitlines(keepends=True)):
        label, _, rest = line.partition(": ")
        s, e = pos + len(label) + 2, pos + len(line.rstrip("\r\n"))
        role = (roles or {}).get(label, "interviewer" if label == "I" else "participant")
        rows.append({"case_id": "c", "turn_index": i, "speaker": label, "role": role,
                     "text": text[s:e], "start_char": s, "end_char": e, "start_time": np.nan,
                     "end_time": np.nan, "source_file": "c.txt"})
        pos += len(line)
    return Corpus(pd.DataFrame(rows, columns=list(TURN_COLUMNS)), pd.DataFrame({"case_id": ["c"]}),
                  {"c": SourceText("c", "c.txt", text, "", "utf-8")})


@pytest.mark.parametrize("text,expected", [
    ("Mm-hmm.", True), ("Yeah, yeah.", True), ("Right. Okay.", True), ("Uh-huh", True),
    ("I see.", True), ("Yeah, I cried.", False), ("", False), ("No, never in training.", False)])
def test_backchannels(text, expected):
    assert is_backchannel(text) is expected


def test_units_are_bounded_exact_slices_and_carry_their_question():
    long_turn = " ".join(f"Sentence number {i} is about the training I never had." for i in range(12))
    text = (f"I: Did your training prepare you?\nP: {long_turn}\nI: Mm-hmm.\nP: Yeah.\n"
            "I: And supervision, how was it?\nP: Yeah. My supervisor was kind to me about the tears.\n")
    seg = SentenceSegmenter(target_words=20, max_words=30).segment(corpus_from(text))
    s = seg.segments
    assert all(text[a:b] == t for a, b, t in zip(s["start_char"], s["end_char"], s["text"]))
    assert s["n_words"].max() <= 30 and len(s) >= 5
    assert (s["role"] == "participant").all()
    assert s["question"].iloc[0] == "Did your training prepare you?"
    # the backchannel "I: Mm-hmm." does not become the question of later answers
    last = s.iloc[-1]
    assert last["question"] == "And supervision, how was it?" and last["question_turn_index"] == 4
    # a leading "Yeah." is trimmed off the unit; the backchannel turn is counted
    assert last["text"] == "My supervisor was kind to me about the tears."
    assert seg.counts["turns_backchannel"] == 1 and seg.counts["turns_not_analysed_role"] == 3


def test_a_run_on_sentence_is_cut_near_a_comma():
    run_on = ", ".join(["and then I was thinking about my mother and the hospital"] * 10) + "."
    seg = SentenceSegmenter(target_words=20, max_words=30).segment(corpus_from(f"P: {run_on}\n"))
    assert len(seg.segments) >= 3 and seg.segments["n_words"].max() <= 30
    assert all(t.endswith(",") or t.endswith(".") for t in seg.segments["text"])


def test_interviewer_turns_can_be_analysed_when_asked():
    c = corpus_from("I: Tell me about the time you cried with a client.\nP: It was in my second year.\n")
    assert len(TurnSegmenter().segment(c).segments) == 1
    assert len(TurnSegmenter(roles=("participant", "interviewer")).segment(c).segments) == 2


def test_bad_segment_bounds_are_a_config_error():
    from pipeline.errors import ConfigError

    with pytest.raises(ConfigError, match="min_words"):
        SentenceSegmenter(target_words=90, max_words=30).segment(corpus_from("P: Hello there my friend.\n"))


def test_assign_numbers_themes_by_size_and_reassigns_only_similar_outliers():
    emb = np.array([[1, 0], [1, 0.1], [0.9, 0.1], [0, 1], [0.1, 1], [0.95, 0.05], [-1, 0]], np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    labels = np.array([5, 5, 5, 2, 2, -1, -1])
    probs = np.array([1, 0.9, 0.8, 1, 0.7, 0, 0], np.float32)
    c = assign(emb, labels, probs, reassign=True, min_similarity=0.5)
    assert c.theme.tolist() == [0, 0, 0, 1, 1, 0, -1]
    assert c.reassigned.tolist() == [False] * 5 + [True, False]
    assert c.strength[5] > 0.99 and c.strength[6] == 0 and c.n_outliers_initial == 2
    assert c.unassigned_share == pytest.approx(1 / 7)
    kept = assign(emb, labels, probs, reassign=False)
    assert kept.theme.tolist() == [0, 0, 0, 1, 1, -1, -1] and not kept.reassigned.any()


def test_auto_sizes_grow_with_the_corpus():
    assert auto_min_cluster_size(100) == 5 and auto_min_cluster_size(10_000) == 50
    assert auto_neighbors(50) == 5 and auto_neighbors(10_000) == 15


def test_ctfidf_by_hand():
    # group 0: a a b ; group 1: b c c  -> avg words 3, totals a=2 b=2 c=2
    scores = ctfidf({0: [["a", "a"], ["b"]], 1: [["b", "c"], ["c"]]}, min_docs=1)
    expected_a = (2 / 3) * np.log(1 + 3 / 2)
    assert scores[0][0] == ("a", pytest.approx(expected_a))
    assert [t for t, _ in scores[1]] == ["c", "b"]
    # a term must appear in at least min_docs documents of the group
    assert [t for t, _ in ctfidf({0: [["a", "a"], ["b"], ["b"]]}, min_docs=2)[0]] == ["b"]


def test_vocabulary_drops_fillers_and_notes_and_shows_spoken_forms():
    v = build_vocabulary(["Um, you know, nobody taught us, like, anything [laughs] about crying.",
                          "They taught me nothing; crying was kind of taboo."])
    assert "teach" in v.docs[0] and "cry" in v.docs[0]
    assert not {"um", "know", "like", "laugh", "kind"} & set(v.docs[0] + v.docs[1])
    assert v.surface["teach"] == "taught"


def test_representative_quotes_are_central_and_spread_over_cases():
    vecs = np.array([[1, 0], [0.99, 0.14], [0.98, 0.2], [0.6, 0.8]], np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    picked = representative(vecs, np.arange(4), np.array([1, 0], np.float32),
                            ["A", "A", "B", "C"], n=2, diversity=0.3)
    assert picked[0] == 0 and picked[1] != 1


def _segments(texts, cases):
    return pd.DataFrame({"segment_id": [f"s{i}" for i in range(len(texts))], "case_id": cases,
                         "text": texts})


def test_label_themes_names_each_theme_by_its_own_words():
    texts = ["Nobody taught us about tears in training."] * 3 + ["My supervisor was kind and helped."] * 3
    segs = _segments(texts, ["A", "B", "C", "A", "B", "B"])
    emb = np.repeat(np.eye(2, dtype=np.float32), 3, axis=0)
    c = Clustering(np.array([0, 0, 0, 1, 1, 1]), np.ones(6, np.float32), np.zeros(6, bool), 0)
    themes = label_themes(segs, emb, c, LabelConfig(n_quotes=2))
    assert "taught" in themes.loc[0, "keywords"] and "supervisor" in themes.loc[1, "name"]
    assert themes["n_cases"].tolist() == [3, 2] and themes.loc[1, "cases"] == ["A", "B"]
    assert themes.loc[0, "quote_ids"][0] in {"s0", "s1", "s2"}


def test_domains_group_close_themes_and_send_loners_to_miscellaneous():
    cents = np.array([[1, 0, 0], [0.95, 0.3, 0], [0, 0, 1]], np.float32)
    cents /= np.linalg.norm(cents, axis=1, keepdims=True)
    vocab = build_vocabulary(["training taught", "training course", "supervisor kind"])
    d = propose_domains(cents, np.array([0, 1, 2]), vocab, DomainConfig(distance_threshold=0.2))
    assert d.theme_domain.tolist() == [0, 0, 1]
    assert d.domains.loc[1, "name"] == MISC and d.domains.loc[1, "is_miscellaneous"]
    assert d.linkage.shape == (2, 4)
    assert d.domains["theme_ids"].tolist() == [[0, 1], [2]]            # lists, not text
    two = propose_domains(cents, np.array([0, 1, 2]), vocab,
                          DomainConfig(n_domains=2, singletons_to_miscellaneous=False))
    assert two.theme_domain.tolist() == [0, 0, 1] and not two.domains["is_miscellaneous"].any()


def test_concepts_without_support_are_reported_not_forced():
    emb = np.array([[1, 0], [0.9, 0.1], [0.95, 0.05], [0, 1]], np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    segs = _segments(["a", "b", "c", "d"], ["A", "B", "C", "A"])
    cfg = ConceptsConfig(items=[Concept(name="near"), Concept(name="far")], segment_threshold=0.8,
                         min_segments=2, min_cases=2)
    vecs = np.array([[1, 0], [-1, 0]], np.float32)
    out = match_concepts(vecs, cfg, segs, emb, np.array([0, 0, 0, 1]), np.array([[1, 0], [0, 1]], np.float32))
    assert out["status"].tolist() == ["supported", "unsupported"]
    assert out.loc[0, "n_segments"] == 3 and out.loc[0, "n_cases"] == 3 and out.loc[0, "theme_ids"] == [0]
    assert out.loc[1, "quote_ids"] == [] and out.loc[1, "n_segments"] == 0


def test_keyness_drops_words_every_group_uses_alike():
    from pipeline.stages.label import keyness

    groups = {0: [["felt", "supervisor", "supervisor", "supervisor"]] * 2,
              1: [["felt", "training", "training", "training"]] * 2}
    k = keyness(groups, min_count=2)
    assert [t for t, _ in k[0]] == ["supervisor"] and [t for t, _ in k[1]] == ["training"]
    # p(t|g) = 6/8, p(t) = 6/16 -> 0.75 * log 2
    assert k[0][0][1] == pytest.approx(0.75 * np.log(2))


def test_a_keyword_must_be_shared_by_two_cases_of_the_theme():
    texts = ["Nobody taught us about tears.", "Training taught me nothing about tears.",
             "My grandmother's piano, the piano, the piano again.", "The piano piano piano piano."]
    segs = _segments(texts, ["A", "B", "C", "C"])
    emb = np.ones((4, 2), np.float32) / np.sqrt(2)
    c = Clustering(np.zeros(4, int), np.ones(4, np.float32), np.zeros(4, bool), 0)
    kw = label_themes(segs, emb, c, LabelConfig())["keywords"].iloc[0]
    assert "taught" in kw and "tears" in kw and "piano" not in kw


def test_max_cluster_share_splits_a_block_holding_most_of_the_study():
    from pipeline.errors import ConfigError
    from pipeline.stages.cluster import HDBSCANClusterer, HDBSCANClustererV2

    rng = np.random.default_rng(0)
    # two overlapping blobs HDBSCAN merges into one theme of 300, and a far one
    X = np.vstack([rng.normal((0, 0), 0.6, (150, 2)), rng.normal((1.6, 0), 0.6, (150, 2)),
                   rng.normal((40, 40), 0.6, (60, 2))])
    free = HDBSCANClusterer(min_cluster_size=10).fit(X)
    assert np.bincount(free.labels_[free.labels_ >= 0]).max() == 300
    capped = HDBSCANClustererV2(min_cluster_size=10).fit(X)
    assert capped.max_cluster_size_ == 90                       # a quarter of 360
    sizes = np.bincount(capped.labels_[capped.labels_ >= 0])
    assert sizes.max() <= 90 and len(sizes) > 2
    with pytest.raises(ConfigError, match="max_cluster_share"):
        HDBSCANClusterer(min_cluster_size=10, max_cluster_share=1.5).fit(X)


def test_v2_defaults_differ_from_v1_only_where_documented():
    from pipeline.registry import get_params
    from pipeline.stages.cluster import HDBSCANClusterer, HDBSCANClustererV2
    from pipeline.stages.embed import SentenceTransformerEmbedder, SentenceTransformerEmbedderV2
    from pipeline.stages.reduce import UMAPReducer, UMAPReducerV2

    for v1, v2, changed in ((HDBSCANClusterer, HDBSCANClustererV2, {"max_cluster_share": 0.25}),
                            (UMAPReducer, UMAPReducerV2, {"n_epochs": 200}),
                            (SentenceTransformerEmbedder, SentenceTransformerEmbedderV2,
                             {"quantize": "int8"})):
        p1, p2 = get_params(v1()), get_params(v2())
        assert {k: v for k, v in p2.items() if p1[k] != v} == changed


def test_umap_epochs_reach_umap(monkeypatch):
    import umap

    from pipeline.stages.reduce import UMAPReducer, UMAPReducerV2

    seen = []

    class Fake:
        def __init__(self, **kw):
            seen.append(kw["n_epochs"])
            self.n = kw["n_components"]

        def fit_transform(self, X):
            return np.zeros((len(X), self.n))

    monkeypatch.setattr(umap, "UMAP", Fake)
    X = np.random.default_rng(0).normal(size=(40, 8)).astype(np.float32)
    UMAPReducerV2(random_state=0).fit_transform(X)
    UMAPReducer(random_state=0).fit_transform(X)
    assert seen == [200, None]


def test_vocabulary_cache_serves_the_same_vocabulary_and_misses_on_change(tmp_path, monkeypatch):
    import pipeline.compose as compose
    from pipeline.cache import Cache

    texts = ["Nobody taught us about crying, um, in training.", "My supervisor helped me.",
             "Jess cried and I cried too."]
    cache = Cache(tmp_path)
    first = compose.vocabulary(texts, ["helped"], cache)
    assert first == build_vocabulary(texts, ["helped"])
    calls = []
    monkeypatch.setattr(compose, "build_vocabulary", lambda *a: calls.append(a) or first)
    assert compose.vocabulary(texts, ["helped"], cache) == first and calls == []
    compose.vocabulary(texts[:2], ["helped"], cache)                # other texts
    compose.vocabulary(texts, [], cache)                            # other stop words
    assert len(calls) == 2
    entries = list((tmp_path / "vocabulary").glob("*.npz"))
    assert len(entries) == 3
    assert not any(b"supervisor helped" in f.read_bytes() for f in entries)   # lemmas only
    for f in entries:                                               # unreadable: built again
        f.write_bytes(b"{not an entry")
    compose.vocabulary(texts, ["helped"], cache)
    assert len(calls) == 3


def test_a_transcriber_note_is_never_cut_in_half():
    seg = SentenceSegmenter(target_words=3, max_words=10, min_words=1)
    text = ("And don't cry to be seen to be caring. [laughs] That's the other thing. "
            "It has to be real (I mean it). [pause] Yes. (inaudible) Then we stopped.")
    pieces = [text[s:e] for s, e in seg._spans([text])[0]]
    assert "[laughs] That's the other thing." in pieces
    for p in pieces:
        assert p.count("[") == p.count("]") and p.count("(") == p.count(")"), p
    assert "".join(pieces).replace(" ", "") == text.replace(" ", "")


def test_a_case_that_gives_no_segment_is_named():
    """A case whose participant said only backchannels and short replies drops out of
    the study; the segmentation names it rather than leave only turn counts."""
    a = corpus_from("I: Tell me about the time you cried with a client.\n"
                    "P: It was in my second year, with a client whose mother had died.\n")
    b = corpus_from("I: Tell me about it.\nP: Yeah.\nI: And then?\nP: Mm-hmm.\nP: No.\n")
    turns = pd.concat([a.turns, b.turns.assign(case_id="quiet")], ignore_index=True)
    corpus = Corpus(turns, pd.DataFrame({"case_id": ["c", "quiet"]}),
                    {**a.sources, "quiet": b.sources["c"]})
    seg = SentenceSegmenter().segment(corpus)
    assert set(seg.segments["case_id"]) == {"c"}
    assert seg.counts["cases_without_segments"] == 1
    (note,) = [s for s in seg.skipped if "case(s)" in s.what]
    assert note.what == "1 case(s): quiet" and "not analysed" in note.reason


def test_the_turns_and_units_left_out_are_named_where_they_are():
    """The report and manifest count the backchannel turns and too-short units left out;
    each is named (case:turn, and a unit's characters in its source), so the counts
    trace back to the transcript."""
    text = ("I: Tell me about the time you cried with a client.\n"
            "P: Yeah, yeah.\n"
            "P: It was in my second year, with a client whose mother had died.\n"
            "I: Did your training cover it?\n"
            "P: Never in training.\n")
    corpus = corpus_from(text)
    seg = SentenceSegmenter().segment(corpus)
    assert seg.counts["turns_backchannel"] == 1 and seg.counts["units_too_short"] == 1
    (turns,) = [s for s in seg.skipped if "backchannel" in s.reason]
    assert turns.what == "1 turns: c:1"
    (units,) = [s for s in seg.skipped if "fewer than" in s.reason]
    at = re.fullmatch(r"1 units: c:4 \(chars (\d+)-(\d+)\)", units.what)
    assert at and text[int(at.group(1)):int(at.group(2))].strip() == "Never in training."


def test_units_of_line_numbers_or_notes_alone_are_left_out_and_named():
    """A transcript exported with its line numbers, or taken down by automatic
    transcription while a slide was shown, holds turns such as "63 64 65 66 67 68":
    no words of the participant's, yet long enough to pass as a unit, and every case of
    such a study has them, so they made a category of their own. They are left out
    and named as the too-short units are; the numbers stay in a unit that also holds
    words, which is the participant's."""
    text = ("I: Tell me about the time you cried with a client.\n"
            "P: 63 64 65 66 67 68 69 70 71 72\n"
            "P: [inaudible] [crosstalk] [laughs] [inaudible] [crosstalk]\n"
            "P: It was in my second year 41 42 43 44 45 46, with a client whose mother had died.\n")
    corpus = corpus_from(text)
    seg = SentenceSegmenter().segment(corpus)
    assert seg.segments["turn_index"].tolist() == [3]
    assert "41 42 43 44 45 46" in seg.segments["text"].iat[0]
    assert seg.counts["units_no_words"] == 2 and seg.counts["units_too_short"] == 0
    (units,) = [s for s in seg.skipped if "line numbers" in s.reason]
    where = re.findall(r"c:(\d+) \(chars (\d+)-(\d+)\)", units.what)
    assert units.what.startswith("2 units: ") and [w[0] for w in where] == ["1", "2"]
    assert text[int(where[0][1]):int(where[0][2])].strip() == "63 64 65 66 67 68 69 70 71 72"


def test_umap_lays_out_identical_rows_once():
    """Copies of one text (a "Thank you." in every interview) formed a component of
    their own in the neighbour graph, and UMAP's layout of such a graph changed from
    one run to the next with the same seed: the map is laid out on distinct rows, and
    every copy takes its row's place."""
    from pipeline.stages.reduce import UMAPReducerV2

    rng = np.random.default_rng(3)
    rows = rng.normal(size=(30, 16)).astype(np.float32)
    X = np.vstack([rows, np.repeat(rows[:1], 6, axis=0), rows[5:8]])
    reducer = UMAPReducerV2(n_components=2, random_state=7)
    out = reducer.fit_transform(X)
    assert reducer.graph_components_ == 1
    np.testing.assert_array_equal(out[30:36], np.repeat(out[:1], 6, axis=0))
    np.testing.assert_array_equal(out[36:], out[5:8])
    again = UMAPReducerV2(n_components=2, random_state=7).fit_transform(X)
    np.testing.assert_array_equal(out, again)
