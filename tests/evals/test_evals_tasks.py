"""The tasks beyond digits, end to end through ``hotcb eval autopilot``: charlm (a char-level
transformer, AdamW under a LambdaLR warmup), regression (an MLP, MSE, scored on held-out loss) and
fashion-mnist (a CNN on IDX files, made here in the real on-disk format: no download)."""

import gzip
import json
import math
import struct
from pathlib import Path

import numpy as np
import pytest
from hotcb.evals import fashion_mnist as fm
from hotcb.evals.report import summarize_runs

from hotcb.cli import main
from hotcb.jsonl import read_all
from hotcb.rundir import RunDir


def write_idx(path: Path, array: np.ndarray) -> None:
    """``array`` (uint8) as a gzipped IDX file: magic 0 0 0x08 ndim, big-endian uint32 dims, data."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(struct.pack(">I", d) for d in array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def fashion_dir(root: Path, n_train: int = 640, n_test: int = 200) -> Path:
    """A tiny Fashion-MNIST in the package's layout: labels learnable from a bright patch."""
    rng = np.random.default_rng(0)
    root.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", n_train), ("t10k", n_test)):
        y = rng.integers(0, 10, n).astype(np.uint8)
        x = rng.integers(0, 60, (n, 28, 28)).astype(np.uint8)
        for i, label in enumerate(y):
            x[i, 2 * label:2 * label + 4, 4:24] = 250
        write_idx(root / f"{split}-images-idx3-ubyte.gz", x)
        write_idx(root / f"{split}-labels-idx1-ubyte.gz", y)
    return root


def test_the_idx_reader_parses_the_real_format(tmp_path):
    images = np.arange(3 * 28 * 28, dtype=np.uint64).reshape(3, 28, 28) % 256
    write_idx(tmp_path / "x.gz", images)
    got = fm.read_idx(tmp_path / "x.gz")
    assert got.shape == (3, 28, 28) and got.dtype == np.uint8
    assert np.array_equal(got, images.astype(np.uint8))
    write_idx(tmp_path / "y.gz", np.array([9, 0, 4], dtype=np.uint8))
    assert fm.read_idx(tmp_path / "y.gz").tolist() == [9, 0, 4]

    with gzip.open(tmp_path / "bad.gz", "wb") as f:
        f.write(bytes([1, 2, 8, 1]) + struct.pack(">I", 2) + b"ab")
    with pytest.raises(ValueError, match="bad magic"):
        fm.read_idx(tmp_path / "bad.gz")
    with gzip.open(tmp_path / "short.gz", "wb") as f:
        f.write(bytes([0, 0, 8, 1]) + struct.pack(">I", 5) + b"ab")
    with pytest.raises(ValueError, match="needs 5 bytes"):
        fm.read_idx(tmp_path / "short.gz")

    data = fm.load_fashion_mnist(fashion_dir(tmp_path / "fm"))
    assert data["x_train"].shape == (640, 28, 28) and data["y_test"].shape == (200,)
    assert data["y_train"].dtype == np.int64


def test_missing_fashion_mnist_names_the_debian_package(tmp_path):
    with pytest.raises(fm.FashionMissing, match="apt-get install dataset-fashion-mnist"):
        fm.find_folder(tmp_path / "absent")
    with pytest.raises(SystemExit, match="apt-get install dataset-fashion-mnist"):
        main(["eval", "autopilot", "--task", "fashion-mnist", "--policies", "none", "--seeds", "1",
              "--data-dir", str(tmp_path / "absent"), "--out", str(tmp_path / "out"), "--no-progress"])
    assert not (tmp_path / "out" / "runs").exists()  # refused before any run started


@pytest.mark.skipif(not Path(fm.DEFAULT_DIR, fm.FILES["y_test"]).is_file(), reason="dataset-fashion-mnist not installed")
def test_the_installed_package_reads():
    labels = fm.read_idx(Path(fm.DEFAULT_DIR) / fm.FILES["y_test"])
    assert labels.shape == (10_000,) and set(np.unique(labels).tolist()) == set(range(10))


def _eval(tmp_path: Path, task: str, epochs: int, *extra: str) -> dict:
    out = tmp_path / task
    rc = main(["eval", "autopilot", "--task", task, "--policies", "none,rules", "--seeds", "1",
               "--budget-epochs", str(epochs), "--out", str(out), "--no-progress", *extra])
    assert rc == 0
    return json.loads((out / "results.json").read_text())


def _rules_started(run: dict) -> list[dict]:
    ledger = [e for e in read_all(RunDir(run["run_dir"]).ledger) if isinstance(e, dict)]
    return [e for e in ledger if e.get("module") == "rescue" and e.get("op") == "enable"
            and e.get("decision") == "applied"]


@pytest.mark.parametrize(("task", "epochs", "goal"), [("regression", 2, "min"), ("charlm", 1, "min"),
                                                      ("fashion-mnist", 2, "max")])
def test_each_new_task_runs_through_the_cli_with_none_and_rules(tmp_path, task, epochs, goal):
    extra = ("--data-dir", str(fashion_dir(tmp_path / "fm"))) if task == "fashion-mnist" else ()
    results = _eval(tmp_path, task, epochs, *extra)
    runs = {r["policy"]: r for r in results["runs"]}
    assert set(runs) == {"none", "rules"}
    assert runs["none"]["steps"] == runs["rules"]["steps"] > 0  # equal training steps
    for r in runs.values():
        assert r["goal"] == goal and math.isfinite(r["score"])
        assert r["policy_errors"] == []
    assert _rules_started(runs["rules"])  # the rules acted through the tool surface (the rescue switched on)
    summary = summarize_runs(results)
    assert summary["none"]["mean"] == pytest.approx(runs["none"]["score"])
    report = (tmp_path / task / "report.md").read_text()
    if goal == "min":
        assert runs["none"]["score"] <= runs["none"]["baseline_loss"]
        assert "| test loss mean |" in report and "lower is better" in report
    else:
        assert runs["none"]["score"] == runs["none"]["test_acc"] > 0.2  # learned the patch, above chance
        assert "| test acc mean |" in report


def test_charlm_runs_the_readme_loop_a_lambdalr_warmup(tmp_path):
    results = _eval(tmp_path, "charlm", 1)
    run = next(r for r in results["runs"] if r["policy"] == "none")
    lr = run["curves"]["lr"]
    assert lr[0] < lr[60] == pytest.approx(run["base_lr"])  # 50 warmup steps, then the base lr
    assert run["score"] < run["baseline_loss"]  # below what a model without context scores
