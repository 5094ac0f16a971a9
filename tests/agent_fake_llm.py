"""A local OpenAI-compatible chat-completions server for the agent tests: the only stand-in, at the
HTTP edge. Each POST gets the next scripted reply: {"status": 429|500...} fails that request,
{"tool_calls": [{"name", "arguments" | "raw"}]} or {"content": ...} answers it. Past the script
it answers "No change"."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class FakeLLM:
    def __init__(self, script: list[dict[str, Any]]):
        self.script = list(script)
        self.requests: list[dict[str, Any]] = []
        owner = self

        class H(BaseHTTPRequestHandler):
            def log_message(self, *a: Any) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))) or b"{}")
                with threading.Lock():
                    owner.requests.append(body)
                    reply = owner.script.pop(0) if owner.script else {"content": "No change."}
                status = reply.get("status", 200)
                if status != 200:
                    data = json.dumps({"error": {"message": f"scripted {status}", "type": "test"}}).encode()
                else:
                    data = json.dumps(owner.completion(reply, len(owner.requests))).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @staticmethod
    def completion(reply: dict[str, Any], n: int) -> dict[str, Any]:
        calls = [{"id": f"call_{n}_{i}", "type": "function",
                  "function": {"name": c["name"], "arguments": c.get("raw", json.dumps(c.get("arguments", {})))}}
                 for i, c in enumerate(reply.get("tool_calls") or [])]
        message: dict[str, Any] = {"role": "assistant", "content": reply.get("content")}
        if calls:
            message["tool_calls"] = calls
        usage = {"prompt_tokens": 100, "completion_tokens": 20, **reply.get("usage", {})}
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        return {"id": f"chatcmpl-{n}", "object": "chat.completion", "created": 0, "model": "fake",
                "choices": [{"index": 0, "message": message, "finish_reason": "tool_calls" if calls else "stop"}],
                "usage": usage}

    def tools_called(self) -> list[str]:
        """The tool calls of the conversation as the last request replayed it."""
        msgs = self.requests[-1]["messages"] if self.requests else []
        return [c["function"]["name"] for m in msgs if m.get("role") == "assistant" for c in m.get("tool_calls") or []]

    def __enter__(self) -> FakeLLM:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()
