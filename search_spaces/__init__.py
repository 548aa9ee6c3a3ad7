"""The shipped study specs, installed as ``tuner._spaces`` (see ``[tool.setuptools]`` in pyproject).

This file makes the folder a regular package: setuptools' editable-install finder does not find
an implicit namespace package mapped from outside ``tuner/``, so after ``pip install -e .``
``tuner spaces`` would list nothing. :data:`DIR` is the one place that knows where the specs are,
in an editable install and an installed wheel alike.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["DIR"]

DIR = Path(__file__).resolve().parent
"""The folder holding the shipped ``*.yaml`` specs and ``study.schema.json``."""
