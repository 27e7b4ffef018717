-- A destination's or sender's quota windows changed (per_minute, per_hour, per_day, reset_timezone,
-- window_kind; docs/decisions/0020): its rows of quota_windows follow. A window added starts empty, a window
-- removed goes; a changed quota keeps what was counted and reopens a closed window; a changed time zone or kind
-- counts afresh. The time zone must be one PostgreSQL knows.
CREATE OR REPLACE FUNCTION fairlane.sync_windows_v1() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    destination bigint := CASE WHEN TG_TABLE_NAME = 'destinations' THEN NEW.id END;
    sender bigint := CASE WHEN TG_TABLE_NAME = 'senders' THEN NEW.id END;
BEGIN
    BEGIN
        PERFORM now() AT TIME ZONE NEW.reset_timezone;
    EXCEPTION WHEN invalid_parameter_value THEN
        PERFORM fairlane.raise_v1(
            'invalid_request', 'reset_timezone', NEW.reset_timezone,
            format('reset_timezone %s is not a time zone such as UTC or America/New_York',
                   quote_literal(NEW.reset_timezone)));
    END;
    DELETE FROM fairlane.quota_windows w
    USING (VALUES ('minute', NEW.per_minute), ('hour', NEW.per_hour), ('day', NEW.per_day)) AS p(period, quota)
    WHERE (w.destination_id = destination OR w.sender_id = sender) AND w.period = p.period AND p.quota IS NULL;
    UPDATE fairlane.quota_windows w
    SET quota = p.quota,
        reset_timezone = NEW.reset_timezone,
        sliding = NEW.window_kind = 'sliding',
        counts = CASE WHEN w.reset_timezone = NEW.reset_timezone AND w.sliding = (NEW.window_kind = 'sliding')
                      THEN w.counts ELSE '{}' END,
        counted_at = CASE WHEN w.reset_timezone = NEW.reset_timezone AND w.sliding = (NEW.window_kind = 'sliding')
                          THEN w.counted_at END,
        closed_until = NULL
    FROM (VALUES ('minute', NEW.per_minute), ('hour', NEW.per_hour), ('day', NEW.per_day)) AS p(period, quota)
    WHERE (w.destination_id = destination OR w.sender_id = sender) AND w.period = p.period
      AND (w.quota, w.reset_timezone, w.sliding) IS DISTINCT FROM (p.quota, NEW.reset_timezone, NEW.window_kind = 'sliding');
    INSERT INTO fairlane.quota_windows (destination_id, sender_id, period, quota, reset_timezone, sliding)
    SELECT destination, sender, p.period, p.quota, NEW.reset_timezone, NEW.window_kind = 'sliding'
    FROM (VALUES ('minute', NEW.per_minute), ('hour', NEW.per_hour), ('day', NEW.per_day)) AS p(period, quota)
    WHERE p.quota IS NOT NULL
    ON CONFLICT DO NOTHING;
    RETURN NULL;
END
$$;
