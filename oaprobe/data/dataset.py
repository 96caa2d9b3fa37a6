"""Preprocessing, cached volume loading and the torch Dataset over a manifest.

Preprocessing follows the reference protocol: load the NIfTI (nibabel), put the sagittal
(left-right) axis first so arrays are ``(D, H, W)``, z-score each volume, then resize
trilinearly to the run's ``input_shape`` (label maps: nearest neighbour). Decoding NIfTI is
the slow part, so :func:`load_volumes` keeps an in-memory cache per process and, given a
``cache_dir``, one ``.npy`` per knee on disk keyed by the image's resolved path, size, mtime, inode, the target
shape and the preprocessing version: runs after the first never decode NIfTI again, and an
edited file is re-read.

Example:
    >>> import numpy as np, torch
    >>> x = preprocess_image(np.arange(64, dtype=np.float32).reshape(4, 4, 4), (8, 8, 8))
    >>> tuple(x.shape), x.dtype
    ((1, 8, 8, 8), torch.float32)
    >>> ds = KneeDataset(torch.zeros(2, 1, 4, 4, 4), kl=[0, 3], oa=[0, 1])
    >>> item = ds[1]
    >>> sorted(item), int(item["kl"]), int(item["oa"]), int(item["index"])
    (['image', 'index', 'kl', 'oa'], 3, 1, 1)
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from oaprobe.io import write_atomic

#: bump when preprocessing changes: it is part of every cache key, so old cache files go stale
PREPROCESS_VERSION = "zscore-trilinear-v1"
#: upper bound of the per-process in-memory cache (least recently used knees are dropped)
MEMORY_CACHE_BYTES = 8 * 2**30

_memory_cache: OrderedDict[tuple, np.ndarray] = OrderedDict()
_memory_cache_bytes = 0


def read_volume(path: str | Path) -> np.ndarray:
    """Read a NIfTI volume as a ``(D, H, W)`` array, D being the sagittal (left-right) axis.

    The array keeps its stored dtype. The axis whose direction in the affine is closest to
    left-right is moved first; the other two keep their stored order. Trailing singleton
    axes (``D, H, W, 1``) are dropped.
    """
    img = nib.load(str(path))
    data = np.asanyarray(img.dataobj)
    while data.ndim > 3 and data.shape[-1] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise ValueError(f"{path}: volume has shape {data.shape}; expected a 3-D volume")
    codes = nib.aff2axcodes(img.affine)
    lr_axis = next((i for i, code in enumerate(codes) if code in ("L", "R")), 0)
    if lr_axis != 0:
        data = np.moveaxis(data, lr_axis, 0)
    return np.ascontiguousarray(data)


def zscore(volume: np.ndarray) -> np.ndarray:
    """Per-volume z-score (population std), computed in float64, returned as float32.

    A constant volume becomes all zeros rather than NaN.
    """
    data = np.asarray(volume, dtype=np.float64)
    std = data.std()
    return ((data - data.mean()) / (std if std > 0 else 1.0)).astype(np.float32)


def preprocess_image(volume: np.ndarray, input_shape: Sequence[int]) -> torch.Tensor:
    """z-score, then trilinear resize to ``input_shape``; returns ``(1, D, H, W)`` float32."""
    x = torch.from_numpy(zscore(volume))[None, None]
    if tuple(x.shape[2:]) != tuple(input_shape):
        x = F.interpolate(x, size=tuple(int(s) for s in input_shape), mode="trilinear", align_corners=False)
    return x[0].contiguous()


def resize_mask(mask: np.ndarray, input_shape: Sequence[int]) -> np.ndarray:
    """Nearest-neighbour resize of a label map to ``input_shape``; labels are kept, uint8."""
    labels = np.asarray(mask)
    if tuple(labels.shape) == tuple(input_shape):
        return np.rint(labels).astype(np.uint8)
    x = torch.from_numpy(np.rint(labels).astype(np.float32))[None, None]
    x = F.interpolate(x, size=tuple(int(s) for s in input_shape), mode="nearest-exact")
    return x[0, 0].numpy().astype(np.uint8)


def clear_memory_cache() -> None:
    """Forget every preprocessed volume held in this process (the disk cache is untouched)."""
    global _memory_cache_bytes
    _memory_cache.clear()
    _memory_cache_bytes = 0


def _remember(key: tuple, array: np.ndarray) -> None:
    global _memory_cache_bytes
    if key in _memory_cache:
        return
    _memory_cache[key] = array
    _memory_cache_bytes += array.nbytes
    while _memory_cache_bytes > MEMORY_CACHE_BYTES and len(_memory_cache) > 1:
        _, dropped = _memory_cache.popitem(last=False)
        _memory_cache_bytes -= dropped.nbytes


def _cache_key(kind: str, path: str | Path, input_shape: Sequence[int]) -> tuple:
    """Identity of one preprocessed volume: the file (resolved path, size, mtime, inode), shape and
    version: two copies of a dataset never share an entry, and a file replaced in place is re-read."""
    file = Path(path).resolve()
    try:
        stat = file.stat()
    except FileNotFoundError:
        raise FileNotFoundError(f"{kind} file {str(file)!r} not found") from None
    return (kind, str(file), stat.st_size, stat.st_mtime_ns, stat.st_ino, tuple(int(s) for s in input_shape), PREPROCESS_VERSION)


def _disk_file(cache_dir: Path, key: tuple) -> Path:
    digest = hashlib.sha256(repr(key).encode()).hexdigest()[:24]
    return cache_dir / f"{key[0]}-{digest}.npy"


def _save_atomic(file: Path, array: np.ndarray) -> None:
    write_atomic(file, lambda handle: np.save(handle, array))


def _cached(
    kind: str,
    path: str | Path,
    input_shape: Sequence[int],
    compute: Callable[[np.ndarray], np.ndarray],
    cache_dir: Path | None,
) -> np.ndarray:
    """Preprocessed array for one file: memory cache, then disk cache, then decode NIfTI."""
    key = _cache_key(kind, path, input_shape)
    if key in _memory_cache:
        _memory_cache.move_to_end(key)
        return _memory_cache[key]
    array = None
    disk = _disk_file(Path(cache_dir), key) if cache_dir is not None else None
    if disk is not None and disk.is_file():
        try:
            array = np.load(disk, allow_pickle=False)
        except (OSError, ValueError):
            array = None  # a damaged cache file is simply recomputed
    if array is None:
        array = compute(read_volume(path))
        if disk is not None:
            _save_atomic(disk, array)
    _remember(key, array)
    return array


def _path_column(table: pd.DataFrame, column: str) -> list[str]:
    if column not in table.columns:
        raise KeyError(
            f"table has no column {column!r}; expected a table from oaprobe.data.manifest.read_manifest "
            f"(columns: {', '.join(map(str, table.columns))})"
        )
    paths = list(table[column])
    missing = [i for i, p in enumerate(paths) if p is None or (isinstance(p, float) and np.isnan(p))]
    if missing:
        raise ValueError(f"column {column!r} is empty in row(s) {missing[:10]}")
    return [str(p) for p in paths]


def load_volumes(
    table: pd.DataFrame,
    input_shape: Sequence[int],
    cache_dir: Path | None = None,
    progress: bool = True,
) -> torch.Tensor:
    """Preprocessed images of every row of a manifest table, as one ``(N, 1, D, H, W)`` tensor.

    Args:
        table: a table from :func:`oaprobe.data.manifest.read_manifest` (uses ``image_path``).
        input_shape: target ``(D, H, W)``.
        cache_dir: optional folder for the per-knee disk cache (created when missing).
        progress: show a tqdm bar.
    """
    shape = tuple(int(s) for s in input_shape)
    paths = _path_column(table, "image_path")
    out = torch.empty((len(paths), 1, *shape), dtype=torch.float32)
    compute = lambda volume: preprocess_image(volume, shape).numpy()  # noqa: E731
    for i, path in enumerate(tqdm(paths, desc="volumes", disable=not progress, leave=False)):
        out[i] = torch.from_numpy(_cached("image", path, shape, compute, cache_dir))
    return out


def load_masks(
    table: pd.DataFrame,
    input_shape: Sequence[int],
    column: str = "mask_path",
    cache_dir: Path | None = None,
    progress: bool = False,
) -> np.ndarray:
    """Label maps of every row, nearest-resized to ``input_shape``: ``(N, D, H, W)`` uint8.

    ``column`` may be ``"lesion_path"`` for the synthetic lesion masks.
    """
    shape = tuple(int(s) for s in input_shape)
    paths = _path_column(table, column)
    out = np.empty((len(paths), *shape), dtype=np.uint8)
    compute = lambda volume: resize_mask(volume, shape)  # noqa: E731
    for i, path in enumerate(tqdm(paths, desc=column, disable=not progress, leave=False)):
        out[i] = _cached("mask", path, shape, compute, cache_dir)
    return out


class KneeDataset(Dataset):
    """Knees held in memory: item ``i`` is ``{"image", "kl", "oa", "index"}``.

    Args:
        images: ``(N, 1, D, H, W)`` float32 tensor (see :func:`load_volumes`).
        kl: N observed KL grades (0-4).
        oa: N OA labels (0/1).
        transform: optional callable applied to each ``(1, D, H, W)`` image (augmentation).
    """

    def __init__(
        self,
        images: torch.Tensor,
        kl: Sequence[int] | np.ndarray | torch.Tensor,
        oa: Sequence[int] | np.ndarray | torch.Tensor,
        transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ):
        if images.ndim != 5 or images.shape[1] != 1:
            raise ValueError(f"images has shape {tuple(images.shape)}; expected (N, 1, D, H, W)")
        self.images = images
        self.kl = torch.as_tensor(np.array(kl, dtype=np.int64))
        self.oa = torch.as_tensor(np.array(oa, dtype=np.int64))
        if not len(self.kl) == len(self.oa) == len(images):
            raise ValueError(
                f"{len(images)} images but {len(self.kl)} kl and {len(self.oa)} oa labels; expected equal lengths"
            )
        self.transform = transform

    @classmethod
    def from_table(
        cls,
        table: pd.DataFrame,
        images: torch.Tensor,
        transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> KneeDataset:
        """Dataset over ``images`` with labels from a manifest table's ``kl`` and ``oa``."""
        return cls(images, table["kl"].to_numpy(), table["oa"].to_numpy(), transform)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        image = self.images[index]
        if self.transform is not None:
            image = self.transform(image)
        return {
            "image": image,
            "kl": self.kl[index],
            "oa": self.oa[index],
            "index": torch.tensor(index, dtype=torch.long),
        }
