"""tuner 0.1.0: studies (spec), trials (host/device/reason), curves.

Revision ID: v0.1.0
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "v0.1.0"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "tuner_studies",
        sa.Column("study_id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("study_name", sa.String(512), nullable=False, unique=True),
        sa.Column("spec_json", sa.Text, nullable=False),
        sa.Column("tuner_version", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
    )
    op.create_table(
        "tuner_trials",
        sa.Column("study_id", sa.Integer, primary_key=True),
        sa.Column("number", sa.Integer, primary_key=True),
        sa.Column("host", sa.String(255)),
        sa.Column("device", sa.String(255)),
        sa.Column("worker", sa.String(64)),
        sa.Column("reason", sa.String(255)),
        sa.Column("epochs_run", sa.Integer),
    )
    op.create_index("ix_tuner_trials_reason", "tuner_trials", ["study_id", "reason"])
    op.create_table(
        "tuner_curves",
        sa.Column("study_id", sa.Integer, primary_key=True),
        sa.Column("number", sa.Integer, primary_key=True),
        sa.Column("epoch", sa.Integer, primary_key=True),
        sa.Column("metrics", sa.JSON, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("tuner_curves")
    op.drop_index("ix_tuner_trials_reason", "tuner_trials")
    op.drop_table("tuner_trials")
    op.drop_table("tuner_studies")
