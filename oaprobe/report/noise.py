"""The label-noise experiment: the same knees relabelled at several noise strengths.

Only the synthetic cohort can do this: the volumes stay identical across strengths (the cohort
builder shares them), the observed grades change, and every model is scored against the clean
grade. The question is whether the dual-head gain over single-label training grows with noise.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats
from sklearn.metrics import cohen_kappa_score

from oaprobe.config import DEFAULT_COHORTS, DEFAULT_RUNS, get_preset
from oaprobe.report.display import MODE_NAMES, readable_name
from oaprobe.report.sentences import LOWER_IS_BETTER, describe_convergence, describe_trend, plural, signed
from oaprobe.report.stated import mark, stat_key
from oaprobe.report.study import Study
from oaprobe.sweep import noise_grid, preset_manifest

#: Metrics compared across noise levels, with the single-label baseline each is compared to.
GAIN_METRICS = {"kl_qwk": "single_kl", "kl_accuracy": "single_kl", "oa_roc_auc": "single_oa"}
#: The gains the chapter's opening box states (the fine and the coarse question).
FINDING_METRICS = ("kl_qwk", "oa_roc_auc")


@dataclass
class NoiseStudy:
    """One Study per label-noise strength, first backbone of the preset, every mode and seed."""

    preset: str
    backbone: str
    studies: dict[float, Study]

    @classmethod
    def load(cls, preset: str = "default", runs_root: str | Path = DEFAULT_RUNS,
             cohorts_root: str | Path = DEFAULT_COHORTS, **overrides: Any) -> NoiseStudy:
        """Read the noise chapter's finished runs at every strength (never trains); ``overrides``
        are RunConfig fields that differ from the preset's, as for :meth:`Study.load`."""
        p = get_preset(preset)
        backbone = p.backbones[0]
        studies = {}
        for lvl in p.label_noise_levels:
            manifest = preset_manifest(preset, Path(cohorts_root), lvl, progress=False)
            studies[lvl] = Study.from_grid(preset, manifest, noise_grid(manifest, preset, **overrides), runs_root)
        return cls(preset, backbone, studies)

    def label_agreement(self) -> pd.DataFrame:
        """Per noise strength: kappa(clean, observed), KL and OA flip rates."""
        rows = []
        for lvl, s in self.studies.items():
            clean, obs = s.table["kl_clean"].astype(int), s.table["kl"].astype(int)
            rows.append({"label_noise": lvl, "kappa": cohen_kappa_score(clean, obs), "kl_flip_rate": (clean != obs).mean(),
                         "oa_flip_rate": ((clean >= 2) != (obs >= 2)).mean(), "knees": len(s.table)})
        return pd.DataFrame(rows)

    def point_metrics(self, truth: str = "kl_clean") -> pd.DataFrame:
        return pd.concat([s.point_metrics(truth=truth).assign(label_noise=lvl) for lvl, s in self.studies.items()],
                         ignore_index=True)

    def curve(self, truth: str = "kl_clean") -> pd.DataFrame:
        """Mean and sd over seeds of every metric, per noise strength and mode."""
        pm = self.point_metrics(truth)
        return pm.groupby(["label_noise", "mode", "metric"])["value"].agg(["mean", "std", "count"]).rename(
            columns={"std": "sd", "count": "n_seeds"}).reset_index()

    def _gains(self, truth: str) -> pd.DataFrame:
        pm = self.point_metrics(truth)
        wide = pm.pivot_table(index=["label_noise", "seed", "metric"], columns="mode", values="value").reset_index()
        rows = []
        for metric, base in GAIN_METRICS.items():
            t = wide[wide["metric"] == metric]
            if "dual" not in t or base not in t:
                continue
            rows.append(pd.DataFrame({"label_noise": t["label_noise"], "seed": t["seed"], "metric": metric,
                                      "comparison": f"dual − {base}: {metric}", "gain": t["dual"] - t[base]}))
        return pd.concat(rows, ignore_index=True)

    def gain(self, truth: str = "kl_clean") -> pd.DataFrame:
        """Dual minus single per noise strength: mean and sd over seeds; ``subject``: the stated
        quantity's backbone and cohort (:func:`cohort_subject`)."""
        g = self._gains(truth)
        out = g.groupby(["comparison", "metric", "label_noise"])["gain"].agg(["mean", "std", "count"]).rename(
            columns={"std": "sd", "count": "n_seeds"}).reset_index()
        own = get_preset(self.preset).cohort.label_noise
        return out.assign(subject=[cohort_subject(self.backbone, lvl, own) for lvl in out["label_noise"]])

    def trend(self, truth: str = "kl_clean", alpha: float = 0.05) -> pd.DataFrame:
        """Least-squares slope of the per-seed gain on noise strength (scipy), one family: Bonferroni over
        the chapter's trends (``m``), so the interval is the ``1 - alpha/m`` one and ``p_adjusted`` is
        ``min(1, m p)``; ``verdict``: grows / shrinks (the interval excludes 0) or inconclusive."""
        groups = list(self._gains(truth).groupby(["comparison", "metric"], sort=False))
        m = max(len(groups), 1)
        rows = []
        for (comparison, metric), g in groups:
            x, y = g["label_noise"].to_numpy(float), g["gain"].to_numpy(float)
            row = {"comparison": comparison, "metric": metric, "backbone": self.backbone, "baseline": GAIN_METRICS[metric], "n_gains": len(x),
                   "n_levels": int(np.unique(x).size), "n_seeds": int(g["seed"].nunique()), "m": m, "alpha": alpha / m}
            if np.unique(x).size < 2 or len(x) < 3:
                rows.append({**row, "slope": np.nan, "ci_low": np.nan, "ci_high": np.nan, "p": np.nan,
                             "p_adjusted": np.nan, "verdict": "inconclusive"})
                continue
            fit = stats.linregress(x, y)
            half = stats.t.ppf(1 - alpha / m / 2, len(x) - 2) * fit.stderr
            lo, hi = fit.slope - half, fit.slope + half
            decided = lo > 0 or hi < 0
            grows = decided and (lo > 0) != (metric in LOWER_IS_BETTER)
            rows.append({**row, "slope": fit.slope, "ci_low": lo, "ci_high": hi, "p": fit.pvalue,
                         "p_adjusted": min(1.0, fit.pvalue * m),
                         "verdict": ("grows" if grows else "shrinks") if decided else "inconclusive"})
        return pd.DataFrame(rows)

    @staticmethod
    def describe_trend(trend: pd.DataFrame) -> list[str]:
        return [describe_trend(r) for _, r in trend.iterrows()]

    def convergence(self) -> pd.DataFrame:
        """:meth:`Study.convergence` of every strength's runs, with a ``label_noise`` column: which
        runs of the chapter are flagged, so none is averaged in unseen."""
        return pd.concat([s.convergence().assign(label_noise=lvl) for lvl, s in self.studies.items()],
                         ignore_index=True)

    def provenance(self) -> str:
        return " ".join(f"Noise {lvl}: {s.provenance()}" for lvl, s in self.studies.items())


def cohort_subject(backbone: str, level: float, own: float) -> str:
    """How a stated quantity names the backbone's runs at noise ``level`` (the main cohort's at ``own``,
    the noise-free cohort at 0), so the same runs carry the same key on every page."""
    if level == own:
        return backbone
    return f"{backbone} (noise-free cohort)" if level == 0 else f"{backbone} (noise {level:g} cohort)"


def describe_agreement(agreement: pd.DataFrame) -> str:
    """One sentence on :meth:`NoiseStudy.label_agreement` at its strongest noise: how much the labels change."""
    row = agreement.loc[agreement["label_noise"].idxmax()]
    return (f"At the strongest label noise (strength {row['label_noise']:g}) observed and clean KL grades agree with kappa "
            f"{row['kappa']:.3f}: {row['kl_flip_rate']:.1%} of the {int(row['knees'])} knees change KL grade and "
            f"{row['oa_flip_rate']:.1%} change OA label.")


def _mean_sd_signed(mean: float, sd: float) -> str:
    return signed(mean) + (f" ± {sd:.3f}" if np.isfinite(sd) else "")


def describe_gain(gain: pd.DataFrame, metric: str) -> str | None:
    """One sentence on :meth:`NoiseStudy.gain` for ``metric``: the dual-head gain at the weakest and the strongest noise."""
    g = gain[gain["metric"] == metric].sort_values("label_noise")
    if g.empty:
        return None
    lo, hi = g.iloc[0], g.iloc[-1]
    seeds = "/".join(str(int(n)) for n in sorted(set(g["n_seeds"])))
    return (f"Dual minus {MODE_NAMES[GAIN_METRICS[metric]]} on {readable_name(metric)} against the clean grade: "
            f"{_mean_sd_signed(lo['mean'], lo['sd'])} at noise {lo['label_noise']:g} and "
            f"{_mean_sd_signed(hi['mean'], hi['sd'])} at noise {hi['label_noise']:g} "
            f"(over {plural(int(seeds), 'seed') if '/' not in seeds else seeds + ' seeds'})."
            + "".join(_gain_mark(r, metric) for r in (lo, hi)))


def _gain_mark(row: pd.Series, metric: str) -> str:
    """The stated mean gain of one row of :meth:`NoiseStudy.gain` (no mark without its ``subject``)."""
    if "subject" not in row:
        return ""
    key = stat_key(str(row["subject"]), "dual", GAIN_METRICS[metric], metric, "kl_clean", int(row["n_seeds"]))
    return mark(key + " | mean", signed(float(row["mean"])))


def describe_noise_convergence(conv: pd.DataFrame) -> str:
    """:func:`describe_convergence` of :meth:`NoiseStudy.convergence`, saying at which strengths
    the flagged runs are."""
    text = describe_convergence(conv)
    per = conv.groupby("label_noise")["flagged"].agg(["sum", "size"])
    where = [f"{int(r['sum'])} of {int(r['size'])} at noise {lvl:g}" for lvl, r in per.iterrows() if r["sum"]]
    return f"{text[:-1]} (the flagged runs: {', '.join(where)})." if where else text


def noise_findings(agreement: pd.DataFrame, gain: pd.DataFrame, trend: pd.DataFrame) -> list[str]:
    """The chapter's opening bullets: label agreement, the fine and coarse gains, and every trend the
    chapter fits (its family, so a decided one is never left out), or why none can be fitted."""
    out = [describe_agreement(agreement)] if len(agreement) else []
    out += [s for s in (describe_gain(gain, m) for m in FINDING_METRICS) if s]
    fitted = trend[np.isfinite(trend["slope"].astype(float))] if len(trend) else trend
    if len(fitted):
        out += [describe_trend(r) for _, r in fitted.iterrows()]
    elif len(trend):
        levels = gain["label_noise"].nunique()
        out.append(f"No trend of the gain on noise strength can be fitted: {int(trend['n_gains'].max())} per-seed gains at "
                   f"{plural(levels, 'strength')} per comparison (a slope needs at least 3 at 2 or more strengths).")
    return out
