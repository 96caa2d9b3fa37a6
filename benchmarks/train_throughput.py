"""Training throughput of the engine, measured side by side in one process.

Prints three comparisons on the same model and data:

(a) the engine's epoch (warm volume cache, validation included) vs a plain MONAI-tutorial loop
    that reads and resizes every NIfTI each epoch (``monai.data.Dataset`` + ``LoadImaged`` +
    ``Resized`` per item, batches from a ``DataLoader``); target: engine >= 2x faster;
(b) the engine's training pass (``train_epoch``) vs a bare forward/backward/step loop over the
    same in-memory tensor; target: overhead < 10%;
(c) training knees/s of every registered backbone at the course and default preset sizes.

Usage (single-threaded on a busy machine):
    OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 python benchmarks/train_throughput.py --preset course
    # (a)/(b) on volumes stored at the paper cohort's resolution (80x128x128), same course input:
    OMP_NUM_THREADS=1 python benchmarks/train_throughput.py --cohort-from paper --subjects 40 --skip-backbones

The speed-up in (a) grows with the stored volume size: at the course preset the stored volumes
are tiny (32^3) and model compute dominates; real scans are ~100x larger.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch


def _bare_epoch(model, optimizer, images, kl, oa, batch_size, generator, oa_weight) -> None:
    """The minimal loop: shuffle, slice, forward, loss, backward, step (no bookkeeping at all)."""
    model.train()
    order = torch.randperm(len(images), generator=generator)
    for start in range(0, len(order) - batch_size + 1, batch_size):
        idx = order[start : start + batch_size]
        out = model(images[idx])
        loss, _ = model.loss(out, kl[idx], oa[idx], oa_weight=oa_weight)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()


def _monai_epoch(model, optimizer, loader, oa_weight) -> None:
    model.train()
    for batch in loader:
        out = model(batch["image"])
        loss, _ = model.loss(out, batch["kl"], batch["oa"], oa_weight=oa_weight)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()


def _timed(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        tic = time.perf_counter()
        fn()
        times.append(time.perf_counter() - tic)
    return min(times)


def compare_loops(
    preset: str, root: Path, epochs: int, repeats: int, cohort_preset: str | None = None, cohort_changes: dict | None = None
) -> None:
    from monai.data import DataLoader, Dataset
    from monai.transforms import Compose, EnsureChannelFirstd, LoadImaged, NormalizeIntensityd, Resized

    from oaprobe.config import RunConfig, get_preset
    from oaprobe.data.cohort import build_cohort
    from oaprobe.data.dataset import load_volumes
    from oaprobe.data.manifest import read_manifest
    from oaprobe.models.probe import build_probe
    from oaprobe.training import engine
    from oaprobe.training.batches import Volumes
    from oaprobe.training.loop import make_optimizer

    p = get_preset(preset)
    cohort = get_preset(cohort_preset or preset).cohort.replace(**(cohort_changes or {}))
    manifest = build_cohort(cohort, root / "cohort", progress=False)
    cfg = RunConfig.from_dict({"manifest": str(manifest), **p.run, "epochs": epochs})
    table = read_manifest(manifest)
    cache = root / "cache"
    load_volumes(table, cfg.input_shape, cache_dir=cache, progress=False)  # warm the cache
    train = table[table["split"] == "train"].reset_index(drop=True)
    print(f"preset {preset}: {len(table)} knees ({len(train)} train) of {cohort.shape} voxels, input {cfg.input_shape}, "
          f"backbone {cfg.backbone} width {cfg.width}, batch {cfg.batch_size}, threads {torch.get_num_threads()}")

    # (a) engine epoch (history seconds, validation included) vs MONAI tutorial loop
    folder = engine.fit(cfg, root / "runs", cache_dir=cache, progress=False, device="cpu")
    history = pd.read_csv(folder / "history.csv")
    engine_epoch = statistics.median(history["seconds"].iloc[1:]) if len(history) > 1 else history["seconds"].iloc[0]

    torch.manual_seed(0)
    model = build_probe(cfg)
    optimizer = make_optimizer(model, cfg.lr, cfg.weight_decay, torch.device("cpu"))
    items = [{"image": r.image_path, "kl": int(r.kl), "oa": int(r.oa)} for r in train.itertuples()]
    transform = Compose([
        LoadImaged(keys="image", image_only=True),
        EnsureChannelFirstd(keys="image", channel_dim="no_channel"),
        NormalizeIntensityd(keys="image"),
        Resized(keys="image", spatial_size=cfg.input_shape, mode="trilinear"),
    ])
    loader = DataLoader(Dataset(items, transform), batch_size=cfg.batch_size, shuffle=True, drop_last=True, num_workers=0)
    monai_epoch = _timed(lambda: _monai_epoch(model, optimizer, loader, cfg.oa_weight), repeats)
    print(f"(a) epoch: engine {engine_epoch:.3f} s (incl. validation of {int((table.split == 'val').sum())} knees) | "
          f"MONAI-tutorial loop (NIfTI read+resize per item) {monai_epoch:.3f} s | "
          f"engine speed-up {monai_epoch / engine_epoch:.2f}x (target >= 2x)")

    # (b) engine training pass vs bare loop, alternated on the same model and tensors
    images = load_volumes(train, cfg.input_shape, cache_dir=cache, progress=False)
    kl = torch.tensor(train["kl"].to_numpy(np.int64))
    oa = torch.tensor(train["oa"].to_numpy(np.int64))
    volumes = Volumes(images, torch.device("cpu"), channels_last=False)
    gen = torch.Generator().manual_seed(0)
    eng, bare = [], []
    for _ in range(repeats):
        eng.append(_timed(lambda: engine.train_epoch(model, optimizer, volumes, kl, oa, cfg, gen, {}, progress=False), 1))
        bare.append(_timed(lambda: _bare_epoch(model, optimizer, images, kl, oa, cfg.batch_size, gen, cfg.oa_weight), 1))
    e, b = min(eng), min(bare)
    print(f"(b) training pass: engine {e:.3f} s | bare loop {b:.3f} s | overhead {100 * (e / b - 1):+.1f}% (target < 10%); "
          f"engine epoch incl. validation vs bare: {100 * (engine_epoch / b - 1):+.1f}%")


def backbone_rates(presets: list[str], steps: int) -> None:
    from oaprobe.config import RunConfig, check_input_shape, get_preset
    from oaprobe.models.backbones import list_backbones
    from oaprobe.models.probe import build_probe

    with tempfile.NamedTemporaryFile(suffix=".csv") as fake_manifest:
        sizes = {}
        for name in presets:
            run = get_preset(name).run
            key = (tuple(run["input_shape"]), run["width"], run["batch_size"])
            sizes.setdefault(key, []).append(name)
        for (shape, width, batch), names in sizes.items():
            print(f"(c) presets {'/'.join(names)}: input {shape}, width {width}, batch {batch}, dual head")
            for backbone in list_backbones():
                try:
                    check_input_shape(backbone, shape)
                except ValueError as err:
                    print(f"    {backbone:16s} skipped: {err}")
                    continue
                cfg = RunConfig.from_dict({"manifest": fake_manifest.name, "backbone": backbone, "width": width,
                                           "input_shape": shape, "batch_size": batch})
                torch.manual_seed(0)
                model = build_probe(cfg).train()
                opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
                x = torch.randn(batch, 1, *shape)
                kl = torch.randint(0, 5, (batch,))
                oa = (kl >= 2).long()

                def step(model=model, opt=opt, x=x, kl=kl, oa=oa):  # this iteration's model and batch
                    loss, _ = model.loss(model(x), kl, oa)
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()

                step()  # warm-up
                seconds = _timed(step, steps)
                n_par = sum(p.numel() for p in model.parameters()) / 1e6
                print(f"    {backbone:16s} {n_par:6.2f}M params  {batch / seconds:7.1f} knees/s  ({seconds * 1000:.0f} ms/step)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", default="course", help="preset whose cohort and run sizes (a)/(b) use")
    parser.add_argument("--epochs", type=int, default=3, help="engine epochs for (a)")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats (the minimum is reported)")
    parser.add_argument("--steps", type=int, default=3, help="timed steps per backbone in (c)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 on a busy machine)")
    parser.add_argument("--subjects", type=int, default=None, help="override the cohort's n_subjects")
    parser.add_argument("--cohort-from", default=None, help="take the cohort recipe from this preset instead")
    parser.add_argument("--skip-backbones", action="store_true", help="skip (c)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        changes = {"n_subjects": args.subjects} if args.subjects else {}
        compare_loops(args.preset, Path(tmp), args.epochs, args.repeats, args.cohort_from, changes)
    if not args.skip_backbones:
        backbone_rates(["course", "default"], args.steps)


if __name__ == "__main__":
    main()
