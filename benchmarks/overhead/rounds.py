"""Training-step overhead benchmark, the measurement loop: builds and warms up each variant,
then times them in interleaved rounds (the order rotating from round to round).

Shared by the tf_keras run (``benchmarks.overhead``) and the Keras 3 run
(:mod:`benchmarks.overhead.keras3`); method: benchmarks/README.md, section "Training-step overhead".
"""

import os
import statistics
import time

from benchmarks.overhead.variants import make_variant, timed_fit, tracing_count


def build_variants(variants, args, dataset, make=make_variant):
    """Builds and warms up every variant: ``({variant: (model, callbacks factory)}, warm-up
    seconds, train_function tracing counts)``. ``make(variant, seed)`` builds one variant."""
    models, warmup, traces = {}, {}, {}
    for v in variants:
        t0 = time.perf_counter()
        model, cbs = make(v, args.seed)
        model.fit(dataset, steps_per_epoch=args.warmup_steps, epochs=1, verbose=0, callbacks=cbs())
        warmup[v] = time.perf_counter() - t0
        traces[v] = {"after_warmup": tracing_count(model)}
        models[v] = (model, cbs)
        print(f"  built + warmed up {v:<20} in {warmup[v]:6.1f} s ({model.count_params():,} params)", flush=True)
    return models, warmup, traces


def time_rounds(models, variants, args, dataset):
    """The interleaved timing: per variant, per round, the (steps - 1) batch-end to
    batch-end intervals (wall and CPU), the fit wall time per step, the load averages and
    the variant order of every round."""
    timing = {
        "wall": {v: [] for v in variants},
        "cpu": {v: [] for v in variants},
        "fit_wall": {v: [] for v in variants},
        "load": [os.getloadavg()[0]] if hasattr(os, "getloadavg") else [],
        "orders": [],
    }
    for r in range(args.rounds):
        order = variants[r % len(variants) :] + variants[: r % len(variants)]
        timing["orders"].append(order)
        for v in order:
            model, cbs = models[v]
            w, c, f = timed_fit(model, cbs, dataset, args.steps)
            timing["wall"][v].append(w)
            timing["cpu"][v].append(c)
            timing["fit_wall"][v].append(f)
        load = timing["load"]
        if load:
            load.append(os.getloadavg()[0])
        print(
            f"  round {r + 1}/{args.rounds}: "
            + ", ".join(f"{v} {statistics.median(timing['wall'][v][-1]) * 1e3:.1f}" for v in variants)
            + " ms/step (round medians)"
            + (f", 1-min load average {load[-1]:.1f}" if load else ""),
            flush=True,
        )
    return timing
