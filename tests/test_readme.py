"""The README's worked example runs as written (with fewer epochs), like a user pasting it."""

import os
import re
import subprocess
import sys

import pytest

README = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "README.md")
MARKER = "<!-- readme-example -->\n```python\n"


def readme_example():
    """The README's runnable blocks (each follows a ``readme-example`` marker), in order."""
    with open(README) as f:
        text = f.read()
    blocks = []
    for part in text.split(MARKER)[1:]:
        blocks.append(part[: part.index("```")])
    return "\n".join(blocks)


def test_readme_marks_the_worked_example_and_the_tflite_block():
    code = readme_example()
    assert len(re.findall(r"^EPOCHS = 20 ", code, re.M)) == 1
    assert "chipnet_tf.prune_low_budget(" in code and 'export.to_tflite(small, "model.tflite")' in code
    compile(code, README, "exec")  # valid Python as a whole


@pytest.mark.slow
def test_readme_worked_example_runs_as_written(tmp_path):
    code, count = re.subn(r"^EPOCHS = 20 ", "EPOCHS = 2 ", readme_example(), flags=re.M)
    assert count == 1
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=900, env=env
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "ChipNet budget: 0.25 of flops" in proc.stdout
    assert "BestHardMasks: restored the weights of epoch" in proc.stdout
    assert "TFLite vs Keras on 397 samples" in proc.stdout
    written = set(os.listdir(tmp_path))
    assert {"masks.npz", "pruned.keras", "small.keras", "model.tflite", "model_int8.tflite", "logs"} <= written
