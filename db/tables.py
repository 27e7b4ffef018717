"""Table metadata (SQLAlchemy Core) of schema ``fairlane``, as the migrations build it.

The migrations are the source of truth; a test checks that this metadata and the migrated schema agree.
"""

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Date,
    Float,
    ForeignKey,
    ForeignKeyConstraint,
    Identity,
    Index,
    Integer,
    MetaData,
    Numeric,
    PrimaryKeyConstraint,
    SmallInteger,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, CIDR, JSONB, TIMESTAMP

SCHEMA = "fairlane"
# PostgreSQL's own default names, so the metadata names what the migrations' DDL creates
metadata = MetaData(
    schema=SCHEMA,
    naming_convention={
        "ix": "%(table_name)s_%(column_0_N_name)s_idx",
        "uq": "%(table_name)s_%(column_0_N_name)s_key",
        "fk": "%(table_name)s_%(column_0_N_name)s_fkey",
        "pk": "%(table_name)s_pkey",
    },
)

TIMESTAMPTZ = TIMESTAMP(timezone=True)


def _id() -> Column[int]:
    return Column("id", BigInteger, Identity(always=True), primary_key=True)


def _created_at() -> Column[object]:
    return Column("created_at", TIMESTAMPTZ, nullable=False, server_default=text("now()"))


tenant_sets = Table(
    "tenant_sets",
    metadata,
    _id(),
    Column("name", Text, nullable=False, unique=True),
    Column("weight", Numeric, nullable=False, server_default=text("1")),
    _created_at(),
)

tenants = Table(
    "tenants",
    metadata,
    _id(),
    Column("name", Text, nullable=False, unique=True),
    Column("tenant_set_id", BigInteger, ForeignKey("tenant_sets.id"), nullable=False, index=True),
    Column("weight", Numeric, nullable=False, server_default=text("1")),
    Column("status_callback", Text),
    Column("signing_secret", Text, nullable=False),
    _created_at(),
    Column("previous_signing_secret", Text),
    Column("previous_signing_secret_until", TIMESTAMPTZ),
    Column("scheduled_count", Integer, nullable=False, server_default=text("0")),
)

api_keys = Table(
    "api_keys",
    metadata,
    _id(),
    Column("tenant_id", BigInteger, ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("key_hash", Text, nullable=False, unique=True),
    _created_at(),
    Column("revoked_at", TIMESTAMPTZ),
)

tenant_roles = Table(
    "tenant_roles",
    metadata,
    Column("role_name", Text, primary_key=True),
    Column("tenant_id", BigInteger, ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False),
)


def _window_columns() -> list[Column[object]]:
    """A destination's or sender's quota windows (docs/decisions/0020)."""
    return [
        Column("per_minute", Integer),
        Column("per_hour", Integer),
        Column("per_day", Integer),
        Column("reset_timezone", Text, nullable=False, server_default=text("'UTC'::text")),
        Column("window_kind", Text, nullable=False, server_default=text("'calendar'::text")),
    ]


senders = Table(
    "senders",
    metadata,
    _id(),
    Column("tenant_id", BigInteger, ForeignKey("tenants.id"), nullable=False),
    Column("address", Text, nullable=False),
    Column("type", Text, nullable=False),
    Column("rate_cap", Numeric),
    _created_at(),
    UniqueConstraint("tenant_id", "address", name="senders_tenant_id_address_key"),
    UniqueConstraint("id", "tenant_id", name="senders_id_tenant_id_key"),
    *_window_columns(),
)

gateways = Table(
    "gateways",
    metadata,
    _id(),
    Column("name", Text, nullable=False, unique=True),
    Column("kind", Text, nullable=False),
    Column("url", Text, nullable=False),
    Column("timeout_seconds", Numeric, nullable=False, server_default=text("10")),
    Column("max_in_flight", Integer, nullable=False, server_default=text("100")),
    _created_at(),
    Column("receipts_token", Text, nullable=False),
    Column("smpp", JSONB),
)

destinations = Table(
    "destinations",
    metadata,
    _id(),
    Column("code", Text, nullable=False, unique=True),
    Column("gateway_id", BigInteger, ForeignKey("gateways.id"), nullable=False, index=True),
    Column("rate", Numeric, nullable=False),
    Column("burst", Integer, nullable=False, server_default=text("1")),
    Column("max_drain_seconds", Integer, nullable=False, server_default=text("14400")),
    Column("default_validity_seconds", Integer, nullable=False, server_default=text("36000")),
    _created_at(),
    *_window_columns(),
)

allocations = Table(
    "allocations",
    metadata,
    Column(
        "destination_id",
        BigInteger,
        ForeignKey("destinations.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column(
        "tenant_set_id",
        BigInteger,
        ForeignKey("tenant_sets.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("weight", Numeric),
    Column("rate", Numeric),
)

routes = Table(
    "routes",
    metadata,
    _id(),
    Column("prefix", Text, nullable=False),
    Column("sender_type", Text, nullable=False),
    Column("destination_id", BigInteger, ForeignKey("destinations.id"), nullable=False, index=True),
    UniqueConstraint("prefix", "sender_type", name="routes_prefix_sender_type_key"),
)

queues = Table(
    "queues",
    metadata,
    _id(),
    Column("tenant_id", BigInteger, ForeignKey("tenants.id"), nullable=False),
    Column("destination_id", BigInteger, ForeignKey("destinations.id"), nullable=False, index=True),
    Column("sender_id", BigInteger, nullable=False),
    Column("queued_count", Integer, nullable=False, server_default=text("0")),
    Column("queued_segments", BigInteger, nullable=False, server_default=text("0")),
    _created_at(),
    UniqueConstraint("tenant_id", "destination_id", "sender_id", name="queues_tenant_id_destination_id_sender_id_key"),
    Column("vtime", Float, nullable=False, server_default=text("0")),
    Column("portion", Float),
    Column("not_before", TIMESTAMPTZ),
    Column("recent_rate", Float, nullable=False, server_default=text("0")),
    Column("rate_at", TIMESTAMPTZ),
    UniqueConstraint("id", "tenant_id", name="queues_id_tenant_id_key"),
    Index("queues_claim_idx", "destination_id", "vtime", "id", postgresql_where=text("queued_count > 0")),
    ForeignKeyConstraint(
        ["sender_id", "tenant_id"],
        ["senders.id", "senders.tenant_id"],
        name="queues_sender_id_tenant_id_fkey",
    ),
    Column("normal_owed", Float, nullable=False, server_default=text("0")),
    Column("bulk_owed", Float, nullable=False, server_default=text("0")),
    postgresql_with={"fillfactor": 50},
)


def _message_columns() -> list[Column[object]]:
    return [
        Column("id", BigInteger, nullable=False, server_default=text("nextval('fairlane.messages_id_seq'::regclass)")),
        Column("tenant_id", BigInteger, nullable=False),
        Column("queue_id", BigInteger, nullable=False),
        Column("status", Text, nullable=False),
        Column("recipient", Text, nullable=False),
        Column("body", Text, nullable=False),
        Column("segments", Integer, nullable=False),
        Column("encoding", Text, nullable=False),
        Column("send_at", TIMESTAMPTZ),
        Column("expires_at", TIMESTAMPTZ, nullable=False),
        Column("status_callback", Text),
        Column("idempotency_key", Text),
        Column("attempts", Integer, nullable=False, server_default=text("0")),
        Column("lease_until", TIMESTAMPTZ),
        Column("provider_id", Text),
        Column("error_code", Text),
        Column("error_message", Text),
        _created_at(),
        Column("updated_at", TIMESTAMPTZ, nullable=False, server_default=text("now()")),
        Column("available_at", TIMESTAMPTZ),
        Column("claim_id", BigInteger),
        Column("finished_at", TIMESTAMPTZ),
        Column("event_count", Integer, nullable=False, server_default=text("0")),
        Column("priority", SmallInteger, nullable=False, server_default=text("1")),
    ]


# Messages: the live and the finished apart (docs/decisions/0014). The finished partitions of
# messages_finished (messages_finished_p<date>_<time>) come and go with retention and are not declared here.
messages = Table("messages", metadata, *_message_columns(), postgresql_partition_by="LIST (finished_at)")

messages_live = Table(
    "messages_live",
    metadata,
    *_message_columns(),
    PrimaryKeyConstraint("id", name="messages_live_pkey"),
    ForeignKeyConstraint(
        ["queue_id", "tenant_id"],
        ["queues.id", "queues.tenant_id"],
        name="messages_live_queue_id_tenant_id_fkey",
    ),
    Index("messages_ready_idx", "queue_id", "priority", "id", postgresql_where=text("status = 'queued'")),
    Index("messages_scheduled_idx", "send_at", postgresql_where=text("status = 'scheduled'")),
    Index("messages_live_tenant_id_idx", "tenant_id", "id"),
    Index("messages_lease_idx", "lease_until", postgresql_where=text("status = 'sending'")),
    Index("messages_expiry_idx", "expires_at", postgresql_where=text("status IN ('queued', 'scheduled')")),
    Index("messages_scheduled_tenant_idx", "tenant_id", "id", postgresql_where=text("status = 'scheduled'")),
    Index("messages_sending_tenant_idx", "tenant_id", "id", postgresql_where=text("status = 'sending'")),
)

messages_finished = Table(
    "messages_finished",
    metadata,
    *_message_columns(),
    Index("messages_finished_id_idx", "id"),
    Index("messages_finished_tenant_id_idx", "tenant_id", "id"),
    Index("messages_finished_provider_id_idx", "provider_id", postgresql_where=text("provider_id IS NOT NULL")),
    Index("messages_finished_queue_id_status_idx", "queue_id", "status", "id"),
    postgresql_partition_by="RANGE (finished_at)",
)

messages_finished_default = Table(
    "messages_finished_default",
    metadata,
    *_message_columns(),
    Index("messages_finished_default_id_idx", "id"),
    Index("messages_finished_default_tenant_id_id_idx", "tenant_id", "id"),
    Index("messages_finished_default_provider_id_idx", "provider_id", postgresql_where=text("provider_id IS NOT NULL")),
    Index("messages_finished_default_queue_id_status_id_idx", "queue_id", "status", "id"),
)

destination_state = Table(
    "destination_state",
    metadata,
    Column("destination_id", BigInteger, ForeignKey("destinations.id", ondelete="CASCADE"), primary_key=True),
    Column("portions_version", BigInteger, nullable=False, server_default=text("0")),
    Column("portions_at", TIMESTAMPTZ),
    Column("portions_until", TIMESTAMPTZ),
    postgresql_with={"fillfactor": 50},
)

# A destination's token bucket in slices (docs/decisions/0011): concurrent claimers lock different rows.
destination_slices = Table(
    "destination_slices",
    metadata,
    Column("destination_id", BigInteger, ForeignKey("destinations.id", ondelete="CASCADE"), primary_key=True),
    Column("slice", Integer, primary_key=True),
    Column("tokens", Float, nullable=False),
    Column("refilled_at", TIMESTAMPTZ, nullable=False),
    Column("rate_factor", Float, nullable=False, server_default=text("1")),
    Column("throttled_at", TIMESTAMPTZ),
    Column("virtual_time", Float, nullable=False, server_default=text("0")),
    Column("recent_rate", Float, nullable=False, server_default=text("0")),
    Column("rate_at", TIMESTAMPTZ),
    postgresql_with={"fillfactor": 50},
)

# The use of the quota windows of destinations and senders (docs/decisions/0020).
quota_windows = Table(
    "quota_windows",
    metadata,
    _id(),
    Column("destination_id", BigInteger, ForeignKey("destinations.id", ondelete="CASCADE")),
    Column("sender_id", BigInteger, ForeignKey("senders.id", ondelete="CASCADE")),
    Column("period", Text, nullable=False),
    Column("quota", Integer, nullable=False),
    Column("reset_timezone", Text, nullable=False),
    Column("sliding", Boolean, nullable=False),
    Column("counts", ARRAY(BigInteger), nullable=False, server_default=text("'{}'::bigint[]")),
    Column("counted_at", TIMESTAMPTZ),
    Column("closed_until", TIMESTAMPTZ),
    UniqueConstraint("destination_id", "period", name="quota_windows_destination_id_period_key"),
    UniqueConstraint("sender_id", "period", name="quota_windows_sender_id_period_key"),
    postgresql_with={"fillfactor": 50},
)


def _event_columns() -> list[Column[object]]:
    return [
        Column(
            "id", BigInteger, nullable=False, server_default=text("nextval('fairlane.message_events_id_seq'::regclass)")
        ),
        Column("message_id", BigInteger, nullable=False),
        Column("tenant_id", BigInteger, nullable=False),
        Column("status", Text, nullable=False),
        Column("at", TIMESTAMPTZ, nullable=False, server_default=text("clock_timestamp()")),
        Column("detail", JSONB),
        Column("finished_at", TIMESTAMPTZ),
    ]


message_events = Table("message_events", metadata, *_event_columns(), postgresql_partition_by="LIST (finished_at)")

message_events_live = Table(
    "message_events_live",
    metadata,
    *_event_columns(),
    PrimaryKeyConstraint("id", name="message_events_live_pkey"),
    Index("message_events_live_message_id_idx", "message_id", "id"),
)

message_events_finished = Table(
    "message_events_finished",
    metadata,
    *_event_columns(),
    Index("message_events_finished_message_id_idx", "message_id", "id"),
    postgresql_partition_by="RANGE (finished_at)",
)

message_events_finished_default = Table(
    "message_events_finished_default",
    metadata,
    *_event_columns(),
    Index("message_events_finished_default_message_id_id_idx", "message_id", "id"),
)

history_partitions = Table(
    "history_partitions",
    metadata,
    Column("lower", TIMESTAMPTZ, primary_key=True),
    Column("upper", TIMESTAMPTZ, nullable=False),
)

settings = Table(
    "settings",
    metadata,
    Column("one", Boolean, primary_key=True, server_default=text("true")),
    Column("retention_seconds", Integer, nullable=False, server_default=text("2592000")),
    Column("callback_allow_networks", ARRAY(CIDR), nullable=False, server_default=text("'{}'")),
    Column("callback_allow_http", Boolean, nullable=False, server_default=text("false")),
    Column("scheduled_per_tenant", Integer, nullable=False, server_default=text("100000")),
    Column("level_minimum_share", Numeric, nullable=False, server_default=text("0.1")),
)

usage_counters = Table(
    "usage_counters",
    metadata,
    Column("tenant_id", BigInteger, primary_key=True),
    Column("destination_id", BigInteger, primary_key=True),
    Column("sender_id", BigInteger, primary_key=True),
    Column("day", Date, primary_key=True),
    Column("status", Text, primary_key=True),
    Column("slot", SmallInteger, primary_key=True),
    Column("messages", BigInteger, nullable=False, server_default=text("0")),
    Column("segments", BigInteger, nullable=False, server_default=text("0")),
    postgresql_with={"fillfactor": 70},
)

idempotency_keys = Table(
    "idempotency_keys",
    metadata,
    Column("tenant_id", BigInteger, ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True),
    Column("key", Text, primary_key=True),
    Column("request_hash", Text, nullable=False),
    Column("message_id", BigInteger, nullable=False),
    _created_at(),
    Index("idempotency_keys_created_at_idx", "created_at"),
)

outbox = Table(
    "outbox",
    metadata,
    Column("tenant", Text),
    Column("recipient", Text),
    Column("body", Text),
    Column("sender", Text),
    Column("destination", Text),
    Column("idempotency_key", Text),
    Column("send_at", TIMESTAMPTZ),
    Column("validity_seconds", Integer),
    Column("status_callback", Text),
    Column("row_number", BigInteger, Identity(always=True), nullable=False),
    Column("priority", Text),
    Index("outbox_row_number_idx", "row_number"),
    prefixes=["UNLOGGED"],
)

callbacks = Table(
    "callbacks",
    metadata,
    Column("event_id", BigInteger, primary_key=True, autoincrement=False),
    Column("tenant_id", BigInteger, nullable=False),
    Column("url", Text, nullable=False),
    Column("attempts", Integer, nullable=False, server_default=text("0")),
    Column("next_attempt_at", TIMESTAMPTZ, nullable=False, server_default=text("now()")),
    Column("delivered_at", TIMESTAMPTZ),
    Column("abandoned_at", TIMESTAMPTZ),
    Column("last_error", Text),
    _created_at(),
    Column("payload", Text, nullable=False),
    Index(
        "callbacks_tenant_due_idx",
        "tenant_id",
        "next_attempt_at",
        postgresql_where=text("delivered_at IS NULL AND abandoned_at IS NULL"),
    ),
    Index(
        "callbacks_finished_idx",
        text("coalesce(delivered_at, abandoned_at)"),
        postgresql_where=text("delivered_at IS NOT NULL OR abandoned_at IS NOT NULL"),
    ),
    postgresql_with={"fillfactor": 80},
)

message_parts = Table(
    "message_parts",
    metadata,
    Column("gateway_id", BigInteger, ForeignKey("gateways.id", ondelete="CASCADE"), primary_key=True),
    Column("provider_id", Text, primary_key=True),
    Column("message_id", BigInteger, index=True),
    Column("part", SmallInteger),
    Column("parts", SmallInteger),
    Column("status", Text),
    Column("error_code", Text),
    Column("receipts", Integer, nullable=False, server_default=text("0")),
    Column("waiting", Boolean, nullable=False, server_default=text("false")),
    _created_at(),
    Index("message_parts_created_at_idx", "created_at"),
    Index("message_parts_waiting_idx", "message_id", postgresql_where=text("waiting")),
    postgresql_with={"fillfactor": 90},
)
