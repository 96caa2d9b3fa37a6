"""The methods page, generated from the configurations the runs actually used."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from oaprobe.config import PRESETS, REFERENCE_RECIPE, RunConfig, get_preset
from oaprobe.facts import MODES, backbone_title
from oaprobe.report.cohort import CohortView
from oaprobe.report.display import MODE_NAMES, readable_text
from oaprobe.report.sentences import describe_convergence, describe_targets, plural
from oaprobe.report.study import Study

#: The reference study's protocol, as PAPER.md describes it, for the deviations table.
REFERENCE_PROTOCOL = {
    "input_shape": (160, 256, 256),
    "width": 1.0,
    "epochs": 100,
    "batch_size": 2,
    "lr": 1e-4,
    "weight_decay": 1e-4,
    "schedule": "constant",
    "warmup_epochs": 0,
    "select": "final",
    "ema_decay": 0.0,
    "grad_clip": 0.0,
    "class_weighting": False,
    "augment": False,
    "oa_weight": 1.0,
    "dual_variant": "stacked",
}
_PER_RUN = ("manifest", "backbone", "mode", "seed")
#: how the recipe sentence names a ``RunConfig.select`` value
SELECT_WORDS = {"final": "the final epoch's", "val_loss": "the epoch with the lowest validation loss",
                "val_oa_auc": "the epoch with the best validation OA AUC",
                "val_kl_qwk": "the epoch with the best validation KL QWK",
                "final_near_best": "the final epoch's unless its validation loss is above 1.2x the best epoch's (then the best's)"}


def used(configs: list[dict], field: str) -> list[str]:
    """The distinct values of ``field`` over run configs, as sorted strings (lists as tuples)."""
    return sorted({str(tuple(c[field]) if isinstance(c[field], list) else c[field]) for c in configs})


def methods_tables(study: Study) -> dict[str, pd.DataFrame]:
    """Tables for the methods page: cohort, shared config, deviations, backbones, presets."""
    summary = study.manifest.parent / "cohort.json"  # written by the synthetic cohort builder only
    if summary.is_file():
        cohort_rows = [(k, str(v)) for k, v in json.loads(summary.read_text())["config"].items()]
    else:
        cohort_rows = [("manifest", str(study.manifest))]
    cohort_rows += [("knees", str(len(study.table))), ("subjects", str(study.table["subject_id"].nunique()))]
    cohort_rows += [(f"{s} knees", str(n)) for s, n in study.table["split"].value_counts().items()]

    configs = [r.config.to_dict() for r in study.runs]
    fields = [f.name for f in dataclasses.fields(RunConfig) if f.name not in _PER_RUN]
    shared = [(f, readable_text(configs[0][f])) for f in fields if all(c[f] == configs[0][f] for c in configs)]
    varying = [(f, ", ".join(sorted({readable_text(c[f]) for c in configs}))) for f in fields
               if any(c[f] != configs[0][f] for c in configs)]

    deviations = []
    for f, ref in REFERENCE_PROTOCOL.items():
        values = used(configs, f)
        if values != [str(ref)]:
            deviations.append({"setting": f, "reference": readable_text(ref), "this build": ", ".join(map(readable_text, values))})

    backbones = []
    for bb in study.backbones:
        runs = study.select(backbone=bb)
        secs = pd.concat([r.history["seconds"] for r in runs])
        params = ", ".join(f"{MODE_NAMES.get(r.config.mode, r.config.mode)} {r.meta.get('n_parameters'):,}"
                           for r in runs if r.config.seed == runs[0].config.seed)
        backbones.append({"backbone": bb, "parameters": params,
                          "embedding dim": runs[0].meta.get("embedding_dim"), "runs": len(runs),
                          "s / epoch (mean)": round(float(secs.mean()), 2),
                          "training s (all runs)": round(float(secs.sum()), 1)})

    presets = []
    for name in PRESETS:
        p = get_preset(name)
        presets.append({"preset": name, "subjects": p.cohort.n_subjects, "volume": "x".join(map(str, p.cohort.shape)),
                        "input": "x".join(map(str, p.run.get("input_shape", ()))), "epochs": p.run.get("epochs"),
                        "width": p.run.get("width"), "backbones": ", ".join(map(backbone_title, p.backbones)),
                        "seeds": len(p.seeds),
                        "noise levels": ", ".join(map(str, p.label_noise_levels))})
    return {
        "cohort": pd.DataFrame(cohort_rows, columns=["setting", "value"]),
        "shared": pd.DataFrame(shared + varying, columns=["setting", "value"]),
        "deviations": pd.DataFrame(deviations),
        "backbones": pd.DataFrame(backbones),
        "presets": pd.DataFrame(presets),
    }


def describe_grid(configs: list[dict]) -> str:
    """How many runs the build read, and over which backbones, modes and seeds."""
    backbones = list(dict.fromkeys(c["backbone"] for c in configs))
    modes, seeds = used(configs, "mode"), used(configs, "seed")
    return (f"{len(configs)} runs: {plural(len(backbones), 'backbone')} ({', '.join(backbone_title(b) for b in backbones)}) "
            f"× {len(modes)} modes × {plural(len(seeds), 'seed')}.")


def describe_recipe(configs: list[dict]) -> str:
    """The training recipe as run (a setting that differs between runs lists every value)."""
    def v(field: str) -> str:
        return " / ".join(used(configs, field))

    select = " / ".join(SELECT_WORDS.get(x, x) for x in used(configs, "select"))
    shape = " / ".join(x.strip("()").replace(", ", "x") for x in used(configs, "input_shape"))
    clip = " / ".join("off" if float(x) == 0 else x for x in used(configs, "grad_clip"))
    epochs = f"{v('epochs')} epoch{'' if v('epochs') == '1' else 's'}"
    return (f"The recipe as run: {epochs} ({v('warmup_epochs')} of warm-up), {v('schedule')} learning-rate "
            f"schedule at peak lr {v('lr')}, batch {v('batch_size')}, weight decay {v('weight_decay')}, gradient-norm "
            f"clip {clip}. The weights kept are {select}; input {shape} voxels at width {v('width')}.")


def describe_deviations(deviations: pd.DataFrame) -> str:
    """One sentence on the deviations table of :func:`methods_tables`: every setting that differs from the reference."""
    if deviations.empty:
        return f"Every one of the {len(REFERENCE_PROTOCOL)} reference settings is kept."
    if len(deviations) > 3:  # a long list reads as the table it is: the page shows it below
        names = ", ".join(f"`{r['setting']}`" for _, r in deviations.iterrows())
        return (f"{len(deviations)} of the {len(REFERENCE_PROTOCOL)} reference settings differ; the table below gives "
                f"each, reference → this build. They are {names}.")
    parts = "; ".join(f"`{r['setting']}` {r['reference']} → {r['this build']}" for _, r in deviations.iterrows())
    return f"{len(deviations)} of the {len(REFERENCE_PROTOCOL)} reference settings differ (reference → this build): {parts}."


def describe_cohort(table: pd.DataFrame) -> str:
    """The cohort the runs were trained on: knees, subjects, and the split."""
    splits = table["split"].value_counts()
    parts = ", ".join(f"{splits[s]} {s}" for s in ("train", "val", "test") if s in splits)
    return f"Cohort: {len(table)} knees of {table['subject_id'].nunique()} subjects ({parts})."


def methods_findings(study: Study, tables: dict[str, pd.DataFrame], conv: pd.DataFrame,
                     targets: pd.DataFrame) -> list[str]:
    """The methods page's opening bullets: runs, recipe, convergence, the convergence targets
    (:meth:`Study.quality_targets`), deviations, cohort."""
    configs = [r.config.to_dict() for r in study.runs]
    return [describe_grid(configs), describe_recipe(configs), describe_convergence(conv),
            describe_targets(targets, study.main_truth), describe_deviations(tables["deviations"]), describe_cohort(study.table)]


def pairing_sentences(study: Study) -> list[str]:
    """How the seeds are paired, verified on this build's runs: per backbone and seed, the modes' encoders
    start from the same weights (rebuilt from each run's config); and why subjects are not resampled."""
    from oaprobe.models.probe import encoder_fingerprint  # deferred: torch (only the methods page builds a model)

    groups: dict[tuple[str, int], set[str]] = {}
    for r in study.runs:
        groups.setdefault((r.config.backbone, r.config.seed), set()).add(encoder_fingerprint(r.config))
    alike = sum(len(prints) == 1 for prints in groups.values())
    n_train = int((study.table["split"] == "train").sum())
    carved = CohortView(study.manifest, study.table, label_noise=None).split_origin()
    return ([carved] if carved else []) + [
        f"Pairing, checked on this build: in {alike} of {len(groups)} (backbone, seed) groups the runs of every mode "
        "start from identical encoder weights (each run's initial model rebuilt from its configuration and hashed); "
        "the batch order of each epoch is a permutation drawn from the seed and the epoch alone, so it is the same "
        "in every mode.",
        f"Training knees are not resampled per seed: every seed trains on the same {n_train} knees and is scored on "
        "the same test knees. The spread over seeds is the training procedure's own (initialisation and batch order), "
        "the variance a comparison of supervision schemes on one cohort must control. Resampling the training subjects "
        "per seed (Bouthillier et al., 2021) would also measure how the dual-minus-single difference moves with the "
        "training sample; this build does not, so its verdicts are about this cohort's training set.",
    ]


# ---------------------------------------------------------------------------- where the build's time went
#: the cost table's chapter grids, in its order (``saliency`` is the stage after training)
COST_GRIDS = ("main", "recipe", "label noise", "variants", "saliency")


def run_grid(config: dict[str, Any], main_manifest: str) -> str:
    """The chapter grid a run config belongs to: ``recipe`` (the reference recipe's settings),
    ``label noise`` (another cohort than ``main_manifest``), ``variants`` (ordinal head, label
    smoothing, another lambda or the stacked dual) or ``main``."""
    if all(config.get(k) == v for k, v in REFERENCE_RECIPE.items()):
        return "recipe"
    if config["manifest"] != main_manifest:
        return "label noise"
    if (config["mode"] not in MODES or config.get("label_smoothing", 0.0) != 0.0 or config.get("oa_weight", 1.0) != 1.0
            or config.get("dual_variant") == "stacked"):
        return "variants"
    return "main"


def run_costs(runs_root: str | Path) -> pd.DataFrame:
    """One row per finished run folder under ``runs_root`` and per finished saliency folder in it.

    A run's ``seconds`` is its ``DONE`` minus its ``config.json`` modification time (written once
    the volumes are loaded and the model is built), split into ``epochs`` (the sum of
    ``history.csv``'s epoch seconds) and ``final`` (the rest: the final evaluation and embedding
    pass and the writes). A saliency folder's ``seconds`` is its ``settings.json``'s
    ``seconds`` when recorded, else missing; ``done`` (the ``DONE`` time) is always given.
    """
    rows = []
    for folder in sorted(p for p in Path(runs_root).iterdir() if p.is_dir()):
        done, cfg_file = folder / "DONE", folder / "config.json"
        if not (done.is_file() and cfg_file.is_file()):
            continue
        config = json.loads(cfg_file.read_text())["config"]
        seconds = done.stat().st_mtime - cfg_file.stat().st_mtime
        epochs = min(float(pd.read_csv(folder / "history.csv")["seconds"].sum()), seconds)
        base = {"backbone": config["backbone"], "epochs_n": config["epochs"], "width": config["width"],
                "manifest": str(Path(config["manifest"]).resolve())}
        rows.append({**base, "folder": folder.name, "config": config, "seconds": seconds, "epochs": epochs,
                     "final": seconds - epochs, "done": done.stat().st_mtime})
        for sal in sorted(folder.glob("saliency-*")):
            if (sal / "DONE").is_file():
                meta = json.loads((sal / "settings.json").read_text()) if (sal / "settings.json").is_file() else {}
                rows.append({**base, "folder": f"{folder.name}/{sal.name}", "config": None,
                             "seconds": float(meta.get("seconds", float("nan"))), "epochs": 0.0, "final": 0.0,
                             "done": (sal / "DONE").stat().st_mtime})
    return pd.DataFrame(rows, columns=["backbone", "epochs_n", "width", "manifest", "folder", "config", "seconds",
                                       "epochs", "final", "done"])


def cost_table(runs_root: str | Path, epochs: int | None = None, width: float | None = None,
               cohorts: Sequence[str | Path] | None = None) -> pd.DataFrame:
    """Where a built book's time went, by backbone and chapter grid: runs, seconds per run, its split
    into epochs and final pass, core minutes and share of all run time (issue 32).

    ``epochs`` and ``width`` keep only runs of those settings, and ``cohorts`` (the book's manifests:
    its cohort and its label-noise cohorts) only runs on them: a runs folder shared by presets holds
    other books' runs, which would otherwise count (another cohort reads as label noise).
    Saliency rows sum the folders' recorded seconds; where none are recorded, the stage's wall time
    (its last ``DONE`` minus the last training run's ``DONE``) stands in, marked in ``note``.
    Raises ValueError naming ``runs_root`` when it holds no finished run.
    """
    costs = run_costs(runs_root)
    if cohorts is not None:
        costs = costs[costs["manifest"].isin({str(Path(m).resolve()) for m in cohorts})]
    if epochs is not None:
        costs = costs[costs["epochs_n"] == epochs]
    if width is not None:
        costs = costs[costs["width"] == width]
    trained = costs[costs["config"].notna()]
    if trained.empty:
        raise ValueError(f"runs_root = {str(runs_root)!r}: no finished run folder (DONE and config.json) there")
    main_manifest = trained["config"].map(lambda c: c["manifest"]).mode().iloc[0]
    grid = trained["config"].map(lambda c: run_grid(c, main_manifest))
    rows = [_cost_row(backbone_title(bb), g, part) for (bb, g), part in trained.groupby([trained["backbone"], grid])]
    saliency = costs[costs["config"].isna()]
    if len(saliency):
        recorded = saliency["seconds"].notna().all()
        total = saliency["seconds"].sum() if recorded else max(saliency["done"].max() - trained["done"].max(), 0.0)
        rows.append({"backbone": "all", "grid": "saliency", "runs": len(saliency), "s / run": total / len(saliency),
                     "epochs s / run": float("nan"), "final s / run": float("nan"), "core min": total / 60,
                     "note": "" if recorded else "wall time of the stage (no per-folder seconds recorded)"})
    table = pd.DataFrame(rows)
    table["share"] = table["core min"] / table["core min"].sum()
    table["grid"] = pd.Categorical(table["grid"], COST_GRIDS, ordered=True)
    return table.sort_values(["grid", "core min"], ascending=[True, False]).reset_index(drop=True)


def _cost_row(backbone: str, grid: str, part: pd.DataFrame) -> dict[str, Any]:
    return {"backbone": backbone, "grid": grid, "runs": len(part), "s / run": part["seconds"].mean(),
            "epochs s / run": part["epochs"].mean(), "final s / run": part["final"].mean(),
            "core min": part["seconds"].sum() / 60, "note": ""}
