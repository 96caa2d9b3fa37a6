"""Manifest validation: one test per bad input, each message naming the row and the problem."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from oaprobe.data.manifest import (
    OPTIONAL_COLUMNS,
    REQUIRED_COLUMNS,
    ManifestError,
    manifest_hash,
    read_manifest,
    validate_manifest,
    write_manifest,
)

from .conftest import planted_mask


def only_problem(path: Path) -> str:
    problems = validate_manifest(path)
    assert len(problems) == 1, problems
    assert str(path) in problems[0]
    return problems[0]


def test_valid_manifest_has_no_problems(make_manifest):
    assert validate_manifest(make_manifest()) == []


def test_columns_follow_architecture():
    assert REQUIRED_COLUMNS == ("case_id", "subject_id", "side", "split", "image", "mask", "kl", "oa")
    assert set(OPTIONAL_COLUMNS) == {"kl_clean", "lesion", "severity", "site", "visit"}


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
