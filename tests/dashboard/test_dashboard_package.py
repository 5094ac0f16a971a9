"""The dashboard's assets are package data: a built wheel carries every file under static/."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
STATIC = ROOT / "dashboard" / "static"


@pytest.mark.slow
def test_wheel_ships_every_static_file(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                          "-w", str(tmp_path), str(ROOT)], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    wheel = next(tmp_path.glob("hotcb-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped = {"hotcb/dashboard/static/" + p.relative_to(STATIC).as_posix() for p in STATIC.rglob("*") if p.is_file()}
    assert shipped, "no static files found"
    assert shipped <= names, sorted(shipped - names)
    # the vendored chart library travels with its license
    assert {"hotcb/dashboard/static/vendor/uplot/uPlot.esm.js", "hotcb/dashboard/static/vendor/uplot/LICENSE"} <= names
