"""CIFAR-10 from the standard ``cifar-10-batches-py`` pickles, and a fast small ResNet-style net.

On-disk format (the official python version): ``data_batch_1`` .. ``data_batch_5`` and
``test_batch``, each a pickle of a dict with ``b"data"`` (uint8, N x 3072, channel-major RGB
32x32) and ``b"labels"`` (N ints); ``batches.meta`` holds ``b"label_names"``.
No torchvision: ``--download`` fetches the official tarball with urllib and unpacks it.
"""

from __future__ import annotations

import os
import pickle
import shutil
import urllib.request
from pathlib import Path

import numpy as np
import torch
from torch import nn

from . import run_archive

URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
FOLDER = "cifar-10-batches-py"
TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_FILE = "test_batch"
META_FILE = "batches.meta"
# Per-channel statistics of the CIFAR-10 training set (for normalization).
MEAN = (0.4914, 0.4822, 0.4465)
STD = (0.2470, 0.2435, 0.2616)


class CifarMissing(FileNotFoundError):
    """The data is not there; the message says how to get it."""


def find_folder(data_dir: str | os.PathLike[str]) -> Path:
    """``data_dir`` itself or its ``cifar-10-batches-py`` child, whichever holds the batches."""
    root = Path(data_dir)
    for cand in (root, root / FOLDER):
        if (cand / TEST_FILE).is_file() and all((cand / f).is_file() for f in TRAIN_FILES):
            return cand
    raise CifarMissing(
        f"CIFAR-10 not found under {root} (expected {FOLDER}/ with {', '.join(TRAIN_FILES)}, {TEST_FILE}). "
        f"Pass --data-dir pointing at it, or --download to fetch {URL} (needs internet)."
    )


def _load_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    with open(path, "rb") as f:
        d = pickle.load(f, encoding="bytes")
    data = np.asarray(d[b"data"], dtype=np.uint8)
    labels = np.asarray(d[b"labels"], dtype=np.int64)
    if data.ndim != 2 or data.shape[1] != 3072 or len(labels) != len(data):
        raise ValueError(f"{path}: expected data N x 3072 and N labels, got {data.shape} and {labels.shape}")
    return data.reshape(-1, 3, 32, 32), labels


def load_cifar10(data_dir: str | os.PathLike[str]) -> dict[str, np.ndarray | list[str]]:
    """uint8 images N x 3 x 32 x 32 and int64 labels for train (all five batches) and test."""
    folder = find_folder(data_dir)
    parts = [_load_batch(folder / name) for name in TRAIN_FILES]
    x_test, y_test = _load_batch(folder / TEST_FILE)
    names: list[str] = []
    if (folder / META_FILE).is_file():
        with open(folder / META_FILE, "rb") as f:
            names = [n.decode() for n in pickle.load(f, encoding="bytes").get(b"label_names", [])]
    return {
        "x_train": np.concatenate([p[0] for p in parts]), "y_train": np.concatenate([p[1] for p in parts]),
        "x_test": x_test, "y_test": y_test, "label_names": names,
    }


def download(data_dir: str | os.PathLike[str], url: str = URL) -> Path:
    """Fetch and unpack the official tarball into ``data_dir`` (skipped when already there)."""
    root = Path(data_dir)
    try:
        return find_folder(root)
    except CifarMissing:
        pass
    root.mkdir(parents=True, exist_ok=True)
    archive = root / "cifar-10-python.tar.gz"
    try:
        urllib.request.urlretrieve(url, archive)
    except OSError as e:
        raise CifarMissing(f"could not download CIFAR-10 from {url} ({e}); without internet, copy "
                           f"{FOLDER}/ here and pass --data-dir") from None
    # The tarball is input from the network: unpacked by the eval archives' own rules (no link,
    # no name outside, bounded), into a staging folder from which only the batches folder is kept.
    stage = root / f".{FOLDER}.unpack"
    try:
        run_archive.unpack(archive, stage)
    except run_archive.ArchiveRefused as e:
        raise CifarMissing(f"the CIFAR-10 tarball from {url} was refused ({e}); copy {FOLDER}/ here "
                           "and pass --data-dir") from None
    finally:
        archive.unlink(missing_ok=True)
    try:
        if (stage / FOLDER).is_dir() and not (stage / FOLDER).is_symlink():
            os.replace(stage / FOLDER, root / FOLDER)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return find_folder(root)


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 N x 3 x 32 x 32 -> normalized float32."""
    x = torch.from_numpy(images).float().div_(255)
    mean = torch.tensor(MEAN).view(1, 3, 1, 1)
    std = torch.tensor(STD).view(1, 3, 1, 1)
    return (x - mean) / std


# ---------------------------------------------------------------------------- the net
# In the spirit of the fast CIFAR-10 scripts (airbench, hlb-cifar10): a conv stem, then three
# blocks of conv -> max-pool -> BN -> GELU -> conv -> BN -> GELU, widening as the image shrinks;
# global max pool and a scaled linear head. BN lets it take a large learning rate.
def conv_bn(c_in: int, c_out: int) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.GELU()]


class ConvBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1, bias=False)
        self.pool = nn.MaxPool2d(2)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.rest = nn.Sequential(nn.GELU(), *conv_bn(c_out, c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.rest(self.bn1(self.pool(self.conv1(x))))


class FastNet(nn.Module):
    def __init__(self, num_classes: int = 10, widths: tuple[int, int, int] = (64, 256, 256), scale: float = 1 / 9):
        super().__init__()
        self.stem = nn.Sequential(*conv_bn(3, 32))
        self.blocks = nn.Sequential(ConvBlock(32, widths[0]), ConvBlock(widths[0], widths[1]),
                                    ConvBlock(widths[1], widths[2]))
        self.head = nn.Linear(widths[2], num_classes, bias=False)
        self.scale = scale  # a small output scale keeps early logits tame (airbench's trick)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(self.stem(x))
        x = torch.amax(x, dim=(2, 3))
        return self.head(x) * self.scale


def flip_and_translate(x: torch.Tensor, gen: torch.Generator, pad: int = 2) -> torch.Tensor:
    """Random horizontal flips and up-to-``pad``-pixel translations (reflect padding), drawn
    from ``gen`` so every policy sees the same augmentation for a seed."""
    n = x.shape[0]
    flip = torch.rand(n, generator=gen) < 0.5
    x = torch.where(flip.view(-1, 1, 1, 1).to(x.device), x.flip(3), x)
    if pad:
        padded = nn.functional.pad(x, (pad, pad, pad, pad), mode="reflect")
        dx, dy = torch.randint(0, 2 * pad + 1, (2,), generator=gen).tolist()  # one shift per batch: cheap
        x = padded[:, :, dy:dy + x.shape[2], dx:dx + x.shape[3]]
    return x
