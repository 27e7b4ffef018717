-- The networks a tenant-supplied URL may not reach unless the operator allows them (`callbacks.allow_networks`,
-- docs/decisions/0017): "this network", private, shared (CGNAT), loopback, link-local, IETF protocol
-- assignments, documentation, 6to4 relay, benchmarking, multicast and reserved IPv4 ranges (broadcast
-- included); the IPv6 unspecified and loopback addresses, IPv4-compatible and IPv4-mapped addresses, local-use
-- NAT64, discard-only, IETF protocol assignments (Teredo included), documentation, 6to4, unique-local,
-- link-local, site-local and multicast ranges. The well-known NAT64 prefix (64:ff9b::/96) is not listed: such
-- an address reaches the IPv4 address in its last 32 bits, and that address is the one checked. The callback
-- sender checks every resolved address against the same list (service/model/urls.py; a test holds the two
-- equal).
CREATE OR REPLACE FUNCTION fairlane.non_public_networks_v1() RETURNS cidr[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT ARRAY[
        '0.0.0.0/8', '10.0.0.0/8', '100.64.0.0/10', '127.0.0.0/8', '169.254.0.0/16', '172.16.0.0/12',
        '192.0.0.0/24', '192.0.2.0/24', '192.88.99.0/24', '192.168.0.0/16', '198.18.0.0/15', '198.51.100.0/24',
        '203.0.113.0/24', '224.0.0.0/4', '240.0.0.0/4',
        '::/128', '::1/128', '::/96', '::ffff:0:0/96', '64:ff9b:1::/48', '100::/64', '2001::/23',
        '2001:db8::/32', '2002::/16', 'fc00::/7', 'fe80::/10', 'fec0::/10', 'ff00::/8'
    ]::cidr[]
$$;
