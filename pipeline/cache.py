"""The one cache of Consensa's stages: one key scheme, one error policy.

A re-run with new clustering settings should pay only for what those settings
change. What does not depend on them is kept in the run's ``cache_dir``: the units'
character spans (segment), the vectors of each text (embed), the reduced
coordinates (reduce, map) and the lemmatised vocabulary (label).

**One key.** Every entry is found under :func:`key`: the SHA-256 of the registered
name of what computed it, its parameters, the versions of the libraries Consensa
computes with (:data:`LIBRARIES`, and Consensa's own code: the source of the module
that computes it, so an edited module never serves an answer of the old code) and
the digest of its input (:func:`digest`). Anything else that could change the
answer (the seed, a model's weights) is a parameter or part of the input.

**One error policy.** A cache that cannot be read or written is a miss: the
result is computed again and the run goes on. The first such problem of a
:class:`Cache` is reported through :mod:`logging` (logger ``consensa.cache``, as a
warning naming the file and the reason); later ones only at debug level, so a
read-only or full disk says so once, not once per stage. A cache never raises.

Entries are ``.npz`` files of plain arrays (never pickles), one a result, written
atomically (:mod:`pipeline.fsutil`) in a folder per kind; what is kept per text
(its vector, its phrases) is rows of one SQLite file, safe for several runs at
once. Transcript text is never written: spans are integers, texts are known by
their SHA-256, and the vocabulary holds lemmas, not sentences.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sqlite3
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from .fsutil import atomic_write_npz

log = logging.getLogger("consensa.cache")

T = TypeVar("T")

#: The libraries whose versions are part of every key: a result computed with
#: another version of any of them is computed again.
LIBRARIES = ("numpy", "scipy", "scikit-learn", "umap-learn", "spacy", "torch",
             "transformers", "sentence-transformers")


@lru_cache(maxsize=1)
def library_versions() -> dict[str, str | None]:
    """The installed version of each of :data:`LIBRARIES` and of Consensa (None:
    not installed), read from the package metadata: no library is imported."""
    from . import __version__

    out: dict[str, str | None] = {"consensa": __version__}
    for pkg in LIBRARIES:
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = None
    return out


@lru_cache(maxsize=128)
def _file_digest(path: str) -> str | None:
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError:
        return None


def code_digest(obj: Any) -> str | None:
    """The SHA-256 of the source file of the module that defines ``obj`` (a class or
    a function): the version of Consensa's own code that computes a result. None
    when there is no such file (an object made at run time)."""
    module = sys.modules.get(getattr(obj, "__module__", "") or "")
    path = getattr(module, "__file__", None)
    return _file_digest(path) if path else None


def digest(*parts: Any) -> str:
    """The SHA-256 of an input: arrays (their dtype, shape and bytes), texts and
    sequences of texts (each one's length, then its UTF-8 bytes, so ``["ab", "c"]``
    and ``["a", "bc"]`` differ), bytes, and anything JSON can write."""
    h = hashlib.sha256()
    for part in parts:
        if isinstance(part, np.ndarray):
            arr = np.ascontiguousarray(part)
            h.update(f"array:{arr.dtype.str}:{arr.shape}".encode())
            h.update(arr.data)
        elif isinstance(part, (str, bytes)):
            _update_text(h, "text", part)
        elif isinstance(part, (list, tuple)) and all(isinstance(x, str) for x in part):
            h.update(f"texts:{len(part)}".encode())
            for text in part:
                _update_text(h, "", text)
        else:
            h.update(b"json:" + json.dumps(part, sort_keys=True, default=str).encode())
    return h.hexdigest()


def _update_text(h, tag: str, text: str | bytes) -> None:
    data = text if isinstance(text, bytes) else text.encode("utf-8", "surrogatepass")
    h.update(tag.encode())
    h.update(len(data).to_bytes(8, "little"))
    h.update(data)


def key(name: str, params: Mapping[str, Any], data: str, code: str | None = None) -> str:
    """The key of a result: ``name`` (the registered name of the stage, or the name of
    a step that is not a registered stage), its ``params``, :func:`library_versions`,
    ``code`` (:func:`code_digest` of what computes it) and ``data`` (the input's
    :func:`digest`)."""
    payload = {"name": name, "params": dict(params), "versions": library_versions(),
               "code": code, "input": data}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def stage_key(stage: Any, data: str) -> str:
    """:func:`key` of a stage object built from a registered name: the class that
    implements the name, its constructor parameters as ``__init__`` stored them and
    its module's code. A registered name is that class with the defaults its version
    pins (:mod:`pipeline.registry`), so the class and every parameter's value say
    what the name says, and two names that mean the same stage share their entries."""
    from .registry import get_params

    cls = type(stage)
    return key(f"{cls.__module__}.{cls.__qualname__}", get_params(stage), data, code_digest(cls))


class Cache:
    """The cache in ``folder`` (the run's ``cache_dir``); ``Cache(None)`` keeps
    nothing: every lookup misses and nothing is written.

    Stages and steps use :meth:`cached` (one ``.npz`` a result) or
    :meth:`get_vectors`/:meth:`put_vectors` (one row a text). Every method follows
    the module's error policy: a problem is a miss, reported once, never raised.
    """

    def __init__(self, folder: str | Path | None) -> None:
        self.folder = Path(folder) if folder is not None else None
        self.reported = False

    @property
    def enabled(self) -> bool:
        return self.folder is not None

    def __repr__(self) -> str:
        return f"Cache({str(self.folder) if self.folder else None!r})"

    # --- the error policy -----------------------------------------------------------

    def _trouble(self, what: str, path: Path, exc: BaseException | str) -> None:
        """Report a cache that cannot be read or written: the first time as a warning,
        then at debug level (the run goes on either way)."""
        reason = exc if isinstance(exc, str) else (
            getattr(exc, "strerror", None) or str(exc) or type(exc).__name__)
        if self.reported:
            log.debug("cache: cannot %s %s (%s)", what, path, reason)
            return
        self.reported = True
        log.warning("the cache cannot %s %s (%s); Consensa computes the result again and "
                    "goes on (further cache problems in this run are not repeated)",
                    what, path, reason)

    # --- one .npz a result ----------------------------------------------------------

    def _path(self, kind: str, key: str) -> Path:
        assert self.folder is not None
        return self.folder / kind / f"{key}.npz"

    def get(self, kind: str, key: str,
            decode: Callable[[Mapping[str, np.ndarray]], T | None]) -> T | None:
        """The entry ``key`` of ``kind``, decoded; None (a miss) when there is none,
        or when it cannot be read or ``decode`` finds it does not fit (returns None
        or raises KeyError, ValueError, TypeError or IndexError)."""
        if self.folder is None:
            return None
        path = self._path(kind, key)
        try:
            with np.load(path, allow_pickle=False) as data:
                arrays = {name: data[name] for name in data.files}
        except FileNotFoundError:
            return None
        # whatever a damaged file makes numpy raise (BadZipFile, EOFError, ValueError,
        # OSError, ...): a cache must never stop a run
        except Exception as exc:  # noqa: BLE001
            self._trouble("read", path, exc)
            return None
        try:
            value = decode(arrays)
        except (KeyError, ValueError, TypeError, IndexError) as exc:
            self._trouble("read", path, f"not a valid entry: {exc}")
            return None
        if value is None:
            self._trouble("read", path, "not a valid entry")
        return value

    def put(self, kind: str, key: str, arrays: Mapping[str, np.ndarray]) -> None:
        """Store ``arrays`` under ``key`` of ``kind``, atomically; a cache that cannot
        be written costs only time on the next run."""
        if self.folder is None:
            return
        path = self._path(kind, key)
        try:
            atomic_write_npz(path, **arrays)
        except Exception as exc:  # noqa: BLE001 - a full disk, a read-only folder, ...
            self._trouble("write", path, exc)

    def cached(self, kind: str, key: str, compute: Callable[[], T],
               encode: Callable[[T], Mapping[str, np.ndarray]],
               decode: Callable[[Mapping[str, np.ndarray]], T | None]) -> tuple[T, bool]:
        """``(value, from_cache)``: the entry ``key`` of ``kind`` when there is a valid
        one, else ``compute()``, stored with ``encode``."""
        hit = self.get(kind, key, decode)
        if hit is not None:
            return hit, True
        value = compute()
        if self.folder is not None:
            try:
                arrays = encode(value)
            except (TypeError, ValueError) as exc:    # e.g. a learned value JSON cannot hold
                self._trouble("write", self._path(kind, key), exc)
            else:
                self.put(kind, key, arrays)
        return value, False

    # --- one row a text: the vectors ------------------------------------------------

    @property
    def vectors_path(self) -> Path | None:
        return self.folder / "embeddings.sqlite" if self.folder is not None else None

    def _connect(self) -> sqlite3.Connection:
        path = self.vectors_path
        assert path is not None
        path.parent.mkdir(parents=True, exist_ok=True)
        con = sqlite3.connect(path, timeout=60)
        con.execute("PRAGMA journal_mode=WAL")
        con.execute("CREATE TABLE IF NOT EXISTS vectors (model TEXT, key TEXT, dim INTEGER, "
                    "vec BLOB, PRIMARY KEY (model, key))")
        con.execute("CREATE TABLE IF NOT EXISTS text_rows (kind TEXT, key TEXT, value BLOB, "
                    "PRIMARY KEY (kind, key))")
        return con

    def _rows_for(self, sql: str, head: list, keys: list[str]) -> Iterator[tuple]:
        """The rows ``sql`` selects for ``keys`` (its ``{marks}``: the key
        placeholders), 500 keys a query, ``head`` the parameters before them.
        Raises what SQLite raises; the callers apply the error policy."""
        con = self._connect()
        try:
            for start in range(0, len(keys), 500):
                chunk = keys[start:start + 500]
                yield from con.execute(sql.format(marks=",".join("?" * len(chunk))),
                                       [*head, *chunk])
        finally:
            con.close()

    def _insert(self, sql: str, rows: list[tuple]) -> None:
        """``sql`` for each of ``rows``, in one transaction; a failure is reported."""
        try:
            con = self._connect()
            try:
                with con:
                    con.executemany(sql, rows)
            finally:
                con.close()
        except (sqlite3.Error, OSError) as exc:
            self._trouble("write", self.vectors_path, exc)

    def get_vectors(self, model: str, keys: Iterable[str]) -> dict[str, np.ndarray]:
        """The stored vectors of ``model`` for those of ``keys`` that have one."""
        if self.folder is None:
            return {}
        found: dict[str, np.ndarray] = {}
        try:
            for k, dim, blob in self._rows_for(
                    "SELECT key, dim, vec FROM vectors WHERE model=? AND key IN ({marks})",
                    [model], list(keys)):
                vec = np.frombuffer(blob, dtype=np.float32)
                if vec.shape != (dim,):
                    raise ValueError(f"a stored vector has {vec.size} numbers, not {dim}")
                found[k] = vec
        except (sqlite3.Error, OSError, ValueError) as exc:
            self._trouble("read", self.vectors_path, exc)
            return {}
        return found

    def put_vectors(self, model: str, items: Mapping[str, np.ndarray]) -> None:
        """Store ``items`` (key -> vector) for ``model``, in one transaction."""
        if self.folder is None or not items:
            return
        self._insert("INSERT OR REPLACE INTO vectors VALUES (?, ?, ?, ?)",
                     [(model, k, int(v.shape[0]), np.ascontiguousarray(v, np.float32).tobytes())
                      for k, v in items.items()])

    # --- one small entry a text, many at once: the phrases ---------------------------

    def get_rows(self, kind: str, keys: Iterable[str]) -> dict[str, bytes]:
        """The stored values of ``kind`` for those of ``keys`` that have one.

        Why not an ``.npz`` file each: what is kept per text (a text's phrases) is
        asked for by the hundred and is a few hundred bytes; a file each cost about
        a millisecond a text to write (its own temporary file, flush and rename),
        1.8 s of the names at 10,000 segments. Rows of the SQLite file are read and
        written a call at a time, in one transaction."""
        if self.folder is None:
            return {}
        found: dict[str, bytes] = {}
        try:
            for k, value in self._rows_for(
                    "SELECT key, value FROM text_rows WHERE kind=? AND key IN ({marks})",
                    [kind], list(keys)):
                if isinstance(value, bytes):    # else damaged: a miss
                    found[k] = value
        except (sqlite3.Error, OSError) as exc:
            self._trouble("read", self.vectors_path, exc)
            return {}
        return found

    def put_rows(self, kind: str, items: Mapping[str, bytes]) -> None:
        """Store ``items`` (key -> value) of ``kind``, in one transaction."""
        if self.folder is None or not items:
            return
        self._insert("INSERT OR REPLACE INTO text_rows VALUES (?, ?, ?)",
                     [(kind, k, bytes(v)) for k, v in items.items()])


def text_keys(texts: Sequence[str]) -> list[str]:
    """The key of each text in the vector table: the SHA-256 of its UTF-8 bytes."""
    return [hashlib.sha256(t.encode("utf-8", "surrogatepass")).hexdigest() for t in texts]
