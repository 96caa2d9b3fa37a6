"""OAIZIB-CM import on a tiny fake copy in the release's layout (written by the test)."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from oaprobe.data.manifest import ManifestError, read_manifest, split_counts, validate_manifest
from oaprobe.data.oai import OAIImportError, case_number, import_oaizib, read_metadata
from oaprobe.errors import OaprobeError

from .fake_oai import COLUMNS, metadata_rows, write_release

# case number -> KL (NaN: not graded). Train 1-10, test 11-14, as imagesTr / imagesTs.
TRAIN_KL = {1: 0, 2: 1, 3: 2, 4: 3, 5: 4, 6: 0, 7: 2, 8: np.nan, 9: 3, 10: 1}
TEST_KL = {11: 0, 12: 2, 13: np.nan, 14: 4}


def _subject(n: int) -> int:
    return 9000000 + (9 if n == 10 else n)  # cases 9 and 10: both knees of one subject


@pytest.fixture
def release(tmp_path: Path) -> Path:
    """A fake OAIZIB-CM folder: tiny volumes, label maps and the two subInfo xlsx tables."""
    return write_release(tmp_path / "OAIZIB-CM", TRAIN_KL, TEST_KL, _subject)


def _import(release: Path, out: Path, **kwargs) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return import_oaizib(release, out, **kwargs)


def test_case_number_from_file_names():
    assert case_number("imagesTr/oaizib_001_0000.nii.gz") == 1
    assert case_number("labelsTs/oaizib_405.nii.gz") == 405
    with pytest.raises(OAIImportError, match="case number"):
        case_number("knee.nii.gz")


def test_reference_split_keeps_release_split_and_skips_ungraded(release, tmp_path):
    out = tmp_path / "data" / "oaizib" / "manifest.csv"
    with pytest.warns(UserWarning, match=r"skipped 2 knee\(s\): 2 without a KL grade"):
        import_oaizib(release, out)
    table = read_manifest(out)  # validates, volumes included
    assert len(table) == 12
    assert table.groupby("split").size().to_dict() == {"test": 3, "train": 9}
    assert set(table.loc[table["split"] == "test", "case_id"]) == {"oaizib_011", "oaizib_012", "oaizib_014"}
    assert "oaizib_008" not in set(table["case_id"]) and "oaizib_013" not in set(table["case_id"])


def test_labels_subjects_and_sides_come_from_metadata(release, tmp_path):
    table = read_manifest(_import(release, tmp_path / "m.csv"))
    row = table.set_index("case_id").loc["oaizib_004"]
    assert (row["kl"], row["oa"], row["subject_id"], row["side"]) == (3, 1, "9000004", "L")
    assert table.set_index("case_id").loc["oaizib_003", "side"] == "R"
    expected = {f"oaizib_{n:03d}": int(k) for n, k in {**TRAIN_KL, **TEST_KL}.items() if k == k}
    assert dict(zip(table["case_id"], table["kl"])) == expected
    assert (table["oa"] == (table["kl"] >= 2)).all()


def test_paths_are_relative_to_manifest_folder(release, tmp_path):
    out = _import(release, tmp_path / "deep" / "er" / "manifest.csv")
    raw = pd.read_csv(out)
    assert raw.loc[0, "image"] == "../../OAIZIB-CM/imagesTr/oaizib_001_0000.nii.gz"
    assert raw.loc[0, "mask"] == "../../OAIZIB-CM/labelsTr/oaizib_001.nii.gz"
    assert validate_manifest(out) == []


def test_csv_metadata_passed_explicitly(release, tmp_path):
    table = pd.DataFrame(metadata_rows({**TRAIN_KL, **TEST_KL}, _subject), columns=COLUMNS)
    table = table.rename(columns={"KLGrade": "KL", "CMT-ID": "case_id"}).drop(columns=["KneeSide"])
    table.to_csv(tmp_path / "kl.csv", index=False)
    with pytest.warns(UserWarning) as record:
        out = import_oaizib(release, tmp_path / "m.csv", metadata=tmp_path / "kl.csv")
    assert any("written as 'R'" in str(w.message) for w in record)
    manifest = read_manifest(out)
    assert len(manifest) == 12 and set(manifest["side"]) == {"R"}


def test_read_metadata_concatenates_xlsx_tables(release):
    meta = read_metadata(release)
    assert len(meta) == 14 and meta["kl"].isna().sum() == 2
    assert meta.set_index("cmt_id").loc[12, "subject_id"] == "9000012"


def test_missing_folder(tmp_path):
    with pytest.raises(OAIImportError, match="does not exist"):
        import_oaizib(tmp_path / "nowhere", tmp_path / "m.csv")


def test_folder_without_release_layout_hints_at_zips(tmp_path):
    (tmp_path / "imagesTr.zip").write_bytes(b"")
    with pytest.raises(OAIImportError, match=r"no imagesTr/ or imagesTs/.*imagesTr.zip.*extract"):
        import_oaizib(tmp_path, tmp_path / "m.csv")


def test_missing_kl_column(release, tmp_path):
    pd.DataFrame({"CMT-ID": [1, 2], "Grade": [0, 1]}).to_csv(tmp_path / "meta.csv", index=False)
    with pytest.raises(OAIImportError, match=r"meta.csv: no KL grade column.*columns found: CMT-ID, Grade"):
        import_oaizib(release, tmp_path / "m.csv", metadata=tmp_path / "meta.csv")


def test_kl_out_of_range_in_metadata(release, tmp_path):
    pd.DataFrame({"CMT-ID": [1, 2], "KLGrade": [0, 7]}).to_csv(tmp_path / "meta.csv", index=False)
    with pytest.raises(OAIImportError, match=r"row 3 \(CMT-ID 2\): KLGrade = 7; expected an integer 0-4"):
        import_oaizib(release, tmp_path / "m.csv", metadata=tmp_path / "meta.csv")


def test_image_without_label_map(release, tmp_path):
    (release / "labelsTs" / "oaizib_012.nii.gz").unlink()
    with pytest.raises(OAIImportError, match=r"1 image\(s\) without a label map: imagesTs/oaizib_012_0000.nii.gz"):
        import_oaizib(release, tmp_path / "m.csv")


def test_missing_metadata_table(release, tmp_path):
    for table in release.glob("subInfo*"):
        table.unlink()
    with pytest.raises(OAIImportError, match=r"no metadata table.*; pass --metadata PATH"):
        import_oaizib(release, tmp_path / "m.csv")


def test_stratified_split_is_subject_grouped_and_deterministic(release, tmp_path):
    first = read_manifest(_import(release, tmp_path / "a.csv", split="stratified", seed=3))
    again = read_manifest(_import(release, tmp_path / "b.csv", split="stratified", seed=3))
    assert first["split"].tolist() == again["split"].tolist()
    assert set(first["split"]) == {"train", "val", "test"} and len(first) == 12
    by_case = first.set_index("case_id")
    assert by_case.loc["oaizib_009", "subject_id"] == by_case.loc["oaizib_010", "subject_id"] == "9000009"
    assert by_case.loc["oaizib_009", "split"] == by_case.loc["oaizib_010", "split"]
    # 11 subjects at 70/10/20 %: round(0.2 * 11) = 2 test subjects, round(0.1 * 11) = 1 val subject
    subjects = first.drop_duplicates("subject_id")["split"].value_counts().to_dict()
    assert subjects == {"train": 8, "val": 1, "test": 2}


def test_unknown_split_mode(release, tmp_path):
    with pytest.raises(OAIImportError, match="expected 'reference' or 'stratified'"):
        import_oaizib(release, tmp_path / "m.csv", split="random")


def test_import_errors_are_oaprobe_errors():
    assert issubclass(OAIImportError, OaprobeError) and issubclass(OAIImportError, ValueError)
    with pytest.raises(OaprobeError):
        case_number("knee.nii.gz")


def _leak_subject_across_release_splits(release: Path) -> None:
    """Give test case 11 the subject of train case 1: the reference split would put it in both."""
    rows = metadata_rows(TEST_KL, _subject)
    rows[0][0] = _subject(1)
    pd.DataFrame(rows, columns=COLUMNS).to_excel(release / "subInfo_test.xlsx", index=False)


def test_failed_import_leaves_nothing_at_out(release, tmp_path):
    _leak_subject_across_release_splits(release)
    out = tmp_path / "out" / "manifest.csv"
    with pytest.raises(ManifestError, match=r"subject_id '9000001' appears in splits \['test', 'train'\]") as info:
        _import(release, out)
    assert list(out.parent.iterdir()) == []  # no manifest and no temporary file
    assert isinstance(info.value, OaprobeError) and info.value.path == out
    assert all(p.startswith(f"{out}: ") for p in info.value.problems)  # the final name, not the temporary one


def test_failed_import_keeps_a_previous_manifest(release, tmp_path):
    out = _import(release, tmp_path / "manifest.csv")
    before = out.read_bytes()
    _leak_subject_across_release_splits(release)
    with pytest.raises(ManifestError):
        _import(release, out)
    assert out.read_bytes() == before and not list(tmp_path.glob("*.tmp"))


def test_out_is_a_directory(release, tmp_path):
    with pytest.raises(OAIImportError, match=r"\(--out\) is a directory; expected the path of a CSV file"):
        _import(release, tmp_path)


def test_out_cannot_be_written(release, tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(OAIImportError, match=r"cannot write .*file/m.csv.* \(--out\)"):
        _import(release, tmp_path / "file" / "m.csv")


def test_split_counts_of_the_imported_manifest(release, tmp_path):
    assert split_counts(_import(release, tmp_path / "m.csv")) == {"train": 9, "val": 0, "test": 3}


def test_cli_import_prints_the_knees_per_split(release, tmp_path, capsys):
    from oaprobe import cli

    out = tmp_path / "m" / "manifest.csv"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert cli.main(["import-oai", str(release), "--out", str(out)]) == 0
    printed = capsys.readouterr()
    assert printed.out.strip() == str(out)
    assert "wrote 12 knees (train 9, val 0, test 3)" in printed.err


def test_cli_import_error_is_one_line_exit_2(release, tmp_path, capsys):
    from oaprobe import cli

    (release / "subInfo_train.xlsx").unlink()
    (release / "subInfo_test.xlsx").unlink()
    out = tmp_path / "manifest.csv"
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["import-oai", str(release), "--out", str(out)])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "--metadata" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1 and not out.exists()
