"""tuner 0.3.0: one driver per study (``tuner_leases``).

Revision ID: v0.3.0
Revises: v0.2.0
"""

import sqlalchemy as sa
from alembic import op

revision = "v0.3.0"
down_revision = "v0.2.0"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "tuner_leases",
        sa.Column("study_id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("owner", sa.String(64), nullable=False),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("pid", sa.Integer, nullable=False),
        sa.Column("since", sa.DateTime, nullable=False),
        sa.Column("heartbeat", sa.DateTime, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("tuner_leases")
