"""A ledger a team shares: who started each run, which process holds it, which machine's local cloud a local run
is on, leases, and the indexes status and reconcile need.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from jobman.ledger.models import UTCDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("started_by_user", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("started_by_host", sa.String(length=255), nullable=True))
        batch.add_column(sa.Column("held_by", sa.String(length=320), nullable=True))
        batch.add_column(sa.Column("held_until", UTCDateTime(), nullable=True))
        batch.add_column(sa.Column("local_site", sa.Text(), nullable=True))
        batch.create_index(batch.f("ix_runs_started_by_user"), ["started_by_user"])
    with op.batch_alter_table("resources") as batch:
        batch.create_index("ix_resources_expires_at", ["expires_at"])
        batch.create_index("ix_resources_desired_status", ["desired", "status"])
    op.create_table(
        "leases",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("holder", sa.String(length=320), nullable=False),
        sa.Column("acquired_at", UTCDateTime(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_leases")),
    )


def downgrade() -> None:
    op.drop_table("leases")
    with op.batch_alter_table("resources") as batch:
        batch.drop_index("ix_resources_desired_status")
        batch.drop_index("ix_resources_expires_at")
    with op.batch_alter_table("runs") as batch:
        batch.drop_index(batch.f("ix_runs_started_by_user"))
        batch.drop_column("local_site")
        batch.drop_column("held_until")
        batch.drop_column("held_by")
        batch.drop_column("started_by_host")
        batch.drop_column("started_by_user")
