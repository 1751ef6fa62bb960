"""One contract suite over every registered stage implementation.

Whatever is registered under a name must honour the scikit-learn-style contract:
``__init__`` stores its keyword arguments unchanged and nothing else; the stage
method validates its input, returns the documented type, learns only attributes
ending in ``_``, leaves its input untouched, and gives the same output for the
same input and seed.
"""

import numpy as np
import pandas as pd
import pytest

from pipeline.errors import ConsensaError
from pipeline.registry import REGISTRIES, clone, get_params, params_model_for
from pipeline.types import SEGMENT_COLUMNS, TURN_COLUMNS, Corpus, Segmentation, SourceText

ALL = [(kind, name) for kind, reg in REGISTRIES.items() for name in reg.names()]


#: settings an implementation of a kind cannot do without (a namer's model name)
REQUIRED = {"namer": {"model": "llama3.1:8b"}}


def make(kind, name, **params):
    return REGISTRIES[kind].build(name, {**REQUIRED.get(kind, {}), **params}, seed=0)


def blobs(n=60, d=12, k=3, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(k, d)) * 4
    X = np.concatenate([c + rng.normal(size=(n // k, d)) for c in centres]).astype(np.float32)
    return X / np.linalg.norm(X, axis=1, keepdims=True)


def small_corpus():
    text = ("Interviewer: What happened in training?\n"
            "Therapist: Nobody taught us about tears. It was never discussed in class at all.\n"
            "Interviewer: Mm-hmm.\n"
            "Therapist: Yeah.\n"
            "Therapist: My supervisor was kind about it and helped me understand what happened.\n")
    rows, pos = [], 0
    for i, line in enumerate(text.splitlines(keepends=True)):
        label, _, rest = line.partition(": ")
        s = pos + len(label) + 2
        e = pos + len(line.rstrip("\n"))
        rows.append({"case_id": "c1", "turn_index": i, "speaker": label,
                     "role": "interviewer" if label == "Interviewer" else "participant",
                     "text": text[s:e], "start_char": s, "end_char": e, "start_time": np.nan,
                     "end_time": np.nan, "source_file": "c1.txt"})
        pos += len(line)
    turns = pd.DataFrame(rows, columns=list(TURN_COLUMNS))
    return Corpus(turns=turns, cases=pd.DataFrame({"case_id": ["c1"]}),
                  sources={"c1": SourceText("c1", "c1.txt", text, "0", "utf-8")})


@pytest.mark.parametrize("kind,name", ALL)
def test_init_stores_parameters_unchanged_and_nothing_else(kind, name):
    obj = make(kind, name)
    params = get_params(obj)
    assert set(vars(obj)) == set(params), f"{name} sets attributes in __init__ beyond its parameters"
    assert not any(k.endswith("_") for k in vars(obj))
    again = type(obj)(**params)
    assert get_params(again) == params


@pytest.mark.parametrize("kind,name", ALL)
def test_unknown_parameters_are_refused(kind, name):
    from pipeline.errors import ConfigError

    with pytest.raises(ConfigError, match="not a known setting"):
        make(kind, name, no_such_parameter=1)
    assert params_model_for(REGISTRIES[kind].get(name)).model_config["extra"] == "forbid"


def run_stage(kind, obj, data):
    if kind == "reducer":
        return obj.fit_transform(data)
    if kind == "clusterer":
        fitted = obj.fit(data)
        assert fitted is obj
        return obj.labels_, obj.probabilities_
    if kind == "embedder":
        return obj.encode(data)
    return obj.segment(data)


def stage_input(kind):
    if kind in ("reducer", "clusterer"):
        return blobs()
    if kind == "embedder":
        return ["Nobody taught us about tears in training.", "My supervisor was kind.",
                "The client felt seen when I cried.", "Training never covered therapist emotion."]
    return small_corpus()


def check_output(kind, obj, out, data):
    if kind == "reducer":
        assert out.dtype == np.float32 and out.shape[0] == len(data) and np.isfinite(out).all()
    elif kind == "clusterer":
        labels, probs = out
        assert labels.shape == (len(data),) and labels.dtype == np.int64
        assert probs.shape == (len(data),) and (probs >= 0).all() and (probs <= 1).all()
    elif kind == "embedder":
        assert out.dtype == np.float32 and out.shape[0] == len(data)
        np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, rtol=1e-4)
    else:
        assert isinstance(out, Segmentation)
        segs = out.segments
        assert list(segs.columns) == list(SEGMENT_COLUMNS)
        src = data.sources["c1"].text
        for s, e, t in zip(segs["start_char"], segs["end_char"], segs["text"]):
            assert src[s:e] == t
        assert set(segs["role"]) == {"participant"}
        assert not segs["text"].str.fullmatch(r"\s*(Yeah|Mm-hmm)\.?\s*").any()


# namers answer from a model server: tests/test_llm.py runs them against a fake one
@pytest.mark.parametrize("kind,name", [(k, n) for k, n in ALL if k != "namer"])
def test_stage_output_type_determinism_and_input_untouched(kind, name):
    data = stage_input(kind)
    before = data.copy() if isinstance(data, (np.ndarray, list)) else data.turns.copy()
    first = make(kind, name)
    out1 = run_stage(kind, first, data)
    check_output(kind, first, out1, data)
    learned = set(vars(first)) - set(get_params(first))
    assert all(k.endswith("_") for k in learned), f"{name} learned {learned}"
    out2 = run_stage(kind, make(kind, name), data)
    if kind == "segmenter":
        pd.testing.assert_frame_equal(out1.segments, out2.segments)
        pd.testing.assert_frame_equal(data.turns, before)
    elif kind == "clusterer":
        np.testing.assert_array_equal(out1[0], out2[0])
        np.testing.assert_array_equal(data, before)
    else:
        np.testing.assert_allclose(out1, out2, rtol=1e-5, atol=1e-5)
        if isinstance(data, np.ndarray):
            np.testing.assert_array_equal(data, before)
        else:
            assert data == before


@pytest.mark.parametrize("kind,name", [(k, n) for k, n in ALL if k != "namer"])
def test_a_clone_has_the_parameters_not_the_learned_state_and_gives_the_same_output(kind, name):
    data = stage_input(kind)
    fitted = make(kind, name)
    out = run_stage(kind, fitted, data)
    twin = clone(fitted)
    assert type(twin) is type(fitted) and get_params(twin) == get_params(fitted)
    assert not any(k.endswith("_") for k in vars(twin)), f"{name}: a clone kept learned state"
    for value in get_params(twin).values():       # deep copies: the twin shares nothing mutable
        if isinstance(value, (list, dict, set)):
            assert all(value is not v for v in get_params(fitted).values())
    again = run_stage(kind, twin, data)
    if kind == "segmenter":
        pd.testing.assert_frame_equal(out.segments, again.segments)
    elif kind == "clusterer":
        np.testing.assert_array_equal(out[0], again[0])
    else:
        np.testing.assert_allclose(out, again, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kind,name", [(k, n) for k, n in ALL if k in ("reducer", "clusterer")])
def test_tiny_and_bad_input(kind, name):
    tiny = blobs()[:3]
    out = run_stage(kind, make(kind, name), tiny)
    check_output(kind, None, out, tiny)
    bad = tiny.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ConsensaError, match="NaN"):
        run_stage(kind, make(kind, name), bad)
    with pytest.raises(ConsensaError, match="2-D"):
        run_stage(kind, make(kind, name), np.zeros(5, dtype=np.float32))


def _numeric_bounds(field):
    """(lower, upper, exclusive lower) declared on an int or float parameter."""
    import annotated_types

    lower = upper = None
    strict = False
    for m in field.metadata:
        if isinstance(m, annotated_types.Ge):
            lower = m.ge
        elif isinstance(m, annotated_types.Gt):
            lower, strict = m.gt, True
        elif isinstance(m, annotated_types.Le):
            upper = m.le
    return lower, upper, strict


def _numeric(field):
    import typing

    args = [a for a in (typing.get_args(field.annotation) or (field.annotation,))
            if a is not type(None)]
    return bool(args) and all(a in (int, float) for a in args)


BOUNDED = list(ALL)


@pytest.mark.parametrize("kind,name", BOUNDED)
def test_every_numeric_parameter_has_bounds_the_registry_checks_by_key(kind, name):
    """A number outside what the stage can use is refused when the config is read,
    naming the key; never by the library, with a traceback, minutes into a run."""
    from pipeline.errors import ConfigError

    model = params_model_for(REGISTRIES[kind].get(name))
    for key, field in model.model_fields.items():
        if not _numeric(field):
            continue
        lower, upper, strict = _numeric_bounds(field)
        assert lower is not None, f"{name}: parameter {key} has no lower bound"
        below = lower if strict else lower - (1 if field.annotation in (int, int | None) else 0.5)
        with pytest.raises(ConfigError, match=rf"'stage\.{key}'"):
            REGISTRIES[kind].build(name, {key: below}, where="stage")
        if upper is not None:
            with pytest.raises(ConfigError, match=rf"'stage\.{key}'"):
                REGISTRIES[kind].build(name, {key: upper + 1}, where="stage")


# --- caches ------------------------------------------------------------------------------

#: the stages whose results the run keeps in its cache (pipeline/cache.py), and the
#: label step's vocabulary, which is not a registered stage but is cached the same way
CACHED = [(k, n) for k, n in ALL if k in ("segmenter", "embedder", "reducer")] + \
    [("label", "vocabulary")]


def through_cache(kind, name, data, cache, monkeypatch):
    """The stage's output as the run gets it, through ``cache``; with ``monkeypatch``
    set, the work the cache stands for fails if it is done (the entry must serve)."""
    from pipeline import compose

    if kind == "label":
        if monkeypatch:
            monkeypatch.setattr(compose, "build_vocabulary", lambda *a: pytest.fail("rebuilt"))
        return compose.vocabulary(data, ["never"], cache)
    obj = make(kind, name)
    if kind == "segmenter":
        if monkeypatch and getattr(type(obj), "cache_spans", False):
            monkeypatch.setattr(type(obj), "_spans", lambda self, texts: pytest.fail("rebuilt"))
        return obj.segment(data, memory=cache)
    if kind == "embedder":
        vectors, counts = compose.embed_texts(obj, data, cache)
        if monkeypatch and obj.model_id is not None:
            assert counts == {"embedded": 0, "from_cache": len(set(data))}
        return vectors
    reduction = compose.reduce(obj, data, cache)
    assert reduction.fitted["from_cache_"] is bool(monkeypatch)
    return reduction.coords


@pytest.mark.parametrize("kind,name", CACHED)
def test_a_cached_result_equals_the_uncached_one(kind, name, tmp_path, monkeypatch):
    """Caches equal no cache: the first run through an empty cache, and a second one
    served from it, give what the stage gives without a cache."""
    from pipeline.cache import Cache
    from pipeline.stages.label import build_vocabulary

    data = stage_input("embedder" if kind == "label" else kind)
    if kind == "label":
        plain = build_vocabulary(data, ["never"])
    else:
        plain = run_stage(kind, make(kind, name), data)
    cold = through_cache(kind, name, data, Cache(tmp_path), None)
    warm = through_cache(kind, name, data, Cache(tmp_path), monkeypatch)
    for got in (cold, warm):
        if kind == "segmenter":
            pd.testing.assert_frame_equal(got.segments, plain.segments)
            assert got.skipped == plain.skipped and dict(got.counts) == dict(plain.counts)
        elif kind == "label":
            assert got == plain
        else:
            np.testing.assert_array_equal(got, plain)


@pytest.mark.parametrize("kind,name", [(k, n) for k, n in ALL if k == "reducer"])
def test_every_reducer_takes_the_neighbours_the_run_hands_the_map(kind, name):
    """The run gives the map the reduce step's neighbour graph as ``knn=`` without
    asking the map reducer whether it takes one: every reducer must."""
    from pipeline.stages.reduce import nearest_neighbours

    data = blobs()
    out = make(kind, name).fit_transform(data, knn=nearest_neighbours(data, 10))
    check_output(kind, None, out, data)
