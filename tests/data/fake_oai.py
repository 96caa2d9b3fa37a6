"""A fake OAIZIB-CM copy in the release's layout: tiny volumes, label maps and subInfo xlsx tables."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from .conftest import planted_mask, write_nifti

COLUMNS = ["SubjectID", "CMT-ID", "Path", "MRBarCode", "KneeSide", "KLGrade", "Gender", "Age", "BMI"]


def write_release(root: Path, train_kl: dict[int, float], test_kl: dict[int, float], subject: Callable[[int], int],
                  shape: tuple[int, int, int] = (6, 6, 6)) -> Path:
    """Write ``root`` (case number -> KL grade, NaN = not graded, per release split) and return it."""
    rng = np.random.default_rng(0)
    for numbers, images, labels, table in ((train_kl, "imagesTr", "labelsTr", "subInfo_train.xlsx"),
                                          (test_kl, "imagesTs", "labelsTs", "subInfo_test.xlsx")):
        for n in numbers:
            write_nifti(root / images / f"oaizib_{n:03d}_0000.nii.gz", rng.standard_normal(shape).astype(np.float32))
            write_nifti(root / labels / f"oaizib_{n:03d}.nii.gz", planted_mask(shape))
        pd.DataFrame(metadata_rows(numbers, subject), columns=COLUMNS).to_excel(root / table, index=False)
    return root


def metadata_rows(kl: dict[int, float], subject: Callable[[int], int]) -> list[list]:
    """Rows of a subInfo table (``COLUMNS``) for case number -> KL grade."""
    return [[subject(n), n, f"0.C.2/{9000000 + n}/20050101/1000{n:04d}", 16600000000 + n, 1 + (n % 2 == 0),
             grade, 1, 60, 25.0] for n, grade in kl.items()]


def import_fake_copy(folder: Path) -> Path:
    """A 60-knee fake copy (30 subjects, grades cycling 0-4) imported with the default (release)
    split into ``folder/oai/manifest.csv``: 40 train and 20 test knees, no validation knees."""
    import warnings

    from oaprobe.data.oai import import_oaizib

    train = {n: n % 5 for n in range(1, 41)}
    test = {n: n % 5 for n in range(41, 61)}
    root = write_release(folder / "OAIZIB-CM", train, test, subject=lambda n: 9000000 + (n + 1) // 2, shape=(8, 8, 8))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the fake metadata has no knee side for some cases
        return import_oaizib(root, folder / "oai" / "manifest.csv")
