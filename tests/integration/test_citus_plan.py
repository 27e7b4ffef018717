"""The distributed layout of docs/scale-out.md: its submission and per-queue claim statements
(sql/queries/citus.sql) are single-shard queries once messages, message_events, idempotency_keys and queues
are distributed by tenant_id: on plain PostgreSQL, every scan of those tables (and their partitions) in their
generic plans filters on the statement's tenant, and inserts take rows from the statement alone."""

import json
import re

import pytest

from db import queries

STATEMENTS = queries.load("citus")
DISTRIBUTED = ("messages", "message_events", "idempotency_keys", "queues")
SCANS = {"Seq Scan", "Index Scan", "Index Only Scan", "Bitmap Heap Scan"}


def _distributed(relation: str) -> bool:
    return relation in DISTRIBUTED or relation.startswith(("messages_", "message_events_"))


def _nodes(node):
    yield node
    for child in node.get("Plans", []):
        yield from _nodes(child)


def _plan(conn, sql):
    (plan,) = conn.execute(f"EXPLAIN (GENERIC_PLAN, FORMAT JSON) {sql}").fetchone()
    return (plan if isinstance(plan, list) else json.loads(plan))[0]["Plan"]


def _problems(plan) -> tuple[list[str], int]:
    """What would make the statement cross shards, and how many distributed relations it touches."""
    problems, touched = [], 0
    for node in _nodes(plan):
        relation = node.get("Relation Name", "")
        if not _distributed(relation):
            continue
        touched += 1
        if node["Node Type"] in SCANS:
            conditions = " ".join(node.get(key, "") for key in ("Index Cond", "Recheck Cond", "Filter"))
            if not re.search(r"\btenant_id = \$1\b", conditions):
                problems.append(f"{node['Node Type']} on {relation} without tenant_id = $1: {conditions!r}")
        elif node["Node Type"] == "ModifyTable" and node["Operation"] == "Insert":
            sources = {child["Node Type"] for child in _nodes(plan) if child is not node} - {"Result"}
            if sources:
                problems.append(f"insert into {relation} reads {sorted(sources)}")
    return problems, touched


@pytest.mark.parametrize("name", sorted(STATEMENTS))
def test_statement_stays_on_its_tenants_shard(conn, name):
    problems, touched = _problems(_plan(conn, STATEMENTS[name]))
    assert touched, f"{name} touches no distributed table"
    assert problems == []


def test_the_check_catches_a_statement_across_tenants(conn):
    across = "SELECT id FROM fairlane.messages_live WHERE queue_id = $1 AND status = 'queued' ORDER BY id LIMIT 10"
    problems, _ = _problems(_plan(conn, across))
    assert problems and "without tenant_id = $1" in problems[0]
