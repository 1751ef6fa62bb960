"""Atomic writes: whole files, with the permissions an ordinary write gives."""

from __future__ import annotations

import os
import stat

import pytest

from pipeline.fsutil import atomic_write_bytes, atomic_write_text

pytestmark = pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")


def _mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_new_file_is_as_readable_as_an_ordinary_write_makes_it(tmp_path):
    """A temporary file is made 0600; a codebook, workbook or table a team shares in
    its project folder must open for the others as any file the writer saves would."""
    old = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "codebook.md", "# Codebook\n")
        with open(tmp_path / "plain.md", "w") as fh:
            fh.write("x")
        assert _mode(tmp_path / "codebook.md") == _mode(tmp_path / "plain.md") == 0o644
        os.umask(0o077)                       # a team that keeps its files private
        atomic_write_bytes(tmp_path / "queue.xlsx", b"PK")
        assert _mode(tmp_path / "queue.xlsx") == 0o600
    finally:
        os.umask(old)


def test_a_rewritten_file_keeps_its_permissions(tmp_path):
    path = tmp_path / "cqr_table.md"
    path.write_text("old", encoding="utf-8")
    path.chmod(0o640)
    atomic_write_text(path, "new")
    assert path.read_text(encoding="utf-8") == "new" and _mode(path) == 0o640
    assert [p.name for p in tmp_path.iterdir()] == ["cqr_table.md"]     # no temporary left
