"""RESULTS.md section: ChipNet on tf_keras and on Keras 3's backends (``keras3_parity.json``)."""

from benchmarks.parity.summary import table


def parity_section(parity):
    p = parity["protocol"]
    summary = parity["summary"]
    verdicts = [s["parity"] for s in summary.values() if "parity" in s]
    return [
        "## Keras 3 parity",
        "",
        f"`python -m benchmarks.parity`: digits, PreResNet-20, the same initial weights and seeds in every flavour; "
        f"dense trained {p['pretrain']} epochs (SGD recipe), ChipNet searches {p['search']} epochs at "
        f"{p['budget_type']} {p['budget']} (prune_low_budget defaults, search_optimizer, BestHardMasks), the dense "
        f"weights stripped to its masks and fine-tuned {p['finetune']} epochs; test accuracy. Parity: a Keras 3 "
        "flavour's mean within 1 point of tf_keras' or within the pooled standard deviation.",
        "",
        table(summary),
        "",
        f"Parity holds for {sum(verdicts)} of {len(verdicts)} Keras 3 backends.",
        "",
    ]
