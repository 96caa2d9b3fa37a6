"""Import of a user's own OAIZIB-CM copy (OAI-ZIB knees with KL grades) into a manifest.

OAIZIB-CM (Hugging Face ``YongchengYAO/OAIZIB-CM``) ships, once its zips are extracted::

    ROOT/imagesTr/oaizib_001_0000.nii.gz   ROOT/labelsTr/oaizib_001.nii.gz   (404 train knees)
    ROOT/imagesTs/oaizib_405_0000.nii.gz   ROOT/labelsTs/oaizib_405.nii.gz   (103 test knees)
    ROOT/subInfo_train.xlsx  ROOT/subInfo_test.xlsx                          (one row per knee)

The subject tables link a file to its labels through ``CMT-ID`` (the case number in the file
name) and carry ``SubjectID`` (the OAI participant), ``KneeSide`` (OAI coding 1 = right,
2 = left) and ``KLGrade``. Knees without a KL grade are skipped and counted; in the release this
leaves the reference study's 383 train / 98 test knees. Label maps use the OAI-ZIB labels
(1 femur, 2 femoral cartilage, 3 tibia, 4 tibial cartilage), as the manifest expects.

Example:
    >>> case_number("imagesTs/oaizib_405_0000.nii.gz"), case_number("labelsTs/oaizib_405.nii.gz")
    (405, 405)
    >>> normalise_column("CMT-ID"), normalise_column("KLGrade")
    ('cmtid', 'klgrade')
"""

from __future__ import annotations

import logging
import os
import re
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from oaprobe.data.labels import oa_from_kl
from oaprobe.data.manifest import write_manifest
from oaprobe.data.splits import assign_splits
from oaprobe.errors import OaprobeError

logger = logging.getLogger(__name__)

#: release split -> (image folder, label folder)
RELEASE_FOLDERS: dict[str, tuple[str, str]] = {"train": ("imagesTr", "labelsTr"), "test": ("imagesTs", "labelsTs")}
#: nnU-Net channel suffix on image file names (absent on label maps)
IMAGE_SUFFIX = "_0000"
NIFTI_SUFFIXES = (".nii.gz", ".nii")
#: accepted metadata column names (compared after :func:`normalise_column`)
CASE_COLUMNS = ("cmtid", "caseid", "case", "cmt")
KL_COLUMNS = ("klgrade", "kl", "klg", "xrkl", "v00xrkl")
SUBJECT_COLUMNS = ("subjectid", "subject", "participantid", "patientid")
SIDE_COLUMNS = ("kneeside", "side", "laterality")
_SIDES = {"1": "R", "2": "L", "r": "R", "l": "L", "right": "R", "left": "L"}


class OAIImportError(OaprobeError, ValueError):
    """The OAIZIB-CM folder or its metadata cannot be turned into a manifest; says why."""


def normalise_column(name: object) -> str:
    """Lower-case alphanumerics of a column name: ``"CMT-ID"`` -> ``"cmtid"``."""
    return re.sub(r"[^a-z0-9]", "", str(name).lower())


def _stem(path: str | Path) -> str:
    name = Path(path).name
    for suffix in NIFTI_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def _case_stem(path: str | Path) -> str:
    """File name without the NIfTI extension and the image channel suffix: ``oaizib_001``."""
    stem = _stem(path)
    return stem[: -len(IMAGE_SUFFIX)] if stem.endswith(IMAGE_SUFFIX) else stem


def case_number(path: str | Path) -> int:
    """The case number (``CMT-ID``) in an OAIZIB-CM image or label file name."""
    match = re.search(r"(\d+)$", _case_stem(path))
    if match is None:
        raise OAIImportError(f"{path}: cannot read a case number from the file name; expected e.g. oaizib_001_0000.nii.gz")
    return int(match.group(1))


def _nifti_files(folder: Path) -> list[Path]:
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.name.endswith(NIFTI_SUFFIXES))
    nested = folder / folder.name  # a zip extracted into a folder of its own name
    if not files and nested.is_dir():
        return _nifti_files(nested)
    return files


def find_release_files(root: str | Path) -> pd.DataFrame:
    """Pair every image of ``imagesTr``/``imagesTs`` with its label map.

    Returns:
        One row per image: ``cmt_id`` (int), ``case_id`` (e.g. ``oaizib_001``),
        ``release_split`` (``train``/``test``), absolute ``image`` and ``mask`` paths.

    Raises:
        OAIImportError: missing root or image folders, or an image without a label map.
    """
    root = Path(root)
    if not root.is_dir():
        raise OAIImportError(f"OAIZIB-CM folder {str(root)!r} does not exist")
    present = [split for split, (images, _) in RELEASE_FOLDERS.items() if (root / images).is_dir()]
    if not present:
        zips = sorted(p.name for p in root.glob("*.zip"))
        hint = f"; found {zips}: extract them first" if zips else ""
        raise OAIImportError(
            f"{root}: no imagesTr/ or imagesTs/ folder; expected the OAIZIB-CM layout "
            f"(imagesTr/, labelsTr/, imagesTs/, labelsTs/, subInfo_*.xlsx){hint}"
        )
    rows, unpaired = [], []
    for split in present:
        image_dir, label_dir = (root / name for name in RELEASE_FOLDERS[split])
        labels = {case_number(p): p for p in _nifti_files(label_dir)} if label_dir.is_dir() else {}
        for image in _nifti_files(image_dir):
            number = case_number(image)
            if number not in labels:
                unpaired.append(f"{image.relative_to(root)} (expected {label_dir.name}/{_case_stem(image)}.nii.gz)")
                continue
            rows.append(
                dict(
                    cmt_id=number,
                    case_id=_case_stem(image),
                    release_split=split,
                    image=image.resolve(),
                    mask=labels[number].resolve(),
                )
            )
    if unpaired:
        shown = "; ".join(unpaired[:5]) + (f"; ... ({len(unpaired)} in all)" if len(unpaired) > 5 else "")
        raise OAIImportError(f"{len(unpaired)} image(s) without a label map: {shown}")
    table = pd.DataFrame(rows, columns=["cmt_id", "case_id", "release_split", "image", "mask"])
    duplicated = table["cmt_id"][table["cmt_id"].duplicated()].tolist()
    if duplicated:
        raise OAIImportError(f"{root}: case number(s) {duplicated[:5]} appear more than once across image folders")
    return table.sort_values("cmt_id").reset_index(drop=True)


def _metadata_files(root: Path, metadata: Path | None) -> list[Path]:
    if metadata is not None:
        metadata = Path(metadata)
        if metadata.is_file():
            return [metadata]
        if not metadata.is_dir():
            raise OAIImportError(f"metadata {str(metadata)!r} does not exist")
        folders = [metadata]
    else:
        folders = [root, root / "info"]
    found = sorted(
        p
        for folder in folders
        if folder.is_dir()
        for p in folder.iterdir()
        if p.is_file() and p.name.lower().startswith("subinfo") and p.suffix.lower() in (".xlsx", ".xls", ".csv")
    )
    if not found:
        where = " or ".join(str(f) for f in folders)
        raise OAIImportError(
            f"no metadata table (subInfo_train.xlsx / subInfo_test.xlsx) in {where}; "
            "pass --metadata PATH (metadata=PATH in Python): a CSV or xlsx with a case id (CMT-ID) "
            "and a KL grade (KLGrade) column"
        )
    return found


def _pick(columns: dict[str, str], accepted: Sequence[str]) -> str | None:
    return next((columns[name] for name in accepted if name in columns), None)


def _id_text(value: object) -> str:
    """``9005075.0`` -> ``"9005075"``; other values as stripped text."""
    if isinstance(value, (float, np.floating)) and np.isfinite(value) and float(value).is_integer():
        return str(int(value))
    return str(value).strip()


def _read_one_table(path: Path) -> pd.DataFrame:
    """One metadata table reduced to ``cmt_id, subject_id, side, kl`` (kl NaN = not graded)."""
    try:
        raw = pd.read_csv(path) if path.suffix.lower() == ".csv" else pd.read_excel(path)
    except Exception as err:  # pandas/openpyxl raise many types for a broken file
        raise OAIImportError(f"metadata {path} cannot be read ({err})") from err
    columns = {normalise_column(c): c for c in raw.columns}
    found = ", ".join(map(str, raw.columns))
    case_col, kl_col = _pick(columns, CASE_COLUMNS), _pick(columns, KL_COLUMNS)
    if case_col is None:
        raise OAIImportError(f"metadata {path}: no case id column (CMT-ID); columns found: {found}")
    if kl_col is None:
        raise OAIImportError(
            f"metadata {path}: no KL grade column; expected one of KLGrade, KL, KL_grade; columns found: {found}"
        )
    problems = []
    numbers = []
    for i, value in enumerate(raw[case_col]):
        try:
            numbers.append(case_number(value.strip()) if isinstance(value, str) else int(_id_text(value)))
        except (OAIImportError, ValueError, TypeError):
            problems.append(f"row {i + 2}: {case_col} = {_id_text(value)!r}; expected a case number")
            numbers.append(-1)
    blank = raw[kl_col].isna() | (raw[kl_col].astype(str).str.strip() == "")
    kl = pd.to_numeric(raw[kl_col].where(~blank), errors="coerce")
    bad = ~blank & (kl.isna() | (kl % 1 != 0) | (kl < 0) | (kl > 4))
    for i in np.flatnonzero(bad.to_numpy()):
        problems.append(
            f"row {i + 2} ({case_col} {_id_text(raw[case_col].iloc[i])}): "
            f"{kl_col} = {_id_text(raw[kl_col].iloc[i])}; expected an integer 0-4 or empty"
        )
    side_col = _pick(columns, SIDE_COLUMNS)
    sides = pd.Series(pd.NA, index=raw.index, dtype=object)
    if side_col is not None:
        for i, value in enumerate(raw[side_col]):
            side = _SIDES.get(_id_text(value).lower())
            if side is None:
                problems.append(f"row {i + 2}: {side_col} = {_id_text(value)!r}; expected 1/2 (right/left) or R/L")
            sides.iloc[i] = side
    if problems:
        raise OAIImportError(f"metadata {path}: " + "; ".join(problems[:10]))
    subject_col = _pick(columns, SUBJECT_COLUMNS)
    return pd.DataFrame(
        {
            "cmt_id": numbers,
            "subject_id": raw[subject_col].map(_id_text) if subject_col else pd.NA,
            "side": sides,
            "kl": kl.astype(float),
            "source": path.name,
        }
    )


def read_metadata(root: str | Path, metadata: str | Path | None = None) -> pd.DataFrame:
    """The OAIZIB-CM subject tables (or a user's own table) as ``cmt_id, subject_id, side, kl``.

    Args:
        root: the OAIZIB-CM folder (searched, with ``root/info``, for ``subInfo_*.xlsx|csv``).
        metadata: a CSV/xlsx file, or a folder holding ``subInfo_*`` tables, instead.
    """
    files = _metadata_files(Path(root), Path(metadata) if metadata is not None else None)
    table = pd.concat([_read_one_table(f) for f in files], ignore_index=True)
    duplicated = table[table["cmt_id"].duplicated(keep=False)]
    if len(duplicated):
        conflicting = duplicated.groupby("cmt_id")["kl"].nunique(dropna=False)
        if (conflicting > 1).any():
            raise OAIImportError(
                f"case number(s) {conflicting[conflicting > 1].index.tolist()[:5]} have different KL grades "
                f"in {', '.join(sorted(set(duplicated['source'])))}"
            )
        table = table.drop_duplicates("cmt_id")
    return table.reset_index(drop=True)


def _graded_knees(files: pd.DataFrame, meta: pd.DataFrame, root: Path) -> pd.DataFrame:
    """Release files joined with their metadata rows; knees without a KL grade dropped, with warnings."""
    merged = files.merge(meta, on="cmt_id", how="left", validate="one_to_one")
    no_row = merged["source"].isna()
    no_kl = ~no_row & merged["kl"].isna()
    orphans = sorted(set(meta["cmt_id"]) - set(files["cmt_id"]))
    if no_row.any() or no_kl.any():
        warnings.warn(
            f"OAIZIB-CM import: skipped {int(no_kl.sum() + no_row.sum())} knee(s): {int(no_kl.sum())} without a KL "
            f"grade, {int(no_row.sum())} without a metadata row "
            f"(e.g. {', '.join(merged.loc[no_kl | no_row, 'case_id'].head(5))})",
            stacklevel=3,
        )
    if orphans:
        warnings.warn(
            f"OAIZIB-CM import: {len(orphans)} metadata row(s) have no image (e.g. {orphans[:5]})", stacklevel=3
        )
    knees = merged[~(no_row | no_kl)].copy()
    if knees.empty:
        raise OAIImportError(f"{root}: no knee has both an image and a KL grade; nothing to import")
    return knees


def _manifest_rows(
    knees: pd.DataFrame, folder: Path, split: str, seed: int, fractions: tuple[float, float, float]
) -> pd.DataFrame:
    """Manifest columns for the graded knees: sides, subjects, OA, the split, paths relative to ``folder``."""
    knees = knees.copy()
    if knees["side"].isna().any():
        warnings.warn(
            "OAIZIB-CM import: no knee side in the metadata for "
            f"{int(knees['side'].isna().sum())} knee(s); written as 'R'",
            stacklevel=3,
        )
        knees["side"] = knees["side"].fillna("R")
    knees["subject_id"] = [s if isinstance(s, str) and s else c for s, c in zip(knees["subject_id"], knees["case_id"])]
    knees["kl"] = knees["kl"].astype(int)
    knees["oa"] = oa_from_kl(knees["kl"].to_numpy())
    if split == "reference":
        knees["split"] = knees["release_split"]
    else:
        knees["split"] = assign_splits(knees[["subject_id", "kl"]], fractions, seed, "kl").to_numpy()
    for column in ("image", "mask"):
        knees[column] = [Path(os.path.relpath(p, folder)).as_posix() for p in knees[column]]
    columns = ["case_id", "subject_id", "side", "split", "image", "mask", "kl", "oa"]
    return knees[columns].reset_index(drop=True)


def import_oaizib(
    root: Path,
    out_manifest: Path,
    metadata: Path | None = None,
    split: Literal["reference", "stratified"] = "reference",
    seed: int = 0,
    fractions: tuple[float, float, float] = (0.7, 0.1, 0.2),
) -> Path:
    """Write a manifest for a local OAIZIB-CM copy; paths are relative to the manifest's folder.

    Args:
        root: the extracted OAIZIB-CM folder (imagesTr/, labelsTr/, imagesTs/, labelsTs/).
        out_manifest: the manifest CSV to write (atomically).
        metadata: table with case id and KL grade, if not the release's ``subInfo_*.xlsx``.
        split: ``"reference"`` keeps the release's train/test split (no val, as in the
            reference study); ``"stratified"`` pools all graded knees and makes a
            subject-grouped, KL-stratified train/val/test split with ``fractions`` and ``seed``.
        seed: seed of the stratified split.
        fractions: train/val/test fractions of subjects for ``"stratified"``.

    Returns:
        The manifest path (knees per split: :func:`oaprobe.data.manifest.split_counts`). Knees
        without a KL grade (or without a metadata row) are skipped with a warning that counts them.

    Raises:
        OAIImportError: the folder, the metadata or ``out_manifest`` is unusable (a directory,
            not writable).
        ManifestError: the table would be an invalid manifest (e.g. a subject in both release
            splits); it is validated before it replaces ``out_manifest``, so nothing is left there.
    """
    if split not in ("reference", "stratified"):
        raise OAIImportError(f"split = {split!r}; expected 'reference' or 'stratified'")
    root, out_manifest = Path(root), Path(out_manifest)
    if out_manifest.is_dir():
        raise OAIImportError(f"{str(out_manifest)!r} (--out) is a directory; expected the path of a CSV file to write")
    knees = _graded_knees(find_release_files(root), read_metadata(root, metadata), root)
    table = _manifest_rows(knees, out_manifest.resolve().parent, split, seed, fractions)
    try:
        write_manifest(table, out_manifest, validate=True)
    except OSError as err:
        raise OAIImportError(f"cannot write {str(out_manifest)!r} (--out): {err.strerror or err}") from err
    counts = table.groupby("split")["kl"].value_counts().unstack(fill_value=0)
    logger.info("OAIZIB-CM import: %d knees written to %s; KL counts per split:\n%s", len(table), out_manifest, counts)
    return out_manifest
