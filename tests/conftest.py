import os
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # makes tests.support importable
REQUIRE_ALL = bool(os.environ.get("HOTCB_CI"))  # in CI a missing tool is a failure, not a skip


def need(tool_ok: bool, what: str) -> None:
    if tool_ok:
        return
    if REQUIRE_ALL:
        pytest.fail(f"{what} is required in CI")
    pytest.skip(f"{what} not available")


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    d = tmp_path / "run"
    d.mkdir()
    return d


@pytest.fixture
def chromium() -> str:
    path = shutil.which("chromium") or "/usr/bin/chromium"
    need(os.path.exists(path), "chromium")
    return path


@pytest.fixture
def inspector() -> str:
    path = ROOT / ".ci" / "node" / "node_modules" / ".bin" / "mcp-inspector"
    need(path.exists(), "MCP Inspector (run .ci/run or npm install --prefix .ci/node @modelcontextprotocol/inspector@2.12.0)")
    return str(path)
