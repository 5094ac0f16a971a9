"""The package installs and imports: a built wheel in a fresh venv with only torch + PyYAML
visible imports core (and none of the extras is there); the dev install imports every layer."""

from __future__ import annotations

import importlib
import shutil
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# What core may see: torch and PyYAML plus torch's own runtime dependencies.
CORE_DEPS = ("torch", "torchgen", "functorch", "yaml", "_yaml", "typing_extensions.py", "sympy", "mpmath",
             "networkx", "jinja2", "markupsafe", "filelock", "fsspec")
EXTRAS = ("mcp", "fastapi", "openai", "optuna", "pydantic", "uvicorn", "numpy")


@pytest.mark.parametrize("name", ["hotcb.mcp_server", "hotcb.agent", "hotcb.dashboard", "hotcb.evals",
                                  "hotcb.prompts", "hotcb.callbacks", "hotcb.adapters", "hotcb.cli"])
def test_every_subpackage_imports_in_the_dev_install(name: str) -> None:
    assert importlib.import_module(name).__name__ == name


def _copy_source(dst: Path) -> Path:
    """Build from a copy so the shared working tree gets no build/ or egg-info of ours."""
    ignore = shutil.ignore_patterns(".venv", ".git", "build", "dist", "*.egg-info", "__pycache__", "node_modules",
                                    ".pytest_cache", ".ruff_cache", "runs", "tests", "benchmarks", "test-artifacts")
    shutil.copytree(ROOT, dst, ignore=ignore)
    return dst


@pytest.mark.slow
def test_wheel_in_fresh_venv_imports_core_without_extras(tmp_path: Path) -> None:
    src = _copy_source(tmp_path / "src")
    dist = tmp_path / "dist"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(dist), str(src)], check=True, capture_output=True)
    wheel = next(dist.glob("hotcb-*.whl"))

    env_dir = tmp_path / "fresh"
    venv.create(env_dir, with_pip=False)  # no network, no pip needed inside: our pip installs into it
    py = env_dir / "bin" / "python"
    subprocess.run([sys.executable, "-m", "pip", "--python", str(py), "install", "--no-deps", "-q", str(wheel)],
                   check=True, capture_output=True)
    # Make only torch + yaml (and torch's own deps) visible, through a .pth pointing at symlinks.
    shelf = tmp_path / "core_deps"
    shelf.mkdir()
    site = Path(sysconfig.get_paths()["purelib"])
    for name in CORE_DEPS:
        if (site / name).exists():
            (shelf / name).symlink_to(site / name)
    fresh_site = Path(subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                     check=True, capture_output=True, text=True).stdout.strip())
    (fresh_site / "core_deps.pth").write_text(str(shelf) + "\n")

    probe = (
        "import importlib.util as u, hotcb, hotcb.kernel, hotcb.cli, hotcb.callbacks\n"
        "from hotcb import HotKernel, HotOp, CallbackTarget, HotcbActuator, MutableState, FreezeState\n"
        "print('file', hotcb.__file__)\n"
        f"print('missing', [m for m in {EXTRAS!r} if u.find_spec(m) is None])\n"
        "import tempfile, torch\n"
        "k = HotKernel(tempfile.mkdtemp()); k.apply(env={'step': 1, 'metrics': {'x': 1.0}}); k.close()\n"
        "print('kernel ok')\n"
    )
    r = subprocess.run([str(py), "-I", "-c", probe], capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert f"file {fresh_site}" in out  # the wheel's copy, not the working tree's
    assert f"missing {list(EXTRAS)!r}" in out
    assert "kernel ok" in out
    for extra in ("mcp", "fastapi"):
        r = subprocess.run([str(py), "-I", "-c", f"import {extra}"], capture_output=True, text=True)
        assert r.returncode != 0 and "ModuleNotFoundError" in r.stderr
    # the CLI works without extras, and a missing extra is named in one line
    r = subprocess.run([str(py), "-I", "-m", "hotcb.cli", "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "ledger" in r.stdout, r.stderr
    r = subprocess.run([str(py), "-I", "-c", "import hotcb; hotcb.require_extra('fastapi', 'dashboard')"],
                       capture_output=True, text=True)
    assert r.returncode == 1 and r.stderr.strip().splitlines() == [
        "hotcb: this feature needs 'fastapi'; install it with: pip install 'hotcb[dashboard]'"]
