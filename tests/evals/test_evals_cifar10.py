"""The CIFAR-10 loader on a tiny file set written in the exact on-disk format of
``cifar-10-batches-py`` (pickled dicts with b"data" uint8 N x 3072 and b"labels")."""

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from hotcb.evals import cifar10, tasks
from hotcb.evals.train import RunSpec, train

PER_BATCH = 120


def write_tiny_cifar(root: Path, per_batch: int = PER_BATCH) -> Path:
    folder = root / cifar10.FOLDER
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i, name in enumerate([*cifar10.TRAIN_FILES, cifar10.TEST_FILE]):
        data = rng.integers(0, 256, size=(per_batch, 3072), dtype=np.uint8)
        data[0, :] = 0
        data[0, 1024 + 5] = 200  # green channel, row 0, column 5 of the first image
        labels = [int(v) for v in rng.integers(0, 10, size=per_batch)]
        labels[0] = i  # batch i's first label tells the batches apart
        with open(folder / name, "wb") as f:
            pickle.dump({b"batch_label": name.encode(), b"labels": labels, b"data": data,
                         b"filenames": [b"x.png"] * per_batch}, f)
    names = [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse", b"ship", b"truck"]
    with open(folder / cifar10.META_FILE, "wb") as f:
        pickle.dump({b"label_names": names, b"num_cases_per_batch": per_batch, b"num_vis": 3072}, f)
    return folder


def test_loader_reads_the_official_layout(tmp_path):
    write_tiny_cifar(tmp_path)
    d = cifar10.load_cifar10(tmp_path)  # the parent folder is found too
    assert d["x_train"].shape == (5 * PER_BATCH, 3, 32, 32) and d["x_train"].dtype == np.uint8
    assert d["x_test"].shape == (PER_BATCH, 3, 32, 32)
    assert d["y_train"].shape == (5 * PER_BATCH,) and d["y_train"].dtype == np.int64
    # batches concatenated in order data_batch_1..5
    assert [int(d["y_train"][i * PER_BATCH]) for i in range(5)] == [0, 1, 2, 3, 4]
    assert int(d["y_test"][0]) == 5
    # channel-major rows: byte 1024+5 is green, y=0, x=5
    img = d["x_train"][0]
    assert img[1, 0, 5] == 200 and img.sum() == 200
    assert d["label_names"][0] == "airplane" and len(d["label_names"]) == 10


def test_missing_data_says_how_to_get_it(tmp_path):
    with pytest.raises(cifar10.CifarMissing, match="--data-dir.*--download"):
        cifar10.load_cifar10(tmp_path / "nowhere")


def test_malformed_batch_is_refused(tmp_path):
    folder = write_tiny_cifar(tmp_path)
    with open(folder / "data_batch_3", "wb") as f:
        pickle.dump({b"data": np.zeros((4, 100), dtype=np.uint8), b"labels": [0] * 4}, f)
    with pytest.raises(ValueError, match="3072"):
        cifar10.load_cifar10(folder)


def test_cifar10_task_trains_on_the_loaded_files(tmp_path):
    """The real task (loader -> normalization -> val split -> FastNet with flip/translate
    augmentation) for one step on CPU, through the same train() every policy uses."""
    write_tiny_cifar(tmp_path / "data")
    tasks._cifar.cache_clear()
    result = train(RunSpec(task="cifar10", policy="none", seed=0, run_dir=str(tmp_path / "run"), budget_epochs=1,
                           device="cpu", threads=2, task_options={"data_dir": str(tmp_path / "data")}))
    assert result["steps"] == result["total_steps"] == 1  # 540 training images, batch 512
    assert 0.0 <= result["test_acc"] <= 1.0 and np.isfinite(result["test_loss"])
    tasks._cifar.cache_clear()


def test_augmentation_is_drawn_from_the_seeded_generator():
    x = torch.randn(8, 3, 32, 32)
    a = cifar10.flip_and_translate(x, torch.Generator().manual_seed(1))
    b = cifar10.flip_and_translate(x, torch.Generator().manual_seed(1))
    assert a.shape == x.shape and torch.equal(a, b)


def tarball(path: Path, folder: Path, *extra: tuple[str, str | None, bytes]) -> None:
    """``folder`` as a gzipped tar (its name as the top directory), then ``extra`` members:
    (name, link target or None, data)."""
    import io
    import tarfile

    with tarfile.open(path, "w:gz") as tar:
        tar.add(folder, arcname=cifar10.FOLDER)
        for name, target, data in extra:
            info = tarfile.TarInfo(name)
            if target is not None:
                info.type, info.linkname = tarfile.SYMTYPE, target
                tar.addfile(info)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))


def test_download_unpacks_the_official_tarball(tmp_path):
    src = write_tiny_cifar(tmp_path / "src")
    tarball(tmp_path / "c.tar.gz", src)
    folder = cifar10.download(tmp_path / "data", url=(tmp_path / "c.tar.gz").as_uri())
    assert folder == tmp_path / "data" / cifar10.FOLDER
    assert cifar10.load_cifar10(folder)["x_train"].shape == (5 * PER_BATCH, 3, 32, 32)
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == [cifar10.FOLDER]


@pytest.mark.parametrize("members", [
    # a link in the folder to a directory outside, then a file written through it
    [(f"{cifar10.FOLDER}/out", "../../outside", b""), (f"{cifar10.FOLDER}/out/planted.txt", None, b"pwned")],
    # a link at a file's name, then that name again as a regular file
    [(f"{cifar10.FOLDER}/planted.txt", "../../outside/planted.txt", b""),
     (f"{cifar10.FOLDER}/planted.txt", None, b"pwned")],
])
def test_a_hostile_download_writes_nothing_outside_the_data_dir(tmp_path, members):
    """Seen: ``download`` extracted every member under ``cifar-10-batches-py/`` with
    ``tarfile.extractall`` and no filter, so a symlink member sent the next member's bytes
    outside the data directory (``outside/planted.txt`` written)."""
    src = write_tiny_cifar(tmp_path / "src")
    (tmp_path / "outside").mkdir()
    tarball(tmp_path / "c.tar.gz", src, *members)
    with pytest.raises(cifar10.CifarMissing, match="refused"):
        cifar10.download(tmp_path / "data", url=(tmp_path / "c.tar.gz").as_uri())
    assert list((tmp_path / "outside").iterdir()) == []
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == []  # nothing left behind
