"""A run archive sent back by an eval worker is hostile input: the executor's ``unpack`` refuses
links, devices, escaping names, bombs and floods whole, leaves nothing behind, records why, and
still unpacks what ``train_packed`` sends (the real packer)."""

from __future__ import annotations

import gzip
import io
import json
import os
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest
from hotcb.evals.executor import unpack
from hotcb.evals.run_archive import ArchiveRefused, UnpackLimits, pack


def _tar(build: Callable[[tarfile.TarFile], None]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        build(tar)
    return buf.getvalue()


def _file(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def _link(tar: tarfile.TarFile, name: str, target: str, kind: bytes = tarfile.SYMTYPE) -> None:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = target
    tar.addfile(info)


def _deep_symlink_chain(tar: tarfile.TarFile) -> None:
    # The shape that escaped the "data" filter: a chain of links whose lexical resolution passes
    # PATH_MAX, then a file written through the last one.
    depth = 40
    for i in range(depth):
        name = "/".join(["d" * 120] * i + ["l"]) if i else "l"
        _link(tar, name, "/".join(["d" * 120] * (i + 1)) if i < depth - 1 else "../" * 60 + "tmp")
    _file(tar, "l/escaped.pth", b"import os; os.system('touch /tmp/pwned')\n")


def _symlink_then_file(outside: Path) -> Callable[[tarfile.TarFile], None]:
    def build(tar: tarfile.TarFile) -> None:
        _file(tar, "./hotcb.ledger.jsonl", b"{}\n")
        _link(tar, "./snap", str(outside))
        _file(tar, "./snap/evil.txt", b"outside\n")
    return build


def _hardlink(outside: Path) -> Callable[[tarfile.TarFile], None]:
    return lambda tar: _link(tar, "./x", str(outside / "victim.txt"), tarfile.LNKTYPE)


def _device(tar: tarfile.TarFile) -> None:
    info = tarfile.TarInfo("./null")
    info.type = tarfile.CHRTYPE
    info.devmajor, info.devminor = 1, 3
    tar.addfile(info)


def _fifo(tar: tarfile.TarFile) -> None:
    info = tarfile.TarInfo("./pipe")
    info.type = tarfile.FIFOTYPE
    tar.addfile(info)


def _dotdot(tar: tarfile.TarFile) -> None:
    _file(tar, "./a/../../escaped.txt", b"x")


def _absolute(tar: tarfile.TarFile) -> None:
    _file(tar, "/tmp/escaped-absolute.txt", b"x")


def _empty_component(tar: tarfile.TarFile) -> None:
    _file(tar, "./a//b", b"x")


def _twice(tar: tarfile.TarFile) -> None:
    _file(tar, "./a", b"1")
    _file(tar, "./a", b"2")


def _many(tar: tarfile.TarFile) -> None:
    for i in range(50):
        _file(tar, f"./f{i}", b"x")


class _Zeros(io.RawIOBase):
    def __init__(self, n: int):
        self.left = n

    def readable(self) -> bool:
        return True

    def readinto(self, b: bytearray | memoryview) -> int:  # type: ignore[override]
        n = min(len(b), self.left)
        b[:n] = bytes(n)
        self.left -= n
        return n


def _huge(tar: tarfile.TarFile) -> None:
    info = tarfile.TarInfo("./weights.pt")
    info.size = 32 << 20  # compresses to ~32 kB
    tar.addfile(info, io.BufferedReader(_Zeros(info.size)))


SMALL = UnpackLimits(max_members=20, max_file_bytes=1 << 20, max_total_bytes=4 << 20)


@pytest.mark.parametrize(("build", "reason"), [
    (_deep_symlink_chain, "not a regular file"),
    (_device, "not a regular file"),
    (_fifo, "not a regular file"),
    (_dotdot, "'..'"),
    (_absolute, "absolute"),
    (_empty_component, "''"),
    (_twice, "twice"),
    (_many, "members"),
    (_huge, "size limit"),
])
def test_a_hostile_archive_is_refused_whole_and_recorded(tmp_path: Path, build: Callable, reason: str) -> None:
    run = tmp_path / "out" / "runs" / "none-s0"
    with pytest.raises(ArchiveRefused) as e:
        unpack(_tar(build), run, SMALL)
    assert reason in e.value.reason
    assert sorted(p.name for p in run.parent.iterdir()) == ["none-s0.refused.json"]  # no staging left
    assert json.loads((run.parent / "none-s0.refused.json").read_text())["reason"] == e.value.reason
    assert not Path("/tmp/escaped-absolute.txt").exists()


@pytest.mark.parametrize("make", [_symlink_then_file, _hardlink])
def test_links_to_outside_are_refused_and_nothing_is_written_there(tmp_path: Path, make: Callable) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "victim.txt").write_text("mine\n")
    run = tmp_path / "runs" / "r"
    with pytest.raises(ArchiveRefused, match="not a regular file"):
        unpack(_tar(make(outside)), run)
    assert sorted(p.name for p in outside.iterdir()) == ["victim.txt"]
    assert (outside / "victim.txt").read_text() == "mine\n" and not run.exists()


def test_a_compression_bomb_stops_at_the_bytes_read_not_the_header(tmp_path: Path) -> None:
    # Headers claiming little, a stream giving much: many members each under the per-file limit,
    # their sum over the total.
    def build(tar: tarfile.TarFile) -> None:
        for i in range(8):
            info = tarfile.TarInfo(f"./part{i}")
            info.size = 900 << 10
            tar.addfile(info, io.BufferedReader(_Zeros(info.size)))
    archive = _tar(build)
    assert len(archive) < 64 << 10
    with pytest.raises(ArchiveRefused, match="size"):
        unpack(archive, tmp_path / "r", SMALL)
    assert not (tmp_path / "r").exists()


def test_a_truncated_or_garbage_archive_is_refused(tmp_path: Path) -> None:
    good = pack(_real_run(tmp_path / "src"))
    flipped = bytearray(good)
    flipped[len(good) // 2] ^= 0xFF
    for bad in (good[: len(good) // 2], bytes(flipped), b"not a gzip", gzip.compress(b"\x00" * 100 + b"junk" * 200)):
        with pytest.raises(ArchiveRefused):
            unpack(bad, tmp_path / "r")
        assert not (tmp_path / "r").exists()


def _real_run(src: Path) -> Path:
    (src / "snapshots" / "step-10").mkdir(parents=True)
    (src / "hotcb.ledger.jsonl").write_text('{"seq": 1}\n')
    (src / "snapshots" / "step-10" / "model.pt").write_bytes(os.urandom(4096))
    return src


def test_the_packers_archive_unpacks_and_replaces_the_run_dir(tmp_path: Path) -> None:
    src = _real_run(tmp_path / "src")
    run = tmp_path / "out" / "r"
    run.mkdir(parents=True)
    (run / "stale.txt").write_text("from an earlier eval")
    unpack(pack(src), run)
    assert sorted(str(p.relative_to(run)) for p in run.rglob("*")) == [
        "hotcb.ledger.jsonl", "snapshots", "snapshots/step-10", "snapshots/step-10/model.pt"]
    assert (run / "snapshots/step-10/model.pt").read_bytes() == (src / "snapshots/step-10/model.pt").read_bytes()
    assert sorted(p.name for p in run.parent.iterdir()) == ["r"]
