"""File helpers: every file chipnet_tf writes is written atomically."""

import contextlib
import json
import os
import tempfile


def atomic_write(path, write, mode="wb"):
    """Writes ``path`` atomically: ``write(f)`` fills a temporary file in the same directory,
    which is flushed, fsynced and renamed over ``path``. An interrupted write leaves either
    the old file or none, never a half-written one. The file gets mode 0644.

    Example:
        >>> atomic_write("/tmp/x.txt", lambda f: f.write("hello"), mode="w")  # doctest: +SKIP

    Args:
        path: destination file; its directory must exist.
        write: callable receiving the open temporary file object.
        mode: ``"wb"`` or ``"w"``.
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise


def write_json(path, payload):
    """Writes ``payload`` as indented JSON, atomically (see :func:`atomic_write`)."""
    atomic_write(path, lambda f: f.write(json.dumps(payload, indent=2) + "\n"), mode="w")
