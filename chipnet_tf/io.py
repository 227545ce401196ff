"""File helpers: every file chipnet_tf writes is written atomically."""

import contextlib
import json
import os
import tempfile
import zipfile


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


def saved_keras_version(path):
    """The version of the Keras that saved the ``.keras`` or ``.h5`` file at ``path``: its
    ``keras_version`` (``metadata.json`` in a ``.keras`` zip, a root attribute of an HDF5
    file), else ``"3"`` for a ``.keras`` config of Keras 3's ``DTypePolicy`` layers, else
    ``""`` (not readable here: the tf_keras loader reports what is wrong with the file).

    Example:
        >>> saved_keras_version("small.keras")  # doctest: +SKIP
        '3.15.1'
    """
    if not path.endswith(".keras"):
        try:
            import h5py

            with h5py.File(path, "r") as f:
                version = f.attrs.get("keras_version", "")
        except (ImportError, OSError):
            return ""
        return version.decode() if isinstance(version, bytes) else str(version)
    try:
        with zipfile.ZipFile(path) as z:
            names = set(z.namelist())
            if "metadata.json" in names:
                version = json.loads(z.read("metadata.json")).get("keras_version")
                if version:
                    return str(version)
            if "config.json" in names and b'"DTypePolicy"' in z.read("config.json"):
                return "3"
    except (zipfile.BadZipFile, OSError, ValueError):
        pass
    return ""
