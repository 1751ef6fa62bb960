"""The CQR analysis of a run (``analysis: consensa.CQR.v1``): the three steps of
Consensual Qualitative Research, proposed from the segments (Hill et al. 1997,
2005; Hill 2012).

1. **Domains** start from the interview protocol: the team's own
   (``protocol.file`` or ``protocol.areas``) or the one inferred from the
   interviewer's questions (:mod:`pipeline.stages.protocol`). They are checked
   against what the segments say: moves, merges, content no area covers. The
   interview frame (greetings, background, closing thanks) is a domain that is
   listed but left out of the cross-analysis unless ``protocol.include_frame``.
2. **Core ideas**: one per case and domain, short and close to the participant's
   words (:mod:`pipeline.stages.coreideas`).
3. **Cross-analysis**: categories and subcategories within each domain, with
   honest frequency labels and the flags single story / thin / unstable /
   minimal responses / answered no
   (:mod:`pipeline.stages.crossanalysis`), named with phrases their quotes contain
   (:mod:`pipeline.stages.naming`).

The stages stay pure; this module turns their results into the run's tables, so
that everything downstream (the review, the web app, the exchange formats, the
report) reads a CQR run as it reads a themes run: each top-level category is a
row of ``themes`` and each segment carries its category as ``theme``. What only a
CQR run has (subcategories, flags, core ideas, the protocol) is in its own tables.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Mapping
from contextlib import contextmanager

import numpy as np
import pandas as pd

from .stages.coreideas import core_ideas, count_words, tidy_utterance
from .stages.cqr import CrossAnalysis, frequency_label
from .stages.crossanalysis import ANSWERED_NO, MINIMAL, answered_no_mask, cross_analyse
from .stages.protocol import (
    FRAME_DOMAIN,
    infer_protocol,
    propose_domains_from_protocol,
    protocol_to_yaml,
    question_centres,
)
from .types import (
    ASSIGNED_SEGMENT_COLUMNS,
    CATEGORY_TABLE_COLUMNS,
    CQR_COLUMNS,
    DOMAIN_COLUMNS,
    THEME_COLUMNS,
)

Encoder = Callable[[list[str]], np.ndarray]

#: the name of the one domain of a study where no protocol was given or found
#: (no interviewer turns: written answers, monologues)
WHOLE_STUDY = "Whole study (no interview protocol given or found)"



def cqr_analysis(segments: pd.DataFrame, vectors: np.ndarray, turns: pd.DataFrame,
                 encode: Encoder, cfg, coords: np.ndarray | None, *,
                 stability: Mapping[int, bool] | None = None, llm=None,
                 cache=None) -> CrossAnalysis:
    """The CQR analysis of ``segments`` (SEGMENT_COLUMNS; ``vectors`` their unit
    embeddings, ``turns`` every turn ingest read, ``encode`` the run's embedder,
    ``cfg`` the RunConfig, ``coords`` the 2-D map, or None while it is being made:
    the caller then places the segments with :func:`on_map`).

    Returns the run's tables as :class:`~pipeline.stages.cqr.CrossAnalysis`, with
    ``categories``, ``core_ideas``, ``protocol`` (the YAML a team edits and passes
    back as ``protocol.file``), ``prompts`` and ``merges`` filled in.

    ``cache`` (the run's :class:`~pipeline.cache.Cache`) keeps what a re-run with new
    settings of a later step would compute again: the phrases parsed for the names
    (a text's phrases depend on that text alone), the groups the clusterer finds in each
    domain and category (they depend only on the vectors clustered), each category's
    stance split (on its vectors and the axes), the names (on the
    categories' segments) and the sentences chosen for each core idea (on the segments
    and their domain or category). No entry holds a phrase as spoken.

    ``llm`` (a bound :class:`~pipeline.stages.llm.LocalLLM`, from the config's
    ``llm`` section) names and defines each category from its quotes and keywords,
    and writes each core idea from the case's segments in the domain; where it gives
    no answer (``fallback: extractive``) the extractive name or core idea stays.
    The extractive ones are kept beside them (``extractive_name``,
    ``extractive_core_idea``), so the judges see both.
    """
    seg = segments.reset_index(drop=True)
    n = len(seg)
    cases = seg["case_id"].astype(str).tolist()
    inference = infer_protocol(turns, seg, encode, cfg.protocol, segment_vectors=vectors)
    protocol = inference.protocol
    content_areas = [a for a in protocol.areas if not a.frame]
    placed = np.zeros(n, dtype=bool)
    if content_areas:
        area_vectors = None
        talk = np.asarray(inference.segment_small_talk, dtype=bool)
        if not np.isin(inference.segment_area[~talk], [a.area_id for a in content_areas]).any():
            # answers without their questions (the participant's words only, or after
            # a greeting alone; the protocol given): the areas' own questions start
            # the domains
            area_vectors = question_centres(protocol, encode)
        proposal = propose_domains_from_protocol(
            vectors, inference.segment_area, protocol, cfg.protocol, cases,
            segment_small_talk=inference.segment_small_talk, segment_text=seg["text"].tolist(),
            area_vectors=area_vectors, segment_greeted=inference.segment_greeted,
            segment_frame_similarity=inference.segment_frame_similarity)
        placed = np.asarray(proposal.placed, dtype=bool)
        proposed = np.asarray(proposal.proposed_domain, dtype=np.int64)
        # an area no segment is in (a section heading read as a prompt, "Main
        # questions", or a question whose answers all went elsewhere) proposes no
        # domain: the judges had an empty domain to settle. protocol.yaml keeps it.
        empty = proposal.domains["n_segments"] == 0
        dom_rows = proposal.domains[~empty].reset_index(drop=True)
        n_empty_areas = int((empty & (proposal.domains["kind"] == "area")).sum())
        merges = proposal.merges
        moved = np.asarray(proposal.moved, dtype=bool)
        # the domain of the question each segment answers: where a moved one came from
        asked = np.asarray(proposal.segment_domain, dtype=np.int64)
    else:
        # no interviewer questions to start from: the study is one domain, and its
        # categories are found over all segments (small talk still set apart)
        talk = np.asarray(inference.segment_small_talk, dtype=bool)
        proposed = np.where(talk, 1, 0).astype(np.int64)
        dom_rows = pd.DataFrame([
            {"domain_id": 0, "name": WHOLE_STUDY, "kind": "study", "area_ids": [],
             "n_segments": int((~talk).sum()), "n_cases": len(set(np.array(cases)[~talk])),
             "in_cross_analysis": True, "n_moved_in": 0, "n_moved_out": 0, "example_row": -1},
            {"domain_id": 1, "name": FRAME_DOMAIN, "kind": "frame", "area_ids": [],
             "n_segments": int(talk.sum()), "n_cases": len(set(np.array(cases)[talk])),
             "in_cross_analysis": bool(cfg.protocol.include_frame), "n_moved_in": 0,
             "n_moved_out": 0, "example_row": -1}])
        dom_rows = dom_rows[dom_rows["n_segments"] > 0].reset_index(drop=True)
        merges = pd.DataFrame(columns=["area_a", "area_b", "name_a", "name_b", "similarity"])
        moved = np.zeros(n, dtype=bool)
        asked = proposed.copy()
        n_empty_areas = 0
    dom_rows["area_ids"] = [_int_list(v) for v in dom_rows["area_ids"]]
    frame_ids = tuple(int(d) for d in dom_rows.loc[dom_rows["kind"] == "frame", "domain_id"])
    n_total = int(seg["case_id"].nunique())

    # the cases that answered a domain's yes/no question "No.": a category of their own
    said_no = answered_no_mask(seg, turns, inference.turns) & (asked == proposed)
    xa = cross_analyse(seg, vectors, proposed, cfg.crossanalysis, cfg.cqr, encode=encode,
                       frame_domains=frame_ids, include_frame=cfg.protocol.include_frame,
                       stability=stability, n_cases_total=n_total, memory=cache,
                       answered_no=said_no)
    cats = xa.categories.copy()
    member_rows = {}
    for r in cats.itertuples():
        where = xa.category if r.kind == "category" else xa.subcategory
        member_rows[int(r.category_id)] = np.flatnonzero(where == r.category_id)
    # the core ideas need the domains and the categories, never the names: they are
    # chosen on a second thread while the categories are named (see _beside)
    in_cross = {int(d) for d, keep in zip(dom_rows["domain_id"], dom_rows["in_cross_analysis"])
                if keep}
    core_dom = np.array([int(d) if int(d) in in_cross else -1 for d in proposed], dtype=np.int64)
    dom_name = dict(zip(dom_rows["domain_id"].astype(int), dom_rows["name"]))
    encode = _one_call_at_a_time(encode)
    with _beside(_core_ideas_of, seg, core_dom, vectors, xa, cfg, encode, cache) as ideas_job:
        cats = _named(cats, seg, cases, member_rows, vectors, encode, cfg, cache, llm, dom_rows)
        ideas, illustrative = ideas_job.result()
    seg_ids = seg["segment_id"].astype(str).to_numpy()
    cats["segment_ids"] = [seg_ids[member_rows[int(c)]].tolist() for c in cats["category_id"]]

    # the review's unit is the top-level category: theme ids number them in display order
    top = cats[cats["kind"] == "category"]
    theme_of_cat = {int(c): t for t, c in enumerate(top["category_id"])}
    cats["theme_id"] = [theme_of_cat[int(c if p < 0 else p)]
                        for c, p in zip(cats["category_id"], cats["parent_id"])]
    cats = cats[list(CATEGORY_TABLE_COLUMNS)]

    theme = np.array([theme_of_cat.get(int(c), -1) for c in xa.category], dtype=np.int64)
    themes = _themes(top, theme_of_cat, member_rows, seg, xa, n_total)
    out = seg.copy()
    out["theme"] = theme
    theme_names = themes["name"].tolist()
    out["theme_name"] = [theme_names[t] if t >= 0 else "" for t in theme]
    out["domain_id"] = proposed
    out["domain_name"] = [dom_name.get(int(d), "") for d in proposed]
    out["strength"] = np.asarray(xa.strength, dtype=float)
    out["reassigned"] = np.asarray(xa.reassigned, dtype=bool)
    out = on_map(out, coords)
    out = out[list(ASSIGNED_SEGMENT_COLUMNS)]
    out["moved_domain"] = moved
    out["counted"] = np.asarray(xa.counted, dtype=bool)
    # a subcategory's label counts its own way (its outliers reassigned within the
    # category): which subcategory a segment is in and whether it counts there, so that
    # a subcategory's counted cases trace back to its segments as a category's do
    out["subcategory_id"] = np.asarray(xa.subcategory, dtype=np.int64)
    out["subcategory_counted"] = np.asarray(xa.subcategory_counted, dtype=bool)
    out["question_domain_id"] = asked

    domains = _domains(dom_rows, themes, out, n_total, cfg)
    ideas.insert(2, "domain", [dom_name.get(int(d), "") for d in ideas["domain_id"]])
    ideas["spans"] = [[f"{s}:{a}-{b}" for s, a, b in spans] for spans in ideas["spans"]]
    ideas["segment_ids"] = [list(v) for v in ideas["segment_ids"]]
    ideas["extractive_core_idea"] = ideas["core_idea"]
    if llm is not None:
        from .stages.llm import preview

        by_case_domain: dict[tuple[str, int], list[str]] = {}
        for i in np.flatnonzero(core_dom >= 0):
            by_case_domain.setdefault((cases[i], int(core_dom[i])), []).append(str(seg["text"].iat[i]))
        written = [llm.core_idea(by_case_domain[(str(c), int(d))],
                                 about=f"the core idea of case {preview(str(c))} in domain "
                                       f"{preview(str(dom_name.get(int(d), '')))}")
                   for c, d in zip(ideas["case_id"], ideas["domain_id"])]
        ideas["core_idea"] = [w if w else e for w, e in zip(written, ideas["core_idea"])]

    table = cqr_rows(cats, domains, seg, n_total, illustrative)
    # the workbooks, the web pages and the report show a category's proposed core
    # idea: the one its row of the CQR table shows, so all of them show one text
    shown_idea = {int(c): q for c, q, lv in zip(table["category_id"], table["quote"],
                                               table["level"]) if lv == "category"}
    themes["core_idea"] = [shown_idea.get(int(c), idea) for c, idea in
                           zip(top["category_id"], themes["core_idea"])]
    counts = {f"crossanalysis_{k}": int(v) for k, v in xa.counts.items()}
    counts.update({f"protocol_{k}": int(v) for k, v in inference.counts.items()})
    counts["protocol_areas"] = len(content_areas)
    counts["protocol_areas_without_segments"] = n_empty_areas
    counts["segments_moved_domain"] = int(moved.sum())
    counts["segments_placed_by_content"] = int(placed.sum())
    return CrossAnalysis(segments=out, themes=themes, domains=domains, table=table,
                         n_cases=n_total, categories=cats, core_ideas=ideas,
                         protocol=protocol_to_yaml(protocol, inference.turns), prompts=inference.turns,
                         merges=merges, counts=counts)


def _named(cats: pd.DataFrame, seg: pd.DataFrame, cases: list[str],
           member_rows: dict[int, np.ndarray], vectors: np.ndarray, encode: Encoder, cfg,
           cache, llm, dom_rows: pd.DataFrame) -> pd.DataFrame:
    """``cats`` with each (sub)category's extractive name, its alternatives and
    keywords, and, with a language model, the model's name and definition."""
    # one array of the texts, indexed per category: a pandas .iloc a category took
    # 1.8 s (profiled) of a 10k re-run with a few hundred (sub)categories
    texts = seg["text"].to_numpy(dtype=object)
    names = cached_names(cache)(
        {c: texts[m].tolist() for c, m in member_rows.items()},
        {c: [cases[i] for i in m] for c, m in member_rows.items()},
        dict(zip(cats["category_id"].astype(int), cats["domain_id"].astype(int))),
        encode, cfg.naming,
        vectors_by_category={c: vectors[m] for c, m in member_rows.items()})
    cats = cats.merge(names[["category_id", "name", "alternatives", "keywords"]],
                      on="category_id", how="left")
    cats["name"] = _fill_names(cats, seg, None if cache is None else cached_phrases(cache))
    cats["name"], cats["alternatives"] = _name_replies(cats, seg, member_rows)
    cats["extractive_name"] = cats["name"]
    cats["definition"] = ""
    if llm is not None:
        from .stages.llm import preview

        dom_name = dict(zip(dom_rows["domain_id"].astype(int), dom_rows["name"]))
        text_by_id = dict(zip(seg["segment_id"].astype(str), seg["text"].astype(str)))
        for i, r in enumerate(cats.itertuples()):
            quotes = [text_by_id[q] for q in r.quote_ids if q in text_by_id]
            about = (f"naming {r.kind} {int(r.category_id)} ({preview(str(r.name))}) in domain "
                     f"{preview(str(dom_name.get(int(r.domain_id), '')))}")
            proposal = llm.name_category(quotes, list(r.keywords), about=about)
            if proposal is not None:
                cats.iat[i, cats.columns.get_loc("name")] = proposal.name
                cats.iat[i, cats.columns.get_loc("definition")] = proposal.definition
        llm.count_duplicate_names(_keep_model_names_distinct(cats))
    return cats


def _core_ideas_of(seg: pd.DataFrame, core_dom: np.ndarray, vectors: np.ndarray, xa, cfg,
                   encode: Encoder, cache) -> tuple[pd.DataFrame, dict]:
    """The core idea of each case in each domain of the cross-analysis (``core_dom``:
    a segment's domain, -1 outside it), and the illustrative core ideas of the
    (sub)categories: ``(ideas, {(level, category id, case): (text, segment ids)})``.

    An illustrative core idea is what a (sub)category's most central case said there,
    in fewer words: the core-idea step run with the (sub)categories as its groups, so
    the sentences are chosen for how central they are to the category. Only the cases
    of its first ILLUSTRATION_CANDIDATES quotes can be shown (:func:`cqr_rows`), so
    only those pairs are computed."""
    ideas = core_ideas(seg, core_dom, vectors, cfg.core_ideas, encode=encode, memory=cache)
    case_by_id = dict(zip(seg["segment_id"].astype(str), seg["case_id"].astype(str)))
    shown: dict[str, list[tuple[str, int]]] = {"category": [], "subcategory": []}
    for r in xa.categories.itertuples():
        for q in list(r.quote_ids)[:ILLUSTRATION_CANDIDATES]:
            shown["category" if r.parent_id < 0 else "subcategory"].append(
                (case_by_id.get(str(q), ""), int(r.category_id)))
    illustrative = {}
    for level, arr in (("category", xa.category), ("subcategory", xa.subcategory)):
        df = core_ideas(seg, np.asarray(arr, dtype=np.int64), vectors, cfg.core_ideas,
                        only=shown[level], memory=cache)
        for r in df.itertuples():
            illustrative[(level, int(r.domain_id), str(r.case_id))] = (
                r.core_idea, [str(s) for s in r.segment_ids])
    return ideas, illustrative


def _one_call_at_a_time(encode: Encoder) -> Encoder:
    """``encode`` behind a lock. The embedder is one model with one tokenizer, and
    Hugging Face's fast tokenizers refuse to be entered from two threads at once
    ("Already borrowed"); the other thread's Python work goes on meanwhile."""
    lock = threading.Lock()

    def encode_locked(texts: list[str]) -> np.ndarray:
        with lock:
            return encode(texts)

    return encode_locked


@contextmanager
def _beside(fn: Callable, *args):
    """``fn(*args)`` on a second thread while the ``with`` block runs; the block gets
    its :class:`~concurrent.futures.Future`, and leaving it waits for ``fn``.

    Why: naming the categories is spaCy's parser, Python that holds its lock, on one
    processor; choosing the core ideas is mostly the embedder, whose arithmetic runs
    outside that lock on every processor. Side by side, a laptop does both in little
    more than the time of the longer (bench/README.md, "Speed"); the tables are byte
    for byte the same, as neither step reads what the other makes.

    With the second thread running, spaCy, when naming needs it, is imported with
    PyTorch (pipeline/stages/nlp.py): naming that parses anew embeds new candidate
    names too, which loads PyTorch anyway; a re-run whose names come from the cache
    imports neither."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="consensa-core-ideas") as pool:
        yield pool.submit(fn, *args)


def on_map(segments: pd.DataFrame, coords: np.ndarray | None) -> pd.DataFrame:
    """``segments`` with their places on the 2-D map (``map_x``, ``map_y``); NaN
    where ``coords`` is None, a map still being made (the run fills it in)."""
    out = segments.copy()
    if coords is None:
        out["map_x"] = out["map_y"] = np.nan
        return out
    coords = np.asarray(coords)
    out["map_x"] = coords[:, 0].astype(float)
    out["map_y"] = coords[:, 1].astype(float) if coords.shape[1] > 1 else 0.0
    return out


def cached_phrases(cache):
    """:func:`~pipeline.stages.naming.extract_phrases` through ``cache``: one row per
    text (:meth:`~pipeline.cache.Cache.get_rows`, read and written a call at a time),
    keyed by the text, the parameters and the naming module's code (a change to how
    phrases are found is a miss). A text's phrases depend on that text alone, so
    a re-run whose categories changed (another sample of texts to parse, in another
    order) parses only the texts no run parsed before.

    An entry holds offsets, lemmas and kinds, never the phrases' words as spoken: a
    cache holds no transcript text (:mod:`pipeline.cache`). The spoken form is cut
    from the given text again when the entry is read, as the extractor cuts it."""
    import json

    from . import cache as cache_mod
    from .stages import naming

    def extract(texts, batch_size: int = 64, max_words: int = 6):
        texts = [str(t) for t in texts]
        code = cache_mod.code_digest(naming.extract_phrases)
        keys = [cache_mod.key("consensa.phrases.text", {"max_words": max_words},
                              cache_mod.digest(t), code) for t in texts]

        def decoded(text: str, value: bytes) -> list | None:
            try:
                rows = json.loads(value.decode("utf-8"))
                if any(len(r) != 5 for r in rows):
                    return None         # an entry of another layout: a miss
                return [naming.Phrase(naming.spoken_form(text, int(a), int(b)), int(a), int(b),
                                      tuple(lem), tuple(key), kind)
                        for a, b, lem, key, kind in rows]
            except (ValueError, TypeError):
                return None             # a damaged row: a miss, parsed again

        stored = cache.get_rows("phrases", set(keys))
        found: dict[int, list] = {}
        for i, (text, k) in enumerate(zip(texts, keys)):
            hit = decoded(text, stored[k]) if k in stored else None
            if hit is not None:
                found[i] = hit
        todo = [i for i in range(len(texts)) if i not in found]
        if todo:
            parsed = naming.extract_phrases([texts[i] for i in todo], batch_size=batch_size,
                                            max_words=max_words)
            new = {}
            for i, ps in zip(todo, parsed, strict=True):
                found[i] = ps
                rows = [[p.start, p.end, list(p.lemmas), list(p.key), p.kind] for p in ps]
                new[keys[i]] = json.dumps(rows).encode("utf-8")
            cache.put_rows("phrases", new)
        return [found[i] for i in range(len(texts))]

    return extract


def cached_names(cache):
    """:func:`~pipeline.stages.naming.name_categories` through ``cache`` (None: no
    cache), with its phrases through :func:`cached_phrases`: one entry per call,
    keyed by every category's texts, cases, domain and vectors, the naming config
    and the naming module's code. A re-run whose categories are what they were
    (a new setting that changed none of them) reads the names.

    The entry holds where each name and alternative was said (the text's position
    among the inputs and character offsets: a name is a phrase its quotes contain)
    and the keywords (single words, as the vocabulary entry holds them), never a
    phrase as spoken. A name not found at a place its category's quotes give is not
    kept, and the next run computes the names again. ``encode`` is taken to be the
    embedder that made the vectors, so the vectors stand for it in the key."""
    import json

    from . import cache as cache_mod
    from .stages import naming

    def run(texts_by_category, cases_by_category, domain_of_category, encode, config, *,
            vectors_by_category):
        def compute():
            return naming.name_categories(
                texts_by_category, cases_by_category, domain_of_category, encode, config,
                vectors_by_category=vectors_by_category,
                phrase_extractor=cached_phrases(cache) if cache is not None else None)

        if cache is None:
            return compute()
        cats = [int(c) for c in texts_by_category]
        texts = [str(t) for c in texts_by_category for t in texts_by_category[c]]
        owner = [int(c) for c in texts_by_category for _ in texts_by_category[c]]
        entry = cache_mod.key(
            "consensa.names", config.model_dump(),
            cache_mod.digest(cats, texts, [str(x) for c in cats for x in cases_by_category[c]],
                             [int(domain_of_category[c]) for c in cats],
                             *[np.asarray(vectors_by_category[c], dtype=np.float32) for c in cats]),
            cache_mod.code_digest(naming.name_categories))
        blanked: dict[int, str] = {}
        texts_of: dict[int, list[int]] = {}
        for i, c in enumerate(owner):
            texts_of.setdefault(c, []).append(i)

        def said(i: int, a: int, b: int) -> str:
            return naming.name_as_said(texts[i], a, b)

        def where(name: str, c: int) -> list[int] | None:
            """(text, start, end) of a place in category ``c`` where ``name`` is said."""
            words = name.split()
            pattern = re.compile(r"(?<![\w'’-])" + r"\s+".join(map(re.escape, words)) +
                                 r"(?![\w-])", re.I)
            for i in texts_of.get(c, []):
                if i not in blanked:
                    blanked[i] = naming.blank_transcriber_notes(texts[i])
                for m in pattern.finditer(blanked[i]):
                    if said(i, m.start(), m.end()) == name:
                        return [i, m.start(), m.end()]
            return None

        def to_arrays(df: pd.DataFrame) -> dict[str, np.ndarray] | None:
            rows = []
            for r in df.itertuples():
                c = int(r.category_id)
                places = [where(x, c) for x in ([r.name] if r.name else []) + list(r.alternatives)]
                if any(p is None for p in places):
                    return None
                rows.append({"c": c, "name": places[0] if r.name else None,
                             "alternatives": places[1:] if r.name else places,
                             "keywords": list(r.keywords), "score": float(r.name_score),
                             "support": int(r.name_support), "cases": int(r.name_cases)})
            return {"json": np.array(json.dumps(rows))}

        def from_arrays(arrays) -> pd.DataFrame | None:
            rows = json.loads(str(arrays["json"]))
            if [r["c"] for r in rows] != cats:
                return None
            return pd.DataFrame([{"category_id": r["c"],
                                  "name": said(*r["name"]) if r["name"] else "",
                                  "name_score": r["score"],
                                  "alternatives": [said(*a) for a in r["alternatives"]],
                                  "keywords": r["keywords"], "name_support": r["support"],
                                  "name_cases": r["cases"]} for r in rows],
                                columns=list(naming.NAME_COLUMNS))

        hit = cache.get("names", entry, from_arrays)
        if hit is not None:
            return hit
        value = compute()
        arrays = to_arrays(value)
        if arrays is not None:        # else a name was not found as said: not kept
            cache.put("names", entry, arrays)
        return value

    return run


def _fill_names(cats: pd.DataFrame, seg: pd.DataFrame, phrases=None) -> list[str]:
    """Every category gets a name. Where the naming stage found no phrase that meets
    its rules (few or near-identical segments), the name is the first phrase of two
    words or more of the category's most central quote, so it still is a phrase its
    quotes contain; failing that, the first words of that quote after any hesitation
    or joining word it opens with ("So I learned ..." gives "I learned ..."). Such a
    name is never one another category of the run has, in any domain (compared by
    :func:`~pipeline.stages.naming.name_key`, the naming stage's rule): the next
    quote's phrase is taken, or the name numbered.

    ``phrases``: :func:`~pipeline.stages.naming.extract_phrases` or the run's
    :func:`cached_phrases`, through which a re-run reads those quotes' phrases and
    loads no parser (at 10,000 segments, about a second of a re-run)."""
    from .stages.naming import extract_phrases, name_key, strip_transcriber_notes

    phrases = extract_phrases if phrases is None else phrases
    text_by_id = dict(zip(seg["segment_id"].astype(str), seg["text"].astype(str)))
    # the names of the run's (sub)categories: a fallback name is never another's (two
    # stance subcategories of one category were both "Work as a nurse coordinator", a
    # phrase all their quotes share, and the judges could not tell them apart; two
    # domains' codes of one name read as one in the codebook and the exports)
    used = {name_key(r.name) for r in cats.itertuples()
            if isinstance(r.name, str) and r.name.strip()}
    names = []
    for r in cats.itertuples():
        name = str(r.name) if isinstance(r.name, str) else ""
        if not name.strip():
            alternatives = list(r.alternatives) if r.alternatives is not None else []
            name = next((a for a in alternatives if name_key(a) not in used), "")
        if not name.strip():
            candidates = []
            for q in list(r.quote_ids)[:3]:
                quote = text_by_id.get(q, "")
                found = [p.text for p in phrases([quote])[0]
                         if 2 <= len(p.text.split()) <= 6] if quote else []
                # the first words after a hesitation or joining word ("So I learned to
                # wait" -> "I learned to wait"): a name does not open on how the reply began
                bare = strip_transcriber_notes(quote)
                said = _without_open_end((_HESITATION.sub("", bare) or bare).split()[:5])
                candidates += found + ([" ".join(said)] if said else [])
            candidates = [c[:1].upper() + c[1:] for c in candidates]
            name = next((c for c in candidates if name_key(c) not in used), "")
            if not name and candidates:
                k = 2
                while name_key(f"{candidates[0]} ({k})") in used:
                    k += 1
                name = f"{candidates[0]} ({k})"
            name = name or f"Category {int(r.category_id)}"
            used.add(name_key(name))
        names.append(name)
    return names


def _without_open_end(words: list[str]) -> list[str]:
    """The first words of a quote as a name, not ending on a word that leaves it open
    ("It's just overwhelming when you" -> "It's just overwhelming"): trailing stop
    words go, while two words are left; a word that ends a sentence ("one.") ends it."""
    from .stages.nlp import stop_words

    stop = stop_words()
    words = list(words)
    while len(words) > 2:
        bare = words[-1].strip(" ,;:-–—…\"'“”‘’").casefold().replace("’", "'")
        if bare and bare not in stop and "'" not in bare:
            break
        words.pop()
    if words:
        words[-1] = words[-1].rstrip(" ,;:-–—")
    return words


#: hesitation sounds and joining words before a reply ("Um, maybe a five", "And, um,
#: yes"): not part of its name
_HESITATION = re.compile(r"^(?:(?:um+|uh+|er+m?|hm+|mm+|and|but|so|or)\b[\s,.…-]*)+", re.I)


def _tidy_words(text: str) -> list[str]:
    """The words of ``text``, for comparing it with its tidied form."""
    return re.findall(r"[\w'’]+", text.casefold())


def _name_replies(cats: pd.DataFrame, seg: pd.DataFrame,
                  member_rows: Mapping[int, np.ndarray]) -> tuple[list[str], list[list[str]]]:
    """A category of replies is named after them. One flagged *minimal responses* is
    named after the most central of such replies among its quotes ("Yeah, I guess
    so"), so that the judges see what it
    gathers; a phrase name would come from the one longer segment among them. A reply
    that reads clean as said (no filler or restart inside) and whole in six words goes
    before a more central one: the name is a run of its words, never tidied. The
    phrase name goes first among its alternatives. Other categories keep theirs.

    A category flagged *answered no* is named after the negative reply most of its
    cases gave ("No", beside the domain's "Did your training prepare you for any of
    this?"; of replies as many cases gave, one of several words first, "Not at all"
    before "No"): its phrase name came
    from what the cases then told ("Vicarious trauma", of "one lecture on vicarious
    trauma"), which read as what the training had covered.

    A reply is never a name another category of the run has (compared by
    :func:`~pipeline.stages.naming.name_key`, the naming stage's rule): "Yeah" in two
    domains would read as one code. The next reply is taken; with none left, the
    category keeps its phrase name, which is distinct already."""
    from .stages.crossanalysis import negative_reply, says_little
    from .stages.naming import name_key, strip_transcriber_notes

    seg_ids = seg["segment_id"].astype(str).tolist()
    text_by_id = dict(zip(seg_ids, seg["text"].astype(str)))
    used = {name_key(str(n)) for n in cats["name"]}
    names, alternatives = [], []
    for r in cats.itertuples():
        alts = list(r.alternatives) if r.alternatives is not None else []
        reply = ""
        if ANSWERED_NO in list(r.flags):
            cases_of: dict[str, set[str]] = {}
            said_as: dict[str, str] = {}
            for i in member_rows[int(r.category_id)]:
                said = negative_reply(str(seg["text"].iat[i]))
                if said:
                    key = name_key(said)
                    cases_of.setdefault(key, set()).add(str(seg["case_id"].iat[i]))
                    said_as.setdefault(key, said)
            # the reply most cases gave; of as many, one of several words first
            candidates = [(-len(c), len(said_as[k].split()) < 2, k, said_as[k])
                          for k, c in cases_of.items()]
        elif MINIMAL in list(r.flags):
            # the quotes, most central first (one a case); then any member
            ids = [str(q) for q in r.quote_ids] + \
                [seg_ids[i] for i in member_rows[int(r.category_id)]]
            candidates = []
            for q in dict.fromkeys(ids):
                text = text_by_id.get(q, "")
                said = " ".join(strip_transcriber_notes(text).split()).strip(" -–—,.;:…")
                said = _HESITATION.sub("", said)
                if said and says_little(text):
                    first = re.split(r"(?<=[.?!…])\s+", said)[0]    # one sentence
                    said = first if len(first.split()) >= 2 else said
                    words = " ".join(said.split()[:6]).rstrip(" -–—,.;:")
                    # a reply that reads clean as said, and whole in six words, before
                    # a more central one: not "And, uh, well, uh, I think" (cut short,
                    # fillers inside) when "I don't think so" is there
                    clean = _tidy_words(words) == _tidy_words(tidy_utterance(words))
                    candidates.append((not clean, len(said.split()) > 6, len(candidates), words))
        if MINIMAL in list(r.flags) or ANSWERED_NO in list(r.flags):
            own = name_key(str(r.name))
            reply = next((c[3] for c in sorted(candidates)
                          if name_key(c[3]) == own or name_key(c[3]) not in used), "")
            if reply:
                used.discard(own)
                used.add(name_key(reply))
        if reply:
            names.append(reply[:1].upper() + reply[1:])
            alternatives.append([str(r.name), *[a for a in alts if a != r.name]])
        else:
            names.append(str(r.name))
            alternatives.append(alts)
    return names, alternatives


def _int_list(value) -> list[int]:
    if isinstance(value, str):
        return [int(v) for v in value.replace(";", " ").split()]
    return [int(v) for v in (value if value is not None else [])]


def _themes(top: pd.DataFrame, theme_of_cat: dict[int, int], member_rows: dict[int, np.ndarray],
            seg: pd.DataFrame, xa, n_total: int) -> pd.DataFrame:
    """One theme row per top-level category. The frequency label is the honest one
    (counted cases); ``n_cases`` counts every case, reassigned outliers included, as
    the review and the exchange formats have always shown it."""
    texts = seg["text"].astype(str).to_numpy()
    ids = seg["segment_id"].astype(str).to_numpy()
    rows = []
    for r in top.itertuples():
        m = member_rows[int(r.category_id)]
        first = r.quote_ids[0] if len(r.quote_ids) else ""
        central = texts[np.flatnonzero(ids == first)[0]] if first else ""
        rows.append({
            "theme_id": theme_of_cat[int(r.category_id)], "name": r.name,
            "domain_id": int(r.domain_id), "keywords": list(r.keywords),
            "key_phrases": list(r.alternatives), "n_segments": int(r.n_segments),
            "n_cases": int(r.n_cases), "cases": list(r.cases),
            "frequency_label": r.frequency_label, "quote_ids": list(r.quote_ids),
            "core_idea": tidy_utterance(central) if central else "",
            "mean_strength": float(np.mean(xa.strength[m])) if len(m) else 0.0,
            "n_reassigned": int(r.n_reassigned),
            "flags": list(r.flags), "n_counted_cases": len(r.counted_cases),
            "label_if_reassigned_counted": r.label_if_reassigned_counted,
            "definition": r.definition, "extractive_name": r.extractive_name})
    extra = ("flags", "n_counted_cases", "label_if_reassigned_counted", "definition",
             "extractive_name")
    return pd.DataFrame(rows, columns=[*THEME_COLUMNS, *extra])


def _keep_model_names_distinct(cats: pd.DataFrame) -> int:
    """Give back the extractive name (and no definition) to every (sub)category
    whose model name another (sub)category of the run also has, in any domain
    (compared by :func:`~pipeline.stages.naming.name_key`, the naming stage's rule),
    in place; the number of names given back.

    A model asked about one category at a time cannot see that it named two the
    same; two categories under one name would read as one in the CQR table, the
    codebook and the exports, and the judges could not tell which the name is for.
    The extractive names differ across the run; a name given back can meet another
    category's model name, so this goes on until none is shared."""
    from .stages.naming import name_key

    given_back = 0
    while True:
        model = cats["name"] != cats["extractive_name"]
        key = cats["name"].astype(str).map(name_key)
        same = model & (key.map(key.value_counts()) > 1)
        if not same.any():
            return given_back
        cats.loc[same, "name"] = cats.loc[same, "extractive_name"]
        cats.loc[same, "definition"] = ""
        given_back += int(same.sum())


def _domains(dom_rows: pd.DataFrame, themes: pd.DataFrame, segments: pd.DataFrame,
             n_total: int, cfg) -> pd.DataFrame:
    """The domains table: DOMAIN_COLUMNS, then what the protocol step says of each
    (kind: "area", "new", "frame" or "study"; in_cross_analysis; moves; area ids).

    The frame domain carries no frequency label: it is not a finding of the study."""
    rows = []
    for r in dom_rows.sort_values("domain_id").itertuples():
        d = int(r.domain_id)
        mine = themes[themes["domain_id"] == d]
        members = segments["domain_id"] == d
        n_cases = int(segments.loc[members, "case_id"].nunique())
        keywords: list[str] = []
        for kws in mine["keywords"]:
            keywords.extend(k for k in list(kws)[:2] if k not in keywords)
        in_cross = bool(r.in_cross_analysis)
        rows.append({
            "domain_id": d, "name": r.name, "keywords": keywords[:10],
            "theme_ids": [int(t) for t in mine["theme_id"]], "n_themes": int(len(mine)),
            "n_segments": int(members.sum()), "n_cases": n_cases,
            "frequency_label": frequency_label(n_cases, n_total, cfg.cqr)
            if in_cross and r.kind != "frame" else "",
            "is_miscellaneous": r.kind == "frame",
            "kind": r.kind, "in_cross_analysis": in_cross,
            "n_moved_in": int(r.n_moved_in), "n_moved_out": int(r.n_moved_out),
            "area_ids": list(r.area_ids)})
    return pd.DataFrame(rows, columns=[*DOMAIN_COLUMNS, "kind", "in_cross_analysis",
                                       "n_moved_in", "n_moved_out", "area_ids"])


#: how many of a (sub)category's most central quotes may give its illustrative core
#: idea (:func:`cqr_rows`)
ILLUSTRATION_CANDIDATES = 3
#: an illustrative core idea shorter than this goes after the other candidates, unless
#: the category gathers minimal responses
ILLUSTRATION_MIN_WORDS = 8


def _fresh(option: tuple[list[str], str], seen: set[str], quoted: list[set[str]]) -> bool:
    """An illustrative core idea not shown in a row above it: not the same text,
    nor half of its segments or more quoted by one such row."""
    ids, text = option
    return " ".join(text.split()) not in seen and not any(
        2 * len(set(ids) & shown) >= len(ids) for shown in quoted)


def cqr_rows(categories: pd.DataFrame, domains: pd.DataFrame, segments: pd.DataFrame,
             n_total: int,
             illustrative: Mapping[tuple[str, int, str], tuple[str, list[str]]]) -> pd.DataFrame:
    """The table a CQR paper prints, one row per category and subcategory in display
    order: domain, category, the honest frequency label over the counted cases,
    the flags, and an illustrative core idea: ``illustrative[(level, category_id,
    case)]`` (its text and the segments it was taken from), for the case of the
    category's most central quote; that quote tidied of fillers and false starts
    where there is none. ``quote_segment_ids`` lists every segment the core idea
    quotes, so each of its sentences traces back (``quote_segment_id``: the first).

    No two rows of a domain show the same core idea, nor one drawn mostly (half
    its segments or more) from the segments a row above quotes: a subcategory's
    most central case often says its part in the very sentences that illustrate
    the category above it, and a reader would take the repeat for an error. Such a
    row shows
    the core idea of the case of its next most central quote (of the first
    :data:`ILLUSTRATION_CANDIDATES`) that is not shown yet; when every one is, the
    first. Among those not shown yet, one of :data:`ILLUSTRATION_MIN_WORDS` words or
    more goes first, so a category is not shown by a line that says nothing of it;
    a category of minimal responses keeps its most central."""
    text_by_id = dict(zip(segments["segment_id"].astype(str), segments["text"].astype(str)))
    case_by_id = dict(zip(segments["segment_id"].astype(str), segments["case_id"].astype(str)))
    dom_name = dict(zip(domains["domain_id"].astype(int), domains["name"]))
    rows = []
    used: dict[int, set[str]] = {}
    quoted_ids: dict[int, list[set[str]]] = {}
    for r in categories.itertuples():
        level = "category" if r.parent_id < 0 else "subcategory"
        seen = used.setdefault(int(r.domain_id), set())
        options = []
        for q in [str(q) for q in list(r.quote_ids)[:ILLUSTRATION_CANDIDATES]]:
            idea, ids = illustrative.get((level, int(r.category_id), case_by_id.get(q, "")),
                                         ("", []))
            if idea and ids:
                options.append((ids, idea))
            else:
                # a quote of fillers alone ("Um, uh, mm, er.") tidies to nothing:
                # it is shown as said
                raw = text_by_id.get(q, "")
                options.append(([q], tidy_utterance(raw) or " ".join(raw.split())))
        quoted = quoted_ids.setdefault(int(r.domain_id), [])
        fresh = [o for o in options if _fresh(o, seen, quoted)]
        if MINIMAL not in list(r.flags):
            # one that says something before a more central one that does not: "That
            # was two weeks ago." showed nothing of a category of 49 segments
            fresh.sort(key=lambda o: count_words(o[1]) < ILLUSTRATION_MIN_WORDS)
        ids, quote = fresh[0] if fresh else (options[0] if options else ([], ""))
        seen.add(" ".join(quote.split()))
        quoted.append(set(ids))
        first = ids[0] if ids else ""
        rows.append({
            "domain": dom_name.get(int(r.domain_id), ""), "category": r.name,
            "frequency_label": r.frequency_label, "n_cases": len(r.counted_cases),
            "cases_total": n_total,
            "quote": quote,
            "quote_case": case_by_id.get(first, ""), "quote_segment_id": first,
            "level": level,
            "flags": list(r.flags),
            "label_if_reassigned_counted": r.label_if_reassigned_counted,
            "quote_segment_ids": list(ids), "category_id": int(r.category_id),
            "pole": str(r.pole or "") if level == "subcategory" else ""})
    return pd.DataFrame(rows, columns=[*CQR_COLUMNS, "level", "flags",
                                       "label_if_reassigned_counted", "quote_segment_ids",
                                       "category_id", "pole"])
