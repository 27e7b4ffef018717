-- What is wrong with a tenant-supplied status callback URL, or NULL when nothing is (docs/decisions/0017):
-- it must be an absolute https URL (http too when the operator allows it: settings.callback_allow_http) of at
-- most 2048 characters, without credentials, whose host is a DNS name or an IP address in its canonical form
-- (a.b.c.d, or IPv6 in brackets without a zone); an address must be public (non_public_networks_v1; a NAT64
-- address 64:ff9b::a.b.c.d is judged by its a.b.c.d) unless one of settings.callback_allow_networks holds it. `localhost` counts as 127.0.0.1; single-label names and
-- the special-use names of private networks (.local, .internal, .localdomain, .home.arpa, .lan, ...) can only
-- resolve to private addresses, so they are refused unless the operator allows some network. What a name
-- resolves to is checked at send time, on every address, by the callback sender.
CREATE OR REPLACE FUNCTION fairlane.callback_url_problem_v1(url text) RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    parts text[];
    scheme text;
    authority text;
    host_name text;
    port text;
    address inet;
    allow_http boolean;
    allowed cidr[];
BEGIN
    IF url IS NULL THEN
        RETURN NULL;
    END IF;
    IF length(url) > 2048 OR url ~ '[[:space:][:cntrl:]]' THEN
        RETURN 'is not a URL of at most 2048 characters without spaces';
    END IF;
    parts := regexp_match(url, '^([A-Za-z][A-Za-z0-9+.-]*)://([^/?#]*)(.*)$');
    IF parts IS NULL THEN
        RETURN 'is not an absolute http(s) URL';
    END IF;
    scheme := lower(parts[1]);
    authority := parts[2];
    SELECT s.callback_allow_http, s.callback_allow_networks INTO allow_http, allowed FROM fairlane.settings s;
    IF scheme = 'http' AND NOT coalesce(allow_http, false) THEN
        RETURN 'must be an https URL (plain http is allowed only when the operator sets callbacks.allow_http)';
    ELSIF scheme NOT IN ('http', 'https') THEN
        RETURN 'must be an https URL';
    ELSIF position('@' IN authority) > 0 THEN
        RETURN 'must not carry credentials (user@host)';
    END IF;
    IF left(authority, 1) = '[' THEN
        parts := regexp_match(authority, '^\[([0-9A-Fa-f:.]+)\](:([0-9]{1,5}))?$');
        IF parts IS NULL OR parts[1] !~ ':' THEN
            RETURN 'has a host that is not an IPv6 address in brackets (zones are not allowed)';
        END IF;
        BEGIN
            address := parts[1]::inet;
        EXCEPTION WHEN invalid_text_representation THEN
            RETURN 'has a host that is not an IPv6 address in brackets (zones are not allowed)';
        END;
        port := parts[3];
    ELSE
        parts := regexp_match(authority, '^([^:]*)(:([0-9]{1,5}))?$');
        IF parts IS NULL OR parts[1] = '' THEN
            RETURN 'has no host, or a port that is not a number';
        END IF;
        host_name := rtrim(lower(parts[1]), '.');
        port := parts[3];
        IF host_name ~ '^(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])(\.(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])){3}$' THEN
            address := host_name::inet;
        ELSIF host_name !~ '^[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?(\.[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?)*$'
              OR length(host_name) > 253 THEN
            RETURN 'has a host that is neither a DNS name (ASCII; IDNs in punycode) nor an IP address';
        ELSIF host_name ~ '(^|\.)(0x[0-9a-f]*|[0-9]+)$' THEN
            -- 2130706433, 0x7f000001, 0177.0.0.1, 127.1: forms of an IPv4 address resolvers accept
            RETURN 'has a host that is an IPv4 address in a non-canonical form; write it as a.b.c.d';
        ELSIF host_name = 'localhost' OR host_name LIKE '%.localhost' THEN
            address := '127.0.0.1'::inet;
        ELSIF (host_name !~ '\.' OR host_name ~ '\.(local|localdomain|internal|intranet|lan|home|corp|private|home\.arpa)$')
              AND cardinality(allowed) = 0 THEN
            RETURN format('has host %s, a name that can only resolve to private addresses', host_name);
        END IF;
    END IF;
    IF port IS NOT NULL AND port::integer NOT BETWEEN 1 AND 65535 THEN
        RETURN format('has port %s, outside 1..65535', port);
    END IF;
    IF address <<= '64:ff9b::/96'::inet THEN  -- NAT64: the IPv4 address in the last 32 bits is what is reached
        address := '0.0.0.0'::inet + (address - '64:ff9b::'::inet);
    END IF;
    IF address IS NOT NULL AND address <<= ANY (fairlane.non_public_networks_v1())
       AND NOT coalesce(address <<= ANY (allowed), false) THEN
        RETURN format('names %s, an address that is not public (the operator may allow it: callbacks.allow_networks)',
                      host(address));
    END IF;
    RETURN NULL;
END
$$;
