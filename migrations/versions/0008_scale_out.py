"""Claim and pacing for many dispatchers (docs/decisions/0018): fairlane.claim_v3 also says when the bucket
will hold tokens again, so a claimer waits for them instead of polling, and keeps a send slot's worth of the
rate (send_slot_v1) out of the bucket; claim_v2 stays, as claim_v3's messages, for dispatchers of the previous
release during a rolling upgrade; return_tokens_v1 gives the bucket back the tokens of messages claimed but
never sent.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30
"""

from alembic import op

from db.schema import execute_sql, frozen

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

FUNCTIONS = (
    "functions/send_slot_v1.sql",
    "functions/claim_v3.sql",
    "functions/claim_v2.sql",
    "functions/return_tokens_v1.sql",
)


def upgrade() -> None:
    connection = op.get_bind()
    for path in FUNCTIONS:
        execute_sql(connection, frozen(revision, path))
    execute_sql(connection, "REVOKE ALL ON ALL FUNCTIONS IN SCHEMA fairlane FROM PUBLIC;")


def downgrade() -> None:
    connection = op.get_bind()
    execute_sql(connection, frozen("0006", "functions/claim_v2.sql"))
    execute_sql(
        connection,
        """
        DROP FUNCTION fairlane.claim_v3(bigint, integer, double precision, timestamptz);
        DROP FUNCTION fairlane.return_tokens_v1(bigint, integer, timestamptz);
        DROP FUNCTION fairlane.send_slot_v1(double precision, double precision);
        """,
    )
