-- Usage that outlives retention (SPEC §8): per tenant, destination, sender, UTC day a message finished and
-- status, how many messages and segments — exact, counted as messages finish and as receipts move them from
-- sent to delivered or undelivered (fairlane.usage_counters, summed over its slots). A tenant's database
-- role sees only its own rows; the API's GET /v1/usage reads it for the calling tenant.
CREATE OR REPLACE VIEW fairlane.usage_daily WITH (security_barrier) AS
SELECT t.name AS tenant,
       d.code AS destination,
       s.address AS sender,
       u.day,
       u.status,
       sum(u.messages)::bigint AS messages,
       sum(u.segments)::bigint AS segments
FROM fairlane.usage_counters u
JOIN fairlane.tenants t ON t.id = u.tenant_id
JOIN fairlane.destinations d ON d.id = u.destination_id
JOIN fairlane.senders s ON s.id = u.sender_id
WHERE (SELECT fairlane.viewer_tenant_v1(current_user)) IS NULL OR u.tenant_id = (SELECT fairlane.viewer_tenant_v1(current_user))
GROUP BY t.name, d.code, s.address, u.day, u.status
HAVING sum(u.messages) <> 0;
