"""Tokens per LLM autopilot wake on a 10-metric run.

Builds a real run (HotKernel in-process, 400 steps, 10 metrics), then runs one real wake of the
LLM autopilot against a local OpenAI-compatible server that replies like a typical wake (one
apply_op, then a short note), and counts the tokens of every request the agent sent (system
prompt + digest + tool schemas + conversation) and of the scripted completions.

Tokenizer: tiktoken (o200k_base) when installed, else chars/4 (said in the output).

    python benchmarks/bench_agent.py

With ``--real`` it runs ``--wakes`` real wakes of the autopilot against a real local server
(``.ci/llm-model`` starts one; default URL and model from ``$HOTCB_LLM_BASE_URL`` /
``$HOTCB_LLM_MODEL``) on the same 10-metric run, and prints seconds and tokens per wake as the
server counts them (prompt, of which cached, completion), and the first request's prompt tokens.

    eval "$(.ci/llm-model)" && python benchmarks/bench_agent.py --real --wakes 3
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hotcb.agent.llm.tool_loop import LLMAutopilot
from hotcb.evals.fake_llm import RecordedLLM, completion
from hotcb.mcp_server.tools import HotcbTools

from hotcb import HotKernel, mutable_state, optimizer_actuators


def tokenizer():
    try:
        import tiktoken

        enc = tiktoken.get_encoding("o200k_base")
        return "tiktoken o200k_base", lambda s: len(enc.encode(s))
    except Exception:
        return "chars/4 estimate", lambda s: math.ceil(len(s) / 4)


def make_run(run: str, steps: int = 400) -> HotKernel:
    """A live run (the kernel left open: the autopilot does not wake into a run that has ended)."""
    opt = torch.optim.SGD(torch.nn.Linear(2, 1).parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
    k = HotKernel(run, mutable_state=mutable_state(optimizer_actuators(opt)), max_steps=2000)
    for s in range(1, steps + 1):
        m = {"train_loss": 2 / (1 + s / 50), "val_loss": 2.2 / (1 + s / 60), "val_acc": 1 - 0.9 / (1 + s / 80),
             "train_acc": 1 - 0.9 / (1 + s / 70), "grad_norm": 1 + 0.1 * math.sin(s), "lr": 0.01,
             "loss_cls": 1 / (1 + s / 40), "loss_aux": 0.5 / (1 + s / 90), "throughput": 900 + s % 7, "gpu_mem": 3.2}
        k.apply(env={"step": s, "optimizer": opt, "metrics": m}, events=["train_step_end"])
    return k


def real(url: str, model: str, wakes: int, max_rounds: int, max_completion: int) -> None:
    with tempfile.TemporaryDirectory() as run:
        kernel = make_run(run)
        p = LLMAutopilot(HotcbTools(run, source="agent", actor=model), api_key=None, base_url=url, model=model,
                         timeout_s=600, max_rounds=max_rounds, max_completion_tokens=max_completion)
        first_prompt = None
        print(f"real server {url}, model {model}, {wakes} wakes, max rounds {max_rounds}, "
              f"max completion {max_completion} tokens")
        rows = []
        for i in range(wakes):
            before = p.usage()
            t0 = time.perf_counter()
            out = p.wake("cadence")
            dt = time.perf_counter() - t0
            u = p.usage()
            d = {k: u[k] - before[k] for k in ("calls", "prompt_tokens", "cached_tokens", "completion_tokens")}
            if first_prompt is None and d["calls"]:
                first_prompt = p.api.first_prompt_tokens
            rows.append((dt, d))
            print(f"wake {i + 1}: {dt:.1f} s, {d['calls']} requests, prompt {d['prompt_tokens']} "
                  f"(cached {d['cached_tokens']}), completion {d['completion_tokens']}, outcome {out['outcome']}, "
                  f"tool calls {out.get('tool_calls')}")
        n = max(len(rows), 1)
        print(f"mean per wake: {sum(r[0] for r in rows) / n:.1f} s, "
              f"{sum(r[1]['prompt_tokens'] for r in rows) / n:.0f} prompt tokens "
              f"({sum(r[1]['cached_tokens'] for r in rows) / n:.0f} cached), "
              f"{sum(r[1]['completion_tokens'] for r in rows) / n:.0f} completion tokens")
        print(f"first-request prompt (server tokenizer): {first_prompt} tokens (goal <= 2000)")
        print(f"stats: {json.dumps(p.stats)}")
        kernel.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--real", action="store_true", help="wake against a real OpenAI-compatible server")
    ap.add_argument("--url", default=os.environ.get("HOTCB_LLM_BASE_URL", "http://127.0.0.1:8439/v1"))
    ap.add_argument("--model", default=os.environ.get("HOTCB_LLM_MODEL", "qwen2.5-coder-1.5b-instruct"))
    ap.add_argument("--wakes", type=int, default=3)
    ap.add_argument("--max-rounds", type=int, default=2)
    ap.add_argument("--max-completion", type=int, default=160)
    args = ap.parse_args()
    if args.real:
        real(args.url, args.model, args.wakes, args.max_rounds, args.max_completion)
        return
    name, count = tokenizer()
    with tempfile.TemporaryDirectory() as run:
        kernel = make_run(run)
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
        kernel.close()
    print(f"tokenizer: {name}")
    print(f"digest (user message, 10 metrics): {count(digest)} tokens")
    for i, r in enumerate(per_req, 1):
        print(f"request {i}: prompt {sum(r.values())} tokens ({r})")
    print(f"wake: {len(per_req)} requests, prompt {prompt_total} tokens, completion ~{completion_tokens} tokens, "
          f"total {prompt_total + completion_tokens}")
    print(f"first-request prompt: {sum(per_req[0].values())} tokens (goal <= 2000)")


if __name__ == "__main__":
    main()
