"""Embedding throughput: batching and the optional int8 model, side by side.

    .venv/bin/python bench/embedding.py [--n 2000] [--reps 3]

One process, one model load; configurations alternate within each repetition so
they share the machine's conditions. Texts: ``--n`` segments of the synthetic
corpus (bench_common.SYNTHETIC_HOW; 3-250 words, mean ~33).

* fixed batches of 32 (sentence-transformers' and BERTopic's default) and of 64
  (Consensa's default before token batching);
* token batching (Consensa's default: longest first, at most 2,048 padded
  tokens and 64 texts a batch);
* token batching with ``quantize: int8`` (dynamic int8 linear layers in torch).

Also the fidelity of the int8 vectors: cosine to the float32 ones. Writes
bench/results/embed_batching.csv and bench/results/embed_int8.csv. The downstream
quality cost of int8 is measured by ``bench/quality.py --set embed.quantize=int8``
(bench/results/quality_ratio_int8.csv).
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
import pandas as pd
from bench_common import print_table, save, synthetic_table, wait_for_quiet

warnings.filterwarnings("ignore")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args(argv)
    from pipeline.stages.embed import SentenceTransformerEmbedder

    frame, _ = synthetic_table(10000)
    texts = frame.loc[frame["speaker"] == "participant", "text"].tolist()[2000:2000 + args.n]
    fp = SentenceTransformerEmbedder()
    fp.encode(["warm up"])
    q = SentenceTransformerEmbedder(quantize="int8")
    q.encode(["warm up"])
    configs = {"fixed batch 32": (fp, None, 32), "fixed batch 64": (fp, None, 64),
               "token batches 2048 (default)": (fp, 2048, 64),
               "token batches 2048 + int8": (q, 2048, 64)}
    rows, vecs = [], {}
    for rep in range(args.reps):
        wait_for_quiet()
        names = list(configs) if rep % 2 == 0 else list(reversed(configs))
        for name in names:
            emb, bt, bs = configs[name]
            emb.batch_tokens, emb.batch_size = bt, bs
            t = time.perf_counter()
            v = emb.encode(texts)
            dt = time.perf_counter() - t
            vecs.setdefault(name, v)
            rows.append({"config": name, "rep": rep, "seconds": dt, "per_s": len(texts) / dt})
            print(f"  rep {rep} {name}: {len(texts) / dt:.0f}/s", flush=True)
    df = pd.DataFrame(rows)
    base = df[df["config"] == "fixed batch 32"].set_index("rep")["seconds"]
    df["speedup_vs_batch32"] = [base[r] / s for r, s in zip(df["rep"], df["seconds"])]
    table = df.groupby("config", sort=False).agg(
        per_s_median=("per_s", "median"), per_s_min=("per_s", "min"), per_s_max=("per_s", "max"),
        speedup_vs_batch32_median=("speedup_vs_batch32", "median")).reset_index().round(2)
    print_table(table, f"Embedding {len(texts)} segments, all-MiniLM-L6-v2 on CPU "
                       f"({args.reps} alternating reps; speed-up per rep vs fixed batch 32)")
    ref = vecs["token batches 2048 (default)"]
    same = float((ref * vecs["fixed batch 32"]).sum(1).min())
    cos = (ref * vecs["token batches 2048 + int8"]).sum(1)
    fid = pd.DataFrame([{"n": len(texts), "cos_token_vs_fixed_min": round(same, 6),
                         "int8_cos_mean": round(float(cos.mean()), 4),
                         "int8_cos_p01": round(float(np.percentile(cos, 1)), 4),
                         "int8_cos_min": round(float(cos.min()), 4)}])
    print_table(fid, "Fidelity: cosine between vectors (token vs fixed batches; int8 vs float32)")
    save(pd.concat([df.round(3)]), "embed_batching.csv")
    save(fid, "embed_int8.csv")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
