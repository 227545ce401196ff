"""Accuracy at a budget: ChipNet against L1-norm, network slimming, random, uniform width,
Taylor iterative pruning, ChipNet's widths trained from scratch, and tfmot.

The method (datasets, the methods, what is recorded, mask transfer) is in
``benchmarks/README.md``.

Run::

    python -m benchmarks.accuracy            # the digits grid, about 3 hours on 2 cores
    python -m benchmarks.accuracy --quick    # one seed, one budget, few epochs (~7 min)
    python -m benchmarks.accuracy --dataset=fashion_mnist   # make bench-fashion
"""

import argparse
import time
from pathlib import Path

from benchmarks import common
from benchmarks.accuracy import data as acc_data
from benchmarks.accuracy import protocol
from benchmarks.accuracy.baselines import SLIMMING_LAMBDAS, SLIMMING_RULE
from benchmarks.accuracy.methods import BATCH, LR, METHODS, SEARCHES, WEIGHT_DECAY
from benchmarks.accuracy.run import (
    DEFAULT_BUDGETS,
    DEFAULT_TYPES,
    EPOCHS,
    LATENCY_BUDGETS,
    RESULTS,
    RESULTS_DIR,
    run_logger,
    work_directory,
    write_and_clean,
)
from benchmarks.accuracy.summary import summarize
from benchmarks.accuracy.tasks import run_tasks
from benchmarks.accuracy.taylor import TAYLOR_STEPS


# -- main -----------------------------------------------------------------------------
def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m benchmarks.accuracy", description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--budgets", type=float, nargs="+", default=list(DEFAULT_BUDGETS))
    p.add_argument("--budget_types", nargs="+", choices=DEFAULT_TYPES, default=list(DEFAULT_TYPES))
    p.add_argument(
        "--latency_budgets",
        type=float,
        nargs="*",
        default=list(LATENCY_BUDGETS),
        help="latency budgets (LiteRT float32, 1 thread, a table profiled once per run); none to skip",
    )
    p.add_argument("--dataset", choices=sorted(acc_data.DATASETS), default="digits")
    p.add_argument("--search", choices=list(SEARCHES), default="default", help="ChipNet's search configuration")
    p.add_argument("--pretrain_epochs", type=int, default=None, help="default: per dataset (digits 30, fashion 15)")
    p.add_argument("--prune_epochs", type=int, default=None, help="default: per dataset (digits 20, fashion 4)")
    p.add_argument("--finetune_epochs", type=int, default=None, help="default: per dataset (digits 20, fashion 2)")
    p.add_argument(
        "--protocol",
        choices=protocol.PROTOCOLS,
        default="equal",
        help="equal: every method trains prune_epochs + finetune_epochs after pretraining (default); "
        "search_extra: ChipNet and slimming train prune_epochs more than the others (earlier results)",
    )
    p.add_argument(
        "--search_fraction",
        type=float,
        default=None,
        help="under --protocol equal, the fraction of the epochs ChipNet spends searching (default 1/6, chosen "
        "on held-out data for every dataset); choose another on held-out data only",
    )
    p.add_argument("--transfer_budgets", type=float, nargs="*", default=None, help="default: digits 0.25 0.05")
    p.add_argument("--workers", type=int, default=2, help="worker processes (default 2, one TF thread each)")
    p.add_argument("--quick", action="store_true", help="1 seed, budget 0.05, 2/2/1 epochs (~7 min on 2 cores)")
    p.add_argument("--output", type=Path, default=None, help=f"JSON results path (default {RESULTS} for digits)")
    args = p.parse_args(argv)
    for name, value in EPOCHS[args.dataset].items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    if args.output is None:
        args.output = RESULTS if args.dataset == "digits" else RESULTS_DIR / f"accuracy_{args.dataset}.json"
    if args.quick:
        args.seeds, args.budgets, args.latency_budgets = [0], [0.05], []
        args.transfer_budgets = [0.05] if args.dataset == "digits" else []
        args.pretrain_epochs, args.prune_epochs, args.finetune_epochs = 2, 2, 1
    for b in args.budgets + args.transfer_budgets + args.latency_budgets:
        if not 0 < b <= 1:
            p.error(f"budgets must be in (0, 1]. Received: {b}")
    for name in ("pretrain_epochs", "prune_epochs", "finetune_epochs"):
        if getattr(args, name) < 1:
            p.error(f"--{name} must be >= 1. Received: {getattr(args, name)}")
    if args.workers < 1:
        p.error(f"--workers must be >= 1. Received: {args.workers}")
    args.search_fraction_source = (
        "--search_fraction" if args.search_fraction is not None else protocol.SEARCH_FRACTION_SOURCE
    )
    if args.search_fraction is None:
        args.search_fraction = protocol.default_search_fraction(args)
    elif not 0 < args.search_fraction < 1:
        p.error(f"--search_fraction must be in (0, 1). Received: {args.search_fraction}")
    return args


def _config(args):
    return {
        "dataset": acc_data.describe_split(args.dataset),
        "model": acc_data.describe(args.dataset),
        "seeds": args.seeds,
        "budgets": args.budgets,
        "budget_types": args.budget_types,
        "latency_budgets": args.latency_budgets,
        "latency": "predicted by a LatencyTable of the dataset's model (chipnet_tf.latency.profile: LiteRT float32, "
        "1 thread), profiled once per run; every method selects its masks under it",
        "pretrain_epochs": args.pretrain_epochs,
        "prune_epochs": args.prune_epochs,
        "finetune_epochs": args.finetune_epochs,
        "protocol": args.protocol,
        "protocol_text": protocol.describe(args),
        "search_fraction": args.search_fraction if args.protocol == "equal" else None,
        "search_fraction_source": args.search_fraction_source,
        "epochs_per_method": protocol.plan(args),
        "batch_size": BATCH,
        "optimizer": f"SGD(lr {LR}, momentum 0.9, Nesterov, weight decay {WEIGHT_DECAY}), x0.1 at 50% and 75%",
        "chipnet": f"prune_low_budget, search {args.search!r} ({SEARCHES[args.search]['text']}); "
        "chipnet_tf.search_optimizer (AdamW 1e-3 cosine-decayed to 0 over the search, weight decay 1e-3, none on "
        "zeta); UpdatePruningStep + BestHardMasks(held-out 10%, BN re-estimated on training images)",
        "l1": "per-channel filter L1 / layer mean, averaged over a group's writers; select_masks",
        "slimming": "L1 on BN gammas for its search epochs, lambda chosen per seed on the validation split; |gamma| "
        "of the sparsity-trained model; select_masks",
        "slimming_lambdas": list(SLIMMING_LAMBDAS),
        "slimming_rule": SLIMMING_RULE,
        "random": "N(0, 1) scores; select_masks",
        "uniform": "every group keeps the same fraction (within one channel), channels by L1 norm; select_masks",
        "taylor": f"Molchanov et al. 2019: (gamma dL/dgamma + beta dL/dbeta)^2 of the BN layers reading a group, "
        f"summed over training minibatches; {TAYLOR_STEPS} pruning steps over its search epochs, target "
        "geometric from 1 to the budget; select_masks with pruned channels at -inf; SGD at the recipe's starting "
        "rate while pruning",
        "scratch": "ChipNet's masks on the dense architecture, re-initialised (clone_model) and trained from "
        "scratch with the SGD recipe",
        "tfmot": "prune_low_magnitude(ConstantSparsity(1 - budget)) trained like the others, strip_pruning",
        "transfer": {
            "from": "digits 0-4",
            "to": "digits 5-9",
            "budgets": args.transfer_budgets,
            "budget_type": "flops",
        },
        "workers": args.workers,
        "quick": args.quick,
    }


def main(argv=None):
    args = parse_args(argv)
    start = time.perf_counter()
    log = run_logger(start)

    config = _config(args)
    work = str(work_directory(args.output, {k: v for k, v in config.items() if k != "workers"}))
    acc_data.load(args.dataset)  # prepares the tfds dataset here, once, before two workers race to build it
    log(
        f"accuracy benchmark: {len(args.seeds)} seeds x ({len(args.budget_types)} budget types x "
        f"{len(args.budgets)} budgets + {len(args.latency_budgets)} latency budgets) x {len(METHODS)} methods; "
        f"{protocol.describe(args)}; work directory {work}"
    )
    first = [("dense", s) for s in args.seeds] + [("transfer_dense", s) for s in args.seeds if args.transfer_budgets]
    first += [("latency_table",)] if args.latency_budgets else []
    second = [("transfer", s, b) for s in args.seeds for b in args.transfer_budgets]
    cells = [(t, b) for t in args.budget_types for b in args.budgets]
    cells += [("latency", b) for b in args.latency_budgets]
    second += [("grid", s, t, b) for s in args.seeds for t, b in cells]
    second += [("tfmot", s, b) for s in args.seeds for b in args.budgets]
    results = run_tasks([first, second], args, work, log)

    seeds_out = []
    for seed in args.seeds:
        runs = [r for t, b in cells for r in results[("grid", seed, t, b)]]
        runs += [r for b in args.budgets for r in results[("tfmot", seed, b)]]
        seeds_out.append({**results[("dense", seed)], "runs": runs})
    transfer_out = [
        {
            **results[("transfer_dense", s)],
            "runs": [r for b in args.transfer_budgets for r in results[("transfer", s, b)]],
        }
        for s in args.seeds
        if args.transfer_budgets
    ]
    payload = {
        "benchmark": "accuracy",
        "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "config": config,
        "seeds": seeds_out,
        "transfer": transfer_out,
        "summary": summarize(seeds_out, transfer_out),
        "environment": common.environment("tensorflow-model-optimization"),
        "total_runtime_s": time.perf_counter() - start,
    }
    return write_and_clean(args.output, payload, work, log)


if __name__ == "__main__":
    main()
