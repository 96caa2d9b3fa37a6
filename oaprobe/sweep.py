"""Expand a grid of RunConfigs and run what is missing, in parallel local worker processes.

A finished run (its folder holds ``DONE``) is never retrained; an unfinished one resumes from
its last checkpoint. The grid is validated once, up front, so a bad manifest or backbone is one
error rather than one per run. Ctrl-C, SIGTERM, SIGKILL or a crash leaves finished runs usable and
unfinished ones resumable, and no worker behind (:mod:`oaprobe.workers`).

Example:
    >>> from oaprobe.config import get_preset
    >>> grid = expand_grid({"manifest": "m.csv"}, backbone=["resnet3d", "m3t"], seed=[0, 1])
    >>> len(grid)
    4
"""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from oaprobe import ray_tasks
from oaprobe.analysis.saliency_results import saliency_dir, saliency_missing
from oaprobe.config import (
    DEFAULT_CACHE,
    DEFAULT_COHORTS,
    DEFAULT_RUNS,
    REFERENCE_RECIPE,
    RunConfig,
    SaliencyConfig,
    check_shapes,
    get_preset,
)
from oaprobe.data.cohort import build_cohort
from oaprobe.data.manifest import read_manifest
from oaprobe.errors import ConfigError, OaprobeError
from oaprobe.facts import ALL_MODES, MODES, backbone_cost
from oaprobe.training.checks import check_folder, validate
from oaprobe.training.runs import is_done, load_config, run_dir, run_id
from oaprobe.workers import WorkerError, run_tasks, sigterm_as_interrupt


@dataclass(frozen=True)
class Executor:
    """Where missing work runs: local single-threaded worker processes (the default), or Ray tasks
    on a private local instance (``address`` None) or an existing cluster (``"auto"``, ``HOST:PORT``).

    Attributes:
        kind: ``"local"`` or ``"ray"``.
        address: Ray only: the cluster to join (None: start a private instance on 127.0.0.1).
        gpus_per_task: Ray only: GPUs per run (a fraction lets small runs share one; None: one
            GPU per run where Ray sees GPUs, else none).
    """

    kind: str = "local"
    address: str | None = None
    gpus_per_task: float | None = None

    def __post_init__(self) -> None:
        if self.kind not in EXECUTORS:
            raise ConfigError(f"executor = {self.kind!r}; expected one of {list(EXECUTORS)}")
        if self.kind == "local" and (self.address is not None or self.gpus_per_task is not None):
            raise ConfigError("--ray-address / --gpus-per-run need --executor ray")

    def run(self, tasks: dict[str, tuple], work: Callable[..., Any], jobs: int, desc: str, progress: bool,
            label: Callable[[str], str] = str) -> dict[str, str]:
        """Run ``work(*args)`` for each task; return name -> error text of the failed ones."""
        if self.kind == "local":
            return run_tasks(tasks, work, jobs, desc=desc, progress=progress, label=label)
        cpus = max(1, (os.cpu_count() or 1) // jobs) if self.address is None else 1
        return ray_tasks.run_tasks(tasks, work, jobs, desc=desc, progress=progress, label=label,
                                   address=self.address, num_cpus=cpus, num_gpus=self.gpus_per_task)

    def path(self, folder: Path | None) -> str | None:
        """A folder as workers must see it: absolute for Ray (workers on other nodes start elsewhere)."""
        if folder is None:
            return None
        return str(Path(folder).resolve()) if self.kind == "ray" else str(folder)


EXECUTORS = ("local", "ray")
LOCAL = Executor()


def cost_hint(cfg: RunConfig) -> float:
    """Rough relative cost of a run (the backbone's registry cost x epochs x voxels), only used to
    order the work: the sweep starts the longest runs first, so workers finish together."""
    voxels = cfg.input_shape[0] * cfg.input_shape[1] * cfg.input_shape[2]
    return backbone_cost(cfg.backbone) * cfg.epochs * voxels


class SweepError(OaprobeError, RuntimeError):
    """One or more runs of a sweep failed; ``failures`` maps run ids to the error text.

    One failure reads as one line (``run <id> failed: ...``); several as a count and one line each.
    """

    def __init__(self, failures: dict[str, str]):
        self.failures = failures
        if len(failures) == 1:
            (rid, err), = failures.items()
            one_line = " | ".join(part.strip() for part in err.splitlines() if part.strip())
            super().__init__(f"run {rid} failed (finished runs are kept): {one_line}")
        else:
            lines = "\n".join(f"  {rid}: {err}" for rid, err in failures.items())
            super().__init__(f"{len(failures)} run(s) failed (finished runs are kept):\n{lines}")


def preset_manifest(preset: str, cohorts_root: Path = DEFAULT_COHORTS, label_noise: float | None = None,
                    progress: bool = True, jobs: int = 1) -> Path:
    """The preset's synthetic cohort, optionally relabelled at another noise strength, built or reused
    (``jobs`` worker processes render the volumes that are missing)."""
    cohort = get_preset(preset).cohort
    if label_noise is not None:
        cohort = cohort.replace(label_noise=label_noise)
    return build_cohort(cohort, Path(cohorts_root), progress=progress, jobs=jobs)


def expand_grid(base: dict[str, Any], **axes: Sequence[Any]) -> list[RunConfig]:
    """Cartesian product of ``axes`` over ``base`` fields, validated as RunConfigs, duplicates removed."""
    names = list(axes)
    configs: dict[str, RunConfig] = {}
    for values in itertools.product(*(axes[n] for n in names)):
        cfg = RunConfig.from_dict({**base, **dict(zip(names, values))})
        configs.setdefault(cfg.canonical_json(), cfg)
    return list(configs.values())


def study_grid(
    manifest: str | Path,
    preset: str = "default",
    backbones: Sequence[str] | None = None,
    modes: Sequence[str] = MODES,
    seeds: Sequence[int] | None = None,
    **overrides: Any,
) -> list[RunConfig]:
    """The book's grid for one cohort: backbones x modes x seeds on the preset's run settings.

    Settings stack as: the preset's run settings < its per-backbone overrides < ``overrides``.
    """
    p = get_preset(preset)
    grid: list[RunConfig] = []
    for backbone in backbones or p.backbones:
        base = {**p.run, **p.backbone_overrides.get(backbone, {}), **overrides, "manifest": str(manifest)}
        grid += expand_grid(base, backbone=[backbone], mode=list(modes),
                            seed=list(seeds if seeds is not None else p.seeds))
    return grid


def noise_grid(manifest: str | Path, preset: str, **overrides: Any) -> list[RunConfig]:
    """The label-noise chapter's runs on one relabelled cohort: first backbone, the three modes and
    the ordinal head, the preset's first ``beyond_seeds`` seeds (at the preset's own strength the
    three modes are the main grid's); ``overrides`` are RunConfig fields, as for :func:`study_grid`."""
    p = get_preset(preset)
    return study_grid(manifest, preset, backbones=p.backbones[:1], modes=ALL_MODES, seeds=p.seeds[: p.beyond_seeds],
                      **overrides)


def stacked_grid(manifest: str | Path, preset: str) -> list[RunConfig]:
    """The exercises' stacked-dual runs: first backbone, dual with the OA head on the KL logits, the
    preset's first ``beyond_seeds`` seeds."""
    p = get_preset(preset)
    return study_grid(manifest, preset, backbones=p.backbones[:1], modes=["dual"], seeds=p.seeds[: p.beyond_seeds],
                      dual_variant="stacked")


def beyond_grid(manifest: str | Path, preset: str) -> list[RunConfig]:
    """The "Beyond the dual head" runs (first backbone, the preset's first ``beyond_seeds`` seeds):
    the ordinal head, single-KL and dual with label smoothing, and dual at each extra lambda.
    Empty when the preset has no lambdas. Single-KL and dual at lambda 1 are the main grid's."""
    p = get_preset(preset)
    if not p.lambdas:
        return []
    first, seeds = p.backbones[:1], p.seeds[: p.beyond_seeds]
    grid = study_grid(manifest, preset, backbones=first, modes=["ordinal"], seeds=seeds)
    grid += study_grid(manifest, preset, backbones=first, modes=["single_kl", "dual"], seeds=seeds,
                       label_smoothing=p.smoothing)
    for weight in p.lambdas:
        grid += study_grid(manifest, preset, backbones=first, modes=["dual"], seeds=seeds, oa_weight=weight)
    return grid


def recipe_grid(manifest: str | Path, preset: str) -> list[RunConfig]:
    """The first backbone's modes trained with the reference study's recipe
    (:data:`oaprobe.config.REFERENCE_RECIPE`) at the preset's sizes, on its first ``recipe_seeds`` seeds
    (the same seeds as the main grid's runs they are compared with). Empty when ``recipe_seeds`` is 0."""
    p = get_preset(preset)
    if not p.recipe_seeds:
        return []
    return study_grid(manifest, preset, backbones=p.backbones[:1], seeds=p.seeds[: p.recipe_seeds], **REFERENCE_RECIPE)


def validate_grid(configs: Iterable[RunConfig]) -> None:
    """Check a grid once before any work, raising the first problem as is.

    Each distinct (backbone, input_shape) is checked once, and each distinct (manifest,
    batch_size, select) once with the engine's own ``validate`` (which reads and
    fully validates the manifest), so a bad manifest is one error, not one per run.

    Raises:
        ConfigError: an unknown backbone, a shape it cannot take, or a setting the manifest cannot satisfy.
        ManifestError: an invalid manifest (the message names the file and rows).
    """
    configs = list(configs)
    check_shapes(configs)
    by_data = {(c.manifest, c.batch_size, c.select): c for c in configs}
    for cfg in by_data.values():
        validate(cfg)


def _fit(cfg: RunConfig, runs_root: Path, cache_dir: Path | None, progress: bool) -> Path:
    """Train ``cfg`` in this process; the sweep validated its manifest (volumes included) once before."""
    from oaprobe.training.engine import fit  # deferred: torch (report modules import this one)

    return fit(cfg, runs_root, cache_dir=cache_dir, progress=progress, check_volumes=False)


def _fit_one(cfg_json: str, runs_root: str, cache_dir: str | None) -> str:
    """A worker's task: train one run (given as canonical JSON); errors come back as text."""
    cfg = RunConfig.from_dict(json.loads(cfg_json))
    try:
        return str(_fit(cfg, Path(runs_root), Path(cache_dir) if cache_dir else None, progress=False))
    except Exception as err:
        raise WorkerError(f"{type(err).__name__}: {err}") from None


#: What a pool worker runs per config: (canonical JSON, runs root, cache dir or None) -> run folder.
_WorkFn = Callable[[str, str, str | None], str]


def run_missing(
    configs: Iterable[RunConfig],
    runs_root: Path = DEFAULT_RUNS,
    jobs: int = 1,
    cache_dir: Path | None = DEFAULT_CACHE,
    progress: bool = True,
    executor: Executor = LOCAL,
    _work: _WorkFn = _fit_one,
) -> list[Path]:
    """Train every config whose run folder is not finished; return all run folders in order.

    The unfinished configs are validated first (:func:`validate_grid`). With ``jobs == 1`` runs
    train in this process (with per-epoch progress bars); otherwise in ``jobs`` single-threaded
    worker processes, or as Ray tasks (``executor``), with one overall progress bar. SIGTERM is
    handled like Ctrl-C meanwhile.
    ``_work`` (tests only) replaces what each worker runs; it must be importable by name.

    Raises:
        ConfigError, ManifestError: the grid is invalid (nothing was started).
        SweepError: some runs failed; the others finished.
        KeyboardInterrupt: Ctrl-C, or :class:`oaprobe.workers.Interrupted` on SIGTERM; no worker is left running.
    """
    if jobs < 1:
        raise ConfigError(f"jobs = {jobs}; expected >= 1")
    check_folder(runs_root, "runs_root", "the run folders")
    if cache_dir is not None:
        check_folder(cache_dir, "cache_dir", "the preprocessed-volume cache")
    configs = list(configs)
    folders = [run_dir(c, runs_root) for c in configs]
    todo = sorted((c for c, f in zip(configs, folders) if not is_done(f)), key=cost_hint, reverse=True)
    if not todo:
        return folders
    validate_grid(todo)
    if jobs == 1 and executor.kind == "local":
        with sigterm_as_interrupt():
            failures = _run_here(todo, runs_root, cache_dir, progress)
    else:
        _warm_cache(todo, cache_dir)
        tasks = {run_id(c): (c.canonical_json(), executor.path(runs_root), executor.path(cache_dir)) for c in todo}
        names = {run_id(c): f"{c.backbone}/{c.mode}/seed{c.seed}" for c in todo}
        failures = executor.run(tasks, _work, jobs, desc="runs", progress=progress, label=names.get)
    if failures:
        raise SweepError(failures)
    return folders


def _run_here(todo: Sequence[RunConfig], runs_root: Path, cache_dir: Path | None, progress: bool) -> dict[str, str]:
    """Train ``todo`` one after another in this process; return run id -> error text of failed runs."""
    failures: dict[str, str] = {}
    for cfg in tqdm(todo, desc="runs", unit="run", disable=not progress):
        try:
            _fit(cfg, runs_root, cache_dir, progress)
        except Exception as err:  # keep going: other runs are independent
            failures[run_id(cfg)] = f"{type(err).__name__}: {err}"
    return failures


def _saliency_one(folder: str, settings_json: str, cache_dir: str | None) -> str:
    """A worker's task: the saliency stage of one finished run; errors come back as text."""
    from oaprobe.analysis.saliency import run_saliency  # deferred: torch (report modules import this one)

    settings = SaliencyConfig.from_dict(json.loads(settings_json))
    try:
        return str(run_saliency(folder, settings, cache_dir=Path(cache_dir) if cache_dir else None, progress=False))
    except Exception as err:
        raise WorkerError(f"{type(err).__name__}: {err}") from None


def saliency_missing_runs(folders: Iterable[Path], settings: SaliencyConfig, jobs: int = 1,
                          cache_dir: Path | None = DEFAULT_CACHE, progress: bool = True,
                          executor: Executor = LOCAL) -> list[Path]:
    """The saliency stage for every finished run in ``folders`` that lacks results for ``settings``.

    Reads checkpoints and writes ``<run>/saliency-<settings id>/``; never trains and never
    touches a model's files. Returns the results' folders of all finished runs given.

    Raises:
        SweepError: the stage failed on some runs (the others' results are kept).
    """
    if jobs < 1:
        raise ConfigError(f"jobs = {jobs}; expected >= 1")
    folders = [Path(f) for f in folders if is_done(f)]
    todo = sorted(saliency_missing(folders, settings), key=lambda f: cost_hint(load_config(f)), reverse=True)
    tasks = {f.name: (executor.path(f), settings.canonical_json(), executor.path(cache_dir)) for f in todo}
    failures: dict[str, str] = {}
    if executor.kind == "local" and (jobs == 1 or len(todo) == 1):
        with sigterm_as_interrupt():
            for name, args in tqdm(tasks.items(), desc="saliency", unit="run", disable=not progress):
                try:
                    _saliency_one(*args)
                except WorkerError as err:
                    failures[name] = str(err)
    elif todo:
        failures = executor.run(tasks, _saliency_one, jobs, desc="saliency", progress=progress)
    if failures:
        raise SweepError(failures)
    return [saliency_dir(f, settings) for f in folders]


def _warm_cache(configs: Sequence[RunConfig], cache_dir: Path | None) -> None:
    """Preprocess every volume once in this process so workers only read the disk cache.

    The manifests were validated by :func:`validate_grid`, so an error here is a real one and propagates.
    """
    if cache_dir is None:
        return
    from oaprobe.data.dataset import load_volumes  # deferred: torch (report modules import this one)

    for manifest, shape in dict.fromkeys((c.manifest, c.input_shape) for c in configs):
        load_volumes(read_manifest(manifest, check_volumes=False), shape, cache_dir=cache_dir, progress=False)
