"""Teaching exercises whose answers are computed from runs of the same build."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from IPython.display import Markdown
from scipy import stats

from oaprobe.config import MODES, get_preset
from oaprobe.data.labels import noise_matrix
from oaprobe.report.sentences import describe_seed_level, signed
from oaprobe.report.study import Study
from oaprobe.sweep import DEFAULT_COHORTS, DEFAULT_RUNS, noise_grid, preset_manifest, stacked_grid


def seeds_for_halfwidth(sd: float, halfwidth: float, max_seeds: int = 1000) -> int | None:
    """Smallest n with t(0.975, n-1) * sd / sqrt(n) < halfwidth (None if beyond ``max_seeds``).

    >>> seeds_for_halfwidth(0.02, 0.02)
    7
    """
    for n in range(2, max_seeds + 1):
        if stats.t.ppf(0.975, n - 1) * sd / np.sqrt(n) < halfwidth:
            return n
    return None


def adjacent_confusions(y: np.ndarray, pred: np.ndarray) -> pd.DataFrame:
    """For each adjacent grade pair, how often knees of the two grades are predicted as each other."""
    rows = []
    for g in range(4):
        pair = np.isin(y, (g, g + 1))
        swapped = ((y == g) & (pred == g + 1)) | ((y == g + 1) & (pred == g))
        rows.append({"boundary": f"{g}/{g + 1}", "knees": int(pair.sum()), "swapped": int(swapped.sum()),
                     "rate": float(swapped.sum() / max(pair.sum(), 1))})
    return pd.DataFrame(rows)


@dataclass
class Exercises:
    """The runs the exercises need: the first backbone's main, stacked-dual and noise-free runs."""

    preset: str
    main: Study
    stacked: Study
    noise_free: Study | None

    @classmethod
    def load(cls, preset: str = "default", runs_root: str | Path = DEFAULT_RUNS,
             cohorts_root: str | Path = DEFAULT_COHORTS, manifest: str | Path | None = None) -> Exercises:
        """The runs of the exercises; with ``manifest`` (real data) there is no noise-free cohort."""
        p = get_preset(preset)
        first = [p.backbones[0]]
        main = Study.load(preset, runs_root, cohorts_root, manifest=manifest, backbones=first, modes=MODES)
        stacked = Study.from_grid(preset, main.manifest, stacked_grid(main.manifest, preset), runs_root)
        noise_free = None
        if manifest is None and 0.0 in p.label_noise_levels:
            clean = preset_manifest(preset, Path(cohorts_root), 0.0, progress=False)
            noise_free = Study.from_grid(preset, clean, noise_grid(clean, preset), runs_root)
        return cls(preset, main, stacked, noise_free)

    def stacked_vs_parallel(self) -> str:
        from oaprobe.analysis.paired import compare_pair

        rows = []
        for seed in self.main.seeds:
            par = self.main.select(mode="dual", seed=seed)
            st = self.stacked.select(seed=seed)
            if par and st:
                t = compare_pair(st[0].predictions, par[0].predictions, ["oa_roc_auc", "kl_qwk"], B=2000, seed=seed)
                rows.append(t.assign(seed=seed))
        if not rows:
            return "No stacked runs."
        t = pd.concat(rows)
        parts = []
        for metric, g in t.groupby("metric", sort=False):
            covers = int(((g["ci_low"] <= 0) & (g["ci_high"] >= 0)).sum())
            parts.append(f"{metric}: stacked minus parallel = " + ", ".join(
                f"{signed(d)} [{signed(lo)}, {signed(hi)}]" for d, lo, hi in zip(g["diff"], g["ci_low"], g["ci_high"]))
                + f" over {len(g)} seed(s) (mean {signed(g['diff'].mean())}); the 95% interval contains 0 in {covers} of {len(g)}.")
        return " ".join(parts)

    def hardest_boundary(self) -> str:
        truth = "kl_clean" if self.main.has_clean else "kl"
        frames = [r.predictions[r.predictions["split"] == "test"] for r in self.main.select(mode="dual")]
        test = pd.concat(frames)
        conf = adjacent_confusions(test[truth].astype(int).to_numpy(), test["pred_kl"].astype(int).to_numpy())
        worst = conf.sort_values("rate", ascending=False, kind="stable").iloc[0]
        text = (f"Against the {'clean' if truth == 'kl_clean' else 'observed'} grade, the dual model swaps the "
                f"{worst['boundary']} pair most often: {int(worst['swapped'])} of {int(worst['knees'])} knees "
                f"({worst['rate']:.1%}; all pairs: " + ", ".join(f"{b} {r:.1%}" for b, r in zip(conf["boundary"], conf["rate"])) + ").")
        cohort = get_preset(self.preset).cohort
        m = noise_matrix(cohort.label_noise)
        flips = [(m[g, g + 1] + m[g + 1, g], f"{g}/{g + 1}") for g in range(4)]
        text += f" The label-noise model (strength {cohort.label_noise}) confuses {max(flips)[1]} most."
        return text

    def seeds_needed(self, metric: str = "kl_accuracy", halfwidth: float = 0.02) -> str:
        sl = self.main.seed_level(truth="kl", metrics=[metric])
        if sl.empty or not np.isfinite(sl["sd"].iloc[0]):
            return "Too few seeds in this build to estimate the spread."
        sd = float(sl["sd"].iloc[0])
        n = seeds_for_halfwidth(sd, halfwidth)
        need = f"{n} seeds" if n else "more than 1000 seeds"
        single = {"single_kl": "single-KL", "single_oa": "single-OA"}[str(sl["baseline"].iloc[0])]
        return (f"The seed-to-seed sd of the dual-minus-{single} difference in {metric} is {sd:.3f} "
                f"(over {int(sl['n_seeds'].iloc[0])} seeds), so a 95% t-interval of the mean narrower than ±{halfwidth} "
                f"needs {need}.")

    def noise_free_answer(self) -> str:
        if self.noise_free is None:
            return "This build has no noise-free cohort (real data, or a preset without noise level 0)."
        sl = self.noise_free.seed_level(truth="kl_clean", metrics=["kl_qwk", "kl_accuracy"])
        return " ".join(describe_seed_level(r) for _, r in sl.iterrows()) or "Too few runs."

    def answers(self) -> dict[str, Markdown]:
        return {"ex_stacked": Markdown(self.stacked_vs_parallel()), "ex_boundary": Markdown(self.hardest_boundary()),
                "ex_seeds": Markdown(self.seeds_needed()), "ex_noise0": Markdown(self.noise_free_answer())}

    def provenance(self) -> str:
        return self.main.provenance(self.main.runs + self.stacked.runs)
