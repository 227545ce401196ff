"""The README's example and the user guide's Python blocks run as written, like a user pasting them.

A block fenced ```` ```python ```` runs; a block fenced ```` ```{.python .no-run} ```` is only
compiled (it needs a device, a checkpoint or names from elsewhere). A document's runnable
blocks run in order in one fresh process, in a temporary directory, with ``EPOCHS = N``
lowered to 2 so that the runs stay short.
"""

import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = os.path.join(ROOT, "README.md")
GUIDE = os.path.join(ROOT, "docs", "guide")
GUIDE_PAGES = sorted(name for name in os.listdir(GUIDE) if name.endswith(".md"))
DOCUMENTS = [README, os.path.join(ROOT, "docs", "index.md")] + [os.path.join(GUIDE, p) for p in GUIDE_PAGES]
FENCE = re.compile(r"^```(?P<info>[^\n`]*)\n(?P<code>.*?)^```[ \t]*$", re.M | re.S)
EPOCHS = re.compile(r"^EPOCHS = \d+\b", re.M)

# What each page's run must print, and the files it must leave in its working directory.
# quick-start.md is not run: its example is the README's (asserted below) and runs there.
EXPECTED = {
    "README.md": (["ChipNet budget: 0.25 of flops"], {"small.tflite"}),
    "worked-example.md": (
        ["ChipNet budget: 0.25 of flops", "BestHardMasks: restored the weights of epoch"],
        {"masks.npz", "pruned.keras", "small.keras", "logs"},
    ),
    "latency-budgets.md": (["ChipNet budget: 0.5 of latency"], {"table.json"}),
    "tflite-tfmot-cli.md": (
        ["TFLite vs Keras on 397 samples"],
        {"model.tflite", "model_fp16.tflite", "model_dyn.tflite", "model_int8.tflite", "qat.tflite"},
    ),
    "recipes.md": (["ChipNet budget: 0.5 of flops"], set()),
    "custom-layers.md": (["numerical probe"], set()),
    "keras3.md": (["ChipNet budget: 0.25 of flops"], {"small.keras"}),
    "transformers.md": (["ChipNet budget: 0.25 of flops", "top-1 agreement"], {"small.tflite"}),
}


def python_blocks(path):
    """``[(runnable, code), ...]`` of the document's Python blocks, in order."""
    with open(path) as f:
        text = f.read()
    blocks = []
    for match in FENCE.finditer(text):
        info = match["info"].strip()
        if info == "python":
            blocks.append((True, match["code"]))
        elif info.startswith("{") and ".python" in info.strip("{}").split():
            blocks.append((".no-run" not in info.strip("{}").split(), match["code"]))
    return blocks


def runnable_code(path):
    return "\n".join(code for runnable, code in python_blocks(path) if runnable)


def run(code, cwd):
    """Runs ``code`` in a fresh interpreter that imports this checkout's chipnet_tf."""
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    env["PYTHONPATH"] = os.pathsep.join([ROOT, env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["CHIPNET_TF_CACHE"] = os.path.join(cwd, "latency_cache")  # a latency profile measures afresh
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=900, env=env)


@pytest.mark.parametrize("path", DOCUMENTS, ids=os.path.basename)
def test_python_blocks_compile(path):
    blocks = python_blocks(path)
    for i, (_, code) in enumerate(blocks):
        compile(code, f"{path} block {i + 1}", "exec")
    if path != os.path.join(ROOT, "docs", "index.md"):
        compile(runnable_code(path), path, "exec")  # the runnable blocks as one program


def test_readme_example_shows_every_step_in_about_thirty_lines():
    blocks = python_blocks(README)
    assert len(blocks) == 1 and blocks[0][0], "the README has one runnable Python block"
    code = blocks[0][1]
    for step in (
        "chipnet_tf.prune_low_budget(",
        "chipnet_tf.UpdatePruningStep()",
        "chipnet_tf.get_masks(",
        "chipnet_tf.strip_pruning(",
        "export.to_tflite(",
    ):
        assert step in code, step
    assert len(EPOCHS.findall(code)) == 1
    assert len(code.splitlines()) <= 35


def test_readme_stays_short():
    with open(README) as f:
        assert len(f.read().splitlines()) <= 200


def test_readme_links_point_to_files_in_the_repository():
    with open(README) as f:
        targets = re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", f.read())
    local = [t for t in targets if "://" not in t]
    assert local, "the README links into docs/"
    missing = [t for t in local if not os.path.exists(os.path.join(ROOT, t))]
    assert not missing, missing


def test_quick_start_example_is_the_readme_example():
    assert runnable_code(os.path.join(GUIDE, "quick-start.md")) == runnable_code(README)


def test_every_runnable_document_has_expectations():
    runnable = {os.path.basename(p) for p in DOCUMENTS if any(r for r, _ in python_blocks(p))}
    assert runnable - {"quick-start.md"} == set(EXPECTED)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_document_runs_as_written(name, tmp_path):
    path = README if name == "README.md" else os.path.join(GUIDE, name)
    code = EPOCHS.sub("EPOCHS = 2", runnable_code(path))
    proc = run(code, str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-3000:]
    output = proc.stdout + proc.stderr
    printed, files = EXPECTED[name]
    for text in printed:
        assert text in output, (text, proc.stdout[-3000:])
    assert files <= set(os.listdir(tmp_path)), sorted(os.listdir(tmp_path))
