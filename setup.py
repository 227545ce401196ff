"""chipnet_tf: ChipNet budget-aware structured pruning for TensorFlow / tf_keras."""

import re

from setuptools import find_packages, setup

with open("chipnet_tf/__init__.py") as f:
    version = re.search(r'__version__ = "([^"]+)"', f.read()).group(1)

setup(
    name="chipnet_tf",
    version=version,
    description="ChipNet budget-aware structured (channel) pruning for tf_keras, tfmot-compatible",
    long_description=open("README.md").read(),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["chipnet_tf", "chipnet_tf.*"]),
    python_requires=">=3.11,<3.13",
    install_requires=[
        # tf_keras must match TensorFlow's minor version; tfmot 0.8.1 and keras-cv 0.9.0
        # are the releases tested with TF 2.21 under TF_USE_LEGACY_KERAS=1.
        "tensorflow>=2.21,<2.22",
        "tf-keras>=2.21,<2.22",
        # Keras 3 models (import keras) are pruned too; tested with 3.15.1.
        "keras>=3.15,<4",
        "tensorflow-model-optimization==0.8.1",
        "numpy>=1.26,<3",
        "absl-py>=1.4,<3",
        # tensorflow-cpu does not pull tensorboard in; PruningSummaries writes summaries.
        "tensorboard>=2.21,<2.22",
    ],
    extras_require={
        "recipes": [
            "keras-cv==0.9.0",
            "tensorflow-datasets==4.9.10",
            # tfds resolves a builder's code path through etils.epath, which imports
            # importlib_resources; tfds does not declare it (needed by recipes' digits builder).
            "importlib-resources>=6,<8",
            "scikit-learn>=1.3,<2",
            "matplotlib>=3.7,<4",
        ],
        "export": ["ai-edge-litert>=2.0,<3"],
        # Keras 3's other backends (KERAS_BACKEND=jax / torch). torch is pinned to the CPU build
        # that lies on this workplace's disk: any other release resolves to a CUDA build of
        # several GB from PyPI. Tested with jax 0.10.2 and torch 2.13.0+cpu.
        "backends": ["jax[cpu]>=0.10,<0.11", "torch==2.13.0"],
        # The documentation site (make docs): tested with mkdocs 1.6.1, mkdocs-material 9.8.2,
        # mkdocstrings 1.0.8 and mkdocstrings-python 2.0.11.
        "docs": [
            "mkdocs>=1.6,<2",
            "mkdocs-material>=9.5,<10",
            "mkdocstrings>=1.0,<2",
            "mkdocstrings-python>=2.0,<3",
        ],
        "test": [
            "pytest>=8,<10",
            # make test runs pytest on both cores (-n 2): the suite is mostly single-threaded Python.
            "pytest-xdist>=3.6,<4",
            "ruff==0.17.6",
            "import-linter>=2.5,<3",
            "scikit-learn>=1.3,<2",
            "keras-cv==0.9.0",
            "tensorflow-datasets==4.9.10",
            "importlib-resources>=6,<8",
            "ai-edge-litert>=2.0,<3",
            # Keras 3 zoo tests: keras-hub backbones built from arguments (no presets).
            "keras-hub==0.32.0",
            # Third-party CNN zoo tests (tests/test_zoo_kecam.py): models built offline, pretrained=None.
            "keras-cv-attention-models==1.4.3",
        ],
    },
    entry_points={"console_scripts": ["chipnet-tf=chipnet_tf.cli:run"]},
    classifiers=[
        "Programming Language :: Python :: 3",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
)
