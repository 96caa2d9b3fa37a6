"""The study as the book sees it: a set of finished runs on one cohort, and its tidy tables.

A :class:`Study` reads finished run folders and never trains: a requested run that is not
trained is a :class:`~oaprobe.report.missing.RunsMissingError` that names the command making it.
It loads a grid, selects among its runs and makes the per-run tables: metrics with
subject-bootstrap CIs, the reference study's paired family per seed, seed-level tests,
convergence, latent geometry and the saliency stage's tables. What one chapter does with them
(its formatted tables, sentences and figure data) lives in that chapter's module.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from oaprobe import __version__
from oaprobe.analysis.convergence import quality_targets, run_diagnostics
from oaprobe.analysis.decision import decide_table
from oaprobe.analysis.latent import embedding_set, latent_table
from oaprobe.analysis.metrics import metrics_table, prediction_metrics
from oaprobe.analysis.paired import REFERENCE_BASELINE, reference_family
from oaprobe.analysis.saliency_results import load_saliency
from oaprobe.config import DEFAULT_CACHE, DEFAULT_COHORTS, DEFAULT_RUNS, RunConfig, check_shapes, get_preset
from oaprobe.data.manifest import read_manifest
from oaprobe.facts import MODES
from oaprobe.report.guards import finding_limit
from oaprobe.report.missing import RunsMissingError, missing_message
from oaprobe.sweep import preset_manifest, study_grid
from oaprobe.training.runs import Run, field_matches, is_done, load_run, run_dir

SUMMARY_METRICS = ("oa_accuracy", "oa_roc_auc", "oa_f1", "kl_accuracy", "kl_f1_macro", "kl_auc_macro", "kl_qwk", "kl_mae")
#: the metrics of the seed-level comparisons (dual vs its single-task baseline)
SEED_LEVEL_METRICS = ("oa_roc_auc", "oa_accuracy", "oa_f1", "kl_auc_macro", "kl_accuracy", "kl_f1_macro", "kl_qwk", "kl_mae")


@dataclass
class Study:
    """Finished runs of one cohort (backbones x modes x seeds) plus the cohort's manifest table."""

    preset: str
    manifest: Path
    table: pd.DataFrame
    runs: list[Run]
    _ceilings: dict[str, pd.DataFrame] = field(default_factory=dict, repr=False, compare=False)
    _point_metrics: dict[tuple[str, str], pd.DataFrame] = field(default_factory=dict, repr=False, compare=False)
    _saliency: dict[str, dict[str, Any]] | None = field(default=None, repr=False, compare=False)

    @classmethod
    def load(
        cls,
        preset: str = "default",
        runs_root: str | Path = DEFAULT_RUNS,
        cohorts_root: str | Path = DEFAULT_COHORTS,
        manifest: str | Path | None = None,
        backbones: Sequence[str] | None = None,
        modes: Sequence[str] = MODES,
        seeds: Sequence[int] | None = None,
        label_noise: float | None = None,
        progress: bool = False,
        **overrides: Any,
    ) -> Study:
        """Read the finished runs of a grid (the preset's, narrowed or changed by the arguments).

        ``overrides`` are RunConfig fields (e.g. ``input_shape=(48, 48, 48)``); a run of the grid
        that is not trained raises :class:`RunsMissingError` naming the command that trains it.
        """
        if manifest is None:
            manifest = preset_manifest(preset, Path(cohorts_root), label_noise, progress)
        grid = study_grid(manifest, preset, backbones=backbones, modes=modes, seeds=seeds, **overrides)
        return cls.from_grid(preset, manifest, grid, runs_root)

    @classmethod
    def from_grid(cls, preset: str, manifest: str | Path, grid: Sequence[RunConfig],
                  runs_root: str | Path = DEFAULT_RUNS) -> Study:
        """Read the finished runs of ``grid`` (all on ``manifest``); never trains."""
        check_shapes(grid)  # a shape the backbone cannot take names the parameter to change
        folders = [run_dir(c, runs_root) for c in grid]
        missing = [c for c, f in zip(grid, folders) if not is_done(f)]
        if missing:
            raise RunsMissingError(missing_message(missing, len(grid), preset, runs_root), missing)
        table = read_manifest(manifest, check_volumes=False)
        return cls(preset, Path(manifest), table, [load_run(f) for f in folders])

    # ------------------------------------------------------------------ selection
    def select(self, **filters: Any) -> list[Run]:
        """Runs whose config fields match ``filters`` (the rule of ``find_runs``: a list/set accepts any)."""
        return [r for r in self.runs if all(field_matches(getattr(r.config, k), v) for k, v in filters.items())]

    @property
    def backbones(self) -> list[str]:
        return list(dict.fromkeys(r.config.backbone for r in self.runs))

    @property
    def seeds(self) -> list[int]:
        return sorted({r.config.seed for r in self.runs})

    def runs_frame(self) -> pd.DataFrame:
        """One row per run: run_id, backbone, mode, dual_variant, seed, epochs, parameters."""
        return pd.DataFrame(
            [
                {
                    "run_id": r.run_id,
                    "backbone": r.config.backbone,
                    "mode": r.config.mode,
                    "dual_variant": r.config.dual_variant if r.config.mode == "dual" else "",
                    "seed": r.config.seed,
                    "epochs": r.config.epochs,
                    "n_parameters": r.meta.get("n_parameters"),
                    "embedding_dim": r.meta.get("embedding_dim"),
                }
                for r in self.runs
            ]
        )

    def provenance(self, runs: Sequence[Run] | None = None) -> str:
        """One line under a figure: which runs, package version and cohort made it."""
        runs = self.runs if runs is None else runs
        ids = ", ".join(r.run_id for r in runs)
        cohort = self.manifest.parent.name
        return f"Runs: {ids}. oaprobe {__version__}; cohort {cohort} ({len(self.table)} knees, manifest {self.manifest.name})."

    # ------------------------------------------------------------------ tables
    def history(self) -> pd.DataFrame:
        """Every run's per-epoch history with backbone, mode, seed and run_id columns."""
        frames = [
            r.history.assign(run_id=r.run_id, backbone=r.config.backbone, mode=r.config.mode, seed=r.config.seed)
            for r in self.runs
        ]
        return pd.concat(frames, ignore_index=True)

    def metrics(self, truth: str = "kl", B: int = 1000, split: str = "test") -> pd.DataFrame:
        """Per-run test metrics with subject-bootstrap CIs (columns of ``metrics_table``)."""
        preds = {(r.config.backbone, r.config.mode, r.config.seed, r.run_id): r.predictions for r in self.runs}
        return metrics_table(preds, key_names=("backbone", "mode", "seed", "run_id"), truth=truth, B=B, split=split)

    def point_metrics(self, truth: str = "kl", split: str = "test") -> pd.DataFrame:
        """Per-run point metrics in long form: backbone, mode, seed, run_id, metric, value.

        Computed once per (truth, split) and Study (the runs are read-only; a chapter asks for them
        up to six times, 1.8 s each on the default book's 27 runs); each call returns a copy."""
        if (truth, split) not in self._point_metrics:
            rows = []
            for r in self.runs:
                m = prediction_metrics(r.predictions, split=split, truth=truth)
                for name, value in m.items():
                    if name.startswith(("oa_", "kl_")) and isinstance(value, (int, float, np.floating)):
                        rows.append({"backbone": r.config.backbone, "mode": r.config.mode, "seed": r.config.seed,
                                     "run_id": r.run_id, "metric": name, "value": float(value)})
            self._point_metrics[truth, split] = pd.DataFrame(rows)
        return self._point_metrics[truth, split].copy()

    def never_predicted(self, split: str = "test") -> pd.DataFrame:
        """Runs whose KL head never predicts some grade (degenerate outputs), one row per run."""
        rows = []
        for r in self.runs:
            if r.config.mode == "single_oa":
                continue
            grades = prediction_metrics(r.predictions, split=split).get("kl_never_predicted", ())
            rows.append({"backbone": r.config.backbone, "mode": r.config.mode, "seed": r.config.seed,
                         "never_predicted": ", ".join(f"KL{g}" for g in grades) or "none"})
        return pd.DataFrame(rows)

    def ceilings(self, split: str = "test") -> pd.DataFrame:
        """What the cohort allows at best, computed from it (no model): the planted-parameter
        oracle, a linear probe on the input volumes (at the first run's input shape) and the noise
        ceiling; one row per (ceiling, truth), the metric columns of :meth:`point_metrics`."""
        from oaprobe.analysis.ceilings import ceilings_table  # deferred: torch: the ceilings' probe is trained in torch

        if split not in self._ceilings:
            shape = self.runs[0].config.input_shape if self.runs else (32, 32, 32)
            # the runs this Study read exist, so a sweep validated the manifest's volumes already
            self._ceilings[split] = ceilings_table(self.manifest, shape, cache_dir=DEFAULT_CACHE, split=split,
                                                   check_volumes=False)
        return self._ceilings[split].copy()

    def convergence(self, truth: str = "kl") -> pd.DataFrame:
        """One row per run: kept / best / final epoch and validation loss, and the flags of
        :mod:`oaprobe.analysis.convergence` (unstable, below the OA majority rate, degenerate)."""
        return pd.DataFrame([
            {"backbone": r.config.backbone, "mode": r.config.mode, "seed": r.config.seed, "run_id": r.run_id,
             **run_diagnostics(r.history, r.predictions, truth)}
            for r in self.runs
        ])

    def quality_targets(self) -> pd.DataFrame:
        """The convergence targets of :func:`oaprobe.analysis.convergence.quality_targets` for these runs,
        scored against the clean grade where the cohort knows it (else the observed one)."""
        truth = self.main_truth
        c = self.ceilings()
        probe = c.loc[(c["ceiling"] == "linear_probe") & (c["truth"] == truth), "kl_qwk"]
        return quality_targets(self.convergence(), self.point_metrics(truth=truth),
                               float(probe.iloc[0]) if len(probe) else float("nan"))

    def paired(self, truth: str = "kl", B: int = 10_000, bootstrap_seed: int = 0) -> pd.DataFrame:
        """The reference family (dual vs single, 6 metrics per backbone, BH) for each training seed."""
        frames = []
        for seed in self.seeds:
            preds = {(r.config.backbone, r.config.mode): r.predictions for r in self.select(seed=seed)}
            fam = reference_family(preds, B=B, seed=bootstrap_seed, truth=truth)
            frames.append(fam.assign(seed=seed))
        return pd.concat(frames, ignore_index=True)

    def paired_seeds(self, truth: str = "kl", metrics: Sequence[str] | None = None) -> pd.DataFrame:
        """Per backbone, metric and seed: dual (``a``) and its single-task baseline (``b``, single-OA for
        OA metrics, single-KL for KL ones) of the same seed, which share the encoder's initialisation
        and the batch order; ``diff = a - b``; ``flagged`` when either run carries a convergence flag."""
        pm = self.point_metrics(truth=truth)
        pm = pm[pm["metric"].isin(metrics or SEED_LEVEL_METRICS)]
        flags = self.convergence().set_index(["backbone", "mode", "seed"])["flagged"]
        wide = pm.pivot_table(index=["backbone", "seed", "metric"], columns="mode", values="value").reset_index()
        rows = []
        for _, row in wide.iterrows():
            base = REFERENCE_BASELINE["OA" if row["metric"].startswith("oa_") else "KL"]
            if pd.notna(row.get("dual")) and pd.notna(row.get(base)):
                bb, seed = row["backbone"], row["seed"]
                rows.append({"backbone": bb, "metric": row["metric"], "baseline": base, "seed": int(seed),
                             "a": row["dual"], "b": row[base], "diff": row["dual"] - row[base],
                             "flagged": bool(flags.get((bb, "dual", seed), False) or flags.get((bb, base, seed), False))})
        return pd.DataFrame(rows, columns=["backbone", "metric", "baseline", "seed", "a", "b", "diff", "flagged"])

    def seed_level(self, truth: str = "kl", metrics: Sequence[str] | None = None, m: int | None = None) -> pd.DataFrame:
        """Dual vs its single-task baseline per backbone and metric under the book's decision rule
        (:mod:`oaprobe.analysis.decision`) over the paired seeds; ``m``: Bonferroni family size
        (None: every row of the table)."""
        return decide_table(self.paired_seeds(truth, metrics), by=("backbone", "metric", "baseline"), m=m,
                            limit=finding_limit(self.table, truth=truth))

    def latent(self, methods: Sequence[str] = ("pca", "lda")) -> pd.DataFrame:
        """Severity-axis geometry per run and method (reference columns + clean-grade columns)."""
        labels = self.table[["case_id", "kl", "oa"] + (["kl_clean"] if "kl_clean" in self.table else [])]
        pairs = [
            ({"backbone": r.config.backbone, "mode": r.config.mode, "seed": r.config.seed, "run_id": r.run_id},
             embedding_set(r.embeddings, labels))
            for r in self.runs
        ]
        return latent_table(pairs, methods=methods)

    def saliency_results(self) -> dict[str, dict[str, Any]]:
        """Run id -> the saliency stage's results (:func:`oaprobe.analysis.saliency_results.load_saliency`)
        at the preset's saliency settings, for the runs that have them (the book computes them for
        every main-grid run, on the same fixed knees)."""
        if self._saliency is None:
            settings = get_preset(self.preset).saliency
            found = {r.run_id: load_saliency(r.path, settings) for r in self.runs}
            self._saliency = {k: v for k, v in found.items() if v is not None}
        if self.runs and not self._saliency:  # e.g. a rerun with other run settings: say how to compute them
            root = self.runs[0].path.parent
            raise RunsMissingError(f"none of the {len(self.runs)} runs in {root} has saliency results at the "
                                   f"{self.preset} preset's settings; compute them with "
                                   f"`oaprobe saliency --preset {self.preset} --runs {root}`")
        return self._saliency

    def _saliency_frame(self, key: str) -> pd.DataFrame:
        runs = {r.run_id: r for r in self.runs}
        frames = [
            res[key].assign(run_id=rid, backbone=runs[rid].config.backbone, mode=runs[rid].config.mode,
                            seed=runs[rid].config.seed)
            for rid, res in self.saliency_results().items() if res.get(key) is not None and len(res[key])
        ]
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()

    def saliency(self) -> pd.DataFrame:
        """Every saliency table (one row per knee, target, method, region) with backbone, mode, seed, run_id."""
        return self._saliency_frame("saliency")

    def saliency_evidence(self) -> pd.DataFrame:
        """Every map scored against the phantom's evidence and distractors, with the run columns (empty on real data)."""
        return self._saliency_frame("evidence")

    def saliency_sanity(self) -> pd.DataFrame:
        """Cascading randomisation: rank correlation of trained vs randomised maps per step (should fall to 0)."""
        return self._saliency_frame("sanity")

    def saliency_deletion(self) -> pd.DataFrame:
        """Deletion curves' areas per knee: salient-first vs random order (a faithful map's curve falls faster)."""
        return self._saliency_frame("deletion_auc")

    @property
    def has_clean(self) -> bool:
        """Whether the cohort knows each knee's clean grade (synthetic cohorts only)."""
        return "kl_clean" in self.table and self.table["kl_clean"].notna().any()

    @property
    def main_truth(self) -> str:
        """The grade the book scores against: the clean one where the cohort knows it, else the observed."""
        return "kl_clean" if self.has_clean else "kl"

    # ------------------------------------------------------------------ compact views
    def summary_table(self, truth: str = "kl", metrics: Sequence[str] = SUMMARY_METRICS) -> pd.DataFrame:
        """``mean ± sd`` over seeds, rows (backbone, mode), one column per metric."""
        pm = self.point_metrics(truth=truth)
        pm = pm[pm["metric"].isin(metrics)]
        agg = pm.groupby(["backbone", "mode", "metric"], sort=False)["value"].agg(["mean", "std", "count"]).reset_index()
        agg["value"] = [mean_sd(m, s) for m, s in zip(agg["mean"], agg["std"])]
        wide = agg.pivot_table(index=["backbone", "mode"], columns="metric", values="value", aggfunc="first")
        order = [(b, m) for b in self.backbones for m in MODES if (b, m) in wide.index]
        return wide.loc[order, [m for m in metrics if m in wide.columns]]


def mean_sd(mean: float, sd: float) -> str:
    """``0.812 ± 0.020`` (the sd omitted when undefined, e.g. one seed)."""
    return f"{mean:.3f}" if not np.isfinite(sd) else f"{mean:.3f} ± {sd:.3f}"
