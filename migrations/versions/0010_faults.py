"""Faults (issue 12): no schema change. The guarantees of docs/decisions/0019 are kept by the processes
(commit modes, idempotent recording, reconnects); the revision keeps its place in the chain.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-30
"""

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
