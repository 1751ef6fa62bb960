"""Benchmark of ``consensa precode``'s classifier against human codes.

    .venv/bin/python bench/precode.py                  # both data sets, MiniLM embeddings
    .venv/bin/python bench/precode.py --data annomi --embed tfidf

For each data set: split the cases into training and held-out cases (whole cases,
never utterances of one case on both sides), fit the classifier the way precode
does (nearest centroid vs logistic regression, chosen by grouped cross-validation
on the training cases), pre-code the held-out cases and compare with the human
codes per confidence threshold: accuracy, macro-F1 and Cohen's kappa on the
segments coded automatically, and the share sent to humans.

Data (read from ../shared/data, never by the tests):
  annomi   annomi/annomi_utterances.csv, client utterances, code = client_talk_type
           (change / neutral / sustain)
  pdpilot  pdpilot/pdpilot_segments.csv, participant segments, code = domain
           (8 top-level codes; the 76 leaf categories are too sparse for 7 cases)
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pipeline.cache import Cache  # noqa: E402
from pipeline.compose import embed_texts  # noqa: E402
from pipeline.stages.embed import SentenceTransformerEmbedder, TfidfSVDEmbedder  # noqa: E402
from pipeline.precode import fit_classifier  # noqa: E402

DATA = ROOT.parent / "shared" / "data"
THRESHOLDS = (0.0, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


def load(name: str) -> tuple[pd.DataFrame, str]:
    if name == "annomi":
        df = pd.read_csv(DATA / "annomi" / "annomi_utterances.csv")
        df = df[(df["speaker"] == "client") & df["client_talk_type"].notna()]
        return df.rename(columns={"client_talk_type": "label"}), "client_talk_type"
    df = pd.read_csv(DATA / "pdpilot" / "pdpilot_segments.csv")
    return df.rename(columns={"domain": "label"}), "domain"


def evaluate(name: str, embed: str, test_share: float, seed: int) -> list[dict]:
    from sklearn.metrics import accuracy_score, cohen_kappa_score, f1_score
    from sklearn.model_selection import GroupShuffleSplit

    df, code = load(name)
    df = df[df["text"].fillna("").str.strip() != ""].reset_index(drop=True)
    texts = df["text"].astype(str).tolist()
    t0 = time.perf_counter()
    if embed == "minilm":
        cache = Cache(ROOT / ".cache" / "consensa")
        vecs, _ = embed_texts(SentenceTransformerEmbedder(), texts, cache)
    else:
        vecs, _ = embed_texts(TfidfSVDEmbedder(n_components=100, random_state=seed), texts,
                              Cache(None))
    embed_s = time.perf_counter() - t0
    split = GroupShuffleSplit(n_splits=1, test_size=test_share, random_state=seed)
    tr, te = next(split.split(vecs, df["label"], df["case_id"]))
    y_tr, y_te = df["label"].to_numpy()[tr], df["label"].to_numpy()[te]
    clf = fit_classifier(vecs[tr], y_tr, df["case_id"].to_numpy()[tr], seed=seed)
    pred, conf = clf.predict(vecs[te])
    rows = []
    for th in THRESHOLDS:
        auto = conf >= th
        n = int(auto.sum())
        row = {"data": name, "code": code, "embed": embed, "classifier": clf.name,
               "cv_acc_centroid": round(clf.cv_accuracy["nearest_centroid"], 3),
               "cv_acc_logreg": round(clf.cv_accuracy["logistic_regression"], 3),
               "train_cases": len(set(df["case_id"].iloc[tr])),
               "test_cases": len(set(df["case_id"].iloc[te])), "test_segments": len(te),
               "threshold": th, "coded": n, "to_humans": round(1 - n / len(te), 3),
               "accuracy": np.nan, "macro_f1": np.nan, "kappa": np.nan,
               "majority_baseline": round(float(pd.Series(y_te).value_counts(normalize=True).iloc[0]), 3),
               "embed_s": round(embed_s, 1)}
        if n:
            row["accuracy"] = round(accuracy_score(y_te[auto], pred[auto]), 3)
            row["macro_f1"] = round(f1_score(y_te[auto], pred[auto], average="macro",
                                             zero_division=0), 3)
            row["kappa"] = round(cohen_kappa_score(y_te[auto], pred[auto]), 3) \
                if len(set(y_te[auto]) | set(pred[auto])) > 1 else np.nan
        rows.append(row)
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", choices=("annomi", "pdpilot", "both"), default="both")
    ap.add_argument("--embed", choices=("minilm", "tfidf"), default="minilm")
    ap.add_argument("--test-share", type=float, default=0.3, help="share of cases held out")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "precode_results.csv")
    args = ap.parse_args(argv)
    names = ("annomi", "pdpilot") if args.data == "both" else (args.data,)
    rows = [r for n in names for r in evaluate(n, args.embed, args.test_share, args.seed)]
    table = pd.DataFrame(rows)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.out, index=False)
    show = ["data", "code", "classifier", "test_cases", "test_segments", "threshold", "to_humans",
            "accuracy", "macro_f1", "kappa", "majority_baseline"]
    print(table[show].to_string(index=False))
    print("\ncross-validated accuracy on the training cases (centroid / logistic regression):")
    for n, g in table.groupby("data", sort=False):
        print(f"  {n}: {g['cv_acc_centroid'].iloc[0]} / {g['cv_acc_logreg'].iloc[0]} "
              f"-> {g['classifier'].iloc[0]}; embedding {g['embed_s'].iloc[0]} s")
    print(f"\nCSV: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
