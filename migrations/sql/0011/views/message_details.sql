-- One message as the HTTP API shows it (SPEC §5): tenant, sender and destination by name; finished_at says
-- where it is (NULL: live; `finished_at IS NULL` in a query reads messages_live alone); its level of service
-- by name (docs/decisions/0020).
CREATE OR REPLACE VIEW fairlane.message_details AS
SELECT m.id,
       m.tenant_id,
       t.name AS tenant,
       m.status,
       m.recipient,
       s.address AS sender,
       d.code AS destination,
       m.body,
       m.segments,
       m.encoding,
       m.attempts,
       m.provider_id,
       m.error_code,
       m.error_message,
       m.status_callback,
       m.created_at,
       m.updated_at,
       m.send_at,
       m.expires_at,
       m.finished_at,
       CASE m.priority WHEN 0 THEN 'high' WHEN 2 THEN 'bulk' ELSE 'normal' END AS priority
FROM fairlane.messages m
JOIN fairlane.tenants t ON t.id = m.tenant_id
JOIN fairlane.queues q ON q.id = m.queue_id
JOIN fairlane.senders s ON s.id = q.sender_id
JOIN fairlane.destinations d ON d.id = q.destination_id;
