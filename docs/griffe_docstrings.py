"""A griffe extension for the API reference: trainbus's docstrings as mkdocstrings renders them.

mkdocs.yml loads it (``extensions`` of the Python handler). trainbus's docstrings
are Google style with reST inline roles; two things in them read badly as
Markdown, and are rewritten before the docstring is parsed:

- an ``Example:`` section (singular) would be an admonition whose ``>>>``
  lines Markdown turns into block quotes; it becomes an ``Examples:`` section,
  whose doctests render as Python code;
- reST roles such as ``:class:`~trainbus.ModelHandle``` become inline code
  (`` `ModelHandle` ``: with ``~`` the last part of the name, as Sphinx shows it).

Example:
    >>> rewrite("Pass events.\\n\\nExample:\\n    >>> Every(3)\\n    every=3\\n")
    'Pass events.\\n\\nExamples:\\n    >>> Every(3)\\n    every=3\\n'
    >>> rewrite("See :class:`~trainbus.ModelHandle` and :func:`fit`.")
    'See `ModelHandle` and `fit`.'
"""

from __future__ import annotations

import re
from typing import Any

import griffe

EXAMPLE_HEADING = re.compile(r"^(\s*)Example:[ \t]*$", re.MULTILINE)
ROLE = re.compile(r":(?:class|func|meth|attr|mod|data|exc|obj|const):`(~?)([^`]+)`")


def _role(match: re.Match[str]) -> str:
    short, name = match.groups()
    return f"`{name.rsplit('.', 1)[-1] if short else name}`"


def rewrite(text: str) -> str:
    """The docstring ``text`` with ``Example:`` sections and reST roles made Markdown-ready."""
    return ROLE.sub(_role, EXAMPLE_HEADING.sub(r"\1Examples:", text))


class TrainbusDocstrings(griffe.Extension):
    """Rewrite each object's docstring with :func:`rewrite` once the object tree is loaded."""

    def on_object(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        """Rewrite ``obj``'s docstring, if it has one."""
        if obj.docstring is not None:
            obj.docstring.value = rewrite(obj.docstring.value)
