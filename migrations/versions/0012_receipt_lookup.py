"""fairlane.receipt_v1 finds its message with one plain index lookup (by our id, or else by the provider's id)
instead of one query for both, whose generic plan walked every finished message of the gateway's queues once
PL/pgSQL switched to it: a receipt took 1 s with 16,000 finished messages kept. Same contract.

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-30
"""

from alembic import op

from db.schema import execute_sql, frozen

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    execute_sql(op.get_bind(), frozen(revision, "functions/receipt_v1.sql"))


def downgrade() -> None:
    execute_sql(op.get_bind(), frozen("0006", "functions/receipt_v1.sql"))
