"""tuner's own tables, beside Optuna's: what Optuna does not keep.

- ``tuner_studies``: the submitted spec (so ``tuner resume`` needs only the study name).
- ``tuner_trials``: who ran each trial (host, device, worker) and why it ended (``reason``).
- ``tuner_curves``: one row per trial and epoch, with all metrics the trainable reported (valid
  JSON: a non-finite value is stored as null).
- ``tuner_leases``: which driver runs a study now (one row per running study; see ``_lease``).

Optuna's own schema is declared (once) in ``tuner.storage._optuna``.
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

__all__ = ["Base", "StudyRow", "TrialRow", "CurveRow", "LeaseRow"]


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


class Base(DeclarativeBase):
    pass


class StudyRow(Base):
    __tablename__ = "tuner_studies"

    study_id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=False)
    study_name: Mapped[str] = mapped_column(sa.String(512), unique=True)
    spec_json: Mapped[str] = mapped_column(sa.Text)
    tuner_version: Mapped[str] = mapped_column(sa.String(64))
    created_at: Mapped[dt.datetime] = mapped_column(sa.DateTime, default=utcnow)


class TrialRow(Base):
    __tablename__ = "tuner_trials"
    __table_args__ = (sa.Index("ix_tuner_trials_reason", "study_id", "reason"),)

    study_id: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    number: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    host: Mapped[str | None] = mapped_column(sa.String(255))
    device: Mapped[str | None] = mapped_column(sa.String(255))
    worker: Mapped[str | None] = mapped_column(sa.String(64))
    reason: Mapped[str | None] = mapped_column(sa.String(255))
    epochs_run: Mapped[int | None] = mapped_column(sa.Integer)


class CurveRow(Base):
    __tablename__ = "tuner_curves"

    study_id: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    number: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    epoch: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    metrics: Mapped[dict[str, float]] = mapped_column(sa.JSON)


class LeaseRow(Base):
    """The driver that owns a study while it runs: taken atomically, renewed by a heartbeat."""

    __tablename__ = "tuner_leases"

    study_id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=False)
    owner: Mapped[str] = mapped_column(sa.String(64))
    host: Mapped[str] = mapped_column(sa.String(255))
    pid: Mapped[int] = mapped_column(sa.Integer)
    since: Mapped[dt.datetime] = mapped_column(sa.DateTime)
    heartbeat: Mapped[dt.datetime] = mapped_column(sa.DateTime)
