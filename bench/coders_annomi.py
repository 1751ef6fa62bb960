"""Agreement between human coders on AnnoMI: the transcripts coded by 10 annotators.

    .venv/bin/python bench/coders_annomi.py

AnnoMI (``annomi_full_long.csv``) codes every utterance of motivational
interviewing transcripts (therapist behaviour: question, reflection, therapist
input, other; client talk: change, neutral, sustain). Seven transcripts were coded
by ten annotators each. This script writes them as a Consensa codes table (case,
code, coder, start/end offsets into the transcript's text, the utterances joined
with "\\n" as Consensa's table ingest joins them), reads it with Consensa's
importer, and prints the agreement between the coders (Cohen's kappa per pair,
Fleiss' kappa, Krippendorff's alpha, percent agreement), overall and per code, as
``consensa compare`` reports it. The same numbers computed straight from the
table (utterance x annotator) are printed as a check.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DATA = Path(os.environ.get("CONSENSA_BENCH_DATA", "/work/shared/data")) / "annomi"


def main() -> int:
    from pipeline.compare import coder_agreement_on_spans, nominal_agreement
    from pipeline.exchange.read import read_codes

    long = pd.read_csv(DATA / "annomi_full_long.csv", dtype={"annotator_id": str},
                       keep_default_na=False)
    n_coders = long.groupby("case_id")["annotator_id"].nunique()
    cases = sorted(n_coders[n_coders >= 2].index)
    data = long[long["case_id"].isin(cases)].copy()
    data["turn_index"] = data["turn_index"].astype(int)
    print(f"AnnoMI: {len(cases)} transcripts coded by "
          f"{data['annotator_id'].nunique()} annotators "
          f"({', '.join(str(n) for n in sorted(set(n_coders[cases])))} per transcript); "
          f"{data.groupby(['case_id', 'turn_index']).ngroups} utterances, "
          f"{len(data)} codings, codes: {', '.join(sorted(data['code'].unique()))}")
    rows = []
    for case, grp in data.groupby("case_id"):
        turns = grp.drop_duplicates("turn_index").sort_values("turn_index")
        start, where = 0, {}
        for t, text in zip(turns["turn_index"], turns["text"], strict=True):
            where[t] = (start, start + len(text))
            start += len(text) + 1
        for r in grp.itertuples():
            s, e = where[r.turn_index]
            rows.append({"case": case, "code": r.code, "coder": f"annotator {r.annotator_id}",
                         "start": s, "end": e, "text": ""})
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "annomi_codes.csv"
        pd.DataFrame(rows).to_csv(path, index=False)
        started = time.perf_counter()
        codes = read_codes(path)
        res = coder_agreement_on_spans(codes)
        took = time.perf_counter() - started
    o = res.overall
    print(f"\nConsensa (codes table -> passages as units; {took:.1f} s): {o['n_units']} units, "
          f"{len(res.coders)} coders, {len(o['pairs'])} pairs")
    print(f"  Cohen's kappa, mean over pairs   {o['cohen']:.3f}  "
          f"(pairs from {min(v[0] for v in o['pairs'].values()):.3f} to "
          f"{max(v[0] for v in o['pairs'].values()):.3f})")
    print(f"  Fleiss' kappa                    {o['fleiss']:.3f}  ({o['n_complete']} units "
          "coded by all)")
    print(f"  Krippendorff's alpha (nominal)   {o['krippendorff']:.3f}")
    print(f"  percent agreement (pairs)        {o['percent']:.1%}")
    print("\n  per code (present / absent)       units with it   Cohen  Fleiss  Krippendorff  "
          "agreement")
    for r in res.per_code.itertuples():
        print(f"    {r.code:<30}{r.n_with_code:>14}  {r.cohen:>6.3f}  {r.fleiss:>6.3f}  "
              f"{r.krippendorff:>12.3f}  {r.percent:>8.1%}")
    direct = data.pivot_table(index=["case_id", "turn_index"], columns="annotator_id",
                              values="code", aggfunc="first")
    d = nominal_agreement(direct)
    same = all(abs(d[k] - o[k]) < 1e-9 for k in ("cohen", "fleiss", "krippendorff", "percent"))
    print(f"\nCheck, straight from the table (utterance x annotator): Cohen {d['cohen']:.3f}, "
          f"Fleiss {d['fleiss']:.3f}, Krippendorff {d['krippendorff']:.3f}, agreement "
          f"{d['percent']:.1%}: {'same' if same else 'DIFFERENT'}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
