"""Tests of oaprobe.sweep: grid expansion and layering, the noise grid, grid validation and run_missing.

Signals (SIGTERM, SIGKILL) and worker cleanup are tested in test_sweep_signals.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from oaprobe import sweep
from oaprobe.config import get_preset
from oaprobe.data import manifest as manifest_module
from oaprobe.data.manifest import ManifestError
from oaprobe.errors import ConfigError, OaprobeError
from oaprobe.facts import MODES
from oaprobe.sweep import SweepError, expand_grid, noise_grid, run_missing, stacked_grid, study_grid, validate_grid
from oaprobe.training import checks as checks_module
from oaprobe.training import engine
from oaprobe.training.runs import DONE, is_done, run_dir, run_id
from tests.sweep_workers import fit_failing_odd_seeds


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


def test_noise_grid_is_the_main_grids_first_backbone_plus_the_ordinal_head(manifest):
    p = get_preset("default")
    side = p.seeds[: p.beyond_seeds]  # the side chapters' seeds, a subset of the main grid's
    main = [c for c in study_grid(manifest, "default", seeds=side) if c.backbone == p.backbones[0]]
    own = noise_grid(manifest, "default")
    assert {run_id(c) for c in own if c.mode in MODES} == {run_id(c) for c in main}
    assert len(own) == (len(MODES) + 1) * len(side) and {c.mode for c in own} - set(MODES) == {"ordinal"}


def test_beyond_grid(manifest):
    from oaprobe.sweep import beyond_grid

    p = get_preset("default")
    grid = beyond_grid(manifest, "default")
    seeds = set(p.seeds[: p.beyond_seeds])
    assert {c.backbone for c in grid} == {p.backbones[0]} and {c.seed for c in grid} == seeds
    kinds = {(c.mode, c.label_smoothing, c.oa_weight) for c in grid}
    assert kinds == {("ordinal", 0.0, 1.0), ("single_kl", p.smoothing, 1.0),
                     ("dual", p.smoothing, 1.0)} | {("dual", 0.0, w) for w in p.lambdas}



def test_stacked_grid_is_dual_stacked_without_saliency(manifest):
    grid = stacked_grid(manifest, "default")
    assert {(c.mode, c.dual_variant) for c in grid} == {("dual", "stacked")}
    p = get_preset("default")
    assert sorted(c.seed for c in grid) == list(p.seeds[: p.beyond_seeds])


def test_run_missing_skips_finished_runs(manifest, tmp_path, monkeypatch):
    grid = expand_grid({"manifest": str(manifest)}, seed=[0, 1, 2])
    root = tmp_path / "runs"
    for cfg in grid[:2]:
        run_dir(cfg, root).mkdir(parents=True)
        (run_dir(cfg, root) / DONE).write_text("")
    trained, validated = [], []

    def fake_fit(cfg, runs_root, cache_dir=None, progress=True, **kwargs):
        trained.append(cfg)
        folder = run_dir(cfg, runs_root)
        folder.mkdir(parents=True)
        (folder / DONE).write_text("")
        return folder

    monkeypatch.setattr(engine, "fit", fake_fit)
    monkeypatch.setattr(sweep, "validate_grid", lambda configs: validated.append(list(configs)))
    folders = run_missing(grid, root, jobs=1, cache_dir=None, progress=False)
    assert folders == [run_dir(c, root) for c in grid]
    assert trained == [grid[2]] and validated == [[grid[2]]]  # finished runs are not re-validated either
    assert run_missing(grid, root, jobs=4, cache_dir=None, progress=False) == folders  # nothing left: no pool
    assert trained == [grid[2]] and len(validated) == 1


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


def test_one_failing_run_does_not_stop_the_others(smoke_config, volume_cache, tmp_path, monkeypatch):
    good, bad = smoke_config(mode="single_oa"), smoke_config(mode="single_oa", seed=1)
    real_fit = engine.fit

    def fit_failing_seed_1(cfg, *args, **kwargs):
        if cfg.seed == 1:
            raise RuntimeError("planted failure")
        return real_fit(cfg, *args, **kwargs)

    monkeypatch.setattr(engine, "fit", fit_failing_seed_1)
    with pytest.raises(SweepError) as err:
        run_missing([bad, good], tmp_path / "runs", jobs=1, cache_dir=volume_cache, progress=False)
    assert err.value.failures == {run_id(bad): "RuntimeError: planted failure"}
    assert str(err.value) == f"run {run_id(bad)} failed (finished runs are kept): RuntimeError: planted failure"
    assert is_done(run_dir(good, tmp_path / "runs")) and not is_done(run_dir(bad, tmp_path / "runs"))


def test_two_workers_train_and_collect_failures(smoke_config, volume_cache, tmp_path):
    # a worker error that does not unpickle must not break the pool (the other runs still finish)
    good, bad, worse = smoke_config(mode="single_kl", seed=2), smoke_config(seed=1), smoke_config(seed=3)
    with pytest.raises(SweepError) as err:
        run_missing([good, bad, worse], tmp_path / "runs", jobs=2, cache_dir=volume_cache, progress=False,
                    _work=fit_failing_odd_seeds)
    assert err.value.failures == {run_id(c): "UnpicklableError: planted failure (code 3)" for c in (bad, worse)}
    assert "2 run(s) failed" in str(err.value)
    assert is_done(run_dir(good, tmp_path / "runs"))


def test_sweep_error_lists_every_failure():
    err = SweepError({"aaa": "ValueError: x", "bbb": "RuntimeError: y"})
    assert "2 run(s) failed" in str(err) and "aaa: ValueError: x" in str(err) and "bbb: RuntimeError: y" in str(err)
    assert isinstance(err, RuntimeError) and isinstance(err, OaprobeError) and sweep.SweepError is SweepError


def test_sweep_error_of_one_run_is_one_line():
    err = SweepError({"aaa": "ValueError: first\n  second"})
    assert str(err) == "run aaa failed (finished runs are kept): ValueError: first | second"
    assert err.failures == {"aaa": "ValueError: first\n  second"}


# ---------------------------------------------------------------------------- validation up front
@pytest.mark.parametrize("jobs", [1, 2])
def test_a_bad_manifest_is_one_error_before_any_work(smoke_config, bad_manifest, tmp_path, jobs):
    grid = [smoke_config(manifest=str(bad_manifest), seed=s) for s in range(3)]
    with pytest.raises(ManifestError, match="kl = '7'") as err:
        run_missing(grid, tmp_path / "runs", jobs=jobs, cache_dir=tmp_path / "cache", progress=False)
    assert str(bad_manifest) in str(err.value)
    assert not (tmp_path / "runs").exists() and not (tmp_path / "cache").exists()


@pytest.mark.parametrize("jobs", [1, 2])
def test_a_bad_backbone_fails_before_any_worker(smoke_config, tmp_path, jobs):
    grid = [smoke_config(seed=0), smoke_config(backbone="foo", seed=1)]
    with pytest.raises(ConfigError, match="unknown backbone 'foo'"):
        run_missing(grid, tmp_path / "runs", jobs=jobs, cache_dir=None, progress=False, _work=fit_failing_odd_seeds)
    assert not (tmp_path / "runs").exists()


def test_validate_grid_reads_each_manifest_once(smoke_config, monkeypatch):
    reads = []
    real_read = manifest_module.read_manifest

    def counting_read(path, *args, **kwargs):
        reads.append(str(path))
        return real_read(path, *args, **kwargs)

    monkeypatch.setattr(checks_module, "read_manifest", counting_read)
    grid = [smoke_config(backbone=b, mode=m, seed=s) for b in ("resnet3d", "m3t") for m in MODES for s in (0, 1)]
    validate_grid(grid)
    assert reads == [grid[0].manifest]


def test_validate_grid_checks_settings_against_the_manifest(smoke_config):
    with pytest.raises(ConfigError, match="batch_size = 10000"):
        validate_grid([smoke_config(), smoke_config(batch_size=10000)])
    with pytest.raises(ConfigError, match="cannot take input_shape"):
        validate_grid([smoke_config(backbone="densenet121", input_shape=(16, 16, 16))])


@pytest.mark.parametrize("jobs", [0, -2])
def test_jobs_below_one_is_a_config_error(smoke_config, tmp_path, jobs):
    with pytest.raises(ConfigError, match=f"^jobs = {jobs}; expected >= 1$"):
        run_missing([smoke_config()], tmp_path / "runs", jobs=jobs, cache_dir=None, progress=False)


def test_warm_cache_raises_manifest_errors(bad_manifest, smoke_config, tmp_path):
    with pytest.raises(ManifestError, match="kl = '7'"):
        sweep._warm_cache([smoke_config(manifest=str(bad_manifest))], tmp_path / "cache")


def test_executor_options_are_checked():
    from oaprobe.sweep import Executor

    with pytest.raises(ConfigError, match="executor = 'dask'"):
        Executor("dask")
    with pytest.raises(ConfigError, match="need --executor ray"):
        Executor("local", address="auto")
    assert Executor("ray").path(Path("runs")) == str(Path("runs").resolve()) and Executor().path(Path("runs")) == "runs"


def test_run_missing_refuses_a_file_as_its_runs_or_cache_folder(tmp_path):
    from oaprobe.errors import ConfigError
    from oaprobe.sweep import run_missing

    afile = tmp_path / "afile"
    afile.write_text("x")
    with pytest.raises(ConfigError, match="runs_root .* is a file"):
        run_missing([], afile, jobs=2)
    with pytest.raises(ConfigError, match="cache_dir .* lies under"):
        run_missing([], tmp_path / "runs", jobs=2, cache_dir=afile / "cache")
    assert not (tmp_path / "runs").exists()
