"""Profile versions and their rendered series.

Revision ID: 0001
Revises:
Create Date: 2026-11-28
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "profile_versions",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("profile_id", sa.String(100), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("content_hash", sa.String(16), nullable=False),
        sa.Column("resource_type", sa.String(20), nullable=False),
        sa.Column("source", sa.String(20), nullable=False),
        sa.Column("priority", sa.Integer, nullable=False),
        sa.Column("trigger_kinds", sa.String(64), nullable=False),
        sa.Column("definition", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(200), nullable=False),
        sa.UniqueConstraint("profile_id", "version", name="uq_profile_version"),
        sa.UniqueConstraint("profile_id", "content_hash", name="uq_profile_content"),
    )
    op.create_index("ix_profile_versions_resource_type", "profile_versions", ["resource_type"])
    op.create_index("ix_profile_versions_source", "profile_versions", ["source"])
    op.create_table(
        "profile_series",
        sa.Column("version_pk", sa.Integer, sa.ForeignKey("profile_versions.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("ts_ms", sa.BigInteger, primary_key=True),
        sa.Column("value", sa.Float, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("profile_series")
    op.drop_index("ix_profile_versions_source", "profile_versions")
    op.drop_index("ix_profile_versions_resource_type", "profile_versions")
    op.drop_table("profile_versions")
