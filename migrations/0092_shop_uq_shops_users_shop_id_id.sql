-- no-transaction
-- Citus (issue 25): a unique key of shops_users that includes the distribution column
-- shop_id; 0110 puts it in place of the key without shop_id.
-- squawk-ignore require-lock-timeout
CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS uq_shops_users_shop_id_id
    ON shop.shops_users (shop_id, id);
