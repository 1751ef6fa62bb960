"""Quality: Consensa's default themes vs BERTopic's defaults, against human codes.

    .venv/bin/python bench/quality.py [--seeds 0 1 2] [--set cluster.min_samples=5 ...]

Data (``/work/shared/data``; ``CONSENSA_BENCH_DATA`` overrides):

* AnnoMI client utterances vs the session's topic (one topic per session);
* AnnoMI therapist utterances vs the main therapist behaviour code;
* PDPilot coded segments vs category, and vs domain.

The units are the coded units as Consensa's TurnSegmenter keeps them (one
segment per unit, backchannels such as "Mm-hmm." dropped: they are not themes);
both methods get exactly the same units and the same all-MiniLM-L6-v2 embeddings
(from Consensa's embedding cache).

* Consensa: the default config's context, reduce, cluster and outlier stages
  (each unit blended with its neighbours in the same conversation -> spectral
  embedding -> HDBSCAN -> reassignment of outliers close to a theme centroid),
  seeded. The context stage uses the units' speaking order (case, turn, position
  in the turn), which BERTopic has no way to use: ``--set context.weight=0``
  measures Consensa without it.
* BERTopic 0.17 defaults, ``BERTopic(umap_model=UMAP(<BERTopic's default
  parameters>, random_state=seed)).fit_transform(docs, embeddings)``: the only
  change is the seed BERTopic's documentation recommends for reproducibility.

Scores vs the human codes: NMI, AMI and ARI over all units with the unassigned
ones as one group of their own ("all"), and over the assigned units only
("assigned"); outlier share; number of themes; run-to-run agreement as the NMI
between the assignments of each pair of seeds (unassigned = own group). Each
score is the mean over the seeds. Writes bench/results/quality.csv (per seed) and
bench/results/quality_summary.csv.
"""

from __future__ import annotations

import argparse
import itertools
import time
import warnings

import numpy as np
import pandas as pd
from bench_common import coded_sets, embed_with_cache, print_table, save, wait_for_quiet
from sklearn.metrics import adjusted_mutual_info_score as ami
from sklearn.metrics import adjusted_rand_score as ari
from sklearn.metrics import normalized_mutual_info_score as nmi

warnings.filterwarnings("ignore")


def consensa_config(seed: int, overrides: list[str]):
    from pipeline.config import parse_override, set_dotted, validate_config

    data: dict = {"seed": seed}
    for item in overrides:
        set_dotted(data, *parse_override(item))
    return validate_config(data)


def consensa_themes(vectors: np.ndarray, order: pd.DataFrame, seed: int,
                    overrides: list[str]) -> tuple[np.ndarray, dict]:
    """The run's context + reduce + cluster + assign (pipeline.compose.find_themes)."""
    from pipeline.compose import find_themes
    from pipeline.stages.context import contextualize

    cfg = consensa_config(seed, overrides)
    grouping = contextualize(vectors, order, cfg.context.window, cfg.context.weight)
    c = find_themes(grouping, cfg).clustering
    return c.theme, {"reassigned": float(c.reassigned.mean())}


def bertopic_themes(texts: list[str], vectors: np.ndarray, seed: int) -> tuple[np.ndarray, dict]:
    from bertopic import BERTopic
    from umap import UMAP

    umap_model = UMAP(n_neighbors=15, n_components=5, min_dist=0.0, metric="cosine",
                      low_memory=False, random_state=seed)
    topics, _ = BERTopic(umap_model=umap_model).fit_transform(texts, vectors)
    return np.asarray(topics, dtype=np.int64), {"reassigned": 0.0}


def oracle_ceiling(name: str, vectors: np.ndarray, truth: np.ndarray, overrides: list[str]) -> dict:
    from sklearn.cluster import KMeans

    from pipeline.compose import build_stage

    reduced = build_stage("reduce", consensa_config(0, overrides)).fit_transform(vectors)
    best = {"dataset": name}
    for space, X in (("embeddings", vectors), ("umap", reduced)):
        res = {k: ami(truth, KMeans(k, n_init=3, random_state=0).fit_predict(X))
               for k in (4, 8, 15, 25, 40, 60, 90) if k < len(X) / 3}
        k = max(res, key=res.get)
        best[f"kmeans_{space}_best_AMI"] = res[k]
        best[f"kmeans_{space}_best_k"] = k
    return best


def scores(truth: np.ndarray, pred: np.ndarray) -> dict:
    ok = pred >= 0
    out = {"themes": len(set(pred[ok].tolist())), "outliers": float(1 - ok.mean()),
           "NMI": nmi(truth, pred), "AMI": ami(truth, pred), "ARI": ari(truth, pred)}
    if ok.sum() > 1:
        out.update(NMI_assigned=nmi(truth[ok], pred[ok]), AMI_assigned=ami(truth[ok], pred[ok]),
                   ARI_assigned=ari(truth[ok], pred[ok]))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--set", dest="overrides", action="append", default=[],
                    help="a Consensa config override, e.g. cluster.min_samples=5")
    ap.add_argument("--only", choices=["consensa", "bertopic"], default=None)
    ap.add_argument("--tag", default="", help="suffix for the result files")
    ap.add_argument("--keep-backchannels", action="store_true",
                    help="keep backchannel units (all coded units)")
    ap.add_argument("--ceiling", action="store_true",
                    help="also an oracle reference: the best AMI of k-means (on the embeddings "
                         "and on Consensa's UMAP space) over k = 4..90, k picked with the codes")
    args = ap.parse_args(argv)

    wait_for_quiet()
    sets = coded_sets(drop_backchannels=not args.keep_backchannels)
    rows, ceiling = [], []
    methods = [m for m in ("consensa", "bertopic") if args.only in (None, m)]
    from pipeline.compose import build_stage

    for ds in sets:
        # embed.* overrides (e.g. embed.quantize=int8) apply to both methods: same vectors
        vectors = embed_with_cache(ds.texts, build_stage("embed", consensa_config(0, args.overrides)))
        truth = pd.factorize(pd.Series(ds.labels))[0]
        for method in methods:
            assignments = []
            for seed in args.seeds:
                t0 = time.perf_counter()
                if method == "consensa":
                    pred, extra = consensa_themes(vectors, ds.order, seed, args.overrides)
                else:
                    pred, extra = bertopic_themes(ds.texts, vectors, seed)
                dt = time.perf_counter() - t0
                assignments.append(pred)
                rows.append({"dataset": ds.name, "method": method, "seed": seed, "n": len(pred),
                             "codes": int(truth.max() + 1), **scores(truth, pred), **extra,
                             "time_s": dt})
            pairs = [nmi(a, b) for a, b in itertools.combinations(assignments, 2)]
            for r in rows[-len(args.seeds):]:
                r["seed_NMI_mean"] = float(np.mean(pairs)) if pairs else float("nan")
                r["seed_NMI_min"] = float(np.min(pairs)) if pairs else float("nan")
            print(f"  {ds.name:28s} {method:9s} AMI {np.mean([r['AMI'] for r in rows[-len(args.seeds):]]):.3f}",
                  flush=True)

        if args.ceiling:
            ceiling.append(oracle_ceiling(ds.name, vectors, truth, args.overrides))

    tag = f"_{args.tag}" if args.tag else ""
    if args.ceiling:
        ceil = pd.DataFrame(ceiling)
        print_table(ceil.round(3), "Oracle reference (not a method: k is chosen by looking at the "
                                   "codes): best AMI of k-means, every unit assigned")
        save(ceil.round(4), f"quality_ceiling{tag}.csv")
    per_seed = pd.DataFrame(rows)
    save(per_seed.round(4), f"quality{tag}.csv")
    cols = ["n", "codes", "themes", "outliers", "NMI", "AMI", "ARI", "NMI_assigned",
            "AMI_assigned", "ARI_assigned", "seed_NMI_mean", "seed_NMI_min", "reassigned", "time_s"]
    summary = per_seed.groupby(["dataset", "method"], sort=False)[cols].mean().reset_index()
    summary["themes"] = summary["themes"].round(1)
    table = summary.copy()
    table["outliers"] = (100 * table["outliers"]).round(1).astype(str) + "%"
    table["reassigned"] = (100 * table["reassigned"]).round(1).astype(str) + "%"
    print_table(table.round(3), f"Quality vs human codes (mean over seeds {args.seeds}; "
                                f"'all' = unassigned units as their own group)")
    if len(methods) == 2:
        wide = summary.pivot(index="dataset", columns="method", values="AMI")
        wide = wide.reindex([s.name for s in sets])
        ratio = pd.DataFrame({
            "dataset": wide.index, "AMI_consensa": wide["consensa"].round(3).values,
            "AMI_bertopic": wide["bertopic"].round(3).values,
            "AMI_ratio": (wide["consensa"] / wide["bertopic"]).round(2).values})
        o = summary.pivot(index="dataset", columns="method", values="outliers").reindex(wide.index)
        s = summary.pivot(index="dataset", columns="method", values="seed_NMI_min").reindex(wide.index)
        ratio["outliers_consensa"] = (100 * o["consensa"]).round(1).astype(str).values + "%"
        ratio["outliers_bertopic"] = (100 * o["bertopic"]).round(1).astype(str).values + "%"
        ratio["seed_NMI_min_consensa"] = s["consensa"].round(3).values
        ratio["targets_met"] = ((ratio["AMI_ratio"] >= 1.25) & (o["consensa"].values <= 0.10)
                                & (s["consensa"].values >= 0.9))
        print_table(ratio, "Consensa vs BERTopic (targets: AMI ratio >= 1.25, outliers <= 10%, "
                           "seed NMI >= 0.9)")
        save(ratio, f"quality_ratio{tag}.csv")
    save(summary.round(4), f"quality_summary{tag}.csv")
    if args.overrides:
        print("Consensa overrides:", " ".join(args.overrides))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
