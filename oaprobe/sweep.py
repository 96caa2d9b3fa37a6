"""Expand a grid of RunConfigs and run what is missing, in parallel local worker processes.

A finished run (its folder holds ``DONE``) is never retrained; an unfinished one resumes from
its last checkpoint. The grid is validated once, up front, so a bad manifest or backbone is one
error rather than one per run. Ctrl-C, SIGTERM, SIGKILL or a crash leaves finished runs usable and
unfinished ones resumable, and no worker behind: on Ctrl-C or SIGTERM the parent terminates its
workers, and a worker whose parent vanished (SIGKILL) exits by itself within a second. Workers are
single-threaded processes: on a small CPU two 1-thread processes beat one 2-thread process
(ENV-NOTES), and thread oversubscription is what makes CPUs crawl.

Example:
    >>> from oaprobe.config import get_preset
    >>> grid = expand_grid({"manifest": "m.csv"}, backbone=["resnet3d", "m3t"], seed=[0, 1])
    >>> len(grid)
    4
"""

from __future__ import annotations

import contextlib
import itertools
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from oaprobe.config import MODES, ConfigError, RunConfig, get_preset
from oaprobe.errors import OaprobeError

DEFAULT_RUNS = Path("runs")
DEFAULT_COHORTS = Path("data/cohorts")
DEFAULT_CACHE = Path(".cache/volumes")
def cost_hint(cfg: RunConfig) -> float:
    """Rough relative cost of a run (the backbone's registry cost x epochs x voxels), only used to
    order the work: the sweep starts the longest runs first, so workers finish together."""
    from oaprobe.models.backbones import backbone_cost

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


class SweepInterrupted(KeyboardInterrupt):
    """SIGTERM arrived while a sweep ran; handled like Ctrl-C (workers stopped, finished runs kept)."""

    def __init__(self, signum: int = signal.SIGTERM):
        self.signum = signum
        super().__init__(f"stopped by {signal.Signals(signum).name}")


def preset_manifest(preset: str, cohorts_root: Path = DEFAULT_COHORTS, label_noise: float | None = None,
                    progress: bool = True) -> Path:
    """The preset's synthetic cohort, optionally relabelled at another noise strength, built or reused."""
    from oaprobe.data.cohort import build_cohort

    cohort = get_preset(preset).cohort
    if label_noise is not None:
        cohort = cohort.replace(label_noise=label_noise)
    return build_cohort(cohort, Path(cohorts_root), progress=progress)


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


def noise_grid(manifest: str | Path, preset: str) -> list[RunConfig]:
    """The label-noise chapter's runs on one relabelled cohort: first backbone, every mode, every
    seed (on the cohort at the preset's own strength these are the main grid's runs)."""
    return study_grid(manifest, preset, backbones=get_preset(preset).backbones[:1])


def stacked_grid(manifest: str | Path, preset: str) -> list[RunConfig]:
    """The exercises' stacked-dual runs: first backbone, dual with the OA head on the KL logits."""
    return study_grid(manifest, preset, backbones=get_preset(preset).backbones[:1], modes=["dual"],
                      dual_variant="stacked")


def validate_grid(configs: Iterable[RunConfig]) -> None:
    """Check a grid once before any work, raising the first problem as is.

    Each distinct (backbone, input_shape) is checked once, and each distinct (manifest,
    batch_size, select) once with the engine's own ``validate`` (which reads and
    fully validates the manifest), so a bad manifest is one error, not one per run.

    Raises:
        ConfigError: an unknown backbone, a shape it cannot take, or a setting the manifest cannot satisfy.
        ManifestError: an invalid manifest (the message names the file and rows).
    """
    from oaprobe.models.backbones import check_input_shape
    from oaprobe.training.engine import validate

    configs = list(configs)
    for backbone, shape in dict.fromkeys((c.backbone, c.input_shape) for c in configs):
        check_input_shape(backbone, shape)
    by_data = {(c.manifest, c.batch_size, c.select): c for c in configs}
    for cfg in by_data.values():
        validate(cfg)


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """While active, SIGTERM raises :class:`SweepInterrupted` in the main thread, as Ctrl-C raises
    KeyboardInterrupt, so the same cleanup stops the workers; the old handler comes back after."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be set from the main thread; the workers' watchdog still applies
        return

    def interrupt(signum: int, frame: Any) -> None:
        raise SweepInterrupted(signum)

    old = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old if old is not None else signal.SIG_DFL)


def _exit_with_parent(parent_pid: int, interval: float = 0.5) -> None:
    """Exit this worker as soon as ``parent_pid`` is no longer its parent (killed, e.g. by SIGKILL,
    with no chance to stop its pool); the run's last checkpoint stays and resumes next time."""
    while os.getppid() == parent_pid:
        time.sleep(interval)
    os._exit(1)


def _init_worker(threads: int, parent_pid: int) -> None:
    """Set up a pool worker: exit with the parent, ``threads`` torch/OpenMP threads, Ctrl-C ignored."""
    threading.Thread(target=_exit_with_parent, args=(parent_pid,), name="parent-watch", daemon=True).start()
    os.environ["OMP_NUM_THREADS"] = str(threads)
    # Ctrl-C goes to the parent, which terminates the pool; checkpoints stay.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    import torch

    torch.set_num_threads(threads)


class _WorkerError(RuntimeError):
    """A worker's error as text: an exception that does not unpickle (e.g. one whose ``__init__``
    takes other arguments than its message) would break the whole pool and fail every pending run."""


def _fit_one(cfg_json: str, runs_root: str, cache_dir: str | None) -> str:
    import json

    from oaprobe.training.engine import fit

    cfg = RunConfig.from_dict(json.loads(cfg_json))
    try:
        return str(fit(cfg, Path(runs_root), cache_dir=Path(cache_dir) if cache_dir else None, progress=False))
    except Exception as err:
        raise _WorkerError(f"{type(err).__name__}: {err}") from None


#: What a pool worker runs per config: (canonical JSON, runs root, cache dir or None) -> run folder.
_WorkFn = Callable[[str, str, str | None], str]


def run_missing(
    configs: Iterable[RunConfig],
    runs_root: Path = DEFAULT_RUNS,
    jobs: int = 1,
    cache_dir: Path | None = DEFAULT_CACHE,
    progress: bool = True,
    _work: _WorkFn = _fit_one,
) -> list[Path]:
    """Train every config whose run folder is not finished; return all run folders in order.

    The unfinished configs are validated first (:func:`validate_grid`). With ``jobs == 1`` runs
    train in this process (with per-epoch progress bars); otherwise in ``jobs`` single-threaded
    worker processes, with one overall progress bar. SIGTERM is handled like Ctrl-C meanwhile.
    ``_work`` (tests only) replaces what each worker runs; it must be importable by name.

    Raises:
        ConfigError, ManifestError: the grid is invalid (nothing was started).
        SweepError: some runs failed; the others finished.
        KeyboardInterrupt: Ctrl-C, or :class:`SweepInterrupted` on SIGTERM; no worker is left running.
    """
    from oaprobe.training.runs import is_done, run_dir

    if jobs < 1:
        raise ConfigError(f"jobs = {jobs}; expected >= 1")
    configs = list(configs)
    folders = [run_dir(c, runs_root) for c in configs]
    todo = sorted((c for c, f in zip(configs, folders) if not is_done(f)), key=cost_hint, reverse=True)
    if not todo:
        return folders
    validate_grid(todo)
    with _sigterm_as_interrupt():
        if jobs == 1:
            failures = _run_here(todo, runs_root, cache_dir, progress)
        else:
            _warm_cache(todo, cache_dir)
            failures = _run_pool(todo, runs_root, jobs, cache_dir, progress, _work)
    if failures:
        raise SweepError(failures)
    return folders


def _run_here(todo: Sequence[RunConfig], runs_root: Path, cache_dir: Path | None, progress: bool) -> dict[str, str]:
    """Train ``todo`` one after another in this process; return run id -> error text of failed runs."""
    from oaprobe.training.engine import fit

    failures: dict[str, str] = {}
    for cfg in tqdm(todo, desc="runs", unit="run", disable=not progress):
        try:
            fit(cfg, runs_root, cache_dir=cache_dir, progress=progress)
        except Exception as err:  # keep going: other runs are independent
            failures[cfg.run_id()] = f"{type(err).__name__}: {err}"
    return failures


def _run_pool(todo: Sequence[RunConfig], runs_root: Path, jobs: int, cache_dir: Path | None, progress: bool,
              work: _WorkFn) -> dict[str, str]:
    """Train ``todo`` in ``jobs`` spawned workers; on any exception (Ctrl-C, SIGTERM) kill them first."""
    ctx = multiprocessing.get_context("spawn")
    threads = max(1, (os.cpu_count() or 1) // jobs)
    pool = ProcessPoolExecutor(jobs, mp_context=ctx, initializer=_init_worker, initargs=(threads, os.getpid()))
    bar = tqdm(total=len(todo), desc=f"runs ({jobs} workers)", unit="run", disable=not progress)
    try:
        cache = str(cache_dir) if cache_dir else None
        pending = {pool.submit(work, c.canonical_json(), str(runs_root), cache): c for c in todo}
        failures = _collect(pending, bar)
    except BaseException:
        _stop_pool(pool)
        raise
    finally:
        bar.close()
    pool.shutdown(wait=True)
    return failures


def _collect(pending: dict[Future, RunConfig], bar: tqdm) -> dict[str, str]:
    """Wait for every future, ticking ``bar``; return run id -> error text of the failed ones."""
    failures: dict[str, str] = {}
    while pending:
        done, _ = wait(pending, return_when=FIRST_COMPLETED)
        for fut in done:
            cfg = pending.pop(fut)
            err = fut.exception()
            if isinstance(err, _WorkerError):
                failures[cfg.run_id()] = str(err)
            elif err is not None:
                failures[cfg.run_id()] = f"{type(err).__name__}: {err}"
            bar.set_postfix_str(f"{cfg.backbone}/{cfg.mode}/seed{cfg.seed}")
            bar.update()
    return failures


def _stop_pool(pool: ProcessPoolExecutor, grace: float = 5.0) -> None:
    """Cancel what has not started and terminate the workers (SIGTERM, then SIGKILL after ``grace`` s).

    ``shutdown`` alone lets running fits go on; their last checkpoints stay, so they resume next time.
    """
    workers = list((pool._processes or {}).values())  # shutdown() drops this mapping
    pool.shutdown(wait=False, cancel_futures=True)
    for proc in workers:
        proc.terminate()
    deadline = time.monotonic() + grace
    for proc in workers:
        proc.join(max(0.0, deadline - time.monotonic()))
        if proc.is_alive():
            proc.kill()
            proc.join(1.0)


def _warm_cache(configs: Sequence[RunConfig], cache_dir: Path | None) -> None:
    """Preprocess every volume once in this process so workers only read the disk cache.

    The manifests were validated by :func:`validate_grid`, so an error here is a real one and propagates.
    """
    if cache_dir is None:
        return
    from oaprobe.data.dataset import load_volumes
    from oaprobe.data.manifest import read_manifest

    for manifest, shape in dict.fromkeys((c.manifest, c.input_shape) for c in configs):
        load_volumes(read_manifest(manifest, check_volumes=False), shape, cache_dir=cache_dir, progress=False)
