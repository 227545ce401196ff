"""Macros for this project's Bazel build."""

# Files a test module may need besides itself, added when they exist:
# everything under tests/ that is not another test module (conftest.py,
# __init__.py, helper modules, data files) and the top-level pytest configs.
_SUPPORT_INCLUDE = [
    "tests/**",
    "pytest.ini",
    "pyproject.toml",
    "setup.cfg",
    "tox.ini",
]

_SUPPORT_EXCLUDE = [
    "tests/**/test_*.py",
    "tests/**/*_test.py",
    "**/__pycache__/**",
    "**/*.pyc",
    "**/.pytest_cache/**",
]

def pytest_test(name, src, deps = [], data = [], args = [], size = "medium", **kwargs):
    """A py_test that runs one pytest module through //tools:pytest_main.py.

    The test runs as `pytest <src> -q -p no:cacheprovider [--junitxml=...] <args>`
    on the project virtualenv (see //tools:venv_py_toolchain).

    Args:
      name: target name.
      src: the test module, e.g. "tests/test_masks.py".
      deps: py_library deps (the package under test).
      data: extra runtime files; the non-test files under tests/ (conftest.py,
        helpers, data) and the top-level pytest config files are always added.
      args: extra pytest arguments, appended after the module.
      size: Bazel test size (sets the default timeout: medium = 300 s).
      **kwargs: passed on to py_test (tags, timeout, flaky, shard_count, ...).
    """
    native.py_test(
        name = name,
        main = "//tools:pytest_main.py",
        srcs = ["//tools:pytest_main.py", src],
        args = ["$(location %s)" % src] + args,
        deps = deps,
        data = data + native.glob(_SUPPORT_INCLUDE, exclude = _SUPPORT_EXCLUDE),
        size = size,
        python_version = "PY3",
        srcs_version = "PY3",
        # No __init__.py files invented in the runfiles tree: pytest then
        # imports tests/ exactly as a plain `pytest tests/...` run does
        # (rootdir-relative, sibling helper modules importable).
        legacy_create_init = False,
        **kwargs
    )
