"""``consensa precode``: code new transcripts with an agreed codebook; doubtful ones go to humans.

The codebook (``RUN/review/codebook.yaml`` from ``consensa review apply``) names the
run it came from; that run's segments with their final categories
(``assignments.csv``) are the training data. New transcripts are ingested and
segmented with the run's config (or ``--config``), embedded with its embedder
(through the embedding cache), and each segment gets the category a classifier
predicts, with a confidence. Two classifiers are compared by cross-validated
accuracy on the judged segments -- nearest centroid and logistic regression -- and
the better one is used. A segment whose confidence is below ``--threshold`` is not
coded: it goes to the "needs a human" queue (``queue.xlsx``), never forced.

Output folder: segments.parquet/.csv (the new segments, category, confidence,
needs_human), cqr_table.md/.csv (confident codes only), queue.xlsx, manifest.json.
"""

from __future__ import annotations

import io
import json
import logging
import os
import shutil
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from . import safeyaml
from .errors import ConfigError, InputError
from .runfolder import RunFolder

log = logging.getLogger("consensa.precode")

CLASSIFIERS = ("nearest_centroid", "logistic_regression")


@dataclass
class Classifier:
    name: str
    model: object
    cv_accuracy: dict[str, float]

    def predict(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Predicted labels and confidences (the predicted class's probability)."""
        X = _unit(X)
        proba = self.model.predict_proba(X)
        best = proba.argmax(axis=1)
        return self.model.classes_[best], proba[np.arange(len(X)), best]


def _unit(X: np.ndarray) -> np.ndarray:
    X = np.asarray(X, dtype=np.float64)
    norms = np.linalg.norm(X, axis=1, keepdims=True)
    return X / np.where(norms == 0, 1, norms)


def _make(name: str, seed: int):
    from sklearn.linear_model import LogisticRegression
    from sklearn.neighbors import NearestCentroid

    if name == "nearest_centroid":
        return NearestCentroid()
    return LogisticRegression(max_iter=2000, C=1.0, random_state=seed)


def fit_classifier(X: np.ndarray, y: np.ndarray, groups: np.ndarray | None = None,
                   seed: int = 0, folds: int = 5) -> Classifier:
    """Pick nearest centroid or logistic regression by cross-validated accuracy; fit on all.

    Folds keep each case whole (GroupKFold) when ``groups`` is given and there are
    enough cases, so the estimate is for cases the classifier has not seen.
    """
    from sklearn.model_selection import GroupKFold, StratifiedKFold, cross_val_score

    X = _unit(X)
    y = np.asarray(y)
    classes, counts = np.unique(y, return_counts=True)
    if len(classes) < 2:
        raise InputError("the codebook's judged segments hold fewer than two categories; "
                         "a classifier needs at least two")
    scores: dict[str, float] = {}
    if groups is not None and len(np.unique(groups)) >= 3:
        cv = GroupKFold(n_splits=min(folds, len(np.unique(groups))))
        split = {"groups": groups}
    elif counts.min() >= 2:
        cv = StratifiedKFold(n_splits=min(folds, int(counts.min())), shuffle=True,
                             random_state=seed)
        split = {}
    else:
        cv, split = None, {}
    for name in CLASSIFIERS:
        if cv is None:
            scores[name] = float("nan")
            continue
        scores[name] = float(np.mean(cross_val_score(_make(name, seed), X, y, cv=cv,
                                                     scoring="accuracy", **split)))
    best = max(CLASSIFIERS, key=lambda n: (-1 if np.isnan(scores[n]) else scores[n],
                                           n == "logistic_regression"))
    return Classifier(best, _make(best, seed).fit(X, y), scores)


# --- the command --------------------------------------------------------------

def _load_codebook(path: Path) -> tuple[dict, Path, pd.DataFrame]:
    path = Path(path)
    if not path.is_file():
        raise InputError("no such codebook", path=path,
                         hint="give the codebook.yaml that `consensa review apply` wrote")
    cb = safeyaml.load_file(path, what="codebook") or {}
    if not isinstance(cb, dict) or "training" not in cb or "domains" not in cb:
        raise InputError("not a Consensa codebook (no training: or domains: section)", path=path)
    run_folder = Path(cb["training"]["run_folder"])
    if not run_folder.is_absolute():
        run_folder = path.parent / run_folder
    labels = Path(cb["training"]["assignments"])
    if not labels.is_absolute():
        labels = path.parent / labels
    for need, there in ((run_folder, RunFolder(run_folder).has("segments")),
                        (labels, labels.is_file())):
        if not there:
            raise InputError(f"the codebook's training data is missing: {need}", path=path,
                             hint="keep the codebook beside assignments.csv and the run folder")
    from .sheets import restore_frame  # assignments.csv is neutralised for spreadsheets

    return cb, run_folder, restore_frame(pd.read_csv(labels, keep_default_na=False))


def precode(codebook: Path, transcripts: Path, config: Path | None = None, threshold: float = 0.5,
            out: Path | None = None) -> Path:
    from .compose import build_stage, embed_texts, open_cache
    from .config import load_config, resolve_paths, validate_config
    from .fsutil import atomic_write_bytes
    from .sheets import to_csv
    from .stages.cqr import cqr_markdown, cqr_table, frequency_label
    from .stages.ingest import ingest

    if not 0.0 <= threshold <= 1.0:
        raise ConfigError("--threshold must be between 0 and 1")
    cb, run_folder, labels = _load_codebook(Path(codebook))
    if config is not None:
        cfg, base = load_config(config)
    else:
        data = safeyaml.load_file(run_folder / "config.yaml", what="run config") or {}
        # a run folder's config.yaml holds absolute paths; one written before they were
        # resolved at load keeps them relative to a folder it does not record, and the
        # current folder stands in for it
        base = Path.cwd()
        cfg = resolve_paths(validate_config(data, run_folder / "config.yaml"), base)
    transcripts = Path(transcripts)
    if not transcripts.exists():
        raise InputError("no such transcripts folder", path=transcripts)
    cfg = cfg.model_copy(update={"ingest": cfg.ingest.model_copy(
        update={"paths": [transcripts.resolve()], "cases_table": None})})

    cache = open_cache(cfg, base)       # cache_dir is absolute: resolved with the config

    log.info("ingest and segment the new transcripts ...")
    corpus = ingest(cfg.ingest, base)
    deid = None
    if cfg.deidentify.enabled:
        # as in the run: nothing is segmented or embedded before names are replaced
        from .stages.deidentify import deidentify_corpus

        if config is None and not cfg.deidentify.known_names:
            log.info("de-identify with the run's settings (its folder keeps no known names: "
                     "give --config with the team's config to use them) ...")
        else:
            log.info("de-identify the new transcripts ...")
        deid = deidentify_corpus(corpus, cfg.deidentify, cfg.ingest)
        corpus = deid.corpus
    new = build_stage("segment", cfg).segment(corpus, memory=cache).segments.reset_index(drop=True)
    if new.empty:
        raise InputError("no participant speech to code in the new transcripts", path=transcripts)

    cats = {int(c["id"]): (c["name"], int(d["id"]), d["name"])
            for d in cb["domains"] for c in d["categories"]}
    train = RunFolder(run_folder).segments()[["segment_id", "case_id", "text"]]
    train = train.merge(labels[["segment_id", "category_id"]], on="segment_id")
    train = train[train["category_id"].isin(list(cats))]

    log.info("embed %d judged and %d new segments ...", len(train), len(new))
    # one call: a corpus-fitted embedder (TF-IDF) then shares one space for both
    vecs, _ = embed_texts(build_stage("embed", cfg),
                          train["text"].tolist() + new["text"].tolist(), cache)
    Xtr, Xnew = vecs[:len(train)], vecs[len(train):]

    log.info("choose and fit the classifier ...")
    clf = fit_classifier(Xtr, train["category_id"].to_numpy(), train["case_id"].to_numpy(),
                         seed=cfg.seed)
    pred, conf = clf.predict(Xnew)
    seg = new.copy()
    seg["suggested_category_id"] = pred.astype(int)
    seg["confidence"] = conf.astype(float)
    seg["needs_human"] = seg["confidence"] < threshold
    seg["category_id"] = np.where(seg["needs_human"], -1, seg["suggested_category_id"])
    seg["category"] = [cats.get(c, ("",))[0] for c in seg["category_id"]]
    seg["suggested_category"] = [cats[c][0] for c in seg["suggested_category_id"]]
    seg["domain_id"] = [cats[c][1] if c in cats else -1 for c in seg["category_id"]]
    seg["domain"] = [cats[c][2] if c in cats else "" for c in seg["category_id"]]

    total = int(seg["case_id"].nunique())
    coded = seg[~seg["needs_human"]]
    from .stages.cqr import CQRConfig
    rcfg = RunFolder(run_folder).config
    cqr_cfg = CQRConfig(**rcfg.get("cqr", {})) if isinstance(rcfg.get("cqr"), dict) else CQRConfig()
    trows = []
    for cid, (name, did, _) in cats.items():
        members = coded[coded["category_id"] == cid].sort_values("confidence", ascending=False)
        n = int(members["case_id"].nunique())
        trows.append({"theme_id": cid, "name": name, "domain_id": did, "n_segments": len(members),
                      "n_cases": n, "frequency_label": frequency_label(n, total, cqr_cfg),
                      "quote_ids": members["segment_id"].head(3).tolist()})
    themes = pd.DataFrame(trows)
    doms = pd.DataFrame([{"domain_id": int(d["id"]), "name": d["name"]} for d in cb["domains"]])
    table = cqr_table(themes, doms, seg, total)

    if out is None:
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        out = Path(codebook).parent / f"precode-{stamp}"
    out = Path(out)
    if out.exists():
        raise InputError("the output folder exists already; it is never overwritten", path=out)
    tmp = out.parent / f".{out.name}.partial-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        seg.to_parquet(tmp / "segments.parquet", index=False)
        to_csv(seg, tmp / "segments.csv", index=False)        # no text starts a formula
        to_csv(table, tmp / "cqr_table.csv", index=False)
        (tmp / "cqr_table.md").write_text(cqr_markdown(table), encoding="utf-8")
        atomic_write_bytes(tmp / "queue.xlsx", queue_workbook(seg[seg["needs_human"]], cats))
        for rel, text in (deid.files.items() if deid is not None else ()):
            path = tmp / rel                       # the de-identified texts the offsets index
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(text.encode("utf-8"))
        manifest = {
            "codebook": str(Path(codebook).resolve()), "run_folder": str(run_folder),
            "transcripts": str(transcripts.resolve()), "threshold": threshold,
            "classifier": clf.name, "cv_accuracy": clf.cv_accuracy,
            "n_training_segments": len(train), "n_segments": len(seg),
            "n_coded": int((~seg["needs_human"]).sum()), "n_needs_human": int(seg["needs_human"].sum()),
            "cases": total, "embed": cfg.embed.name, "segment": cfg.segment.name,
            # counts only; the placeholder mapping of new transcripts is not written
            "deidentify": deid.summary(False) if deid is not None else {"enabled": False},
            "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    os.replace(tmp, out)
    return out


def queue_workbook(queue: pd.DataFrame, cats: dict[int, tuple]) -> bytes:
    """The "needs a human" queue as a workbook: the suggestion, and a dropdown to code it."""
    import openpyxl
    from openpyxl.styles import Font, PatternFill
    from openpyxl.worksheet.datavalidation import DataValidation

    from .sheets import append_row

    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "queue"
    head = ["segment id", "case", "question", "text", "suggested category id",
            "suggested category", "confidence", "code as category", "comment"]
    append_row(ws, head)     # every str a string cell: a quote or a name is never a formula
    for c in ws[1]:
        c.font = Font(bold=True)
    for c in (ws["H1"], ws["I1"]):
        c.fill = PatternFill("solid", fgColor="FFF2CC")
    for r in queue.sort_values("confidence").itertuples():
        append_row(ws, [r.segment_id, r.case_id, r.question, r.text,
                        int(r.suggested_category_id), r.suggested_category,
                        round(float(r.confidence), 3), None, None])
    lists = wb.create_sheet("categories")
    append_row(lists, ["category id", "category", "domain"])
    for cid, (name, _, dom) in cats.items():
        append_row(lists, [cid, name, dom])
    append_row(lists, ["none", "not any category", ""])
    dv = DataValidation(type="list", formula1=f"'categories'!$A$2:$A${len(cats) + 2}",
                        allow_blank=True)
    ws.add_data_validation(dv)
    dv.add(f"H2:H{max(ws.max_row, 2)}")
    for col, width in zip("ABCDEFGHI", (16, 12, 30, 80, 10, 30, 10, 16, 30)):
        ws.column_dimensions[col].width = width
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()
