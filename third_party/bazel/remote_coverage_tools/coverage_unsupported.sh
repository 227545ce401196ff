#!/bin/sh
# Stand-in for Bazel's coverage tools, which cannot be downloaded here.
echo "bazel coverage is not supported in this offline setup; use pytest-cov instead" >&2
exit 1
