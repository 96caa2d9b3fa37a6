"""The study as the book sees it: a set of finished runs on one cohort, and its tidy tables.

A :class:`Study` reads finished run folders and never trains: a requested run that is not
trained is a :class:`RunsMissingError` that names the command making it (the sweep or the book
build train). It turns the run folders into the tables the chapters show: per-run metrics with subject-bootstrap CIs, the
reference study's paired family per seed, seed-level tests, latent geometry and saliency
overlap, and the compact views of them that the chapters print.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from oaprobe import __version__
from oaprobe.config import RunConfig, get_preset
from oaprobe.errors import OaprobeError
from oaprobe.facts import CARTILAGE_LABELS, MODES
from oaprobe.report.display import MODE_NAMES
from oaprobe.sweep import DEFAULT_CACHE, DEFAULT_COHORTS, DEFAULT_RUNS, preset_manifest, study_grid
from oaprobe.training.runs import Run, field_matches, is_done, load_run, run_dir

SUMMARY_METRICS = ("oa_accuracy", "oa_roc_auc", "oa_f1", "kl_accuracy", "kl_f1_macro", "kl_auc_macro", "kl_qwk", "kl_mae")
#: the metrics of the seed-level comparisons (dual vs its single-task baseline)
SEED_LEVEL_METRICS = ("oa_roc_auc", "oa_accuracy", "oa_f1", "kl_auc_macro", "kl_accuracy", "kl_f1_macro", "kl_qwk", "kl_mae")
LATENT_COLUMNS = (
    "abs_spearman_PC1_KL", "abs_spearman_PC1_OA", "EVR_PC1", "OA_probe_AUROC_test", "centroid_kendall_tau",
    "abs_spearman_PC1_KLclean", "abs_spearman_PC1_OAclean", "OA_probe_AUROC_test_clean", "centroid_kendall_tau_clean",
)


class RunsMissingError(OaprobeError):
    """Runs a chapter reads are not trained; the message gives the command that trains them, and
    ``missing`` holds their configs."""

    def __init__(self, message: str, missing: Sequence[RunConfig] = ()):
        super().__init__(message)
        self.missing = list(missing)

    def __reduce__(self):  # picklable with its runs (worker processes)
        return type(self), (str(self), self.missing)


#: RunConfig fields a sweep command sets as axes (the others are the settings shared by one command)
_AXES = ("backbone", "mode", "seed")


def _settings_flags(cfg: RunConfig, preset: str) -> list[str]:
    """``--field value`` for every field of ``cfg`` (but the axes and the manifest) that differs from the preset."""
    usual = get_preset(preset).run_config(cfg.manifest, backbone=cfg.backbone, mode=cfg.mode).to_dict()
    flags = []
    for name, value in cfg.to_dict().items():
        if name not in ("manifest", *_AXES) and value != usual[name]:
            shown = ",".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value).lower()
            flags.append(f"--{name.replace('_', '-')} {shown}")
    return flags


def sweep_commands(missing: Sequence[RunConfig], preset: str, runs_root: str | Path, jobs: int = 1) -> list[str]:
    """The ``oaprobe sweep`` lines that train exactly ``missing``: a sweep trains backbones x modes x
    seeds on one set of settings, so runs are grouped by settings and seeds, and a group whose
    backbones x modes are not all missing gets one line per backbone."""
    seeds_of: dict[tuple, list[int]] = {}
    for c in missing:
        seeds_of.setdefault((c.manifest, tuple(_settings_flags(c, preset)), c.backbone, c.mode), []).append(c.seed)
    cells: dict[tuple, list[tuple[str, str]]] = {}
    for (manifest, flags, backbone, mode), seeds in seeds_of.items():
        cells.setdefault((manifest, flags, tuple(sorted(set(seeds)))), []).append((backbone, mode))
    lines = []
    for (manifest, flags, seeds), pairs in cells.items():
        backbones, modes = list(dict.fromkeys(b for b, _ in pairs)), list(dict.fromkeys(m for _, m in pairs))
        parts = ([(backbones, modes)] if len(pairs) == len(backbones) * len(modes)
                 else [([b], [m for bb, m in pairs if bb == b]) for b in backbones])
        lines += [" ".join([f"oaprobe sweep --preset {preset} --runs {runs_root} --manifest {manifest}",
                            f"--backbones {','.join(bs)} --modes {','.join(ms)} --seeds {','.join(map(str, seeds))}",
                            *flags, f"--jobs {jobs}"]) for bs, ms in parts]
    return lines


def sweep_command(missing: Sequence[RunConfig], preset: str, runs_root: str | Path, jobs: int | None = None) -> str:
    """The command(s) that train exactly ``missing`` (joined by `` && ``), ``jobs`` workers (default:
    :func:`oaprobe.estimate.suggested_jobs`)."""
    from oaprobe.estimate import suggested_jobs

    return " && ".join(sweep_commands(missing, preset, runs_root, jobs or suggested_jobs(len(missing))))


def missing_message(missing: Sequence[RunConfig], n_asked: int, preset: str, runs_root: str | Path) -> str:
    """What a chapter says when runs it reads are not trained: how many, the command, how long."""
    from oaprobe.estimate import describe_estimate, estimate_seconds, suggested_jobs

    jobs = suggested_jobs(len(missing))
    return (f"{len(missing)} of the {n_asked} runs this analysis reads are not trained in {runs_root}; "
            f"train them with `{sweep_command(missing, preset, runs_root, jobs)}` "
            f"({describe_estimate(estimate_seconds(missing, runs_root, jobs), jobs)})")


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
        from oaprobe.data.manifest import read_manifest
        from oaprobe.models.backbones import check_input_shape

        for backbone, shape in dict.fromkeys((c.backbone, c.input_shape) for c in grid):
            check_input_shape(backbone, shape)  # a shape the backbone cannot take names the parameter to change
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
        from oaprobe.analysis.metrics import metrics_table

        preds = {(r.config.backbone, r.config.mode, r.config.seed, r.run_id): r.predictions for r in self.runs}
        return metrics_table(preds, key_names=("backbone", "mode", "seed", "run_id"), truth=truth, B=B, split=split)

    def point_metrics(self, truth: str = "kl", split: str = "test") -> pd.DataFrame:
        """Per-run point metrics in long form: backbone, mode, seed, run_id, metric, value.

        Computed once per (truth, split) and Study (the runs are read-only; a chapter asks for them
        up to six times, 1.8 s each on the default book's 27 runs); each call returns a copy."""
        from oaprobe.analysis.metrics import prediction_metrics

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
        from oaprobe.analysis.metrics import prediction_metrics

        rows = []
        for r in self.runs:
            if r.config.mode == "single_oa":
                continue
            grades = prediction_metrics(r.predictions, split=split).get("kl_never_predicted", ())
            rows.append({"backbone": r.config.backbone, "mode": r.config.mode, "seed": r.config.seed,
                         "never_predicted": ", ".join(f"KL{g}" for g in grades) or "none"})
        return pd.DataFrame(rows)

    def kl_confusion(self, truth: str = "kl_clean", split: str = "test") -> pd.DataFrame:
        """Predicted vs ``truth`` KL grade per backbone and mode, pooled over seeds (each cell's counts
        summed over its runs), for the runs with a KL head (``pred_kl`` present; single-OA has none).

        One row per backbone, mode, true grade and predicted grade: ``count``, ``share`` (of the
        knees of that true grade in that backbone and mode, 0 for an empty row) and ``n_runs``.
        """
        from sklearn.metrics import confusion_matrix

        from oaprobe.facts import ALL_MODES, KL_GRADES

        cells: dict[tuple[str, str], list[np.ndarray]] = {}
        for r in self.runs:
            p = r.predictions[r.predictions["split"] == split]
            if truth not in p:
                raise ValueError(f"kl_confusion(truth={truth!r}): run {r.run_id}'s predictions have no {truth!r} "
                                 "column (the clean grade exists on synthetic cohorts only); use truth='kl'")
            p = p.dropna(subset=["pred_kl", truth])
            if len(p):
                m = confusion_matrix(p[truth].astype(int), p["pred_kl"].astype(int), labels=list(KL_GRADES))
                cells.setdefault((r.config.backbone, r.config.mode), []).append(m)
        rows = []
        order = [(b, m) for b in self.backbones for m in ALL_MODES if (b, m) in cells]
        for bb, mode in order:
            total = np.sum(cells[(bb, mode)], axis=0)
            share = total / np.maximum(total.sum(axis=1, keepdims=True), 1)
            rows += [{"backbone": bb, "mode": mode, "truth": t, "predicted": q, "count": int(total[t, q]),
                      "share": float(share[t, q]), "n_runs": len(cells[(bb, mode)])}
                     for t in KL_GRADES for q in KL_GRADES]
        return pd.DataFrame(rows, columns=["backbone", "mode", "truth", "predicted", "count", "share", "n_runs"])

    def ceilings(self, split: str = "test") -> pd.DataFrame:
        """What the cohort allows at best, computed from it (no model): the planted-parameter
        oracle, a linear probe on the input volumes (at the first run's input shape) and the noise
        ceiling; one row per (ceiling, truth), the metric columns of :meth:`point_metrics`."""
        from oaprobe.analysis.ceilings import ceilings_table

        if split not in self._ceilings:
            shape = self.runs[0].config.input_shape if self.runs else (32, 32, 32)
            # the runs this Study read exist, so a sweep validated the manifest's volumes already
            self._ceilings[split] = ceilings_table(self.manifest, shape, cache_dir=DEFAULT_CACHE, split=split,
                                                   check_volumes=False)
        return self._ceilings[split].copy()

    def convergence(self, truth: str = "kl") -> pd.DataFrame:
        """One row per run: kept / best / final epoch and validation loss, and the flags of
        :mod:`oaprobe.analysis.convergence` (unstable, below the OA majority rate, degenerate)."""
        from oaprobe.analysis.convergence import run_diagnostics

        return pd.DataFrame([
            {"backbone": r.config.backbone, "mode": r.config.mode, "seed": r.config.seed, "run_id": r.run_id,
             **run_diagnostics(r.history, r.predictions, truth)}
            for r in self.runs
        ])

    def quality_targets(self) -> pd.DataFrame:
        """The convergence targets of :func:`oaprobe.analysis.convergence.quality_targets` for these runs,
        scored against the clean grade where the cohort knows it (else the observed one)."""
        from oaprobe.analysis.convergence import quality_targets

        truth = self.main_truth
        c = self.ceilings()
        probe = c.loc[(c["ceiling"] == "linear_probe") & (c["truth"] == truth), "kl_qwk"]
        return quality_targets(self.convergence(), self.point_metrics(truth=truth),
                               float(probe.iloc[0]) if len(probe) else float("nan"))

    def paired(self, truth: str = "kl", B: int = 10_000, bootstrap_seed: int = 0) -> pd.DataFrame:
        """The reference family (dual vs single, 6 metrics per backbone, BH) for each training seed."""
        from oaprobe.analysis.paired import reference_family

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
        from oaprobe.analysis.paired import REFERENCE_BASELINE

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
        from oaprobe.analysis.decision import decide_table
        from oaprobe.report.guards import finding_limit

        return decide_table(self.paired_seeds(truth, metrics), by=("backbone", "metric", "baseline"), m=m,
                            limit=finding_limit(self.table, truth=truth))

    def latent(self, methods: Sequence[str] = ("pca", "lda")) -> pd.DataFrame:
        """Severity-axis geometry per run and method (reference columns + clean-grade columns)."""
        from oaprobe.analysis.latent import embedding_set, latent_table

        labels = self.table[["case_id", "kl", "oa"] + (["kl_clean"] if "kl_clean" in self.table else [])]
        pairs = [
            ({"backbone": r.config.backbone, "mode": r.config.mode, "seed": r.config.seed, "run_id": r.run_id},
             embedding_set(r.embeddings, labels))
            for r in self.runs
        ]
        return latent_table(pairs, methods=methods)

    def saliency_results(self) -> dict[str, dict[str, Any]]:
        """Run id -> the saliency stage's results (:func:`oaprobe.analysis.saliency.load_saliency`)
        at the preset's saliency settings, for the runs that have them (the book computes them for
        every main-grid run, on the same fixed knees)."""
        from oaprobe.analysis.saliency import load_saliency

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
    @staticmethod
    def metric_pivot(metrics: pd.DataFrame) -> pd.DataFrame:
        """``estimate [ci_low, ci_high]`` strings, rows (backbone, mode, seed), one column per metric."""
        t = metrics.assign(value=[f"{e:.3f} [{lo:.3f}, {hi:.3f}]" for e, lo, hi in
                                  zip(metrics["estimate"], metrics["ci_low"], metrics["ci_high"])])
        return t.pivot_table(index=["backbone", "mode", "seed"], columns="metric", values="value", aggfunc="first")

    @staticmethod
    def family_table(family: pd.DataFrame) -> pd.DataFrame:
        """A paired family laid out like the reference study's table."""
        t = pd.DataFrame({
            "seed": family["seed"],
            "backbone": family["backbone"],
            "comparison": family["mode_a"] + " vs " + family["mode_b"],
            "metric": family["reference_name"],
            "test": family["test"],
            "dual": family["estimate_a"],
            "single": family["estimate_b"],
            "diff": family["diff"],
            "95% CI": [f"[{lo:+.3f}, {hi:+.3f}]" for lo, hi in zip(family["ci_low"], family["ci_high"])],
            "p": family["p"],
            "q (BH)": family["q_bh"],
            "q < 0.05": family["significant"].map({True: "yes", False: ""}),
        })
        return t.reset_index(drop=True)

    def summary_table(self, truth: str = "kl", metrics: Sequence[str] = SUMMARY_METRICS) -> pd.DataFrame:
        """``mean ± sd`` over seeds, rows (backbone, mode), one column per metric."""
        pm = self.point_metrics(truth=truth)
        pm = pm[pm["metric"].isin(metrics)]
        agg = pm.groupby(["backbone", "mode", "metric"], sort=False)["value"].agg(["mean", "std", "count"]).reset_index()
        agg["value"] = [mean_sd(m, s) for m, s in zip(agg["mean"], agg["std"])]
        wide = agg.pivot_table(index=["backbone", "mode"], columns="metric", values="value", aggfunc="first")
        order = [(b, m) for b in self.backbones for m in MODES if (b, m) in wide.index]
        return wide.loc[order, [m for m in metrics if m in wide.columns]]

    # ------------------------------------------------------------------ latent views
    @staticmethod
    def latent_summary(lat: pd.DataFrame, method: str = "pca") -> pd.DataFrame:
        """The reference's latent columns (and clean-grade ones) as ``mean ± sd`` over seeds."""
        # An explained-variance share is a PCA notion; LDA's first axis has none comparable.
        cols = [c for c in LATENT_COLUMNS if c in lat.columns and not (method != "pca" and c == "EVR_PC1")]
        t = lat[lat["method"] == method]
        g = t.groupby(["backbone", "mode"], sort=False)[cols]
        mean, sd = g.mean(), g.std()
        return pd.DataFrame({c: [mean_sd(m, s) for m, s in zip(mean[c], sd[c])] for c in cols}, index=mean.index)

    def _embedding_splits(self, run: Run):
        from oaprobe.analysis.latent import embedding_set

        labels = self.table[["case_id", "kl", "oa"] + (["kl_clean"] if self.has_clean else [])]
        emb = embedding_set(run.embeddings, labels)
        return emb.subset("train"), emb.subset("test")

    def projections(self, seed: int, method: str = "pca") -> pd.DataFrame:
        """Test knees on the train-fitted 2-D axes, per run of ``seed``: backbone, mode, axis1, axis2, kl."""
        from oaprobe.analysis.latent import project

        frames = []
        for r in self.select(seed=seed):
            tr, te = self._embedding_splits(r)
            _, xy = project(tr.embedding, tr.kl, te.embedding, method=method)
            frames.append(pd.DataFrame({"backbone": r.config.backbone, "mode": r.config.mode, "case_id": te.case_id,
                                        "axis1": xy[:, 0], "axis2": xy[:, 1], "kl": te.kl}))
        return pd.concat(frames, ignore_index=True)

    def umap(self, seed: int, umap_seed: int = 0) -> pd.DataFrame:
        """UMAP fitted on train embeddings and applied to test, per run of ``seed`` (plots only)."""
        from oaprobe.analysis.latent import umap_embedding

        frames = []
        for r in self.select(seed=seed):
            tr, te = self._embedding_splits(r)
            _, xy = umap_embedding(tr.embedding, te.embedding, seed=umap_seed)
            frames.append(pd.DataFrame({"backbone": r.config.backbone, "mode": r.config.mode, "case_id": te.case_id,
                                        "umap1": xy[:, 0], "umap2": xy[:, 1], "kl": te.kl}))
        return pd.concat(frames, ignore_index=True)

    # ------------------------------------------------------------------ saliency views
    @staticmethod
    def saliency_enrichment(sal: pd.DataFrame, method: str = "smoothgrad", target: str = "oa") -> pd.DataFrame:
        """Mean enrichment over chance with a 95% t-interval over knees, per backbone, mode and region."""
        t = sal[(sal["method"] == method) & (sal["target"] == target)].dropna(subset=["enrichment"])
        rows = []
        for (bb, mode, region), g in t.groupby(["backbone", "mode", "region"], sort=False):
            x = g["enrichment"].to_numpy(float)
            half = stats.t.ppf(0.975, len(x) - 1) * x.std(ddof=1) / np.sqrt(len(x)) if len(x) > 1 else np.nan
            rows.append({"backbone": bb, "mode": mode, "region": region, "enrichment": x.mean(),
                         "ci_low": x.mean() - half, "ci_high": x.mean() + half, "n": len(x)})
        return pd.DataFrame(rows)

    @staticmethod
    def sanity_summary(sanity: pd.DataFrame) -> pd.DataFrame:
        """Mean and sd over knees and targets of the trained-vs-randomised rank correlation, per
        backbone, mode, method and randomisation step (step 0: the trained map itself)."""
        if sanity.empty:
            return pd.DataFrame()
        keys = ["backbone", "mode", "method", "step", "layer"]
        out = sanity.groupby(keys, sort=False)["spearman"].agg(spearman="mean", sd="std", n="count").reset_index()
        return out

    def saliency_slices(self, backbone: str, seed: int, methods: Sequence[str] | None = None,
                        max_knees: int = 1) -> dict[str, Any]:
        """Coronal slices of the saved maps through the middle of the first knees: per mode and target
        a row, per knee and method (default: the preset's) a column, with the cartilage, the
        synthetic cohort's lesion codes (None on real data) and each knee's grade in its title."""
        from oaprobe.data.dataset import load_masks
        from oaprobe.report.display import METHOD_NAMES

        methods = get_preset(self.preset).saliency.methods if methods is None else methods
        out: dict[str, Any] = {"images": [], "titles": [], "cartilage": [], "saliency": [], "lesion": [], "n_cols": 0}
        runs = {r.config.mode: r for r in self.select(backbone=backbone, seed=seed)}
        results = self.saliency_results()
        rows = self.table.set_index(self.table["case_id"].astype(str))
        grade_col = "kl_clean" if self.has_clean else "kl"
        lesion_cache: dict[str, np.ndarray | None] = {}
        knees: list[str] | None = None
        for mode in MODES:
            if mode not in runs or runs[mode].run_id not in results:
                continue
            maps = results[runs[mode].run_id]["maps"]
            knees = knees or list(dict.fromkeys(maps["case_id"].astype(str).tolist()))[:max_knees]
            for target in ("oa", "kl"):
                for case in knees:
                    for method in methods:
                        hit = np.nonzero((maps["case_id"].astype(str) == case) & (maps["target"] == target)
                                         & (maps["method"] == method))[0]
                        if not hit.size:
                            continue
                        i, w = hit[0], maps["image"].shape[-1] // 2
                        if case not in lesion_cache:
                            has = "lesion_path" in rows and pd.notna(rows.loc[case].get("lesion_path"))
                            lesion_cache[case] = load_masks(rows.loc[[case]], maps["image"].shape[1:],
                                                            column="lesion_path")[0] if has else None
                        lesion = lesion_cache[case]
                        out["images"].append(maps["image"][i][..., w].astype(np.float32).T)
                        out["cartilage"].append(np.isin(maps["mask"][i][..., w], CARTILAGE_LABELS).T)
                        out["saliency"].append(maps["saliency"][i][..., w].astype(np.float32).T)
                        out["lesion"].append(None if lesion is None else lesion[..., w].T)
                        grade = f"{'clean ' if grade_col == 'kl_clean' else ''}KL{int(rows.loc[case, grade_col])}"
                        out["titles"].append(f"{MODE_NAMES[mode]} · {target.upper()} target · "
                                             f"{METHOD_NAMES.get(method, method)}<br>{case}, {grade}")
        out["n_cols"] = len(knees or []) * len(methods)
        return out


def mean_sd(mean: float, sd: float) -> str:
    """``0.812 ± 0.020`` (the sd omitted when undefined, e.g. one seed)."""
    return f"{mean:.3f}" if not np.isfinite(sd) else f"{mean:.3f} ± {sd:.3f}"
