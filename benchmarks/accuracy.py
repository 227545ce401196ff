"""Accuracy at a budget: ChipNet against L1-norm, network slimming, random and tfmot.

Datasets (``--dataset``): ``digits`` (the default: scikit-learn's digits through the offline
``digits`` tfds builder; 1,437 training images of which the last 10% are held out for
ChipNet's model selection, 360 test images that only the final evaluation sees) and
``fashion_mnist`` (Debian's dataset-fashion-mnist files through the offline
``fashion_mnist`` builder; 54,000 / 6,000 / 10,000; ``make bench-fashion``). ChipNet's
search runs in a named configuration (``--search``): ``paper`` (per-epoch schedule, soft
gates; the committed digits results) or ``progress_hard`` (notes/session-6.md). The code is
split by role: ``acc_data`` (datasets, models), ``acc_methods`` (training, the methods,
measuring), ``acc_tasks`` (units of work and the worker pool), ``acc_summary``.

What runs, per dataset:

* **dense**: ``chipnet_tf.architectures.preresnet(depth=20)`` at the dataset's input size - the
  paper's PreResNet family (bottleneck pre-activation blocks) at depth 20: 16 channel
  groups, 912 channels, 221,914 parameters (2.09 MFLOPs at 8x8). Trained per seed with SGD
  (momentum 0.9, Nesterov, lr 0.05, x0.1 at 50% and 75% of the epochs, weight decay 1e-3).
* for every seed, budget type (FLOPs, channels) and budget (0.5 ... 0.02), one mask per method:

  * ``chipnet``: ``prune_low_budget`` on the dense model, paper defaults (AdamW 1e-3, weight
    decay 1e-3 except on the mask logits, budget weight 30, crispness weight 10, the default
    schedules), ``--prune_epochs`` epochs with ``BestHardMasks`` (the reference code's model
    selection: the pruning epoch whose hard network, BatchNorm re-estimated, validates best
    on the held-out 10%). The pruned model's weights are the ones fine-tuned.
  * ``l1`` (Li et al. 2017, "Pruning filters for efficient ConvNets"): a channel scores the
    L1 norm of its filter, normalised by its layer's mean (averaged over a group's writers);
    the highest-scoring channels are kept globally under the budget by the same
    ``select_masks`` ChipNet uses. Li et al. pick per-layer rates by a sensitivity analysis;
    a global ranking of normalised norms is the usual budget-driven variant.
  * ``slimming`` (Liu et al. 2017, "Learning efficient convolutional networks through network
    slimming"): the dense model is trained further for ``--prune_epochs`` epochs with an L1
    penalty ``lambda * sum |gamma|`` on the BatchNorm scales (same SGD as pretraining);
    channels are ranked globally by ``|gamma|`` (mean over the BN layers of a group) and
    kept under the budget with ``select_masks``. ``lambda`` gives the same total L1 shrinkage
    ``lambda * lr * steps`` as Liu et al.'s CIFAR schedule (1e-4 x 0.1 x 62,400 steps), i.e.
    ``0.624 / (lr * steps)``.
  * ``random``: N(0, 1) scores, kept under the budget with ``select_masks``.

  Every mask ends as a real smaller model through ``chipnet_tf.strip_pruning(source,
  masks=...)``. All of them get the *same* fine-tuning: ``--finetune_epochs`` epochs of SGD
  (momentum 0.9, lr 0.05 with x0.1 steps at 50% and 75%, weight decay 1e-3), batch 64.
  ChipNet and slimming additionally had their ``--prune_epochs`` search epochs; L1 and
  random are one-shot (that is what the methods are).
* ``tfmot``: ``prune_low_magnitude`` with ``ConstantSparsity(1 - budget)`` - the same
  fraction of Conv2D/Dense weights kept as the budget - fine-tuned with the same schedule,
  then ``strip_pruning``. Unstructured: the model keeps its dense shape and FLOPs.

Recorded per run: test accuracy after fine-tuning and before it (stripped, BatchNorm
re-estimated on 10 training batches), target vs achieved budget, the stripped model's
``count_params()``, its FLOPs by ``chipnet_tf.count_flops`` and by the TensorFlow profiler
(independent), kept channels per group, groups left with one channel, and whether any loss
or weight was not finite.

**Mask transfer** (digits 0-4 -> 5-9): two 5-class dense models, one per task. ChipNet
prunes each at a FLOPs budget. On task B (5-9) we then fine-tune (identically):
``direct`` - B's own ChipNet model; ``direct_masks`` - B's masks on B's dense weights;
``transferred`` - A's masks on B's dense weights; ``random`` - random masks on B's dense
weights. Masks are compared by per-group overlap.

Run::

    python -m benchmarks.accuracy            # the full grid, ~30 minutes on 2 cores
    python -m benchmarks.accuracy --quick    # one seed, one budget, few epochs (~1 min)
"""

import argparse
import contextlib
import hashlib
import json
import os
import shutil
import time
from pathlib import Path

import chipnet_tf
from benchmarks import acc_data, common
from benchmarks.acc_methods import (
    BATCH,
    LR,
    METHODS,
    SEARCHES,
    SLIMMING_TOTAL_SHRINK,
    STRUCTURED,
    WEIGHT_DECAY,
    bn_gamma_scores,  # noqa: F401  (tests reach it here)
    random_scores,  # noqa: F401  (notes/experiments/search_probe.py reaches it here)
)
from benchmarks.acc_summary import summarize
from benchmarks.acc_tasks import _task_file, run_tasks  # noqa: F401
from chipnet_tf.io import write_json

RESULTS_DIR = Path(__file__).resolve().parent / "results"
RESULTS = RESULTS_DIR / "accuracy.json"
DEFAULT_BUDGETS = (0.5, 0.25, 0.1, 0.05, 0.02)
DEFAULT_TYPES = ("flops", "channels")
# Epochs per dataset. Digits: 1,293 training images, 21 steps per epoch at batch 64.
# Fashion-MNIST: 54,000 images, 844 steps per epoch, ~300 images/s for the wrapped model
# on 2 cores, so 4 search epochs (3,376 steps) take ~12 minutes. The mask transfer study
# (classes 0-4 -> 5-9) runs on digits only.
EPOCHS = {
    "digits": {"pretrain_epochs": 30, "prune_epochs": 20, "finetune_epochs": 20, "transfer_budgets": [0.25, 0.05]},
    "fashion_mnist": {"pretrain_epochs": 8, "prune_epochs": 4, "finetune_epochs": 4, "transfer_budgets": []},
}
__all__ = ["STRUCTURED", "METHODS", "main", "parse_args", "run_tasks", "summarize", "write_json"]


# -- main -----------------------------------------------------------------------------
def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m benchmarks.accuracy", description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--budgets", type=float, nargs="+", default=list(DEFAULT_BUDGETS))
    p.add_argument("--budget_types", nargs="+", choices=DEFAULT_TYPES, default=list(DEFAULT_TYPES))
    p.add_argument("--dataset", choices=sorted(acc_data.DATASETS), default="digits")
    p.add_argument("--search", choices=sorted(SEARCHES), default="paper", help="ChipNet's search configuration")
    p.add_argument("--pretrain_epochs", type=int, default=None, help="default: per dataset (digits 30, fashion 8)")
    p.add_argument("--prune_epochs", type=int, default=None, help="default: per dataset (digits 20, fashion 4)")
    p.add_argument("--finetune_epochs", type=int, default=None, help="default: per dataset (digits 20, fashion 4)")
    p.add_argument("--transfer_budgets", type=float, nargs="*", default=None, help="default: digits 0.25 0.05")
    p.add_argument("--workers", type=int, default=2, help="worker processes (default 2, one TF thread each)")
    p.add_argument("--quick", action="store_true", help="1 seed, budget 0.05, 2/2/1 epochs (~1 min)")
    p.add_argument("--output", type=Path, default=None, help=f"JSON results path (default {RESULTS} for digits)")
    args = p.parse_args(argv)
    for name, value in EPOCHS[args.dataset].items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    if args.output is None:
        args.output = RESULTS if args.dataset == "digits" else RESULTS_DIR / f"accuracy_{args.dataset}.json"
    if args.quick:
        args.seeds, args.budgets = [0], [0.05]
        args.transfer_budgets = [0.05] if args.dataset == "digits" else []
        args.pretrain_epochs, args.prune_epochs, args.finetune_epochs = 2, 2, 1
    for b in args.budgets + args.transfer_budgets:
        if not 0 < b <= 1:
            p.error(f"budgets must be in (0, 1]. Received: {b}")
    for name in ("pretrain_epochs", "prune_epochs", "finetune_epochs"):
        if getattr(args, name) < 1:
            p.error(f"--{name} must be >= 1. Received: {getattr(args, name)}")
    if args.workers < 1:
        p.error(f"--workers must be >= 1. Received: {args.workers}")
    return args


def _code_digest():
    """SHA-256 of the code a task's result depends on: the acc_* modules, latency.py, chipnet_tf/."""
    digest = hashlib.sha256()
    here = Path(__file__).resolve().parent
    package = Path(chipnet_tf.__file__).resolve().parent
    for path in sorted(here.glob("acc*.py")) + [here / "latency.py"] + sorted(package.rglob("*.py")):
        digest.update(path.read_bytes())
    return digest.hexdigest()


def _config(args):
    return {
        "dataset": f"{args.dataset} (tfds builder recipes/datasets/{args.dataset}.py): train[:90%] trains, "
        "train[90%:] is ChipNet's selection hold-out, test is reported",
        "model": acc_data.describe(args.dataset),
        "seeds": args.seeds,
        "budgets": args.budgets,
        "budget_types": args.budget_types,
        "pretrain_epochs": args.pretrain_epochs,
        "prune_epochs": args.prune_epochs,
        "finetune_epochs": args.finetune_epochs,
        "batch_size": BATCH,
        "optimizer": f"SGD(lr {LR}, momentum 0.9, Nesterov, weight decay {WEIGHT_DECAY}), x0.1 at 50% and 75%",
        "chipnet": f"prune_low_budget, search {args.search!r} ({SEARCHES[args.search]['text']}); AdamW(1e-3, weight "
        "decay 1e-3, none on zeta); UpdatePruningStep + BestHardMasks(held-out 10%, BN re-estimated on training "
        "images)",
        "l1": "per-channel filter L1 / layer mean, averaged over a group's writers; select_masks",
        "slimming": "L1 on BN gammas for prune_epochs (lambda = total_shrink / (lr * steps)); |gamma|; select_masks",
        "slimming_total_shrink": SLIMMING_TOTAL_SHRINK,
        "random": "N(0, 1) scores; select_masks",
        "tfmot": "prune_low_magnitude(ConstantSparsity(1 - budget)) fine-tuned like the others, strip_pruning",
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

    def log(message):
        print(f"[{time.perf_counter() - start:7.1f}s] {message}", flush=True)

    config = _config(args)
    digest = hashlib.sha256(json.dumps({k: v for k, v in config.items() if k != "workers"}, sort_keys=True).encode())
    digest.update(_code_digest().encode())  # a resumed run never mixes results of other code
    work = args.output.parent / ".work" / f"{args.output.stem}-{digest.hexdigest()[:12]}"
    work.mkdir(parents=True, exist_ok=True)
    work = str(work)
    acc_data.load(args.dataset)  # prepares the tfds dataset here, once, before two workers race to build it
    log(
        f"accuracy benchmark: {len(args.seeds)} seeds x {len(args.budget_types)} budget types x "
        f"{len(args.budgets)} budgets x {len(METHODS)} methods; work directory {work}"
    )
    first = [("dense", s) for s in args.seeds] + [("transfer_dense", s) for s in args.seeds if args.transfer_budgets]
    second = [("transfer", s, b) for s in args.seeds for b in args.transfer_budgets]
    second += [("grid", s, t, b) for s in args.seeds for t in args.budget_types for b in args.budgets]
    second += [("tfmot", s, b) for s in args.seeds for b in args.budgets]
    results = run_tasks([first, second], args, work, log)

    seeds_out = []
    for seed in args.seeds:
        runs = [r for t in args.budget_types for b in args.budgets for r in results[("grid", seed, t, b)]]
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
    write_json(args.output, payload)
    shutil.rmtree(work, ignore_errors=True)
    with contextlib.suppress(OSError):
        os.rmdir(os.path.dirname(work))  # .work/, when no other configuration is in progress
    log(f"wrote {args.output}")
    return payload


if __name__ == "__main__":
    main()
