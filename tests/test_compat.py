"""compat.native_log_filter: native log lines below TF_CPP_MIN_LOG_LEVEL are held back."""

import os

from chipnet_tf.compat import native_log_filter


def test_native_log_filter_drops_lines_below_the_level_and_keeps_the_rest_in_order(capfd, monkeypatch):
    lines = [
        "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n",
        "I0000 00:00:1796057141.180716    7952 port.cc:153] oneDNN custom operations are on.\n",
        "W0000 00:00:1796057141.180991    7952 helpers.cc:31] a warning\n",
        "E0000 00:00:1796057141.180991    7952 real.cc:31] a real error\n",
        "INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\n",
        "plain text from a library\n",
    ]
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "2")
    with native_log_filter():
        for line in lines:
            os.write(2, line.encode())
    assert capfd.readouterr().err == lines[3] + lines[5]
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "0")
    with native_log_filter():
        for line in lines:
            os.write(2, line.encode())
    assert capfd.readouterr().err == "".join(lines)
