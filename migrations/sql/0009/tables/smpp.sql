-- Migration 0009: an smpp gateway's settings, and the parts of the messages sent over SMPP (see sql/tables.sql).
ALTER TABLE fairlane.gateways ADD COLUMN smpp jsonb
    CONSTRAINT gateways_smpp_check CHECK (smpp IS NULL OR kind = 'smpp' AND jsonb_typeof(smpp) = 'object');

CREATE TABLE fairlane.message_parts (
    gateway_id bigint NOT NULL REFERENCES fairlane.gateways (id) ON DELETE CASCADE,
    provider_id text NOT NULL,
    message_id bigint,
    part smallint,
    parts smallint CONSTRAINT message_parts_parts_check CHECK (part BETWEEN 1 AND parts),
    status text CONSTRAINT message_parts_status_check CHECK (status IN ('delivered', 'undelivered')),
    error_code text,
    receipts integer NOT NULL DEFAULT 0,
    waiting boolean NOT NULL DEFAULT false,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (gateway_id, provider_id)
) WITH (fillfactor = 90);
CREATE INDEX message_parts_message_id_idx ON fairlane.message_parts (message_id);
CREATE INDEX message_parts_created_at_idx ON fairlane.message_parts (created_at);
CREATE INDEX message_parts_waiting_idx ON fairlane.message_parts (message_id) WHERE waiting;
