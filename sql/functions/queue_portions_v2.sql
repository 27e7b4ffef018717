-- Fair portions (SPEC §2) of the active queues of some destinations (queue_portions_v3 with no queue leaving):
-- the closed-form split admission and the inspection views use.
CREATE OR REPLACE FUNCTION fairlane.queue_portions_v2(destination_ids bigint[], joining bigint[])
RETURNS TABLE (queue_id bigint, portion double precision, capped boolean)
LANGUAGE sql STABLE AS $$
    SELECT * FROM fairlane.queue_portions_v3(destination_ids, joining, '{}')
$$;
