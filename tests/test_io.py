"""Tests of oaprobe.io: atomic writes with the user's umask, and the file hash."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from oaprobe.io import default_file_mode, file_sha256, write_atomic


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_written_files_follow_the_umask(tmp_path: Path, umask: int, mode: int) -> None:
    old = os.umask(umask)
    try:
        assert default_file_mode() == mode
        write_atomic(tmp_path / "f.bin", b"x")
        write_atomic(tmp_path / "g.bin", lambda handle: handle.write(b"y"), fsync=True)
    finally:
        os.umask(old)
    assert (tmp_path / "f.bin").stat().st_mode & 0o777 == mode
    assert (tmp_path / "g.bin").read_bytes() == b"y"


def test_a_failed_write_leaves_nothing(tmp_path: Path) -> None:
    def broken(handle) -> None:
        handle.write(b"half")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        write_atomic(tmp_path / "f.bin", broken)
    assert list(tmp_path.iterdir()) == []


def test_file_sha256_matches_hashlib(tmp_path: Path) -> None:
    data = os.urandom(3 << 20)
    (tmp_path / "f").write_bytes(data)
    assert file_sha256(tmp_path / "f") == hashlib.sha256(data).hexdigest()
