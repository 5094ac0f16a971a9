"""CLI commands of this layer (registered through the ``hotcb.cli`` entry point group).

    hotcb eval autopilot --task cifar10|digits|synthetic|charlm|regression|fashion-mnist \
        --policies none,cosine,rules,tune,ai --seeds 5 [--data-dir DIR] \
        [--start-config default|lr_high|lr_low | --lr-scale X] [--budget-epochs E] [--jobs J] [--threads T] \
        --out DIR [--executor local|ray [--address ADDR] [--cpus-per-run N]]
"""

from __future__ import annotations

import argparse
import math
import os
from typing import Any

TASK_NAMES = ("cifar10", "digits", "synthetic", "charlm", "regression", "fashion-mnist")  # kept here so --help needs no torch import
POLICY_NAMES = ("none", "cosine", "rules", "tune", "ai", "replay")


def _seeds(text: str) -> list[int]:
    """``5`` -> seeds 0..4; ``3,7,11`` -> those seeds."""
    if "," in text:
        return [int(s) for s in text.split(",") if s.strip()]
    n = int(text)
    if n < 1:
        raise argparse.ArgumentTypeError("--seeds needs at least 1")
    return list(range(n))


def _lr_scale(text: str) -> float:
    try:
        x = float(text)
    except ValueError:
        x = math.nan
    if not (x > 0 and math.isfinite(x)):
        raise argparse.ArgumentTypeError(f"--lr-scale needs a finite number > 0, got {text!r}")
    return x


def _positive(text: str) -> int:
    n = int(text)
    if n < 1:
        raise argparse.ArgumentTypeError("needs an integer >= 1")
    return n


def _policies(text: str) -> list[str]:
    names = [p.strip() for p in text.split(",") if p.strip()]
    bad = [p for p in names if p not in POLICY_NAMES]
    if bad or not names:
        raise argparse.ArgumentTypeError(f"unknown policies {bad}; choose from {', '.join(POLICY_NAMES)}")
    return list(dict.fromkeys(names))


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add this layer's subcommands. Heavy imports happen inside the handlers."""
    ev = sub.add_parser("eval", help="evaluate autopilot policies (hotcb[evals])")
    evs = ev.add_subparsers(dest="eval_op", required=True)
    p = evs.add_parser("autopilot", help="compare policies on paired seeds at equal training steps")
    p.add_argument("--task", choices=TASK_NAMES, default="digits")
    p.add_argument("--policies", type=_policies, default=["none", "cosine", "rules", "tune"],
                   help=f"comma-separated, from {','.join(POLICY_NAMES)} (default: none,cosine,rules,tune)")
    p.add_argument("--seeds", type=_seeds, default=[0, 1, 2], help="a count (N: seeds 0..N-1) or a list 3,7,11")
    start = p.add_mutually_exclusive_group()
    start.add_argument("--start-config", choices=("default", "lr_high", "lr_low"), default="default",
                       help="the start lr: the task's x1, x4 or x0.25")
    start.add_argument("--lr-scale", type=_lr_scale, default=None, metavar="X",
                       help="the start lr as any multiple X of the task's (e.g. 8 diverges digits unaided)")
    p.add_argument("--budget-epochs", type=int, default=None, help="epochs per run (default: the task's)")
    p.add_argument("--jobs", type=_positive, default=1, help="runs in parallel processes")
    p.add_argument("--threads", type=_positive, default=1, help="torch threads per run (default 1)")
    p.add_argument("--executor", choices=("local", "ray"), default="local", help="ray: each run a Ray task (hotcb[ray])")
    p.add_argument("--address", default=None, help="ray: the cluster address (default: start a local Ray instance)")
    p.add_argument("--cpus-per-run", type=_positive, default=None,
                   help="CPUs reserved (and torch threads) per run (default: --threads)")
    p.add_argument("--device", default=None, help="torch device (default: cuda when present, else cpu)")
    p.add_argument("--out", required=True, help="output directory (results.json, report.md, plots, runs/)")
    p.add_argument("--data-dir", default=None,
                   help="cifar10: folder with cifar-10-batches-py (default: data); fashion-mnist: folder with its "
                        "four IDX .gz files (default: /usr/share/datasets/fashion-mnist, Debian's "
                        "dataset-fashion-mnist)")
    p.add_argument("--download", action="store_true", help="cifar10: fetch the official tarball (internet)")
    p.add_argument("--ai-model", default=None, help="ai: model name (default: $HOTCB_AI_MODEL)")
    p.add_argument("--ai-base-url", default=None, help="ai: OpenAI-compatible base URL (default: $HOTCB_AI_BASE_URL)")
    p.add_argument("--ai-replies", default=None,
                   help="ai: a JSON file of recorded chat replies, served by a local fake API (no key needed)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_autopilot)


def _check_data(task: str, data_dir: str | None, download: bool) -> None:
    """Fail before any run starts, with the way to get the data."""
    if task == "cifar10":
        from .cifar10 import CifarMissing, find_folder
        from .cifar10 import download as fetch

        try:
            fetch(data_dir or "data") if download else find_folder(data_dir or "data")
        except CifarMissing as e:
            raise SystemExit(f"hotcb eval: {e}") from None
    elif task == "fashion-mnist":
        from .fashion_mnist import FashionMissing
        from .fashion_mnist import find_folder as find_fashion

        try:
            find_fashion(data_dir)
        except FashionMissing as e:
            raise SystemExit(f"hotcb eval: {e}") from None


def cmd_autopilot(args: argparse.Namespace) -> int:
    # Before torch loads (it reads this once): idle OpenMP threads sleep instead of spinning.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from .plots import write_plots
    from .report import write_report
    from .runner import EvalConfig, run_eval

    policy_options = {k: v for k, v in (("ai_model", args.ai_model), ("ai_base_url", args.ai_base_url),
                                        ("ai_replies", args.ai_replies)) if v}
    cfg = EvalConfig(
        task=args.task, policies=args.policies, seeds=args.seeds, out=args.out, start_config=args.start_config,
        lr_scale=args.lr_scale, budget_epochs=args.budget_epochs, jobs=args.jobs, threads=args.threads, device=args.device,
        task_options={"data_dir": args.data_dir or ("data" if args.task == "cifar10" else None),
                      "download": args.download}, policy_options=policy_options,
        progress=not args.no_progress, executor=args.executor, address=args.address, cpus_per_run=args.cpus_per_run,
    )
    _check_data(args.task, cfg.task_options["data_dir"], args.download)
    results = run_eval(cfg)
    plots = write_plots(results, args.out)
    report = write_report(results, args.out, plots)
    print(report.read_text())
    print(f"wrote {report}, {args.out}/results.json, {', '.join(plots)}")
    return 0
