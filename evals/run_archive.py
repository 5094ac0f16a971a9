"""A run directory as a gzipped tar, and back, by rules of our own.

The archive comes back from a worker that may be another machine: it is hostile input. Unpacking
does not trust a library's extraction filter (on some Python versions the ``data`` filter reasons
about link targets lexically and a deep symlink chain escaped it). Instead:

- only regular files and directories are accepted; a symlink, hardlink, device or fifo refuses
  the archive;
- each name is checked component by component (no absolute path, ``..``, empty or odd
  component, bounded length and depth);
- every directory and file is created relative to its parent's descriptor, never following a link
  (``O_NOFOLLOW``), files with ``O_EXCL`` (a name given twice refuses the archive);
- the decompressed stream, each file and the member count are bounded, counting the bytes
  actually read;
- everything is written into a private staging directory that replaces ``run_dir`` only once the
  whole archive passed: a refused archive leaves nothing behind and raises ``ArchiveRefused``
  naming the member and the reason.
"""

from __future__ import annotations

import gzip
import io
import os
import shutil
import tarfile
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path

_CHUNK = 1 << 20
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)


@dataclass(frozen=True)
class UnpackLimits:
    """Bounds on what one run archive may unpack to (a run directory holds its JSONL files and a
    few snapshots: these leave ample room for that and none for a bomb)."""

    max_members: int = 20_000
    max_file_bytes: int = 4 << 30
    max_total_bytes: int = 16 << 30
    max_name_chars: int = 1024
    max_component_bytes: int = 255
    max_depth: int = 32


class ArchiveRefused(ValueError):
    """A run archive refused whole; ``member`` is the name at fault ('' for the archive itself)."""

    def __init__(self, member: str, reason: str):
        super().__init__(f"archive refused at {member!r}: {reason}" if member else f"archive refused: {reason}")
        self.member = member
        self.reason = reason


class _Capped(io.RawIOBase):
    """The decompressed stream, refusing to yield more than ``limit`` bytes (a compression bomb
    stops here whatever the tar headers claim)."""

    def __init__(self, raw: io.BufferedIOBase, limit: int):
        self._raw = raw
        self._left = limit

    def readable(self) -> bool:
        return True

    def readinto(self, b: bytearray | memoryview) -> int:  # type: ignore[override]
        data = self._raw.read(len(b))
        self._left -= len(data)
        if self._left < 0:
            raise ArchiveRefused("", "decompressed size over the limit")
        b[: len(data)] = data
        return len(data)


def pack(run_dir: Path) -> bytes:
    """``run_dir`` as a gzipped tar whose member names are relative (``./...``)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        tar.add(run_dir, arcname=".")
    return buf.getvalue()


def components(name: str, limits: UnpackLimits) -> list[str]:
    """The path components of a member name, or ``ArchiveRefused``; ``.`` is the archive root."""
    if not name or len(name) > limits.max_name_chars:
        raise ArchiveRefused(name[:200], "empty or over-long name")
    if name.startswith("/"):
        raise ArchiveRefused(name, "absolute name")
    parts = name.split("/")
    if parts[-1] == "":
        parts.pop()  # a directory written as "dir/"
    out: list[str] = []
    for i, part in enumerate(parts):
        if part == "." and not out and (i == 0 or parts[i - 1] == "."):
            continue  # the "./" prefix of a relative archive
        if part in ("", ".", ".."):
            raise ArchiveRefused(name, f"component {part!r} not allowed")
        if any(ord(c) < 32 or c == "\x7f" or c == "\\" for c in part):
            raise ArchiveRefused(name, "control character or backslash in a name")
        if len(part.encode("utf-8", "surrogateescape")) > limits.max_component_bytes:
            raise ArchiveRefused(name, "component over the length limit")
        out.append(part)
    if len(out) > limits.max_depth:
        raise ArchiveRefused(name, "nested deeper than the limit")
    return out


class _Writer:
    """Creates members under one root descriptor, each relative to its parent's descriptor."""

    def __init__(self, root: Path, limits: UnpackLimits):
        self.root_fd = os.open(root, _DIR_FLAGS)
        self.limits = limits
        self.total = 0

    def close(self) -> None:
        os.close(self.root_fd)

    def _parent(self, parts: list[str], name: str) -> int:
        """A descriptor of the directory holding ``parts[-1]``, creating the directories on the
        way (never following a link: each is opened with ``O_NOFOLLOW`` under its parent)."""
        fd = os.dup(self.root_fd)
        try:
            for part in parts[:-1]:
                fd = self._enter(fd, part, name)
            return fd
        except BaseException:
            os.close(fd)
            raise

    @staticmethod
    def _enter(fd: int, part: str, name: str) -> int:
        try:
            os.mkdir(part, 0o755, dir_fd=fd)
        except FileExistsError:
            pass
        try:
            child = os.open(part, _DIR_FLAGS, dir_fd=fd)
        except OSError as e:
            raise ArchiveRefused(name, f"cannot enter directory {part!r}: {e.strerror}") from e
        finally:
            os.close(fd)
        return child

    def mkdir(self, parts: list[str], name: str) -> None:
        if not parts:
            return
        os.close(self._parent(parts + [""], name))

    def write(self, parts: list[str], name: str, src: io.BufferedReader) -> None:
        if not parts:
            raise ArchiveRefused(name, "a file named as the archive root")
        parent = self._parent(parts, name)
        try:
            fd = os.open(parts[-1], _FILE_FLAGS, 0o644, dir_fd=parent)
        except FileExistsError as e:
            raise ArchiveRefused(name, "name given twice") from e
        finally:
            os.close(parent)
        with os.fdopen(fd, "wb") as out:
            size = 0
            while chunk := src.read(_CHUNK):
                size += len(chunk)
                self.total += len(chunk)
                if size > self.limits.max_file_bytes:
                    raise ArchiveRefused(name, "file over the size limit")
                if self.total > self.limits.max_total_bytes:
                    raise ArchiveRefused(name, "archive over the total size limit")
                out.write(chunk)


def _extract(archive: bytes | Path, stage: Path, limits: UnpackLimits) -> None:
    raw = gzip.GzipFile(fileobj=io.BytesIO(archive)) if isinstance(archive, bytes) else gzip.GzipFile(archive)
    # Headers and padding ride on top of the data: allow them a bounded margin.
    capped = io.BufferedReader(_Capped(raw, limits.max_total_bytes + 1024 * (limits.max_members + 2)))
    writer = _Writer(stage, limits)
    try:
        with tarfile.open(fileobj=capped, mode="r|") as tar:
            for count, member in enumerate(tar, start=1):
                if count > limits.max_members:
                    raise ArchiveRefused(member.name, "more members than the limit")
                parts = components(member.name, limits)
                if member.isdir():
                    writer.mkdir(parts, member.name)
                elif member.isreg():
                    if member.size > limits.max_file_bytes:
                        raise ArchiveRefused(member.name, "file over the size limit")
                    src = tar.extractfile(member)
                    assert src is not None  # a regular member always has data
                    writer.write(parts, member.name, src)
                else:
                    raise ArchiveRefused(member.name, "not a regular file or directory (link, device or fifo)")
    except (tarfile.TarError, EOFError, zlib.error, OSError) as e:
        raise ArchiveRefused("", f"cannot unpack: {e}") from e
    finally:
        writer.close()


def unpack(archive: bytes | Path, run_dir: Path, limits: UnpackLimits | None = None) -> None:
    """Unpack ``archive`` (its bytes, or a ``.tar.gz`` file) to ``run_dir`` (replacing it) or
    raise ``ArchiveRefused`` and leave ``run_dir`` as it was."""
    limits = limits or UnpackLimits()
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{run_dir.name}.unpack-", dir=run_dir.parent))
    try:
        stage.chmod(0o755)  # mkdtemp's 0o700 would become the run directory's mode
        _extract(archive, stage, limits)
        if run_dir.exists():
            shutil.rmtree(run_dir)
        os.rename(stage, run_dir)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
