"""Preprocessing, volume/mask loading, the in-memory and disk caches, and KneeDataset."""

from __future__ import annotations

import os

import nibabel as nib
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from oaprobe.data import dataset as ds
from oaprobe.data.manifest import read_manifest

from .conftest import planted_mask, write_nifti


@pytest.fixture(autouse=True)
def fresh_memory_cache():
    ds.clear_memory_cache()
    yield
    ds.clear_memory_cache()


@pytest.fixture
def count_reads(monkeypatch):
    """Count calls of the NIfTI reader used by the loaders."""
    calls = []
    original = ds.read_volume

    def counting(path):
        calls.append(str(path))
        return original(path)

    monkeypatch.setattr(ds, "read_volume", counting)
    return calls


def test_zscore_known_answer():
    rng = np.random.default_rng(0)
    volume = (50 + 7 * rng.standard_normal((6, 7, 8))).astype(np.float32)
    out = ds.preprocess_image(volume, (6, 7, 8))  # same shape: no resize
    assert out.shape == (1, 6, 7, 8) and out.dtype == torch.float32
    expected = (volume.astype(np.float64) - volume.mean(dtype=np.float64)) / volume.std(dtype=np.float64)
    np.testing.assert_allclose(out[0].numpy(), expected, rtol=1e-5, atol=1e-5)
    assert abs(float(out.mean())) < 1e-5 and abs(float(out.std(unbiased=False)) - 1) < 1e-5


def test_constant_volume_gives_zeros_not_nan():
    out = ds.preprocess_image(np.full((4, 4, 4), 3.0), (4, 4, 4))
    assert torch.equal(out, torch.zeros(1, 4, 4, 4))


def test_trilinear_resize_shape_and_constant_preserved():
    volume = np.zeros((4, 6, 8), np.float32)
    volume[:2] = 1.0  # two halves along D: z-score gives exactly -1 / +1
    out = ds.preprocess_image(volume, (8, 12, 16))
    assert out.shape == (1, 8, 12, 16)
    # far from the boundary the resized values are the halves' constants
    assert torch.allclose(out[0, 0], torch.ones(12, 16)) and torch.allclose(out[0, -1], -torch.ones(12, 16))


def test_nearest_resize_keeps_labels_known_answer():
    mask = planted_mask((4, 5, 6))
    up = ds.resize_mask(mask, (8, 10, 12))
    # an integer upscale with nearest neighbour repeats each voxel
    expected = mask.repeat(2, 0).repeat(2, 1).repeat(2, 2)
    assert up.dtype == np.uint8 and np.array_equal(up, expected)
    down = ds.resize_mask(mask, (3, 4, 5))
    assert set(np.unique(down)) <= {0, 1, 2, 3, 4}


def test_read_volume_moves_left_right_axis_first(tmp_path):
    data = np.arange(2 * 3 * 4, dtype=np.float32).reshape(2, 3, 4)
    # affine mapping array axis 2 to x (left-right): axis codes ('A', 'S', 'R')
    affine = np.array([[0, 0, 1, 0], [1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 0, 1]], float)
    nib.save(nib.Nifti1Image(data, affine), str(tmp_path / "v.nii.gz"))
    out = ds.read_volume(tmp_path / "v.nii.gz")
    assert out.shape == (4, 2, 3) and np.array_equal(out, np.moveaxis(data, 2, 0))
    write_nifti(tmp_path / "plain.nii.gz", data)
    assert np.array_equal(ds.read_volume(tmp_path / "plain.nii.gz"), data)


def test_load_volumes_shapes_and_values(make_manifest):
    table = read_manifest(make_manifest(n=3))
    images = ds.load_volumes(table, (6, 6, 6), progress=False)
    assert images.shape == (3, 1, 6, 6, 6) and images.dtype == torch.float32
    raw = nib.load(table.at[1, "image_path"]).get_fdata()
    assert torch.allclose(images[1], ds.preprocess_image(raw, (6, 6, 6)), atol=1e-5)


def test_load_masks_shapes_and_labels(make_manifest):
    table = read_manifest(make_manifest(n=2))
    masks = ds.load_masks(table, (16, 16, 16))
    assert masks.shape == (2, 16, 16, 16) and masks.dtype == np.uint8
    assert set(np.unique(masks)) == {0, 1, 2, 3, 4}
    with pytest.raises(KeyError, match="lesion_path"):
        ds.load_masks(table, (8, 8, 8), column="lesion_path")


def test_memory_cache_second_call_does_not_decode(make_manifest, count_reads):
    table = read_manifest(make_manifest(n=3))
    first = ds.load_volumes(table, (6, 6, 6), progress=False)
    assert len(count_reads) == 3
    second = ds.load_volumes(table, (6, 6, 6), progress=False)
    assert len(count_reads) == 3 and torch.equal(first, second)
    ds.load_volumes(table, (4, 4, 4), progress=False)  # another shape is another entry
    assert len(count_reads) == 6


def test_disk_cache_hit_in_fresh_memory_state(make_manifest, count_reads, tmp_path):
    table = read_manifest(make_manifest(n=2))
    cache = tmp_path / "cache"
    first = ds.load_volumes(table, (6, 6, 6), cache_dir=cache, progress=False)
    assert len(list(cache.glob("*.npy"))) == 2 and not list(cache.glob("*.tmp"))
    ds.clear_memory_cache()
    second = ds.load_volumes(table, (6, 6, 6), cache_dir=cache, progress=False)
    assert len(count_reads) == 2 and torch.equal(first, second)


def test_cache_invalidated_when_file_changes(make_manifest, count_reads, tmp_path):
    table = read_manifest(make_manifest(n=2))
    cache = tmp_path / "cache"
    before = ds.load_volumes(table, (8, 8, 8), cache_dir=cache, progress=False)
    path = table.at[0, "image_path"]
    stat = os.stat(path)
    write_nifti(tmp_path / "k0.nii.gz", np.linspace(0, 1, 512, dtype=np.float32).reshape(8, 8, 8))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    after = ds.load_volumes(table, (8, 8, 8), cache_dir=cache, progress=False)
    assert len(count_reads) == 3  # only the changed knee was decoded again
    assert not torch.equal(before[0], after[0]) and torch.equal(before[1], after[1])


def test_damaged_disk_cache_file_is_recomputed(make_manifest, tmp_path):
    table = read_manifest(make_manifest(n=1))
    cache = tmp_path / "cache"
    first = ds.load_volumes(table, (6, 6, 6), cache_dir=cache, progress=False)
    next(cache.glob("*.npy")).write_bytes(b"garbage")
    ds.clear_memory_cache()
    assert torch.equal(ds.load_volumes(table, (6, 6, 6), cache_dir=cache, progress=False), first)


def test_knee_dataset_items_and_collate():
    images = torch.randn(5, 1, 4, 4, 4)
    data = ds.KneeDataset(images, kl=[0, 1, 2, 3, 4], oa=[0, 0, 1, 1, 1])
    item = data[3]
    assert item["image"].shape == (1, 4, 4, 4) and item["image"].dtype == torch.float32
    assert item["kl"].dtype == item["oa"].dtype == item["index"].dtype == torch.long
    assert (int(item["kl"]), int(item["oa"]), int(item["index"])) == (3, 1, 3)
    batch = next(iter(DataLoader(data, batch_size=5)))
    assert batch["image"].shape == (5, 1, 4, 4, 4) and batch["index"].tolist() == [0, 1, 2, 3, 4]


def test_knee_dataset_transform_and_from_table(make_manifest):
    table = read_manifest(make_manifest(n=3))
    images = ds.load_volumes(table, (4, 4, 4), progress=False)
    data = ds.KneeDataset.from_table(table, images, transform=lambda x: x * 0 + 7)
    assert torch.all(data[0]["image"] == 7) and torch.equal(images[0], ds.load_volumes(table, (4, 4, 4), progress=False)[0])
    assert [int(data[i]["kl"]) for i in range(3)] == table["kl"].tolist()


def test_knee_dataset_rejects_mismatched_lengths():
    with pytest.raises(ValueError, match="expected equal lengths"):
        ds.KneeDataset(torch.zeros(2, 1, 4, 4, 4), kl=[0], oa=[0, 1])
    with pytest.raises(ValueError, match="expected"):
        ds.KneeDataset(torch.zeros(2, 4, 4, 4), kl=[0, 1], oa=[0, 1])
