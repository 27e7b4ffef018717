"""Claim and pacing for many dispatchers (issues 11, 16): filled in by its author.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30
"""

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
