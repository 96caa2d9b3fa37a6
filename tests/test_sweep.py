"""Tests of oaprobe.sweep: grid expansion and layering, the noise grid, and run_missing."""

from __future__ import annotations

from pathlib import Path

import pytest

from oaprobe import sweep
from oaprobe.config import MODES, get_preset
from oaprobe.sweep import SweepError, expand_grid, noise_grid, run_missing, stacked_grid, study_grid
from oaprobe.training import engine
from oaprobe.training.runs import DONE, is_done, run_dir


@pytest.fixture()
def manifest(tmp_path: Path) -> Path:
    path = tmp_path / "manifest.csv"
    path.write_text("planted manifest content\n")
    return path


def test_expand_grid_is_the_cartesian_product():
    grid = expand_grid({"manifest": "m.csv"}, backbone=["resnet3d", "m3t"], seed=[0, 1, 2])
    assert len(grid) == 6
    assert {(c.backbone, c.seed) for c in grid} == {(b, s) for b in ("resnet3d", "m3t") for s in (0, 1, 2)}


def test_expand_grid_removes_duplicates():
    assert len(expand_grid({"manifest": "m.csv"}, seed=[0, 0, 1])) == 2
    # dual_variant is canonicalised to "parallel" outside dual: 3 modes x 2 variants -> 4 distinct runs
    grid = expand_grid({"manifest": "m.csv"}, mode=list(MODES), dual_variant=["parallel", "stacked"])
    assert len(grid) == 4
    assert sorted((c.mode, c.dual_variant) for c in grid) == [
        ("dual", "parallel"), ("dual", "stacked"), ("single_kl", "parallel"), ("single_oa", "parallel")
    ]


def test_study_grid_layers_preset_backbone_overrides_and_explicit_overrides(manifest):
    p = get_preset("course")
    assert p.backbone_overrides["m3t"]["input_shape"] != p.run["input_shape"]
    grid = study_grid(manifest, "course")
    assert len(grid) == len(p.backbones) * len(MODES) * len(p.seeds)
    for cfg in grid:
        assert cfg.epochs == p.run["epochs"] and cfg.manifest == str(manifest)
        want = p.backbone_overrides.get(cfg.backbone, {}).get("input_shape", p.run["input_shape"])
        assert cfg.input_shape == tuple(want)
    explicit = study_grid(manifest, "course", input_shape=(16, 16, 16), epochs=1)
    assert {c.input_shape for c in explicit} == {(16, 16, 16)} and {c.epochs for c in explicit} == {1}


def test_study_grid_restricts_axes(manifest):
    grid = study_grid(manifest, "default", backbones=["m3t"], modes=["dual"], seeds=[5])
    assert [(c.backbone, c.mode, c.seed) for c in grid] == [("m3t", "dual", 5)]


def test_noise_grid_at_own_noise_is_the_main_grids_first_backbone(manifest):
    p = get_preset("default")
    main = [c for c in study_grid(manifest, "default") if c.backbone == p.backbones[0]]
    own = noise_grid(manifest, "default", p.cohort.label_noise)
    assert [c.run_id() for c in own] == [c.run_id() for c in main]
    assert all(c.saliency_knees == p.run["saliency_knees"] > 0 for c in own)


@pytest.mark.parametrize("level", [0.0, 2.0])
def test_noise_grid_elsewhere_has_no_saliency(manifest, level):
    p = get_preset("default")
    grid = noise_grid(manifest, "default", level)
    assert len(grid) == len(MODES) * len(p.seeds)
    assert {c.backbone for c in grid} == {p.backbones[0]}
    assert {c.saliency_knees for c in grid} == {0}


def test_stacked_grid_is_dual_stacked_without_saliency(manifest):
    grid = stacked_grid(manifest, "default")
    assert {(c.mode, c.dual_variant, c.saliency_knees) for c in grid} == {("dual", "stacked", 0)}
    assert sorted(c.seed for c in grid) == list(get_preset("default").seeds)


def test_run_missing_skips_finished_runs(manifest, tmp_path, monkeypatch):
    grid = expand_grid({"manifest": str(manifest)}, seed=[0, 1, 2])
    root = tmp_path / "runs"
    for cfg in grid[:2]:
        run_dir(cfg, root).mkdir(parents=True)
        (run_dir(cfg, root) / DONE).write_text("")
    trained = []

    def fake_fit(cfg, runs_root, cache_dir=None, progress=True, **kwargs):
        trained.append(cfg)
        folder = run_dir(cfg, runs_root)
        folder.mkdir(parents=True)
        (folder / DONE).write_text("")
        return folder

    monkeypatch.setattr(engine, "fit", fake_fit)
    folders = run_missing(grid, root, jobs=1, cache_dir=None, progress=False)
    assert folders == [run_dir(c, root) for c in grid]
    assert trained == [grid[2]]
    assert run_missing(grid, root, jobs=4, cache_dir=None, progress=False) == folders  # nothing left: no pool
    assert trained == [grid[2]]


@pytest.fixture()
def bad_manifest(smoke_manifest, tmp_path) -> Path:
    """A copy of the smoke manifest with an invalid grade (and image paths that lead nowhere)."""
    lines = smoke_manifest.read_text().splitlines()
    header, first = lines[0].split(","), lines[1].split(",")
    first[header.index("kl")] = "7"
    path = tmp_path / "bad" / "manifest.csv"
    path.parent.mkdir()
    path.write_text("\n".join([lines[0], ",".join(first), *lines[2:]]) + "\n")
    return path


def test_one_failing_run_does_not_stop_the_others(smoke_config, volume_cache, bad_manifest, tmp_path):
    good, bad = smoke_config(mode="single_oa"), smoke_config(backbone="no_such_net")
    bad_data = smoke_config(mode="single_oa", manifest=str(bad_manifest))
    with pytest.raises(SweepError) as err:
        run_missing([bad, good, bad_data], tmp_path / "runs", jobs=1, cache_dir=volume_cache, progress=False)
    assert list(err.value.failures) == [bad.run_id(), bad_data.run_id()]
    assert "no_such_net" in err.value.failures[bad.run_id()] and bad.run_id() in str(err.value)
    assert "kl = '7'" in err.value.failures[bad_data.run_id()]
    assert is_done(run_dir(good, tmp_path / "runs")) and not is_done(run_dir(bad, tmp_path / "runs"))


def test_two_workers_train_and_collect_failures(smoke_config, volume_cache, bad_manifest, tmp_path):
    # a bad manifest must stop neither the cache warm-up nor the pool (its error does not unpickle)
    good, bad = smoke_config(mode="single_kl", seed=3), smoke_config(backbone="no_such_net")
    bad_data = smoke_config(mode="single_oa", manifest=str(bad_manifest))
    with pytest.raises(SweepError) as err:
        run_missing([good, bad, bad_data], tmp_path / "runs", jobs=2, cache_dir=volume_cache, progress=False)
    assert set(err.value.failures) == {bad.run_id(), bad_data.run_id()}, err.value.failures
    assert err.value.failures[bad.run_id()].startswith("ConfigError: unknown backbone")
    assert "kl = '7'" in err.value.failures[bad_data.run_id()]
    assert is_done(run_dir(good, tmp_path / "runs"))


def test_sweep_error_lists_every_failure():
    err = SweepError({"aaa": "ValueError: x", "bbb": "RuntimeError: y"})
    assert "2 run(s) failed" in str(err) and "aaa: ValueError: x" in str(err) and "bbb: RuntimeError: y" in str(err)
    assert isinstance(err, RuntimeError) and sweep.SweepError is SweepError
