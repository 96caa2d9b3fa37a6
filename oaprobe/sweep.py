"""Expand a grid of RunConfigs and run what is missing, in parallel local worker processes.

A finished run (its folder holds ``DONE``) is never retrained; an unfinished one resumes from
its last checkpoint. Ctrl-C or a crash leaves finished runs usable and unfinished ones
resumable. Workers are single-threaded processes: on a small CPU two 1-thread processes beat
one 2-thread process (ENV-NOTES), and thread oversubscription is what makes CPUs crawl.

Example:
    >>> from oaprobe.config import get_preset
    >>> grid = expand_grid({"manifest": "m.csv"}, backbone=["resnet3d", "m3t"], seed=[0, 1])
    >>> len(grid)
    4
"""

from __future__ import annotations

import itertools
import multiprocessing
import os
import signal
from collections.abc import Iterable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from oaprobe.config import MODES, RunConfig, get_preset

DEFAULT_RUNS = Path("runs")
DEFAULT_COHORTS = Path("data/cohorts")
DEFAULT_CACHE = Path(".cache/volumes")
#: Relative cost per knee-epoch measured on a 2-core CPU at the book's sizes (ENV-NOTES, benchmarks/):
#: the sweep starts the longest runs first, so workers finish together (longest-processing-time first).
BACKBONE_COST = {"resnet3d": 1.0, "m3t": 3.5, "nnmamba": 3.0, "densenet121": 1.5, "efficientnet-b0": 2.5,
                 "monai-resnet18": 0.7}


def cost_hint(cfg: RunConfig) -> float:
    """Rough relative cost of a run, only used to order the work."""
    voxels = cfg.input_shape[0] * cfg.input_shape[1] * cfg.input_shape[2]
    return BACKBONE_COST.get(cfg.backbone, 2.0) * cfg.epochs * voxels * (1.0 + 0.2 * (cfg.saliency_knees > 0))


class SweepError(RuntimeError):
    """One or more runs of a sweep failed; ``failures`` maps run ids to the error text."""

    def __init__(self, failures: dict[str, str]):
        self.failures = failures
        lines = "\n".join(f"  {rid}: {err}" for rid, err in failures.items())
        super().__init__(f"{len(failures)} run(s) failed (finished runs are kept):\n{lines}")


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


def noise_grid(manifest: str | Path, preset: str, label_noise: float) -> list[RunConfig]:
    """The label-noise chapter's runs on the cohort relabelled at ``label_noise``: first backbone,
    every mode; at the preset's own strength these are the main grid's runs, elsewhere no saliency."""
    p = get_preset(preset)
    extra = {} if label_noise == p.cohort.label_noise else {"saliency_knees": 0}
    return study_grid(manifest, preset, backbones=p.backbones[:1], **extra)


def stacked_grid(manifest: str | Path, preset: str) -> list[RunConfig]:
    """The exercises' stacked-dual runs: first backbone, dual with the OA head on the KL logits."""
    return study_grid(manifest, preset, backbones=get_preset(preset).backbones[:1], modes=["dual"],
                      dual_variant="stacked", saliency_knees=0)


def _init_worker(threads: int) -> None:
    import torch

    os.environ["OMP_NUM_THREADS"] = str(threads)
    torch.set_num_threads(threads)
    # Ctrl-C goes to the parent, which cancels the pool; workers die with it, checkpoints stay.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


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


def run_missing(
    configs: Iterable[RunConfig],
    runs_root: Path = DEFAULT_RUNS,
    jobs: int = 1,
    cache_dir: Path | None = DEFAULT_CACHE,
    progress: bool = True,
) -> list[Path]:
    """Train every config whose run folder is not finished; return all run folders in order.

    With ``jobs == 1`` runs train in this process (with per-epoch progress bars); otherwise in
    ``jobs`` single-threaded worker processes, with one overall progress bar.
    """
    from oaprobe.training.runs import is_done, run_dir

    configs = list(configs)
    folders = [run_dir(c, runs_root) for c in configs]
    todo = sorted((c for c, f in zip(configs, folders) if not is_done(f)), key=cost_hint, reverse=True)
    if not todo:
        return folders
    failures: dict[str, str] = {}
    if jobs <= 1:
        from oaprobe.training.engine import fit

        for cfg in tqdm(todo, desc="runs", unit="run", disable=not progress):
            try:
                fit(cfg, runs_root, cache_dir=cache_dir, progress=progress)
            except KeyboardInterrupt:
                raise
            except Exception as err:  # keep going: other runs are independent
                failures[cfg.run_id()] = f"{type(err).__name__}: {err}"
    else:
        _warm_cache(todo, cache_dir)
        ctx = multiprocessing.get_context("spawn")
        threads = max(1, (os.cpu_count() or 1) // jobs)
        bar = tqdm(total=len(todo), desc=f"runs ({jobs} workers)", unit="run", disable=not progress)
        with ProcessPoolExecutor(jobs, mp_context=ctx, initializer=_init_worker, initargs=(threads,)) as pool:
            pending: dict[Future, RunConfig] = {
                pool.submit(_fit_one, c.canonical_json(), str(runs_root), str(cache_dir) if cache_dir else None): c
                for c in todo
            }
            try:
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
            except KeyboardInterrupt:
                pool.shutdown(wait=False, cancel_futures=True)
                raise
            finally:
                bar.close()
    if failures:
        raise SweepError(failures)
    return folders


def _warm_cache(configs: Sequence[RunConfig], cache_dir: Path | None) -> None:
    """Preprocess every volume once in this process so workers only read the disk cache."""
    if cache_dir is None:
        return
    from oaprobe.data.dataset import load_volumes
    from oaprobe.data.manifest import read_manifest

    for manifest, shape in {(c.manifest, c.input_shape) for c in configs}:
        try:
            load_volumes(read_manifest(manifest, check_volumes=False), shape, cache_dir=cache_dir, progress=False)
        except Exception:  # a bad manifest fails only its own runs, reported by the workers
            continue
