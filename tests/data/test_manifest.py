"""Manifest validation: one test per bad input, each message naming the row and the problem."""

from __future__ import annotations

import hashlib
import os
import pickle
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from oaprobe.data.manifest import (
    OPTIONAL_COLUMNS,
    REQUIRED_COLUMNS,
    ManifestError,
    manifest_hash,
    read_manifest,
    split_counts,
    validate_manifest,
    write_manifest,
)
from oaprobe.errors import OaprobeError

from .conftest import planted_mask, write_nifti

HEADER = ",".join(REQUIRED_COLUMNS)


def only_problem(path: Path) -> str:
    problems = validate_manifest(path)
    assert len(problems) == 1, problems
    assert str(path) in problems[0]
    return problems[0]


def test_valid_manifest_has_no_problems(make_manifest):
    assert validate_manifest(make_manifest()) == []


def test_columns_follow_architecture():
    assert REQUIRED_COLUMNS == ("case_id", "subject_id", "side", "split", "image", "mask", "kl", "oa")
    assert set(OPTIONAL_COLUMNS) == {"kl_clean", "lesion", "evidence", "severity", "site", "visit"}


def test_missing_column(make_manifest):
    message = only_problem(make_manifest(drop=("subject_id",)))
    assert "missing column 'subject_id'" in message


def test_missing_manifest_file(tmp_path):
    message = only_problem(tmp_path / "nope.csv")
    assert "does not exist" in message


def test_missing_image_file(make_manifest):
    message = only_problem(make_manifest(edits={1: {"image": "gone.nii.gz"}}))
    assert "line 3 (case_id 'k1')" in message and "image file 'gone.nii.gz' not found" in message


def test_unreadable_mask_file(make_manifest, tmp_path):
    (tmp_path / "broken.nii.gz").write_bytes(b"not a nifti")
    message = only_problem(make_manifest(edits={0: {"mask": "broken.nii.gz"}}))
    assert "case_id 'k0'" in message and "unreadable" in message


def test_shape_mismatch(make_manifest, make_knee):
    _, small_mask = make_knee("small", shape=(8, 8, 6))
    message = only_problem(make_manifest(edits={2: {"mask": small_mask}}))
    assert "case_id 'k2'" in message and "(8, 8, 6) differs from image shape (8, 8, 8)" in message


@pytest.mark.parametrize("value", ["5", "-1", "2.5", "x", ""])
def test_kl_out_of_range_or_not_integer(make_manifest, value):
    message = only_problem(make_manifest(edits={3: {"kl": value, "oa": 1}}))
    assert "line 5 (case_id 'k3')" in message and f"kl = {value!r}; expected an integer 0-4" in message


def test_oa_inconsistent_with_kl(make_manifest):
    message = only_problem(make_manifest(edits={1: {"kl": 1, "oa": 1}}))
    assert "case_id 'k1'" in message and "oa = 1 but kl = 1; expected oa = 0" in message


def test_oa_not_binary(make_manifest):
    message = only_problem(make_manifest(edits={0: {"oa": 2}}))
    assert "oa = '2'; expected 0 or 1" in message


def test_kl_clean_out_of_range(make_manifest):
    message = only_problem(make_manifest(edits={0: {"kl_clean": 9}}))
    assert "case_id 'k0'" in message and "kl_clean = '9'" in message


def test_kl_clean_may_be_empty(make_manifest):
    assert validate_manifest(make_manifest(edits={0: {"kl_clean": ""}})) == []


def test_duplicate_case_id(make_manifest):
    message = only_problem(make_manifest(edits={2: {"case_id": "k0"}}))
    assert "line 4 (case_id 'k0')" in message and "duplicate case_id; first used on line 2" in message


def test_subject_in_two_splits(make_manifest):
    # k0 is train, k2 is val: giving both the same subject leaks it across splits.
    message = only_problem(make_manifest(edits={2: {"subject_id": "s0"}}))
    assert "subject_id 's0'" in message and "line 2 case_id 'k0'" in message and "line 4 case_id 'k2'" in message


def test_unknown_split(make_manifest):
    message = only_problem(make_manifest(edits={1: {"split": "validation"}}))
    assert "case_id 'k1'" in message and "split = 'validation'" in message


def test_bad_side(make_manifest):
    message = only_problem(make_manifest(edits={1: {"side": "left"}}))
    assert "side = 'left'" in message


def test_empty_cartilage_mask(make_manifest, make_knee):
    no_cartilage = np.where(np.isin(planted_mask((8, 8, 8)), (2, 4)), 0, 1).astype(np.uint8)
    _, mask = make_knee("nocart", mask=no_cartilage)
    message = only_problem(make_manifest(edits={3: {"mask": mask}}))
    assert "case_id 'k3'" in message and "no cartilage voxel" in message


def test_non_finite_voxels(make_manifest, make_knee):
    image = np.ones((8, 8, 8), np.float32)
    image[0, 0, :2] = [np.nan, np.inf]
    image_file, _ = make_knee("nan", image=image)
    message = only_problem(make_manifest(edits={0: {"image": image_file}}))
    assert "case_id 'k0'" in message and "2 non-finite voxel(s)" in message


def test_check_volumes_false_skips_voxel_checks(make_manifest, make_knee):
    image = np.full((8, 8, 8), np.nan, np.float32)
    image_file, _ = make_knee("nan", image=image)
    assert validate_manifest(make_manifest(edits={0: {"image": image_file}}), check_volumes=False) == []


def test_all_problems_are_reported(make_manifest):
    path = make_manifest(
        n=5,
        edits={
            0: {"kl": 7},
            1: {"image": "gone.nii.gz"},
            2: {"case_id": "k0"},
            3: {"split": "holdout"},
        },
    )
    problems = validate_manifest(path)
    joined = "\n".join(problems)
    assert len(problems) == 4, problems
    for expected in ("kl = '7'", "gone.nii.gz", "duplicate case_id", "split = 'holdout'"):
        assert expected in joined
    with pytest.raises(ManifestError) as info:
        read_manifest(path)
    assert info.value.problems == problems
    assert "4 problem(s)" in str(info.value)


def test_read_manifest_types_and_absolute_paths(make_manifest, tmp_path):
    table = read_manifest(make_manifest())
    assert table["kl"].dtype == np.int64 and table["oa"].dtype == np.int64
    assert str(table["kl_clean"].dtype) == "Int64"
    for column in ("image_path", "mask_path"):
        assert all(Path(p).is_absolute() and Path(p).is_file() for p in table[column])
    assert Path(table.at[0, "image_path"]) == (tmp_path / "k0.nii.gz").resolve()


def test_read_manifest_from_another_working_directory(make_manifest, tmp_path, monkeypatch):
    path = make_manifest()
    monkeypatch.chdir(tmp_path.parent)
    table = read_manifest(Path(tmp_path.name) / path.name)
    assert Path(table.at[1, "mask_path"]) == (tmp_path / "k1_mask.nii.gz").resolve()


def test_lesion_paths_resolved_and_shape_checked(make_manifest, make_knee):
    _, lesion = make_knee("lesion")
    table = read_manifest(make_manifest(edits={0: {"lesion": lesion}, 1: {"lesion": ""}}))
    assert Path(table.at[0, "lesion_path"]).is_file() and pd.isna(table.at[1, "lesion_path"])
    _, bad = make_knee("bad_lesion", shape=(8, 8, 4))
    message = only_problem(make_manifest(edits={0: {"lesion": bad}}, name="m2.csv"))
    assert "lesion shape (8, 8, 4) differs" in message


def test_write_manifest_round_trip_is_atomic_and_ordered(make_manifest, tmp_path):
    table = read_manifest(make_manifest())
    out = write_manifest(table.iloc[::-1], tmp_path / "copy.csv")
    written = pd.read_csv(out)
    assert list(written.columns) == [*REQUIRED_COLUMNS, "kl_clean"]
    assert not list(tmp_path.glob("*.tmp"))
    assert validate_manifest(out) == []


def test_manifest_hash_is_sha256_of_bytes(make_manifest):
    path = make_manifest()
    assert manifest_hash(path) == hashlib.sha256(path.read_bytes()).hexdigest()
    with pytest.raises(ManifestError):
        manifest_hash(path.with_name("missing.csv"))


def test_shipped_template_is_well_formed():
    template = Path(__file__).resolve().parents[2] / "data_manifests" / "oaizib_template.csv"
    problems = validate_manifest(template, check_volumes=False)
    # the template points at files a user downloads; everything else about it is valid
    assert len(problems) == 6 and all("not found" in p for p in problems)


# --- the file itself: what it is, how it reads -------------------------------------------------


def test_directory_given_as_manifest(tmp_path):
    message = only_problem(tmp_path)
    assert "is a directory; expected a manifest CSV file" in message and "does not exist" not in message


def test_permission_denied_is_named(make_manifest, monkeypatch):
    path = make_manifest()

    def denied(self: Path, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "open", denied)  # root can read anything, so deny it here
    assert "cannot be read: permission denied" in only_problem(path)


@pytest.mark.parametrize(
    "data, expected",
    [
        (b"case_id\nk1\x00\x01\x02\n", "is a binary file (NUL byte on line 2); expected a UTF-8 text CSV file"),
        (f"{HEADER},site\nk1,s1,R,train,a,b,0,0,Z\xfcrich\n".encode("latin-1"), "not UTF-8 text (byte 0xfc on line 2)"),
        (b"\x1f\x8b\x08gzipped", "is binary or not UTF-8 text (byte 0x8b on line 1)"),
    ],
)
def test_binary_or_undecodable_manifest(tmp_path, data, expected):
    path = tmp_path / "m.csv"
    path.write_bytes(data)
    assert expected in only_problem(path)


@pytest.mark.parametrize("text", ["", "\n  \n\n"])
def test_empty_manifest(tmp_path, text):
    path = tmp_path / "m.csv"
    path.write_text(text)
    assert "is empty; expected a header line (case_id, subject_id" in only_problem(path)


def test_header_only_manifest(tmp_path):
    path = tmp_path / "m.csv"
    path.write_text(HEADER + "\n\n")
    assert "has no rows; expected one row per knee" in only_problem(path)


def test_utf8_bom_is_accepted(make_manifest):
    path = make_manifest()
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())  # Excel's "CSV UTF-8"
    assert validate_manifest(path) == []


def test_unclosed_quote_names_its_line(make_manifest):
    path = make_manifest()
    lines = path.read_text().splitlines()
    lines[2] = '"' + lines[2]
    path.write_text("\n".join(lines) + "\n")
    assert "is not valid CSV at line 3" in only_problem(path)


def test_duplicate_column_is_refused_first(make_manifest):
    path = make_manifest(edits={1: {"kl": 9}})
    header, *rows = path.read_text().splitlines()
    path.write_text("\n".join([header + ", kl"] + [row + ",3" for row in rows]) + "\n")
    problems = validate_manifest(path)
    assert len(problems) == 2, problems
    assert f"{path}: column 'kl' appears 2 times in the header (columns 7, 10); expected each column once" in problems
    assert problems[0].startswith(f"{path}: column 'kl'")  # file-level problems first
    assert "line 3 (case_id 'k1'): kl = '9'" in problems[1]  # the first 'kl' column is the one checked


def test_unnamed_column_with_values(make_manifest):
    path = make_manifest()
    header, *rows = path.read_text().splitlines()
    path.write_text("\n".join([header + ","] + [row + ("," if i else ",x") for i, row in enumerate(rows)]) + "\n")
    assert "header column 10 has no name but line 2 has a value in it" in only_problem(path)
    path.write_text("\n".join([header + ","] + [row + "," for row in rows]) + "\n")  # trailing commas only
    assert validate_manifest(path) == []


def test_line_numbers_count_blank_lines_and_multiline_fields(make_manifest):
    path = make_manifest(edits={1: {"kl": 9}, 2: {"case_id": "k0", "subject_id": "s9"}})
    header, row0, row1, row2, row3 = path.read_text().splitlines()
    text = "\n".join([header + ",site", "", row0 + ',"two\nlines"', "", "", row1 + ",", row2 + ",", row3 + ","])
    path.write_text(text + "\n")
    problems = validate_manifest(path)
    assert len(problems) == 2, problems
    # header on line 1, blank 2, k0 on 3-4 (a quoted field spans two lines), blank 5 and 6, k1 on 7
    assert "line 7 (case_id 'k1'): kl = '9'" in problems[0]
    assert "line 8 (case_id 'k0'): duplicate case_id; first used on line 3" in problems[1]


def test_row_with_too_many_fields(make_manifest):
    path = make_manifest()
    lines = path.read_text().splitlines()
    lines[3] += ",surplus"
    path.write_text("\n".join(lines) + "\n")
    message = only_problem(path)
    assert "line 4: has 10 fields but the header has 9 columns" in message


def test_short_row_and_trailing_empty_fields(make_manifest):
    path = make_manifest()
    lines = path.read_text().splitlines()
    lines[1] = lines[1].rsplit(",", 1)[0]  # kl_clean (optional) left out: read as empty
    lines[2] += ",,"
    path.write_text("\n".join(lines) + "\n")
    assert validate_manifest(path) == []
    assert pd.isna(read_manifest(path).at[0, "kl_clean"])


def test_row_of_empty_cells_is_one_problem(make_manifest):
    path = make_manifest()
    lines = path.read_text().splitlines()
    lines.insert(2, ",,,,,,,,")
    path.write_text("\n".join(lines) + "\n")
    assert "line 3: has only empty cells" in only_problem(path)


def test_path_column_pointing_at_a_directory(make_manifest, tmp_path):
    (tmp_path / "scans").mkdir()
    message = only_problem(make_manifest(edits={0: {"image": "scans"}}))
    assert "line 2 (case_id 'k0')" in message and "image 'scans' is a directory" in message
    assert "expected a NIfTI file" in message


# --- mask values and voxel grids ----------------------------------------------------------------


@pytest.mark.parametrize(
    "dtype, value, shown",
    [
        (np.uint8, 7, "7 (4 voxels)"),
        (np.int16, -1, "-1 (4 voxels)"),
        (np.float32, 1.5, "1.5 (4 voxels)"),
        (np.float32, np.nan, "nan (4 voxels)"),
    ],
)
def test_mask_values_outside_label_schema(make_manifest, make_knee, dtype, value, shown):
    mask = planted_mask((8, 8, 8)).astype(dtype)
    mask[0, 0, :4] = value
    _, name = make_knee("badlabel", mask=mask)
    message = only_problem(make_manifest(edits={1: {"mask": name}}))
    assert f"line 3 (case_id 'k1'): mask {name!r} has 4 voxel(s) with values outside the label schema: " in message
    assert f"schema: {shown}; expected" in message
    schema = "0 background, 1 femur, 2 femoral cartilage, 3 tibia, 4 tibial cartilage"
    assert f"expected integer labels 0-4 ({schema})" in message


def test_mask_listing_many_bad_values_is_short(make_manifest, make_knee):
    mask = planted_mask((8, 8, 8))
    mask[0, 0, :8] = np.arange(10, 18)
    _, name = make_knee("many", mask=mask)
    message = only_problem(make_manifest(edits={0: {"mask": name}}))
    assert "10 (1 voxel), 11 (1 voxel), 12 (1 voxel), 13 (1 voxel), 14 (1 voxel) and 3 other value(s)" in message


def test_scaled_integer_mask_with_fractional_values(make_manifest, tmp_path):
    stored = planted_mask((8, 8, 8))  # scl_slope 0.5: stored 1 reads 0.5, stored 3 reads 1.5
    img = nib.Nifti1Image(stored, np.eye(4))
    img.header.set_slope_inter(0.5, 0)
    nib.save(img, str(tmp_path / "scaled.nii.gz"))
    message = only_problem(make_manifest(edits={0: {"mask": "scaled.nii.gz"}}))
    assert "values outside the label schema: 0.5 (" in message and "1.5 (" in message


def test_float_mask_with_integer_labels_is_valid(make_manifest, make_knee):
    _, name = make_knee("floatmask", mask=planted_mask((8, 8, 8)).astype(np.float32))
    assert validate_manifest(make_manifest(edits={0: {"mask": name}})) == []


def test_four_d_mask(make_manifest, make_knee):
    _, name = make_knee("fourd", mask=np.stack([planted_mask((8, 8, 8))] * 2, axis=-1))
    message = only_problem(make_manifest(edits={0: {"mask": name}}))
    assert f"mask {name!r} has shape (8, 8, 8, 2); expected a 3-D volume" in message


def _affine(spacing=(1.0, 1.0, 1.0), origin=(0.0, 0.0, 0.0), flip: bool = False) -> np.ndarray:
    affine = np.diag([*spacing, 1.0])
    affine[:3, 3] = origin
    if flip:
        affine[0, 0] *= -1
    return affine


@pytest.mark.parametrize(
    "affine, expected",
    [
        (_affine(spacing=(2, 1, 1)), "spacing (2, 1, 1) mm differs from image spacing (1, 1, 1) mm"),
        (_affine(origin=(0, 0.5, 0)), "origin (0, 0.5, 0) mm differs from image origin (0, 0, 0) mm"),
        (
            _affine(flip=True),
            "orientation LAS [[-1, 0, 0], [0, 1, 0], [0, 0, 1]] differs from image orientation "
            "RAS [[1, 0, 0], [0, 1, 0], [0, 0, 1]]",
        ),
    ],
    ids=["spacing", "origin", "orientation"],
)
def test_mask_affine_differs_from_image(make_manifest, tmp_path, affine, expected):
    write_nifti(tmp_path / "moved_mask.nii.gz", planted_mask((8, 8, 8)), affine=affine)
    message = only_problem(make_manifest(edits={2: {"mask": "moved_mask.nii.gz"}}))
    assert f"line 4 (case_id 'k2'): mask 'moved_mask.nii.gz' {expected}" in message
    assert "expected the image's affine" in message


def test_lesion_affine_differs_from_image(make_manifest, tmp_path):
    write_nifti(tmp_path / "lesion.nii.gz", np.zeros((8, 8, 8), np.uint8), affine=_affine(origin=(3, 0, 0)))
    message = only_problem(make_manifest(edits={0: {"lesion": "lesion.nii.gz"}}))
    assert "lesion 'lesion.nii.gz' origin (3, 0, 0) mm differs from image origin (0, 0, 0) mm" in message


def test_affine_within_tolerance_is_accepted(make_manifest, tmp_path):
    write_nifti(tmp_path / "near_mask.nii.gz", planted_mask((8, 8, 8)), affine=_affine((1.00005, 1, 1), (2e-4, 0, 0)))
    assert validate_manifest(make_manifest(edits={0: {"mask": "near_mask.nii.gz"}})) == []


@pytest.mark.parametrize("column", ["image", "mask"])
def test_non_finite_affine(make_manifest, tmp_path, column):
    affine = _affine()
    affine[1, 3] = np.nan
    array = planted_mask((8, 8, 8)) if column == "mask" else np.ones((8, 8, 8), np.float32)
    write_nifti(tmp_path / "nan_affine.nii.gz", array, affine=affine)
    message = only_problem(make_manifest(edits={1: {column: "nan_affine.nii.gz"}}))
    assert f"{column} 'nan_affine.nii.gz' has a non-finite affine" in message


def test_zero_voxel_size(make_manifest, tmp_path):
    path = write_nifti(tmp_path / "flat_mask.nii", planted_mask((8, 8, 8)))
    data = bytearray(path.read_bytes())
    data[296:312] = np.zeros(4, "<f4").tobytes()  # srow_y = 0: nibabel refuses to write such an affine
    path.write_bytes(bytes(data))
    message = only_problem(make_manifest(edits={1: {"mask": "flat_mask.nii"}}))
    assert "has voxel size (1, 0, 1) mm in its affine; expected positive voxel sizes" in message


# --- errors, writing, counting ------------------------------------------------------------------


def test_manifest_error_is_an_oaprobe_error_and_pickles():
    error = ManifestError("m.csv", ["m.csv: line 2 (case_id 'k1'): kl = '7'; expected an integer 0-4"])
    assert isinstance(error, OaprobeError) and isinstance(error, ValueError)
    again = pickle.loads(pickle.dumps(error))
    assert type(again) is ManifestError and again.problems == error.problems and str(again) == str(error)


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o027, 0o640)])
def test_write_manifest_honours_umask(make_manifest, tmp_path, umask, mode):
    table = read_manifest(make_manifest())
    old = os.umask(umask)
    try:
        out = write_manifest(table, tmp_path / "copy.csv")
    finally:
        os.umask(old)
    assert out.stat().st_mode & 0o777 == mode


def test_write_manifest_validate_refuses_and_leaves_nothing(make_manifest, tmp_path):
    table = read_manifest(make_manifest())
    table.loc[1, "kl"] = 9
    target = tmp_path / "refused.csv"
    before = sorted(tmp_path.iterdir())
    with pytest.raises(ManifestError) as info:
        write_manifest(table, target, validate=True)
    assert info.value.problems == [f"{target}: line 3 (case_id 'k1'): kl = '9'; expected an integer 0-4"]
    assert sorted(tmp_path.iterdir()) == before  # neither the manifest nor its temporary file
    assert validate_manifest(write_manifest(table.drop(index=1), target, validate=True)) == []


def test_split_counts(make_manifest, tmp_path):
    assert split_counts(make_manifest(n=5)) == {"train": 3, "val": 1, "test": 1}
    with pytest.raises(ManifestError, match="is a directory"):
        split_counts(tmp_path)


def test_manifest_hash_of_a_directory(tmp_path):
    with pytest.raises(ManifestError, match="is a directory; expected a manifest CSV file"):
        manifest_hash(tmp_path)


def test_run_check_without_volumes_skips_voxels_but_not_files(make_manifest, make_knee, tmp_path):
    """A sweep validates volumes once; its workers' ``validate(cfg, check_volumes=False)`` still
    refuses a missing file but does not read the voxels again."""
    from oaprobe.config import RunConfig
    from oaprobe.training.checks import validate

    mask = planted_mask((8, 8, 8))
    mask[0, 0, :4] = 7
    _, name = make_knee("badlabel", mask=mask)
    cfg = RunConfig(manifest=str(make_manifest(edits={1: {"mask": name}})), batch_size=1)
    with pytest.raises(ManifestError, match="outside the label schema"):
        validate(cfg)
    assert len(validate(cfg, check_volumes=False)) > 0
    gone = RunConfig(manifest=str(make_manifest(edits={1: {"mask": "nowhere.nii.gz"}})), batch_size=1)
    with pytest.raises(ManifestError, match="not found"):
        validate(gone, check_volumes=False)


# --- every volume decoded whole, as training will read it ----------------------------------------


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - len(data) // 8])  # the header stays whole, the voxels end early


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii"])
def test_truncated_integer_image_is_a_problem_by_row(make_manifest, tmp_path, suffix):
    """The header says int16 (every voxel finite), but the data ends early: training would crash."""
    rng = np.random.default_rng(0)
    write_nifti(tmp_path / f"short{suffix}", rng.integers(0, 1000, (8, 8, 8)).astype(np.int16))
    _truncate(tmp_path / f"short{suffix}")
    message = only_problem(make_manifest(edits={1: {"image": f"short{suffix}"}}))
    assert "line 3 (case_id 'k1')" in message and f"image file 'short{suffix}' is unreadable" in message
    assert ("EOFError" if suffix == ".nii.gz" else "OSError") in message and "\n" not in message
    assert "expected a complete NIfTI file" in message  # the voxels, not the header, are short


def test_truncated_mask_is_a_problem_by_row(make_manifest, tmp_path):
    path = make_manifest()
    _truncate(tmp_path / "k2_mask.nii.gz")
    message = only_problem(path)
    assert "line 4 (case_id 'k2')" in message and "mask file 'k2_mask.nii.gz' is unreadable" in message


@pytest.mark.parametrize("value", [0.0, 417.0])
def test_constant_image_is_refused(make_manifest, make_knee, value):
    image, _ = make_knee("flat", image=np.full((8, 8, 8), value, np.float32))
    message = only_problem(make_manifest(edits={0: {"image": image}}))
    assert "case_id 'k0'" in message and f"is constant (every voxel {value:g})" in message


def test_one_image_under_cases_in_train_and_test_is_leakage(make_manifest):
    # k0 is in train, k3 in test: both rows name k0's image
    message = only_problem(make_manifest(edits={3: {"image": "k0.nii.gz"}}))
    assert "line 5 (case_id 'k3')" in message and "split test" in message
    assert "same voxels as the image of line 2 (case_id 'k0') in split train" in message


def test_a_copy_of_an_image_in_another_split_is_leakage(make_manifest, tmp_path):
    path = make_manifest()
    write_nifti(tmp_path / "copy.nii", np.asanyarray(nib.load(tmp_path / "k1.nii.gz").dataobj))  # other bytes
    table = pd.read_csv(path, dtype=str, keep_default_na=False)
    table.loc[2, "image"] = "copy.nii"  # k2 (val) holds k1's (train) voxels
    table.to_csv(path, index=False)
    message = only_problem(path)
    assert "case_id 'k2'" in message and "line 3 (case_id 'k1') in split train" in message


def test_one_image_twice_within_a_split_is_a_warning(make_manifest):
    path = make_manifest(edits={1: {"image": "k0.nii.gz"}})  # k0 and k1 both in train
    with pytest.warns(UserWarning, match=r"line 3 \(case_id 'k1'\).*same voxels.*both in split train"):
        assert validate_manifest(path) == []


def test_decoding_is_cached_per_file_version(make_manifest, tmp_path, monkeypatch):
    """A second validation of unchanged files opens no NIfTI; a file rewritten in place is read again."""
    from oaprobe.data import fingerprint

    path = make_manifest()
    assert validate_manifest(path) == []
    fingerprint._open.clear()  # a new process: only the cache file is left
    opened: list[str] = []
    load = nib.load
    monkeypatch.setattr(nib, "load", lambda file, *a, **k: opened.append(Path(file).name) or load(file, *a, **k))
    assert validate_manifest(path) == [] and opened == []
    image = tmp_path / "k2.nii.gz"
    write_nifti(image, np.full((8, 8, 8), 3.0, np.float32))
    os.utime(image, ns=(image.stat().st_mtime_ns + 10**9,) * 2)  # a later time stamp, whatever the clock tick
    assert "is constant" in only_problem(path) and set(opened) == {"k2.nii.gz"}


def test_one_problem_is_one_line_and_a_file_in_the_manifest_path_is_named(tmp_path):
    (tmp_path / "cohort").write_text("a file")
    with pytest.raises(ManifestError) as info:
        read_manifest(tmp_path / "cohort" / "manifest.csv")
    assert str(info.value) == f"{tmp_path / 'cohort' / 'manifest.csv'}: manifest file does not exist " \
        f"({tmp_path / 'cohort'} is a file, not a folder)"


def test_file_given_where_a_folder_is_expected_in_a_path(make_manifest, tmp_path):
    (tmp_path / "scans").write_text("a file")
    message = only_problem(make_manifest(edits={0: {"image": "scans/k0.nii.gz"}}))
    assert "case_id 'k0'" in message and "image file 'scans/k0.nii.gz' not found" in message
    assert f"{tmp_path / 'scans'} is a file, not a folder" in message
