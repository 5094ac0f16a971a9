"""One eval run: train a task for a fixed number of steps with a HotKernel, and let a policy
act on it through the tool surface at a fixed step cadence.

Reproducibility: the policy is driven from this loop (every ``controller_every`` steps), not on
wall-clock time. While the policy thinks, the loop holds the step and keeps the kernel at its
safe point (``kernel.apply`` at the same step), so an ``apply_op`` that waits for its ledger
decision gets it, and every op lands at the step at which it was decided, however long an LLM
takes. That time is measured and excluded from the training-compute budget.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from hotcb import GuardConfig, HotKernel, mutable_state, optimizer_actuators
from hotcb.jsonl import read_all
from hotcb.rescue import rescue_of
from hotcb.rundir import RunDir

from .policies import make_policy
from .policy_base import Policy, PolicyContext
from .tasks import Split, Task, get_task, start_multiplier

KNOB_MODULES_EXCLUDED = ("core", "cb", "tune")
# The heartbeat of hotcb.status.json between policy ticks. Rewriting it at every step was 38% of a
# digits run; the policies read it only at their ticks, and each tick publishes it first.
STATUS_INTERVAL_S = 30.0


@dataclass
class RunSpec:
    task: str
    policy: str
    seed: int
    run_dir: str
    start_config: str = "default"
    lr_scale: float | None = None  # the start lr as a multiple of the task's (overrides start_config)
    budget_epochs: int | None = None
    device: str | None = None
    threads: int | None = None
    task_options: dict[str, Any] = field(default_factory=dict)
    policy_options: dict[str, Any] = field(default_factory=dict)


def pick_device(requested: str | None = None) -> torch.device:
    if requested:
        return torch.device(requested)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def task_loss(task: Task, out: torch.Tensor, y: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """The task's training loss: cross-entropy (per position for ``lm``) or MSE (``regress``)."""
    if task.kind == "regress":
        return nn.functional.mse_loss(out.float().squeeze(-1), y, reduction=reduction)
    if task.kind == "lm":
        return nn.functional.cross_entropy(out.float().flatten(0, 1), y.flatten(), reduction=reduction)
    return nn.functional.cross_entropy(out.float(), y, reduction=reduction,
                                       label_smoothing=task.label_smoothing if reduction == "mean" else 0.0)


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, device: torch.device,
             batch: int = 1024, task: Task | None = None) -> tuple[float, float | None]:
    """(mean loss, accuracy) over a split: cross-entropy per example (per character for ``lm``)
    or MSE; accuracy for classifiers and per character for ``lm``, None for ``regress``."""
    kind = task.kind if task is not None else "classify"
    was_training = model.training
    model.eval()
    loss_sum, correct, count = 0.0, 0, 0
    for i in range(0, len(x), batch):
        xb, yb = x[i:i + batch].to(device), y[i:i + batch].to(device)
        out = model(xb).float()
        if kind == "regress":
            loss_sum += nn.functional.mse_loss(out.squeeze(-1), yb, reduction="sum").item()
        else:
            logits, labels = (out.flatten(0, 1), yb.flatten()) if kind == "lm" else (out, yb)
            loss_sum += nn.functional.cross_entropy(logits, labels, reduction="sum").item()
            correct += (logits.argmax(1) == labels).sum().item()
        count += yb.numel()
    model.train(was_training)
    return loss_sum / count, (None if kind == "regress" else correct / count)


def make_optimizer(task: Task, model: nn.Module, lr: float) -> tuple[torch.optim.Optimizer, Any]:
    """The task's optimizer and, with a warmup, its torch ``LambdaLR`` (linear warmup, then
    constant) -- the scheduler a user passes to ``optimizer_actuators``."""
    if task.optimizer == "adamw":
        opt: torch.optim.Optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=task.weight_decay)
    else:
        opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=task.momentum, nesterov=True,
                              weight_decay=task.weight_decay)
    sched = None
    if task.warmup_steps > 0:
        warm = task.warmup_steps
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / warm))
    return opt, sched


def configure_rescue(kernel: HotKernel, task: Task, data: Split) -> str:
    """The rescue told the task's kind: the class count ("stuck at chance") for classifiers; for
    loss tasks the no-learning baseline (the target's variance, the LM's unigram loss) where the
    kernel takes one, else the LM's vocabulary as its class count (a regressor: its own scale only).
    Returns what it was told: ``classes``, ``baseline`` or ``none``."""
    rescue = rescue_of(kernel)
    if task.kind == "classify":
        rescue.configure(classes=int(data.y_train.max()) + 1)
        return "classes"
    try:
        rescue.configure(baseline=data.baseline_loss)
        return "baseline"
    except TypeError:  # a kernel whose detector takes no baseline
        if task.kind == "lm":
            rescue.configure(classes=task.classes)
            return "classes"
        return "none"


def score_of(task: Task, loss: float, acc: float | None, baseline: float | None) -> float:
    """The reported score: accuracy for classifiers; for loss tasks the held-out loss, at most
    the no-learning baseline (a broken run scores what predicting nothing scores, as a broken
    classifier scores chance), so one blown-up run cannot swamp a mean."""
    if task.kind == "classify":
        return float(acc if acc is not None else math.nan)
    if baseline is None:
        return loss
    return loss if math.isfinite(loss) and loss <= baseline else float(baseline)


def run_policy_tick(policy: Policy, kernel: HotKernel, step: int, env: dict[str, Any],
                    fn_name: str = "act") -> float:
    """Run ``policy.<fn_name>(step)`` in a thread while this thread keeps the kernel at its safe
    point (same step, no metrics), so ops the policy waits for are decided at ``step``.
    Returns the seconds the policy took (excluded from training compute)."""
    error: list[BaseException] = []

    def target() -> None:
        try:
            getattr(policy, fn_name)(step)
        except BaseException as e:  # reported after the tick; training goes on
            error.append(e)

    kernel.publish_status()  # the step, freeze mode and snapshots the policy reads are this step's
    t0 = time.perf_counter()
    worker = threading.Thread(target=target, name=f"policy-{policy.name}", daemon=True)
    worker.start()
    while worker.is_alive():
        kernel.apply(env=env, events=["policy_tick"])
        worker.join(0.002)
    kernel.apply(env=env, events=["policy_tick"])  # ops written in the last moments land at this step too
    if kernel.paused:
        # Equal training steps for every policy: a pause would stall a loop that drives its own
        # controller. The harness resumes it (recorded in the ledger) and says so in the report.
        from hotcb.mcp_server.tools import HotcbTools
        from hotcb.mcp_server.tools_knobs import ApplyOpInput

        HotcbTools(kernel.run.root, source="rule", actor="eval-harness", wait_s=0).apply_op(
            ApplyOpInput(module="core", op="resume", reason="eval: equal training steps", wait_s=0))
        kernel.apply(env=env, events=["policy_tick"])
    if error:
        policy.errors.append(f"step {step}: {type(error[0]).__name__}: {error[0]}")
    return time.perf_counter() - t0


# complexity: the eval's training loop read top to bottom (airbench style): data, model, kernel, loop, result
def train(spec: RunSpec) -> dict[str, Any]:  # noqa: PLR0915
    task: Task = get_task(spec.task)
    device = pick_device(spec.device)
    if spec.threads:
        torch.set_num_threads(spec.threads)
    run_dir = Path(spec.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()

    # Data (fixed per task) and everything the seed controls: init, data order, augmentation.
    data = task.load(spec.task_options)
    torch.manual_seed(spec.seed)
    model = task.make_model().to(device)
    data_gen = torch.Generator().manual_seed(spec.seed)
    x_train, y_train = data.x_train.to(device), data.y_train.to(device)

    epochs = spec.budget_epochs or task.epochs
    steps_per_epoch = len(x_train) // task.batch_size  # drop the ragged tail: every step is a full batch
    total_steps = epochs * steps_per_epoch
    eval_every = task.eval_every or steps_per_epoch
    base_lr = task.lr * start_multiplier(spec.start_config, spec.lr_scale)

    # The start config is set here, before the kernel exists: no policy is credited for it.
    # The loop is the README's: the scheduler passed to optimizer_actuators, state registered.
    opt, sched = make_optimizer(task, model, base_lr)
    kernel = HotKernel(
        run_dir, mutable_state=mutable_state(optimizer_actuators(opt, scheduler=sched)),
        guard=GuardConfig(),  # the production defaults, identical for every policy
        status_interval_s=STATUS_INTERVAL_S, watch_interval_s=0.0,  # status at each tick; watched files every step
        max_steps=total_steps,
    )
    # Registered state makes rollback possible; the rescue is told the task's kind.
    kernel.register_state("model", model)
    kernel.register_state("optimizer", opt)
    rescue_kind = configure_rescue(kernel, task, data)
    policy = make_policy(spec.policy, spec.policy_options)
    ctx = PolicyContext(run_dir=str(run_dir), seed=spec.seed, total_steps=total_steps, base_lr=base_lr,
                        task=task.name, tune_horizon=task.tune_horizon, controller_every=task.controller_every,
                        warmup_steps=task.warmup_steps)
    policy_s = 0.0
    curves: dict[str, list[Any]] = {"step": [], "train_loss": [], "lr": [], "val_step": [], "val_loss": [],
                                    "val_acc": []}
    env = {"step": 0, "epoch": 0, "optimizer": opt, "scheduler": sched, "model": model}
    try:
        kernel.apply(env=env, events=["fit_start"])
        policy.bind(ctx)
        policy_s += run_policy_tick(policy, kernel, 0, env, "start")
        started = not policy.errors  # a policy that cannot start (no API key, no agent) trains as `none`, flagged
        step = 0
        model.train()
        for epoch in range(epochs):
            order = torch.randperm(len(x_train), generator=data_gen).to(device)
            for b in range(steps_per_epoch):
                idx = order[b * task.batch_size:(b + 1) * task.batch_size]
                xb, yb = x_train[idx], y_train[idx]
                if task.augment is not None:
                    xb = task.augment(xb, data_gen)
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
                    out = model(xb)
                loss = task_loss(task, out, yb)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                if sched is not None:
                    sched.step()
                step += 1

                metrics: dict[str, Any] = {"train_loss": loss.item()}
                if step % eval_every == 0 or step == total_steps:
                    val_loss, val_acc = evaluate(model, data.x_val, data.y_val, device, task=task)
                    metrics["val_loss"] = val_loss
                    if val_acc is not None:
                        metrics["val_acc"] = val_acc
                    curves["val_step"].append(step)
                    curves["val_loss"].append(val_loss)
                    curves["val_acc"].append(val_acc)
                curves["step"].append(step)
                curves["train_loss"].append(metrics["train_loss"])
                curves["lr"].append(opt.param_groups[0]["lr"])
                env = {"step": step, "epoch": epoch, "optimizer": opt, "scheduler": sched, "model": model}
                kernel.apply(env={**env, "metrics": metrics}, events=["train_step_end"])
                if started and step % task.controller_every == 0 and step < total_steps:
                    policy_s += run_policy_tick(policy, kernel, step, env)
        test_loss, test_acc = evaluate(model, data.x_test, data.y_test, device, task=task)
    finally:
        policy.close()
        kernel.close()
    wall = time.perf_counter() - t_start
    ledger = [e for e in read_all(RunDir(run_dir).ledger) if isinstance(e, dict)]
    interventions = [
        {"step": e["step"], "module": e["module"], "params": e.get("params"), "reason": e.get("reason")}
        for e in ledger
        if e.get("source") == policy.source and e.get("decision") == "applied"
        and e.get("module") not in KNOB_MODULES_EXCLUDED
        and not (e.get("module") == "rescue" and e.get("op") in ("enable", "disable"))  # rescue: a switch, no change
    ]
    refused = sum(1 for e in ledger if e.get("source") == policy.source and e.get("decision") != "applied")
    final_loss = curves["train_loss"][-1] if curves["train_loss"] else math.nan
    classify = task.kind == "classify"
    final_val = curves["val_acc" if classify else "val_loss"][-1] if curves["val_step"] else None
    return {
        **asdict(spec), "device": str(device), "steps": step, "epochs": epochs, "total_steps": total_steps,
        "base_lr": base_lr, "kind": task.kind, "metric": "test_acc" if classify else "test_loss",
        "goal": "max" if classify else "min", "score": score_of(task, test_loss, test_acc, data.baseline_loss),
        "baseline_loss": data.baseline_loss, "rescue_configured": rescue_kind,
        "chance_acc": 1.0 / task.classes if classify else None, "test_acc": test_acc, "test_loss": test_loss,
        "final_val_acc": curves["val_acc"][-1] if classify and curves["val_acc"] else None,
        # higher is better for every task (accuracy, or minus the loss): what picks the replayed run
        "final_val_score": None if final_val is None or not math.isfinite(final_val)
        else (final_val if classify else -final_val),
        "final_train_loss": final_loss,
        "interventions": len(interventions), "intervention_log": interventions, "refused": refused,
        **policy.usage(), "policy_errors": list(policy.errors), "policy_started": started,
        "wall_s": wall, "policy_s": policy_s, "train_s": wall - policy_s, "curves": curves,
    }
