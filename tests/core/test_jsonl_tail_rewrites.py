"""``JsonlTail`` against a file edited every way a person or a tool edits one: appends (whole and
torn lines), in-place rewrites at the same size, truncations, rewrites that keep the first line,
replacements. Whatever happens, the lines read since the reader's last reset are exactly the
file's complete lines, in order: nothing read twice without a reset, nothing skipped."""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import pytest

from hotcb.jsonl import JsonlTail


def _line(rng: random.Random, n: int) -> str:
    return json.dumps({"cmd_id": f"c{n:05d}", "pad": "x" * rng.randrange(0, 40)}) + "\n"


def _complete_lines(path: Path) -> list[str]:
    data = path.read_bytes()
    return [ln for ln in data[: data.rfind(b"\n") + 1].decode().split("\n") if ln.strip()]


def _bump_mtime(path: Path, by_ns: int) -> None:
    st = os.stat(path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + by_ns))  # a new mtime, whatever the clock's tick


@pytest.mark.parametrize("seed", range(6))
def test_lines_read_since_the_last_reset_are_the_files_lines(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    path = tmp_path / "f.jsonl"
    path.write_text("")
    tail = JsonlTail(path, max_bytes_per_read=4096, max_line_bytes=1024)
    seen: list[str] = []
    resets = 0
    n = 0
    for _ in range(300):
        text = path.read_text()
        edit = rng.random()
        if edit < 0.55:  # appends, sometimes with a torn line finished later
            chunk = "".join(_line(rng, n + i) for i in range(rng.randrange(1, 4)))
            n += 3
            if rng.random() < 0.2:
                cut = rng.randrange(1, len(chunk))
                with open(path, "a") as f:
                    f.write(chunk[:cut])
                _check(tail, path, seen, resets)
                chunk = chunk[cut:]
            with open(path, "a") as f:
                f.write(chunk)
        elif edit < 0.7 and text:  # an editor's save: a digit of the first or last line changed, in place
            last = text.rstrip("\n").rfind("\n") + 1
            i = rng.choice([rng.randrange(0, min(len(text), 40)), rng.randrange(last, len(text))])
            if text[i].isdigit():
                text = text[:i] + str((int(text[i]) + 1) % 10) + text[i + 1:]
                with open(path, "r+") as f:
                    f.write(text)
                _bump_mtime(path, 1_000_000)
        elif edit < 0.8 and text:  # truncated and rewritten, its first line kept
            first = text.split("\n")[0] + "\n"
            rest = "".join(_line(rng, n + i) for i in range(rng.randrange(1, 6)))
            n += 6
            with open(path, "r+") as f:
                f.truncate(0)
                f.write(first + rest)
            _bump_mtime(path, 1_000_000)
        elif edit < 0.9:  # replaced by a new file (a new inode)
            new = tmp_path / "new.jsonl"
            new.write_text("".join(_line(rng, n + i) for i in range(rng.randrange(0, 4))))
            n += 4
            os.replace(new, path)
        else:  # touched only
            _bump_mtime(path, 1_000_000)
        resets = _check(tail, path, seen, resets)


def _check(tail: JsonlTail, path: Path, seen: list[str], resets: int) -> int:
    while True:  # read_all_new's loop, with the reset looked at after each read
        lines = tail.read_new()
        if tail.reset_count != resets:
            resets = tail.reset_count
            seen.clear()  # the caller re-reads from the start (and skips what it decided, by id)
        seen.extend(ln.raw for ln in lines)
        if tail.size_seen != -1:
            break
    assert seen == _complete_lines(path)
    return resets
