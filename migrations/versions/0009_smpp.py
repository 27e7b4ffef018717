"""The smpp gateway kind (issue 14, docs/decisions/0016): an smpp gateway's session settings
(`gateways.smpp`), and the parts of the messages sent over SMPP with the carrier's id of each
(`message_parts`), their delivery receipts (part_receipt_v1, part_receipts_v1), the message's receipt once
every part has one (settle_parts_v1, settle_waiting_parts_v1) and their pruning past the retention
(prune_message_parts_v1); segment counting as an SMPP gateway splits, never inside a character (segments_v2,
character_parts_v1), which accept_v2 now charges.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-30
"""

from alembic import op

from db.schema import execute_sql, frozen

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

FUNCTIONS = (
    "functions/character_parts_v1.sql",
    "functions/segments_v2.sql",
    "functions/lock_message_parts_v1.sql",
    "functions/settle_parts_v1.sql",
    "functions/record_parts_v1.sql",
    "functions/part_receipt_v1.sql",
    "functions/part_receipts_v1.sql",
    "functions/settle_waiting_parts_v1.sql",
    "functions/prune_message_parts_v1.sql",
    "functions/accept_v2.sql",
)

SECURITY = r"""
REVOKE ALL ON FUNCTION fairlane.lock_message_parts_v1(bigint[]), fairlane.settle_parts_v1(bigint, bigint),
    fairlane.record_parts_v1(bigint, bigint[], integer[], integer[], text[]),
    fairlane.part_receipt_v1(bigint, text, text, text), fairlane.part_receipts_v1(bigint, text[], text[], text[]),
    fairlane.settle_waiting_parts_v1(integer),
    fairlane.prune_message_parts_v1(timestamptz), fairlane.character_parts_v1(text, boolean),
    fairlane.segments_v2(text) FROM PUBLIC;
"""

DROP = r"""
DROP FUNCTION fairlane.segments_v2(text);
DROP FUNCTION fairlane.character_parts_v1(text, boolean);
DROP FUNCTION fairlane.prune_message_parts_v1(timestamptz);
DROP FUNCTION fairlane.settle_waiting_parts_v1(integer);
DROP FUNCTION fairlane.part_receipts_v1(bigint, text[], text[], text[]);
DROP FUNCTION fairlane.part_receipt_v1(bigint, text, text, text);
DROP FUNCTION fairlane.record_parts_v1(bigint, bigint[], integer[], integer[], text[]);
DROP FUNCTION fairlane.settle_parts_v1(bigint, bigint);
DROP FUNCTION fairlane.lock_message_parts_v1(bigint[]);
DROP TABLE fairlane.message_parts;
ALTER TABLE fairlane.gateways DROP COLUMN smpp;
"""


def upgrade() -> None:
    connection = op.get_bind()
    execute_sql(connection, frozen(revision, "tables/smpp.sql"))
    for path in FUNCTIONS:
        execute_sql(connection, frozen(revision, path))
    execute_sql(connection, SECURITY)


def downgrade() -> None:
    connection = op.get_bind()
    execute_sql(connection, frozen("0007", "functions/accept_v2.sql"))
    execute_sql(connection, DROP)
