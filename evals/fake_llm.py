"""A local OpenAI-compatible chat-completions server that replays recorded replies.

For tests and offline demos of the ``ai`` policy: the real LLM autopilot (its real HTTP client)
talks to ``http://127.0.0.1:PORT/v1``; each ``POST .../chat/completions`` gets the next recorded
reply, in order. When the recording runs out, it answers with a plain "no change" message.
This is the only mock in the eval, and it sits at the HTTP edge.

Recording format (JSON): ``{"replies": [REPLY, ...]}`` where a REPLY is
``{"content": "text"}`` or ``{"tool_calls": [{"name": "apply_op", "arguments": {...}}]}``,
optionally with ``"usage": {"prompt_tokens": N, "completion_tokens": M}``. For tests of what a
client does with a bad API or a bad model: ``{"status": 429}`` fails that request with the
status (with ``"message"`` as its error text, and ``"echo_headers": true`` appending the request's
headers, as a careless server does), and a tool call's ``"raw": "..."`` sends its arguments string
as is (e.g. broken JSON).
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

DONE = {"content": "No change needed now."}


def load_replies(path: str | Path) -> list[dict[str, Any]]:
    doc = json.loads(Path(path).read_text())
    replies = doc.get("replies") if isinstance(doc, dict) else doc
    if not isinstance(replies, list):
        raise ValueError(f"{path}: expected {{'replies': [...]}}")
    return replies


def completion(reply: dict[str, Any], model: str, n: int) -> dict[str, Any]:
    """One recorded reply as an OpenAI chat.completion object."""
    message: dict[str, Any] = {"role": "assistant", "content": reply.get("content")}
    calls = reply.get("tool_calls") or []
    if calls:
        message["tool_calls"] = [
            {"id": f"call_{n}_{i}", "type": "function",
             "function": {"name": c["name"], "arguments": c.get("raw", json.dumps(c.get("arguments", {})))}}
            for i, c in enumerate(calls)
        ]
    usage = {"prompt_tokens": 100, "completion_tokens": 20, **(reply.get("usage") or {})}
    usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
    return {
        "id": f"chatcmpl-recorded-{n}", "object": "chat.completion", "created": int(time.time()), "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": "tool_calls" if calls else "stop"}],
        "usage": usage,
    }


class RecordedLLM:
    """``with RecordedLLM(replies) as llm: ... llm.base_url ...``"""

    def __init__(self, replies: list[dict[str, Any]], model: str = "recorded"):
        self.replies = list(replies)
        self.model = model
        self.requests: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
                if not self.path.rstrip("/").endswith("/chat/completions"):
                    self._send(404, {"error": {"message": f"no route {self.path}"}})
                    return
                with owner._lock:
                    owner.requests.append(body)
                    n = len(owner.requests)
                    reply = owner.replies.pop(0) if owner.replies else DONE
                status = int(reply.get("status", 200))
                if status != 200:
                    # "message": the error text (e.g. llama.cpp's parse failure); "echo_headers": a
                    # careless server that echoes the request headers (the API key) in its error.
                    msg = reply.get("message") or f"recorded {status}"
                    if reply.get("echo_headers"):
                        msg += " " + json.dumps(dict(self.headers.items()))
                    self._send(status, {"error": {"message": msg, "type": "recorded"}})
                    return
                self._send(200, completion(reply, body.get("model") or owner.model, n))

            def do_GET(self) -> None:
                self._send(200, {"object": "list", "data": [{"id": owner.model, "object": "model"}]})

            def _send(self, code: int, doc: dict[str, Any]) -> None:
                data = json.dumps(doc).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def tools_called(self) -> list[str]:
        """The tool calls of the conversation, as the last request replayed it."""
        msgs = self.requests[-1].get("messages", []) if self.requests else []
        return [c["function"]["name"] for m in msgs if m.get("role") == "assistant" for c in m.get("tool_calls") or []]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def __enter__(self) -> RecordedLLM:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()
