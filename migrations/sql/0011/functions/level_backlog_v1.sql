-- The queued segments a new message of level `priority` waits behind in its queue (docs/decisions/0020), for
-- admission control: a high-priority message only the high ones (counted, at most 100,000 messages: its drain
-- is judged long before), a normal or bulk one the whole queue (conservative for normal).
CREATE OR REPLACE FUNCTION fairlane.level_backlog_v1(queue bigint, priority smallint, queued_segments bigint)
RETURNS bigint
LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN priority = 0
                THEN (SELECT coalesce(sum(h.segments), 0)::bigint
                      FROM (SELECT m.segments FROM fairlane.messages_live m
                            WHERE m.queue_id = queue AND m.status = 'queued' AND m.priority = 0
                            LIMIT 100000) h)
                ELSE queued_segments END
$$;
