"""Atomic writes (a file appears whole or not at all), and paths anchored to a folder."""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
from pathlib import Path

import numpy as np


def anchored(path: str | Path, base: str | Path) -> Path:
    """``path`` as a config means it: ``~`` expanded, a relative path read from
    ``base`` (the config file's folder), normalised; an absolute path is returned
    as it is (normalised), so anchoring twice changes nothing."""
    p = Path(os.path.expanduser(path))
    return Path(os.path.normpath(p if p.is_absolute() else Path(base) / p))


def _umask() -> int:
    """The process's umask, read without changing it where the system says it
    (Linux), else set and restored at once."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _mode_for(path: Path) -> int:
    """The permissions a written file gets: an existing file's own, else what a plain
    ``open(path, "w")`` would give (0o666 less the umask). A temporary file is made
    0o600, and without this every table, report and export a team shares in a
    project folder would open for its writer only."""
    try:
        return path.stat().st_mode & 0o7777
    except OSError:
        return 0o666 & ~_umask()


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
            if hasattr(os, "fchmod"):
                os.fchmod(fh.fileno(), _mode_for(path))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_npz(path: str | Path, **arrays: np.ndarray) -> None:
    """``np.savez`` of ``arrays`` to ``path``, atomically."""
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    atomic_write_bytes(path, buf.getvalue())


def text_sha256(text: str) -> str:
    """The sha256 of a text's UTF-8 bytes: what a manifest records of a text kept or
    read (a de-identified source, a project source's own text)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def file_sha256(path: str | Path) -> str:
    """The sha256 of a file's bytes, read a megabyte at a time (a transcript table or a
    QDA project can be large): what manifests record of the files a run read."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
