"""The LLM autopilot's budget: tokens and money from each response's ``usage``, priced per model.

Prices are USD per million tokens (input, output). A model not in the table (ollama, vLLM,
anything local or new) costs 0 and is marked ``priced: false``, so a token cap still binds.

Cached prompt tokens (``usage.prompt_tokens_details.cached_tokens``: OpenAI's prompt cache,
llama.cpp's prompt cache) are counted apart and priced at the cached rate (a quarter of the
input price unless the table says otherwise). The token cap counts fresh tokens: a local server
that re-reads a 2k-token cached prefix each call does not spend the cap on it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# (input, output[, cached input]) USD per 1M tokens. Longest matching prefix wins
# ("gpt-4o-mini" before "gpt-4o").
PRICES: dict[str, tuple[float, ...]] = {
    "gpt-4o-mini": (0.15, 0.60, 0.075),
    "gpt-4o": (2.50, 10.00, 1.25),
    "gpt-4.1-nano": (0.10, 0.40, 0.025),
    "gpt-4.1-mini": (0.40, 1.60, 0.10),
    "gpt-4.1": (2.00, 8.00, 0.50),
    "o4-mini": (1.10, 4.40, 0.275),
    "o3-mini": (1.10, 4.40, 0.55),
    "gpt-5-mini": (0.25, 2.00, 0.025),
    "gpt-5": (1.25, 10.00, 0.125),
    "claude-3-5-haiku": (0.80, 4.00, 0.08),
    "claude-sonnet": (3.00, 15.00, 0.30),
}


CACHED_SHARE = 0.25  # cached input price as a share of the input price, where the table gives none


def price(model: str, table: dict[str, tuple[float, ...]] | None = None) -> tuple[float, ...] | None:
    table = PRICES if table is None else table
    name = model.lower().rsplit("/", 1)[-1]  # "openai/gpt-4o" -> "gpt-4o"
    hits = [k for k in table if name.startswith(k)]
    return table[max(hits, key=len)] if hits else None


@dataclass
class Budget:
    max_tokens: int | None = None
    max_cost_usd: float | None = None
    prices: dict[str, tuple[float, ...]] = field(default_factory=lambda: dict(PRICES))
    calls: int = 0
    prompt_tokens: int = 0         # all prompt tokens, cached included
    cached_tokens: int = 0         # the cached part of prompt_tokens
    completion_tokens: int = 0
    cost_usd: float = 0.0
    priced: bool = True

    @property
    def tokens(self) -> int:
        """Fresh tokens: prompt tokens not served from a cache, plus completion tokens."""
        return self.prompt_tokens - self.cached_tokens + self.completion_tokens

    def add(self, model: str, prompt_tokens: int, completion_tokens: int, cached_tokens: int = 0) -> None:
        self.calls += 1
        prompt = max(0, int(prompt_tokens or 0))
        cached = min(prompt, max(0, int(cached_tokens or 0)))
        completion = max(0, int(completion_tokens or 0))
        self.prompt_tokens += prompt
        self.cached_tokens += cached
        self.completion_tokens += completion
        p = price(model, self.prices)
        if p is None:
            self.priced = False
        else:
            cached_rate = p[2] if len(p) > 2 else p[0] * CACHED_SHARE
            self.cost_usd += ((prompt - cached) * p[0] + cached * cached_rate + completion * p[1]) / 1e6

    def exhausted(self) -> str | None:
        """Why no further call may be made, or None."""
        if self.max_tokens is not None and self.tokens >= self.max_tokens:
            return f"token budget spent ({self.tokens} of {self.max_tokens})"
        if self.max_cost_usd is not None and self.cost_usd >= self.max_cost_usd:
            return f"cost budget spent (${self.cost_usd:.4f} of ${self.max_cost_usd:.4f})"
        return None

    def usage(self) -> dict[str, Any]:
        return {"calls": self.calls, "prompt_tokens": self.prompt_tokens, "cached_tokens": self.cached_tokens,
                "completion_tokens": self.completion_tokens, "tokens": self.tokens, "cost_usd": round(self.cost_usd, 6), "priced": self.priced}

    def limits(self) -> dict[str, Any]:
        return {"max_tokens": self.max_tokens, "max_cost_usd": self.max_cost_usd}

    def restore(self, usage: dict[str, Any] | None) -> None:
        """Continue counting from a saved state (a restarted autopilot keeps its spend)."""
        u = usage or {}
        self.calls = int(u.get("calls", 0))
        self.prompt_tokens = int(u.get("prompt_tokens", 0))
        self.cached_tokens = int(u.get("cached_tokens", 0))
        self.completion_tokens = int(u.get("completion_tokens", 0))
        self.cost_usd = float(u.get("cost_usd", 0.0))
        self.priced = bool(u.get("priced", True))
