"""One root exception for everything tuner raises on purpose.

The CLI turns any :class:`TunerError` into one line on stderr and a non-zero exit code, so messages
must say what was wrong *and* what to do about it.
"""

from __future__ import annotations

__all__ = [
    "TunerError",
    "SpecError",
    "StorageError",
    "StudyNotFoundError",
    "StudyExistsError",
    "StudyBusyError",
    "TrainableError",
    "StudyCancelled",
    "Diverged",
]


class TunerError(Exception):
    """Root of tuner's own errors. ``exit_code`` is what the CLI returns for it."""

    exit_code: int = 1


class SpecError(TunerError):
    """The study spec (or a CLI override of it) is invalid. ``field`` is the dotted path."""

    exit_code = 2

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}" if field else message)

    def __reduce__(self) -> tuple[type, tuple[str, str]]:
        # Ray pickles an actor's exception to re-raise it in the driver: rebuild from the fields
        return (type(self), (self.field, self.message))


class StorageError(TunerError):
    """The database could not be reached or its schema is not what tuner expects."""


class StudyNotFoundError(TunerError):
    """A study name that is not in the storage."""

    exit_code = 2


class StudyExistsError(TunerError):
    """``submit`` was asked to create a study whose name is taken."""

    exit_code = 2


class StudyBusyError(TunerError):
    """Another live driver runs the study (it holds the study's lease)."""

    exit_code = 2


class TrainableError(TunerError):
    """The user's trainable could not be imported or broke its contract."""

    exit_code = 2


class StudyCancelled(TunerError):
    """``tuner cancel`` stopped the study; its running trials re-run on ``tuner resume``."""


class Diverged(TunerError):
    """A training loss became NaN or infinite: the trial fails with reason ``diverged``."""

    def __init__(self, epoch: int, metric: str = "train_loss") -> None:
        self.epoch = epoch
        self.metric = metric
        super().__init__(f"{metric} became NaN/inf at epoch {epoch}")

    def __reduce__(self) -> tuple[type, tuple[int, str]]:
        return (type(self), (self.epoch, self.metric))
