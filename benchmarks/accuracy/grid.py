"""Accuracy benchmark, the grid task: every structured method at one (seed, budget type,
budget), each trained for the epochs ``protocol.plan`` gives it."""

import dataclasses
import json
import os
import time

import chipnet_tf
from benchmarks.accuracy import data as acc_data
from benchmarks.accuracy import protocol
from benchmarks.accuracy.baselines import uniform_scores
from benchmarks.accuracy.methods import (
    bn_gamma_scores,
    chipnet_prune,
    random_scores,
    select_quietly,
    structured_run,
)
from benchmarks.accuracy.run import load_weights, task_file
from benchmarks.accuracy.taylor import taylor_prune
from benchmarks.latency.models import channel_scores
from chipnet_tf.latency.table import LatencyTable, attach


def latency_table_path(work):
    """The dataset model's latency table in the work directory (the ``latency_table`` task)."""
    return os.path.join(work, "profiled.latency.json")  # not "latency_table.json": the task's own result file


def analysis_and_table(dense, work, budget_type):
    """The dense model's analysis (its spec with the profiled latency table attached for
    latency budgets) and the table (None for the counted budget types)."""
    analysis = chipnet_tf.analyze(dense, warn=False)
    if budget_type != "latency":
        return analysis, None
    table = LatencyTable.load(latency_table_path(work))
    return dataclasses.replace(analysis, spec=attach(analysis, table)), table


def _one_shot(method, dense, slim_source, analysis, seed, budget):
    """(scores, source model) of a method whose mask is a cut of fixed channel scores."""
    if method == "l1":
        return channel_scores(dense, analysis, seed)[0], dense
    if method == "slimming":
        return bn_gamma_scores(slim_source, analysis), slim_source
    if method == "uniform":
        return uniform_scores(analysis, channel_scores(dense, analysis, seed)[0]), dense
    return random_scores(analysis, 1000 * seed + int(1000 * budget)), dense


def task_grid(args, work, seed, budget_type, budget):
    """The structured methods at one (seed, budget type, budget); scratch after ChipNet, whose
    masks it trains from a random initialisation."""
    data = acc_data.load(args.dataset)
    dense = load_weights(args, work, f"dense_{seed}")
    slim_source = load_weights(args, work, f"slimming_{seed}")
    with open(task_file(work, ("dense", seed))) as f:
        slimming_seconds = json.load(f)["slimming"]["seconds"]
    analysis, table = analysis_and_table(dense, work, budget_type)
    spec = analysis.spec
    plan = protocol.plan(args)

    def run(method, source, masks, minimal, search_seconds, extra=None, reinit=False):
        extra = {**(extra or {}), **protocol.epochs_record(args, method), "search_seconds": search_seconds}
        return structured_run(
            method, source, masks, minimal, budget, budget_type, spec, data, seed, args, extra,
            finetune_epochs=plan[method][1], reinit=reinit,
        )  # fmt: skip

    t0 = time.perf_counter()
    pruned, chipnet_masks, info = chipnet_prune(
        dense, data, budget, budget_type, seed, plan["chipnet"][0], args.search, latency_table=table
    )
    info["prune_seconds"] = time.perf_counter() - t0
    seconds = info["prune_seconds"]
    if args.protocol == "equal":  # the masks fine-tuned from the dense weights, and from the search's
        records = [run("chipnet", dense, chipnet_masks, False, seconds, {**info, "weights_from": "dense"})]
        extra = {**info, "weights_from": "search"}
        records.append(run("chipnet_search_weights", pruned, chipnet_masks, False, seconds, extra))
    else:
        records = [run("chipnet", pruned, chipnet_masks, False, seconds, {**info, "weights_from": "search"})]
    for method in ("l1", "slimming", "random", "uniform"):
        t0 = time.perf_counter()
        scores, source = _one_shot(method, dense, slim_source, analysis, seed, budget)
        masks, minimal = select_quietly(spec, scores, budget, budget_type)
        seconds = time.perf_counter() - t0 + (slimming_seconds if method == "slimming" else 0.0)
        records.append(run(method, source, masks, minimal, seconds))
    t0 = time.perf_counter()
    wrapped, masks, minimal, info = taylor_prune(
        dense, data, analysis, budget, budget_type, seed, plan["taylor"][0], latency_table=table
    )
    records.append(run("taylor", wrapped, masks, minimal, time.perf_counter() - t0, info))
    extra = {"architecture_from": "chipnet", "note": "search seconds are ChipNet's (its masks)"}
    records.append(run("scratch", dense, chipnet_masks, False, 0.0, extra, reinit=True))
    return records
