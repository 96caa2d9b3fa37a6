"""What a volume file holds, computed once per file version: its SHA-256 and what decoding it found.

A run id covers the content of every volume its manifest names, and validation decodes every
volume whole; both would read hundreds of files on every call. :class:`VolumeFacts` keeps them
per file in ``<manifest folder>/.oaprobe-volumes.json``, keyed by the file's absolute path and
its (size, mtime_ns, inode): a call on unchanged files only stats them, and a file edited or
replaced in place (new size, new time stamp or a new inode) is read again. The cache is written
atomically; in a folder that cannot be written it lives in memory for the process only. A
rewrite that keeps the size, the inode and the time stamp (within the file system's clock tick,
or restored on purpose) is not seen.

Example:
    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> _ = (folder / "a.nii.gz").write_bytes(b"knee")
    >>> facts = facts_for(folder)
    >>> facts.sha256(folder / "a.nii.gz")[:8], facts.sha256(folder / "missing.nii.gz")
    ('69ef5a88', None)
    >>> facts.save(); (folder / CACHE_FILE).is_file()
    True
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

from oaprobe.io import file_sha256, write_atomic

CACHE_FILE = ".oaprobe-volumes.json"
#: bump when what a decode check records changes: older cache files are then read as empty
FORMAT_VERSION = 1

_open: dict[str, VolumeFacts] = {}


def file_stamp(path: str | Path) -> list[int] | None:
    """(size, mtime_ns, inode) of a regular file (symlinks followed), or None for anything else."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return [st.st_size, st.st_mtime_ns, st.st_ino] if stat.S_ISREG(st.st_mode) else None


def _read_entries(file: Path) -> dict[str, dict[str, Any]]:
    """The cache file's entries; a missing, damaged or older-format file reads as empty."""
    try:
        data = json.loads(file.read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict) or data.get("version") != FORMAT_VERSION:
        return {}
    entries = data.get("entries")
    return entries if isinstance(entries, dict) else {}


class VolumeFacts:
    """Cached facts of the volume files under one folder's cache file (see the module doc)."""

    def __init__(self, file: Path):
        self.file = file
        self.stamp = file_stamp(str(file))
        self.entries = _read_entries(file)
        self.dirty = False

    def _entry(self, path: str) -> dict[str, Any] | None:
        """The record of the file's current version (a fresh one when new or changed); None if not a file."""
        stamp = file_stamp(path)
        if stamp is None:
            return None
        entry = self.entries.get(path)
        if entry is None or entry.get("stamp") != stamp:
            entry = self.entries[path] = {"stamp": stamp}
            self.dirty = True
        return entry

    def sha256(self, path: str | Path) -> str | None:
        """SHA-256 of the file's bytes; None when ``path`` is not a regular file."""
        path = os.path.abspath(path)
        entry = self._entry(path)
        if entry is None:
            return None
        if "sha256" not in entry:
            try:
                entry["sha256"] = file_sha256(path)
            except OSError:
                return None  # unreadable: validation names it; a run id cannot cover it
            self.dirty = True
        return entry["sha256"]

    def cached(self, path: str | Path, name: str, compute: Callable[[str], dict[str, Any]]) -> dict[str, Any]:
        """``compute(path)`` (a JSON-able summary of decoding the file), cached under ``name``."""
        path = os.path.abspath(path)
        entry = self._entry(path)
        if entry is None:
            return compute(path)  # vanished meanwhile: whatever compute says about it, not cached
        checks = entry.setdefault("checks", {})
        if name not in checks:
            checks[name] = compute(path)
            self.dirty = True
        return checks[name]

    def save(self) -> None:
        """Write new entries (merged with what other processes wrote meanwhile; entries of files that
        changed or vanished are dropped). A folder that cannot be written keeps them in memory."""
        if not self.dirty:
            return
        merged = _read_entries(self.file) if file_stamp(str(self.file)) != self.stamp else {}
        merged.update(self.entries)
        self.entries = {p: e for p, e in merged.items() if file_stamp(p) == e.get("stamp")}
        text = json.dumps({"version": FORMAT_VERSION, "entries": self.entries}, sort_keys=True, separators=(",", ":"))
        try:
            write_atomic(self.file, text.encode())
        except OSError:
            return  # read-only data folder: recomputed by the next process
        self.stamp, self.dirty = file_stamp(str(self.file)), False


def facts_for(folder: str | Path) -> VolumeFacts:
    """The cache of ``folder`` (a manifest's folder), shared within the process; read again from disk
    when another process has rewritten it and this process has nothing unsaved."""
    file = Path(os.path.abspath(folder)) / CACHE_FILE
    facts = _open.get(str(file))
    if facts is None or (not facts.dirty and facts.stamp != file_stamp(str(file))):
        facts = _open[str(file)] = VolumeFacts(file)
    return facts
