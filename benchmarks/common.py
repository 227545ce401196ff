"""Helpers shared by the benchmark scripts."""

import contextlib
import importlib.metadata
import logging
import os
import platform
import sys

import numpy as np

import chipnet_tf
from chipnet_tf.compat import tf


def _version(dist):
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def environment(*dists):
    """Machine and package versions recorded in every results JSON (plus ``dists``' versions)."""
    env = {
        "python": sys.version.split()[0],
        "tensorflow": tf.__version__,
        "tf_keras": _version("tf_keras"),
        **{dist.replace("-", "_"): _version(dist) for dist in dists},
        "chipnet_tf": chipnet_tf.__version__,
        "numpy": np.__version__,
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": platform.processor() or None,
        "os_cpu_count": os.cpu_count(),
        "sched_affinity_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "gpus": [d.name for d in tf.config.list_physical_devices("GPU")],
    }
    return env


@contextlib.contextmanager
def quiet(logger_name):
    """Raises the Python logger ``logger_name`` to ERROR inside the block (tfmot/absl chatter)."""
    logger = logging.getLogger(logger_name)
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)
