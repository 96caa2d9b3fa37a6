"""Which saliency maps may decide claim 3: the checks per run, the per-run table and the method verdicts."""

import pandas as pd
import pytest

from oaprobe.report.saliency import min_deletion_cases, randomisation_verdicts


def _summary() -> pd.DataFrame:
    rows = []
    for mode, sg_last in (("dual", 0.42), ("single_oa", 0.60)):
        for method, last in (("smoothgrad", sg_last), ("gradcam", -0.05)):
            for step, rho in ((0, 1.0), (1, 0.8), (2, last)):
                rows.append({"backbone": "resnet3d", "mode": mode, "method": method, "step": step, "layer": "l",
                             "spearman": rho, "sd": 0.1, "n": 2})
    return pd.DataFrame(rows)


def test_randomisation_verdict_reads_the_last_step_only():
    v = randomisation_verdicts(_summary())
    assert len(v) == 4
    by = v.set_index(["mode", "method"])
    assert not by.loc[("dual", "smoothgrad"), "passes"] and by.loc[("dual", "gradcam"), "passes"]
    assert by.loc[("single_oa", "smoothgrad"), "spearman_randomised"] == 0.60
    assert by.loc[("dual", "gradcam"), "verdict"] == "passes"
    assert "not below 0.3" in by.loc[("dual", "smoothgrad"), "reason"]


def test_the_deletion_check_needs_five_knee_targets():
    assert min_deletion_cases(0.05) == 5 and min_deletion_cases(0.01) == 7


def test_a_strongly_negative_correlation_fails_too():
    s = _summary()
    s.loc[(s["method"] == "gradcam") & (s["step"] == 2), "spearman"] = -0.5
    assert not randomisation_verdicts(s)["passes"].any()


# --------------------------------------------------------------------------- claim 3: the per-run table
def _run_frames(rho: dict[str, float], faster: dict[str, int], n_knees: int = 5):
    """Planted stage frames of two runs (dual, single_oa; seed 0), methods ``rho``'s keys: knee k's
    cartilage map puts mass (k+1)/10 on a region of volume share 0.1 (enrichment k+1); the evidence
    maps enrichment 2 everywhere; at the last randomisation step the maps correlate ``rho[method]``
    with the trained ones; deletion is faster than random in ``faster[method]`` knee-targets."""
    runs = {"r_dual": "dual", "r_oa": "single_oa"}
    base = [{"run_id": r, "backbone": "resnet3d", "mode": m, "seed": 0} for r, m in runs.items()]
    sal, ev, sanity, auc = [], [], [], []
    for run in base:
        for method in rho:
            for k in range(n_knees):
                cid = f"k{k}"
                for target in ("oa",) if run["mode"] == "single_oa" else ("oa", "kl"):
                    common = {**run, "case_id": cid, "target": target, "method": method}
                    sal += [{**common, "region": "cartilage", "roi_fraction": 0.1, "mass": (k + 1) / 10, "enrichment": k + 1.0},
                            {**common, "region": "bone_margin", "roi_fraction": 0.2, "mass": 0.0, "enrichment": 0.0}]
                    ev.append({**common, "region": "evidence", "roi_fraction": 0.05, "mass": 0.1, "enrichment": 2.0})
                    sanity += [{**common, "step": 0, "layer": "none", "spearman": 1.0},
                               {**common, "step": 7, "layer": "all", "spearman": rho[method]}]
                    auc.append({**common, "auc_gap": 0.1 if k < faster[method] else -0.1})
    return tuple(map(pd.DataFrame, (sal, ev, sanity, auc)))


def test_run_table_planted_enrichment_and_checks():
    from oaprobe.report.saliency import RUN_TABLE_COLUMNS, build_run_table, claim3_methods, claim3_statement

    sal, ev, sanity, auc = _run_frames({"smoothgrad": 0.8, "occlusion": 0.05, "gradcam": 0.1}, {"smoothgrad": 5, "occlusion": 5, "gradcam": 1})
    table = build_run_table(sal, ev, sanity, auc)
    assert list(table.columns) == list(RUN_TABLE_COLUMNS)
    # 2 runs x 3 methods x regions (cartilage, evidence) x targets (dual 2, single-OA 1)
    assert len(table) == 3 * 2 * 3 and set(table["region"]) == {"cartilage", "evidence"}
    cart = table[table["region"] == "cartilage"]
    assert (cart["enrichment"] == 3.0).all() and (cart["n_knees"] == 5).all()  # mean of 1..5
    assert (table.loc[table["region"] == "evidence", "enrichment"] == 2.0).all()
    by = table.drop_duplicates(["run_id", "method"]).set_index(["run_id", "method"])
    assert not by.loc[("r_dual", "smoothgrad"), "randomisation_passed"]  # still correlates with the random model
    assert by.loc[("r_dual", "occlusion"), "trusted"] and by.loc[("r_oa", "occlusion"), "trusted"]
    # gradcam: passes randomisation, fails deletion (single-OA: 1 of 5 faster; dual: 2 of 10)
    assert by.loc[("r_dual", "gradcam"), "randomisation_passed"] and by.loc[("r_dual", "gradcam"), "deletion_passed"] is False
    assert not by.loc[("r_dual", "gradcam"), "trusted"]
    verdicts = claim3_methods(table)
    assert verdicts["occlusion"] == "may decide verdicts: trusted in 2 of 2 runs"
    assert verdicts["smoothgrad"].startswith("no verdict: trusted in only 0 of 2 runs (randomisation check failed in 2")
    assert "deletion check failed in 2" in verdicts["gradcam"]
    assert claim3_statement(table).startswith("Claim 3 is decided from")
    failing = claim3_statement(table[table["method"] != "occlusion"])
    assert failing.startswith("Claim 3 is not testable with trustworthy maps") and "0 of 2 runs" in failing


def test_run_table_deletion_without_a_verdict_leaves_trust_to_randomisation():
    from oaprobe.report.saliency import build_run_table, claim3_methods

    sal, ev, sanity, auc = _run_frames({"gradcam": 0.1}, {"gradcam": 4}, n_knees=4)  # single-OA: 4 knee-targets
    table = build_run_table(sal, None, sanity, auc)
    by = table.set_index(["run_id", "target"])
    assert pd.isna(by.loc[("r_oa", "oa"), "deletion_passed"]) and by.loc[("r_oa", "oa"), "trusted"]
    assert by.loc[("r_dual", "oa"), "deletion_passed"] is True  # 8 of 8 faster
    assert set(table["region"]) == {"cartilage"}  # no evidence maps (real data)
    assert claim3_methods(table) == {"gradcam": "may decide verdicts: trusted in 2 of 2 runs"}
    empty = build_run_table(sal, ev, sanity, auc.iloc[:0])
    assert empty["deletion_passed"].isna().all() and empty["trusted"].all()


def test_randomisation_check_per_run_flags_a_weight_free_map_and_passes_a_weight_dependent_one():
    import torch

    from oaprobe.analysis.saliency_checks import cascading_randomisation
    from oaprobe.report.saliency import run_checks
    from tests.analysis.saliency_models import S
    from tests.analysis.test_saliency_checks import SquareEnergy, _planted

    linear, _, _ = _planted()  # its map is the planted weights: a random head gives another map
    ones = torch.ones(1, 1, S, S, S)
    x = torch.rand(1, 1, S, S, S, generator=torch.Generator().manual_seed(0)) + 0.1  # SquareEnergy's map: the input
    rows = []
    for run, model, inp in (("weights", linear, ones), ("input", SquareEnergy().eval(), x)):
        found = cascading_randomisation(model, inp, "k0", ("oa",), ("smoothgrad",), n_samples=1, noise_std=0.0,
                                        last_only=True)  # fmt: skip
        rows += [{**r, "run_id": run, "backbone": "b", "mode": "single_oa", "seed": 0} for r in found]
    checks = run_checks(pd.DataFrame(rows), pd.DataFrame()).set_index("run_id")
    assert checks.loc["weights", "randomisation_passed"] and not checks.loc["input", "randomisation_passed"]
    assert checks.loc["input", "rho_randomised"] == pytest.approx(1.0)
    assert pd.isna(checks.loc["weights", "deletion_passed"])
