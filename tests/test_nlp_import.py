"""spaCy is imported without PyTorch in a one-thread process (pipeline/stages/nlp.py):
a re-run whose vectors come from the cache does not pay for PyTorch."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytest.importorskip("torch")


def _run(code: str) -> str:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_spacy_comes_without_pytorch_and_pytorch_still_imports_after():
    out = _run(
        "import sys\n"
        "from pipeline.stages.nlp import spacy, stop_words\n"
        "nlp = spacy().blank('en')\n"
        "assert 'crying' not in stop_words() and 'the' in stop_words()\n"
        "print('torch' in sys.modules)\n"
        "import torch\n"
        "print(torch.ones(2).sum().item())\n")
    assert out.splitlines() == ["False", "2.0"]


def test_with_other_threads_running_spacy_is_imported_the_ordinary_way():
    out = _run(
        "import sys, threading\n"
        "stop = threading.Event()\n"
        "t = threading.Thread(target=stop.wait); t.start()\n"
        "from pipeline.stages.nlp import spacy\n"
        "spacy()\n"
        "print('torch' in sys.modules)\n"
        "stop.set(); t.join()\n")
    assert out == "True"


def test_the_stop_words_are_spacys_and_read_without_importing_it():
    """A re-run whose every step comes from the cache needs the stop words and no
    parser: they are read from spaCy's own file, spaCy left unimported."""
    out = _run(
        "import sys\n"
        "from pipeline.stages.nlp import stop_words\n"
        "mine = stop_words()\n"
        "print('spacy' in sys.modules)\n"
        "from spacy.lang.en.stop_words import STOP_WORDS\n"
        "print(mine == frozenset(STOP_WORDS) and 'the' in mine and 'cry' not in mine)\n")
    assert out.splitlines() == ["False", "True"]
