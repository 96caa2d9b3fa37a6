"""Tests of subject-grouped stratified splits and the leakage check."""

import numpy as np
import pandas as pd
import pytest

from oaprobe.data.splits import SplitLeakageError, assign_splits, check_leakage


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
