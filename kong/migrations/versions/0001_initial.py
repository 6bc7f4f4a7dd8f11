"""The first schema: folders, jobs, and kong_meta (install id).

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import time
import uuid

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "kong_meta",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
    )
    folders = op.create_table(
        "folders",
        sa.Column("folder_id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column(
            "parent_id",
            sa.Integer,
            sa.ForeignKey("folders.folder_id", ondelete="CASCADE"),
            nullable=True,
        ),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
        sa.UniqueConstraint("parent_id", "name", name="uq_folder_parent_name"),
    )
    op.create_index("ix_folders_parent_id", "folders", ["parent_id"])
    op.create_table(
        "jobs",
        sa.Column("job_id", sa.Integer, primary_key=True),
        sa.Column("batch_job_id", sa.String(64), nullable=True),
        sa.Column("driver", sa.String(32), nullable=False),
        sa.Column("profile", sa.String(128), nullable=False),
        sa.Column(
            "folder_id",
            sa.Integer,
            sa.ForeignKey("folders.folder_id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("command", sa.Text, nullable=False),
        sa.Column("data", sa.JSON, nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
        sa.Column("cores", sa.Integer, nullable=False),
        sa.Column("memory", sa.Integer, nullable=True),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_jobs_batch_job_id", "jobs", ["batch_job_id"])
    op.create_index("ix_jobs_folder_status", "jobs", ["folder_id", "status"])
    op.create_index("ix_jobs_profile_status", "jobs", ["profile", "status"])
    now = time.time()
    op.bulk_insert(folders, [{"folder_id": 1, "name": "", "parent_id": None,
                              "created_at": now, "updated_at": now}])
    meta = sa.table("kong_meta", sa.column("key", sa.String), sa.column("value", sa.Text))
    op.bulk_insert(meta, [{"key": "install_id", "value": uuid.uuid4().hex[:8]}])


def downgrade() -> None:
    op.drop_table("jobs")
    op.drop_table("folders")
    op.drop_table("kong_meta")
