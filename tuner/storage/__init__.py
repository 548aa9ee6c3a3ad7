"""Storage: Optuna's RDB storage and tuner's own tables on one engine."""

from tuner.storage._engine import (
    DEFAULT_URL,
    ENV_VAR,
    EmptyStorageError,
    Storage,
    get_storage,
    open_storage,
    redact,
    resolve_url,
)
from tuner.storage._tables import Base, CurveRow, StudyRow, TrialRow

__all__ = [
    "Storage", "EmptyStorageError", "open_storage", "get_storage", "resolve_url", "redact", "DEFAULT_URL", "ENV_VAR",
    "Base", "StudyRow", "TrialRow", "CurveRow",
]
