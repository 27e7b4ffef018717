-- Queries of the HTTP API's admin endpoints (psycopg, %(name)s parameters). Writes of configuration go
-- through db/configuration.py (the same code as `fairlane apply`); these read, delete and manage keys.

-- name: tenant_set
-- One tenant set.
SELECT name, weight::float8 AS weight FROM fairlane.tenant_sets WHERE name = %(name)s

-- name: delete_tenant_set
-- Remove a tenant set.
DELETE FROM fairlane.tenant_sets WHERE name = %(name)s RETURNING id

-- name: tenant
-- One tenant (its signing secret is shown only when made: signing_secret below).
SELECT t.name, ts.name AS tenant_set, t.weight::float8 AS weight, t.status_callback,
       CASE WHEN t.previous_signing_secret_until > now() THEN t.previous_signing_secret_until END
           AS previous_signing_secret_valid_until
FROM fairlane.tenants t JOIN fairlane.tenant_sets ts ON ts.id = t.tenant_set_id
WHERE t.name = %(name)s

-- name: signing_secret
-- A tenant's signing secret (shown when the tenant is created).
SELECT t.signing_secret FROM fairlane.tenants t WHERE t.name = %(name)s

-- name: rotate_signing_secret
-- A new signing secret for a tenant; the previous one still signs callbacks for %(grace_seconds)s seconds.
UPDATE fairlane.tenants t
SET previous_signing_secret = t.signing_secret,
    previous_signing_secret_until = now() + make_interval(secs => %(grace_seconds)s),
    signing_secret = %(secret)s
WHERE t.name = %(name)s
RETURNING t.id

-- name: delete_tenant
-- Remove a tenant (with its keys; refused while it has senders or queues).
DELETE FROM fairlane.tenants WHERE name = %(name)s RETURNING id

-- name: api_keys
-- A tenant's API keys (digests are never shown).
SELECT k.id, k.created_at, k.revoked_at
FROM fairlane.api_keys k JOIN fairlane.tenants t ON t.id = k.tenant_id
WHERE t.name = %(tenant)s
ORDER BY k.id

-- name: insert_api_key
-- Store a new API key's digest for a tenant.
INSERT INTO fairlane.api_keys (tenant_id, key_hash)
SELECT t.id, %(key_hash)s FROM fairlane.tenants t WHERE t.name = %(tenant)s
RETURNING id, created_at, revoked_at

-- name: revoke_api_key
-- Revoke one of a tenant's API keys.
UPDATE fairlane.api_keys k SET revoked_at = coalesce(k.revoked_at, now())
FROM fairlane.tenants t
WHERE t.id = k.tenant_id AND t.name = %(tenant)s AND k.id = %(id)s
RETURNING k.id, k.created_at, k.revoked_at

-- name: sender
-- One sender of a tenant.
SELECT t.name AS tenant, s.address, s.type, s.rate_cap::float8 AS rate_cap, s.per_minute, s.per_hour, s.per_day,
       s.reset_timezone, s.window_kind AS "window"
FROM fairlane.senders s JOIN fairlane.tenants t ON t.id = s.tenant_id
WHERE t.name = %(tenant)s AND s.address = %(address)s

-- name: delete_sender
-- Remove one sender of a tenant (refused while it has queues).
DELETE FROM fairlane.senders s USING fairlane.tenants t
WHERE t.id = s.tenant_id AND t.name = %(tenant)s AND s.address = %(address)s
RETURNING s.id

-- name: gateway
-- One gateway; an smpp gateway's settings flat, its password never.
SELECT name, kind, url, timeout_seconds::float8 AS timeout_seconds, max_in_flight,
       smpp->>'host' AS host, (smpp->>'port')::integer AS port, smpp->>'system_id' AS system_id,
       smpp->>'system_type' AS system_type, (smpp->>'binds')::integer AS binds,
       (smpp->>'window')::integer AS "window", (smpp->>'enquire_link_seconds')::float8 AS enquire_link_seconds,
       smpp->'source_ton_npi' AS source_ton_npi, smpp->'dest_ton_npi' AS dest_ton_npi,
       smpp->>'concatenation' AS concatenation, (smpp->>'message_id_tlv')::integer AS message_id_tlv
FROM fairlane.gateways WHERE name = %(name)s

-- name: rotate_receipts_token
-- A new receipts token for a gateway.
UPDATE fairlane.gateways SET receipts_token = %(token)s WHERE name = %(name)s RETURNING id

-- name: delete_gateway
-- Remove a gateway (refused while destinations use it).
DELETE FROM fairlane.gateways WHERE name = %(name)s RETURNING id

-- name: destination
-- One destination with its gateway's name.
SELECT d.code, g.name AS gateway, d.rate::float8 AS rate, d.burst, d.max_drain_seconds, d.default_validity_seconds,
       d.per_minute, d.per_hour, d.per_day, d.reset_timezone, d.window_kind AS "window"
FROM fairlane.destinations d JOIN fairlane.gateways g ON g.id = d.gateway_id
WHERE d.code = %(code)s

-- name: delete_destination
-- Remove a destination (refused while routes or queues use it).
DELETE FROM fairlane.destinations WHERE code = %(code)s RETURNING id

-- name: allocations
-- A destination's allocations.
SELECT d.code AS destination, ts.name AS tenant_set, a.weight::float8 AS weight, a.rate::float8 AS rate
FROM fairlane.allocations a
JOIN fairlane.destinations d ON d.id = a.destination_id
JOIN fairlane.tenant_sets ts ON ts.id = a.tenant_set_id
WHERE d.code = %(code)s
ORDER BY ts.name

-- name: delete_allocation
-- Remove one allocation.
DELETE FROM fairlane.allocations a
USING fairlane.destinations d, fairlane.tenant_sets ts
WHERE a.destination_id = d.id AND a.tenant_set_id = ts.id AND d.code = %(code)s AND ts.name = %(tenant_set)s
RETURNING a.destination_id

-- name: routes
-- The whole routing table, longest prefix first.
SELECT r.prefix, r.sender_type, d.code AS destination
FROM fairlane.routes r JOIN fairlane.destinations d ON d.id = r.destination_id
ORDER BY length(r.prefix) DESC, r.prefix, r.sender_type

-- name: queue_scores
-- The scores of active queues, of one destination or all.
SELECT * FROM fairlane.queue_scores
WHERE %(destination)s::text IS NULL OR destination = %(destination)s
ORDER BY destination, rank
