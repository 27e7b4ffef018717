-- Quota windows and levels of service (docs/decisions/0020).

-- a destination's and a sender's quota windows beside the per-second bucket (kept in quota_windows)
ALTER TABLE fairlane.destinations
    ADD COLUMN per_minute integer CONSTRAINT destinations_per_minute_check CHECK (per_minute > 0),
    ADD COLUMN per_hour integer CONSTRAINT destinations_per_hour_check CHECK (per_hour > 0),
    ADD COLUMN per_day integer CONSTRAINT destinations_per_day_check CHECK (per_day > 0),
    ADD COLUMN reset_timezone text NOT NULL DEFAULT 'UTC',
    ADD COLUMN window_kind text NOT NULL DEFAULT 'calendar'
        CONSTRAINT destinations_window_kind_check CHECK (window_kind IN ('calendar', 'sliding'));
ALTER TABLE fairlane.senders
    ADD COLUMN per_minute integer CONSTRAINT senders_per_minute_check CHECK (per_minute > 0),
    ADD COLUMN per_hour integer CONSTRAINT senders_per_hour_check CHECK (per_hour > 0),
    ADD COLUMN per_day integer CONSTRAINT senders_per_day_check CHECK (per_day > 0),
    ADD COLUMN reset_timezone text NOT NULL DEFAULT 'UTC',
    ADD COLUMN window_kind text NOT NULL DEFAULT 'calendar'
        CONSTRAINT senders_window_kind_check CHECK (window_kind IN ('calendar', 'sliding'));

CREATE TABLE fairlane.quota_windows (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    destination_id bigint REFERENCES fairlane.destinations (id) ON DELETE CASCADE,
    sender_id bigint REFERENCES fairlane.senders (id) ON DELETE CASCADE,
    period text NOT NULL CONSTRAINT quota_windows_period_check CHECK (period IN ('minute', 'hour', 'day')),
    quota integer NOT NULL CONSTRAINT quota_windows_quota_check CHECK (quota > 0),
    reset_timezone text NOT NULL,
    sliding boolean NOT NULL,
    counts bigint[] NOT NULL DEFAULT '{}',
    counted_at timestamptz,
    closed_until timestamptz,
    CONSTRAINT quota_windows_owner_check CHECK ((destination_id IS NULL) <> (sender_id IS NULL)),
    CONSTRAINT quota_windows_destination_id_period_key UNIQUE (destination_id, period),
    CONSTRAINT quota_windows_sender_id_period_key UNIQUE (sender_id, period)
) WITH (fillfactor = 50);

-- the portions leave out queues whose sender's window is spent until the first of those frees
ALTER TABLE fairlane.destination_state ADD COLUMN portions_until timestamptz;

-- levels of service: a message's level (0 high, 1 normal, 2 bulk), the ready index by level then age, what the
-- lower levels of a queue are owed by their minimum share, and that share
ALTER TABLE fairlane.messages
    ADD COLUMN priority smallint NOT NULL DEFAULT 1 CONSTRAINT messages_priority_check CHECK (priority BETWEEN 0 AND 2);
DROP INDEX fairlane.messages_ready_idx;
CREATE INDEX messages_ready_idx ON fairlane.messages_live (queue_id, priority, id) WHERE status = 'queued';
ALTER TABLE fairlane.queues
    ADD COLUMN normal_owed double precision NOT NULL DEFAULT 0,
    ADD COLUMN bulk_owed double precision NOT NULL DEFAULT 0;
ALTER TABLE fairlane.settings
    ADD COLUMN level_minimum_share numeric NOT NULL DEFAULT 0.1
        CONSTRAINT settings_level_minimum_share_check CHECK (level_minimum_share BETWEEN 0 AND 0.5);
ALTER TABLE fairlane.outbox ADD COLUMN priority text;
ALTER TYPE fairlane.staged_message_v2 ADD ATTRIBUTE priority smallint;
