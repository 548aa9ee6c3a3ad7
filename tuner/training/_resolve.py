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

__all__ = ["BUILTIN_TRAINABLES", "Trainable", "resolve_trainable", "forget_changed_modules"]

Trainable = Callable[[dict[str, Any], TrialContext], "float | dict[str, float]"]

BUILTIN_TRAINABLES: dict[str, Trainable] = {"mlp": fit_mlp, "cnn": fit_cnn}

_DOTTED = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")
_FORMAT = "expected 'package.module:function' or 'builtin:mlp'"


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


_user_modules: dict[str, tuple[str, int | None]] = {}
"""Modules a user trainable's import brought in from outside the Python environment (the user's
own code): name -> (file, modification time when imported)."""


def forget_changed_modules() -> list[str]:
    """If a source file of the user's imported modules changed since it was imported, drop all
    of them from ``sys.modules`` (a changed helper must not run beside its old caller), so that
    the next :func:`resolve_trainable` imports the code as it is now. Returns the dropped names.

    A warm worker (``tuner up``, or a second ``tuner.submit`` in one session) calls this when a
    study starts: without it, it would go on training with the code of the study before."""
    if not any(_mtime(file) != mtime for file, mtime in _user_modules.values()):
        return []
    names = sorted(_user_modules)
    for name in names:
        sys.modules.pop(name, None)
    _user_modules.clear()
    importlib.invalidate_caches()
    return names


def _mtime(file: str) -> int | None:
    try:
        return os.stat(file).st_mtime_ns
    except OSError:
        return None


def _environment_dirs() -> tuple[str, ...]:
    """Where installed code lives (the interpreter's prefixes and site-packages, and tuner)."""
    import site

    dirs = {sys.prefix, sys.base_prefix, sys.exec_prefix, *site.getsitepackages(),
            site.getusersitepackages(), os.path.dirname(os.path.dirname(__file__))}
    return tuple(os.path.join(os.path.realpath(d), "") for d in dirs if d)


def _remember(names: set[str]) -> None:
    installed = _environment_dirs()
    for name in names:
        file = getattr(sys.modules.get(name), "__file__", None)
        if file and not os.path.realpath(file).startswith(installed):
            _user_modules[name] = (file, _mtime(file))


def _import(module_name: str) -> Any:
    cwd = os.getcwd()
    if cwd not in sys.path:  # `tuner run` from a project folder should find its modules
        sys.path.insert(0, cwd)
    before = set(sys.modules)
    try:
        module = importlib.import_module(module_name)
        _remember(set(sys.modules) - before)
        return module
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
