"""Tests of subject-grouped stratified splits and the leakage check."""

import numpy as np
import pandas as pd
import pytest

from oaprobe.data.splits import SplitLeakageError, assign_splits, carve_validation, check_leakage


def _knees(n_subjects: int, seed: int = 0) -> pd.DataFrame:
    """Subjects with one or two knees and a KL grade per knee (OAI-ZIB-like mix)."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n_subjects):
        kl = int(rng.choice(5, p=[0.2, 0.12, 0.22, 0.3, 0.16]))
        for side in ("L", "R")[: 1 + int(rng.random() < 0.5)]:
            rows.append({"subject_id": f"S{i:04d}", "side": side, "kl": kl})
    return pd.DataFrame(rows)


def test_subjects_never_straddle_splits():
    df = _knees(200)
    split = assign_splits(df, (0.6, 0.15, 0.25), seed=0, stratify_col="kl")
    assert split.index.equals(df.index) and set(split) == {"train", "val", "test"}
    assert (df.assign(split=split).groupby("subject_id")["split"].nunique() == 1).all()


def test_fractions_are_of_subjects():
    df = _knees(200)
    split = assign_splits(df, (0.6, 0.15, 0.25), seed=1, stratify_col="kl")
    per_subject = df.assign(split=split).groupby("subject_id")["split"].first().value_counts()
    assert per_subject.to_dict() == {"train": 120, "test": 50, "val": 30}


def test_strata_are_balanced_across_splits():
    df = _knees(400)
    split = assign_splits(df, (0.6, 0.15, 0.25), seed=0, stratify_col="kl")
    subj = df.assign(split=split).groupby("subject_id").agg(kl=("kl", "max"), split=("split", "first"))
    overall = subj["kl"].value_counts(normalize=True).sort_index()
    for name in ("train", "val", "test"):
        share = subj.loc[subj["split"] == name, "kl"].value_counts(normalize=True).sort_index()
        assert np.abs(share - overall).max() < 0.03, name


def test_deterministic_and_seed_dependent():
    df = _knees(100)
    a = assign_splits(df, (0.6, 0.15, 0.25), seed=3, stratify_col="kl")
    b = assign_splits(df, (0.6, 0.15, 0.25), seed=3, stratify_col="kl")
    c = assign_splits(df, (0.6, 0.15, 0.25), seed=4, stratify_col="kl")
    assert a.equals(b) and not a.equals(c)


def test_tiny_cohort_and_empty_split_still_work():
    df = _knees(7)
    split = assign_splits(df, (0.6, 0.15, 0.25), seed=0, stratify_col="kl")
    check_leakage(df.assign(split=split))
    assert split.notna().all()
    no_val = assign_splits(_knees(50), (0.8, 0.0, 0.2), seed=0, stratify_col=None)
    assert "val" not in set(no_val)


def test_bad_input_is_named():
    df = _knees(10)
    with pytest.raises(ValueError, match="fractions"):
        assign_splits(df, (0.5, 0.5, 0.5), seed=0, stratify_col="kl")
    with pytest.raises(ValueError, match="'site'"):
        assign_splits(df, (0.6, 0.2, 0.2), seed=0, stratify_col="site")
    with pytest.raises(ValueError, match="subject_id"):
        assign_splits(df.drop(columns="subject_id"), (0.6, 0.2, 0.2), seed=0, stratify_col="kl")


def test_leakage_names_the_subject():
    df = pd.DataFrame(
        {"subject_id": ["S1", "S1", "S2", "S3", "S3"], "split": ["train", "train", "val", "test", "train"]}
    )
    with pytest.raises(SplitLeakageError, match=r"subject 'S3' sits in splits \['test', 'train'\]"):
        check_leakage(df)
    check_leakage(df.iloc[:3])  # no leak: no error


def _release_like_table(n_train_subjects: int = 20, n_test_subjects: int = 6) -> pd.DataFrame:
    """Two knees a subject; train subjects' grades cycle 0-4; test knees untouched by a carve."""
    rows = []
    for s in range(n_train_subjects + n_test_subjects):
        split = "train" if s < n_train_subjects else "test"
        for side in ("L", "R"):
            rows.append({"case_id": f"k{s}{side}", "subject_id": f"S{s:02d}", "split": split, "kl": s % 5})
    return pd.DataFrame(rows)


def test_carve_validation_moves_whole_train_subjects_stratified_and_seeded():
    table = _release_like_table()
    split = carve_validation(table, 0.25, seed=3)
    moved = table[split == "val"]
    assert set(moved["split"]) == {"train"}  # only train knees move; test is kept
    assert (split[table["split"] == "test"] == "test").all()
    assert moved["subject_id"].nunique() == 5  # 25% of 20 subjects, both knees each
    assert len(moved) == 10
    assert sorted(moved.groupby("subject_id")["kl"].max()) == [0, 1, 2, 3, 4]  # one subject per grade
    check_leakage(table.assign(split=split))
    assert split.equals(carve_validation(table, 0.25, seed=3))
    assert not split.equals(carve_validation(table, 0.25, seed=4))


def test_carve_validation_keeps_one_subject_each_side_and_names_bad_input():
    table = _release_like_table(n_train_subjects=2)
    split = carve_validation(table, 0.01)
    assert (split == "val").sum() == 2 and (split == "train").sum() == 2
    with pytest.raises(ValueError, match="fraction"):
        carve_validation(table, 1.0)
    with pytest.raises(ValueError, match="1 train subject"):
        carve_validation(_release_like_table(n_train_subjects=1), 0.5)
