"""Route resolution: longest prefix for the sender's type; a tenant's default sender is the one whose type
has the longest matching route."""

import pytest

from tests.integration.fixtures import apply_basic, submit

ROUTES = [
    {"prefix": "+", "sender_type": "long_code", "destination": "US-LC"},
    {"prefix": "+4", "sender_type": "long_code", "destination": "GB-LDN"},
    {"prefix": "+44", "sender_type": "long_code", "destination": "GB"},
    {"prefix": "+447", "sender_type": "long_code", "destination": "GB-LDN"},
    {"prefix": "+4477009", "sender_type": "long_code", "destination": "US-SC"},
    {"prefix": "+1", "sender_type": "short_code", "destination": "US-SC"},
]


def _destination(conn, message_id):
    return conn.execute(
        """SELECT d.code, s.address FROM fairlane.messages m JOIN fairlane.queues q ON q.id = m.queue_id
           JOIN fairlane.destinations d ON d.id = q.destination_id JOIN fairlane.senders s ON s.id = q.sender_id
           WHERE m.id = %s""",
        (message_id,),
    ).fetchone()


@pytest.mark.parametrize(
    ("recipient", "destination"),
    [
        ("+33612345678", "US-LC"),  # only the catch-all '+'
        ("+41791234567", "GB-LDN"),  # +4
        ("+442071234567", "GB"),  # +44
        ("+447912345678", "GB-LDN"),  # +447
        ("+447700900123", "US-SC"),  # +4477009
        ("+447700812345", "GB-LDN"),  # +44770 matches +447 only
    ],
)
def test_longest_prefix_wins(conn, recipient, destination):
    apply_basic(conn, routes=ROUTES)
    message_id = submit(conn, tenant="globex", recipient=recipient, body="x")
    assert _destination(conn, message_id) == (destination, "+15550100002")


def test_sender_type_selects_the_route(conn):
    apply_basic(conn, routes=ROUTES)
    # acme has a short code and a long code: +1 has a short-code route (length 2) beating '+' (length 1)
    assert _destination(conn, submit(conn, tenant="acme", recipient="+15551234567", body="x")) == (
        "US-SC",
        "55501",
    )
    # +44: only long-code routes match, so acme's long code is chosen
    assert _destination(conn, submit(conn, tenant="acme", recipient="+442071234567", body="x")) == (
        "GB",
        "+15550100001",
    )
    # naming the sender forces its type's route
    assert _destination(
        conn, submit(conn, tenant="acme", recipient="+15551234567", body="x", sender="+15550100001")
    ) == ("US-LC", "+15550100001")


def test_no_route_for_the_sender_type(conn):
    apply_basic(conn, routes=ROUTES)
    import psycopg

    with pytest.raises(psycopg.Error) as raised:
        submit(conn, tenant="initech", recipient="+15551234567", body="x")
    assert raised.value.sqlstate == "FL404"
    assert "alphanumeric" in raised.value.diag.message_primary
