"""chipnet_tf.io: atomic writes."""

import os
import stat

import pytest

from chipnet_tf import io


def test_atomic_write_replaces_file_with_mode_0644(tmp_path):
    path = tmp_path / "out.json"
    io.write_json(path, {"a": 1})
    assert path.read_text() == '{\n  "a": 1\n}\n'
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o644
    assert os.listdir(tmp_path) == ["out.json"]


def test_interrupted_write_keeps_old_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "masks.npz"
    path.write_bytes(b"old")

    def fail(f):
        f.write(b"half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        io.atomic_write(path, fail)
    assert path.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["masks.npz"]
