"""What the benchmarks share: the coded data sets, the synthetic corpora, waiting
for a quiet machine, peak-memory measurement and table printing.

The benchmarks are scripts (``.venv/bin/python bench/quality.py``); this module
is imported from beside them.
"""

from __future__ import annotations

import hashlib
import os
import random
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
DATA = Path(os.environ.get("CONSENSA_BENCH_DATA", "/work/shared/data"))
ANNOMI = DATA / "annomi" / "annomi_utterances.csv"
PDPILOT = DATA / "pdpilot" / "pdpilot_segments.csv"
PDPILOT_TURNS = DATA / "pdpilot" / "pdpilot_turns.csv"
PYTHON = str(ROOT / ".venv" / "bin" / "python")
CONSENSA = str(ROOT / ".venv" / "bin" / "consensa")

if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


# --- the machine ---------------------------------------------------------------

def wait_for_quiet(max_load: float = 2.5, timeout: float = 600.0, poll: float = 15.0) -> float:
    """Wait while the 1-minute load average is above ``max_load`` (others share the
    machine); returns the load when we start. Gives up waiting after ``timeout``."""
    start = time.monotonic()
    load = os.getloadavg()[0]
    while load > max_load and time.monotonic() - start < timeout:
        print(f"  (load {load:.2f} > {max_load}: waiting)", file=sys.stderr, flush=True)
        time.sleep(poll)
        load = os.getloadavg()[0]
    return load


@dataclass
class Measured:
    wall_s: float
    peak_rss_mb: float
    returncode: int
    stdout: str
    stderr: str
    load_before: float


def run_measured(cmd: list[str], env: dict | None = None, cwd: Path | None = None,
                 timeout: float | None = None, max_load: float = 2.5) -> Measured:
    """Run ``cmd`` in a fresh process under ``/usr/bin/time -v``: wall time and the
    child's peak RSS (maximum resident set size). Waits first while the load average
    is above ``max_load``."""
    load = wait_for_quiet(max_load)
    full_env = {**os.environ, **(env or {})}
    t0 = time.perf_counter()
    proc = subprocess.run(["/usr/bin/time", "-v", *cmd], capture_output=True, text=True, check=False,
                          env=full_env, cwd=cwd, timeout=timeout)
    wall = time.perf_counter() - t0
    m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr)
    peak = int(m.group(1)) / 1024 if m else float("nan")
    return Measured(wall, peak, proc.returncode, proc.stdout, proc.stderr, load)


# --- coded data for the quality benchmark ----------------------------------------

@dataclass
class CodedSet:
    name: str
    texts: list[str]
    labels: list[str]
    note: str
    #: case_id and turn_index of each unit: the speaking order the context stage uses
    order: pd.DataFrame | None = None


def coded_sets(drop_backchannels: bool = True) -> list[CodedSet]:
    """The human-coded units: AnnoMI client utterances (label: the session's topic),
    AnnoMI therapist utterances (label: the main therapist behaviour code), PDPilot
    coded segments (label: category, and domain).

    Units are what Consensa's TurnSegmenter keeps (one segment per coded unit;
    backchannels such as "Mm-hmm." and "Yeah." are not themes and are dropped), so
    both methods see exactly the same units.
    """
    from pipeline.stages.segment import is_backchannel

    def keep(texts: pd.Series) -> np.ndarray:
        t = texts.fillna("").astype(str).str.strip()
        ok = t.str.len() > 0
        if drop_backchannels:
            ok &= ~t.map(is_backchannel)
        return ok.to_numpy()

    out = []
    a = pd.read_csv(ANNOMI)
    c = a[a["speaker"] == "client"]
    c = c[keep(c["text"])]
    def order(frame: pd.DataFrame) -> pd.DataFrame:
        cols = [c for c in ("case_id", "turn_index", "start_char") if c in frame.columns]
        return frame[cols].reset_index(drop=True)

    out.append(CodedSet("annomi_client~topic", c["text"].str.strip().tolist(), c["topic"].tolist(),
                        "AnnoMI client utterances vs the session's topic", order(c)))
    t = a[(a["speaker"] == "therapist") & a["main_therapist_behaviour"].notna()]
    t = t[keep(t["text"])]
    out.append(CodedSet("annomi_therapist~behaviour", t["text"].str.strip().tolist(),
                        t["main_therapist_behaviour"].tolist(),
                        "AnnoMI therapist utterances vs behaviour code", order(t)))
    p = pd.read_csv(PDPILOT)
    p = p[keep(p["text"])]
    p = p.assign(start_char=_positions_in_turns(p))
    out.append(CodedSet("pdpilot~category", p["text"].str.strip().tolist(), p["category"].tolist(),
                        "PDPilot coded segments vs category", order(p)))
    out.append(CodedSet("pdpilot~domain", p["text"].str.strip().tolist(), p["domain"].tolist(),
                        "PDPilot coded segments vs domain", order(p)))
    return out


def _positions_in_turns(segments: pd.DataFrame) -> list[int]:
    """Where each PDPilot coded segment starts in its turn (several segments can come
    from one turn; the CSV lists them in code order, not speaking order): the first
    25 characters, compared without punctuation and case, found in the turn's text;
    -1 when not found (130 of 262 found; the rest keep the CSV's order)."""
    turns = pd.read_csv(PDPILOT_TURNS)
    text_of = {(c, t): str(x) for c, t, x in zip(turns["case_id"], turns["turn_index"],
                                                 turns["text"].fillna(""))}

    def norm(x: str) -> str:
        return re.sub(r"\W+", " ", x).lower().strip()

    out = []
    for c, t, x in zip(segments["case_id"], segments["turn_index"], segments["text"]):
        turn = norm(text_of.get((c, t), ""))
        head = norm(str(x))[:25]
        out.append(turn.find(head) if head else -1)
    return out


def embed_with_cache(texts: list[str], embedder=None,
                     cache_dir: Path = ROOT / ".cache" / "consensa") -> np.ndarray:
    """Embed through Consensa's embedding cache; by default with Consensa's default
    embedder (all-MiniLM-L6-v2)."""
    from pipeline.cache import Cache
    from pipeline.compose import embed_texts
    from pipeline.stages.embed import SentenceTransformerEmbedder

    vecs, _ = embed_texts(embedder or SentenceTransformerEmbedder(), texts, Cache(cache_dir))
    return vecs


# --- synthetic corpora for speed and scale ---------------------------------------

SYNTHETIC_HOW = (
    "Synthetic corpus: the sentences of AnnoMI utterances (client and therapist) and "
    "PDPilot participant turns (at least 3 words, not backchannels), grouped by their "
    "source interview (133 AnnoMI sessions, 7 PDPilot participants), are resampled with "
    "replacement (seeded). Each synthetic case of 40 participant turns draws from one "
    "source interview (picked in proportion to its size), so a case stays on its "
    "interview's topic; each turn joins 1-4 sentences of that interview drawn without "
    "replacement in random order (mean ~33 words; SentenceSegmenter aims at 40). "
    "Recombining sentences, rather than copying whole utterances, keeps the corpus free "
    "of clumps of near-identical texts, which no real study has and which make UMAP's "
    "spectral start split into thousands of components. A text drawn twice gets "
    "' (case S000123)' appended, so every segment is unique (nothing is served twice by "
    "the embedding cache). One row per turn, one interviewer question before each; the "
    "config uses the TurnSegmenter, so segments = participant rows.")

_SENT = re.compile(r"(?<=[.!?])\s+")


def source_sentences() -> dict[str, list[str]]:
    """Sentences of the shared data, by source interview."""
    from pipeline.stages.segment import count_words, is_backchannel

    a = pd.read_csv(ANNOMI)[["case_id", "text"]]
    p = pd.read_csv(PDPILOT_TURNS)
    p = p[p["speaker"] == "participant"][["case_id", "text"]]
    p = p.assign(case_id="pdpilot_" + p["case_id"].astype(str))
    out: dict[str, list[str]] = {}
    for case, text in zip(pd.concat([a, p])["case_id"], pd.concat([a, p])["text"]):
        if not isinstance(text, str):
            continue
        for sent in _SENT.split(text.strip()):
            sent = sent.strip()
            if count_words(sent) >= 3 and not is_backchannel(sent):
                out.setdefault(str(case), []).append(sent)
    return {k: sorted(set(v)) for k, v in sorted(out.items()) if len(set(v)) >= 8}


def synthetic_table(n_segments: int, seed: int = 0, turns_per_case: int = 40) -> tuple[pd.DataFrame, dict]:
    """A transcript table (case_id, turn_index, speaker, text) with ``n_segments``
    unique participant turns; see :data:`SYNTHETIC_HOW`."""
    sources = source_sentences()
    names = list(sources)
    weights = [len(sources[k]) for k in names]
    rng = random.Random(seed)
    seen: set[str] = set()
    rows = []
    n_case_suffix = 0
    src = names[0]
    for i in range(n_segments):
        case = f"S{i // turns_per_case:06d}"
        if i % turns_per_case == 0:
            src = rng.choices(names, weights)[0]
        pool = sources[src]
        m = min(len(pool), rng.choices([1, 2, 3, 4], [0.25, 0.35, 0.25, 0.15])[0])
        text = " ".join(rng.sample(pool, m))
        if text in seen:
            text = f"{text} (case {case})"
            n_case_suffix += 1
            k = 2
            while text in seen:  # pragma: no cover - very rare
                text = f"{text} ({k})"
                k += 1
        seen.add(text)
        t = 2 * (i % turns_per_case)
        rows.append((case, t, "interviewer", "Could you tell me more about that?"))
        rows.append((case, t + 1, "participant", text))
    frame = pd.DataFrame(rows, columns=["case_id", "turn_index", "speaker", "text"])
    words = frame.loc[frame["speaker"] == "participant", "text"].str.split().str.len()
    info = {"n_segments": n_segments, "sources": len(names),
            "sentences": sum(weights), "seed": seed,
            "case_id_appended": n_case_suffix, "mean_words": round(float(words.mean()), 1),
            "sha256": hashlib.sha256(pd.util.hash_pandas_object(frame).values.tobytes()).hexdigest()[:12]}
    return frame, info


def synthetic_study(folder: Path, n_segments: int, seed: int = 0,
                    cache_dir: Path | None = None, output_dir: Path | None = None) -> tuple[Path, dict]:
    """Write a synthetic table and a Consensa config for it; returns the config's path."""
    import yaml

    folder.mkdir(parents=True, exist_ok=True)
    table = folder / f"synthetic_{n_segments}.csv"
    frame, info = synthetic_table(n_segments, seed)
    frame.to_csv(table, index=False)
    cfg = {"name": f"bench-{n_segments}", "seed": 42,
           "output_dir": str(output_dir or folder / "runs"),
           "cache_dir": str(cache_dir or folder / "cache"),
           "ingest": {"paths": [str(table)],
                      "table": {"case_id": "case_id", "speaker": "speaker", "text": "text",
                                "turn_index": "turn_index"}},
           "segment": {"name": "consensa.TurnSegmenter.v1"}}
    path = folder / f"synthetic_{n_segments}.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path, info


# --- output ----------------------------------------------------------------------

def print_table(df: pd.DataFrame, title: str = "") -> None:
    if title:
        print(f"\n{title}")
    with pd.option_context("display.max_columns", None, "display.width", 250,
                           "display.max_colwidth", 60):
        print(df.to_string(index=False))


def save(df: pd.DataFrame, name: str) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / name
    df.to_csv(path, index=False)
    return path


def save_environment(name: str) -> Path:
    """The package versions and CPU kernels a bench ran with, beside its results: the
    same code gives other figures under other versions (bench/README, "The same code
    in a fresh environment"), and a comparison across runs needs to know which."""
    from pipeline.run import kernels, versions

    rows = [{"what": k, "value": v} for k, v in versions().items()]
    rows += [{"what": f"kernels.{k}", "value": "; ".join(v) if isinstance(v, list) else v}
             for k, v in kernels().items()]
    return save(pd.DataFrame(rows), name)
