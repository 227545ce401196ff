"""Griffe extension for the docs build: Google-style sections and plain code for Sphinx roles.

The library's docstrings title their doctests ``Example:``, which the Google style parser
takes for an admonition of plain text; there a doctest's output such as ``[[4]]`` reads as
a Markdown cross-reference and fails the strict build. As an ``Examples:`` section the
``>>>`` lines render as code. Sphinx roles (``:func:`name```) are shown as code. The
docstrings themselves are left as they are.
"""

import re

import griffe

_EXAMPLE = re.compile(r"^(\s*)Example:{1,2}[ \t]*$", re.M)
_ROLE = re.compile(r":(?:class|func|meth|mod|data|attr|exc|obj):`~?([^`]+)`")


class ExampleSections(griffe.Extension):
    """Renames ``Example:`` / ``Example::`` section titles to ``Examples:``; roles become code."""

    def on_instance(self, *, obj, **kwargs):
        if obj.docstring is not None:
            text = _EXAMPLE.sub(r"\1Examples:", obj.docstring.value)
            obj.docstring.value = _ROLE.sub(r"`\1`", text)
