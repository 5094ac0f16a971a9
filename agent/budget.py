"""The LLM autopilot's budget: tokens and money from each response's ``usage``, priced per model.

Prices are USD per million tokens (input, output). A model not in the table (ollama, vLLM,
anything local or new) costs 0 and is marked ``priced: false``, so a token cap still binds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# (input, output) USD per 1M tokens. Longest matching prefix wins ("gpt-4o-mini" before "gpt-4o").
PRICES: dict[str, tuple[float, float]] = {
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4o": (2.50, 10.00),
    "gpt-4.1-nano": (0.10, 0.40),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4.1": (2.00, 8.00),
    "o4-mini": (1.10, 4.40),
    "o3-mini": (1.10, 4.40),
    "gpt-5-mini": (0.25, 2.00),
    "gpt-5": (1.25, 10.00),
    "claude-3-5-haiku": (0.80, 4.00),
    "claude-sonnet": (3.00, 15.00),
}


def price(model: str, table: dict[str, tuple[float, float]] | None = None) -> tuple[float, float] | None:
    table = PRICES if table is None else table
    name = model.lower().rsplit("/", 1)[-1]  # "openai/gpt-4o" -> "gpt-4o"
    hits = [k for k in table if name.startswith(k)]
    return table[max(hits, key=len)] if hits else None


@dataclass
class Budget:
    max_tokens: int | None = None
    max_cost_usd: float | None = None
    prices: dict[str, tuple[float, float]] = field(default_factory=lambda: dict(PRICES))
    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    priced: bool = True

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def add(self, model: str, prompt_tokens: int, completion_tokens: int) -> None:
        self.calls += 1
        self.prompt_tokens += max(0, int(prompt_tokens or 0))
        self.completion_tokens += max(0, int(completion_tokens or 0))
        p = price(model, self.prices)
        if p is None:
            self.priced = False
        else:
            self.cost_usd += (prompt_tokens * p[0] + completion_tokens * p[1]) / 1e6

    def exhausted(self) -> str | None:
        """Why no further call may be made, or None."""
        if self.max_tokens is not None and self.tokens >= self.max_tokens:
            return f"token budget spent ({self.tokens} of {self.max_tokens})"
        if self.max_cost_usd is not None and self.cost_usd >= self.max_cost_usd:
            return f"cost budget spent (${self.cost_usd:.4f} of ${self.max_cost_usd:.4f})"
        return None

    def usage(self) -> dict[str, Any]:
        return {"calls": self.calls, "prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens,
                "tokens": self.tokens, "cost_usd": round(self.cost_usd, 6), "priced": self.priced}

    def limits(self) -> dict[str, Any]:
        return {"max_tokens": self.max_tokens, "max_cost_usd": self.max_cost_usd}

    def restore(self, usage: dict[str, Any] | None) -> None:
        """Continue counting from a saved state (a restarted autopilot keeps its spend)."""
        u = usage or {}
        self.calls = int(u.get("calls", 0))
        self.prompt_tokens = int(u.get("prompt_tokens", 0))
        self.completion_tokens = int(u.get("completion_tokens", 0))
        self.cost_usd = float(u.get("cost_usd", 0.0))
        self.priced = bool(u.get("priced", True))
