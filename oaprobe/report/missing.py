"""What a chapter says when runs it reads are not trained: the error, the exact ``oaprobe sweep``
command(s) that train them, and how long that takes.

A :class:`~oaprobe.report.study.Study` never trains; it raises :class:`RunsMissingError` with
:func:`missing_message`, whose command trains exactly the missing runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from oaprobe.config import RunConfig, get_preset
from oaprobe.errors import OaprobeError
from oaprobe.estimate import describe_estimate, estimate_seconds, suggested_jobs


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
    return " && ".join(sweep_commands(missing, preset, runs_root, jobs or suggested_jobs(len(missing))))


def missing_message(missing: Sequence[RunConfig], n_asked: int, preset: str, runs_root: str | Path) -> str:
    """What a chapter says when runs it reads are not trained: how many, the command, how long."""
    jobs = suggested_jobs(len(missing))
    return (f"{len(missing)} of the {n_asked} runs this analysis reads are not trained in {runs_root}; "
            f"train them with `{sweep_command(missing, preset, runs_root, jobs)}` "
            f"({describe_estimate(estimate_seconds(missing, runs_root, jobs), jobs)})")
