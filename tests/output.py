"""What the command-line tests look for in a program's output."""

import re

# absl's log lines, from Python or C++ ("I1130 16:42:43.403589 1401... file.py:156]"), and
# TensorFlow's / LiteRT's own "INFO:" lines.
INFO_LINE = re.compile(r"^(I\d{4} \d\d:\d\d:\d+\.\d+ +\d+ \S+:\d+\]|INFO[: ])", re.M)


def assert_no_info_lines(stdout, stderr):
    found = INFO_LINE.findall(stdout + "\n" + stderr)
    assert not found, (found, stderr[-3000:])
