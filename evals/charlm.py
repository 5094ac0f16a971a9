"""A character-level language model on text that ships with Python: the source of a fixed list
of standard-library modules, read from this interpreter's installation (no download). The same
interpreter gives the same corpus; another Python version gives a slightly different one.

Tokens: printable ASCII and newline (tabs as a space), every other character one shared id.
The model: a 2-layer pre-norm causal transformer (width 48, 4 heads, context 64).
"""

from __future__ import annotations

import sysconfig
from pathlib import Path

import torch
from torch import nn

# Plain-prose-and-code modules present in every CPython 3.10+ installation.
MODULES = ("argparse.py", "textwrap.py", "string.py", "functools.py", "dataclasses.py", "enum.py", "difflib.py",
           "inspect.py", "typing.py", "pathlib.py", "shutil.py", "tempfile.py", "calendar.py", "fractions.py",
           "statistics.py", "random.py", "heapq.py", "bisect.py", "contextlib.py", "pprint.py")
CHARS = "\n" + "".join(chr(c) for c in range(32, 127))
VOCAB = len(CHARS) + 1  # the last id: any other character
_IDS = {c: i for i, c in enumerate(CHARS)}


class TextMissing(FileNotFoundError):
    """This interpreter ships no standard-library sources (a stripped install)."""


def corpus(max_chars: int = 300_000) -> str:
    """The first ``max_chars`` of the listed modules' sources, in list order."""
    root = Path(sysconfig.get_paths()["stdlib"])
    parts, total = [], 0
    for name in MODULES:
        path = root / name
        if not path.is_file():
            continue
        text = path.read_text(encoding="utf-8", errors="replace").replace("\t", " ")
        parts.append(text)
        total += len(text)
        if total >= max_chars:
            break
    text = "".join(parts)[:max_chars]
    if len(text) < 50_000:
        raise TextMissing(f"charlm: the standard library's sources under {root} hold {len(text)} characters of "
                          f"{', '.join(MODULES)}; the task needs >= 50,000 (an install without .py sources?)")
    return text


def encode(text: str) -> torch.Tensor:
    unk = VOCAB - 1
    return torch.tensor([_IDS.get(c, unk) for c in text], dtype=torch.int64)


def windows(ids: torch.Tensor, ctx: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Non-overlapping windows: inputs N x ctx and next-character targets N x ctx."""
    n = (len(ids) - 1) // ctx
    x = ids[:n * ctx].view(n, ctx)
    y = ids[1:n * ctx + 1].view(n, ctx)
    return x, y


def unigram_loss(y_train: torch.Tensor, y_test: torch.Tensor) -> float:
    """Cross-entropy (nats/char) of the test characters under the training characters' frequencies:
    what a model that learned no context scores."""
    counts = torch.bincount(y_train.flatten(), minlength=VOCAB).double() + 1.0
    logp = (counts / counts.sum()).log()
    return float(-logp[y_test.flatten()].mean())


class CharLM(nn.Module):
    def __init__(self, vocab: int = VOCAB, d: int = 48, heads: int = 4, layers: int = 2, ctx: int = 64):
        super().__init__()
        self.tok = nn.Embedding(vocab, d)
        self.pos = nn.Parameter(torch.randn(ctx, d) * 0.02)
        layer = nn.TransformerEncoderLayer(d, heads, 4 * d, dropout=0.0, batch_first=True, norm_first=True)
        self.blocks = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d)
        self.head = nn.Linear(d, vocab)
        self.register_buffer("mask", nn.Transformer.generate_square_subsequent_mask(ctx), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = x.shape[1]
        h = self.tok(x) + self.pos[:t]
        h = self.blocks(h, mask=self.mask[:t, :t], is_causal=True)
        return self.head(self.norm(h))
