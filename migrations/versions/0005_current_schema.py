"""Current schema: sql/ holds the schema as it is at this revision, one file per object (docs/decisions/0013).
What nothing used any more is dropped: the first outbox trigger function accept_outbox_v1 (replaced by
accept_outbox_v2 in 0003) with its types staged_message_v1 and row_error_v1, and queue_portions_v1 (the
queue_state view and compute_portions_v1's fast path now call queue_portions_v2, its PL/pgSQL twin with the
same result). fairlane.submit keeps its body, indented like every other function.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30
"""

from alembic import op

from db.schema import execute_sql, frozen, or_replace, read_function, read_type

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

DROP_UNUSED = r"""
DROP FUNCTION fairlane.accept_outbox_v1();
DROP TYPE fairlane.staged_message_v1;
DROP TYPE fairlane.row_error_v1;
DROP FUNCTION fairlane.queue_portions_v1(bigint[], bigint[]);
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA fairlane FROM PUBLIC;
"""


def upgrade() -> None:
    connection = op.get_bind()
    for path in ("views/queue_state.sql", "functions/compute_portions_v1.sql", "functions/submit.sql"):
        execute_sql(connection, frozen(revision, path))
    execute_sql(connection, DROP_UNUSED)


def downgrade() -> None:
    connection = op.get_bind()
    for sql in (
        read_type("0001", "functions/errors_v1.sql", "row_error_v1"),
        read_type("0001", "functions/accept_v1.sql", "staged_message_v1"),
        read_function("0001", "functions/accept_v1.sql", "accept_outbox_v1"),
        frozen("0001", "functions/portions_v1.sql"),
        or_replace(read_function("0001", "functions/accept_v1.sql", "submit")),
        or_replace(read_function("0002", "functions/shares_v1.sql", "compute_portions_v1")),
        or_replace(frozen("0001", "views/queue_state_v1.sql")),
        "REVOKE ALL ON ALL FUNCTIONS IN SCHEMA fairlane FROM PUBLIC;",
    ):
        execute_sql(connection, sql)
