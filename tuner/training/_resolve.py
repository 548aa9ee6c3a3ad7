"""Turn a trainable reference from the spec into the function that trains one trial.

``builtin:NAME`` picks a trainable shipped with tuner; ``package.module:function`` imports the
user's own ``fit(config, ctx)``. Every failure is a ``TrainableError`` whose single line says
what to fix, because it is what a user sees when a whole study refuses to start.
"""

from __future__ import annotations

import importlib
import os
import re
import sys
from collections.abc import Callable
from typing import Any

from tuner._errors import TrainableError
from tuner.training._context import TrialContext
from tuner.training._trainer import fit_cnn, fit_mlp

__all__ = ["BUILTIN_TRAINABLES", "Trainable", "resolve_trainable"]

Trainable = Callable[[dict[str, Any], TrialContext], "float | dict[str, float]"]

BUILTIN_TRAINABLES: dict[str, Trainable] = {"mlp": fit_mlp, "cnn": fit_cnn}

_DOTTED = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")
_FORMAT = "expected 'package.module:function' or 'builtin:mlp'"


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _import(module_name: str) -> Any:
    cwd = os.getcwd()
    if cwd not in sys.path:  # `tuner run` from a project folder should find its modules
        sys.path.insert(0, cwd)
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        missing = e.name or ""
        if missing == module_name or module_name.startswith(missing + "."):
            raise TrainableError(
                f"trainable module '{module_name}' not found (no module named '{missing}'); "
                f"check PYTHONPATH and the working directory ({cwd})"
            ) from e
        raise TrainableError(
            f"importing trainable module '{module_name}' failed: it needs '{missing}', which is "
            "not installed"
        ) from e
    except Exception as e:  # the user's module raised while being imported
        raise TrainableError(
            _one_line(f"importing trainable module '{module_name}' failed: {type(e).__name__}: {e}")
        ) from e


def resolve_trainable(ref: str) -> Trainable:
    """The callable ``ref`` names; raise ``TrainableError`` with a one-line reason otherwise."""
    if not isinstance(ref, str) or ref.count(":") != 1:
        raise TrainableError(f"trainable {ref!r}: {_FORMAT}")
    module_name, attr_path = (part.strip() for part in ref.split(":"))
    if module_name == "builtin":
        if attr_path not in BUILTIN_TRAINABLES:
            names = ", ".join(f"builtin:{n}" for n in sorted(BUILTIN_TRAINABLES))
            raise TrainableError(f"unknown built-in trainable {ref!r}; built-ins are: {names}")
        return BUILTIN_TRAINABLES[attr_path]
    if not _DOTTED.match(module_name) or not _DOTTED.match(attr_path):
        raise TrainableError(f"trainable {ref!r}: {_FORMAT}")
    target: Any = _import(module_name)
    for part in attr_path.split("."):
        if not hasattr(target, part):
            raise TrainableError(
                f"module '{module_name}' has no attribute '{attr_path}'; check the name after ':'"
            )
        target = getattr(target, part)
    if not callable(target):
        raise TrainableError(
            f"'{ref}' is a {type(target).__name__}, not a function; it must be callable as "
            "fn(config, ctx)"
        )
    return target  # type: ignore[no-any-return]
