"""Griffe extension for the docs build: reads a docstring's ``Example:`` section as ``Examples:``.

The library's docstrings title their doctests ``Example:``, which the Google style parser
takes for an admonition of plain text; there a doctest's output such as ``[[4]]`` reads as
a Markdown cross-reference and fails the strict build. As an ``Examples:`` section the
``>>>`` lines render as code. The docstrings themselves are left as they are.
"""

import re

import griffe

_EXAMPLE = re.compile(r"^(\s*)Example:{1,2}[ \t]*$", re.M)


class ExampleSections(griffe.Extension):
    """Renames ``Example:`` / ``Example::`` section titles to ``Examples:``."""

    def on_instance(self, *, obj, **kwargs):
        if obj.docstring is not None:
            obj.docstring.value = _EXAMPLE.sub(r"\1Examples:", obj.docstring.value)
