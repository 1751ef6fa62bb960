"""spaCy for the stages, imported without PyTorch where that is safe.

spaCy's numerical library, thinc, imports PyTorch whenever it is installed, only to
learn whether it could use it. The spaCy pipelines of Consensa (the tokenizer, the
lookup lemmas, en_core_web_sm's tagger, parser and NER) never use it, and importing
PyTorch costs about 1.4 s on a laptop: most of the difference between a re-run of a
CQR analysis, whose vectors come from the cache, and a re-run of the themes.

So when PyTorch is not loaded yet and nothing else runs in the process (one thread),
spaCy is imported with PyTorch hidden for the duration; thinc then records that it
has no PyTorch, which changes nothing for these pipelines. PyTorch itself stays
importable: a stage that embeds with sentence-transformers imports it afterwards as
usual. With other threads running (a Dask worker's), a hidden PyTorch could fail
their imports, so spaCy is imported the ordinary way there.
"""

from __future__ import annotations

import sys
import threading
from functools import lru_cache
from types import ModuleType

_LOCK = threading.Lock()


def spacy() -> ModuleType:
    """The ``spacy`` module (see the module docstring for how it is imported)."""
    loaded = sys.modules.get("spacy")
    if loaded is not None:
        return loaded
    with _LOCK:
        hide = "torch" not in sys.modules and threading.active_count() == 1
        if hide:
            sys.modules["torch"] = None          # type: ignore[assignment]  # "import torch" fails
        try:
            import spacy as module
        finally:
            if hide and "torch" in sys.modules and sys.modules["torch"] is None:
                del sys.modules["torch"]
    return module


#: a thread's sentencizer is made anew once its string store holds this many strings
#: (every word it has met), so that a process that segments shard after shard does
#: not keep them all
SENTENCIZER_MAX_STRINGS = 500_000
_THREAD = threading.local()


def sentencizer():
    """A blank English pipeline with spaCy's rule-based sentencizer, one per thread.

    Why: ``spacy.blank("en")`` takes 0.12-0.26 s (the language's tokenizer
    exceptions), more than sentencizing a study of a few hundred turns, and every
    run, pre-coding shard and re-run of a stage asked for a new one. A pipeline is
    not shared between threads: its string store grows as it reads."""
    nlp = getattr(_THREAD, "sentencizer", None)
    if nlp is None or len(nlp.vocab.strings) > SENTENCIZER_MAX_STRINGS:
        nlp = spacy().blank("en")
        nlp.add_pipe("sentencizer")
        _THREAD.sentencizer = nlp
    return nlp


@lru_cache(maxsize=1)
def stop_words() -> frozenset[str]:
    """spaCy's English stop words (not scikit-learn's list, which holds content words
    such as "cry", "fire" and "system": fatal for interviews about crying).

    Read from spaCy's own module file, loaded on its own, when spaCy is not imported
    yet: that file is a list of words, and importing spaCy for it cost a re-run
    whose every step came from the cache about half a second, a tenth of its time."""
    if "spacy" not in sys.modules:
        import importlib.util
        from pathlib import Path

        found = importlib.util.find_spec("spacy")
        if found is not None and found.origin:
            path = Path(found.origin).parent / "lang" / "en" / "stop_words.py"
            spec = importlib.util.spec_from_file_location("_consensa_spacy_en_stop_words", path)
            if path.is_file() and spec is not None and spec.loader is not None:
                module = importlib.util.module_from_spec(spec)
                spec.loader.exec_module(module)
                words = getattr(module, "STOP_WORDS", None)
                if isinstance(words, set) and words:
                    return frozenset(words)
    spacy()
    from spacy.lang.en.stop_words import STOP_WORDS

    return frozenset(STOP_WORDS)
