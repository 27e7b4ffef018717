-- Row trigger on fairlane.tenants: a tenant's status_callback follows the rules of every callback URL
-- (callback_url_problem_v1), checked when it is set or changed (`fairlane apply`, the admin API, SQL).
CREATE OR REPLACE FUNCTION fairlane.check_tenant_callback_v1() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    problem text;
BEGIN
    IF TG_OP = 'UPDATE' AND NEW.status_callback IS NOT DISTINCT FROM OLD.status_callback THEN
        RETURN NEW;
    END IF;
    problem := fairlane.callback_url_problem_v1(NEW.status_callback);
    IF problem IS NOT NULL THEN
        PERFORM fairlane.raise_v1('invalid_request', 'status_callback', left(NEW.status_callback, 100),
                                  format('status_callback %s %s', quote_literal(left(NEW.status_callback, 100)), problem));
    END IF;
    RETURN NEW;
END
$$;
