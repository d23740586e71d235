-- no-transaction
-- Citus (issue 25): a unique key of info_requests that includes the distribution column
-- shop_id; 0110 puts it in place of the key without shop_id.
-- squawk-ignore require-lock-timeout
CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS uq_info_requests_shop_id_id
    ON shop.info_requests (shop_id, id);
