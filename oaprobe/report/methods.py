"""The methods page, generated from the configurations the runs actually used."""

from __future__ import annotations

import dataclasses
import json

import pandas as pd

from oaprobe.config import PRESETS, RunConfig, get_preset
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
    "class_weighting": False,
    "augment": False,
    "oa_weight": 1.0,
    "dual_variant": "stacked",
}
_PER_RUN = ("manifest", "backbone", "mode", "seed")


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
    shared = [(f, str(configs[0][f])) for f in fields if all(c[f] == configs[0][f] for c in configs)]
    varying = [(f, ", ".join(sorted({str(c[f]) for c in configs}))) for f in fields if any(c[f] != configs[0][f] for c in configs)]

    deviations = []
    for f, ref in REFERENCE_PROTOCOL.items():
        used = sorted({str(tuple(c[f]) if isinstance(c[f], list) else c[f]) for c in configs})
        if used != [str(ref)]:
            deviations.append({"setting": f, "reference": str(ref), "this build": ", ".join(used)})

    backbones = []
    for bb in study.backbones:
        runs = study.select(backbone=bb)
        secs = pd.concat([r.history["seconds"] for r in runs])
        params = ", ".join(f"{r.config.mode} {r.meta.get('n_parameters'):,}" for r in runs if r.config.seed == runs[0].config.seed)
        backbones.append({"backbone": bb, "parameters": params,
                          "embedding dim": runs[0].meta.get("embedding_dim"), "runs": len(runs),
                          "s / epoch (mean)": round(float(secs.mean()), 2),
                          "training s (all runs)": round(float(secs.sum()), 1)})

    presets = []
    for name in PRESETS:
        p = get_preset(name)
        presets.append({"preset": name, "subjects": p.cohort.n_subjects, "volume": "x".join(map(str, p.cohort.shape)),
                        "input": "x".join(map(str, p.run.get("input_shape", ()))), "epochs": p.run.get("epochs"),
                        "width": p.run.get("width"), "backbones": ", ".join(p.backbones), "seeds": len(p.seeds),
                        "noise levels": ", ".join(map(str, p.label_noise_levels))})
    return {
        "cohort": pd.DataFrame(cohort_rows, columns=["setting", "value"]),
        "shared": pd.DataFrame(shared + varying, columns=["setting", "value"]),
        "deviations": pd.DataFrame(deviations),
        "backbones": pd.DataFrame(backbones),
        "presets": pd.DataFrame(presets),
    }
