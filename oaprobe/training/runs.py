"""The run-folder contract: where a run lives, atomic writes, reading a finished run, locking.

A run folder (``runs/<run_id>/``, see ``book/architecture.md``) is the only thing that passes
from training to analysis. Every file in it is written under a temporary name in the same
folder and renamed into place, and ``DONE`` is written last: a folder without ``DONE`` is not a
result, :func:`load_run` refuses it. :func:`run_lock` serialises training of one run across
processes, so two workers of a sweep never train the same config at once.

Example:
    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> write_atomic_json(folder / "config.json", {"a": 1})
    >>> (folder / "config.json").read_text()
    '{\\n  "a": 1\\n}\\n'
    >>> is_done(folder)
    False
    >>> load_run(folder)
    Traceback (most recent call last):
    ...
    oaprobe.training.runs.RunNotDoneError: run folder ... has no DONE marker: ...
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import json
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np
import pandas as pd

from oaprobe import io as oaio
from oaprobe.config import RunConfig
from oaprobe.data.manifest import data_hash
from oaprobe.errors import ConfigError, OaprobeError
from oaprobe.facts import KL_GRADES
from oaprobe.io import write_atomic

DONE = "DONE"
CONFIG = "config.json"
HISTORY = "history.csv"
PREDICTIONS = "predictions.csv"
EMBEDDINGS = "embeddings.npz"
CHECKPOINT = "checkpoint.pt"

HISTORY_COLUMNS = (
    "epoch",
    "train_loss",
    "train_loss_kl",
    "train_loss_oa",
    "val_loss",
    "val_oa_auc",
    "val_kl_qwk",
    "lr",
    "seconds",
    "kept",
)
PREDICTION_COLUMNS = (
    "case_id",
    "subject_id",
    "split",
    "kl",
    "oa",
    "kl_clean",
    "p_oa",
    *(f"p_kl{k}" for k in KL_GRADES),
    "pred_oa",
    "pred_kl",
)


class RunNotDoneError(OaprobeError, RuntimeError):
    """A run folder was read before training finished (no ``DONE`` marker)."""


class RunLockedError(OaprobeError, RuntimeError):
    """Another process holds the lock of this run (raised only for non-blocking locks)."""


class RunFolder(type(Path())):
    """A run folder as :func:`oaprobe.training.engine.fit` returns it: the path, and ``reused``,
    True when the run was finished before the call (nothing was trained)."""

    reused: bool = False

    @classmethod
    def of(cls, folder: Path | str, reused: bool) -> RunFolder:
        run = cls(folder)
        run.reused = reused
        return run


def manifest_sha256(path: str | Path) -> str:
    """Content hash of a run's manifest; a missing file or a folder is a ConfigError naming it."""
    p = Path(path)
    if p.is_dir():
        raise ConfigError(f"manifest {str(p)!r} is a directory; expected a manifest CSV file")
    if not p.is_file():
        raise ConfigError(f"manifest {str(p)!r} does not exist (build a cohort with `oaprobe cohort`)")
    try:
        return oaio.file_sha256(p)
    except OSError as err:
        raise ConfigError(f"manifest {str(p)!r} cannot be read ({err.strerror})") from None


def data_sha256(manifest: str | Path) -> str:
    """Content hash of a run's data: the manifest's bytes and the bytes of every volume it names
    (:func:`oaprobe.data.manifest.data_hash`; on unchanged files it only stats the volumes).

    A missing manifest or a folder is a ConfigError naming it; a cell naming no file counts as
    such (validation refuses it).
    """
    manifest_sha256(manifest)  # a missing or unreadable manifest: the ConfigError naming it
    return data_hash(manifest)


def run_id(cfg: RunConfig) -> str:
    """The run's folder name: a hash of every field but the manifest path, plus the content hash of
    its data (:func:`data_sha256`), so other volumes, or a volume changed in place, make another run."""
    payload = {k: v for k, v in cfg.to_dict().items() if k != "manifest"}
    payload["data_sha256"] = data_sha256(cfg.manifest)
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def run_dir(cfg: RunConfig, root: Path | str) -> Path:
    """The folder of ``cfg``'s run under ``root``: ``root / run_id(cfg)``."""
    return Path(root) / run_id(cfg)


def is_done(path: Path | str) -> bool:
    """True when the run folder holds its ``DONE`` marker (i.e. it is a finished result)."""
    return (Path(path) / DONE).is_file()


# ---------------------------------------------------------------------------- atomic writes
def write_atomic_bytes(path: Path | str, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically and fsynced (see :func:`oaprobe.io.write_atomic`)."""
    write_atomic(path, data, fsync=True)


def write_atomic_text(path: Path | str, text: str) -> None:
    """Write UTF-8 ``text`` atomically (see :func:`write_atomic_bytes`)."""
    write_atomic_bytes(path, text.encode("utf-8"))


def write_atomic_csv(path: Path | str, table: pd.DataFrame) -> None:
    """Write ``table`` as CSV without the index, atomically; NaN is written as an empty field."""
    write_atomic_text(path, table.to_csv(index=False, lineterminator="\n"))


def write_atomic_npz(path: Path | str, **arrays: Any) -> None:
    """Write ``arrays`` as an uncompressed ``.npz`` atomically (string arrays stay unicode)."""
    buffer = io.BytesIO()
    np.savez(buffer, **{k: np.asarray(v) for k, v in arrays.items()})
    write_atomic_bytes(path, buffer.getvalue())


def write_atomic_json(path: Path | str, obj: Any) -> None:
    """Write ``obj`` as indented, key-sorted JSON atomically (NaN is refused: not valid JSON)."""
    write_atomic_text(path, json.dumps(obj, indent=2, sort_keys=True, allow_nan=False) + "\n")


def write_atomic_torch(path: Path | str, obj: Any) -> None:
    """``torch.save`` ``obj`` atomically (used for ``checkpoint.pt``)."""
    import torch  # deferred: this module stays torch-free for the report layer and the CLI

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    write_atomic_bytes(path, buffer.getvalue())


# ---------------------------------------------------------------------------- locking
@contextlib.contextmanager
def run_lock(root: Path | str, run_id: str, blocking: bool = True) -> Iterator[Path]:
    """Hold an exclusive ``fcntl.flock`` on ``root/<run_id>.lock`` for the ``with`` block.

    The kernel drops the lock when the holder dies (even by SIGKILL), so a stale lock file
    never blocks anyone. The holder deletes the file on leaving (a waiter that then holds the
    deleted file's lock notices and locks the new file instead), and ``root`` too when this call
    created it and it is empty again: a run that fails leaves no lock or empty folder behind.
    With ``blocking=False`` a held lock raises :class:`RunLockedError`.
    """
    root = Path(root)
    created = not root.is_dir()
    lock_path = root / f"{run_id}.lock"
    handle = _acquire(lock_path, blocking, run_id)
    try:
        yield lock_path
    finally:
        lock_path.unlink(missing_ok=True)  # while still held, so no one locks this file afterwards
        handle.close()  # releases the lock
        if created:
            with contextlib.suppress(OSError):  # not empty: keep it
                root.rmdir()


def _acquire(lock_path: Path, blocking: bool, run_id: str) -> IO[str]:
    """An open handle holding the lock of ``lock_path``, the file that is at that path now."""
    flags = fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB)
    while True:
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        try:
            handle = open(lock_path, "a+")
        except FileNotFoundError:  # the folder was removed meanwhile by a holder that created it
            continue
        try:
            fcntl.flock(handle.fileno(), flags)
        except BlockingIOError as err:
            handle.close()
            raise RunLockedError(f"run {run_id} is being trained by another process ({lock_path})") from err
        except BaseException:
            handle.close()
            raise
        try:
            if os.stat(lock_path).st_ino == os.fstat(handle.fileno()).st_ino:
                return handle
        except FileNotFoundError:
            pass
        handle.close()  # its holder deleted it while we waited: lock the file there now


# ---------------------------------------------------------------------------- reading
@dataclass
class Run:
    """A finished run folder, read back.

    Attributes:
        path: the run folder.
        config: the RunConfig it was trained with.
        meta: the whole ``config.json`` (run_id, oaprobe_version, manifest_sha256, ...).
        history: ``history.csv``, one row per epoch.
        predictions: ``predictions.csv``, one row per val/test knee.
        embeddings: ``embeddings.npz`` as a dict (``case_id``, ``split``, ``embedding``).
    """

    path: Path
    config: RunConfig
    meta: dict[str, Any]
    history: pd.DataFrame
    predictions: pd.DataFrame
    embeddings: dict[str, np.ndarray] = field(repr=False)

    @property
    def run_id(self) -> str:
        """The folder name / config hash."""
        return str(self.meta.get("run_id", self.path.name))


def _read_config(path: Path) -> dict[str, Any]:
    config_path = path / CONFIG
    if not config_path.is_file():
        raise FileNotFoundError(f"run folder {str(path)!r} has no {CONFIG}")
    meta = json.loads(config_path.read_text())
    if not isinstance(meta, dict) or "config" not in meta:
        raise ValueError(f"{str(config_path)!r}: expected a JSON object with a 'config' key")
    return meta


def load_config(path: Path | str) -> RunConfig:
    """The RunConfig a run folder was trained with (from its ``config.json``)."""
    return RunConfig.from_dict(_read_config(Path(path))["config"])


def load_run(path: Path | str) -> Run:
    """Read a finished run folder; a folder without ``DONE`` raises :class:`RunNotDoneError`."""
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"run folder {str(path)!r} does not exist")
    if not is_done(path):
        raise RunNotDoneError(
            f"run folder {str(path)!r} has no DONE marker: training is unfinished or crashed; "
            "run `oaprobe train` with its config to resume it (analyses never read it)"
        )
    meta = _read_config(path)
    config = RunConfig.from_dict(meta["config"])
    id_types = {"case_id": str, "subject_id": str}
    history = pd.read_csv(path / HISTORY)
    predictions = pd.read_csv(path / PREDICTIONS, dtype=id_types)
    for col in ("kl_clean", "pred_kl"):
        if col in predictions:
            predictions[col] = predictions[col].astype("Int64")
    with np.load(path / EMBEDDINGS, allow_pickle=False) as data:
        embeddings = {k: data[k] for k in data.files}
    return Run(path, config, meta, history, predictions, embeddings)


def field_matches(value: Any, wanted: Any) -> bool:
    """Whether a config value passes a filter: equal, or one of a list/set of accepted values."""
    if isinstance(wanted, (list, tuple, set, frozenset)) and not isinstance(value, (list, tuple)):
        return any(field_matches(value, w) for w in wanted)
    if isinstance(value, (list, tuple)) and isinstance(wanted, (list, tuple)):
        return list(value) == list(wanted)
    if isinstance(value, float) and isinstance(wanted, (int, float)) and not isinstance(wanted, bool):
        return math.isclose(value, float(wanted), rel_tol=1e-12, abs_tol=0.0)
    return value == wanted


def find_runs(root: Path | str, **field_filters: Any) -> list[Run]:
    """All finished runs under ``root`` whose RunConfig fields match ``field_filters``.

    A filter value may be a single value or a set/list of accepted values, e.g.
    ``find_runs("runs", backbone="resnet3d", mode={"dual", "single_oa"})``. Unfinished folders
    are skipped; an unknown field name is a ConfigError listing the valid ones. Runs are sorted
    by folder name, so the order is reproducible.
    """
    valid = list(RunConfig.__dataclass_fields__)
    unknown = sorted(set(field_filters) - set(valid))
    if unknown:
        raise ConfigError(f"unknown RunConfig field {unknown[0]!r} in find_runs; valid fields: {', '.join(valid)}")
    root = Path(root)
    if not root.is_dir():
        return []
    runs = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        if not is_done(folder):
            continue
        config = _read_config(folder)["config"]
        if all(field_matches(config.get(k), v) for k, v in field_filters.items()):
            runs.append(load_run(folder))
    return runs
