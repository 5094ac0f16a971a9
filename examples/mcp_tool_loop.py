"""Drive a run from a local model through a standard client: the ``mcp`` SDK's stdio client over
``hotcb mcp RUN --tools core`` and a plain OpenAI-compatible tool loop (llama.cpp, ollama, vLLM).

    python examples/mcp_tool_loop.py RUN_DIR --base-url http://127.0.0.1:8439/v1 \\
        --model qwen2.5-coder-1.5b-instruct --goal "val_loss is flat: decide whether to cut lr"

Each round sends the conversation with the server's tools (names, descriptions, input schemas:
the ``core`` profile fits a small context) and runs the calls the model makes: native
``tool_calls`` when the model makes them, else the JSON it writes as text (small models often
answer with a fenced ``{"name": ..., "arguments": {...}}``; hotcb's own parser reads it). Every
call names the model in its ``_meta``, so the ledger's actor is ``tool-loop/1 model=MODEL``.
The server judges every op exactly as for any other agent: a refusal comes back as the tool's
error text, which the model reads in the next round. Prints one JSON line per call.
"""

from __future__ import annotations

import argparse
import functools
import json
import shutil
import sys
from pathlib import Path
from typing import Any

import anyio
from hotcb.agent.llm.replies import TextCallError, parse_reply
from mcp import Client, StdioServerParameters
from mcp_types import Implementation

SYSTEM = ("You steer a live PyTorch training run through the tools given. Read before you act; change at most "
          "one knob, with a reason in your own words. To call a tool, use the tool interface or reply with only "
          '{"name": "<tool>", "arguments": {...}}.')


def _specs(tools: list[Any]) -> list[dict[str, Any]]:
    return [{"type": "function", "function": {"name": t.name, "description": t.description,
                                              "parameters": t.input_schema}} for t in tools]


def _text(result: Any) -> str:
    return "\n".join(getattr(c, "text", "") for c in result.content)[:4000]


async def loop(run_dir: str, base_url: str, model: str, goal: str, rounds: int, timeout_s: float) -> int:
    import openai

    llm = openai.OpenAI(base_url=base_url, api_key="none", timeout=timeout_s, max_retries=0)
    hotcb = shutil.which("hotcb") or str(Path(sys.executable).with_name("hotcb"))  # a venv not on PATH
    server = StdioServerParameters(command=hotcb, args=["mcp", run_dir, "--tools", "core"])
    async with Client(server, client_info=Implementation(name="tool-loop", version="1"),
                      read_timeout_seconds=120) as c:
        tools = (await c.list_tools()).tools
        known = {t.name for t in tools}
        messages: list[dict[str, Any]] = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": goal}]
        for _ in range(rounds):
            ask = functools.partial(llm.chat.completions.create, model=model, messages=list(messages),
                                    tools=_specs(tools), tool_choice="auto", temperature=0, max_tokens=200)
            reply = await anyio.to_thread.run_sync(ask)
            msg = reply.choices[0].message
            try:
                calls, text = parse_reply(msg, known)
            except TextCallError as e:  # a call it could not finish: say so, let it try again
                messages += [{"role": "assistant", "content": msg.content or ""},
                             {"role": "user", "content": f"That call could not be read ({e}); write it again."}]
                continue
            if not calls:
                print(json.dumps({"note": text}), flush=True)
                return 0
            messages.append({"role": "assistant", "content": msg.content or "", "tool_calls": [
                {"id": k.id, "type": "function", "function": {"name": k.name, "arguments": k.arguments}}
                for k in calls]})
            for k in calls:
                try:
                    args = json.loads(k.arguments or "{}")
                except ValueError:
                    args = None
                if not isinstance(args, dict):
                    out, error = "arguments must be a JSON object", True
                else:
                    res = await c.call_tool(k.name, args, meta={"model": model})
                    out, error = _text(res), bool(res.is_error)
                print(json.dumps({"tool": k.name, "via": k.via, "arguments": args, "error": error,
                                  "result": out[:300]}), flush=True)
                messages.append({"role": "tool", "tool_call_id": k.id, "content": out})
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run_dir")
    ap.add_argument("--base-url", required=True, help="an OpenAI-compatible endpoint, e.g. llama.cpp's /v1")
    ap.add_argument("--model", required=True)
    ap.add_argument("--goal", default="Check the run's trends (read_trends), then decide whether one knob should "
                                       "change; if so, change it with apply_op and a reason.")
    ap.add_argument("--rounds", type=int, default=4, help="model requests at most (default 4)")
    ap.add_argument("--timeout", type=float, default=900.0, help="seconds per model request (local CPUs are slow)")
    a = ap.parse_args()
    return anyio.run(loop, a.run_dir, a.base_url, a.model, a.goal, a.rounds, a.timeout)


if __name__ == "__main__":
    sys.exit(main())
