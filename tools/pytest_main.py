"""Bazel py_test entry point: runs one pytest module, exits with pytest's code.

Usage (from a py_test's args): pytest_main.py <path/to/test_module.py> [extra pytest args]
"""

import os
import sys

import pytest


def main(argv):
    if len(argv) < 2:
        sys.stderr.write("usage: pytest_main.py TEST_FILE [PYTEST_ARGS...]\n")
        return 2
    args = [argv[1], "-q", "-p", "no:cacheprovider"]
    # Bazel tells each test where to put its JUnit XML; let pytest write it so
    # that per-case results show up in bazel-testlogs/.../test.xml.
    xml_output = os.environ.get("XML_OUTPUT_FILE")
    if xml_output:
        args.append("--junitxml=" + xml_output)
    args.extend(argv[2:])
    return int(pytest.main(args))


if __name__ == "__main__":
    sys.exit(main(sys.argv))
