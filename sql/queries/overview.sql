-- What `fairlane run` needs to know of the configuration (psycopg).

-- name: gateways
-- Every gateway.
SELECT name, kind, url, receipts_token FROM fairlane.gateways ORDER BY name

-- name: tenants
-- Every tenant's name, the demo tenant first when there is one.
SELECT name FROM fairlane.tenants ORDER BY name <> 'demo', name
