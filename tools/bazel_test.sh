#!/usr/bin/env bash
# Run the unit tests under Bazel, fully offline, from any checkout location.
#
#   tools/bazel_test.sh                       # bazel test //:unit_tests
#   tools/bazel_test.sh //:test_masks         # other targets instead
#   tools/bazel_test.sh --test_output=all     # extra flags (targets default)
#
# Needs Debian's `bazel-bootstrap` (Bazel 4.2.3) and the project virtualenv at
# <checkout>/.venv (tests run on .venv/bin/python3, see tools/python3).
# Set CHIPNET_PYTHON=/path/to/python to use another interpreter instead.
#
# Environment knobs:
#   BAZEL                      bazel binary (default: bazel-4, else bazel)
#   CHIPNET_BAZEL_OUTPUT_BASE  output base (default: /tmp/chipnet-bazel/<hash of checkout path>)
#   CHIPNET_BAZEL_BATCH=1      use `bazel --batch` (default when CI is set):
#                              no Bazel server is left running afterwards.
#
# Exits with Bazel's exit code. After the run it prints one closing line
# "bazel: N passed, N failed[, N skipped]" counting pytest test cases.
set -uo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
cd "$root" || exit 2

if [[ -n "${BAZEL:-}" ]]; then
    bazel_bin="$BAZEL"
elif command -v bazel-4 >/dev/null 2>&1; then
    # Debian's real Bazel 4 binary; /usr/bin/bazel is a version-picking wrapper.
    bazel_bin="bazel-4"
elif command -v bazel >/dev/null 2>&1; then
    bazel_bin="bazel"
else
    echo "bazel_test.sh: bazel not found; install it with: apt-get install -y bazel-bootstrap" >&2
    exit 2
fi

if [[ -z "${CHIPNET_PYTHON:-}" && ! -x "$root/.venv/bin/python3" ]]; then
    echo "bazel_test.sh: no virtualenv interpreter at $root/.venv/bin/python3" >&2
    echo "  create the venv there (with tensorflow, tf_keras, pytest) or set CHIPNET_PYTHON" >&2
    exit 2
fi

if [[ -n "${CHIPNET_BAZEL_OUTPUT_BASE:-}" ]]; then
    output_base="$CHIPNET_BAZEL_OUTPUT_BASE"
else
    # One output base per checkout path (as Bazel's default does), but under
    # /tmp rather than ~/.cache.
    path_hash="$(printf '%s' "$root" | md5sum | cut -c1-12)"
    output_base="/tmp/chipnet-bazel/$path_hash"
fi
mkdir -p "$output_base" || exit 2

startup=(--output_base="$output_base")
if [[ "${CHIPNET_BAZEL_BATCH:-${CI:+1}}" == "1" || "${CHIPNET_BAZEL_BATCH:-}" == "true" ]]; then
    startup+=(--batch)
else
    # Keep the server for quick reruns, but do not leave it around for long.
    startup+=(--max_idle_secs=900)
fi

flags=(
    --jobs=2
    --local_test_jobs=2
    --test_output=errors
)
if [[ -n "${CHIPNET_PYTHON:-}" ]]; then
    flags+=(--test_env=CHIPNET_PYTHON)
fi
if [[ -n "${CI:-}" ]]; then
    flags+=(--color=no --curses=no --show_progress_rate_limit=30)
fi

# Default target unless the caller named one.
targets=(//:unit_tests)
for arg in "$@"; do
    case "$arg" in
        //* | :* | @*) targets=() ; break ;;
    esac
done

log="$(mktemp "${TMPDIR:-/tmp}/bazel_test.XXXXXX.log")"
trap 'rm -f "$log"' EXIT

"$bazel_bin" "${startup[@]}" test "${flags[@]}" "$@" "${targets[@]}" 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}

# Closing summary over the pytest cases of every test target Bazel reported
# (JUnit XML written by tools/pytest_main.py into bazel-testlogs/).
python3 - "$log" "$root/bazel-testlogs" <<'PY' || true
import os
import re
import sys
import xml.etree.ElementTree as ET

log_path, testlogs = sys.argv[1], sys.argv[2]
status_re = re.compile(
    r"^(//\S*|@\S+)\s+(?:\(cached\)\s+)?"
    r"(PASSED|FAILED TO BUILD|FAILED|TIMEOUT|FLAKY|NO STATUS|INCOMPLETE)\b"
)
passed = failed = skipped = 0
seen = False
with open(log_path, errors="replace") as fh:
    for line in fh:
        m = status_re.match(line.strip())
        if not m:
            continue
        seen = True
        label, status = m.groups()
        pkg, _, name = label.lstrip("/").partition(":")
        xml_path = os.path.join(testlogs, pkg, name, "test.xml")
        counted = False
        if status in ("PASSED", "FAILED", "FLAKY") and os.path.isfile(xml_path):
            try:
                root = ET.parse(xml_path).getroot()
                suites = [root] if root.tag == "testsuite" else root.iter("testsuite")
                for s in suites:
                    n = int(s.get("tests", 0))
                    bad = int(s.get("failures", 0)) + int(s.get("errors", 0))
                    skip = int(s.get("skipped", 0))
                    passed += n - bad - skip
                    failed += bad
                    skipped += skip
                    counted = True
            except (ET.ParseError, ValueError):
                pass
        if not counted and status != "PASSED":
            failed += 1
if seen:
    line = "bazel: %d passed, %d failed" % (passed, failed)
    if skipped:
        line += ", %d skipped" % skipped
    print(line)
PY

exit "$rc"
