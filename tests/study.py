"""A small invented interview study for the tests: six therapists, three topics.

Each answer draws on one topic's sentences, so a working pipeline must find the
three topics again. Written for these tests; nothing here comes from real data.
"""

from __future__ import annotations

from pathlib import Path

TOPICS = {
    "training": [
        "My training program never mentioned crying in the room, not once in three years.",
        "Nobody in my training taught us what to do when our own tears come.",
        "The training course treated therapist emotion as a boundary problem to be avoided.",
        "I had to learn about tears on the job because my training was silent.",
        "Our training talked about client feelings but never about the therapist crying.",
        "In training the message was that a good clinician keeps emotion out of sessions.",
    ],
    "supervision": [
        "My supervisor listened and helped me understand what the tears meant.",
        "I brought the session to my supervisor and she was kind about it.",
        "In consultation my colleagues said the supervisor should have supported me.",
        "The supervisor helped me sort out whether it was my own grief.",
        "My supervisor asked gentle questions and I felt less ashamed afterwards.",
        "Meeting my supervisor was where I could finally talk about that session.",
    ],
    "client": [
        "The client said she felt truly seen when she noticed my eyes were wet.",
        "The client looked surprised and said nobody had ever been moved by his story.",
        "The client reached for the tissues and told me it helped her feel believed.",
        "My client said the tears showed her that her loss was real to someone else.",
        "After that session the client trusted me more and opened up about her father.",
        "The client told me later that seeing me cry made him feel less alone with it.",
    ],
}

QUESTIONS = {
    "training": "Did your training prepare you for crying in session?",
    "supervision": "Did you bring it to supervision?",
    "client": "How did the client respond when you cried?",
}


def write_study(folder: Path, n_cases: int = 6, skip: dict[int, str] | None = None) -> Path:
    """Write ``n_cases`` .txt interviews into ``folder`` and return it. ``skip``: {case
    number (0-based): a topic that interview leaves out}."""
    folder.mkdir(parents=True, exist_ok=True)
    skip = skip or {}
    for c in range(n_cases):
        lines = ["Interviewer: Thank you for joining me today.", "", "Therapist: Yeah, sure.", ""]
        for t, (topic, sentences) in enumerate(TOPICS.items()):
            if skip.get(c) == topic:
                continue
            lines += [f"Interviewer: {QUESTIONS[topic]}", ""]
            # each case uses four of the six sentences, rotated so cases differ
            picked = [sentences[(c + t + k) % len(sentences)] for k in range(4)]
            lines += [f"Therapist: {picked[0]} {picked[1]}", "", "Interviewer: Mm-hmm.", "",
                      f"Therapist: {picked[2]} {picked[3]}", ""]
        (folder / f"case{c + 1:02d}.txt").write_text("\n".join(lines), encoding="utf-8")
    return folder


def study_config(folder: Path, **sections) -> dict:
    """A config for the study that runs in seconds (LSA embeddings, k-means)."""
    cfg = {
        "name": "mini", "seed": 7, "output_dir": str(folder / "runs"),
        "cache_dir": str(folder / "cache"),
        "ingest": {"paths": [str(folder)]},
        "segment": {"name": "consensa.SentenceSegmenter.v1", "target_words": 10, "max_words": 30},
        "embed": {"name": "consensa.TfidfSVD.v1", "n_components": 20},
        "reduce": {"name": "consensa.Identity.v1"},
        "cluster": {"name": "consensa.KMeans.v1", "n_clusters": 3},
        "map": {"name": "consensa.PCA.v1", "n_components": 2},
        "domains": {"distance_threshold": 0.9},
    }
    cfg.update(sections)
    return cfg


def run_study_cli(root: Path, skip: dict[int, str] | None = None, **sections) -> Path:
    """The study written under ``root`` (``skip``: see :func:`write_study`) and run with
    ``consensa run`` (the command line, quiet) on :func:`study_config` with
    ``sections``; returns the run folder."""
    import yaml

    from pipeline.cli import main

    folder = write_study(root / "study", skip=skip)
    path = root / "config.yaml"
    path.write_text(yaml.safe_dump(study_config(folder, **sections)))
    assert main(["run", str(path), "--out", str(root / "run"), "-q"]) == 0
    return root / "run"
