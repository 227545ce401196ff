# Quick start: `make demo` and `make test` (each creates .venv and installs what it needs).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export TF_USE_LEGACY_KERAS := 1
export TF_CPP_MIN_LOG_LEVEL := 2

.PHONY: demo test lint docs format pytest pytest-backends bazel-test bench bench-quick bench-accuracy bench-overhead bench-strip bench-latency bench-fashion fashion-data reference clean

# $(call apt_install,PATH,PACKAGE): install the Debian PACKAGE when PATH does not exist
# (offline data sets: the recipes and benchmarks read them from /usr/share/datasets).
define apt_install
	test -e $(1) || { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $(2); }
endef

FASHION_MNIST_DIR := /usr/share/datasets/fashion-mnist

$(STAMP): setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test,recipes,export,backends]"
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m examples.demo

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports

format: $(STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

pytest: $(STAMP)
	$(PY) -m pytest -n 2 -ra --durations=25 tests

# The Keras 3 tests again on Keras 3's JAX and PyTorch backends (the tf_keras cases and the
# TensorFlow-only ones need no second run; the files choose by KERAS_BACKEND).
KERAS3_TESTS := tests/test_keras3_prune.py tests/test_keras3_analyze.py tests/test_keras3_latency_cli.py \
	tests/test_attention_heads.py tests/test_recipes_keras3.py
pytest-backends: $(STAMP)
	KERAS_BACKEND=jax $(PY) -m pytest -q -m "not slow" -p no:cacheprovider $(KERAS3_TESTS)
	KERAS_BACKEND=torch $(PY) -m pytest -q -m "not slow" -p no:cacheprovider $(KERAS3_TESTS)

bazel-test: $(STAMP)
	command -v bazel-4 >/dev/null 2>&1 || command -v bazel >/dev/null 2>&1 || \
		{ apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q bazel-bootstrap; }
	bash tools/bazel_test.sh

# The documentation site, built offline into site/; --strict fails on a broken link, a
# missing anchor or an API name mkdocstrings cannot find.
DOCS_STAMP := $(VENV)/.docs-installed

$(DOCS_STAMP): $(STAMP)
	$(PY) -m pip install --quiet -e ".[docs]"
	touch $(DOCS_STAMP)

docs: $(DOCS_STAMP)
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --site-dir site

# pytest runs last so that its summary line closes the output.
test: lint docs bazel-test pytest-backends pytest

# Rebuilds the committed reference set (saved_models/reference/digits_small_cnn).
reference: $(STAMP)
	$(PY) -m recipes.reference

# The whole benchmark suite (under an hour on 2 cores): benchmarks/results/*.json, the PNGs
# and benchmarks/RESULTS.md. bench-quick (a few minutes) writes to benchmarks/results/quick/.
# Extra arguments: make bench BENCH_ARGS="--only accuracy" (see python -m benchmarks.suite -h).
bench: $(STAMP) fashion-data
	$(PY) -m benchmarks.suite $(BENCH_ARGS)

# Fashion-MNIST's four idx gzip files (Debian's dataset-fashion-mnist), read by --dataset=fashion_mnist.
fashion-data:
	$(call apt_install,$(FASHION_MNIST_DIR),dataset-fashion-mnist)

# The Fashion-MNIST grid, then latency-budget ChipNet next to FLOPs-budget ChipNet at equal latency.
bench-fashion: $(STAMP) fashion-data
	$(PY) -m benchmarks.accuracy --dataset=fashion_mnist $(BENCH_ARGS)
	$(PY) -m benchmarks.latency.accuracy

bench-quick: $(STAMP)
	$(PY) -m benchmarks.suite --quick $(BENCH_ARGS)

bench-accuracy: $(STAMP)
	$(PY) -m benchmarks.accuracy

bench-overhead: $(STAMP)
	$(PY) -m benchmarks.overhead

bench-strip: $(STAMP)
	$(PY) -m benchmarks.strip

# The FLOPs-budget latency rows, then the latency budget: predictor error and
# latency-budget rows (benchmarks/latency/budget.py; BENCH_ARGS go to the latter).
bench-latency: $(STAMP)
	$(PY) -m benchmarks.latency
	$(PY) -m benchmarks.latency.budget $(BENCH_ARGS)

clean:
	rm -rf $(VENV) bazel-* *.egg-info
