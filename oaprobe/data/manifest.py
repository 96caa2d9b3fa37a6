"""The manifest table: its schema, validation that reports every problem, reading and hashing.

A manifest is a CSV with one row per knee (schema: ``book/architecture.md``). Paths in it are
relative to the manifest's folder. :func:`validate_manifest` returns *all* problems found, each
naming the file, the row (line number and ``case_id``) and what was expected, so a user fixes a
broken manifest in one pass; :func:`read_manifest` raises :class:`ManifestError` carrying that
list, or returns the table with absolute ``image_path`` / ``mask_path`` / ``lesion_path``.

Example:
    >>> import tempfile, pathlib
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (folder / "m.csv").write_text(
    ...     "case_id,subject_id,side,split,image,mask,kl,oa\\n"
    ...     "k1,s1,R,train,k1.nii.gz,k1_mask.nii.gz,7,1\\n")
    >>> problems = validate_manifest(folder / "m.csv", check_volumes=False)
    >>> len(problems)
    3
    >>> print(problems[0].split(": ", 1)[1])
    line 2 (case_id 'k1'): kl = '7'; expected an integer 0-4
"""

from __future__ import annotations

import hashlib
import math
import os
import tempfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

REQUIRED_COLUMNS: tuple[str, ...] = ("case_id", "subject_id", "side", "split", "image", "mask", "kl", "oa")
OPTIONAL_COLUMNS: tuple[str, ...] = ("kl_clean", "lesion", "severity", "site", "visit")
SPLITS: tuple[str, ...] = ("train", "val", "test")
SIDES: tuple[str, ...] = ("L", "R")
CARTILAGE_LABELS: tuple[int, ...] = (2, 4)
#: manifest column -> absolute-path column added by :func:`read_manifest`
PATH_COLUMNS: dict[str, str] = {"image": "image_path", "mask": "mask_path", "lesion": "lesion_path"}


class ManifestError(ValueError):
    """A manifest is invalid; ``problems`` lists every problem found (one message each)."""

    def __init__(self, path: str | Path, problems: list[str]):
        self.path = Path(path)
        self.problems = list(problems)
        shown = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"{len(self.problems)} problem(s) in manifest {str(self.path)!r}:\n{shown}")

    def __reduce__(self):  # picklable, so it crosses process boundaries (sweep workers) intact
        return (type(self), (self.path, self.problems))


def _parse_int(text: str) -> int | None:
    """``"3"`` or ``"3.0"`` -> 3; anything else (empty, ``"2.5"``, ``"x"``) -> None."""
    try:
        value = float(text)
    except ValueError:
        return None
    if not math.isfinite(value) or not value.is_integer():
        return None
    return int(value)


def _volume_shape(img: nib.spatialimages.SpatialImage) -> tuple[int, ...]:
    """Spatial shape from the header; trailing singleton axes (``D,H,W,1``) are dropped."""
    shape = tuple(int(s) for s in img.shape)
    while len(shape) > 3 and shape[-1] == 1:
        shape = shape[:-1]
    return shape


def _surely_finite(img: nib.spatialimages.SpatialImage) -> bool:
    """True when the header alone proves every voxel finite (integer storage, finite scaling)."""
    if not np.issubdtype(img.get_data_dtype(), np.integer):
        return False
    slope, inter = getattr(img.dataobj, "slope", 1.0), getattr(img.dataobj, "inter", 0.0)
    return bool(np.isfinite(slope) and np.isfinite(inter))


class _Check:
    """Collects problems for one manifest; ``where(i)`` names row ``i`` by line and case_id."""

    def __init__(self, path: Path, table: pd.DataFrame | None = None):
        self.path = path
        self.table = table
        self._found: list[tuple[int, str]] = []

    @property
    def problems(self) -> list[str]:
        """File-level problems first, then row problems in line order (stable within a line)."""
        return [text for _, text in sorted(self._found, key=lambda item: item[0])]

    def file_problem(self, text: str) -> None:
        self._found.append((-1, f"{self.path}: {text}"))

    def where(self, i: int) -> str:
        case = self.table.at[i, "case_id"] if self.table is not None and "case_id" in self.table else ""
        return f"{self.path}: line {i + 2} (case_id {case!r})"

    def row_problem(self, i: int, text: str) -> None:
        self._found.append((i, f"{self.where(i)}: {text}"))


def _load_table(path: Path, check: _Check) -> pd.DataFrame | None:
    if not path.is_file():
        check.file_problem("manifest file does not exist")
        return None
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False, na_filter=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, OSError) as err:
        check.file_problem(f"cannot be read as CSV ({err})")
        return None
    table.columns = [str(c).strip() for c in table.columns]
    for column in table.columns:
        table[column] = table[column].astype(str).str.strip()
    return table.reset_index(drop=True)


def _check_labels(table: pd.DataFrame, check: _Check) -> None:
    """Per-row checks on ids, side, split and the KL / OA / kl_clean / severity values."""
    columns = set(table.columns)
    for i in range(len(table)):
        for column in ("case_id", "subject_id"):
            if column in columns and not table.at[i, column]:
                check.row_problem(i, f"{column} is empty; expected a non-empty id")
        if "side" in columns and table.at[i, "side"] not in SIDES:
            check.row_problem(i, f"side = {table.at[i, 'side']!r}; expected one of {list(SIDES)}")
        if "split" in columns and table.at[i, "split"] not in SPLITS:
            check.row_problem(i, f"split = {table.at[i, 'split']!r}; expected one of {list(SPLITS)}")
        kl = None
        if "kl" in columns:
            kl = _parse_int(table.at[i, "kl"])
            if kl is None or not 0 <= kl <= 4:
                check.row_problem(i, f"kl = {table.at[i, 'kl']!r}; expected an integer 0-4")
                kl = None
        if "oa" in columns:
            oa = _parse_int(table.at[i, "oa"])
            if oa not in (0, 1):
                check.row_problem(i, f"oa = {table.at[i, 'oa']!r}; expected 0 or 1")
            elif kl is not None and oa != int(kl >= 2):
                check.row_problem(i, f"oa = {oa} but kl = {kl}; expected oa = {int(kl >= 2)} (oa = kl >= 2)")
        if "kl_clean" in columns and table.at[i, "kl_clean"]:
            clean = _parse_int(table.at[i, "kl_clean"])
            if clean is None or not 0 <= clean <= 4:
                check.row_problem(
                    i, f"kl_clean = {table.at[i, 'kl_clean']!r}; expected an integer 0-4 (or empty)"
                )
        if "severity" in columns and table.at[i, "severity"]:
            try:
                ok = math.isfinite(float(table.at[i, "severity"]))
            except ValueError:
                ok = False
            if not ok:
                check.row_problem(i, f"severity = {table.at[i, 'severity']!r}; expected a finite number (or empty)")


def _check_groups(table: pd.DataFrame, check: _Check) -> None:
    """Duplicate case ids and subjects whose knees sit in more than one split."""
    if "case_id" in table.columns:
        first_line: dict[str, int] = {}
        for i, case in enumerate(table["case_id"]):
            if not case:
                continue
            if case in first_line:
                check.row_problem(i, f"duplicate case_id; first used on line {first_line[case]}")
            else:
                first_line[case] = i + 2
    if {"subject_id", "split"} <= set(table.columns):
        valid = table[table["split"].isin(SPLITS) & (table["subject_id"] != "")]
        for subject, rows in valid.groupby("subject_id", sort=True):
            splits = sorted(set(rows["split"]))
            if len(splits) > 1:
                cases = table["case_id"] if "case_id" in table.columns else pd.Series("", index=table.index)
                detail = ", ".join(f"line {i + 2} case_id {cases[i]!r} in {table.at[i, 'split']}" for i in rows.index)
                check.file_problem(
                    f"subject_id {subject!r} appears in splits {splits} ({detail}); "
                    "expected all knees of a subject in one split"
                )


def _check_files(table: pd.DataFrame, folder: Path, check: _Check, check_volumes: bool) -> None:
    """Existence, readability, shape agreement, finite voxels and a non-empty cartilage mask."""
    file_columns = [c for c in ("image", "mask", "lesion") if c in table.columns]
    for i in range(len(table)):
        headers: dict[str, nib.spatialimages.SpatialImage] = {}
        for column in file_columns:
            text = table.at[i, column]
            if not text:
                if column != "lesion":
                    check.row_problem(i, f"{column} is empty; expected a NIfTI path relative to {folder}")
                continue
            file = folder / text
            if not file.is_file():
                check.row_problem(i, f"{column} file {text!r} not found (looked for {file})")
                continue
            if not check_volumes:
                continue
            try:
                headers[column] = nib.load(file)
            except Exception as err:  # nibabel raises many types for a broken file
                check.row_problem(i, f"{column} file {text!r} is unreadable as NIfTI ({err})")
        if not check_volumes:
            continue
        shapes = {c: _volume_shape(img) for c, img in headers.items()}
        for column, shape in shapes.items():
            if len(shape) != 3:
                check.row_problem(i, f"{column} {table.at[i, column]!r} has shape {shape}; expected a 3-D volume")
        if "image" in shapes:
            for column in ("mask", "lesion"):
                if column in shapes and shapes[column] != shapes["image"]:
                    check.row_problem(
                        i,
                        f"{column} shape {shapes[column]} differs from image shape {shapes['image']}; "
                        "expected the same shape",
                    )
        _check_voxels(i, table, headers, check)


def _check_voxels(i: int, table: pd.DataFrame, headers: dict, check: _Check) -> None:
    """Load voxel data only where the header cannot answer: finite image, cartilage in mask."""
    if "image" in headers and not _surely_finite(headers["image"]):
        try:
            data = np.asanyarray(headers["image"].dataobj)
            bad = int(data.size - np.count_nonzero(np.isfinite(data)))
            if bad:
                check.row_problem(
                    i, f"image {table.at[i, 'image']!r} has {bad} non-finite voxel(s); expected finite values"
                )
        except Exception as err:
            check.row_problem(i, f"image file {table.at[i, 'image']!r} is unreadable ({err})")
    if "mask" in headers:
        try:
            mask = np.asanyarray(headers["mask"].dataobj)
            if not np.isin(mask, CARTILAGE_LABELS).any():
                check.row_problem(
                    i,
                    f"mask {table.at[i, 'mask']!r} has no cartilage voxel; expected labels "
                    f"{' or '.join(map(str, CARTILAGE_LABELS))} (femoral / tibial cartilage)",
                )
        except Exception as err:
            check.row_problem(i, f"mask file {table.at[i, 'mask']!r} is unreadable ({err})")


def _validate(path: str | Path, check_volumes: bool) -> tuple[list[str], pd.DataFrame | None]:
    path = Path(path)
    check = _Check(path)
    table = _load_table(path, check)
    if table is None:
        return check.problems, None
    check.table = table
    missing = [c for c in REQUIRED_COLUMNS if c not in table.columns]
    for column in missing:
        check.file_problem(f"missing column {column!r}; required columns: {', '.join(REQUIRED_COLUMNS)}")
    if len(table) == 0:
        check.file_problem("has no rows; expected one row per knee")
    _check_labels(table, check)
    _check_groups(table, check)
    _check_files(table, path.resolve().parent, check, check_volumes)
    return check.problems, table


def validate_manifest(path: str | Path, check_volumes: bool = True) -> list[str]:
    """Every problem of a manifest, or an empty list when it is valid.

    Args:
        path: the manifest CSV.
        check_volumes: also open each NIfTI (header shapes; voxel data only for the non-finite
            check of float images and the cartilage check of masks). When False only the
            table and the existence of the files are checked.

    Returns:
        One message per problem, each naming the manifest file, the row (line number and
        ``case_id``) where there is one, and what was expected.
    """
    return _validate(path, check_volumes)[0]


def read_manifest(path: str | Path, check_volumes: bool = True) -> pd.DataFrame:
    """Validate and read a manifest; raise :class:`ManifestError` with all problems if invalid.

    Returns:
        The table with ``kl`` and ``oa`` as int64, ``kl_clean`` as nullable Int64 and
        ``severity`` as float (when present), plus absolute ``image_path``, ``mask_path`` and
        (when the ``lesion`` column exists) ``lesion_path`` resolved against the manifest's
        folder (``None`` for an empty lesion cell).
    """
    problems, table = _validate(path, check_volumes)
    if problems:
        raise ManifestError(path, problems)
    assert table is not None
    table = table.copy()
    folder = Path(path).resolve().parent
    table["kl"] = table["kl"].map(_parse_int).astype("int64")
    table["oa"] = table["oa"].map(_parse_int).astype("int64")
    if "kl_clean" in table.columns:
        table["kl_clean"] = pd.array([_parse_int(v) if v else None for v in table["kl_clean"]], dtype="Int64")
    if "severity" in table.columns:
        table["severity"] = pd.to_numeric(table["severity"].replace("", np.nan), errors="raise").astype(float)
    for column, absolute in PATH_COLUMNS.items():
        if column in table.columns:
            resolved = [str((folder / v).resolve()) if v else None for v in table[column]]
            table[absolute] = pd.Series(resolved, index=table.index, dtype=object)
    return table


def write_manifest(table: pd.DataFrame, path: str | Path) -> Path:
    """Write a manifest atomically, required columns first, then optional, then any others.

    Absolute-path columns added by :func:`read_manifest` are not written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    derived = set(PATH_COLUMNS.values())
    known = [c for c in (*REQUIRED_COLUMNS, *OPTIONAL_COLUMNS) if c in table.columns]
    extra = [c for c in table.columns if c not in known and c not in derived]
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", newline="") as handle:
            table[known + extra].to_csv(handle, index=False)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def manifest_hash(path: str | Path) -> str:
    """SHA-256 of the manifest file's bytes (the same value ``RunConfig.run_id`` uses)."""
    path = Path(path)
    if not path.is_file():
        raise ManifestError(path, [f"{path}: manifest file does not exist"])
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
