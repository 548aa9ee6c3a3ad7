"""Training: the trial context, the built-in ``builtin:mlp`` / ``builtin:cnn`` trainables and
their data layer.

A trainable is any ``fn(config: dict, ctx: TrialContext) -> float | dict``; ``resolve_trainable``
finds one from the spec's string; ``fit_mlp`` and ``fit_cnn`` are the ones tuner ships.

Names are attached lazily (scientific Python's ``lazy_loader``): the spec checks (``_checks``)
need no torch, and the CLI should not pay seconds of torch import to validate a spec or read a
study.
"""

from __future__ import annotations

import lazy_loader as lazy

# What a trainable's author uses; the rest (key sets, metric names) stays in the modules.
_EXPORTS = {
    "_context": ["TrialContext"],
    "_resolve": ["Trainable", "resolve_trainable", "forget_changed_modules"],
    "_trainer": ["fit_mlp", "fit_cnn"],
    "_mlp": ["build_mlp"],
    "_cnn": ["build_cnn"],
    "_optim": ["OPTIMIZERS", "LR_DECAYS", "build_optimizer", "build_scheduler"],
    "_data": ["Dataset", "load_dataset", "clear_dataset_cache", "drop_changed_datasets"],
    "_sources": ["DATASET_NAMES"],
    "_checks": ["BUILTIN_NAMES", "check_study", "check_dataset_spec"],
}
__getattr__, __dir__, __all__ = lazy.attach(__name__, submod_attrs=_EXPORTS)
