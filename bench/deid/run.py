"""Benchmark Consensa's de-identification on the test set written for it.

    .venv/bin/python bench/deid/run.py [--misses] [--no-ner]

Two sets, both written for Consensa (everything in them is invented):

* ``testset.jsonl`` (made by ``make_testset.py``): 110 snippets from templates (800
  identifiers; the rules were tuned on them, so their numbers are optimistic) and a
  hard subset of 44 hand-written snippets (58 identifiers: lower-case and unusual
  names, names half found, phone numbers spoken as words, UK, Irish, US and Canadian
  postcodes and the towns before them, ages said of a person, holidays as dates,
  names after time stamps, and look-alikes that are not identifiers), scored
  separately.
* ``heldout.txt``: 30 passages written by hand after the tuning, in another style,
  and not used to tune anything. It runs through the real path: each passage is a
  .txt transcript, read by ``ingest`` and de-identified by ``deidentify_corpus``.

Each testset record is de-identified as one case, with its speaker labels (labels
that are names count as known names, as in a run) and its ``known_names``.
Printed per type of identifier:

* gold: identifiers of that type in the test set;
* found: gold identifiers whose every letter and digit was replaced (by a
  placeholder of any type: what matters for sharing is that it is gone);
* recall: found / gold; typed: share of gold replaced by a placeholder of its own type;
* predicted: placeholders of that type; precision: share of them that overlap a
  gold identifier (any type).

Targets: recall >= 95% for PERSON, EMAIL and PHONE (templates, held-out set), and
for all identifiers together on the hard subset. ``--misses`` lists the identifiers
missed and the false alarms. Exit status 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from pipeline.stages.deidentify import TYPES, DeidentifyConfig, deidentify_text  # noqa: E402
from pipeline.stages.ingest import DEFAULT_INTERVIEWER_SPEAKERS, DEFAULT_PARTICIPANT_SPEAKERS  # noqa: E402

TARGETS = {"PERSON": 0.95, "EMAIL": 0.95, "PHONE": 0.95}
#: the hard subset: every identifier together
HARD_TARGETS = {"all": 0.95}
_MARK = re.compile(r"\[([^\[\]|]+)\|([A-Z]+)\]")


def load_heldout(path: Path) -> list[dict]:
    """Passages of heldout.txt with their gold spans (see the file's header)."""
    records = []
    for block in re.split(r"^=== ", path.read_text(encoding="utf-8"), flags=re.M)[1:]:
        head, _, body = block.partition("\n")
        known = []
        if body.startswith("known:"):
            line, _, body = body.partition("\n")
            known = [n.strip() for n in line[6:].split(";") if n.strip()]
        body = body.strip("\n") + "\n"
        text, spans, position = [], [], 0
        length = 0
        for m in _MARK.finditer(body):
            text.append(body[position:m.start()])
            length += m.start() - position
            spans.append({"start": length, "end": length + len(m.group(1)),
                          "type": m.group(2), "text": m.group(1)})
            text.append(m.group(1))
            length += len(m.group(1))
            position = m.end()
        text.append(body[position:])
        records.append({"id": head.strip(), "text": "".join(text), "spans": spans,
                        "known_names": known})
    return records


def predict_corpus(records: list[dict], config: DeidentifyConfig) -> dict[str, list]:
    """De-identify the records as one study, through ingest and deidentify_corpus."""
    import tempfile

    from pipeline.stages.deidentify import deidentify_corpus
    from pipeline.stages.ingest import IngestConfig, ingest

    known = list(dict.fromkeys(n for r in records for n in r.get("known_names", [])))
    with tempfile.TemporaryDirectory() as folder:
        for r in records:
            (Path(folder) / f"{r['id']}.txt").write_text(r["text"], encoding="utf-8")
        icfg = IngestConfig(paths=[folder])
        corpus = ingest(icfg, Path(folder))
        deid = deidentify_corpus(corpus, config.model_copy(update={"known_names": known}), icfg)
    return {cid: [(x.start, x.end, x.type) for x in case.replacements]
            for cid, case in deid.cases.items()}


def load(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def predict(record: dict, config: DeidentifyConfig) -> list[tuple[int, int, str]]:
    cfg = config.model_copy(update={"known_names": record.get("known_names", [])})
    result = deidentify_text(record["text"], cfg, record.get("labels", []),
                             DEFAULT_INTERVIEWER_SPEAKERS + DEFAULT_PARTICIPANT_SPEAKERS)
    return [(r.start, r.end, r.type) for r in result.replacements]


def _covered(text: str, start: int, end: int, spans: list[tuple[int, int, str]],
             typ: str | None = None) -> bool:
    mask = [False] * (end - start)
    for s, e, t in spans:
        if typ is not None and t != typ:
            continue
        for i in range(max(s, start), min(e, end)):
            mask[i - start] = True
    return all(m for ch, m in zip(text[start:end], mask, strict=True) if ch.isalnum())


def score(records: list[dict], config: DeidentifyConfig,
          as_corpus: bool = False) -> tuple[dict, list[str]]:
    gold, found, typed, predicted, correct = (Counter() for _ in range(5))
    notes: list[str] = []
    corpus_pred = predict_corpus(records, config) if as_corpus else {}
    for record in records:
        text = record["text"]
        pred = corpus_pred[record["id"]] if as_corpus else predict(record, config)
        golds = [(g["start"], g["end"], g["type"]) for g in record["spans"]]
        for s, e, t in golds:
            gold[t] += 1
            if _covered(text, s, e, pred):
                found[t] += 1
                typed[t] += _covered(text, s, e, pred, t)
            else:
                notes.append(f"missed {t:8s} {text[s:e]!r}  in {record['id']}: "
                             f"...{text[max(0, s - 40):e + 20]!r}")
        for s, e, t in pred:
            predicted[t] += 1
            if any(s < ge and gs < e for gs, ge, _ in golds):
                correct[t] += 1
            else:
                notes.append(f"extra  {t:8s} {text[s:e]!r}  in {record['id']}: "
                             f"...{text[max(0, s - 40):e + 20]!r}")
    table = {}
    for t in TYPES:
        table[t] = {"gold": gold[t], "found": found[t],
                    "recall": found[t] / gold[t] if gold[t] else None,
                    "typed": typed[t] / gold[t] if gold[t] else None,
                    "predicted": predicted[t],
                    "precision": correct[t] / predicted[t] if predicted[t] else None}
    g, f = sum(gold.values()), sum(found.values())
    p, c = sum(predicted.values()), sum(correct.values())
    table["all"] = {"gold": g, "found": f, "recall": f / g if g else None,
                    "typed": sum(typed.values()) / g if g else None, "predicted": p,
                    "precision": c / p if p else None}
    return table, notes


def _pct(x: float | None) -> str:
    return "   -  " if x is None else f"{100 * x:5.1f}%"


def format_table(table: dict) -> str:
    lines = ["| type    |  gold | found | recall | typed  | predicted | precision |",
             "|---------|------:|------:|-------:|-------:|----------:|----------:|"]
    for t, row in table.items():
        lines.append(f"| {t:7s} | {row['gold']:5d} | {row['found']:5d} | {_pct(row['recall'])} | "
                     f"{_pct(row['typed'])} | {row['predicted']:9d} | {_pct(row['precision']):>9s} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--testset", type=Path, default=ROOT / "bench" / "deid" / "testset.jsonl")
    parser.add_argument("--heldout", type=Path, default=ROOT / "bench" / "deid" / "heldout.txt")
    parser.add_argument("--misses", action="store_true", help="list misses and false alarms")
    parser.add_argument("--no-ner", action="store_true", help="patterns and known names only")
    args = parser.parse_args(argv)
    config = DeidentifyConfig(enabled=True, ner=not args.no_ner)
    failed: list[str] = []
    testset = load(args.testset)
    sets = [(f"{args.testset.name} (templates)", [r for r in testset if r.get("subset") != "hard"],
             False),
            (f"{args.testset.name} (hard subset)", [r for r in testset if r.get("subset") == "hard"],
             False),
            (args.heldout.name, load_heldout(args.heldout), True)]
    for name, records, as_corpus in sets:
        if not records:
            continue
        hard = "hard" in name
        start = time.perf_counter()
        table, notes = score(records, config, as_corpus)
        elapsed = time.perf_counter() - start
        print(f"\n{name}: {len(records)} {'passages' if as_corpus else 'snippets'}, "
              f"{table['all']['gold']} identifiers, NER {'off' if args.no_ner else 'on'} "
              f"({elapsed:.1f} s)\n")
        print(format_table(table))
        goals = HARD_TARGETS if hard else TARGETS
        missed = [t for t, goal in goals.items()
                  if table[t]["recall"] is not None and table[t]["recall"] < goal]
        print(f"\ntargets (recall >= 95%: {', '.join(goals)}): "
              + ("missed for " + ", ".join(missed) if missed else "met"))
        failed += missed
        if args.misses and notes:
            print("\n" + "\n".join(notes))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
