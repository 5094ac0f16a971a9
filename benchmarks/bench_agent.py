"""Tokens per LLM autopilot wake on a 10-metric run.

Builds a real run (HotKernel in-process, 400 steps, 10 metrics), then runs one real wake of the
LLM autopilot against a local OpenAI-compatible server that replies like a typical wake (one
apply_op, then a short note), and counts the tokens of every request the agent sent (system
prompt + digest + tool schemas + conversation) and of the scripted completions.

Tokenizer: tiktoken (o200k_base) when installed, else chars/4 (said in the output).

    python benchmarks/bench_agent.py
"""

from __future__ import annotations

import json
import math
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hotcb.agent.llm import LLMAutopilot  # noqa: E402
from hotcb.evals.fake_llm import RecordedLLM, completion  # noqa: E402
from hotcb.mcp_server.tools import HotcbTools  # noqa: E402

from hotcb import HotKernel, mutable_state, optimizer_actuators  # noqa: E402


def tokenizer():
    try:
        import tiktoken

        enc = tiktoken.get_encoding("o200k_base")
        return "tiktoken o200k_base", lambda s: len(enc.encode(s))
    except Exception:  # noqa: BLE001 - not installed / no offline encoding file
        return "chars/4 estimate", lambda s: math.ceil(len(s) / 4)


def make_run(run: str, steps: int = 400) -> None:
    opt = torch.optim.SGD(torch.nn.Linear(2, 1).parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
    k = HotKernel(run, mutable_state=mutable_state(optimizer_actuators(opt)), max_steps=2000)
    for s in range(1, steps + 1):
        m = {"train_loss": 2 / (1 + s / 50), "val_loss": 2.2 / (1 + s / 60), "val_acc": 1 - 0.9 / (1 + s / 80),
             "train_acc": 1 - 0.9 / (1 + s / 70), "grad_norm": 1 + 0.1 * math.sin(s), "lr": 0.01,
             "loss_cls": 1 / (1 + s / 40), "loss_aux": 0.5 / (1 + s / 90), "throughput": 900 + s % 7, "gpu_mem": 3.2}
        k.apply(env={"step": s, "optimizer": opt, "metrics": m}, events=["train_step_end"])
    k.close()


def main() -> None:
    name, count = tokenizer()
    with tempfile.TemporaryDirectory() as run:
        make_run(run)
        script = [{"tool_calls": [{"name": "apply_op", "arguments": {
                       "module": "opt", "op": "set_params", "params": {"lr": 0.007},
                       "reason": "val_loss improving slowly; gentle lr cut"}}]},
                  {"content": "Cut lr to 0.007 as val_loss slowed; check its slope next wake."}]
        with RecordedLLM(script) as llm:
            p = LLMAutopilot(HotcbTools(run, source="agent", actor="bench"), api_key="k", base_url=llm.base_url,
                             model="bench", retry_wait_s=0.01)
            p.wake("cadence")
        per_req = []
        for body in llm.requests:
            per_req.append({
                "system+digest+conversation": count(json.dumps(body["messages"])),
                "tool schemas": count(json.dumps(body["tools"])),
            })
        digest = llm.requests[0]["messages"][1]["content"]
        completion_tokens = sum(count(json.dumps(completion(r, "bench", 0)["choices"][0]["message"])) for r in script)
        prompt_total = sum(sum(r.values()) for r in per_req)
    print(f"tokenizer: {name}")
    print(f"digest (user message, 10 metrics): {count(digest)} tokens")
    for i, r in enumerate(per_req, 1):
        print(f"request {i}: prompt {sum(r.values())} tokens ({r})")
    print(f"wake: {len(per_req)} requests, prompt {prompt_total} tokens, completion ~{completion_tokens} tokens, "
          f"total {prompt_total + completion_tokens}")
    print(f"first-request prompt: {sum(per_req[0].values())} tokens (goal <= 2000)")


if __name__ == "__main__":
    main()
