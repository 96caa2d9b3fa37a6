"""The per-file-version cache of volume hashes and decode summaries (oaprobe.data.fingerprint)."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from oaprobe.data import fingerprint
from oaprobe.data.fingerprint import CACHE_FILE, facts_for


@pytest.fixture(autouse=True)
def _new_process() -> None:
    fingerprint._open.clear()


def _later(path: Path) -> None:
    """A later time stamp, whatever the file system's clock tick."""
    stamp = path.stat().st_mtime_ns + 10**9
    os.utime(path, ns=(stamp, stamp))


def test_sha256_is_of_the_bytes_and_follows_an_edit_in_place(tmp_path):
    file = tmp_path / "a.nii.gz"
    file.write_bytes(b"first")
    facts = facts_for(tmp_path)
    assert facts.sha256(file) == hashlib.sha256(b"first").hexdigest()
    file.write_bytes(b"other")  # same size, same inode
    _later(file)
    assert facts.sha256(file) == hashlib.sha256(b"other").hexdigest()
    assert facts.sha256(tmp_path) is None and facts.sha256(tmp_path / "gone") is None


def test_summaries_are_computed_once_per_file_version_and_survive_the_process(tmp_path):
    file = tmp_path / "a.nii.gz"
    file.write_bytes(b"voxels")
    calls: list[str] = []

    def summary(path: str) -> dict:
        calls.append(path)
        return {"size": os.path.getsize(path)}

    assert facts_for(tmp_path).cached(file, "image", summary) == {"size": 6}
    facts_for(tmp_path).save()
    fingerprint._open.clear()
    assert facts_for(tmp_path).cached(file, "image", summary) == {"size": 6} and len(calls) == 1
    os.replace(tmp_path / "a.nii.gz", tmp_path / "b")  # a new file at the old path: a new inode
    (tmp_path / "a.nii.gz").write_bytes(b"vox")
    assert facts_for(tmp_path).cached(file, "image", summary) == {"size": 3} and len(calls) == 2


def test_save_merges_other_processes_entries_and_drops_vanished_files(tmp_path):
    for name in ("a", "b", "c"):
        (tmp_path / name).write_bytes(name.encode())
    mine, theirs = fingerprint.VolumeFacts(tmp_path / CACHE_FILE), fingerprint.VolumeFacts(tmp_path / CACHE_FILE)
    mine.sha256(tmp_path / "a")
    mine.sha256(tmp_path / "c")
    theirs.sha256(tmp_path / "b")
    theirs.save()
    (tmp_path / "c").unlink()
    mine.save()
    entries = json.loads((tmp_path / CACHE_FILE).read_text())["entries"]
    assert sorted(Path(p).name for p in entries) == ["a", "b"]


def test_a_damaged_or_older_cache_file_reads_as_empty(tmp_path):
    (tmp_path / "a").write_bytes(b"a")
    for text in ("{not json", json.dumps({"version": fingerprint.FORMAT_VERSION - 1, "entries": {"x": {}}})):
        (tmp_path / CACHE_FILE).write_text(text)
        fingerprint._open.clear()
        assert facts_for(tmp_path).entries == {}
        assert facts_for(tmp_path).sha256(tmp_path / "a") == hashlib.sha256(b"a").hexdigest()


def test_a_read_only_folder_keeps_the_cache_in_memory(tmp_path, monkeypatch):
    (tmp_path / "a").write_bytes(b"a")

    def refuse(*args, **kwargs):
        raise PermissionError("read-only file system")

    monkeypatch.setattr(fingerprint, "write_atomic", refuse)
    facts = facts_for(tmp_path)
    facts.sha256(tmp_path / "a")
    facts.save()  # no error
    assert not (tmp_path / CACHE_FILE).exists() and facts_for(tmp_path).sha256(tmp_path / "a") is not None
