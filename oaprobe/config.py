"""Typed configuration: one object per cohort, one per training run, and the named presets.

Every parameter of a run lives in :class:`RunConfig`; CLI flags and papermill parameters map
one-to-one onto its fields. :meth:`RunConfig.run_id` (a hash of the canonical JSON plus the
content hash of its data: the manifest and every volume it names) names the run folder, so the
same config on the same data never trains twice, and never stands in for other data.

Example:
    >>> cfg = RunConfig.from_dict({"manifest": "m.csv", "backbone": "resnet3d", "mode": "dual"})
    >>> cfg.mode
    'dual'
    >>> RunConfig.from_dict({"manifest": "m.csv", "lamda": 1.0})
    Traceback (most recent call last):
    ...
    oaprobe.config.ConfigError: unknown field 'lamda' for RunConfig; valid fields: ...
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

from oaprobe.errors import OaprobeError
from oaprobe.facts import DUAL_VARIANTS, MODES

SCHEDULES = ("constant", "cosine")
SELECT_METRICS = ("final", "val_loss", "val_oa_auc", "val_kl_qwk")
KL_PRIORS = ("oai", "oaizib")
PRESETS = ("smoke", "course", "default", "gpu", "paper")

Shape3 = tuple[int, int, int]


class ConfigError(OaprobeError, ValueError):
    """A configuration value is invalid; the message names the field and what was expected."""


def _check_type(cls_name: str, name: str, value: Any, annotation: Any) -> Any:
    """Coerce JSON-ish ``value`` to ``annotation`` or raise a ConfigError naming the field."""
    origin = get_origin(annotation)
    if origin is Literal:
        allowed = get_args(annotation)
        if value not in allowed:
            raise ConfigError(f"{cls_name}.{name} = {value!r}; expected one of {list(allowed)}")
        return value
    if origin in (typing.Union, types.UnionType):
        args = get_args(annotation)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _check_type(cls_name, name, value, arg)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(errors[0] if errors else f"{cls_name}.{name}: bad value {value!r}")
    if origin is tuple:
        args = get_args(annotation)
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{cls_name}.{name} = {value!r}; expected a sequence {annotation}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_check_type(cls_name, name, v, args[0]) for v in value)
        if len(value) != len(args):
            raise ConfigError(f"{cls_name}.{name} = {value!r}; expected {len(args)} values")
        return tuple(_check_type(cls_name, name, v, a) for v, a in zip(value, args))
    if annotation is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{cls_name}.{name} = {value!r}; expected a number")
        if not math.isfinite(value):
            raise ConfigError(f"{cls_name}.{name} = {value!r}; expected a finite number")
        return float(value)
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise ConfigError(f"{cls_name}.{name} = {value!r}; expected an integer")
        return value
    if annotation is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{cls_name}.{name} = {value!r}; expected true/false")
        return value
    if annotation is str:
        if not isinstance(value, str):
            raise ConfigError(f"{cls_name}.{name} = {value!r}; expected a string")
        return value
    return value


class _Typed:
    """Mixin: strict construction from a dict, canonical JSON, and a short content hash."""

    @classmethod
    def from_dict(cls, values: dict[str, Any]):
        hints = typing.get_type_hints(cls)
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(values) - set(names))
        if unknown:
            raise ConfigError(
                f"unknown field {unknown[0]!r} for {cls.__name__}; valid fields: {', '.join(names)}"
            )
        coerced = {k: _check_type(cls.__name__, k, v, hints[k]) for k, v in values.items()}
        return cls(**coerced)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, **changes: Any):
        merged = {**self.to_dict(), **changes}
        return type(self).from_dict(merged)

    def canonical_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))


def _positive(cls_name: str, name: str, value: float, allow_zero: bool = False) -> None:
    if not (value > 0 or (allow_zero and value == 0)):  # NaN fails both
        bound = ">= 0" if allow_zero else "> 0"
        raise ConfigError(f"{cls_name}.{name} = {value!r}; expected {bound}")


@dataclass(frozen=True)
class CohortConfig(_Typed):
    """Recipe of a synthetic knee cohort; (recipe, seed) fully determines every volume and label.

    Attributes:
        n_subjects: subjects drawn; each has one or two knees (see ``bilateral_fraction``).
        shape: generated volume shape (D, H, W) in voxels; D is the sagittal slice axis.
        spacing: voxel size in mm for (D, H, W); written into the NIfTI affine.
        kl_prior: clean-KL distribution, ``"oai"`` (OAI baseline) or ``"oaizib"``.
        label_noise: strength of the clean -> observed KL noise model; 0 means observed == clean.
        bilateral_fraction: share of subjects contributing both knees (correlated severity).
        split: train / val / test fractions of subjects (subject-grouped, stratified).
        seed: master seed.
    """

    n_subjects: int = 300
    shape: Shape3 = (48, 48, 48)
    spacing: tuple[float, float, float] = (2.0, 2.0, 2.0)
    kl_prior: Literal["oai", "oaizib"] = "oaizib"
    label_noise: float = 1.0
    bilateral_fraction: float = 0.5
    split: tuple[float, float, float] = (0.6, 0.15, 0.25)
    seed: int = 0

    def __post_init__(self) -> None:
        _positive("CohortConfig", "n_subjects", self.n_subjects)
        _positive("CohortConfig", "seed", self.seed, allow_zero=True)
        if min(self.shape) < 16:
            raise ConfigError(f"CohortConfig.shape = {self.shape}; every side must be >= 16 voxels")
        _positive("CohortConfig", "label_noise", self.label_noise, allow_zero=True)
        if not 0 <= self.bilateral_fraction <= 1:
            raise ConfigError("CohortConfig.bilateral_fraction must lie in [0, 1]")
        if min(self.spacing) <= 0 or not all(map(math.isfinite, self.spacing)):
            raise ConfigError(f"CohortConfig.spacing = {self.spacing}; expected 3 finite voxel sizes > 0 (mm)")
        if not abs(sum(self.split) - 1) <= 1e-6 or min(self.split) < 0:
            raise ConfigError(f"CohortConfig.split = {self.split}; expected 3 fractions >= 0 summing to 1")

    def cohort_id(self) -> str:
        """Short content hash naming the cohort folder."""
        return hashlib.sha256(self.canonical_json().encode()).hexdigest()[:10]


@dataclass(frozen=True)
class RunConfig(_Typed):
    """Every parameter of one training run (backbone x mode x seed on one manifest).

    The reference study's protocol is the default where it is defined (AdamW, lr 1e-4,
    weight decay 1e-4, constant lr, final-epoch model, lambda 1); the improvements it lacks
    (validation-based selection, class weighting, augmentation, cosine schedule) are switches.
    Fields a mode does not use (``oa_weight`` and ``dual_variant`` outside dual,
    ``label_smoothing`` in single_oa) are set to their defaults, so they never change the run id.

    Attributes:
        manifest: the cohort's manifest CSV.
        backbone: the 3D encoder, a name of the backbone registry.
        width: channel-width multiplier of the backbone (1.0 = the published size).
        mode: which labels supervise the encoder: OA only, KL only, both (dual), or KL only
            through an ordinal CORN head whose OA is P(KL >= 2) (ordinal).
        dual_variant: dual only: OA head on the embedding (parallel) or on the KL logits (stacked).
        oa_weight: dual only: lambda, the weight of the OA loss beside the KL loss.
        label_smoothing: smoothing s of the KL loss's targets, in [0, 1) (0 = off): cross-entropy's
            label smoothing (single_kl, dual); each binary CORN target t set to (1 - s) t + s / 2,
            two-class cross-entropy's smoothing (ordinal). The OA loss is never smoothed.
        input_shape: the volume size the model sees, D,H,W voxels (volumes are resized to it).
        epochs: training epochs.
        batch_size: knees per training step.
        lr: AdamW learning rate (the peak of the schedule).
        weight_decay: AdamW weight decay.
        schedule: learning-rate schedule after the warm-up, stepped per batch: constant, or cosine decay to zero at the last step.
        select: which epoch's weights are kept: the final one; the best on the validation split by
            this metric; or final_near_best: the final one unless its validation loss is above
            1.2x the best epoch's (then the best), which keeps the annealed weights of a cosine
            schedule and lets the validation split veto them.
        class_weighting: weight the losses by inverse class frequency.
        augment: light flips (anterior-posterior only), shifts and intensity jitter.
        warmup_epochs: epochs of linear learning-rate warm-up at the start (0 = none; cut short in a shorter run).
        ema_decay: decay of the exponential moving average of the weights that validation, selection and predictions use (0 = off).
        grad_clip: largest global L2 norm of the gradient before each optimiser step (larger ones are scaled down; 0 = off).
        seed: seed of the initialisation, the batch order and the augmentation (>= 0).
    """

    manifest: str
    backbone: str = "resnet3d"
    width: float = 1.0
    mode: Literal["single_oa", "single_kl", "dual", "ordinal"] = "dual"
    dual_variant: Literal["parallel", "stacked"] = "parallel"
    oa_weight: float = 1.0
    label_smoothing: float = 0.0
    input_shape: Shape3 = (32, 32, 32)
    epochs: int = 10
    batch_size: int = 8
    lr: float = 1e-4
    weight_decay: float = 1e-4
    schedule: Literal["constant", "cosine"] = "constant"
    select: Literal["final", "val_loss", "val_oa_auc", "val_kl_qwk", "final_near_best"] = "final"
    class_weighting: bool = False
    augment: bool = False
    warmup_epochs: int = 0
    ema_decay: float = 0.0
    grad_clip: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.mode == "single_oa" and self.select == "val_kl_qwk":
            raise ConfigError("RunConfig.select = 'val_kl_qwk' needs a KL head; mode is 'single_oa'")
        if not 0 <= self.label_smoothing < 1:
            raise ConfigError(
                f"RunConfig.label_smoothing = {self.label_smoothing!r}; expected 0 (off) or a value in (0, 1)"
            )
        # fields a mode does not read are canonical there, so run ids agree
        unused = _DUAL_ONLY_FIELDS if self.mode != "dual" else ()
        unused += _KL_LOSS_FIELDS if self.mode == "single_oa" else ()
        for name in unused:
            object.__setattr__(self, name, _FIELD_DEFAULTS[name])
        _positive("RunConfig", "seed", self.seed, allow_zero=True)
        _positive("RunConfig", "oa_weight", self.oa_weight, allow_zero=True)
        _positive("RunConfig", "width", self.width)
        _positive("RunConfig", "epochs", self.epochs)
        _positive("RunConfig", "batch_size", self.batch_size)
        _positive("RunConfig", "lr", self.lr)
        _positive("RunConfig", "weight_decay", self.weight_decay, allow_zero=True)
        _positive("RunConfig", "warmup_epochs", self.warmup_epochs, allow_zero=True)
        _positive("RunConfig", "grad_clip", self.grad_clip, allow_zero=True)
        if not 0 <= self.ema_decay < 1:
            raise ConfigError(f"RunConfig.ema_decay = {self.ema_decay!r}; expected 0 (off) or a decay in (0, 1)")
        if min(self.input_shape) < 8:
            raise ConfigError(f"RunConfig.input_shape = {self.input_shape}; every side must be >= 8")

    def run_id(self) -> str:
        """Hash of every field except the manifest path, plus the content hash of the run's data
        (:func:`data_sha256`): other volumes, or a volume changed in place, make another run."""
        payload = {k: v for k, v in self.to_dict().items() if k != "manifest"}
        payload["data_sha256"] = data_sha256(self.manifest)
        text = json.dumps(payload, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:12]


#: attribution methods of the saliency stage (oaprobe.analysis.attribution): SmoothGrad x input, Grad-CAM,
#: SmoothGrad without the input product, integrated gradients, occlusion sensitivity
SALIENCY_METHODS: tuple[str, ...] = ("smoothgrad", "gradcam", "gradient", "ig", "occlusion")


@dataclass(frozen=True)
class SaliencyConfig(_Typed):
    """Settings of the saliency stage, which reads a finished run's checkpoint and never trains.

    Results live in ``<run folder>/saliency-<settings_id>/``, so other settings add a folder
    and leave the model's files alone.

    Attributes:
        knees: test knees analysed per run, the same fixed set in every run of a manifest, stratified by
            grade (oaprobe.analysis.saliency.fixed_knees; 0 = every test knee).
        samples: SmoothGrad noisy copies per knee (and integrated gradients' path steps).
        noise: SmoothGrad noise std on the z-scored input.
        methods: attribution methods, any of smoothgrad (x input), gradcam, gradient (SmoothGrad without
            the input product), ig (integrated gradients) and occlusion.
        keep_maps: knees whose maps are saved for figures.
        sanity_knees: the first knees of the set that the checks run on (randomisation: trained vs fully
            randomised model; deletion curve); 0 = none.
        deletion_steps: fractions of voxels removed along the deletion curve.
        seed: seed of the SmoothGrad noise and the random-deletion baseline.
    """

    knees: int = 32
    samples: int = 8
    noise: float = 0.05
    methods: tuple[str, ...] = ("ig",)
    keep_maps: int = 3
    sanity_knees: int = 4
    deletion_steps: int = 10
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("knees", "keep_maps", "sanity_knees", "seed"):
            _positive("SaliencyConfig", name, getattr(self, name), allow_zero=True)
        _positive("SaliencyConfig", "samples", self.samples)
        _positive("SaliencyConfig", "deletion_steps", self.deletion_steps)
        _positive("SaliencyConfig", "noise", self.noise, allow_zero=True)
        bad = [m for m in self.methods if m not in SALIENCY_METHODS]
        if bad or not self.methods:
            raise ConfigError(f"SaliencyConfig.methods = {list(self.methods)}; expected a non-empty subset of "
                              f"{', '.join(SALIENCY_METHODS)}")

    def settings_id(self) -> str:
        """Short content hash naming the results' subfolder of a run."""
        return hashlib.sha256(self.canonical_json().encode()).hexdigest()[:10]


_FIELD_DEFAULTS = {f.name: f.default for f in dataclasses.fields(RunConfig)}
#: RunConfig fields that only the dual mode reads.
_DUAL_ONLY_FIELDS = ("dual_variant", "oa_weight")
#: RunConfig fields that only modes with a KL loss read (all but single_oa).
_KL_LOSS_FIELDS = ("label_smoothing",)


def field_docs(cls: type) -> dict[str, str]:
    """One-line doc of each field, from the ``Attributes:`` section of ``cls``'s docstring.

    An entry is ``name: text`` (or ``a, b: text`` for several fields) at the section's
    indentation; deeper-indented lines continue it. The CLI's help texts come from here, so a
    flag's description cannot drift from the field's.
    """
    lines = (cls.__doc__ or "").split("Attributes:", 1)[-1].splitlines()
    entries: list[tuple[list[str], list[str]]] = []
    indent = None
    for line in lines:
        if not line.strip():
            continue
        depth = len(line) - len(line.lstrip())
        indent = depth if indent is None else indent
        if depth < indent:
            break
        if depth == indent:
            names, _, text = line.strip().partition(": ")
            entries.append(([n.strip() for n in names.split(",")], [text]))
        elif entries:
            entries[-1][1].append(line.strip())
    return {name: " ".join(text) for names, text in entries for name in names}


def file_sha256(path: str | Path) -> str:
    """Content hash of a file (the manifest); a missing file or a folder is a ConfigError naming it."""
    from oaprobe import io

    p = Path(path)
    if p.is_dir():
        raise ConfigError(f"manifest {str(p)!r} is a directory; expected a manifest CSV file")
    if not p.is_file():
        raise ConfigError(f"manifest {str(p)!r} does not exist (build a cohort with `oaprobe cohort`)")
    try:
        return io.file_sha256(p)
    except OSError as err:
        raise ConfigError(f"manifest {str(p)!r} cannot be read ({err.strerror})") from None


def data_sha256(manifest: str | Path) -> str:
    """Content hash of a run's data: the manifest's bytes and the bytes of every volume it names
    (:func:`oaprobe.data.manifest.data_hash`; on unchanged files it only stats the volumes).

    A missing manifest or a folder is a ConfigError naming it; a cell naming no file counts as
    such (validation refuses it).
    """
    from oaprobe.data.manifest import data_hash

    file_sha256(manifest)  # a missing or unreadable manifest: the ConfigError naming it
    return data_hash(manifest)


@dataclass(frozen=True)
class Preset:
    """A named size of the whole study: the cohort, the run settings and the grid of the book."""

    name: str
    cohort: CohortConfig
    run: dict[str, Any] = field(default_factory=dict)
    backbones: tuple[str, ...] = ("resnet3d",)
    seeds: tuple[int, ...] = (0,)
    noise_levels: tuple[float, ...] = ()
    backbone_overrides: dict[str, dict[str, Any]] = field(default_factory=dict)
    saliency: SaliencyConfig = field(default_factory=SaliencyConfig)
    #: "Beyond the dual head" (first backbone): OA-loss weights of the lambda curve besides 1 (empty: no
    #: such chapter), the label smoothing of its smoothed variants, and how many of the seeds the side
    #: chapters use (beyond, label noise, the stacked-dual exercise; the main grid runs every seed).
    lambdas: tuple[float, ...] = ()
    smoothing: float = 0.1
    beyond_seeds: int = 3
    #: how many of the seeds also train the first backbone's modes with :data:`REFERENCE_RECIPE` at the
    #: preset's size (the answer page's "is the gain a property of the recipe?"); 0: no such section
    recipe_seeds: int = 0

    def run_config(self, manifest: str | Path, **fields: Any) -> RunConfig:
        """One run on ``manifest``: the preset's run settings < its overrides for the backbone < ``fields``."""
        backbone = fields.get("backbone", RunConfig.__dataclass_fields__["backbone"].default)
        values = {**self.run, **self.backbone_overrides.get(backbone, {}), **fields, "manifest": str(manifest)}
        return RunConfig.from_dict(values)

    @property
    def label_noise_levels(self) -> tuple[float, ...]:
        """Noise strengths of the label-noise chapter: the extra levels plus the cohort's own."""
        return tuple(sorted(set(self.noise_levels) | {self.cohort.label_noise}))


# Sizes were chosen from measured throughput on a 2-core CPU (benchmarks/, the closing notes of
# the issues): `default` must build the whole book in about 15 minutes there. M3T sees a smaller
# cube than the other backbones, as in the reference study (128^3 vs 160x256x256): it cuts the
# volume into all its slices, so its cost grows with the cube of the side.
#: the training recipe of every preset but `paper` (issue 9, measured by benchmarks/time_to_quality.py):
#: warm-up, cosine decay to zero, the final (annealed) weights unless the validation loss vetoes them.
#: Over 3 seeds of the default cohort, keeping the lowest-validation-loss epoch instead picked early,
#: worse epochs on the 53 validation knees: resnet3d single-KL clean QWK 0.760 +- 0.044 (OA AUC sd
#: 0.037) against 0.781 +- 0.022 (0.016) for the final weights; nnMamba dual 0.756 +- 0.055 vs 0.767 +- 0.037.
#: The gradient's norm is clipped at 5: over seeds 0-5 of M3T on the default cohort it cut the seed sd of the
#: clean QWK from 0.037 to 0.020 (dual) and 0.015 to 0.009 (single-KL) at about the same means (0.833 -> 0.843,
#: 0.848 -> 0.852): its dual seed 0 had drifted late (validation QWK 0.71 -> 0.66, test 0.761; clipped 0.807).
#: On the 27 main-grid runs the mean clean QWK of the KL cells moved by +0.003 and the seed sd fell in 9 of 15
#: (backbone, mode, metric) cells; clipping at 1 hurt M3T dual (0.793 +- 0.074).
_CONVERGING = dict(warmup_epochs=1, schedule="cosine", select="final_near_best", grad_clip=5.0)
#: the reference study's optimisation (constant lr 1e-4, batch 2, the final epoch, no clipping, no warm-up),
#: run at a preset's sizes beside its converging recipe to ask whether dual's gain belongs to the recipe
REFERENCE_RECIPE: dict[str, Any] = dict(schedule="constant", lr=1e-4, batch_size=2, select="final", grad_clip=0.0,
                                        warmup_epochs=0)
_M3T_SMALL = {"m3t": {"input_shape": (24, 24, 24)}}
#: nnMamba (140k parameters at width 0.25) learns at 3x the others' peak lr: over 3 seeds of the default
#: cohort, clean QWK 0.72 -> 0.76 (dual), OA AUC 0.89 -> 0.92, no flagged run; 3e-4 was worse, 12 epochs
#: no better (benchmarks/time_to_quality.py, closing note of issue 9)
_CPU_OVERRIDES = {**_M3T_SMALL, "nnmamba": {"lr": 3e-3}}
#: `default` splits 600 subjects into 144 train, 36 val and 420 test (643 test knees): as many training
#: subjects as a 240-subject (0.6, 0.15, 0.25) split, but a test set large enough to measure the
#: models. Scored on 543 more unseen knees, the same 27 main-grid models of a 91-knee test split moved
#: from OA AUC seed sd up to 0.035 and one run below the majority rate to sd <= 0.023 and none: the
#: spread was mostly the small test set's. Test knees cost inference only (1.5-5 ms a knee a core).
_BIG_TEST = (0.24, 0.06, 0.70)
#: The saliency stage of `course` and `default` (claim 3), run on every main-grid run over the same 8 fixed test
#: knees. Its methods were chosen by the two checks alone, never by the enrichment (benchmarks/saliency_methods.py,
#: course preset, 18 runs, 6 knees, 2026-12-07): trusted (randomisation passed and deletion not failed) in
#: 0 of 18 runs for SmoothGrad x input (randomisation failed in 18), 2 for Grad-CAM (deletion failed in 16),
#: 9 for plain SmoothGrad (deletion failed in 9), 15 for integrated gradients and 16 for occlusion. Integrated
#: gradients (4 path steps) costs about half of occlusion's 64 forward passes a map, so it alone keeps the stage
#: within its budget over the 108 runs; occlusion stays a `--methods` choice. 8 knees, all checked: the deletion
#: check's one-sided sign test at 0.05 needs at least 5 knee-targets (0.5^5 < 0.05) and a single-OA run has one
#: target a knee (oaprobe.report.saliency.min_deletion_cases); at 8, one knee may fall slower (7 of 8: p = 0.035).
_SALIENCY = SaliencyConfig(knees=8, samples=4, methods=("ig",), keep_maps=1, sanity_knees=8, deletion_steps=5)
#: `default` trains every main-grid configuration on paired seeds sized by the decision rule's power
#: (oaprobe.analysis.decision.seeds_needed): at 3 seeds the clean-grade paired differences had seed sds of
#: 0.009-0.026 QWK and 0.006-0.012 OA AUC, and 2 of the 6 primary questions were decided; the planned seeds
#: for an 80% chance of a verdict were 4-17. M3T over seeds 0-5 (benchmarks/time_to_quality.py): paired
#: QWK difference sd 0.017 with today's recipe, 0.020 with weight EMA 0.9, 0.046 at half the peak lr, so
#: the recipe stays and seeds buy the rest. The side chapters keep 3 seeds (beyond_seeds).
#: On phantom v3 (patella, menisci, distractors) the same 6 seeds decide 4 of the 6 clean primary questions: M3T fine
#: (paired QWK sd 0.030, about 24 seeds planned) and nnMamba coarse (paired OA AUC sd 0.011, about 15) stay undecided and
#: say so. Training longer did not buy a lower sd: at 12 epochs, M3T's paired sds were 0.037 (fine) and 0.013 (coarse),
#: nnMamba's 0.028 and 0.044, against 0.030 / 0.008 and 0.021 / 0.011 at 8 (oaprobe sweep --backbones m3t,nnmamba
#: --epochs 12, 36 runs), so the recipe keeps 8 epochs and the book states the seeds an undecided question needs.
#: Those sds were an AMD host's. On an Intel AVX-512 host (2026-12-07, fresh-clone default books of both
#: phantoms) the 6 seeds decide 4 of 6 on v3 too, but not the same 4 (M3T coarse, paired AUC sd 0.011, and
#: nnMamba coarse, sd 0.020, undecided; M3T fine sd 0.019 decided), and only 2 of 6 on phantom v2 (3 degenerate
#: dual runs; M3T fine sd 0.050): which questions 6 seeds decide depends on the host's rounding. So `default`
#: trains 12: there seeds 0-11 decide all 6 clean primary questions, each verdict standing without any one
#: seed (seeds 0-8 decided 5; at 12 the rule plans 7-13 seeds per question), for 54 more runs (13.7 min on
#: that host). A host with a larger spread (M3T fine sd 0.030 plans about 24) can still leave a question
#: undecided, and the book then says how many seeds it needs.
_DEFAULT_SEEDS = tuple(range(12))
#: The reference-recipe runs (answer page) stay at 6 seeds: at their spread the recipe comparison needs over
#: 100 seeds for a verdict, so 6 more would add 18 slow batch-2 runs without deciding anything.
_RECIPE_SEEDS = 6
_PRESETS: dict[str, Preset] = {
    "smoke": Preset(
        name="smoke",
        cohort=CohortConfig(n_subjects=24, shape=(24, 24, 24), spacing=(4.0, 4.0, 4.0), seed=0),
        run=dict(width=0.25, input_shape=(16, 16, 16), epochs=2, batch_size=4, lr=1e-3, **_CONVERGING),
        saliency=SaliencyConfig(knees=2, samples=2, methods=("ig", "occlusion"), keep_maps=2, sanity_knees=1,
                                deletion_steps=4),
        backbones=("resnet3d", "nnmamba"),
        seeds=(0,),
        noise_levels=(0.0,),
        lambdas=(4.0,),
        beyond_seeds=1,
        recipe_seeds=1,
    ),
    "course": Preset(
        name="course",
        cohort=CohortConfig(n_subjects=100, shape=(32, 32, 32), spacing=(3.0, 3.0, 3.0), seed=0),
        run=dict(width=0.25, input_shape=(32, 32, 32), epochs=5, batch_size=8, lr=1e-3, **_CONVERGING),
        saliency=_SALIENCY,
        backbones=("resnet3d", "m3t", "nnmamba"),
        seeds=(0, 1),
        noise_levels=(0.0,),
        backbone_overrides=_CPU_OVERRIDES,
        lambdas=(0.25, 4.0),
        beyond_seeds=2,
        recipe_seeds=2,
    ),
    "default": Preset(
        name="default",
        cohort=CohortConfig(n_subjects=600, shape=(48, 48, 48), spacing=(2.0, 2.0, 2.0), split=_BIG_TEST, seed=0),
        run=dict(width=0.25, input_shape=(32, 32, 32), epochs=8, batch_size=8, lr=1e-3, **_CONVERGING),
        saliency=_SALIENCY,
        backbones=("resnet3d", "m3t", "nnmamba"),
        seeds=_DEFAULT_SEEDS,
        noise_levels=(0.0, 2.0),
        backbone_overrides=_CPU_OVERRIDES,
        lambdas=(0.25, 4.0),
        recipe_seeds=_RECIPE_SEEDS,
    ),
    # The book at the quality the data allows, on one GPU (bf16 autocast). UNMEASURED on a GPU: sized
    # from the CPU time-to-quality runs (more knees and a larger input raise the clean-grade QWK;
    # 40 epochs of the converging recipe at 64^3 and width 0.5 is about 24x the default book's
    # compute, which a modern GPU does in well under the 30-minute target); benchmarks/gpu_check.py
    # checks it where a GPU is available.
    "gpu": Preset(
        name="gpu",
        cohort=CohortConfig(n_subjects=1000, shape=(64, 64, 64), spacing=(1.5, 1.5, 1.5), seed=0),
        run=dict(width=0.5, input_shape=(64, 64, 64), epochs=40, batch_size=16, lr=1e-3, **_CONVERGING),
        saliency=SaliencyConfig(knees=0, sanity_knees=8),
        backbones=("resnet3d", "m3t", "nnmamba"),
        seeds=(0, 1, 2, 3, 4),
        noise_levels=(0.0, 2.0),
        backbone_overrides={"m3t": {"input_shape": (48, 48, 48)}},
        lambdas=(0.25, 0.5, 2.0, 4.0),
        beyond_seeds=5,
        recipe_seeds=5,
    ),
    "paper": Preset(
        name="paper",
        cohort=CohortConfig(
            n_subjects=321, shape=(80, 128, 128), spacing=(1.4, 0.73, 0.73), kl_prior="oaizib", seed=0
        ),
        run=dict(width=1.0, input_shape=(160, 256, 256), epochs=100, batch_size=2, lr=1e-4),
        saliency=SaliencyConfig(knees=0, sanity_knees=8),
        backbones=("resnet3d", "m3t", "nnmamba"),
        seeds=(0, 1, 2, 3, 4),
        noise_levels=(),
        backbone_overrides={"m3t": {"input_shape": (128, 128, 128)}},
        lambdas=(0.5, 2.0),
    ),
}


def get_preset(name: str) -> Preset:
    """Look up a preset by name; an unknown name lists the valid ones."""
    if name not in _PRESETS:
        raise ConfigError(f"unknown preset {name!r}; valid presets: {', '.join(_PRESETS)}")
    return _PRESETS[name]
