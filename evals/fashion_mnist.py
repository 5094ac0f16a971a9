"""Fashion-MNIST from Debian's ``dataset-fashion-mnist`` package: the four IDX files, gzipped,
under ``/usr/share/datasets/fashion-mnist`` (``apt-get install dataset-fashion-mnist``).

IDX format (LeCun's MNIST layout): a 4-byte magic -- two zero bytes, a type code (0x08:
unsigned byte) and the number of dimensions -- then each dimension as a big-endian uint32,
then the data, row-major. Images are N x 28 x 28, labels N.
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np
import torch

DEFAULT_DIR = "/usr/share/datasets/fashion-mnist"
PACKAGE = "dataset-fashion-mnist"
FILES = {"x_train": "train-images-idx3-ubyte.gz", "y_train": "train-labels-idx1-ubyte.gz",
         "x_test": "t10k-images-idx3-ubyte.gz", "y_test": "t10k-labels-idx1-ubyte.gz"}
UBYTE = 0x08
# Pixel statistics of the Fashion-MNIST training set (for normalization).
MEAN, STD = 0.2860, 0.3530


class FashionMissing(FileNotFoundError):
    """The data is not there; the message names the package that holds it."""


def find_folder(data_dir: str | os.PathLike[str] | None = None) -> Path:
    root = Path(data_dir or DEFAULT_DIR)
    missing = [name for name in FILES.values() if not (root / name).is_file()]
    if missing:
        raise FashionMissing(f"Fashion-MNIST not found under {root} (missing {', '.join(missing)}). It comes with "
                             f"Debian's {PACKAGE} package: `apt-get install {PACKAGE}` (or pass --data-dir "
                             "to a folder holding the four IDX .gz files).")
    return root


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """One gzipped IDX file of unsigned bytes, as a uint8 array of its declared shape."""
    with gzip.open(path, "rb") as f:
        raw = f.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise ValueError(f"{path}: not an IDX file (bad magic)")
    if raw[2] != UBYTE:
        raise ValueError(f"{path}: IDX type 0x{raw[2]:02x}, expected unsigned bytes (0x08)")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if ndim == 0 or len(raw) < header:
        raise ValueError(f"{path}: truncated IDX header")
    shape = tuple(int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
    size = int(np.prod(shape))
    if len(raw) - header != size:
        raise ValueError(f"{path}: IDX shape {shape} needs {size} bytes of data, the file has {len(raw) - header}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def load_fashion_mnist(data_dir: str | os.PathLike[str] | None = None) -> dict[str, np.ndarray]:
    """uint8 images N x 28 x 28 and int64 labels, train and test."""
    root = find_folder(data_dir)
    out = {key: read_idx(root / name) for key, name in FILES.items()}
    for split in ("train", "test"):
        x, y = out[f"x_{split}"], out[f"y_{split}"]
        if x.ndim != 3 or y.ndim != 1 or len(x) != len(y):
            raise ValueError(f"{root}: {split} images {x.shape} and labels {y.shape} do not pair up")
        out[f"y_{split}"] = y.astype(np.int64)
    return out


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 N x H x W -> normalized float32 N x 1 x H x W."""
    x = torch.from_numpy(images.copy()).float().div_(255).unsqueeze(1)
    return (x - MEAN) / STD


def small_cnn(classes: int = 10) -> torch.nn.Module:
    """Two conv/ReLU/max-pool stages (16, 32 channels) and a 64-unit head: no batch norm, so the
    learning rate matters as it does in a plain CNN."""
    from torch import nn

    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(32 * 7 * 7, 64), nn.ReLU(), nn.Linear(64, classes),
    )
