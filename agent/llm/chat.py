"""One chat completion for the LLM autopilot, and what its failures mean.

Two kinds of failure, kept apart:

- **Outage** (timeouts, connection errors, 429, 5xx that are not the model's output): retried with
  tenacity (the SDK's own retries are off); when it stays down the caller falls back to the rules
  until a probe succeeds.
- **Model error**: the API is up, the model's output is unusable. A server that cannot parse what
  the model wrote answers HTTP 500 with a body saying so (llama.cpp: "Failed to parse input at
  pos ..." for the model's tool-call text); that is not an outage and is not retried as one: the
  caller retries once with a corrective message.

Usage is counted from each response, cached prompt tokens apart. Every error text kept is
redacted (the API key, Bearer/Authorization values, URL credentials).
"""

from __future__ import annotations

import re
from typing import Any

from hotcb.agent.llm.budget import Budget
from hotcb.agent.llm.untrusted import redact
from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential

# What a server's error body says when it could not parse the model's own output.
_PARSE_FAILURE = re.compile(r"(fail(ed)?|could ?n[o']t|unable|cannot|error)\W+(\w+\W+){0,3}pars(e|ing)"
                            r"|pars(e|ing) (error|fail)|invalid tool call|tool call.{0,40}(malformed|invalid)", re.I)


class ModelOutputError(Exception):
    """The API answered; the model's output could not be used."""


def is_model_output_error(e: BaseException) -> bool:
    import openai

    if not isinstance(e, openai.APIStatusError) or e.status_code not in (400, 422, 500):
        return False
    body = e.body if isinstance(e.body, (str, dict)) else None
    return bool(_PARSE_FAILURE.search(f"{e.message} {body}"))


def is_transient(e: BaseException) -> bool:
    import openai

    if is_model_output_error(e):
        return False
    if isinstance(e, (openai.APITimeoutError, openai.APIConnectionError, openai.RateLimitError,
                      openai.InternalServerError)):
        return True
    return isinstance(e, openai.APIStatusError) and (e.status_code >= 500 or e.status_code in (408, 409, 429))


class ChatApi:
    """``ChatApi(model, api_key, base_url, budget).complete(messages, tools)``: a response, or None
    when the API cannot be had (``error`` says why); raises ModelOutputError for the model's fault."""

    # complexity: keyword-only client options (model, key, url, budget, timeouts, retries)
    def __init__(self, *, model: str, api_key: str | None, base_url: str | None, budget: Budget,  # noqa: PLR0913
                 timeout_s: float = 60.0, retries: int = 3, retry_wait_s: float = 1.0,
                 max_completion_tokens: int | None = None, client: Any = None):
        self.model = model
        self.base_url = base_url
        self.budget = budget
        self.timeout_s = timeout_s
        self.retries = retries
        self.retry_wait_s = retry_wait_s
        self.max_completion_tokens = max_completion_tokens
        self._client = client
        self._api_key = api_key or "none"  # ollama/vLLM/llama.cpp accept any key; the SDK insists on one
        self.error: str | None = None
        self.attempts = 0
        self.first_prompt_tokens: int | None = None  # the prompt of the first request answered (benchmarks)

    @property
    def secrets(self) -> tuple[str, ...]:
        return (self._api_key,) if self._api_key != "none" else ()

    def scrub(self, text: str) -> str:
        return redact(text, self.secrets)

    @property
    def client(self) -> Any:
        if self._client is None:
            import openai

            self._client = openai.OpenAI(api_key=self._api_key, base_url=self.base_url, max_retries=0,
                                         timeout=self.timeout_s)
        return self._client

    def _describe(self, e: BaseException) -> str:
        return self.scrub(f"{type(e).__name__}: {e}")[:300]

    def complete(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> Any:
        self.attempts, self.error = 0, None
        kw: dict[str, Any] = {"model": self.model, "messages": messages, "tools": tools, "tool_choice": "auto"}
        if self.max_completion_tokens:
            kw["max_tokens"] = self.max_completion_tokens

        def before(_: Any) -> None:
            self.attempts += 1

        try:
            for attempt in Retrying(stop=stop_after_attempt(self.retries + 1), reraise=True,
                                    wait=wait_exponential(multiplier=self.retry_wait_s, max=30 * self.retry_wait_s),
                                    retry=retry_if_exception(is_transient), before=before):
                with attempt:
                    try:
                        resp = self.client.chat.completions.create(**kw)
                    except Exception as e:
                        self.error = self._describe(e)
                        raise
        except Exception as e:
            self.error = self._describe(e)
            if is_model_output_error(e):
                raise ModelOutputError(self.error) from None
            return None
        u = getattr(resp, "usage", None)
        details = getattr(u, "prompt_tokens_details", None)
        cached = getattr(details, "cached_tokens", None) or 0
        if not cached:  # llama.cpp also reports its prompt-cache hits in "timings"
            timings = getattr(resp, "timings", None) or (getattr(resp, "model_extra", None) or {}).get("timings")
            if isinstance(timings, dict):
                cached = int(timings.get("cache_n") or 0)
        prompt = getattr(u, "prompt_tokens", 0) or 0
        if self.first_prompt_tokens is None:
            self.first_prompt_tokens = prompt
        self.budget.add(self.model, prompt, getattr(u, "completion_tokens", 0) or 0, cached)
        return resp
