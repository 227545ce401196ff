"""Strip benchmark, peak memory: each step measured in a fresh child process
(``python -m benchmarks.strip --child STEP``), its RSS sampled and its kernel peak mark read.

Part of ``benchmarks.strip`` (method: benchmarks/README.md, section "Strip time and memory").
"""

import gc
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
from pathlib import Path

from benchmarks.strip.steps import STEPS, prepare, run_step, weight_bytes
from chipnet_tf import io as chipnet_io

ROOT = Path(__file__).resolve().parent.parent.parent
MB = 1e6
_PAGE = os.sysconf("SC_PAGE_SIZE")


# -- in the child process --------------------------------------------------------------------
def rss_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * _PAGE


def _status_kb(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    return None


def reset_hwm():
    """Resets the kernel's peak-RSS mark VmHWM (Linux >= 4.0); False when not permitted."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return False
    return True


class RssSampler(threading.Thread):
    """Samples the process RSS every ``interval`` seconds; ``peak`` is the largest sample."""

    def __init__(self, interval=0.005):
        super().__init__(daemon=True)
        self.interval = interval
        self.peak = rss_bytes()
        self.samples = 1
        self._stop_event = threading.Event()

    def run(self):
        while not self._stop_event.is_set():
            self.peak = max(self.peak, rss_bytes())
            self.samples += 1
            self._stop_event.wait(self.interval)

    def stop(self):
        self._stop_event.set()
        self.join()
        self.peak = max(self.peak, rss_bytes())


def measure_memory(step, state, args, with_tracemalloc=False):
    """RSS (and optionally tracemalloc) peak of one run of ``step``, beyond the RSS before it."""
    gc.collect()
    time.sleep(0.05)
    before = rss_bytes()
    hwm_reset = reset_hwm()
    sampler = RssSampler()
    sampler.start()
    if with_tracemalloc:
        tracemalloc.start()
    t0 = time.perf_counter()
    result = run_step(step, state, args)
    elapsed = time.perf_counter() - t0
    traced = tracemalloc.get_traced_memory()[1] if with_tracemalloc else None
    if with_tracemalloc:
        tracemalloc.stop()
    sampler.stop()
    after = rss_bytes()
    hwm = _status_kb("VmHWM") if hwm_reset else None
    peak = max(sampler.peak, after, hwm or 0)
    del result
    return {
        "time_s": elapsed,
        "rss_before_bytes": before,
        "rss_after_bytes": after,
        "peak_rss_sampled_bytes": sampler.peak,
        "peak_rss_vmhwm_bytes": hwm,
        "samples": sampler.samples,
        "peak_extra_bytes": peak - before,
        "retained_bytes": after - before,
        "tracemalloc_peak_bytes": traced,
    }


def child_main(args):
    out = {"step": args.child, "dense_weight_bytes": None}
    phases = ("cold", "warm") if args.quick else ("cold", "warm", "tracemalloc")  # tracemalloc is slow
    for phase in phases:
        state = prepare(args.child, args)
        out["dense_weight_bytes"] = weight_bytes(state["dense"])
        out[phase] = measure_memory(args.child, state, args, with_tracemalloc=phase == "tracemalloc")
        del state
        gc.collect()
    out["ru_maxrss_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    chipnet_io.write_json(args.child_output, out)


# -- in the parent process -------------------------------------------------------------------
def measure_in_subprocess(step, args):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "child.json"
        cmd = [sys.executable, "-m", "benchmarks.strip", "--child", step, "--child_output", str(path)]
        cmd += ["--model", args.model, "--seed", str(args.seed), "--budget", str(args.budget)]
        cmd += ["--quick"] if args.quick else []
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            sys.stderr.write(proc.stderr[-4000:])
            raise RuntimeError(f"memory child for step {step!r} failed (exit {proc.returncode})")
        return json.loads(path.read_text())


def measure_memory_all(args):
    """Per step, the fresh-subprocess memory measurement (see :func:`measure_in_subprocess`)."""
    memory = {}
    for step in STEPS:
        memory[step] = measure_in_subprocess(step, args)
        c = memory[step]["cold"]
        print(
            f"  memory child {step:<11}: RSS before {c['rss_before_bytes'] / MB:.0f} MB, peak extra "
            f"{c['peak_extra_bytes'] / MB:.1f} MB ({c['samples']} samples, VmHWM "
            f"{'reset' if c['peak_rss_vmhwm_bytes'] is not None else 'unavailable'})",
            flush=True,
        )
    return memory
