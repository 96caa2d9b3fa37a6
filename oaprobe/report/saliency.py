"""Which saliency maps the book may state findings from: the randomisation and deletion verdicts.

Why: a map that barely changes when the model's weights are replaced by random ones shows the
input, not what the model learned (Adebayo et al. 2018), so its overlap with the cartilage is
no finding about the model. The chapter shows such a method's overlap numbers marked "not
trustworthy" and states findings only from methods that pass.

Example:
    >>> import pandas as pd
    >>> s = pd.DataFrame({"backbone": "r", "mode": "dual", "method": ["smoothgrad"] * 2 + ["gradcam"] * 2,
    ...                   "step": [0, 3, 0, 3], "layer": "x", "spearman": [1.0, 0.5, 1.0, 0.1], "sd": 0.0, "n": 2})
    >>> randomisation_verdicts(s)[["method", "passes"]].values.tolist()
    [['smoothgrad', False], ['gradcam', True]]
"""

from __future__ import annotations

import math

import pandas as pd
from scipy.stats import binomtest

#: A method passes the randomisation check when the mean rank correlation (Spearman, over knees and
#: targets) between the trained model's map and the fully randomised model's map is below this.
#: Why 0.3: below it the two maps share under 9% of their rank variance (rho^2), the usual bound of
#: a "weak" correlation; a gradient x input map that mostly shows the input stays well above it.
RANDOMISATION_MAX_RHO: float = 0.3
#: The deletion check's one-sided sign test (salient-first deletion lowers the score faster than
#: random deletion in more knee-targets than chance) at this level.
DELETION_ALPHA: float = 0.05
NOT_TRUSTWORTHY = "not trustworthy"


def min_deletion_cases(alpha: float = DELETION_ALPHA) -> int:
    """The fewest knee-targets with which the sign test can reach ``alpha`` at all (every one
    faster: p = 0.5^n), 5 at 0.05; with fewer the deletion check has no verdict."""
    return math.ceil(math.log2(1 / alpha))


def randomisation_verdicts(summary: pd.DataFrame, max_rho: float = RANDOMISATION_MAX_RHO) -> pd.DataFrame:
    """Per backbone, mode and method (rows of :meth:`Study.sanity_summary`): the rank correlation at
    the last (fully randomised) step, whether it is below ``max_rho`` (``passes``) and why."""
    if summary.empty:
        return pd.DataFrame(columns=["backbone", "mode", "method", "spearman", "passes", "reason"])
    keys = ["backbone", "mode", "method"]
    last = summary[summary["step"] == summary.groupby(keys)["step"].transform("max")]
    out = last[keys + ["spearman"]].reset_index(drop=True)
    out["passes"] = out["spearman"].abs() < max_rho
    out["reason"] = [f"rank correlation with the fully randomised model {r:+.2f}, "
                     f"{'below' if ok else 'not below'} {max_rho:g}" for r, ok in zip(out["spearman"], out["passes"])]
    return out


def deletion_verdicts(auc: pd.DataFrame, alpha: float = DELETION_ALPHA) -> pd.DataFrame:
    """Per backbone, mode and method (rows of :meth:`Study.saliency_deletion`): knee-targets, how
    many deleted salient-first fall faster, the sign test's p and a verdict ("faithful", "not
    shown faithful", or "too few knees" below :func:`min_deletion_cases`)."""
    rows = []
    for (bb, mode, method), g in auc.dropna(subset=["auc_gap"]).groupby(["backbone", "mode", "method"], sort=False):
        n, k = len(g), int((g["auc_gap"] > 0).sum())
        p = float(binomtest(k, n, 0.5, alternative="greater").pvalue)
        verdict = "too few knees" if n < min_deletion_cases(alpha) else ("faithful" if p < alpha else "not shown faithful")
        rows.append({"backbone": bb, "mode": mode, "method": method, "n": n, "faster": k, "p_sign": p, "verdict": verdict})
    return pd.DataFrame(rows, columns=["backbone", "mode", "method", "n", "faster", "p_sign", "verdict"])


def mark_trust(table: pd.DataFrame, verdicts: pd.DataFrame, method: str | None = None) -> pd.DataFrame:
    """``table`` with a ``trust`` column: "not trustworthy" on rows whose backbone, mode and method
    (``method`` when the table has none) fail the randomisation check or were never checked."""
    if table.empty:
        return table.assign(trust=pd.Series(dtype=object))
    t = table if "method" in table else table.assign(method=method)
    passed = {tuple(r) for r in verdicts.loc[verdicts["passes"], ["backbone", "mode", "method"]].itertuples(index=False)}
    trust = [("passes the randomisation check" if (bb, m, me) in passed else NOT_TRUSTWORTHY)
             for bb, m, me in zip(t["backbone"], t["mode"], t["method"])]
    return table.assign(trust=trust)


def trusted(table: pd.DataFrame, verdicts: pd.DataFrame, method: str | None = None) -> pd.DataFrame:
    """The rows of ``table`` the chapter may state findings from (see :func:`mark_trust`)."""
    marked = mark_trust(table, verdicts, method)
    return table[(marked["trust"] != NOT_TRUSTWORTHY).to_numpy()] if len(table) else table


def gate_sentences(verdicts: pd.DataFrame) -> list[str]:
    """One sentence per method that fails the randomisation check in some model: its numbers are no finding."""
    from oaprobe.report.display import METHOD_NAMES, readable_text

    out = []
    for method, g in verdicts.groupby("method", sort=False):
        failed = g[~g["passes"]]
        if failed.empty:
            continue
        which = "every model" if len(failed) == len(g) else f"{len(failed)} of {len(g)} models"
        out.append(f"{METHOD_NAMES.get(method, readable_text(method))} fails the randomisation check in {which} "
                   f"(rank correlation with the fully randomised model {failed['spearman'].min():+.2f} to "
                   f"{failed['spearman'].max():+.2f}, not below {RANDOMISATION_MAX_RHO:g}): its overlap numbers "
                   f"are shown as {NOT_TRUSTWORTHY} and are not findings about the models.")
    return out
