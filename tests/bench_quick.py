"""Starts `make bench-quick` in the background and collects its result (see conftest.py)."""

import dataclasses
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
KEY = pytest.StashKey()
TIMEOUT_S = 1800


@dataclasses.dataclass
class QuickRun:
    out: Path
    proc: subprocess.Popen
    log: object

    def result(self):
        """Waits for the run; returns (output directory, its stdout+stderr)."""
        try:
            self.proc.wait(timeout=TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.stop()
            raise
        self.log.seek(0)
        return self.out, self.proc.returncode, self.log.read()

    def stop(self):
        """Stops make, the suite, the benchmark and its workers: the whole process group."""
        if self.proc.poll() is None:
            for sig in (signal.SIGTERM, signal.SIGKILL):
                try:
                    os.killpg(self.proc.pid, sig)
                    self.proc.wait(timeout=10)
                    break
                except ProcessLookupError:
                    break
                except subprocess.TimeoutExpired:
                    continue

    def cleanup(self):
        self.stop()
        self.log.close()
        shutil.rmtree(self.out, ignore_errors=True)


def command(out):
    """`make bench-quick` into ``out`` (the command `python -m benchmarks.suite --quick` without make/.venv)."""
    if shutil.which("make") and (ROOT / ".venv" / "bin" / "python").exists():
        return ["make", "-s", "bench-quick", f"BENCH_ARGS=--output_dir {out}"]
    return [sys.executable, "-m", "benchmarks.suite", "--quick", "--output_dir", str(out)]


def start():
    out = Path(tempfile.mkdtemp(prefix="bench_quick_"))
    log = tempfile.TemporaryFile(mode="w+")
    env = dict(os.environ, TF_USE_LEGACY_KERAS="1")
    proc = subprocess.Popen(
        command(out), cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, text=True, env=env, start_new_session=True
    )
    return QuickRun(out, proc, log)
