"""tuner 0.2.0: indexes for whole-study reads (dashboard, ``tuner status``) at 100k trials.

Revision ID: v0.2.0
Revises: v0.1.0

Four indexes, measured on a 100,000-trial study (``benchmarks/dashboard_render.py``):

- ``trials (study_id, state, number, datetime_start, datetime_complete)``: counts by state with
  first/last times read from the index alone; trials of one state in number order (best so far,
  the sample for plots) without a sort.
- ``trials (study_id, datetime_complete)``: finished trials in time order (progress over time).
- ``trials (study_id, number)``: a page of the trial table by number without sorting the study.
- ``trial_values (objective, value)``: best-k and "sort by value" walk the index and stop early
  instead of sorting every trial.

All are on Optuna's own tables: indexes only, which Optuna's ORM neither needs nor
notices; names start with ``ix_tuner_`` so they never collide with Optuna's. Creating them on
an existing 100k-trial SQLite file takes a few seconds, once.
"""

import sqlalchemy as sa
from alembic import op

revision = "v0.2.0"
down_revision = "v0.1.0"
branch_labels = None
depends_on = None

_INDEXES = [
    ("ix_tuner_trials_state", "trials",
     ["study_id", "state", "number", "datetime_start", "datetime_complete"]),
    ("ix_tuner_trials_complete", "trials", ["study_id", "datetime_complete"]),
    ("ix_tuner_trials_number", "trials", ["study_id", "number"]),
    ("ix_tuner_trial_values_value", "trial_values", ["objective", "value"]),
]


def upgrade() -> None:
    existing = set(sa.inspect(op.get_bind()).get_table_names())
    for name, table, columns in _INDEXES:
        if table in existing:  # Optuna creates its tables before tuner migrates
            op.create_index(name, table, columns, if_not_exists=True)


def downgrade() -> None:
    for name, table, _ in reversed(_INDEXES):
        op.drop_index(name, table_name=table, if_exists=True)
