"""Command line: ``oaprobe cohort | validate | import-oai | train | sweep | saliency | compare | book | chapter``.

Every field of the config a command reads is a flag (RunConfig for ``train`` and ``sweep``,
CohortConfig for ``cohort``, SaliencyConfig for ``saliency``: ``--input-shape 32,32,32``,
``--augment true``), its help text taken from the field's doc; values are checked by the config
class, which names the field on error. The package's own errors end as one line, exit code 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import typing
import warnings
from pathlib import Path
from types import ModuleType
from typing import Any, Literal, get_args, get_origin

import pandas as pd

from oaprobe import __version__
from oaprobe.compare import METRICS, PRIMARY, Comparison, describe, run_comparison
from oaprobe.config import (
    DEFAULT_CACHE,
    DEFAULT_COHORTS,
    DEFAULT_RUNS,
    PRESETS,
    CohortConfig,
    RunConfig,
    SaliencyConfig,
    check_shapes,
    field_docs,
    get_preset,
)
from oaprobe.data.cohort import build_cohort
from oaprobe.data.manifest import read_manifest, split_counts, validate_manifest
from oaprobe.data.oai import import_oaizib
from oaprobe.errors import ConfigError, OaprobeError
from oaprobe.estimate import describe_estimate, estimate_seconds
from oaprobe.facts import BACKBONES, MODES
from oaprobe.sweep import Executor, preset_manifest, run_missing, saliency_missing_runs, study_grid
from oaprobe.training.runs import is_done, run_dir

#: the preset every command starts from unless ``--preset`` says otherwise
DEFAULT_PRESET = "default"


def _parse_value(cls: type, name: str, text: str) -> Any:
    """Turn a flag's text into the JSON-like value ``cls.from_dict`` expects."""
    ann = typing.get_type_hints(cls)[name]
    if get_origin(ann) is tuple:
        return [_scalar(get_args(ann)[0], part.strip()) for part in text.split(",")]
    return _scalar(ann, text)


def _scalar(ann: Any, text: str) -> Any:
    if ann is bool:
        low = text.lower()
        if low in ("true", "1", "yes"):
            return True
        if low in ("false", "0", "no"):
            return False
        return text  # the config class reports the bad value with the field name
    for kind in (int, float):
        if ann is kind:
            try:
                return kind(text)
            except ValueError:
                return text
    return text


def _show(value: Any) -> str:
    """A default as the user would type it: ``32,32,32``, ``true``, ``1e-3``."""
    if isinstance(value, (tuple, list)):
        return ",".join(map(str, value))
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def _choices(cls: type, name: str) -> tuple[str, ...]:
    ann = typing.get_type_hints(cls)[name]
    if get_origin(ann) is Literal:
        return tuple(map(str, get_args(ann)))
    if ann is bool:
        return ("true", "false")
    if cls is RunConfig and name == "backbone":
        return tuple(BACKBONES)
    return ()


_METAVARS = {"methods": "METHOD,...", "shape": "D,H,W", "input_shape": "D,H,W", "spacing": "MM,MM,MM", "split": "TRAIN,VAL,TEST"}


def _field_help(cls: type, name: str, default: Any, note: str = "") -> str:
    """Help text of one field's flag: its doc, its default under the default preset, its choices."""
    text = field_docs(cls)[name].rstrip(".").replace("``", "") + f" (default: {_show(default)}{note}"
    choices = _choices(cls, name)
    return text + (f"; choices: {', '.join(choices)})" if choices else ")")


def _add_fields(parser: argparse.ArgumentParser, cls: type, defaults: dict[str, Any],
                skip: tuple[str, ...] = (), notes: dict[str, str] | None = None) -> None:
    """One ``--field-name`` flag per field of ``cls``; values land in ``args.cfg_<field>``."""
    group = parser.add_argument_group(f"{cls.__name__} fields (they override the preset's)")
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        metavar = _METAVARS.get(f.name, f.name.split("_")[-1].upper())
        group.add_argument("--" + f.name.replace("_", "-"), dest=f"cfg_{f.name}", metavar=metavar,
                           help=_field_help(cls, f.name, defaults.get(f.name), (notes or {}).get(f.name, "")))


def _run_defaults() -> tuple[dict[str, Any], dict[str, str]]:
    """RunConfig values under the default preset, and notes on its per-backbone overrides."""
    preset = get_preset(DEFAULT_PRESET)
    defaults = {f.name: f.default for f in dataclasses.fields(RunConfig)}
    defaults.update(preset.run, manifest="the preset's synthetic cohort")
    notes: dict[str, str] = {}
    for backbone, fields in preset.backbone_overrides.items():
        for name, value in fields.items():
            notes[name] = notes.get(name, "") + f"; {backbone}: {_show(value)}"
    return defaults, notes


def _overrides(cls: type, args: argparse.Namespace) -> dict[str, Any]:
    return {
        k[4:]: _parse_value(cls, k[4:], v) for k, v in vars(args).items() if k.startswith("cfg_") and v is not None
    }


def _add_executor(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("where the work runs")
    group.add_argument("--executor", choices=("local", "ray"), default="local",
                       help="local worker processes, or Ray tasks (pip install -e '.[ray]') (default: %(default)s)")
    group.add_argument("--ray-address", default=None,
                       help="join this Ray cluster ('auto', HOST:PORT, ray://HOST:10001) instead of a private local instance")
    group.add_argument("--gpus-per-run", type=float, default=None,
                       help="Ray: GPUs per run, a fraction shares one (default: one per run where Ray sees GPUs)")


def _book() -> ModuleType:
    """:mod:`oaprobe.book`, imported by the commands that use it (it loads plotly and Jupyter)."""
    import oaprobe.book  # deferred: plotly and Jupyter, which the other commands do not need

    return oaprobe.book


def _executor(args: argparse.Namespace):
    return Executor(args.executor, args.ray_address, args.gpus_per_run)


def _positive_jobs(jobs: int) -> int:
    if jobs < 1:
        raise ConfigError(f"--jobs = {jobs}; expected an integer >= 1 (worker processes)")
    return jobs


def progress_wanted(no_progress: bool = False) -> bool:
    """Progress bars only for a person watching: stderr is a terminal, ``NO_COLOR`` is unset and
    ``--no-progress`` was not given (a log file gets no carriage-return bars)."""
    return not no_progress and sys.stderr.isatty() and not os.environ.get("NO_COLOR")


def _cmd_cohort(args: argparse.Namespace) -> int:
    cohort = get_preset(args.preset).cohort.replace(**_overrides(CohortConfig, args))
    print(build_cohort(cohort, args.root, progress=progress_wanted(args.no_progress)))
    return 0


def _cmd_validate(args: argparse.Namespace) -> int:
    problems = validate_manifest(args.manifest)
    for p in problems:
        print(p)
    if problems:
        print(f"{len(problems)} problem(s) in {args.manifest}", file=sys.stderr)
        return 1
    print(f"{args.manifest}: OK")
    return 0


def _cmd_import_oai(args: argparse.Namespace) -> int:
    out = import_oaizib(args.root, args.out, metadata=args.metadata, split=args.split, seed=args.seed)
    counts = split_counts(out)
    listed = ", ".join(f"{name} {n}" for name, n in counts.items())
    print(f"wrote {sum(counts.values())} knees ({listed}) to {out}", file=sys.stderr)
    print(out)
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from oaprobe.training.engine import fit  # deferred: torch: only `train` needs it

    overrides = _overrides(RunConfig, args)
    manifest = overrides.pop("manifest", None)
    progress = progress_wanted(args.no_progress)
    check_shapes([get_preset(args.preset).run_config(manifest or "", **overrides)])  # before any work
    cfg = get_preset(args.preset).run_config(manifest or preset_manifest(args.preset, args.cohorts, progress=progress),
                                             **overrides)
    reused = Path(cfg.manifest).is_file() and is_done(run_dir(cfg, args.runs))  # fit names a missing manifest
    folder = fit(cfg, args.runs, cache_dir=args.cache, progress=progress)
    print(f"already trained: {folder}" if reused else run_summary(folder), file=sys.stderr)
    print(folder)
    return 0


def run_summary(folder: Path) -> str:
    """One line on a finished run: the epoch it kept and that epoch's validation metrics."""
    history = pd.read_csv(Path(folder) / "history.csv")
    kept = history[history["kept"] == 1].iloc[-1] if "kept" in history else history.iloc[-1]
    return (f"trained {Path(folder).name}: kept epoch {int(kept['epoch'])}/{len(history)}, val loss "
            f"{kept['val_loss']:.4f}, val OA AUC {kept['val_oa_auc']:.3f}, val KL QWK {kept['val_kl_qwk']:.3f}")


def _cmd_sweep(args: argparse.Namespace) -> int:
    jobs = _positive_jobs(args.jobs)
    overrides = _overrides(RunConfig, args)
    manifest = overrides.pop("manifest", None)
    axes = dict(backbones=args.backbones.split(",") if args.backbones else None, modes=args.modes.split(","),
                seeds=_int_list("--seeds", args.seeds))
    progress = progress_wanted(args.no_progress)
    check_shapes(study_grid(manifest or "", args.preset, **axes, **overrides))  # before any work
    grid = study_grid(manifest or preset_manifest(args.preset, args.cohorts, progress=progress), args.preset, **axes,
                      **overrides)
    for folder in run_missing(grid, args.runs, jobs=jobs, cache_dir=args.cache, progress=progress,
                              executor=_executor(args)):
        print(folder)
    return 0


def _cmd_saliency(args: argparse.Namespace) -> int:
    jobs = _positive_jobs(args.jobs)
    settings = get_preset(args.preset).saliency.replace(**_overrides(SaliencyConfig, args))
    if not args.runs.is_dir():
        raise ConfigError(f"--runs {args.runs}: not a folder of run folders")
    folders = sorted(p for p in args.runs.iterdir() if p.is_dir())
    for folder in saliency_missing_runs(folders, settings, jobs=jobs, cache_dir=args.cache,
                                        progress=progress_wanted(args.no_progress), executor=_executor(args)):
        print(folder)
    return 0


def _int_list(flag: str, text: str | None) -> list[int] | None:
    if not text:
        return None
    try:
        return [int(part) for part in text.split(",")]
    except ValueError:
        raise ConfigError(f"{flag} = {text!r}; expected comma-separated integers, e.g. 0,1,2") from None


def _baseline_fields(pairs: list[str] | None) -> dict[str, Any]:
    """``--baseline FIELD=VALUE`` pairs as RunConfig fields (typed as their flags are)."""
    names = {f.name for f in dataclasses.fields(RunConfig)} - {"manifest", "seed"}
    out: dict[str, Any] = {}
    for pair in pairs or []:
        name, sep, text = pair.partition("=")
        name = name.strip().replace("-", "_")
        if not sep or name not in names:
            raise ConfigError(f"--baseline {pair!r}; expected FIELD=VALUE with FIELD a RunConfig field "
                              f"({', '.join(sorted(names))})")
        out[name] = _parse_value(RunConfig, name, text.strip())
    return out


def _comparison(args: argparse.Namespace):
    """The baseline (the preset's dual, changed by ``--baseline``) and the variant (changed by the flags) of
    ``compare``; ``--backbone`` and ``--manifest`` apply to both sides."""
    preset = get_preset(args.preset)
    variant = _overrides(RunConfig, args)
    manifest = variant.pop("manifest", None)
    common = {"mode": "dual", "backbone": variant.pop("backbone", preset.backbones[0])}
    baseline = {**common, **_baseline_fields(args.baseline)}
    variant = {**common, **variant}
    metrics = {"primary": PRIMARY, "all": METRICS}.get(args.metric) or tuple(args.metric.split(","))
    check_shapes([preset.run_config(manifest or "", **side) for side in (baseline, variant)])  # before any work
    if manifest:
        read_manifest(manifest)  # every problem of a user's manifest, by row, before any work starts
        manifest = _book().validation_manifest(Path(manifest), args.cohorts)  # as the book does: the same runs
    else:
        manifest = preset_manifest(args.preset, args.cohorts, progress=progress_wanted(args.no_progress))
    return Comparison(preset.run_config(manifest, **baseline), preset.run_config(manifest, **variant), metrics)


def _cmd_compare(args: argparse.Namespace) -> int:
    jobs = _positive_jobs(args.jobs)
    comparison = _comparison(args)
    seeds = _int_list("--seeds", args.seeds) or list(get_preset(args.preset).seeds)
    if args.until_decided and args.max_seeds is None:
        raise ConfigError("--until-decided needs --max-seeds N (the looks are planned before any result is seen)")
    progress = progress_wanted(args.no_progress)

    def train(todo: list[RunConfig]) -> None:
        print(f"[compare] training {len(todo)} run(s), {describe_estimate(estimate_seconds(todo, args.runs, jobs), jobs)}",
              file=sys.stderr, flush=True)
        run_missing(todo, args.runs, jobs=jobs, cache_dir=args.cache, progress=progress, executor=_executor(args))

    def on_look(n: int, table) -> None:
        verdicts = ", ".join(f"{m} {v}" for m, v in zip(table["metric"], table["verdict"]))
        print(f"[compare] {n} paired seeds: {verdicts}", file=sys.stderr, flush=True)

    result = run_comparison(comparison, seeds, args.runs, train, args.max_seeds if args.until_decided else None,
                            args.step, on_look if args.until_decided else None)
    print("\n".join(describe(result)))
    return 0


def _cmd_book(args: argparse.Namespace) -> int:
    _positive_jobs(args.jobs)
    kwargs = {"executor": _executor(args), **({"site": args.site} if args.site else {})}
    if args.manifest:
        kwargs["manifest"] = args.manifest
    _book().build_book(args.preset, jobs=args.jobs, runs_root=args.runs, cohorts_root=args.cohorts,
                       html=not args.no_html, progress=progress_wanted(args.no_progress), **kwargs)
    return 0


def _cmd_chapter(args: argparse.Namespace) -> int:
    from oaprobe.chapter import run_chapter  # deferred: plotly and Jupyter only where used

    print(run_chapter(args.name, args.p, args.out, progress=progress_wanted(args.no_progress)))
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The ``oaprobe`` command line: one subcommand per stage, its flags from the typed configs."""
    parser = argparse.ArgumentParser(prog="oaprobe", description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--version", action="version", version=f"oaprobe {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    parser.set_defaults(subcommands=sub.choices)  # main() reports a bad flag with its subcommand's usage
    _add_data_commands(sub)
    _add_run_commands(sub)
    _add_saliency_command(sub)
    _add_compare_command(sub)
    _add_book_commands(sub)
    for name in ("cohort", "train", "sweep", "saliency", "compare", "book", "chapter"):
        sub.choices[name].add_argument("--no-progress", action="store_true",
                                       help="no progress bars (they are off anyway without a terminal or with NO_COLOR)")
    return parser


_PRESET_HELP = "the named study size whose settings every other flag overrides (default: %(default)s)"


def _add_data_commands(sub: argparse._SubParsersAction) -> None:
    """``cohort``, ``validate`` and ``import-oai``: the commands that make or check a manifest."""
    p = sub.add_parser("cohort", help="build (or reuse) a synthetic cohort; prints the manifest path", allow_abbrev=False)
    p.add_argument("--preset", choices=PRESETS, default=DEFAULT_PRESET, help=_PRESET_HELP)
    p.add_argument("--root", type=Path, default=DEFAULT_COHORTS, help="parent folder of the cohorts (default: %(default)s)")
    _add_fields(p, CohortConfig, get_preset(DEFAULT_PRESET).cohort.to_dict())
    p.set_defaults(func=_cmd_cohort)

    p = sub.add_parser("validate", help="check a manifest; prints every problem, exit 1 if any")
    p.add_argument("manifest", type=Path, help="the manifest CSV")
    p.set_defaults(func=_cmd_validate)

    p = sub.add_parser("import-oai", help="turn a local OAIZIB-CM copy into a manifest", allow_abbrev=False)
    p.add_argument("root", type=Path, help="the extracted OAIZIB-CM folder (imagesTr/, labelsTr/, imagesTs/, labelsTs/)")
    p.add_argument("--out", type=Path, required=True, help="the manifest CSV to write")
    p.add_argument("--metadata", type=Path, default=None,
                   help="table with case id and KL grade (default: the release's subInfo_*.xlsx in ROOT)")
    p.add_argument("--split", choices=("reference", "stratified"), default="reference",
                   help="the release's train/test split, or a new subject-grouped train/val/test split (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="seed of the stratified split (default: %(default)s)")
    p.set_defaults(func=_cmd_import_oai)


def _add_run_commands(sub: argparse._SubParsersAction) -> None:
    """``train`` and ``sweep``: one run, or every missing run of a grid."""
    run_defaults, run_notes = _run_defaults()
    for name, func, helptext in (
        ("train", _cmd_train, "train one run (or return the finished one); prints the run folder"),
        ("sweep", _cmd_sweep, "train every missing run of a grid; prints the run folders"),
    ):
        p = sub.add_parser(name, help=helptext, allow_abbrev=False)
        p.add_argument("--preset", choices=PRESETS, default=DEFAULT_PRESET, help=_PRESET_HELP)
        p.add_argument("--runs", type=Path, default=DEFAULT_RUNS, help="parent folder of the run folders (default: %(default)s)")
        p.add_argument("--cohorts", type=Path, default=DEFAULT_COHORTS, help="parent folder of the cohorts (default: %(default)s)")
        p.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="disk cache of preprocessed volumes (default: %(default)s)")
        if name == "sweep":
            p.add_argument("--backbones", default=None, help="comma-separated backbone names (default: the preset's)")
            p.add_argument("--modes", default=",".join(MODES), help="comma-separated modes (default: %(default)s)")
            p.add_argument("--seeds", default=None, help="comma-separated seeds (default: the preset's)")
            p.add_argument("--jobs", type=int, default=1, help="worker processes, one thread each (default: %(default)s)")
            _add_executor(p)
            _add_fields(p, RunConfig, run_defaults, skip=("backbone", "mode", "seed"), notes=run_notes)
        else:
            _add_fields(p, RunConfig, run_defaults, notes=run_notes)
        p.set_defaults(func=func)


def _add_saliency_command(sub: argparse._SubParsersAction) -> None:
    """``saliency``: the saliency stage over every finished run."""
    p = sub.add_parser("saliency", allow_abbrev=False,
                       help="the saliency stage: maps, overlap and sanity checks for every finished run that lacks them")
    p.add_argument("--preset", choices=PRESETS, default=DEFAULT_PRESET,
                   help="whose saliency settings every other flag overrides (default: %(default)s)")
    p.add_argument("--runs", type=Path, default=DEFAULT_RUNS, help="parent folder of the run folders (default: %(default)s)")
    p.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="disk cache of preprocessed volumes (default: %(default)s)")
    p.add_argument("--jobs", type=int, default=1, help="worker processes, one thread each (default: %(default)s)")
    _add_executor(p)
    _add_fields(p, SaliencyConfig, get_preset(DEFAULT_PRESET).saliency.to_dict())
    p.set_defaults(func=_cmd_saliency)


def _add_compare_command(sub: argparse._SubParsersAction) -> None:
    """``compare``: a variant against a baseline on paired seeds, under the book's decision rule."""
    run_defaults, run_notes = _run_defaults()
    p = sub.add_parser("compare", allow_abbrev=False,
                       help="a variant (RunConfig flags) against a baseline (default: the preset's dual) on paired "
                            "seeds: trains what is missing, prints the decision rule's verdict")
    p.add_argument("--preset", choices=PRESETS, default=DEFAULT_PRESET, help=_PRESET_HELP)
    p.add_argument("--baseline", action="append", metavar="FIELD=VALUE",
                   help="a RunConfig field of the baseline, repeatable (default: the preset's dual; "
                        "e.g. mode=single_kl, dual_variant=stacked, backbone=m3t)")
    p.add_argument("--metric", default="primary",
                   help="comma-separated metrics, 'primary' (OA ROC-AUC and KL QWK, each at alpha) or 'all' "
                        "(the other metrics share alpha) (default: %(default)s)")
    p.add_argument("--seeds", default=None, help="comma-separated paired seeds (default: the preset's)")
    p.add_argument("--until-decided", action="store_true",
                   help="add paired seeds until every metric is decided, each look at alpha / looks (needs --max-seeds)")
    p.add_argument("--max-seeds", type=int, default=None, help="the last planned look's number of paired seeds")
    p.add_argument("--step", type=int, default=2, help="paired seeds added per look (default: %(default)s)")
    p.add_argument("--jobs", type=int, default=1, help="worker processes, one thread each (default: %(default)s)")
    p.add_argument("--runs", type=Path, default=DEFAULT_RUNS, help="parent folder of the run folders (default: %(default)s)")
    p.add_argument("--cohorts", type=Path, default=DEFAULT_COHORTS, help="parent folder of the cohorts (default: %(default)s)")
    p.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="disk cache of preprocessed volumes (default: %(default)s)")
    _add_executor(p)
    _add_fields(p, RunConfig, run_defaults, skip=("seed",), notes=run_notes)
    p.set_defaults(func=_cmd_compare)


def _add_book_commands(sub: argparse._SubParsersAction) -> None:
    """``book`` (the whole book) and ``chapter`` (one chapter again with new parameters)."""
    p = sub.add_parser("book", help="build the whole book: cohort, sweep, notebooks, jupyter-book", allow_abbrev=False)
    p.add_argument("--preset", choices=PRESETS, default=DEFAULT_PRESET, help=_PRESET_HELP)
    p.add_argument("--jobs", type=int, default=2, help="worker processes, one thread each (default: %(default)s)")
    p.add_argument("--runs", type=Path, default=DEFAULT_RUNS, help="parent folder of the run folders (default: %(default)s)")
    p.add_argument("--cohorts", type=Path, default=DEFAULT_COHORTS, help="parent folder of the cohorts (default: %(default)s)")
    p.add_argument("--no-html", action="store_true", help="execute the notebooks but skip jupyter-book")
    p.add_argument("--manifest", type=Path, default=None,
                   help="run the book on this manifest (e.g. your OAI-ZIB copy) instead of the synthetic cohort")
    p.add_argument("--site", type=Path, default=None,
                   help="build chapters and HTML in this folder instead of the repository root (HTML: SITE/_build/html)")
    _add_executor(p)
    p.set_defaults(func=_cmd_book)
    p = sub.add_parser("chapter", allow_abbrev=False,
                       help="rerun one chapter on built runs with new parameters; prints its standalone HTML page")
    p.add_argument("name", help="the chapter: answer, cohort, backbone, results, latent, saliency, label_noise, methods, exercises, beyond")
    p.add_argument("-p", nargs=2, action="append", metavar=("KEY", "VALUE"), help="a parameter (JSON or text), repeatable")
    p.add_argument("--out", type=Path, default=Path("_build/chapters"), help="folder of the notebook and page (default: %(default)s)")
    p.set_defaults(func=_cmd_chapter)


def _one_line_warning(message, category, filename, lineno, line=None) -> str:
    """Warnings as ``warning: text`` (no source line): they are messages for the user."""
    return f"warning: {message}\n"


#: the one line Ctrl-C ends a command with (exit 130), by command: what is kept
_INTERRUPTED = {
    "train": "interrupted: finished runs are kept; unfinished ones resume next time\n",
    "chapter": "interrupted: chapter {args.name} not updated (its earlier page, if any, is kept)\n",
    "validate": "interrupted\n",
    "import-oai": "interrupted: no manifest written\n",
}


def main(argv: list[str] | None = None) -> int:
    """Run one command; the package's own errors end as one line on stderr with exit code 2."""
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:  # the subcommand's usage, not the top level's: that is where the flag was meant
        args.subcommands[args.command].error(f"unrecognized arguments: {' '.join(unknown)}")
    warnings.formatwarning = _one_line_warning
    try:
        return args.func(args)
    except OaprobeError as err:
        parser.exit(2, f"oaprobe {args.command}: error: {err}\n")
    except KeyboardInterrupt:
        parser.exit(130, _INTERRUPTED.get(args.command, _INTERRUPTED["train"]).format(args=args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
