"""``consensa precode``: code new transcripts with an agreed codebook; doubtful ones go to humans.

The codebook (``RUN/review/codebook.yaml`` from ``consensa review apply``) names the
run it came from; that run's segments with their final categories
(``assignments.csv``) are the training data. Segments that belong to no category --
of a rejected theme, unassigned, or of the interview frame -- train an explicit
"none" class, so a segment that fits no category is coded "none" (or queued), never
pushed into the nearest category.

New transcripts are ingested and segmented with the run's config (or ``--config``),
embedded with its embedder (through the embedding cache), and a logistic regression
on the unit vectors gives each segment its three likeliest categories with a
*calibrated* confidence: a temperature fitted on case-grouped cross-validation
(each case scored by a model that never saw it), so that of the segments coded with
confidence 0.8 about 80% are right on unseen cases. The manifest reports the
held-out accuracy, macro F1, expected calibration error and reliability table.
A segment whose confidence is below ``--threshold`` is not coded: it goes to the
"needs a human" queue (``queue.xlsx``), never forced.

A person codes the queue in the workbook, and ``consensa precode import QUEUE.xlsx
--by NAME`` stores the choices, or in the browser (``consensa serve OUT``, its queue
page): either way into the review store of the codebook's run (its append-only audit
log, :func:`record_choices`), and ``--retrain`` adds them to the training data of the
next batch.

Output folder: segments.parquet/.csv (the new segments, category, confidence, the
three likeliest categories, status coded / none / needs_human / coded_by_people, and for
a segment people coded in an earlier batch's queue who chose what), cqr_table.md/.csv
(confident codes only; a category no segment was coded with has no row),
queue.xlsx, manifest.json, and codebook.yaml: a copy of the codebook it coded with,
since the review's codebook.yaml is rewritten by every apply, and the exports and the
people's queue choices of this batch are read against the codebook it was made with.
"""

from __future__ import annotations

import io
import json
import logging
import os
import re
import shutil
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from . import safeyaml
from .errors import ConfigError, InputError, Skipped
from .exchange.agreed import check_codebook
from .review.store import CHOICE_ACTION, now_utc
from .runfolder import RunFolder

if TYPE_CHECKING:
    from .review.store import ReviewStore
    from .shards import ShardReport

log = logging.getLogger("consensa.precode")

#: the label of "none of these": a segment that belongs to no category of the codebook
NONE = -1
#: a "none" class is trained only from at least this many segments, from two cases or more;
#: with fewer, the calibrated confidence and the threshold alone decide what is queued
NONE_MIN_SEGMENTS = 5
#: bins of the reliability table and of the expected calibration error
CALIBRATION_BINS = 10


@dataclass
class Classifier:
    """Logistic regression on unit vectors, with a temperature fitted on held-out cases.

    ``confidence`` is the predicted class's probability after temperature scaling
    (``softmax(logits / temperature)``). The temperature is the one that best
    predicts the out-of-fold codes of case-grouped cross-validation, so a confidence
    of 0.8 means: about 80% of such segments of unseen cases were coded right.
    ``calibration`` holds that held-out evidence: accuracy, macro F1, the expected
    calibration error and the reliability table.
    """

    name: str
    model: object
    temperature: float
    calibration: dict
    #: the highest confidence the held-out evidence can support (rule of succession)
    max_confidence: float = 1.0

    @property
    def classes_(self) -> np.ndarray:
        return self.model.classes_

    @property
    def cv_accuracy(self) -> dict[str, float]:
        return {self.name: self.calibration.get("accuracy", float("nan"))}

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        return cap_confidence(_softmax(_logits(self.model, _unit(X)) / self.temperature),
                              self.max_confidence)

    def predict(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Predicted labels and confidences (the predicted class's calibrated probability)."""
        proba = self.predict_proba(X)
        best = proba.argmax(axis=1)
        return self.classes_[best], proba[np.arange(len(proba)), best]

    def top(self, X: np.ndarray, k: int = 3) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` likeliest labels of each row, likeliest first, and their probabilities."""
        proba = self.predict_proba(X)
        order = np.argsort(-proba, axis=1, kind="stable")[:, :k]
        return self.classes_[order], np.take_along_axis(proba, order, axis=1)


def _unit(X: np.ndarray) -> np.ndarray:
    X = np.asarray(X, dtype=np.float64)
    norms = np.linalg.norm(X, axis=1, keepdims=True)
    return X / np.where(norms == 0, 1, norms)


def _logits(model, X: np.ndarray) -> np.ndarray:
    """One score a class (a binary model's single score becomes ``[0, score]``)."""
    z = model.decision_function(X)
    return np.column_stack([np.zeros(len(z)), z]) if z.ndim == 1 else z


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def cap_confidence(proba: np.ndarray, cap: float) -> np.ndarray:
    """Probabilities whose largest is at most ``cap``; the excess goes to the other classes.

    On cleanly separated training data the fitted temperature sharpens every score
    to 1.0, which would claim a certainty no held-out test can show: n held-out
    segments, even all of them right, support at most (n + 1) / (n + 2) (Laplace's
    rule of succession). So the cap is that, and a threshold of 1 still queues
    everything.
    """
    proba = np.array(proba, dtype=float)
    if cap >= 1.0 or proba.shape[1] < 2:
        return proba
    rows = np.arange(len(proba))
    top = proba.argmax(axis=1)
    excess = np.clip(proba[rows, top] - cap, 0.0, None)
    others = proba.copy()
    others[rows, top] = 0.0
    weight = others + 1e-12
    weight[rows, top] = 0.0
    weight /= weight.sum(axis=1, keepdims=True)
    proba += weight * excess[:, None]
    proba[rows, top] -= excess
    return proba


def make_logistic_regression(seed: int = 0, class_weight: str | None = "balanced"):
    """The classifier on frozen embeddings (bench/precode.py compares the choices).

    ``class_weight="balanced"``: a rare code (sustain talk, a small category) weighs
    as much as a frequent one, which raises macro F1 on the benchmark data; the
    confidence is calibrated afterwards either way.
    """
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(max_iter=3000, C=1.0, class_weight=class_weight, random_state=seed)


def case_folds(y: np.ndarray, groups: np.ndarray | None, folds: int = 5,
               seed: int = 0) -> tuple[list[tuple[np.ndarray, np.ndarray]], str]:
    """Cross-validation splits that keep each case whole, and how they were made.

    GroupKFold by case when there are at least three cases, so every estimate is for
    cases the classifier has not seen; with fewer cases, stratified folds of
    segments (said so in the manifest); none when a code has a single segment.
    """
    from sklearn.model_selection import GroupKFold, StratifiedKFold

    y = np.asarray(y)
    if groups is not None and len(np.unique(groups)) >= 3:
        n = min(folds, len(np.unique(groups)))
        return list(GroupKFold(n_splits=n).split(y, y, groups)), f"GroupKFold by case, {n} folds"
    counts = np.unique(y, return_counts=True)[1]
    if counts.min() >= 2:
        n = min(folds, int(counts.min()))
        cv = StratifiedKFold(n_splits=n, shuffle=True, random_state=seed)
        return list(cv.split(y, y)), f"StratifiedKFold by segment, {n} folds (fewer than 3 cases)"
    return [], "none (a code has a single segment)"


def out_of_fold_logits(make, X: np.ndarray, y: np.ndarray, splits) -> np.ndarray:
    """Each row's class scores from a model fitted without its fold (its case).

    Columns follow ``np.unique(y)``; a class missing from a fold's training part
    gets a score of -inf there (probability 0).
    """
    classes = np.unique(y)
    out = np.full((len(y), len(classes)), -np.inf)
    for train, test in splits:
        if len(np.unique(y[train])) < 2:
            continue
        m = make().fit(X[train], y[train])
        cols = np.searchsorted(classes, m.classes_)
        out[np.ix_(test, cols)] = _logits(m, X[test])
    return out


def fit_temperature(logits: np.ndarray, y_index: np.ndarray) -> float:
    """The temperature T that minimises the log loss of ``softmax(logits / T)``.

    One parameter: it rescales confidence without changing which class is predicted
    (Guo et al. 2017, "On calibration of modern neural networks").
    """
    from scipy.optimize import minimize_scalar

    ok = np.isfinite(logits).any(axis=1)
    z, yi = logits[ok], y_index[ok]
    if len(z) == 0:
        return 1.0
    z = np.where(np.isfinite(z), z, -1e9)

    def nll(log_t: float) -> float:
        p = _softmax(z / np.exp(log_t))[np.arange(len(z)), yi]
        return float(-np.mean(np.log(np.clip(p, 1e-12, 1.0))))

    res = minimize_scalar(nll, bounds=(np.log(0.02), np.log(50.0)), method="bounded")
    return float(np.exp(res.x))


def reliability(confidence: np.ndarray, correct: np.ndarray,
                bins: int = CALIBRATION_BINS) -> tuple[float, list[dict]]:
    """Expected calibration error and the reliability table (equal-width bins).

    ECE = sum over bins of (share of segments in the bin) x |accuracy - mean confidence|.
    The table has one row a non-empty bin: its range, n, mean confidence, accuracy.
    """
    confidence = np.asarray(confidence, dtype=float)
    correct = np.asarray(correct, dtype=bool)
    if len(confidence) == 0:
        return float("nan"), []
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    ece, rows = 0.0, []
    for b in range(bins):
        inside = which == b
        n = int(inside.sum())
        if not n:
            continue
        conf, acc = float(confidence[inside].mean()), float(correct[inside].mean())
        ece += n / len(confidence) * abs(acc - conf)
        rows.append({"bin": f"{edges[b]:.1f}-{edges[b + 1]:.1f}", "n": n,
                     "mean_confidence": round(conf, 4), "accuracy": round(acc, 4)})
    return float(ece), rows


def fit_classifier(X: np.ndarray, y: np.ndarray, groups: np.ndarray | None = None,
                   seed: int = 0, folds: int = 5, class_weight: str | None = "balanced",
                   make=None) -> Classifier:
    """Fit on all judged segments; calibrate and measure on case-grouped folds.

    The out-of-fold scores (each case scored by a model that never saw it) fit the
    temperature and give the held-out accuracy, macro F1, the expected calibration
    error and the reliability table. With no usable folds the temperature stays 1
    and the calibration is reported as not measured.
    """
    from sklearn.metrics import f1_score

    X = _unit(X)
    y = np.asarray(y)
    classes = np.unique(y)
    if len(classes) < 2:
        raise InputError("the codebook's judged segments hold fewer than two categories; "
                         "a classifier needs at least two")
    make = make or (lambda: make_logistic_regression(seed, class_weight))
    splits, how = case_folds(y, groups, folds, seed)
    calibration: dict = {"method": "temperature scaling on out-of-fold scores", "folds": how,
                         "class_weight": class_weight or "none", "n": int(len(y))}
    temperature, cap = 1.0, 1.0
    if splits:
        z = out_of_fold_logits(make, X, y, splits)
        yi = np.searchsorted(classes, y)
        scored = np.isfinite(z).any(axis=1)
        temperature = fit_temperature(z, yi)
        proba = _softmax(np.where(np.isfinite(z), z, -1e9)[scored] / temperature)
        pred = classes[proba.argmax(axis=1)]
        conf = proba.max(axis=1)
        truth = y[scored]
        cap = (len(truth) + 1.0) / (len(truth) + 2.0)
        proba = cap_confidence(proba, cap)
        conf = proba.max(axis=1)
        ece, table = reliability(conf, pred == truth)
        calibration.update({
            "temperature": round(temperature, 4), "max_confidence": round(cap, 4),
            "n_scored": int(scored.sum()),
            "accuracy": round(float((pred == truth).mean()), 4),
            "macro_f1": round(float(f1_score(truth, pred, average="macro", zero_division=0)), 4),
            "ece": round(ece, 4), "reliability": table,
            "precision_at": precision_coverage(conf, pred == truth)})
    else:
        calibration.update({"temperature": 1.0, "accuracy": float("nan"),
                            "macro_f1": float("nan"), "ece": float("nan"), "reliability": [],
                            "note": "not measured: too few judged segments to hold any out"})
    return Classifier("logistic_regression", make().fit(X, y), temperature, calibration, cap)


THRESHOLDS = (0.0, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


def precision_coverage(confidence: np.ndarray, correct: np.ndarray,
                       thresholds=THRESHOLDS) -> list[dict]:
    """Per threshold: the share of segments coded automatically, and how many of them are right."""
    out = []
    for t in thresholds:
        auto = confidence >= t
        out.append({"threshold": t, "coverage": round(float(auto.mean()), 4),
                    "precision": round(float(correct[auto].mean()), 4) if auto.any() else None})
    return out


# --- the command --------------------------------------------------------------

def moved_with(recorded: Path, relative: str | None, base: Path, exists) -> Path:
    """Where a folder or file recorded by path is now. A relative ``recorded`` is read
    from ``base``. An absolute one is recorded with its path as seen from ``base``
    (``relative``, when the writer knew it): that one is tried first, since it holds
    when the study folder was moved or copied whole, and the absolute one after it,
    which holds when only ``base``'s folder moved. ``exists(path)`` says whether a
    candidate is the thing; when neither is, the recorded path is returned, for the
    caller's error to name."""
    if not recorded.is_absolute():
        return base / recorded
    if relative:
        near = (base / relative).resolve()
        if exists(near):
            return near
    return recorded


def _load_codebook(path: Path) -> tuple[dict, Path, pd.DataFrame]:
    path = Path(path)
    if not path.is_file():
        raise InputError("no such codebook", path=path,
                         hint="give the codebook.yaml that `consensa review apply` wrote")
    if path.suffix.lower() not in (".yaml", ".yml"):
        # codebook.md beside it is for people to read: its YAML error at line 7 said
        # nothing of the file to give
        sibling = path.with_suffix(".yaml")
        raise InputError("is not a codebook.yaml: pre-coding reads the codebook that "
                         "`consensa review apply` wrote as YAML", path=path,
                         hint=f"give {sibling}" if sibling.is_file() else
                         "give the codebook.yaml that `consensa review apply` wrote")
    cb = check_codebook(safeyaml.load_file(path, what="codebook") or {}, path)
    if cb.get("draft"):
        # a pre-coding says it coded with the agreed codebook, and its choices train the
        # next batch: a draft's open items would pass for decisions nobody made
        open_items = cb.get("open_items") or []
        why = (f"{len(open_items)} item(s) of the review were still open when it was written"
               if open_items else "a preview, written before the review was applied (an "
               "audit or a later round may have changed it)")
        raise InputError(f"is a draft codebook: {why}, so it is not what the judges agreed",
                         path=path, field="draft",
                         hint="settle the open items, run `consensa review apply RUN`, and "
                              "pre-code with RUN/review/codebook.yaml")
    if cb.get("training") is None:
        raise InputError("has no training: section: the judged run it learns from",
                         path=path, field="training",
                         hint="give the codebook.yaml that `consensa review apply` wrote")
    run_folder = moved_with(Path(cb["training"]["run_folder"]),
                             cb["training"].get("run_folder_relative"), path.parent,
                             lambda f: RunFolder(f).has("segments"))
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


#: the default --threshold: the least calibrated confidence to code a segment without a
#: person. The confidence is calibrated, so what is coded at 0.7 or more is right at least
#: about as often as that on unseen cases: 76% (AnnoMI client talk, 16% coded), 90%
#: (AnnoMI therapist behaviour, 55% coded), 81% (PDPilot domain, 31% coded) in
#: bench/precode.py, which prints precision and coverage per threshold.
DEFAULT_THRESHOLD = 0.7


def nested_table(cb: dict, cats: dict[int, tuple[str, int, str]], coded: pd.DataFrame,
                 seg: pd.DataFrame, total: int, cqr_cfg, doms: pd.DataFrame
                 ) -> tuple[pd.DataFrame, list[str]]:
    """The pre-coding's CQR table (CQR_COLUMNS and ``level``), and the names of the
    categories no segment was coded to.

    A codebook nests subcategories under their category (``parent``), as CQR does: a
    category counts its subcategories' segments and cases too, and each subcategory
    follows its category, marked as one. Listed flat, the codes of a category's
    subcategories went to rows of their own, and the category, coded nothing of its
    own, was not in the table at all."""
    from .stages.cqr import cqr_table, frequency_label

    parent_of = {int(c["id"]): int(c["parent"]) if c.get("parent") is not None else -1
                 for d in cb["domains"] for c in d["categories"]}
    children: dict[int, list[int]] = {}
    for cid, p in parent_of.items():
        if p >= 0 and p in cats:
            children.setdefault(p, []).append(cid)

    def rows_of(ids: list[int]) -> pd.DataFrame:
        trows = []
        for cid in ids:
            name, did, _ = cats[cid]
            mine = [cid] + children.get(cid, [])
            members = coded[coded["category_id"].isin(mine)].sort_values("confidence",
                                                                           ascending=False)
            if members.empty:       # a row with no case and no quote says nothing
                absent.append(name)
                continue
            n = int(members["case_id"].nunique())
            trows.append({"theme_id": cid, "name": name, "domain_id": did,
                          "n_segments": len(members), "n_cases": n,
                          "frequency_label": frequency_label(n, total, cqr_cfg),
                          "quote_ids": members["segment_id"].head(3).tolist()})
        themes = pd.DataFrame(trows, columns=["theme_id", "name", "domain_id", "n_segments",
                                              "n_cases", "frequency_label", "quote_ids"])
        # cqr_table orders its rows so: each row's category id, for its subcategories
        return cqr_table(themes, doms, seg, total).assign(
            theme_id=themes.sort_values(["domain_id", "n_cases", "n_segments", "theme_id"],
                                        ascending=[True, False, False, True])["theme_id"].to_list())

    absent: list[str] = []
    top = rows_of([c for c in cats if parent_of.get(c, -1) not in cats])
    parts = []
    for r in top.to_dict("records"):
        parts.append({**r, "level": "category"})
        sub = rows_of(children.get(int(r["theme_id"]), []))
        parts += [{**x, "level": "subcategory"} for x in sub.to_dict("records")]
    table = pd.DataFrame(parts, columns=[*top.columns, "level"]).drop(columns="theme_id")
    if not children:
        table = table.drop(columns="level")     # nothing nested: the table as it always was
    else:
        table["flags"] = [[] for _ in range(len(table))]
        table["label_if_reassigned_counted"] = table["frequency_label"]
    return table, absent


def codebook_categories(cb: dict) -> dict[int, tuple[str, int, str]]:
    """The codebook's categories: id -> (name, domain id, domain name)."""
    return {int(c["id"]): (c["name"], int(d["id"]), d["name"])
            for d in cb["domains"] for c in d["categories"]}


def category_identity(cb: dict) -> dict[int, dict]:
    """What identifies each category of a codebook beyond its id: id -> its name, the
    themes of the run it comes from (``from_themes``: a theme merged in adds its id)
    and the proposed subcategory it keeps (``proposed_subcategory``), where it has them.
    An id is a number an apply gives out; a later apply may give it to another category
    (a category created before it), while the themes and proposed subcategories a
    category comes from stay theirs."""
    out = {}
    for d in cb["domains"]:
        for c in d["categories"]:
            sub = c.get("proposed_subcategory")
            out[int(c["id"])] = {
                "category": str(c["name"]),
                "from_themes": tuple(int(t) for t in c.get("from_themes") or []),
                "proposed_subcategory": int(sub) if sub is not None and int(sub) >= 0 else None}
    return out


#: a batch's name: its output folder's name and when it was pre-coded
_BATCH_NAME = re.compile(r"^(?P<folder>.+)-(?P<at>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\+00:00|Z)?)$")

#: why a stored choice names no category of the codebook used now
GONE = "its category is no longer in the codebook (rejected, dropped or taken apart since)"
AMBIGUOUS = "its category is more than one category of the codebook used now"
UNKNOWN = ("it was made against another codebook, which is not kept, and its id alone "
           "does not say which category it was")


@dataclass
class ChoiceReader:
    """Reads a stored queue choice's category in the codebook used now.

    A choice names a category by id, and an id is only what one apply of the review
    gave out: after the judges created a category, merged, rejected or renamed one,
    the same id can be another category ("19 – Supervisor was supportive" read back
    as "Therapist emotion"). So a choice is stored with the sha256 of the codebook it
    was made against and what identifies its category there (:func:`category_identity`).
    Made against the codebook used now, its id is read as it is; made against another,
    its category is found by identity: renamed or merged since, the category it became;
    no longer there, or more than one, none (:meth:`read` says why; the segment goes
    back to the queue, never to another category).

    A choice stored before choices carried these was made against the codebook its
    batch's pre-coding pins (its manifest's ``codebook_sha256``, ``pins``); with that
    codebook kept beside the batch (``kept``: its identities by sha256) its id is read
    there; otherwise only an id of one of the run's own themes says which category it
    was (a theme keeps its id), any other id none. A batch whose folder is not found
    was pre-coded with the codebook used now if that was applied before the batch was
    made.
    """

    sha256: str
    categories: dict[int, tuple]
    identity: dict[int, dict]
    run_themes: frozenset[int] = frozenset()
    applied_at: str | None = None
    pins: dict[str, str] = field(default_factory=dict)
    kept: dict[str, dict[int, dict]] = field(default_factory=dict)

    @classmethod
    def of(cls, cb: dict, codebook: Path, run_folder: Path,
           batch_folders: Iterable[Path] = ()) -> ChoiceReader:
        """The reader for ``cb`` (read from ``codebook``), with the pins and kept
        codebooks of the earlier batches whose folders are in ``batch_folders``."""
        from .fsutil import file_sha256

        themes = RunFolder(run_folder).themes()
        own = frozenset(int(t) for t in themes["theme_id"]) if "theme_id" in themes else frozenset()
        review = cb.get("review") if isinstance(cb.get("review"), dict) else {}
        reader = cls(file_sha256(codebook), codebook_categories(cb), category_identity(cb),
                     own, str(review.get("applied_at") or "") or None)
        for folder in batch_folders:
            reader.add_batch(Path(folder))
        return reader

    def add_batch(self, folder: Path) -> None:
        """Learn which codebook the pre-coding in ``folder`` was made with (and its
        categories, if the folder keeps a copy of it)."""
        try:
            manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
        except (OSError, ValueError, UnicodeDecodeError):
            return
        if not isinstance(manifest, dict) or not manifest.get("codebook_sha256"):
            return
        pin = str(manifest["codebook_sha256"])
        self.pins.setdefault(str(manifest.get("batch")), pin)
        copy = folder / KEPT_CODEBOOK
        if pin not in self.kept and copy.is_file():
            from .fsutil import file_sha256

            if file_sha256(copy) == pin:
                self.kept[pin] = category_identity(
                    check_codebook(safeyaml.load_file(copy, what="codebook") or {}, copy))

    def made_against(self, v: Mapping) -> str | None:
        """The sha256 of the codebook a stored choice was made against, if known."""
        if v.get("codebook_sha256"):
            return str(v["codebook_sha256"])
        batch = str(v.get("batch") or "")
        if batch in self.pins:
            return self.pins[batch]
        m = _BATCH_NAME.match(batch)
        if m and self.applied_at and self.applied_at <= m.group("at").replace("Z", "+00:00"):
            return self.sha256
        return None

    def read(self, v: Mapping) -> tuple[int | None, str]:
        """A stored choice's category id in this codebook (or :data:`NONE`), and ""; or
        None and why it names none (:data:`GONE`, :data:`AMBIGUOUS`, :data:`UNKNOWN`)."""
        cid = int(v["category_id"])
        if cid == NONE:
            return NONE, ""
        made = self.made_against(v)
        if made == self.sha256:
            return (cid, "") if cid in self.categories else (None, GONE)
        if v.get("category"):
            ident = {"category": v["category"], "from_themes": tuple(v.get("from_themes") or ()),
                     "proposed_subcategory": v.get("proposed_subcategory")}
        elif made in self.kept:
            ident = self.kept[made].get(cid)
            if ident is None:
                return None, UNKNOWN
        elif cid in self.run_themes:
            ident = {"category": "", "from_themes": (cid,), "proposed_subcategory": None}
        else:
            return None, UNKNOWN
        return self.find(ident)

    def find(self, ident: Mapping) -> tuple[int | None, str]:
        """The category of this codebook that ``ident`` identifies: the one keeping its
        proposed subcategory; else the one holding its themes (a category merged into
        another: that one), preferring one that is a theme itself to one split off it;
        else the one of its name."""
        sub = ident.get("proposed_subcategory")
        themes = set(ident.get("from_themes") or ())
        if sub is not None:
            found = [c for c, i in self.identity.items() if i["proposed_subcategory"] == int(sub)]
        elif themes:
            found = [c for c, i in self.identity.items() if themes & set(i["from_themes"])]
            if len(found) > 1:
                found = [c for c in found if c in self.identity[c]["from_themes"]] or found
        else:
            key = _name_key(ident.get("category") or "")
            found = [c for c, i in self.identity.items() if _name_key(i["category"]) == key]
        if len(found) == 1:
            return found[0], ""
        return None, (GONE if not found else AMBIGUOUS)


#: the copy of its codebook a pre-coding keeps in its output folder
KEPT_CODEBOOK = "codebook.yaml"


def batch_folders(batches: Iterable[str], near: Iterable[Path]) -> list[Path]:
    """The output folders of the pre-codings ``batches`` found in the folders ``near``
    (a batch is named after its folder): where a batch's manifest says which codebook
    its queue was coded against."""
    out = []
    for batch in set(batches):
        m = _BATCH_NAME.match(str(batch))
        if not m:
            continue
        for base in near:
            folder = Path(base) / m.group("folder")
            if folder.is_dir() and folder not in out:
                out.append(folder)
    return out


def training_set(cb: dict, run_folder: Path, labels: pd.DataFrame) -> pd.DataFrame:
    """The judged segments with their final category, or :data:`NONE`.

    A segment of a category the judges rejected, a segment left unassigned, and a
    segment of the interview frame (a ``frame`` column, where the run marks one)
    belong to no category of the codebook: they teach the classifier what "none of
    these" looks like, instead of being left out (then the nearest category would
    take every such segment of a new transcript).
    """
    cats = {int(c["id"]) for d in cb["domains"] for c in d["categories"]}
    seg = RunFolder(run_folder).segments()
    keep = [c for c in ("segment_id", "case_id", "text", "frame") if c in seg.columns]
    train = seg[keep].merge(labels[["segment_id", "category_id"]], on="segment_id", how="left")
    cat = pd.to_numeric(train["category_id"], errors="coerce").fillna(NONE).astype(int)
    cat = cat.where(cat.isin(list(cats)), NONE)
    if "frame" in train.columns:
        cat = cat.where(~train["frame"].fillna(False).astype(bool), NONE)
    train["label"] = cat.to_numpy()
    train["origin"] = "codebook"
    return train[["segment_id", "case_id", "text", "label", "origin"]].reset_index(drop=True)


def label_segments(new: pd.DataFrame, Xnew: np.ndarray, clf: Classifier,
                   cats: dict[int, tuple], threshold: float) -> pd.DataFrame:
    """The new segments with the classifier's three likeliest categories, its
    confidence, and what becomes of each: coded, "none", or the human queue."""
    from .stages.protocol import is_small_talk

    top_ids, top_p = clf.top(Xnew, 3)
    name_of = {**{c: v[0] for c, v in cats.items()}, NONE: "none"}
    seg = new.copy()
    seg["suggested_category_id"] = top_ids[:, 0].astype(int)
    seg["confidence"] = top_p[:, 0].astype(float)
    for k in range(3):
        have = k < top_ids.shape[1]
        seg[f"top{k + 1}_category_id"] = top_ids[:, k].astype(int) if have else NONE
        seg[f"top{k + 1}_category"] = [name_of[int(c)] for c in top_ids[:, k]] if have else ""
        seg[f"top{k + 1}_confidence"] = top_p[:, k].astype(float) if have else 0.0
    # courtesy ("Not at all, it was good to talk about it.") is the interview frame,
    # which the run sets apart whatever question it answers: "none", neither the
    # nearest category nor a person's time in the queue
    seg["small_talk"] = np.array([is_small_talk(str(t)) for t in seg["text"]], dtype=bool)
    seg["needs_human"] = (seg["confidence"] < threshold) & ~seg["small_talk"]
    # "none" is an answer: a confident "none" is coded as no category, never the nearest
    seg["status"] = np.where(seg["small_talk"], "none", np.where(
        seg["needs_human"], "needs_human",
        np.where(seg["suggested_category_id"] == NONE, "none", "coded")))
    seg["category_id"] = np.where(seg["status"] == "coded", seg["suggested_category_id"], NONE)
    seg["category"] = [cats[c][0] if c in cats else "" for c in seg["category_id"]]
    seg["suggested_category"] = [name_of[int(c)] for c in seg["suggested_category_id"]]
    seg["domain_id"] = [cats[c][1] if c in cats else -1 for c in seg["category_id"]]
    seg["domain"] = [cats[c][2] if c in cats else "" for c in seg["category_id"]]

    return seg


def precode(codebook: Path, transcripts: Path, config: Path | None = None,
            threshold: float = DEFAULT_THRESHOLD, out: Path | None = None,
            retrain: bool = False, engine: str | None = None, scheduler: str | None = None,
            shard_size: int = 20, retries: int = 2, cluster=None) -> Path:
    """Pre-code ``transcripts`` with ``codebook``; returns the output folder.

    With ``retrain``, the choices people made for queued segments of earlier batches
    (``consensa precode import``) join the training data.

    With ``engine`` ("local" or "dask"), the transcripts are read, segmented,
    embedded and coded in shards of ``shard_size`` files, a file of more cases cut into
    parts of as many cases (:func:`_cut_into_parts`; :mod:`pipeline.shards`):
    on a Dask ``LocalCluster``, on the cluster at ``scheduler``, or on the one
    ``cluster`` describes (a validated ``engine:`` section,
    :func:`pipeline.shards.cluster_config`: SLURM or PBS jobs). Finished shards
    are kept beside ``out`` (``.<out>.shards/``), so the same command after a
    stopped job goes on where it stopped; they are removed once ``out`` is written.
    With de-identification on, each shard de-identifies its own files before
    segmenting them, knowing the speaker labels of all files (:func:`code_shard`),
    and keeps only the de-identified texts beside its part.
    """
    from . import __version__
    from .compose import build_stage, embed_texts, open_cache
    from .config import load_config, resolve_paths, validate_config
    from .fsutil import atomic_write_bytes
    from .run import code_identity, kernels, versions
    from .sheets import to_csv
    from .stages.cqr import cqr_markdown
    from .stages.ingest import ingest

    if not 0.0 <= threshold <= 1.0:
        raise ConfigError("--threshold must be between 0 and 1")
    if out is not None and Path(out).exists():    # refused before the work, not after it
        raise InputError("the output folder exists already; it is never overwritten", path=out,
                         hint="choose another --out folder (a stopped job goes on with the "
                              "same --out as long as the folder itself was not written)")
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
    # ingest.case_roles gives the roles of the codebook's run's own cases, not of new ones
    cfg = cfg.model_copy(update={"ingest": cfg.ingest.model_copy(
        update={"paths": [transcripts.resolve()], "cases_table": None, "case_roles": {}})})
    cfg, embed_note = _batch_independent(cfg)

    cache = open_cache(cfg, base)       # cache_dir is absolute: resolved with the config
    if engine is not None:
        if out is None:
            raise InputError("a sharded pre-coding needs --out: the same command with the same "
                             "--out goes on where a stopped job stopped", field="--out")
        if build_stage("embed", cfg).model_id is None:
            raise ConfigError(f"the embedder {cfg.embed.name} fits itself to the texts it is given, "
                              "so shards would not share one space", field="embed.name",
                              hint="use a sentence-transformer embedder, or pre-code without --engine")

    cats = codebook_categories(cb)
    train = training_set(cb, run_folder, labels)
    n_choices = n_disagreed = n_gone = n_unread_train = n_followed = 0
    # each stored choice is read in this codebook by what its category is, not its id
    # alone: the batches beside the codebook, the run and the output say which codebook
    # their choices were made against
    near = [Path(codebook).parent, run_folder.parent] + ([Path(out).parent] if out else [])
    reader = ChoiceReader.of(cb, Path(codebook), run_folder, batch_folders(
        (v.get("batch", "") for v in latest_choices(run_folder).values()), near))
    if retrain:
        stored = stored_choices(run_folder, reader)
        n_choices, n_disagreed = len(stored), stored.attrs["n_disagreed"]
        n_gone, n_followed = stored.attrs["n_not_in_codebook"], stored.attrs["n_followed"]
        n_unread_train = stored.attrs["n_unread"]
        log.info("retrain with %d stored queue choice(s) of earlier batches", n_choices)
        if n_followed:
            log.info("%d stored queue choice(s) name a category whose id changed since "
                     "(renamed, merged or renumbered): read as the category it became",
                     n_followed)
        for why, n in stored.attrs["unread"].items():
            log.warning("%d stored queue choice(s) left out of the retraining, with their "
                        "segments: %s", n, why)
        if n_disagreed:
            log.warning("%d queued segment(s) left out of the retraining: the people who coded "
                        "them chose different categories, as many for one as for another",
                        n_disagreed)
        train = pd.concat([train, stored], ignore_index=True)
    none = train["label"] == NONE
    none_cases = train.loc[none, "case_id"].nunique()
    none_class = bool(none.sum() >= NONE_MIN_SEGMENTS and none_cases >= 2)
    if not none_class:
        train = train[~none].reset_index(drop=True)

    # the de-identified texts the offsets index (path -> text), and the manifest's counts
    deid_files: dict[str, str] = {}
    deid_summary: dict = {"enabled": False}
    deid_originals: dict[str, tuple[str, str | None]] = {}   # path -> (case, original sha256)
    shards = None
    if engine is None:
        log.info("ingest and segment the new transcripts ...")
        corpus = ingest(cfg.ingest, base)
        read_sha256 = {src.path: src.sha256 for src in corpus.sources.values()}
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
            # counts only; the placeholder mapping of new transcripts is not written
            deid_files, deid_summary = dict(deid.files), deid.summary(False)
            deid_originals = {src.path: (cid, deid.original_sources[cid].sha256)
                              for cid, src in corpus.sources.items()}
        segmentation = build_stage("segment", cfg).segment(corpus, memory=cache)
        new = segmentation.segments.reset_index(drop=True)
        skipped = [*corpus.skipped, *segmentation.skipped]
        if new.empty:
            raise InputError("no participant speech to code in the new transcripts"
                             + _listed(skipped), path=transcripts)
        texts = train["text"].tolist() + new["text"].tolist()
    else:
        texts = train["text"].tolist()

    log.info("embed %d judged%s segments ...", len(train),
             f" and {len(texts) - len(train)} new" if engine is None else "")
    started = time.perf_counter()
    # one call: a corpus-fitted embedder (TF-IDF) then shares one space for both
    vecs, counts = embed_texts(build_stage("embed", cfg), texts, cache)
    log.info("embedded %d text(s), %d from the cache, in %.1f s", counts["embedded"],
             counts["from_cache"], time.perf_counter() - started)
    Xtr = vecs[:len(train)]

    log.info("fit the classifier and calibrate it on held-out cases ...")
    clf = fit_classifier(Xtr, train["label"].to_numpy(), train["case_id"].astype(str).to_numpy(),
                         seed=cfg.seed)
    cal = clf.calibration
    log.info("held-out accuracy %s, expected calibration error %s (temperature %s)",
             cal.get("accuracy"), cal.get("ece"), cal.get("temperature"))
    if engine is None:
        seg = label_segments(new, vecs[len(train):], clf, cats, threshold)
    else:
        (seg, shards, deid_files, deid_summary, skipped, read_sha256,
         deid_originals, worker_kernels) = _code_in_shards(cfg, clf, cats, threshold, Path(out), engine,
                                           scheduler, shard_size, retries, cluster)
        if seg.empty:
            raise InputError("no participant speech to code in the new transcripts"
                             + _listed(skipped), path=transcripts)
    for note in skipped:        # a note on text that was read says so: nothing was lost there
        log.warning("%s %s: %s", "note on" if note.kept else "left out", note.what, note.reason)
    # a segment people coded in an earlier batch's queue keeps their code, retrained or not:
    # the classifier that learned it is no better judge of it than they were
    seg = apply_people_choices(seg, run_folder, cats, reader)
    n_unread = int(seg.attrs.get("n_unread", 0))
    n_by_people = int((seg["status"] == BY_PEOPLE).sum())
    n_split = int((seg["needs_human"] & (seg["people_choices"] != "")).sum()) - n_unread
    if n_unread:
        log.warning("%d segment(s) queued again: a person's choice for them in an earlier "
                    "queue names a category this codebook cannot tell (made against another "
                    "codebook, or its category rejected or taken apart since); see the "
                    "queue's last column", n_unread)
    if n_by_people:
        log.info("%d segment(s) keep the code people chose for them in an earlier queue",
                 n_by_people)
    if n_split:
        log.warning("%d segment(s) queued again: the people who coded them in an earlier queue "
                    "chose different categories, as many for one as for another", n_split)

    total = int(seg["case_id"].nunique())
    # what the table counts: the classifier's codes and the people's, "none of these" aside
    coded = seg[seg["status"].isin(["coded", BY_PEOPLE]) & (seg["category_id"] != NONE)]
    from .stages.cqr import CQRConfig
    rcfg = RunFolder(run_folder).config
    cqr_cfg = CQRConfig(**rcfg.get("cqr", {})) if isinstance(rcfg.get("cqr"), dict) else CQRConfig()
    doms = pd.DataFrame([{"domain_id": int(d["id"]), "name": d["name"]} for d in cb["domains"]])
    table, absent = nested_table(cb, cats, coded, seg, total, cqr_cfg, doms)

    if out is None:
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        out = Path(codebook).parent / f"precode-{stamp}"
    out = Path(out)
    if out.exists():
        raise InputError("the output folder exists already; it is never overwritten", path=out)
    created = datetime.now(UTC).isoformat(timespec="seconds")
    batch = f"{out.name}-{created}"
    tmp = out.parent / f".{out.name}.partial-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        seg.to_parquet(tmp / "segments.parquet", index=False)
        to_csv(seg, tmp / "segments.csv", index=False)        # no text starts a formula
        to_csv(table, tmp / "cqr_table.csv", index=False)
        note = provisional_note(int(len(coded)), int(seg["needs_human"].sum()), threshold,
                                int((coded["status"] == BY_PEOPLE).sum()))
        (tmp / "cqr_table.md").write_text(cqr_markdown(table, by_segment=True) + note,
                                          encoding="utf-8")
        codebook_rel = Path(os.path.relpath(Path(codebook).resolve(), out.resolve())).as_posix()
        meta = {"batch": batch, "codebook": str(Path(codebook).resolve()),
                "codebook_relative": codebook_rel,
                "precode_folder": str(out.resolve()), "run_id": RunFolder(run_folder).run_id}
        queue_files = []
        for name, part in queue_parts(seg[seg["needs_human"]]):
            atomic_write_bytes(tmp / name, queue_workbook(part, cats, {
                **meta, "file": name,
                "exported_at": now_utc()}))
            queue_files.append(name)
        for rel, text in deid_files.items():
            path = tmp / rel                       # the de-identified texts the offsets index
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(text.encode("utf-8"))
        manifest = {
            "batch": batch,
            "codebook": str(Path(codebook).resolve()), "codebook_relative": codebook_rel,
            # what produced the codes, as a run's manifest pins it: the codebook's bytes
            # and the review round it was applied from, the seed, the versions and the
            # CPU kernels the classifier and the embedder computed with
            **codebook_pin(Path(codebook), cb),
            "consensa_version": __version__, "code": code_identity(), "seed": cfg.seed,
            "versions": versions(),
            "kernels": kernels() if shards is None else _with_workers(kernels(), worker_kernels),
            "run_folder": str(run_folder),
            "transcripts": str(transcripts.resolve()), "threshold": threshold,
            # how the transcripts were read, so that an export can read the same texts
            "ingest": _ingest_record(cfg),
            **({"ingest_roles_left_out": len(cfg.ingest.roles)}
               if cfg.deidentify.enabled and cfg.ingest.roles else {}),
            "classifier": clf.name, "cv_accuracy": clf.cv_accuracy, "calibration": cal,
            "none_class": {"trained": none_class, "n_segments": int(none.sum()),
                           "n_cases": int(none_cases),
                           "rule": "an explicit 'none' class" if none_class else
                           f"fewer than {NONE_MIN_SEGMENTS} segments from 2 cases: no 'none' "
                           "class; a segment below the threshold goes to the queue"},
            "retrain": {"enabled": retrain, "n_choices": n_choices,
                        "n_disagreed": n_disagreed, "n_not_in_codebook": n_gone,
                        # read by identity: id changed since / category not told here
                        "n_followed": n_followed, "n_unread": n_unread_train},
            "n_training_segments": len(train), "n_segments": len(seg),
            "n_coded": int((seg["status"] == "coded").sum()),
            # coded by people in an earlier batch's queue (same segment id, same text), and
            # those they split evenly on, queued again (counted in n_needs_human too)
            "n_coded_by_people": n_by_people, "n_split_by_people": n_split,
            # queued again: a person's choice names a category this codebook cannot tell
            "n_choices_unread": n_unread,
            "n_none": int((seg["status"] == "none").sum()),
            "n_small_talk": int(seg["small_talk"].sum()),
            "n_needs_human": int(seg["needs_human"].sum()),
            "queue_workbooks": queue_files,
            "categories_not_found": absent,
            "cases": total, "embed": cfg.embed.name, "segment": cfg.segment.name,
            "embed_params": cfg.embed.params(), "embed_note": embed_note,
            "deidentify": deid_summary,
            # each transcript file's sha256 as read: the export reads them again, and a
            # file changed since (a turn added after the coded ones moves no segment)
            # must stop it, not reach the QDA program uncoded; a de-identified
            # pre-coding exports the texts it kept, and checks the originals all the same:
            # its inputs hold each text's sha256 and its original's, as a de-identified
            # run's do, and no original file's path (a file name may hold a name)
            **({"inputs": deidentified_inputs(deid_files, deid_originals)}
               if cfg.deidentify.enabled else {"transcript_sha256": read_sha256}),
            "skipped": [note.as_dict() for note in skipped],
            "created_at": created,
        }
        if shards is not None:
            manifest["shards"] = shards.as_dict()
        # the codebook as it coded: codebook.yaml is rewritten by every `review apply`,
        # and this batch's ids, its queue's and its people's choices are this one's
        shutil.copyfile(codebook, tmp / KEPT_CODEBOOK)
        manifest["codebook_kept"] = KEPT_CODEBOOK
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    os.replace(tmp, out)
    if shards is not None:              # the parts are in the output now
        shutil.rmtree(_shards_dir(out), ignore_errors=True)
    return out


def _ingest_record(cfg) -> dict:
    """The config's ``ingest`` section as the pre-coding's manifest keeps it. A
    de-identified pre-coding keeps no roles map: its labels are speakers' names ("Lena
    Hart: interviewer"), which the pre-coding replaced in every text it wrote, and an
    export reads the originals again only to check their sha256, which the roles do
    not change (a de-identified run leaves them out of its config.yaml too)."""
    out = cfg.ingest.model_dump(mode="json")
    if cfg.deidentify.enabled:
        out["roles"] = {}
    return out


def codebook_pin(path: Path, cb: dict) -> dict:
    """The codebook a pre-coding coded with: its file's sha256, and the review round
    and time it was applied (when it records them)."""
    from .fsutil import file_sha256

    review = cb.get("review") if isinstance(cb.get("review"), dict) else {}
    out = {"codebook_sha256": file_sha256(path)}
    for key in ("round", "applied_at"):
        if review.get(key) is not None:
            out[f"codebook_{key}"] = review[key]
    return out


def deidentified_inputs(files: Mapping[str, str],
                        originals: Mapping[str, tuple[str, str | None]]) -> list[dict]:
    """A de-identified pre-coding's texts as a de-identified run's manifest lists its
    ``inputs``: each case, the text kept beside the output (``sources/<case>.txt``) and
    its sha256, and the sha256 of the original file it was read from."""
    from .fsutil import text_sha256

    out = []
    for path, text in files.items():
        case_id, original = originals.get(path, (None, None))
        out.append({"case_id": case_id, "path": path,
                    "sha256": text_sha256(text),
                    "encoding": "utf-8", "deidentified": True, "original_sha256": original})
    return out


def _batch_independent(cfg) -> tuple:
    """The config with an embedder whose vector for a text does not depend on the other
    texts embedded beside it, and a note saying what was changed ("" if nothing).

    A pre-coding's codes must not depend on which other files are in the batch, nor on
    the shard size: with int8 quantization they did (a segment went from coded at 0.75
    to queued at 0.55 when one file was added), since dynamic quantization scales each
    batch by its largest activation. Pre-coding therefore embeds in float32
    (``quantize: none``), its training texts included, so the classifier and the new
    segments share one space."""
    from .compose import build_stage

    if not getattr(build_stage("embed", cfg), "batch_dependent", False):
        return cfg, ""
    params = {**cfg.embed.params(), "quantize": "none"}
    spec = type(cfg.embed)(name=cfg.embed.name, **params)
    note = (f"{cfg.embed.name} with quantize: none: int8 vectors depend on the texts "
            "embedded beside them, and a segment's code must not depend on its batch")
    log.info("embed with %s", note)
    return cfg.model_copy(update={"embed": spec}), note


def _listed(skipped: list) -> str:
    """What was left out, for an error that says nothing was left to code."""
    if not skipped:
        return ""
    return ": what was left out:" + "".join(f"\n  - {n.what}: {n.reason}" for n in skipped[:10]) + (
        f"\n  ... and {len(skipped) - 10} more" if len(skipped) > 10 else "")


# --- in shards (pipeline/shards.py) ---------------------------------------------------

def _shards_dir(out: Path) -> Path:
    """Where the finished shards of a sharded pre-coding wait for ``out``: beside it,
    named after it, so the same command with the same ``--out`` finds them again."""
    return out.parent / f".{out.name}.shards"


def _code_in_shards(cfg, clf: Classifier, cats: dict[int, tuple], threshold: float, out: Path,
                    engine: str, scheduler: str | None, shard_size: int,
                    retries: int, cluster=None):
    """The new transcripts read, (de-identified,) segmented, embedded and coded shard by shard.

    Returns the coded segments, the :class:`~pipeline.shards.ShardReport`, with
    de-identification the de-identified texts (path -> text) and the manifest's counts,
    what was left out, the sha256 of each file the shards read (path -> sha256, from
    the ledger of finished shards, which hashed them as they were read), and with
    de-identification each text's case and original file's sha256 (path -> (case, sha256)).
    """
    import functools
    import hashlib
    import pickle

    from .fsutil import atomic_write_bytes
    from .shards import file_sha256, read_ledger, run_shards, split_part
    from .stages.ingest import transcript_files

    files, skipped = transcript_files(cfg.ingest)
    if not files:
        raise InputError("no transcript files to pre-code", path=", ".join(map(str, cfg.ingest.paths)))
    work = _shards_dir(out)
    work.mkdir(parents=True, exist_ok=True)
    model = work / "classifier.pkl"
    # the workers load the classifier from this file, once each; a restarted job that
    # fitted the same classifier writes the same bytes
    atomic_write_bytes(model, pickle.dumps((clf, cats, threshold)))
    config = cfg.model_dump(mode="json")
    names = _corpus_names(cfg, files) if cfg.deidentify.enabled else None
    units = _cut_into_parts(cfg, files, shard_size)
    # what the rows depend on besides the files: a shard finished with another config,
    # classifier or corpus-wide names (a speaker added elsewhere) is run again; the
    # names go into the hash, never into a file
    fingerprint = hashlib.sha256(json.dumps([config, file_sha256(model), names],
                                            sort_keys=True).encode("utf-8")).hexdigest()
    shard = functools.partial(code_shard, config=config, classifier_path=str(model), names=names)
    report = run_shards(units, work / "parts", shard, shard_size=shard_size, engine=engine,
                        scheduler=scheduler, cluster_config=cluster, retries=retries,
                        fingerprint=fingerprint)
    if names is None:
        seg, deid_files, deid_summary, originals = report.read(), {}, {"enabled": False}, {}
    else:
        seg, deid_files, deid_summary, originals = _deidentified_shards(report)
    worker_kernels: dict[str, dict] = {}          # each set of kernels the workers reported
    for shard in report.shards:         # what each shard left out, in the order of the files
        extra = report.extra(shard)
        if extra is not None:
            kept = json.loads(extra.decode("utf-8"))
            skipped += [Skipped(**n) for n in kept.get("skipped", [])]
            if isinstance(kept.get("kernels"), dict):
                found = worker_kernels.setdefault(json.dumps(kept["kernels"], sort_keys=True),
                                                  {**kept["kernels"], "shards": 0})
                found["shards"] += 1
    seg, dropped = _first_copy_of_each_case(seg.reset_index(drop=True))
    skipped = _summed(skipped) + dropped
    for note in dropped:                # a dropped copy's de-identified text goes too
        deid_files.pop(note.what, None)
    log.info("coded %d segments in %d shard(s) (%d run now, %d from an earlier job)",
             len(seg), len(report.shards), len(report.computed), len(report.skipped))
    ledger = read_ledger(report.out_dir)
    read_sha256 = {split_part(f["path"])[0]: f["sha256"] for shard in report.shards
                   for f in (ledger.get(shard.id) or {}).get("files", [])}
    return (seg, report, deid_files, deid_summary, skipped, read_sha256, originals,
            list(worker_kernels.values()))


def _with_workers(here: dict, workers: list[dict]) -> dict:
    """The manifest's ``kernels`` of a sharded pre-coding: this process's (it embedded
    the judged segments and fitted the classifier) and, under ``workers``, each set of
    kernels the shards' workers reported, with how many shards computed with it (the
    new segments' vectors and codes are theirs). Said of this process alone, "torch:
    not loaded" read as if no vector had been computed with PyTorch, while the workers
    had computed every new one with it."""
    out = dict(here)
    if isinstance(out.get("torch"), str) and out["torch"].startswith("not loaded"):
        out["torch"] = ("not loaded in this process: the judged segments' vectors came from "
                        "the cache, or from an embedder without it; the new segments' "
                        "vectors were computed by the workers (see workers)")
    out["workers"] = workers    # a shard an older version finished reported none
    return out


def _summed(notes: list[Skipped]) -> list[Skipped]:
    """The shards' notes with the counted ones ("3 turns: T01:4, ..." of backchannel)
    summed over the shards, and their places listed, as one segmentation of the whole
    corpus counts and names them."""
    from .stages.segment import SKIPPED_LISTED

    out: list[Skipped] = []
    totals: dict[tuple[str, str, str], int] = {}
    places: dict[tuple[str, str, str], list[str]] = {}
    for note in notes:
        head, _, listed = note.what.partition(": ")
        number, _, unit = head.partition(" ")
        if note.stage == "segment" and number.isdigit() and unit in ("turns", "units"):
            key = (unit, note.reason, note.stage)
            if key not in totals:
                out.append(note)            # its place; the count is filled in below
            totals[key] = totals.get(key, 0) + int(number)
            places.setdefault(key, []).extend(
                x for x in listed.removesuffix(" ...").split(", ") if x)
        else:
            out.append(note)
    summed = []
    for note in out:
        unit = note.what.partition(": ")[0].partition(" ")[2]
        key = (unit, note.reason, note.stage)
        if key not in totals:
            summed.append(note)
            continue
        shown = places[key][:SKIPPED_LISTED]
        summed.append(Skipped(f"{totals[key]} {unit}: " + ", ".join(shown)
                              + (" ..." if totals[key] > len(shown) else ""),
                              note.reason, note.stage, count=totals[key]))
    return summed


def _first_copy_of_each_case(seg: pd.DataFrame) -> tuple[pd.DataFrame, list[Skipped]]:
    """The segments with each case from the first file that holds it, as one ingest of
    the whole corpus reads it: two files of one case id (``A05.txt`` in two folders)
    land in different shards, where each shard reads its own copy. The later copies
    are left out and named; cases are never merged."""
    if seg.empty or "source_file" not in seg.columns:
        return seg, []
    first = seg.groupby("case_id", sort=False)["source_file"].first()
    keep = seg["source_file"].to_numpy() == seg["case_id"].map(first).to_numpy()
    notes = [Skipped(str(f), f"case '{c}' is also in {first[c]}; this copy was left out (cases "
                             "are never merged): rename or remove one of the two")
             for c, f in seg.loc[~keep, ["case_id", "source_file"]].drop_duplicates().itertuples(
                 index=False)]
    return seg[keep].reset_index(drop=True), notes


#: the files that can hold many cases: transcript tables and REFI-QDA projects
MANY_CASES = (".csv", ".xlsx", ".qdpx")


def _cut_into_parts(cfg, files: list[Path], shard_size: int) -> list[str]:
    """The shards' inputs: the files, with each one that holds more cases than a shard
    has files (a table of a survey's answers, a QDA program's project of a whole study)
    cut into parts of ``shard_size`` cases (:func:`pipeline.shards.file_part`).

    As one file, such a table was one shard: a single worker coded all of it while the
    others waited, and a stopped job started it again from its first case. Each file of
    that kind is read here once, one at a time, for its cases in the order ingest reads
    them, the order :func:`code_shard` counts the parts in; one that cannot be read stays
    whole, and the shard reading it reports it.
    """
    from .errors import ConsensaError
    from .shards import file_part
    from .stages.ingest import ingest

    units: list[str] = []
    for f in files:
        n = 1
        if Path(f).suffix.lower() in MANY_CASES:
            try:
                n = len(ingest(cfg.ingest.model_copy(
                    update={"paths": [Path(f)], "cases_table": None})).cases)
            except ConsensaError:
                n = 1
        if n <= shard_size:
            units.append(str(f))
            continue
        units += [file_part(f, first + 1, min(first + shard_size, n))
                  for first in range(0, n, shard_size)]
    if len(units) > len(files):
        log.info("%d file(s) of many cases cut into parts of %d cases: %d shard input(s)",
                 sum(1 for u in units if "#cases=1-" in u), shard_size, len(units))
    return units


def _part_of(corpus, part: tuple[int, int] | None):
    """The cases ``part`` (first, last; from 1) of a corpus read from one file, in the
    order ingest gives them; what the file left out is reported by its first part only,
    so it is named once over the job."""
    if part is None:
        return corpus
    first, last = part
    keep = list(corpus.cases["case_id"])[first - 1:last]
    chosen = set(keep)
    return replace(
        corpus, turns=corpus.turns[corpus.turns["case_id"].isin(chosen)].reset_index(drop=True),
        cases=corpus.cases[corpus.cases["case_id"].isin(chosen)].reset_index(drop=True),
        sources={c: src for c, src in corpus.sources.items() if c in chosen},
        skipped=corpus.skipped if first == 1 else ())


def _corpus_names(cfg, files: list[Path]) -> dict[str, list[str]]:
    """The speaker and line labels of every file, for each shard's de-identification.

    Read here, in the order of the files and a few at a time (memory stays flat),
    before the shards run: a shard sees only its own files, but a participant named
    in another shard's speaker labels must be replaced in its texts too. A file that
    cannot be read is left out here; the shard reading it reports it.
    """
    from .errors import ConsensaError
    from .stages.deidentify import corpus_names
    from .stages.ingest import ingest

    def corpora(step: int = 100):
        for start in range(0, len(files), step):
            some = cfg.ingest.model_copy(update={
                "paths": [Path(f) for f in files[start:start + step]], "cases_table": None})
            try:
                yield ingest(some)
            except ConsensaError:       # not one of these files could be read
                continue

    started = time.perf_counter()
    names = corpus_names(corpora(), cfg.ingest)
    log.info("collected the speaker labels of %d file(s) for de-identification in %.1f s",
             len(files), time.perf_counter() - started)
    return names


def _deidentified_shards(job: ShardReport) -> tuple[pd.DataFrame, dict[str, str], dict,
                                                     dict[str, tuple[str, str | None]]]:
    """The shards' segments, their de-identified texts, the summed counts, and each
    text's case and its original file's sha256 (path -> (case id, sha256)).

    Each shard names its texts ``sources/<case>.txt`` on its own; they are named
    again here over the whole corpus, in order, as one de-identification of the
    whole corpus would name them, so two cases whose names differ only in
    characters a file name cannot hold never share a file (the segments' offsets
    follow their text).
    """
    from .shards import read_parts
    from .stages.deidentify import combine_summaries, source_file_name

    frames, files, summaries, taken = [], {}, [], set()
    originals: dict[str, tuple[str, str | None]] = {}
    for shard in job.shards:
        extra = job.extra(shard)
        if extra is None:
            raise InputError("a finished shard has no de-identified texts",
                             path=job.out_dir / shard.part_name,
                             hint="delete the folder of finished shards and run again")
        kept = json.loads(extra.decode("utf-8"))
        frame = read_parts([job.out_dir / shard.part_name])
        renamed = {}
        for source in kept.get("sources", []):
            path = source_file_name(source["case_id"], taken)
            files[path] = source["text"]
            originals[path] = (str(source["case_id"]), source.get("original_sha256"))
            if path != source["path"]:
                renamed[source["path"]] = path
        if renamed and "source_file" in frame.columns:
            frame["source_file"] = frame["source_file"].replace(renamed)
        frames.append(frame)
        if "deidentify" in kept:        # a shard whose files could not be read has none
            summaries.append(kept["deidentify"])
    frames = [f for f in frames if len(f.columns)]
    seg = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    return seg, files, combine_summaries(summaries), originals


def code_shard(files: list[str], *, config: dict, classifier_path: str,
               names: dict[str, list[str]] | None = None):
    """One shard of a sharded pre-coding, on a worker: its transcripts read,
    (de-identified,) segmented, embedded and coded. The embedder and the classifier
    are loaded once per worker (:func:`pipeline.shards.worker_state`); nothing is
    cached on disk, since many workers share no cache safely.

    With de-identification on, ``names`` are the whole corpus's labels
    (:func:`pipeline.stages.deidentify.corpus_names`): every shard knows the same
    names, in the same order, so its texts get the placeholders one
    de-identification of the whole corpus would give them (unless two files hold
    the same case id: one ingest of the whole corpus leaves the second copy out,
    a shard reads it, and its names may then shift the numbers). Only its de-identified
    texts and counts are kept beside its part (a :class:`~pipeline.shards.ShardOutput`);
    the original text is never written.
    """
    import pickle

    from .cache import Cache
    from .compose import build_stage
    from .config import validate_config
    from .shards import ShardOutput, file_sha256, split_part, worker_state
    from .stages.ingest import ingest

    cfg = validate_config(config)
    read = [split_part(f) for f in files]
    # a part of a file of many cases is a shard of its own (pipeline.shards.plan_shards)
    part = read[0][1] if len(read) == 1 else None
    cfg = cfg.model_copy(update={"ingest": cfg.ingest.model_copy(
        update={"paths": [Path(path) for path, _ in read], "cases_table": None})})
    clf, cats, threshold = worker_state(
        ("classifier", classifier_path, file_sha256(classifier_path)),
        lambda: pickle.loads(Path(classifier_path).read_bytes()))
    embedder = worker_state(("embedder", json.dumps(config["embed"], sort_keys=True)),
                            lambda: build_stage("embed", cfg))
    try:
        corpus = _part_of(ingest(cfg.ingest), part)
    except InputError as exc:
        if getattr(exc, "skipped", None) is None:
            raise
        # no file of this shard could be read: nothing to code here, and each file is
        # named with its reason, as one ingest of the whole corpus would name it
        kept = {"skipped": [n.as_dict() for n in exc.skipped], "sources": []}
        return ShardOutput(pd.DataFrame(), json.dumps(kept, ensure_ascii=False).encode("utf-8"))
    deid = None
    if cfg.deidentify.enabled:
        # as in one process: nothing is segmented or embedded before names are replaced
        from .stages.deidentify import deidentify_corpus

        deid = deidentify_corpus(corpus, cfg.deidentify, cfg.ingest, known=names)
        corpus = deid.corpus
    segmentation = build_stage("segment", cfg).segment(corpus, memory=Cache(None))
    new = segmentation.segments.reset_index(drop=True)
    if not new.empty:           # a shard of title pages: nothing to code, nothing lost
        new = label_segments(new, embedder.encode(new["text"].tolist()), clf, cats, threshold)
    # what the shard left out travels with its rows (the report lists it), and the
    # kernels its vectors and codes were computed with (the manifest records them)
    from .run import kernels

    kept = {"skipped": [n.as_dict() for n in (*corpus.skipped, *segmentation.skipped)],
            "kernels": kernels()}
    if deid is not None:
        kept["sources"] = [{"case_id": cid, "path": src.path, "text": src.text,
                            "original_sha256": deid.original_sources[cid].sha256}
                           for cid, src in deid.corpus.sources.items()]
        kept["deidentify"] = deid.summary(False)
    return ShardOutput(new, json.dumps(kept, ensure_ascii=False).encode("utf-8"))


QUEUE_HEAD = ["segment id", "case", "question", "text",
              "1st category id", "1st category", "1st confidence",
              "2nd category id", "2nd category", "2nd confidence",
              "3rd category id", "3rd category", "3rd confidence",
              "code as category", "comment"]
#: the columns a person fills in (the rest describe what the classifier proposed)
CHOICE_COL, COMMENT_COL = QUEUE_HEAD.index("code as category"), QUEUE_HEAD.index("comment")


#: Rows in one queue workbook. A larger queue is split into queue-001.xlsx,
#: queue-002.xlsx, ...: each stays a file a person can work through and Excel opens
#: quickly (its hard limit is 1,048,576 rows), and writing one never holds more than
#: this many rows in memory as cells.
QUEUE_ROWS_PER_WORKBOOK = 10_000


def queue_parts(queue: pd.DataFrame, rows: int | None = None):
    """(file name, rows) of the queue's workbooks, least confident first throughout:
    ``queue.xlsx`` when one is enough (also for an empty queue), else numbered parts of
    ``rows`` (default :data:`QUEUE_ROWS_PER_WORKBOOK`)."""
    rows = rows or QUEUE_ROWS_PER_WORKBOOK
    queue = queue.sort_values("confidence", kind="stable")
    if len(queue) <= rows:
        yield "queue.xlsx", queue
        return
    n = -(-len(queue) // rows)
    width = max(3, len(str(n)))
    for k in range(n):
        yield f"queue-{k + 1:0{width}d}.xlsx", queue.iloc[k * rows:(k + 1) * rows]


#: the queue workbook's column, after those a person fills in, for a segment people
#: coded in an earlier queue and split evenly on
EARLIER_HEAD = "coded before (split evenly)"


def split_said(people_choices: str) -> str:
    """Who chose what for a segment, from its ``people_choices`` ("" if none):
    "ana: Felt hurt; ben: none"."""
    if not people_choices:
        return ""
    return "; ".join(f"{c['who']}: {c['category'] or 'none'}"
                     for c in json.loads(people_choices))


def provisional_note(n_coded: int, n_queued: int, threshold: float, n_by_people: int = 0) -> str:
    """The line under a pre-coding's CQR table: its frequency labels count the segments
    coded (by the classifier, or by people in an earlier batch's queue), and none of
    those in the queue: this table is written once; the people's codes count in the
    next pre-coding of the same transcripts, which keeps them."""
    if not n_queued:
        return ""
    how = (f"coded with a confidence of at least {threshold:g}" if not n_by_people else
           f"coded ({n_coded - n_by_people} with a confidence of at least {threshold:g}, "
           f"{n_by_people} by people in an earlier queue)")
    return (f"\nFrequency labels count the {n_coded} segment(s) {how}; "
            f"the {n_queued} segment(s) in the queue are not counted: once people code "
            "them (queue.xlsx, then `consensa precode import`), this table stays as it is, "
            "and the next `consensa precode` of these transcripts counts the people's codes, "
            "so a label can rise.\n")


def queue_workbook(queue: pd.DataFrame, cats: dict[int, tuple], meta: dict) -> bytes:
    """The "needs a human" queue as a workbook: three suggestions, and a dropdown to code it.

    The hidden ``_meta`` sheet names the batch and the codebook, so
    ``consensa precode import`` knows where the choices belong.
    """
    import openpyxl
    from openpyxl.styles import Font, PatternFill
    from openpyxl.utils import get_column_letter
    from openpyxl.worksheet.datavalidation import DataValidation

    from .sheets import append_row

    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "queue"
    # a segment people split evenly on in an earlier queue says who chose what, in a
    # column after the ones import reads
    earlier = "people_choices" in queue.columns and bool((queue["people_choices"] != "").any())
    append_row(ws, QUEUE_HEAD + ([EARLIER_HEAD] if earlier else []))
    # every str a string cell: a quote or a name is never a formula
    for c in ws[1]:
        c.font = Font(bold=True)
    choice, comment = get_column_letter(CHOICE_COL + 1), get_column_letter(COMMENT_COL + 1)
    for c in (ws[f"{choice}1"], ws[f"{comment}1"]):
        c.fill = PatternFill("solid", fgColor="FFF2CC")
    for r in queue.sort_values("confidence", kind="stable").itertuples():
        row = [r.segment_id, r.case_id, getattr(r, "question", ""), r.text]
        for k in (1, 2, 3):
            cid = int(getattr(r, f"top{k}_category_id"))
            row += ["none" if cid == NONE else cid, getattr(r, f"top{k}_category"),
                    round(float(getattr(r, f"top{k}_confidence")), 3)]
        row += [None, None]
        if earlier:
            row.append(split_said(r.people_choices))
        append_row(ws, row)
    lists = wb.create_sheet("categories")
    # the dropdown offers "12 – Trauma language": an id alone said nothing to the
    # person choosing (import reads the id, or a name typed alone)
    append_row(lists, ["category id", "category", "domain", "to choose"])
    for cid, (name, _, dom) in cats.items():
        append_row(lists, [cid, name, dom, f"{cid} – {name}"])
    append_row(lists, ["none", "not any category", "", "none"])
    dv = DataValidation(type="list", formula1=f"'categories'!$D$2:$D${len(cats) + 2}",
                        allow_blank=True)
    ws.add_data_validation(dv)
    dv.add(f"{choice}2:{choice}{max(ws.max_row, 2)}")
    widths = (16, 12, 30, 80, 8, 24, 8, 8, 24, 8, 8, 24, 8, 16, 30)
    for i, width in enumerate(widths, 1):
        ws.column_dimensions[get_column_letter(i)].width = width
    hidden = wb.create_sheet("_meta")
    for k, v in meta.items():
        append_row(hidden, [k, v])
    hidden.sheet_state = "hidden"
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


# --- the queue back in: a person's choices, stored with the review's decisions ------------

@dataclass(frozen=True)
class QueueChoice:
    """One person's code for one queued segment (a category id, or :data:`NONE`)."""

    segment_id: str
    case_id: str
    text: str
    category_id: int
    suggested_category_id: int
    confidence: float
    comment: str
    source: str
    #: what identifies the category beyond its id, in the codebook it was chosen from
    #: (:func:`category_identity`): its name, the themes it comes from, the proposed
    #: subcategory it keeps; and that codebook's sha256. A later codebook may give the
    #: id to another category (:class:`ChoiceReader` reads the choice by these)
    category: str = ""
    from_themes: tuple[int, ...] = ()
    proposed_subcategory: int | None = None
    codebook_sha256: str = ""
    #: when the queue workbook it was imported from was written ("" from the browser):
    #: a copy of that workbook imported again is that workbook edited further
    exported_at: str = ""

    def item(self, batch: str) -> str:
        return queue_item(batch, self.segment_id)


def queue_item(batch: str, segment_id: str) -> str:
    """The review store's item of a queued segment of ``batch``."""
    return f"precode:{batch}/{segment_id}"


@dataclass(frozen=True)
class QueueRow:
    """A row of a filled-in queue workbook as read: the segment it names, the code the
    person chose (a category id or :data:`NONE`) and their comment. What the segment
    is (its case, text, the classifier's suggestion) is taken from the pre-coding's
    own ``segments.parquet``, never from the workbook, whose other cells anyone can
    edit."""

    segment_id: str
    category_id: int | None     # None: the person typed a name (``name``)
    comment: str
    source: str
    name: str = ""              # the name typed, alone or after the id ("6 – Teared up")
    #: the row's case and text as the workbook shows them: checked against the segment
    #: the row's id names (a sheet sorted without its id column), never stored
    shown: tuple[str, str] = ("", "")


#: "12", "12 – Trauma language", "12: ...": a category id first, then its name, which
#: must be that category's (:func:`import_queue`)
_ID_FIRST = re.compile(r"^\s*(\d+)(?:\.0+)?(?:\s*[-–—:]\s*(\S.*)|\s+(\S.*))?$", re.S)
#: what a person may type for "none of these" (the queue's dropdown offers "none")
NONE_WORDS = ("none", "none of these", "not any category")


def _not_whole(code: str) -> bool:
    """Whether ``code`` is a number with a fraction ("3.5"): no id, and no name."""
    try:
        return not float(code).is_integer()
    except ValueError:
        return False


def _name_key(name: object) -> str:
    """What two spellings of a category's name share: case and spacing aside."""
    return " ".join(str(name).split()).casefold()


def _category_by_name(name: str, categories: Mapping[int, tuple]) -> int | None:
    """The id of the category named ``name`` (case and spacing aside), if one is."""
    key = _name_key(name)
    found = [cid for cid, (cname, *_rest) in categories.items() if _name_key(cname) == key]
    return found[0] if len(found) == 1 else None


def read_queue(path: Path) -> tuple[dict, list[QueueRow], list[str], list[tuple[str, int]],
                                     list[str]]:
    """The ``_meta`` of a queue workbook, the rows a person coded, the rows with a
    comment but no code (their comments are not stored: a comment belongs to a choice),
    the (segment id, row) of each row with no code, and the problems of its rows.

    A row with an empty "code as category" is left for later; a code that is not a
    whole number (nor "none") is a problem naming the sheet, row and column, returned
    rather than raised, so that :func:`import_queue` lists it with the problems it finds
    in the other rows, all in one pass. Only the segment id, the code and the comment
    are read as the person's (the case and text only to check the row against its id).
    """
    import openpyxl

    path = Path(path)
    if not path.is_file():
        raise InputError("no such queue workbook", path=path)
    try:
        # formulas as formulas: a person's "=..." is refused, not read as blank (sheets.py)
        wb = openpyxl.load_workbook(path, read_only=True, data_only=False)
    except Exception as exc:            # not a workbook: openpyxl raises many kinds
        raise InputError(f"not a readable .xlsx workbook ({exc})", path=path) from None
    if "queue" not in wb.sheetnames or "_meta" not in wb.sheetnames:
        raise InputError("not a Consensa queue workbook (no 'queue' and '_meta' sheets)",
                         path=path, hint="give the queue.xlsx a `consensa precode` run wrote")
    meta = {str(r[0]): r[1] for r in wb["_meta"].iter_rows(values_only=True) if r and r[0]}
    created = wb.properties.created
    if not meta.get("exported_at") and isinstance(created, datetime):
        # a workbook written before its _meta kept the time was written when it was
        # created (in UTC), by the pre-coding; saving it again keeps that time
        meta["exported_at"] = created.replace(tzinfo=created.tzinfo or UTC).isoformat()
    for need in ("batch", "codebook"):
        if not meta.get(need):
            raise InputError(f"the queue workbook's _meta sheet has no {need!r}", path=path)
    cell_rows = list(wb["queue"].iter_rows())
    rows = [[c.value for c in cells] for cells in cell_rows]
    if not rows or list(rows[0][:len(QUEUE_HEAD)]) != QUEUE_HEAD:
        raise InputError("the queue sheet's header row was changed; expected: "
                         + ", ".join(QUEUE_HEAD), path=path)
    from .sheets import cell_text, formula_problem, is_formula, restore

    choices, errors, comment_only = [], [], []
    blank: list[tuple[str, int]] = []          # (segment id, row) with no code
    # a segment is on one row: a second row with its id means the id column was edited,
    # and storing both would code it twice and the segment that row held not at all
    first_row: dict[str, int] = {}
    for n, r in enumerate(rows[1:], start=2):
        ident = restore(str(r[0])).strip() if r and r[0] is not None else ""
        if ident and ident in first_row:
            errors.append(f"sheet 'queue', row {n}: segment {ident!r} is also on row "
                          f"{first_row[ident]}; each segment has one row")
        first_row.setdefault(ident, n)
        cells = cell_rows[n - 1]
        typed = [k for k in (CHOICE_COL, COMMENT_COL) if k < len(cells) and is_formula(cells[k])]
        if typed:
            errors.extend(formula_problem(f"sheet 'queue', row {n}", QUEUE_HEAD[k], r[k])
                          for k in typed)
            continue
        r = list(r) + [None] * (len(QUEUE_HEAD) - len(r))
        raw = r[CHOICE_COL]
        comment = restore(str(r[COMMENT_COL] or "")).strip()
        if raw is None or str(raw).strip() == "":
            if comment:
                comment_only.append(f"row {n}")
            if ident:
                blank.append((ident, n))
            continue
        code = restore(str(raw)).strip()
        where = f"sheet 'queue', row {n}, column 'code as category'"
        name = ""
        if " ".join(code.lower().split()) in NONE_WORDS:
            cid: int | None = NONE
        elif _not_whole(code):
            errors.append(f"{where}: {code!r} is not a whole category id")
            continue
        elif m := _ID_FIRST.match(code):
            # whether it is a category is checked against the pre-coding's own codebook
            # (import_queue), not the workbook's 'categories' sheet, which a person may
            # have written a note on, renamed or deleted
            cid, name = int(m.group(1)), (m.group(2) or m.group(3) or "").strip()
        else:
            cid, name = None, code       # a category's name, typed: looked up on import
        if not ident:
            errors.append(f"sheet 'queue', row {n}: the segment id is empty")
            continue
        choices.append(QueueRow(segment_id=ident, category_id=cid, comment=comment,
                                source=f"{path.name}, row {n}", name=name,
                                shown=(cell_text(r[1]), cell_text(r[3]))))
    return meta, choices, comment_only, blank, errors


def batch_of_queue(meta: dict, path: Path) -> PrecodeBatch:
    """The pre-coding a queue workbook came from: the folder the workbook is in (so a
    study moved whole finds its own copy, not the original), else where it was written
    (a judge's copy of the workbook saved elsewhere)."""
    places = [Path(path).resolve().parent]
    if meta.get("precode_folder"):
        places.append(Path(str(meta["precode_folder"])))
    for folder in places:
        if is_precode_folder(folder):
            batch = open_batch(folder)
            if batch.batch == str(meta["batch"]):
                return batch
    raise InputError(f"cannot find the pre-coding this queue belongs to (batch {meta['batch']}): "
                     f"not in {places[0]}" + (f" nor in {places[1]}" if len(places) > 1 else ""),
                     path=path, hint="import the workbook from its pre-coding's folder (where "
                     "segments.parquet is), or move that folder back; nothing was imported")


@dataclass(frozen=True)
class QueueImport:
    """What ``consensa precode import`` stored: the count, the run folder of the store,
    and the rows whose comment was not stored because they carry no code."""

    stored: int
    run_folder: Path
    comment_only: list[str]
    #: choices this person had stored as they are: not stored again
    repeated: int = 0
    #: rows with no code whose segment this person chose a code for before: that
    #: choice stands (an empty cell takes nothing back)
    still_stored: list[str] = field(default_factory=list)
    #: choices that replace another this person stored before, in words
    replaced: list[str] = field(default_factory=list)


def import_queue(path: Path, by: str, workbook_wins: bool = False,
                 not_own_file: bool = False) -> QueueImport:
    """Store ``by``'s choices from a filled-in queue workbook.

    They go into the review store of the codebook's run through :func:`record_choices`,
    as the queue page of ``consensa serve`` stores them, and as that page does, each
    row must name a queued segment of the workbook's batch: the segment's case and
    text come from the pre-coding, not from the workbook.

    As a review workbook's import does, it never replaces without a word a choice
    ``by`` made after the workbook was written (in the browser, or from another
    workbook): such rows refuse the import, named, unless ``workbook_wins``. A copy of
    the same workbook imported again is that workbook edited further. A workbook
    exported for another person (``person`` in its ``_meta``) is refused unless
    ``not_own_file``: its choices are that person's.
    """
    from .review.model import load_run
    from .review.store import ReviewStore

    if not by:
        raise InputError("say who made these choices: --by NAME, as a judge of the panel "
                         "is named", field="--by")
    if not all(ch.isalnum() or ch in "-_." for ch in by):
        raise InputError(f"--by must name the person (letters, digits, '-', '_', '.'): {by!r}",
                         field="--by")
    meta, rows, comment_only, blank, errors = read_queue(path)
    person = str(meta.get("person") or "")
    if person and person != by and not not_own_file:
        raise InputError(f"this queue workbook was exported for {person!r}, and --by is "
                         f"{by!r}: the choices in it are {person}'s", path=path,
                         hint=f"import it with --by {person}; if {by} made the choices in "
                         f"{person}'s workbook, import it again with --not-own-file; nothing "
                         "was imported")
    batch = batch_of_queue(meta, Path(path))
    choices = []
    unknown = gone = changed = False
    scrambled = _scrambled_rows(rows, batch)
    if scrambled:
        # every row's code may be another segment's: none is checked or stored
        errors.append(scrambled)
        rows = []
    for row in rows:
        cid = row.category_id
        if cid is not None and cid != NONE and row.name and cid in batch.categories:
            # "6 – Took a breath" where 6 is "Teared up": which one the person meant
            # cannot be told, so neither is stored
            own = str(batch.categories[cid][0])
            if _name_key(row.name) != _name_key(own):
                other = _category_by_name(row.name, batch.categories)
                unknown = True
                errors.append(
                    f"{row.source}, column 'code as category': category {cid} is {own!r}, "
                    f"not {row.name!r}" + (f" (that is category {other})" if other is not None
                                           else "")
                    + "; choose the row's code again from the list")
                continue
        if cid is None:
            cid = _category_by_name(row.name, batch.categories)
            if cid is None:
                unknown = True
                errors.append(f"{row.source}, column 'code as category': {row.name!r} is not "
                              "the id nor the name of a category of the codebook"
                              + _became(batch, name=row.name))
                continue
        elif cid != NONE and cid not in batch.categories:
            unknown = True
            errors.append(f"{row.source}, column 'code as category': {cid} is not "
                          "a category of the codebook" + _became(batch, ident=cid))
            continue
        elif cid != NONE and not row.name and batch.codebook_changed:
            # the workbook's list gave this id to a category of the codebook the batch was
            # pre-coded with; the codebook now may give it to another one
            unknown = changed = True
            errors.append(f"{row.source}, column 'code as category': {cid} alone does not "
                          f"say which category: {batch.codebook} changed since this batch "
                          "was pre-coded, and the id may name another category in it now")
            continue
        try:
            choice = batch.choice(row.segment_id, cid, row.comment, by)
        except InputError:
            gone = True
            errors.append(f"{row.source}: {row.segment_id!r} is not a queued segment of batch "
                          f"{batch.batch}")
            continue
        choices.append(replace(choice, source=row.source,
                               exported_at=str(meta.get("exported_at") or "")))
    if errors:
        hints = ["type a category's id or name as the 'categories' sheet lists it, or "
                 "'none'"] if unknown else []
        hints += ["keep the segment id column as it was written"] if gone else []
        hints += ["type the category's name (\"12 – Trauma language\", or the name "
                  "alone)"] if changed else []
        hints += ["undo the sort (or code the queue.xlsx the pre-coding wrote again); to "
                  "sort the sheet, select all of its columns, so that each row keeps its "
                  "segment id"] if scrambled else []
        raise InputError(f"{len(errors)} problem(s) in the queue workbook:\n  "
                         + "\n  ".join(errors[:30]), path=path,
                         hint="; ".join(hints + ["fix these rows and import again"])
                         + "; nothing was imported")
    # the same workbook imported again repeats what is stored: counted, not stored twice
    latest = latest_choices(batch.run_folder)

    def stored_as_is(c: QueueChoice) -> bool:
        v = latest.get((by, c.item(batch.batch)))
        # a choice stored before it carried its codebook's sha256 is stored again, with it
        return v is not None and (v.get("category_id"), v.get("comment", ""),
                                  v.get("codebook_sha256")) == \
            (c.category_id, c.comment, c.codebook_sha256)

    new = [c for c in choices if not stored_as_is(c)]
    replaced, later = _replacing(new, latest, batch, by, Path(path).name,
                                 str(meta.get("exported_at") or ""))
    if later and not workbook_wins:
        raise InputError(
            f"{len(later)} row(s) of the queue workbook would replace a choice {by} made "
            "after the workbook was written:\n  " + "\n  ".join(later[:30])
            + (f"\n  ... and {len(later) - 30} more" if len(later) > 30 else ""), path=path,
            hint=f"nothing was imported. To keep {by}'s later choices, empty those rows (an "
            "empty row takes no choice back) and import again; to let the workbook's rows "
            "replace them, import it again with --workbook-wins"
            + (f"; is this {by}'s own workbook?" if not person else ""))
    if new:
        with ReviewStore(load_run(batch.run_folder), create=True) as store:
            record_choices(store, batch.batch, new, by,
                           f"precode queue {Path(path).name} ({batch.batch})", batch.categories)
    # a row emptied since an earlier import takes no choice back: said, with the rows
    kept = [f"row {n}" for ident, n in blank
            if latest.get((by, queue_item(batch.batch, ident)))]
    return QueueImport(len(new), batch.run_folder, comment_only, len(choices) - len(new), kept,
                       replaced)


def export_queue(folder: Path, people: list[str], force: bool = False) -> list[Path]:
    """A copy of the batch's queue workbook(s) for each judge named, as ``review export``
    writes one review workbook per judge: ``queue-ana.xlsx`` (``queue-001-ana.xlsx`` ...
    for a queue in parts), its ``_meta`` naming the person and the time it was written,
    so that ``consensa precode import`` refuses it under another name (``--not-own-file``
    aside) and tells the person's choices made after it from the rows in it."""
    from .fsutil import atomic_write_bytes
    from .review.model import load_run
    from .review.store import ReviewStore, closest_name

    batch = open_batch(folder)
    if not people:
        raise InputError("name the judges to write a queue workbook for: --judges ana,ben",
                         field="--judges")
    with ReviewStore(load_run(batch.run_folder)) as store:
        judges = store.judges()
    bad = [p for p in people if p not in judges]
    if bad:
        close = [f"did you mean {c!r} for {p!r}?" for p in bad if (c := closest_name(p, judges))]
        raise InputError(f"not a judge of the review: {', '.join(bad)} (judges: "
                         f"{', '.join(judges) or 'none'})" + (f"; {' '.join(close)}" if close
                                                              else ""), field="--judges",
                         hint="queued segments are coded by the judges; nothing was written")
    folder = Path(folder)
    codebook_rel = Path(os.path.relpath(batch.codebook.resolve(), folder.resolve())).as_posix()
    meta = {"batch": batch.batch, "codebook": str(batch.codebook.resolve()),
            "codebook_relative": codebook_rel, "precode_folder": str(folder.resolve()),
            "run_id": RunFolder(batch.run_folder).run_id}
    paths = [(folder / f"{Path(name).stem}-{person}.xlsx", name, part, person)
             for person in people for name, part in queue_parts(batch.queue)]
    there = [path for path, *_ in paths if path.exists()]
    if there and not force:
        raise InputError(f"the queue workbook exists already (it may hold choices): {there[0]}",
                         hint="import it first, or pass --force to write it again")
    for path, name, part, person in paths:
        atomic_write_bytes(path, queue_workbook(part, batch.categories, {
            **meta, "file": name, "person": person,
            "exported_at": now_utc()}))
    return [path for path, *_ in paths]


def _replacing(new: list[QueueChoice], latest: dict, batch: PrecodeBatch, by: str,
               file: str, exported_at: str) -> tuple[list[str], list[str]]:
    """The choices of ``new`` that replace a different one ``by`` stored before, in
    words (``row 5 (segment T12:11:0): 8 – Trauma language -> none``), and of those the
    ones made after the workbook was written (``exported_at``), other than by importing
    a copy of it: a later choice is the person's later word, never replaced unseen."""
    from .review.workbook import exported_time

    written = exported_time(exported_at)
    replaced, later = [], []
    for c in new:
        old = latest.get((by, c.item(batch.batch)))
        if old is None:
            continue
        was = ("none" if int(old["category_id"]) == NONE else
               f"{old['category_id']}" + (f" – {old['category']}" if old.get("category") else ""))
        now = "none" if c.category_id == NONE else \
            f"{c.category_id} – {batch.categories.get(c.category_id, ('?',))[0]}"
        where = str(old.get("source", ""))
        how = "in the browser" if where.startswith("web form") else \
            f"by importing {where.split(', row')[0]}" if where else "before"
        at = str(old.get("chosen_at", ""))
        replaced.append(f"{c.source} (segment {c.segment_id}): {was} -> {now}")
        made = exported_time(at)
        same_file = (old.get("exported_at") == exported_at if old.get("exported_at")
                     else where.startswith(f"{file}, row"))
        if (made is None or written is None or made > written) and not (exported_at and
                                                                        same_file):
            later.append(f"{c.source} (segment {c.segment_id}): the workbook codes it {now}; "
                         f"{by} chose {was} for it {how} at {at[:16].replace('T', ' ')} UTC, "
                         f"after the workbook was written ({exported_at[:16].replace('T', ' ')}"
                         " UTC)" if exported_at else
                         f"{c.source} (segment {c.segment_id}): the workbook codes it {now}; "
                         f"{by} chose {was} for it {how} at {at[:16].replace('T', ' ')} UTC, "
                         "and the workbook does not say when it was written")
    return replaced, later


def _merged_into(cb: dict) -> dict[int, int]:
    """Theme ids that are no category of the codebook themselves, but whose segments a
    category took in (merged): old id -> the category's id. A queue written before the
    merge offers the old id and name."""
    identity = category_identity(cb)
    return {t: cid for cid, ident in identity.items() for t in ident["from_themes"]
            if t not in identity}


def _became(batch: PrecodeBatch, *, name: str = "", ident: int | None = None) -> str:
    """What became of a category a code names by its id or name that the codebook no
    longer has: merged into another (a queue written before the merge offers it), or
    renamed. "" when it is neither. Which category the person means now is theirs to
    say: the merge is named, not applied."""
    cb = safeyaml.load_file(batch.codebook, what="codebook") or {}
    key = _name_key(name)
    now = batch.categories
    try:
        themes = RunFolder.open(batch.run_folder).themes()
        names = {int(t): str(n) for t, n in zip(themes["theme_id"], themes["name"])}
    except InputError:          # the run's own table is not there: ids only
        names = {}
    for old, into in _merged_into(cb).items():
        old_name = names.get(old, "")
        if into in now and (ident == old or (key and _name_key(old_name) == key)):
            return (f": theme {old}" + (f" {old_name!r}" if old_name else "")
                    + f" was merged into category {into} {now[into][0]!r}; choose that one")
    if key:
        for d in cb.get("domains") or []:
            for c in d.get("categories") or []:
                old_name = str(c.get("proposed_name") or "")
                if old_name and _name_key(old_name) == key and int(c["id"]) in now:
                    return (f": it is the proposed name of category {int(c['id'])}, renamed "
                            f"{now[int(c['id'])][0]!r}; choose that one")
    return ""


def _scrambled_rows(rows: list[QueueRow], batch: PrecodeBatch) -> str:
    """The problem of a queue sheet whose coded rows show another queued segment's case
    or text than their segment id's ("" if none does). A sheet sorted on every column
    but the id (Excel's "continue with the current selection") keeps each code beside
    the text it was chosen for and gives it another segment's id: stored, each choice
    would code the wrong segment without a word. A text typed over (it is never read),
    a blank cell, and an id the batch did not queue (refused on its own) are not this."""
    from .sheets import cell_text

    queued = {str(i): (cell_text(c), cell_text(t)) for i, c, t in
              zip(batch.queue["segment_id"], batch.queue["case_id"], batch.queue["text"])}
    known = [{v[k] for v in queued.values()} for k in (0, 1)]
    bad = []
    for row in rows:
        want = queued.get(row.segment_id)
        if want is None:
            continue
        for k, column in enumerate(("case", "text")):
            got, own = row.shown[k], want[k]
            if got and got != own and got in known[k]:
                bad.append((row, column, got, own))
                break
    if not bad:
        return ""
    row, column, got, own = bad[0]

    def cut(text: str) -> str:
        return text if len(text) <= 60 else text[:60] + "…"

    numbers = [r.source.rpartition("row ")[2] for r, *_ in bad]
    shown = ", ".join(numbers[:15]) + (f" and {len(numbers) - 15} more" if len(numbers) > 15
                                       else "")
    return (f"sheet 'queue': {len(bad)} coded row(s) ({shown}) do not show the segment their "
            f"'segment id' names ({row.source}: segment {row.segment_id!r} has the "
            f"{column} \"{cut(own)}\", the row shows another's, \"{cut(got)}\"): the sheet "
            "was sorted, or rows moved, apart from the segment id column, so each code "
            "would be stored for another segment")


def record_choices(store: ReviewStore, batch: str, choices: list[QueueChoice], by: str,
                   what: str, categories: Iterable[int]) -> int:
    """Store ``by``'s choices for queued segments of ``batch``; the one writer of them.

    ``consensa precode import`` and the queue page of ``consensa serve`` both store
    here, so a choice is the same row whichever way it came in: an audit-log row of
    the review store (``RUN/review/decisions.sqlite``, append-only) under
    :data:`CHOICE_ACTION`, keyed :meth:`QueueChoice.item`, its value the choice as
    JSON with its batch, all in one transaction with a row in the ``imports`` table:
    durable as the judges' decisions are (WAL, synchronous=FULL), and a killed write
    leaves nothing behind. A later choice for the same segment by the same person
    replaces the earlier one when read (:func:`latest_choices`); both stay in the log.

    A choice of an id that is not a category of the codebook (``categories``) nor
    "none" refuses them all: nothing is stored. So does a person who is not a judge
    of the review's panel, when it has one: coding is the judges' part, and a
    choice under another name (an auditor's, a typo's) would train the next batch.
    """
    known = set(categories)
    bad = [c for c in choices if c.category_id != NONE and c.category_id not in known]
    if bad:
        raise InputError("; ".join(f"{c.source}: {c.category_id} is not a category of the "
                                   "codebook" for c in bad[:30]),
                         hint="choose one of the codebook's category ids, or 'none'; "
                         "nothing was stored")
    if not by:
        raise InputError("a choice must name the person who made it")
    panel = store.panel()
    if panel and panel.get(by) != "judge":
        judges = ", ".join(n for n, r in panel.items() if r == "judge") or "none"
        from .review.store import closest_name

        close = closest_name(by, [n for n, r in panel.items() if r == "judge"])
        raise InputError(f"{by!r} is " + ("an auditor" if panel.get(by) == "auditor"
                                          else "not on the review's panel")
                         + f"; queued segments are coded by the judges ({judges})"
                         + (f"; did you mean {close!r}?" if close and close != by else ""),
                         hint="give --by the judge who made these choices; nothing was stored")
    now = now_utc()
    with store.transaction() as con:
        cur = con.execute("INSERT INTO imports (at, who, what, n_rows) VALUES (?, ?, ?, ?)",
                          (now, by, what, len(choices)))
        for c in choices:
            value = json.dumps({**asdict(c), "batch": batch}, ensure_ascii=False, sort_keys=True)
            con.execute("INSERT INTO audit_log (at, who, action, round, item, value, "
                        "previous, import_id) VALUES (?, ?, ?, NULL, ?, ?, NULL, ?)",
                        (now, by, CHOICE_ACTION, c.item(batch), value, cur.lastrowid))
    return len(choices)


def latest_choices(run_folder: Path) -> dict[tuple[str, str], dict]:
    """Every stored queue choice, the latest per (person, item): (who, item) -> its value,
    with ``chosen_at``, the time it was stored (the audit log's, not part of the stored
    value): an export dates a person's coding by when they chose, not by the pre-coding.

    Read from the review store without writing to it (no store: nothing stored yet).
    """
    import sqlite3

    from .review.store import damaged_error, db_path, is_damage

    path = db_path(run_folder)
    if not path.is_file():
        return {}
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        rows = con.execute("SELECT who, item, value, at FROM audit_log WHERE action=? "
                           "ORDER BY id", (CHOICE_ACTION,)).fetchall()
    except sqlite3.DatabaseError as exc:   # read here directly, not through ReviewStore
        if is_damage(exc):
            raise damaged_error(path, exc) from exc
        raise
    finally:
        con.close()
    return {(who, item): {**json.loads(value), "chosen_at": at} for who, item, value, at in rows}


def agreed_code(codes: Iterable[int]) -> int | None:
    """The code most of the people who coded one queued segment chose; None when they
    split evenly (no code has more of their choices than another)."""
    (top, n), *rest = Counter(codes).most_common()
    return None if rest and rest[0][1] == n else top


#: the status of a segment people coded in an earlier batch's queue: their code stands
BY_PEOPLE = "coded_by_people"


def read_choices(run_folder: Path, reader: ChoiceReader | None
                 ) -> tuple[dict[tuple[str, str], dict], dict[tuple[str, str], dict]]:
    """The latest stored choice per (person, item), read in the codebook used now: those
    whose category it names (``category_id`` that category's id there, ``stored_category_id``
    the id as stored), and those whose category it does not (``unread``: why). With no
    reader, every choice is read by its id as stored."""
    read, unread = {}, {}
    for key, v in latest_choices(run_folder).items():
        cid, why = (int(v["category_id"]), "") if reader is None else reader.read(v)
        if cid is None:
            unread[key] = {**v, "unread": why}
        else:
            read[key] = {**v, "category_id": cid, "stored_category_id": int(v["category_id"])}
    return read, unread


def unread_words(v: Mapping) -> str:
    """A stored choice :func:`read_choices` could not read, in words: the category as it
    was stored (its name then, else its id, never the name its id has now) and why."""
    was = v.get("category") or f"category {v['category_id']}"
    return f"{was} (not read: {v['unread']})"


def people_votes(run_folder: Path, reader: ChoiceReader | None = None
                 ) -> dict[tuple[str, str], dict[str, dict]]:
    """The stored queue choices of every batch, by segment: (segment id, its text) ->
    {person: their latest choice}. A segment is the one people coded only if its id
    and its text are both the same: a transcript edited since gives the id to other
    words, whose code nobody chose. Each choice is read in the codebook used now
    (``reader``): a category renamed or merged since counts as the one it became; a
    choice whose category cannot be told there keeps its ``unread`` reason, and the
    segment goes back to the queue (:func:`apply_people_choices`)."""
    read, unread = read_choices(run_folder, reader)
    out: dict[tuple[str, str], dict[str, dict]] = {}
    for (who, _), v in [*read.items(), *unread.items()]:
        votes = out.setdefault((str(v["segment_id"]), str(v["text"])), {})
        was = votes.get(who)
        if was is None or str(v.get("chosen_at", "")) >= str(was.get("chosen_at", "")):
            votes[who] = v
    return out


def apply_people_choices(seg: pd.DataFrame, run_folder: Path, cats: dict[int, tuple],
                         reader: ChoiceReader | None = None) -> pd.DataFrame:
    """The segments with the codes people chose for them in an earlier batch's queue.

    A segment of the same id and the same text as one people coded takes the code most
    of them chose, whatever the classifier says now: status :data:`BY_PEOPLE`, never
    queued again, ``coded_by`` naming who chose that code. One they split evenly on
    stays in the queue (or goes back to it), since the classifier cannot settle what
    the people did not; so does one with a choice whose category the codebook used now
    cannot tell (:class:`ChoiceReader`), counted in ``attrs["n_unread"]``: never coded
    with the category that has its id now. ``people_choices`` holds each person's choice
    (JSON) for all of them.
    """
    seg = seg.copy()
    seg["coded_by"] = ""
    seg["people_choices"] = ""
    seg.attrs["n_unread"] = 0
    votes = people_votes(run_folder, reader)
    if not votes or seg.empty:
        return seg
    name_of = {**{c: v[0] for c, v in cats.items()}, NONE: "none"}
    status, needs, category = (seg["status"].to_numpy(dtype=object).copy(),
                               seg["needs_human"].to_numpy(dtype=bool).copy(),
                               seg["category_id"].to_numpy(dtype=int).copy())
    coded_by, said = seg["coded_by"].to_list(), seg["people_choices"].to_list()
    n_unread = 0

    def listed(v: dict) -> dict:
        if v.get("unread"):
            return {"who": v["who"], "category_id": NONE, "category": unread_words(v),
                    "unread": v["unread"], "stored_category_id": int(v["category_id"])}
        return {"who": v["who"], "category_id": int(v["category_id"]),
                "category": name_of.get(int(v["category_id"]), "")}

    for i, (sid, text) in enumerate(zip(seg["segment_id"].astype(str), seg["text"].astype(str),
                                        strict=True)):
        by = votes.get((sid, text))
        if not by:
            continue
        said[i] = json.dumps([{**listed({**v, "who": who}),
                               "comment": str(v.get("comment") or ""),
                               "chosen_at": v.get("chosen_at"), "batch": v.get("batch")}
                              for who, v in sorted(by.items())], ensure_ascii=False)
        if any(v.get("unread") for v in by.values()):
            # what this person chose cannot be told in this codebook: a person decides again
            status[i], needs[i], category[i] = "needs_human", True, NONE
            n_unread += 1
            continue
        top = agreed_code(int(v["category_id"]) for v in by.values())
        if top is None:
            status[i], needs[i], category[i] = "needs_human", True, NONE
            continue
        status[i], needs[i], category[i] = BY_PEOPLE, False, top
        coded_by[i] = ", ".join(who for who, v in sorted(by.items())
                                if int(v["category_id"]) == top)
    seg["status"], seg["needs_human"], seg["category_id"] = status, needs, category
    seg["coded_by"], seg["people_choices"] = coded_by, said
    seg["category"] = [cats[c][0] if c in cats else "" for c in seg["category_id"]]
    seg["domain_id"] = [cats[c][1] if c in cats else -1 for c in seg["category_id"]]
    seg["domain"] = [cats[c][2] if c in cats else "" for c in seg["category_id"]]
    seg.attrs["n_unread"] = n_unread
    return seg


def stored_choices(run_folder: Path, reader: ChoiceReader | None = None) -> pd.DataFrame:
    """The stored queue choices as training rows: one per queued segment.

    Each person's latest choice counts once; where several people coded the same
    segment, the row takes the category most of them chose. A segment they split
    evenly on is left out (its code is not agreed, and training on both codes would
    teach the classifier a contradiction); ``attrs["n_disagreed"]`` counts those, and
    ``attrs["n_people_choices"]`` the choices read. Columns as :func:`training_set`
    (label: the category id or :data:`NONE`); the case is prefixed with its batch, so
    the case-grouped folds keep a new case whole. Each choice is read in the codebook
    used now (``reader``, :class:`ChoiceReader`): a category renamed or merged since
    counts as the one it became (``attrs["n_followed"]`` counts those whose id
    changed); a choice whose category is no longer in the codebook, or cannot be told
    in it, is left out, with its segment, and counted in ``attrs["n_not_in_codebook"]``
    and ``attrs["n_unread"]`` (``attrs["unread"]``: how many for each reason).
    """
    cols = ["segment_id", "case_id", "text", "label", "origin"]
    read, unread = read_choices(run_folder, reader)
    not_read = {item for _, item in unread}
    by_item: dict[str, list[dict]] = {}
    for (_, item), v in read.items():
        if item not in not_read:
            by_item.setdefault(item, []).append(v)
    out, disagreed = [], 0
    for votes in by_item.values():
        top = agreed_code(int(v["category_id"]) for v in votes)
        if top is None:
            disagreed += 1
            continue
        v = next(v for v in votes if int(v["category_id"]) == top)
        out.append({"segment_id": v["segment_id"], "case_id": f"{v['batch']}/{v['case_id']}",
                    "text": v["text"], "label": top, "origin": "queue"})
    frame = pd.DataFrame(out, columns=cols)
    reasons = Counter(v["unread"] for v in unread.values())
    frame.attrs.update(n_disagreed=disagreed, n_people_choices=len(read),
                       n_not_in_codebook=reasons.get(GONE, 0), n_unread=len(unread),
                       unread=dict(reasons),
                       n_followed=sum(v["category_id"] != v["stored_category_id"]
                                      for v in read.values()))
    return frame


# --- a pre-coding's output folder, as `consensa serve` opens it -----------------------------

@dataclass(frozen=True)
class PrecodeBatch:
    """One pre-coding's output folder: its batch, its codebook and that codebook's run,
    and the segments queued for a person (lowest confidence first, as in queue.xlsx)."""

    folder: Path
    batch: str
    codebook: Path
    run_folder: Path
    categories: dict[int, tuple[str, int, str]]
    queue: pd.DataFrame
    #: the sha256 of the codebook ``categories`` are read from, and what identifies each
    #: of its categories beyond its id (:func:`category_identity`), stored with a choice
    codebook_sha256: str = ""
    identity: dict[int, dict] = field(default_factory=dict)
    #: the codebook ``categories`` are read from is not the one the batch was pre-coded
    #: with (that one was not kept, and the codebook was applied again since): ids typed
    #: in its queue workbook name that one's categories
    codebook_changed: bool = False
    #: reads a stored choice in the codebook ``categories`` are read from, as
    #: ``consensa precode`` reads it (:class:`ChoiceReader`): by the category it was
    #: made for, not by its id alone
    reader: ChoiceReader | None = None

    def choice(self, segment_id: str, category_id: int, comment: str, by: str) -> QueueChoice:
        """``by``'s choice for one queued segment, as the queue page makes it (the
        segment as the pre-coding wrote it, the classifier's first suggestion)."""
        rows = self.queue[self.queue["segment_id"] == segment_id]
        if rows.empty:
            raise InputError(f"{segment_id!r} is not a queued segment of batch {self.batch}",
                             path=self.folder / "segments.parquet")
        r = rows.iloc[0]
        ident = self.identity.get(int(category_id), {})
        return QueueChoice(segment_id=str(r["segment_id"]), case_id=str(r["case_id"]),
                           text=str(r["text"]), category_id=int(category_id),
                           suggested_category_id=int(r["suggested_category_id"]),
                           confidence=float(r["confidence"]), comment=comment,
                           source=f"web form ({by})",
                           category=str(ident.get("category", "")),
                           from_themes=tuple(ident.get("from_themes", ())),
                           proposed_subcategory=ident.get("proposed_subcategory"),
                           codebook_sha256=self.codebook_sha256)

    def choices(self) -> dict[str, dict[str, dict]]:
        """The stored choices for this batch's segments: segment id -> {person: the
        latest choice's value}, however they came in (workbook or web), each read by
        :attr:`reader` (:func:`read_choices`): ``category_id`` the category it names in
        ``categories`` (a category renamed or renumbered since: the one it became,
        ``stored_category_id`` the id as stored); a choice whose category cannot be
        told there keeps its id as stored and says why in ``unread``."""
        read, unread = read_choices(self.run_folder, self.reader)
        out: dict[str, dict[str, dict]] = {}
        for (who, _), v in [*read.items(), *unread.items()]:
            if v.get("batch") == self.batch:
                out.setdefault(str(v["segment_id"]), {})[who] = v
        return out

    @staticmethod
    def done(chosen: dict[str, dict[str, dict]]) -> set[str]:
        """The segments of ``chosen`` (:meth:`choices`) that are coded: stored choices
        all read. One with a choice that is not read goes back to the queue, as the next
        pre-coding sends it back (:func:`apply_people_choices`), until that person
        chooses again."""
        return {sid for sid, by in chosen.items() if not any(v.get("unread") for v in by.values())}

    def n_done(self, chosen: dict[str, dict] | None = None) -> int:
        """How many queued segments are coded (:meth:`done`)."""
        chosen = self.choices() if chosen is None else chosen
        return int(self.queue["segment_id"].astype(str).isin(list(self.done(chosen))).sum())


def is_precode_folder(folder: Path) -> bool:
    """Whether ``folder`` is the output of ``consensa precode``: its manifest names a
    batch and a codebook (a run folder's manifest does neither)."""
    path = Path(folder) / "manifest.json"
    if not path.is_file():
        return False
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError):
        return False
    return isinstance(manifest, dict) and "batch" in manifest and "codebook" in manifest


def open_batch(folder: Path) -> PrecodeBatch:
    """The pre-coding in ``folder`` with its codebook, the codebook's run and its queue."""
    folder = Path(folder)
    if not is_precode_folder(folder):
        raise InputError("not the output folder of `consensa precode` (its manifest.json "
                         "names no batch and codebook)", path=folder)
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    codebook = moved_with(Path(manifest["codebook"]), manifest.get("codebook_relative"),
                           folder, Path.is_file)
    if not codebook.is_file():
        raise InputError(f"the pre-coding's codebook is missing: {codebook}",
                         path=folder / "manifest.json",
                         hint="keep the codebook's run folder where it was when this batch "
                         "was pre-coded, or move the two together")
    cb, run_folder, _ = _load_codebook(codebook)
    from .fsutil import file_sha256

    sha, pin = file_sha256(codebook), manifest.get("codebook_sha256")
    kept, read_from = folder / KEPT_CODEBOOK, codebook
    if pin and sha != pin and kept.is_file() and file_sha256(kept) == pin:
        # applied again since: the batch's queue offered the categories of the copy it kept
        cb, sha = check_codebook(safeyaml.load_file(kept, what="codebook") or {}, kept), pin
        read_from = kept
    seg_path = folder / "segments.parquet"
    if not seg_path.is_file():
        raise InputError("the pre-coding has no segments.parquet", path=folder,
                         hint="pre-code the transcripts again into a new --out folder")
    seg = pd.read_parquet(seg_path)
    queue = seg[seg["needs_human"].astype(bool)].sort_values("confidence", kind="stable")
    return PrecodeBatch(folder=folder, batch=str(manifest["batch"]), codebook=codebook,
                        run_folder=run_folder, categories=codebook_categories(cb),
                        queue=queue.reset_index(drop=True), codebook_sha256=sha,
                        identity=category_identity(cb),
                        codebook_changed=bool(pin) and sha != pin,
                        reader=ChoiceReader.of(cb, read_from, run_folder, [folder]))
