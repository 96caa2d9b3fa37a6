"""Known-answer tests of the evidence scores: planted maps with a known mass, top-k and pointing."""

import numpy as np
import pandas as pd
import pytest

from oaprobe.analysis.evidence import (
    distractor_reliance,
    evidence_overlap,
    evidence_regions,
    evidence_scorer,
    evidence_summary,
    pointing_game,
)
from oaprobe.data.phantom import DISTRACTOR_EFFUSION, EVIDENCE_JSN, EVIDENCE_OSTEOPHYTE


def planted(shape=(10, 10, 10)):
    """Evidence: osteophyte slab d=0 (100 voxels), JSN slab d=1 (100), effusion slab d=9 (100)."""
    ev = np.zeros(shape, np.uint8)
    ev[0], ev[1], ev[9] = EVIDENCE_OSTEOPHYTE, EVIDENCE_JSN, DISTRACTOR_EFFUSION
    return ev


def test_mass_top5_and_pointing_on_a_planted_map():
    ev = planted()
    sal = np.zeros(ev.shape)
    sal[0, :5] = 3.0  # 50 voxels, mass 150, on the osteophyte (maximum there)
    sal[9] = 0.5  # 100 voxels, mass 50, on the effusion
    m = evidence_overlap(sal, ev)
    assert m["osteophyte"]["mass"] == pytest.approx(0.75)
    assert m["effusion"]["mass"] == pytest.approx(0.25)
    assert m["evidence"]["mass"] == pytest.approx(0.75) and m["jsn"]["mass"] == 0.0
    assert m["osteophyte"]["top5"] == 1.0  # the 50 top voxels are all osteophyte
    assert m["osteophyte"]["pointing"] == 1.0 and m["effusion"]["pointing"] == 0.0
    assert m["osteophyte"]["roi_fraction"] == pytest.approx(0.1)
    assert m["effusion"]["enrichment"] == pytest.approx(2.5)
    assert np.isnan(m["sclerosis"]["mass"]) and np.isnan(m["sclerosis"]["pointing"])  # empty region


def test_pointing_game_ties_and_undefined_cases():
    roi = np.zeros((3, 3, 3), bool)
    roi[1, 1, 1] = True
    sal = np.zeros((3, 3, 3))
    assert np.isnan(pointing_game(sal, roi))  # all-zero map
    sal[0, 0, 0] = sal[1, 1, 1] = 2.0
    assert pointing_game(sal, roi) == 1.0  # a tied maximum inside counts
    sal[1, 1, 1] = 1.0
    assert pointing_game(sal, roi) == 0.0
    assert np.isnan(pointing_game(sal, np.zeros_like(roi)))


def test_regions_cover_every_code_once():
    ev = planted()
    regions = evidence_regions(ev)
    assert regions["evidence"].sum() == 200 and regions["effusion"].sum() == 100
    assert not (regions["evidence"] & regions["effusion"]).any()


def _table():
    ev = np.stack([planted(), planted()])
    score, table = evidence_scorer(ev, ["A", "B"])
    on_evidence = np.zeros(ev.shape[1:])
    on_evidence[0] = 1.0
    on_effusion = np.zeros(ev.shape[1:])
    on_effusion[9] = 1.0
    for i in range(2):
        score(i, "oa", "smoothgrad", on_evidence)
        score(i, "oa", "gradcam", on_effusion)
    return table()


def test_summary_says_which_method_finds_the_evidence():
    t = _table()
    assert set(t["case_id"]) == {"A", "B"} and len(t) == 2 * 2 * 8
    s = evidence_summary(t).set_index(["method", "region"])
    assert s.loc[("smoothgrad", "evidence"), "pointing"] == 1.0
    assert s.loc[("gradcam", "evidence"), "pointing"] == 0.0
    assert s.loc[("smoothgrad", "evidence"), "n"] == 2


def test_distractor_reliance_flags_the_map_on_the_effusion_only():
    t = _table()
    r = distractor_reliance(t).set_index(["method", "region"])
    assert bool(r.loc[("gradcam", "effusion"), "relies"])
    assert not bool(r.loc[("smoothgrad", "effusion"), "relies"])
    assert r.loc[("gradcam", "effusion"), "enrichment"] == pytest.approx(10.0)
    assert r.loc[("gradcam", "effusion"), "knees_above_chance"] == 1.0


def test_summary_groups_by_mode_when_present():
    t = pd.concat([_table().assign(mode="dual"), _table().assign(mode="single_oa")])
    s = evidence_summary(t)
    assert set(s["mode"]) == {"dual", "single_oa"}


def test_the_stage_writes_evidence_scores_that_match_its_maps(smoke_config, volume_cache, tmp_path_factory):
    """evidence.csv beside saliency.csv, per knee, target, method and region; the kept maps'
    scores recomputed here from saliency_maps.npz and the evidence file agree (the wiring)."""
    from oaprobe.analysis.saliency import run_saliency
    from oaprobe.analysis.saliency_results import load_saliency
    from oaprobe.config import SaliencyConfig
    from oaprobe.data.dataset import load_masks
    from oaprobe.data.manifest import read_manifest
    from oaprobe.training.engine import fit

    run = fit(smoke_config(), tmp_path_factory.getbasetemp() / "evidence_runs", cache_dir=volume_cache, progress=False)
    settings = SaliencyConfig(knees=2, samples=2, sanity_knees=1, deletion_steps=3, keep_maps=1, seed=5)
    run_saliency(run, settings, cache_dir=volume_cache, progress=False)
    res = load_saliency(run, settings)
    ev = res["evidence"]
    assert ev is not None and ev["case_id"].nunique() == 2
    n_maps = len(res["saliency"][["case_id", "target", "method"]].drop_duplicates())
    assert len(ev) == n_maps * 8  # 5 findings + 3 distractors per map
    cfg = res["settings"]
    table = read_manifest(smoke_config().manifest)
    first = table[table["case_id"] == res["maps"]["case_id"][0]]
    evidence = load_masks(first, smoke_config().input_shape, column="evidence_path")[0]
    target, method = res["maps"]["target"][0], res["maps"]["method"][0]
    expected = evidence_overlap(res["maps"]["saliency"][0].astype(np.float64), evidence)
    got = ev[(ev["case_id"] == first["case_id"].iloc[0]) & (ev["target"] == target) & (ev["method"] == method)]
    for row in got.itertuples():
        assert row.roi_fraction == pytest.approx(expected[row.region]["roi_fraction"])
        if not np.isnan(row.mass):
            assert row.mass == pytest.approx(expected[row.region]["mass"], abs=2e-3)  # float16 maps
    assert cfg["run_id"] == run.name
