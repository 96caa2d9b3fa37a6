"""Subject-grouped, stratified train / val / test splits, and a leakage check.

Both knees of one person must sit in the same split, or a model could be tested on the twin
of a knee it was trained on. Splits are therefore drawn over subjects (with scikit-learn's
stratified ``train_test_split``), stratified by a per-subject value (the largest value of
``stratify_col`` over the subject's knees, e.g. the worst clean KL grade). When a split is
too small to hold every stratum, neighbouring strata (in sorted order) are merged until the
stratification is possible, so even tiny cohorts split.

Example:
    >>> import pandas as pd
    >>> df = pd.DataFrame({"subject_id": [f"S{i // 2}" for i in range(40)],
    ...                    "kl": [i % 5 for i in range(40)]})
    >>> split = assign_splits(df, (0.6, 0.2, 0.2), seed=0, stratify_col="kl")
    >>> split.value_counts().sort_index().to_dict()
    {'test': 8, 'train': 24, 'val': 8}
    >>> check_leakage(df.assign(split=split))
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

from oaprobe.errors import OaprobeError


class SplitLeakageError(OaprobeError, ValueError):
    """A subject's knees sit in more than one split."""


def _merge_small_strata(strata: pd.Series, min_count: int, max_classes: int) -> pd.Series:
    """Merge the smallest stratum into its sorted neighbour until all are large enough."""
    codes = pd.Series(pd.factorize(strata, sort=True)[0], index=strata.index)
    while codes.nunique() > 1:
        counts = codes.value_counts().sort_index()
        if counts.min() >= min_count and len(counts) <= max_classes:
            break
        order = list(counts.index)
        i = order.index(counts.idxmin())
        j = i + 1 if i == 0 else i - 1
        if 0 < i < len(order) - 1 and counts[order[i + 1]] < counts[order[i - 1]]:
            j = i + 1
        codes = codes.replace(order[i], order[j])
    return codes


def _stratified_take(ids: np.ndarray, strata: pd.Series, n_take: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split ``ids`` into (rest, taken) with ``n_take`` taken, stratified where possible."""
    if n_take <= 0:
        return ids, ids[:0]
    if n_take >= len(ids):
        return ids[:0], ids
    max_classes = min(n_take, len(ids) - n_take)
    codes = _merge_small_strata(strata.loc[ids], 2, max_classes)
    stratify = codes.to_numpy() if codes.nunique() > 1 else None
    rest, taken = train_test_split(ids, test_size=n_take, random_state=seed, stratify=stratify)
    return np.sort(rest), np.sort(taken)


def assign_splits(
    subjects_df: pd.DataFrame,
    fractions: Sequence[float] = (0.6, 0.15, 0.25),
    seed: int = 0,
    stratify_col: str | None = "kl",
) -> pd.Series:
    """Assign ``train`` / ``val`` / ``test`` to every row so that subjects never straddle splits.

    Args:
        subjects_df: one row per knee (or per subject) with a ``subject_id`` column.
        fractions: train, val and test fractions of SUBJECTS (>= 0, summing to 1).
        seed: random state of the split (same inputs and seed -> same split).
        stratify_col: column to stratify on (per subject: its maximum over the subject's
            rows); ``None`` for an unstratified split.

    Returns:
        A Series of split names aligned with ``subjects_df.index``, named ``"split"``.

    Raises:
        ValueError: naming the missing column or the bad fractions.
    """
    if "subject_id" not in subjects_df.columns:
        raise ValueError(f"assign_splits: column 'subject_id' missing; columns are {list(subjects_df.columns)}")
    if stratify_col is not None and stratify_col not in subjects_df.columns:
        raise ValueError(f"assign_splits: stratify_col {stratify_col!r} is not a column of the table")
    frac = np.asarray(fractions, dtype=float)
    if frac.shape != (3,) or (frac < 0).any() or abs(frac.sum() - 1) > 1e-6:
        raise ValueError(f"assign_splits: fractions = {tuple(fractions)}; expected 3 values >= 0 summing to 1")
    if subjects_df["subject_id"].isna().any():
        raise ValueError("assign_splits: subject_id has missing values")

    grouped = subjects_df.groupby("subject_id", sort=True)
    ids = np.asarray(sorted(grouped.groups), dtype=object)
    if stratify_col is None:
        strata = pd.Series(0, index=ids)
    else:
        strata = grouped[stratify_col].max().reindex(ids)

    n = len(ids)
    n_test = int(round(frac[2] * n))
    n_val = int(round(frac[1] * n))
    if n_test + n_val > n:
        n_val = n - n_test
    rest, test = _stratified_take(ids, strata, n_test, seed)
    train, val = _stratified_take(rest, strata, n_val, seed + 1)

    per_subject = {**{s: "train" for s in train}, **{s: "val" for s in val}, **{s: "test" for s in test}}
    return subjects_df["subject_id"].map(per_subject).rename("split")


def check_leakage(df: pd.DataFrame) -> None:
    """Raise :class:`SplitLeakageError` if any subject_id appears in more than one split.

    The message names the first offending subject and its splits, e.g.
    ``subject 'S0007' sits in splits ['test', 'train']``.
    """
    for col in ("subject_id", "split"):
        if col not in df.columns:
            raise ValueError(f"check_leakage: column {col!r} missing; columns are {list(df.columns)}")
    n_splits = df.groupby("subject_id")["split"].nunique()
    leaking = n_splits[n_splits > 1]
    if len(leaking):
        subject = leaking.index[0]
        splits = sorted(df.loc[df["subject_id"] == subject, "split"].unique().tolist())
        more = f" (and {len(leaking) - 1} more subjects)" if len(leaking) > 1 else ""
        raise SplitLeakageError(f"subject {subject!r} sits in splits {splits}{more}; both knees of a subject must share a split")


def carve_validation(table: pd.DataFrame, fraction: float, seed: int = 0, stratify_col: str | None = "kl") -> pd.Series:
    """Move ``fraction`` of the TRAIN subjects (all their knees) to ``val``; other splits are kept.

    For a manifest without validation knees (the OAIZIB-CM release split has none): the subjects
    are drawn as in :func:`assign_splits` (grouped, stratified by each subject's largest
    ``stratify_col``, seeded), so the same table and seed always give the same split. At least one
    subject moves, and at least one stays in train.

    Raises:
        ValueError: naming the bad fraction, or a table with fewer than two train subjects.
    """
    if not 0 < fraction < 1:
        raise ValueError(f"carve_validation: fraction = {fraction!r}; expected a value in (0, 1)")
    train = table[table["split"] == "train"]
    ids = np.asarray(sorted(train["subject_id"].unique()), dtype=object)
    if len(ids) < 2:
        raise ValueError(f"carve_validation: {len(ids)} train subject(s); a validation split needs at least 2")
    strata = pd.Series(0, index=ids) if stratify_col is None else train.groupby("subject_id")[stratify_col].max().reindex(ids)
    n_val = min(max(1, int(round(fraction * len(ids)))), len(ids) - 1)
    _, val = _stratified_take(ids, strata, n_val, seed)
    return table["split"].where(~table["subject_id"].isin(set(val)), "val").rename("split")


def split_note_path(manifest: str | Path) -> Path:
    """Where a derived manifest's note on how its split was made lives: ``<manifest>.json``."""
    return Path(manifest).with_suffix(".json")


def read_split_note(manifest: str | Path) -> dict | None:
    """The note :func:`oaprobe.book.validation_manifest` wrote next to ``manifest``, or None."""
    path = split_note_path(manifest)
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
