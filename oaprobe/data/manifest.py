"""The manifest table: its schema, validation that reports every problem, reading and hashing.

A manifest is a CSV with one row per knee (schema: ``book/architecture.md``). Paths in it are
relative to the manifest's folder. :func:`validate_manifest` returns *all* problems found, each
naming the file, the row (its physical line number in the file, and ``case_id``) and what was
expected, so a user fixes a broken manifest in one pass; :func:`read_manifest` raises
:class:`ManifestError` carrying that list, or returns the table with absolute ``image_path`` /
``mask_path`` / ``lesion_path``.

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

import csv
import hashlib
import io
import json
import math
import os
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pandas as pd

from oaprobe.data.fingerprint import VolumeFacts, facts_for, file_stamp
from oaprobe.errors import OaprobeError
from oaprobe.facts import CARTILAGE_LABELS, MASK_LABELS, SIDES, SPLITS
from oaprobe.io import default_file_mode, file_sha256

REQUIRED_COLUMNS: tuple[str, ...] = ("case_id", "subject_id", "side", "split", "image", "mask", "kl", "oa")
OPTIONAL_COLUMNS: tuple[str, ...] = ("kl_clean", "lesion", "evidence", "severity", "site", "visit")
#: manifest column -> absolute-path column added by :func:`read_manifest`
PATH_COLUMNS: dict[str, str] = {"image": "image_path", "mask": "mask_path", "lesion": "lesion_path",
                                "evidence": "evidence_path"}
#: a mask's / lesion map's affine agrees with its image's within these (mm, and relative)
AFFINE_ATOL_MM: float = 1e-3
AFFINE_RTOL: float = 1e-4
#: direction cosines (unitless) of a mask / lesion map agree with its image's within this
ORIENTATION_ATOL: float = 1e-4
#: how many distinct bad mask values a message lists
SHOWN_VALUES: int = 5
_SCHEMA = ", ".join(f"{label} {name}" for label, name in MASK_LABELS.items())


class ManifestError(OaprobeError, ValueError):
    """A manifest is invalid; ``problems`` lists every problem found (one message each)."""

    def __init__(self, path: str | Path, problems: list[str]):
        self.path = Path(path)
        self.problems = list(problems)
        if len(self.problems) == 1:  # one line (each problem names the file)
            super().__init__(self.problems[0])
            return
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


# --------------------------------------------------------------------------- reading the table


class _Check:
    """Collects problems for one manifest; ``where(i)`` names row ``i`` by its line and case_id.

    ``path`` is the name messages use (the final path when a temporary file is validated).
    """

    def __init__(self, path: Path):
        self.path = path
        self.table: pd.DataFrame | None = None
        self.lines: list[int] = []  # physical line (1-based) of each table row
        self._found: list[tuple[int, str]] = []

    @property
    def problems(self) -> list[str]:
        """File-level problems first, then row problems in line order (stable within a line)."""
        return [text for _, text in sorted(self._found, key=lambda item: item[0])]

    def file_problem(self, text: str) -> None:
        self._found.append((0, f"{self.path}: {text}"))

    def line_problem(self, line: int, text: str) -> None:
        """A problem of a line that is not a table row (it could not be read as one)."""
        self._found.append((line, f"{self.path}: line {line}: {text}"))

    def where(self, i: int) -> str:
        case = self.table.at[i, "case_id"] if self.table is not None and "case_id" in self.table else ""
        return f"{self.path}: line {self.lines[i]} (case_id {case!r})"

    def row_problem(self, i: int, text: str) -> None:
        self._found.append((self.lines[i], f"{self.where(i)}: {text}"))


def _file_in_the_way(path: Path) -> Path | None:
    """The file among ``path``'s folders that keeps it from existing (``scans`` of ``scans/k1.nii.gz``)."""
    nearest = next((p for p in path.parents if p.exists()), None)
    return nearest if nearest is not None and not nearest.is_dir() else None


def _not_a_file(path: Path) -> str | None:
    """Why ``path`` cannot be a manifest file, or None when it is a regular file."""
    if path.is_dir():
        return "is a directory; expected a manifest CSV file"
    if not path.exists():
        blocker = _file_in_the_way(path)
        return f"manifest file does not exist ({blocker} is a file, not a folder)" if blocker else "manifest file does not exist"
    if not path.is_file():
        return "is not a regular file; expected a manifest CSV file"
    return None


def _os_error_text(err: OSError) -> str:
    if isinstance(err, PermissionError):
        return "cannot be read: permission denied; expected a readable CSV file"
    return f"cannot be read ({err.strerror or err}); expected a readable CSV file"


def _read_text(path: Path, check: _Check) -> str | None:
    """The manifest's text, or None after naming why it is not a readable UTF-8 text file."""
    reason = _not_a_file(path)
    if reason is not None:
        check.file_problem(reason)
        return None
    try:
        with path.open("rb") as handle:
            data = handle.read(1 << 16)  # a binary file (an image given by mistake) is not read whole
            data += b"" if b"\0" in data else handle.read()
    except OSError as err:
        check.file_problem(_os_error_text(err))
        return None
    if b"\0" in data:
        line = data[: data.index(b"\0")].count(b"\n") + 1
        check.file_problem(f"is a binary file (NUL byte on line {line}); expected a UTF-8 text CSV file")
        return None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        check.file_problem(
            f"is binary or not UTF-8 text (byte 0x{data[err.start]:02x} on line {line}); expected a UTF-8 CSV file"
        )
        return None


def _records(text: str, check: _Check) -> list[tuple[int, list[str]]] | None:
    """``(first physical line, stripped cells)`` of each record; blank lines are skipped.

    Line numbers come from the csv reader, so quoted fields spanning lines and blank lines
    keep them true. None (after naming the line) when the CSV is malformed.
    """
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    records: list[tuple[int, list[str]]] = []
    line = 1
    try:
        for record in reader:
            cells = [cell.strip() for cell in record]
            if len(cells) > 1 or any(cells):
                records.append((line, cells))
            line = reader.line_num + 1
    except csv.Error as err:
        check.file_problem(f"is not valid CSV at line {line} ({err}); expected comma-separated values, quotes closed")
        return None
    return records


def _header_columns(header: list[str], rows: list[tuple[int, list[str]]], check: _Check) -> list[int]:
    """Index of each named header column (first of a name); duplicated and unnamed ones reported."""
    seen: dict[str, list[int]] = {}
    for k, name in enumerate(header):
        if name:
            seen.setdefault(name, []).append(k)
            continue
        used = next((line for line, cells in rows if k < len(cells) and cells[k]), None)
        if used is not None:
            check.file_problem(f"header column {k + 1} has no name but line {used} has a value in it; expected a name")
    for name, where in seen.items():
        if len(where) > 1:
            check.file_problem(
                f"column {name!r} appears {len(where)} times in the header (columns "
                f"{', '.join(str(k + 1) for k in where)}); expected each column once"
            )
    return [where[0] for where in seen.values()]


def _table_rows(rows: list[tuple[int, list[str]]], width: int, check: _Check) -> tuple[list[list[str]], list[int]]:
    """Rows padded to the header's width, with their lines; over-long and all-empty rows reported."""
    kept, lines = [], []
    for line, cells in rows:
        if any(cells[width:]):
            check.line_problem(
                line,
                f"has {len(cells)} fields but the header has {width} columns; "
                "expected at most one value per column (quote a value that holds a comma)",
            )
        elif not any(cells):
            check.line_problem(line, "has only empty cells; expected one knee's values (or no line)")
        else:
            kept.append(cells[:width] + [""] * (width - len(cells)))
            lines.append(line)
    return kept, lines


def _load_table(path: Path, check: _Check) -> pd.DataFrame | None:
    """The manifest as a table of stripped strings (``check.lines`` gets each row's line)."""
    text = _read_text(path, check)
    records = _records(text, check) if text is not None else None
    if records is None:
        return None
    if not records:
        check.file_problem(f"is empty; expected a header line ({', '.join(REQUIRED_COLUMNS)}) and one row per knee")
        return None
    (_, header), rows = records[0], records[1:]
    keep = _header_columns(header, rows, check)
    kept, check.lines = _table_rows(rows, len(header), check)
    table = pd.DataFrame([[cells[k] for k in keep] for cells in kept], columns=[header[k] for k in keep], dtype=str)
    return table.reset_index(drop=True)


# --------------------------------------------------------------------------- table checks


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
        _check_grades(i, table, check)


def _check_grades(i: int, table: pd.DataFrame, check: _Check) -> None:
    """KL 0-4, OA 0/1 and equal to KL >= 2, optional kl_clean 0-4 and finite severity."""
    columns = set(table.columns)
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
            check.row_problem(i, f"kl_clean = {table.at[i, 'kl_clean']!r}; expected an integer 0-4 (or empty)")
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
                first_line[case] = check.lines[i]
    if {"subject_id", "split"} <= set(table.columns):
        valid = table[table["split"].isin(SPLITS) & (table["subject_id"] != "")]
        cases = table["case_id"] if "case_id" in table.columns else pd.Series("", index=table.index)
        for subject, rows in valid.groupby("subject_id", sort=True):
            splits = sorted(set(rows["split"]))
            if len(splits) > 1:
                detail = ", ".join(
                    f"line {check.lines[i]} case_id {cases[i]!r} in {table.at[i, 'split']}" for i in rows.index
                )
                check.file_problem(
                    f"subject_id {subject!r} appears in splits {splits} ({detail}); "
                    "expected all knees of a subject in one split"
                )


# --------------------------------------------------------------------------- file and volume checks


def _volume_shape(img: nib.spatialimages.SpatialImage) -> tuple[int, ...]:
    """Spatial shape from the header; trailing singleton axes (``D,H,W,1``) are dropped."""
    shape = tuple(int(s) for s in img.shape)
    while len(shape) > 3 and shape[-1] == 1:
        shape = shape[:-1]
    return shape


def _existing_files(i: int, table: pd.DataFrame, folder: Path, check: _Check) -> dict[str, Path]:
    """Column -> file for each path cell of row ``i`` that names a regular file; others reported."""
    found: dict[str, Path] = {}
    for column in (c for c in PATH_COLUMNS if c in table.columns):
        text = table.at[i, column]
        if not text:
            if column not in ("lesion", "evidence"):
                check.row_problem(i, f"{column} is empty; expected a NIfTI path relative to {folder}")
            continue
        file = folder / text
        if file.is_dir():
            check.row_problem(i, f"{column} {text!r} is a directory ({file}); expected a NIfTI file")
        elif not file.is_file():
            blocker = _file_in_the_way(file)
            why = f"{blocker} is a file, not a folder" if blocker else f"looked for {file}"
            check.row_problem(i, f"{column} file {text!r} not found ({why})")
        else:
            found[column] = file
    return found


@dataclass(frozen=True)
class _Grid:
    """A volume's voxel grid from its header: spatial shape and voxel-to-world affine."""

    shape: tuple[int, ...]
    affine: np.ndarray


def _header_facts(path: str) -> dict[str, Any]:
    """The header's spatial shape and affine (JSON, cached per file version), or why it does not open."""
    try:
        img = nib.load(path)
    except Exception as err:  # nibabel raises many types for a broken file
        return {"error": _one_line(err)}
    return {"error": None, "shape": list(_volume_shape(img)), "affine": img.affine.tolist()}


def _open_volumes(i: int, table: pd.DataFrame, files: dict[str, Path], facts: VolumeFacts, check: _Check) -> dict:
    """Column -> voxel grid (from the header; cached) for each file that opens as NIfTI."""
    grids = {}
    for column, file in files.items():
        found = facts.cached(file, "header", _header_facts)
        if found["error"] is not None:
            check.row_problem(i, f"{column} file {table.at[i, column]!r} is unreadable as NIfTI ({found['error']})")
        else:
            grids[column] = _Grid(tuple(found["shape"]), np.array(found["affine"], dtype=float))
    return grids


def _one_line(err: BaseException) -> str:
    """``EOFError: text`` on one line (nibabel's messages may span several)."""
    return f"{type(err).__name__}: {' '.join(str(err).split())}"


def _numbers(values: np.ndarray) -> str:
    """``(1, 0.5, -2)``: rounded, without ``-0``."""
    return "(" + ", ".join(f"{v:.6g}" for v in np.round(np.asarray(values, float), 6) + 0.0) + ")"


def _orientation(affine: np.ndarray) -> str:
    """Axis codes and direction cosines, e.g. ``RAS [[1, 0, 0], [0, 1, 0], [0, 0, 1]]``."""
    cosines = np.round(affine[:3, :3] / nib.affines.voxel_sizes(affine), 4) + 0.0
    rows = ", ".join("[" + ", ".join(f"{v:.4g}" for v in row) + "]" for row in cosines)
    return f"{''.join(nib.aff2axcodes(affine))} [{rows}]"


def _affine_problem(affine: np.ndarray) -> str | None:
    """Why an affine defines no usable voxel grid (non-finite, zero voxel size), or None."""
    if not np.isfinite(affine).all():
        return "has a non-finite affine (NaN or Inf in its voxel-to-world matrix); expected a finite affine"
    spacing = nib.affines.voxel_sizes(affine)
    if (spacing < AFFINE_ATOL_MM).any():
        return f"has voxel size {_numbers(spacing)} mm in its affine; expected positive voxel sizes"
    return None


def _affine_differences(affine: np.ndarray, image: np.ndarray) -> list[str]:
    """Which of spacing / origin / orientation of ``affine`` differ from the image's, with both values."""
    close = dict(rtol=AFFINE_RTOL, atol=AFFINE_ATOL_MM)
    spacing, image_spacing = nib.affines.voxel_sizes(affine), nib.affines.voxel_sizes(image)
    found = []
    if not np.allclose(spacing, image_spacing, **close):
        found.append(f"spacing {_numbers(spacing)} mm differs from image spacing {_numbers(image_spacing)} mm")
    if not np.allclose(affine[:3, 3], image[:3, 3], **close):
        found.append(f"origin {_numbers(affine[:3, 3])} mm differs from image origin {_numbers(image[:3, 3])} mm")
    if not np.allclose(affine[:3, :3] / spacing, image[:3, :3] / image_spacing, rtol=0, atol=ORIENTATION_ATOL):
        found.append(f"orientation {_orientation(affine)} differs from image orientation {_orientation(image)}")
    return found


def _check_geometry(i: int, table: pd.DataFrame, grids: dict[str, _Grid], check: _Check) -> set[str]:
    """Every volume 3-D with a usable affine; mask and lesion map on the image's grid (shape, affine).

    Returns the columns whose volume is usable (3-D, usable affine): only those are decoded.
    """
    shapes = {column: grid.shape for column, grid in grids.items()}
    usable = {}
    for column, grid in grids.items():
        name = table.at[i, column]
        problem = _affine_problem(grid.affine)
        if len(shapes[column]) != 3:
            check.row_problem(i, f"{column} {name!r} has shape {shapes[column]}; expected a 3-D volume")
        if problem is not None:
            check.row_problem(i, f"{column} {name!r} {problem}")
        if len(shapes[column]) == 3 and problem is None:
            usable[column] = grid
    for column in (c for c in ("mask", "lesion", "evidence") if c in usable and "image" in usable):
        if shapes[column] != shapes["image"]:
            check.row_problem(
                i,
                f"{column} shape {shapes[column]} differs from image shape {shapes['image']}; expected the same shape",
            )
        for difference in _affine_differences(usable[column].affine, usable["image"].affine):
            check.row_problem(
                i, f"{column} {table.at[i, column]!r} {difference}; expected the image's affine (same voxel grid)"
            )
    return set(usable)


def _is_label(mask: np.ndarray, labels) -> np.ndarray:
    """Where ``mask`` holds one of ``labels`` (a few comparisons: several times faster than np.isin)."""
    found = np.zeros(mask.shape, dtype=bool)
    for label in labels:
        found |= mask == label
    return found


# --------------------------------------------------------------------------- decoding every volume whole
# Each summary is JSON (cached per file version by oaprobe.data.fingerprint): bump its FORMAT_VERSION
# when a summary's content changes.


def _decode(path: str) -> np.ndarray:
    """The voxels as training reads them (:func:`oaprobe.data.dataset.read_volume` decodes the same way)."""
    return np.asanyarray(nib.load(path).dataobj)


def _image_facts(path: str) -> dict[str, Any]:
    """Decode an image whole: non-finite voxels, the range of the finite ones, a hash of the voxels."""
    try:
        data = _decode(path)
    except Exception as err:  # truncated gzip (EOFError), short file (OSError), ...
        return {"error": _one_line(err)}
    finite = np.isfinite(data)
    nonfinite = int(data.size - np.count_nonzero(finite))
    values = data[finite] if nonfinite else data
    low, high = (float(values.min()), float(values.max())) if values.size else (None, None)
    digest = hashlib.sha256(f"{data.dtype.str}{data.shape}".encode())
    digest.update(np.ascontiguousarray(data).data)
    return {"error": None, "nonfinite": nonfinite, "low": low, "high": high, "voxels": digest.hexdigest()}


def _mask_facts(path: str) -> dict[str, Any]:
    """Decode a label map whole: its values outside the schema (the first few, counted), any cartilage."""
    try:
        mask = _decode(path)
    except Exception as err:
        return {"error": _one_line(err)}
    bad = ~_is_label(mask, MASK_LABELS)  # also catches 1.5, -1 and NaN
    values, counts = np.unique(mask[bad], return_counts=True)
    return {
        "error": None,
        "n_bad": int(bad.sum()),
        "n_bad_values": int(len(values)),
        "bad": [[str(v), int(c)] for v, c in zip(values[:SHOWN_VALUES], counts)],
        "cartilage": bool(_is_label(mask, CARTILAGE_LABELS).any()),
    }


def _lesion_facts(path: str) -> dict[str, Any]:
    """Decode a lesion map whole (the saliency stage reads it): only whether it decodes."""
    try:
        _decode(path)
    except Exception as err:
        return {"error": _one_line(err)}
    return {"error": None}


_DECODERS = {"image": _image_facts, "mask": _mask_facts, "lesion": _lesion_facts, "evidence": _lesion_facts}


def _image_problems(facts: dict[str, Any]) -> list[str]:
    """Non-finite voxels; a constant image (nothing to learn from, and z-scoring turns it into zeros)."""
    if facts["nonfinite"]:
        return [f"has {facts['nonfinite']} non-finite voxel(s); expected finite values"]
    if facts["low"] == facts["high"]:
        return [f"is constant (every voxel {facts['low']:.6g}); expected an image whose intensities vary"]
    return []


def _mask_problems(facts: dict[str, Any]) -> list[str]:
    """What is wrong with a label map's values: labels outside the schema, no cartilage voxel."""
    problems = []
    if facts["n_bad"]:
        shown = ", ".join(f"{v} ({c} voxel{'s' if c > 1 else ''})" for v, c in facts["bad"])
        n_more = facts["n_bad_values"] - len(facts["bad"])
        more = f" and {n_more} other value(s)" if n_more else ""
        problems.append(
            f"has {facts['n_bad']} voxel(s) with values outside the label schema: {shown}{more}; "
            f"expected integer labels {min(MASK_LABELS)}-{max(MASK_LABELS)} ({_SCHEMA})"
        )
    if not facts["cartilage"]:
        problems.append(
            f"has no cartilage voxel; expected labels {' or '.join(map(str, CARTILAGE_LABELS))} "
            "(femoral / tibial cartilage)"
        )
    return problems


_PROBLEMS = {"image": _image_problems, "mask": _mask_problems, "lesion": lambda facts: [], "evidence": lambda facts: []}


def _check_voxels(i: int, table: pd.DataFrame, files: dict[str, Path], facts: VolumeFacts, check: _Check) -> str | None:
    """Decode each volume of row ``i`` whole (cached per file version) and report what training would
    trip on; return the hash of the image's voxels when the image is valid."""
    voxels = None
    for column, file in files.items():
        found = facts.cached(file, column, _DECODERS[column])
        name = table.at[i, column]
        if found["error"] is not None:
            check.row_problem(i, f"{column} file {name!r} is unreadable ({found['error']}); expected a complete NIfTI file")
            continue
        problems = _PROBLEMS[column](found)
        for problem in problems:
            check.row_problem(i, f"{column} {name!r} {problem}")
        if column == "image" and not problems:
            voxels = found["voxels"]
    return voxels


def _check_shared_images(table: pd.DataFrame, voxels: dict[int, str], check: _Check) -> None:
    """Rows whose images hold the same voxels (one file named twice, or a copy): refused when they sit
    in different splits (the knee would be tested on after training on it), warned within one split."""
    rows_of: dict[str, list[int]] = {}
    for i, digest in voxels.items():
        rows_of.setdefault(digest, []).append(i)
    for first, *others in (rows for rows in rows_of.values() if len(rows) > 1):
        split, case = (table.at[first, c] if c in table.columns else "" for c in ("split", "case_id"))
        same = f"the same voxels as the image of line {check.lines[first]} (case_id {case!r}"
        for i in others:
            here = table.at[i, "split"] if "split" in table.columns else ""
            if here != split:
                check.row_problem(
                    i, f"image {table.at[i, 'image']!r} in split {here} has {same}) in split {split}; "
                    "expected each scan in one split only (the same image in two splits leaks)",
                )
            else:
                warnings.warn(f"{check.where(i)}: image {table.at[i, 'image']!r} has {same}), both in split "
                              f"{split}: the same scan counts twice", stacklevel=5)


def _check_files(table: pd.DataFrame, folder: Path, check: _Check, check_volumes: bool) -> None:
    """Existence of each file; with ``check_volumes`` also geometry, every volume decoded whole
    (cached: a second validation of unchanged files decodes nothing) and images shared by rows."""
    facts = facts_for(folder) if check_volumes else None
    voxels: dict[int, str] = {}
    for i in range(len(table)):
        files = _existing_files(i, table, folder, check)
        if facts is None:
            continue
        usable = _check_geometry(i, table, _open_volumes(i, table, files, facts, check), check)
        digest = _check_voxels(i, table, {c: files[c] for c in files if c in usable}, facts, check)
        if digest is not None:
            voxels[i] = digest
    if facts is not None:
        facts.save()
        _check_shared_images(table, voxels, check)


# --------------------------------------------------------------------------- public API


def _validate(
    path: str | Path, check_volumes: bool, shown: str | Path | None = None
) -> tuple[list[str], pd.DataFrame | None]:
    """Problems and table of the manifest at ``path``; messages name ``shown`` (default ``path``)."""
    path = Path(path)
    check = _Check(Path(shown) if shown is not None else path)
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
        check_volumes: also open each NIfTI: shapes and affines from the headers, then decode
            every image, mask and lesion map whole, as training will (a truncated or unreadable
            file of any dtype is a problem; images must be finite and not constant, masks hold
            schema labels and some cartilage; the same image voxels in two splits are refused,
            within one split warned). What decoding found is cached per file version
            (:mod:`oaprobe.data.fingerprint`), so validating unchanged files again decodes
            nothing. When False only the table and the existence of the files are checked.

    Returns:
        One message per problem, each naming the manifest file, the row (physical line number
        and ``case_id``) where there is one, and what was expected; file-level problems first.
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


def write_manifest(table: pd.DataFrame, path: str | Path, validate: bool = False) -> Path:
    """Write a manifest atomically, required columns first, then optional, then any others.

    Absolute-path columns added by :func:`read_manifest` are not written. The file gets the
    mode a plain ``open()`` would give it (``0o666`` less the umask).

    Args:
        table: one row per knee.
        path: the CSV to write; its folder is created.
        validate: check the written table (columns, values, files exist; volumes are not
            opened) under its temporary name first, and raise :class:`ManifestError` naming
            ``path`` instead of replacing it: a refused table leaves no file behind.
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
        os.chmod(tmp, default_file_mode())
        problems = _validate(tmp, check_volumes=False, shown=path)[0] if validate else []
        if problems:
            raise ManifestError(path, problems)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def split_counts(path: str | Path) -> dict[str, int]:
    """Knees per split of a manifest: every split of ``SPLITS`` in order (zeros kept), then others.

    For a caller (the CLI after ``import-oai``) to report what was written; it reads the table
    only, so call it on a manifest already validated.
    """
    path = Path(path)
    check = _Check(path)
    table = _load_table(path, check)
    if table is None or "split" not in table.columns:
        raise ManifestError(path, check.problems or [f"{path}: missing column 'split'; expected a manifest"])
    counts = table["split"].value_counts()
    return {split: int(counts.get(split, 0)) for split in SPLITS} | {
        str(split): int(n) for split, n in counts.items() if split not in SPLITS
    }


_cells_seen: dict[str, tuple[str, list[tuple[str, str, str]]]] = {}
_data_seen: dict[str, tuple[list, str]] = {}


def _path_cells(path: Path, manifest_sha: str) -> list[tuple[str, str, str]]:
    """``(column, cell, absolute file)`` of every non-empty path cell, row by row (remembered per
    manifest content and resolved location: a run id asks for them many times; a symlink retargeted
    to another copy with the same text resolves elsewhere, so it is not served the old cells)."""
    key = str(path.resolve())
    seen = _cells_seen.get(key)
    if seen is not None and seen[0] == manifest_sha:
        return seen[1]
    table = _load_table(path, _Check(path))
    columns = [c for c in PATH_COLUMNS if table is not None and c in table.columns]
    folder = path.resolve().parent
    cells = [
        (c, text, os.path.abspath(folder / text))
        for row in (table.to_dict("records") if columns else [])
        for c in columns
        if (text := row[c])
    ]
    _cells_seen[key] = (manifest_sha, cells)
    return cells


def data_hash(path: str | Path) -> str:
    """SHA-256 of a manifest's bytes and of every volume it names (image, mask, lesion): what a run id covers.

    A cell naming no readable regular file counts as such (validation refuses it); a table that
    cannot be read names no volumes. The volumes' hashes are cached per file version
    (:mod:`oaprobe.data.fingerprint`), and the result per process for as long as the manifest's
    bytes and every volume's (size, mtime_ns, inode) are unchanged: on unchanged files a call
    reads the manifest and stats the volumes. ``path`` must be a readable file.
    """
    path = Path(path)
    manifest_sha = file_sha256(path)
    cells = _path_cells(path, manifest_sha)
    stamps = [manifest_sha, *(file_stamp(file) for _, _, file in cells)]
    seen = _data_seen.get(str(path.resolve()))
    if seen is not None and seen[0] == stamps:
        return seen[1]
    facts = facts_for(path.resolve().parent)
    volumes = [(column, cell, facts.sha256(file)) for column, cell, file in cells]
    facts.save()
    text = json.dumps({"manifest": manifest_sha, "volumes": volumes}, separators=(",", ":"))
    digest = hashlib.sha256(text.encode()).hexdigest()
    _data_seen[str(path.resolve())] = (stamps, digest)
    return digest


def manifest_hash(path: str | Path) -> str:
    """SHA-256 of the manifest file's bytes (the same value :func:`oaprobe.training.runs.run_id` uses)."""
    path = Path(path)
    reason = _not_a_file(path)
    if reason is not None:
        raise ManifestError(path, [f"{path}: {reason}"])
    try:
        return file_sha256(path)
    except OSError as err:
        raise ManifestError(path, [f"{path}: {_os_error_text(err)}"]) from err
