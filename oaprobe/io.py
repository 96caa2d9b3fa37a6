"""Files written whole or not at all, with the user's permissions, and content hashes.

Every file the package writes (run folders, manifests, cohort volumes, caches, chapters) goes
through :func:`write_atomic`: a temporary file in the same folder, then ``os.replace``, so a
reader or a killed process sees the old file or the complete new one, never half of one. The
temporary file is created 0600 by :mod:`tempfile`; it is given the mode the user's umask allows
(as ``open()`` would) before it takes the final name.

Example:
    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> write_atomic(folder / "a.txt", b"knee")
    >>> (folder / "a.txt").read_bytes(), file_sha256(folder / "a.txt")[:8]
    (b'knee', '69ef5a88')
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import IO

_UMASK_LOCK = threading.Lock()


def default_file_mode() -> int:
    """``0o666`` less the process umask: the mode ``open()`` gives a new file."""
    with _UMASK_LOCK:  # os.umask can only be read by setting it
        mask = os.umask(0o022)
        os.umask(mask)
    return 0o666 & ~mask


def write_atomic(path: Path | str, data: bytes | Callable[[IO[bytes]], None], fsync: bool = False) -> None:
    """Write ``data`` (bytes, or a function writing to a binary handle) to ``path`` atomically.

    The parent folder is created. ``fsync`` flushes to disk before the rename (run folders,
    whose ``DONE`` marker must never precede the files it vouches for).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            if callable(data):
                data(handle)
            else:
                handle.write(data)
            handle.flush()
            if fsync:
                os.fsync(handle.fileno())
        os.chmod(tmp, default_file_mode())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def file_sha256(path: Path | str) -> str:
    """SHA-256 of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def source_digest() -> str:
    """SHA-256 of the package's Python source (paths and bytes): a code change re-executes the book's
    chapters, and a verdict computed by other code is not compared with this code's."""
    root = Path(__file__).resolve().parent.parent
    h = hashlib.sha256()
    for path in sorted((root / "oaprobe").rglob("*.py")):
        h.update(path.relative_to(root).as_posix().encode())
        h.update(path.read_bytes())
    return h.hexdigest()
