-- Queries of `fairlane apply` (psycopg, %(name)s parameters).

-- name: retention
-- How long finished messages are kept.
SELECT retention_seconds FROM fairlane.settings

-- name: update_retention
-- Change how long finished messages are kept.
UPDATE fairlane.settings SET retention_seconds = %(retention_seconds)s

-- name: callbacks
-- Where status callbacks may go beyond public https URLs.
SELECT callback_allow_networks::text[] AS allow_networks, callback_allow_http AS allow_http FROM fairlane.settings

-- name: update_callbacks
-- Change where status callbacks may go.
UPDATE fairlane.settings
SET callback_allow_networks = %(allow_networks)s::cidr[], callback_allow_http = %(allow_http)s

-- name: limits
-- Per-tenant limits.
SELECT scheduled_per_tenant FROM fairlane.settings

-- name: update_limits
-- Change the per-tenant limits.
UPDATE fairlane.settings SET scheduled_per_tenant = %(scheduled_per_tenant)s

-- name: levels
-- Levels of service: the share of a queue each lower level keeps.
SELECT level_minimum_share AS minimum_share FROM fairlane.settings

-- name: update_levels
-- Change the levels of service.
UPDATE fairlane.settings SET level_minimum_share = %(minimum_share)s

-- name: tenant_set
-- One tenant set by name.
SELECT weight FROM fairlane.tenant_sets WHERE name = %(name)s

-- name: upsert_tenant_set
-- Create a tenant set or change its weight.
INSERT INTO fairlane.tenant_sets (name, weight) VALUES (%(name)s, %(weight)s)
ON CONFLICT (name) DO UPDATE SET weight = excluded.weight

-- name: gateway
-- One gateway by name.
SELECT kind, url, timeout_seconds, max_in_flight, receipts_token, smpp FROM fairlane.gateways WHERE name = %(name)s

-- name: upsert_gateway
-- Create or change a gateway.
INSERT INTO fairlane.gateways (name, kind, url, timeout_seconds, max_in_flight, receipts_token, smpp)
VALUES (%(name)s, %(kind)s, %(url)s, %(timeout_seconds)s, %(max_in_flight)s, %(receipts_token)s, %(smpp)s)
ON CONFLICT (name) DO UPDATE SET kind = excluded.kind, url = excluded.url,
    timeout_seconds = excluded.timeout_seconds, max_in_flight = excluded.max_in_flight,
    receipts_token = excluded.receipts_token, smpp = excluded.smpp

-- name: destination
-- One destination by code, with its gateway's name and its quota windows.
SELECT g.name AS gateway, d.rate, d.burst, d.max_drain_seconds, d.default_validity_seconds,
       d.per_minute, d.per_hour, d.per_day, d.reset_timezone, d.window_kind AS "window"
FROM fairlane.destinations d JOIN fairlane.gateways g ON g.id = d.gateway_id WHERE d.code = %(code)s

-- name: upsert_destination
-- Create or change a destination.
INSERT INTO fairlane.destinations (code, gateway_id, rate, burst, max_drain_seconds, default_validity_seconds,
                                   per_minute, per_hour, per_day, reset_timezone, window_kind)
SELECT %(code)s, g.id, %(rate)s, %(burst)s, %(max_drain_seconds)s, %(default_validity_seconds)s,
       %(per_minute)s, %(per_hour)s, %(per_day)s, %(reset_timezone)s, %(window)s
FROM fairlane.gateways g WHERE g.name = %(gateway)s
ON CONFLICT (code) DO UPDATE SET gateway_id = excluded.gateway_id, rate = excluded.rate,
    burst = excluded.burst, max_drain_seconds = excluded.max_drain_seconds,
    default_validity_seconds = excluded.default_validity_seconds, per_minute = excluded.per_minute,
    per_hour = excluded.per_hour, per_day = excluded.per_day, reset_timezone = excluded.reset_timezone,
    window_kind = excluded.window_kind

-- name: allocations
-- A destination's per-tenant-set allocations.
SELECT ts.name AS tenant_set, a.weight, a.rate
FROM fairlane.allocations a
JOIN fairlane.destinations d ON d.id = a.destination_id
JOIN fairlane.tenant_sets ts ON ts.id = a.tenant_set_id
WHERE d.code = %(code)s

-- name: upsert_allocation
-- Create or change one allocation.
INSERT INTO fairlane.allocations (destination_id, tenant_set_id, weight, rate)
SELECT d.id, ts.id, %(weight)s, %(rate)s
FROM fairlane.destinations d, fairlane.tenant_sets ts
WHERE d.code = %(code)s AND ts.name = %(tenant_set)s
ON CONFLICT (destination_id, tenant_set_id) DO UPDATE SET weight = excluded.weight, rate = excluded.rate

-- name: delete_allocation
-- Remove one allocation.
DELETE FROM fairlane.allocations a
USING fairlane.destinations d, fairlane.tenant_sets ts
WHERE a.destination_id = d.id AND a.tenant_set_id = ts.id AND d.code = %(code)s AND ts.name = %(tenant_set)s

-- name: tenant
-- One tenant by name, with its set's name.
SELECT ts.name AS tenant_set, t.weight, t.status_callback
FROM fairlane.tenants t JOIN fairlane.tenant_sets ts ON ts.id = t.tenant_set_id WHERE t.name = %(name)s

-- name: upsert_tenant
-- Create or change a tenant.
INSERT INTO fairlane.tenants (name, tenant_set_id, weight, status_callback)
SELECT %(name)s, ts.id, %(weight)s, %(status_callback)s FROM fairlane.tenant_sets ts WHERE ts.name = %(tenant_set)s
ON CONFLICT (name) DO UPDATE SET tenant_set_id = excluded.tenant_set_id, weight = excluded.weight,
    status_callback = excluded.status_callback
RETURNING id

-- name: insert_api_key
-- Store a new API key's digest for a tenant.
INSERT INTO fairlane.api_keys (tenant_id, key_hash)
SELECT t.id, %(key_hash)s FROM fairlane.tenants t WHERE t.name = %(tenant)s

-- name: sender
-- One sender of a tenant, with its quota windows.
SELECT s.type, s.rate_cap, s.per_minute, s.per_hour, s.per_day, s.reset_timezone, s.window_kind AS "window"
FROM fairlane.senders s JOIN fairlane.tenants t ON t.id = s.tenant_id
WHERE t.name = %(tenant)s AND s.address = %(address)s

-- name: upsert_sender
-- Create or change a sender of a tenant.
INSERT INTO fairlane.senders (tenant_id, address, type, rate_cap, per_minute, per_hour, per_day, reset_timezone,
                              window_kind)
SELECT t.id, %(address)s, %(type)s, %(rate_cap)s, %(per_minute)s, %(per_hour)s, %(per_day)s, %(reset_timezone)s,
       %(window)s
FROM fairlane.tenants t WHERE t.name = %(tenant)s
ON CONFLICT (tenant_id, address) DO UPDATE SET type = excluded.type, rate_cap = excluded.rate_cap,
    per_minute = excluded.per_minute, per_hour = excluded.per_hour, per_day = excluded.per_day,
    reset_timezone = excluded.reset_timezone, window_kind = excluded.window_kind

-- name: grant_tenant_role
-- Map a database role to a tenant (creating the role when missing); true when something changed.
SELECT fairlane.grant_tenant_role_v1(%(tenant)s, %(role)s) AS changed

-- name: routes
-- The whole routing table.
SELECT r.prefix, r.sender_type, d.code AS destination
FROM fairlane.routes r JOIN fairlane.destinations d ON d.id = r.destination_id

-- name: delete_route
-- Remove one route.
DELETE FROM fairlane.routes WHERE prefix = %(prefix)s AND sender_type = %(sender_type)s

-- name: upsert_route
-- Create or change one route.
INSERT INTO fairlane.routes (prefix, sender_type, destination_id)
SELECT %(prefix)s, %(sender_type)s, d.id FROM fairlane.destinations d WHERE d.code = %(destination)s
ON CONFLICT (prefix, sender_type) DO UPDATE SET destination_id = excluded.destination_id

-- name: is_configured
-- Whether any destination exists (an unconfigured database gets the example configuration).
SELECT EXISTS (SELECT FROM fairlane.destinations) AS configured

-- name: gateways
-- Every gateway.
SELECT name, kind, url, receipts_token FROM fairlane.gateways ORDER BY name

-- name: api_key_works
-- Whether a key (by its digest) is a tenant's and not revoked.
SELECT EXISTS (
    SELECT FROM fairlane.api_keys k JOIN fairlane.tenants t ON t.id = k.tenant_id
    WHERE t.name = %(tenant)s AND k.key_hash = %(key_hash)s AND k.revoked_at IS NULL
) AS works

-- name: tenants
-- Every tenant's name, the demo tenant first when there is one.
SELECT name FROM fairlane.tenants ORDER BY name <> 'demo', name

-- name: smpp_gateway
-- An smpp gateway's session settings, password included (for `fairlane run`'s simulator; never shown by the API).
SELECT smpp FROM fairlane.gateways WHERE name = %(name)s AND kind = 'smpp'
