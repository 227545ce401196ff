"""Accuracy benchmark, protocol: how many training epochs each method gets after the shared
dense pretraining.

``equal`` (the default): every method trains T = prune_epochs + finetune_epochs epochs after
the dense pretraining, whatever it spends them on (Liu et al., ICLR 2019, "Rethinking the Value
of Network Pruning": with equal training the found architecture is what counts). ChipNet
searches ``round(search_fraction * T)`` of them and fine-tunes its masks the rest, from the
dense weights (``chipnet``) and, for comparison, from the search's weights
(``chipnet_search_weights``); slimming's sparsity
epochs (prune_epochs) count, then it fine-tunes finetune_epochs; Taylor prunes iteratively
over the first half (T // 2) and trains the rest; L1-norm, random, uniform width and tfmot
train all T epochs on their fixed masks; scratch trains ChipNet's widths from a random
initialisation for pretrain_epochs + T epochs (the same total as pretraining plus T).

``search_extra`` (the protocol of results before ``equal``): ChipNet and slimming get
prune_epochs on top of the finetune_epochs every method gets, so they train longer; Taylor
then prunes over prune_epochs too; scratch trains pretrain_epochs + prune_epochs +
finetune_epochs.
"""

PROTOCOLS = ("equal", "search_extra")
ONE_SHOT = ("l1", "random", "uniform")
# ChipNet's share of T under ``equal``, the same for every dataset: chosen on Fashion-MNIST's
# validation split, never the test split (experiments/search-equal-training-2026-12, H1: S = 1
# of T = 6 beat or tied S = 2 and S = 3 in all four low-budget cells). The same experiment (H3)
# chose fine-tuning ChipNet's masks from the dense weights over the search's weights.
SEARCH_FRACTION = 1 / 6
SEARCH_FRACTION_SOURCE = (
    "1/6, chosen on Fashion-MNIST's validation split (experiments/search-equal-training-2026-12, H1)"
)


def default_search_fraction(args):
    """``SEARCH_FRACTION`` under ``equal``; under ``search_extra`` the old ratio,
    prune_epochs of prune_epochs + finetune_epochs (it does not decide the search's length)."""
    if args.protocol == "equal":
        return SEARCH_FRACTION
    return args.prune_epochs / (args.prune_epochs + args.finetune_epochs)


def total_epochs(args):
    """T: the training epochs every method gets after the dense pretraining (``equal``)."""
    return args.prune_epochs + args.finetune_epochs


def search_epochs(args):
    """ChipNet's search epochs: ``round(search_fraction * T)`` under ``equal`` (at least one,
    and at least one fine-tuning epoch left), prune_epochs under ``search_extra``."""
    if args.protocol == "search_extra":
        return args.prune_epochs
    t = total_epochs(args)
    return min(max(1, round(args.search_fraction * t)), t - 1)


def plan(args):
    """``{method: [search epochs, fine-tuning epochs]}`` after the shared dense pretraining
    ("search": ChipNet's search, slimming's sparsity training, Taylor's iterative pruning;
    "fine-tuning": training on the final masks, from scratch for ``scratch``)."""
    p, f = args.prune_epochs, args.finetune_epochs
    if args.protocol == "search_extra":
        out = {m: [0, f] for m in ONE_SHOT + ("tfmot",)}
        out.update(chipnet=[p, f], slimming=[p, f], taylor=[p, f], scratch=[0, args.pretrain_epochs + p + f])
        return out
    t = total_epochs(args)
    s = search_epochs(args)
    taylor = max(1, t // 2)
    out = {m: [0, t] for m in ONE_SHOT + ("tfmot",)}
    out.update(chipnet=[s, t - s], chipnet_search_weights=[s, t - s], slimming=[p, t - p], taylor=[taylor, t - taylor])
    out["scratch"] = [0, args.pretrain_epochs + t]
    return out


def epochs_record(args, method):
    """The epoch fields of one run's record: search, fine-tuning, their sum (``train_epochs``,
    after the dense pretraining; for scratch, from its random start) and ``total_epochs``
    (with the dense pretraining for every method that starts from it)."""
    search, finetune = plan(args)[method]
    train = search + finetune
    total = train if method == "scratch" else args.pretrain_epochs + train
    return {"search_epochs": search, "finetune_epochs": finetune, "train_epochs": train, "total_epochs": total}


def describe(args):
    """One line: the protocol and each method's epochs."""
    p = plan(args)
    parts = [f"{m} {s}+{f}" if s else f"{m} {f}" for m, (s, f) in p.items()]
    return (
        f"protocol {args.protocol!r}: after {args.pretrain_epochs} dense pretraining epochs, epochs per method "
        f"(search+fine-tuning; scratch from a random start): " + ", ".join(parts)
    )
