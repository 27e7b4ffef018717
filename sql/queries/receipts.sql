-- Queries of delivery receipts (asyncpg, $n parameters).

-- name: receipts_token
-- Whether gateway $1 exists, and the bearer token its receipts must carry (NULL: none).
SELECT true AS found, receipts_token FROM fairlane.gateways WHERE name = $1

-- name: receipt
-- Apply a delivery receipt from gateway $1 for provider id $2 or message id $3.
SELECT fairlane.receipt_v1($1, $2, $3, $4, $5)
