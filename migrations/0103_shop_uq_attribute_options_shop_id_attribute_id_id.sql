-- no-transaction
-- Citus (issue 25): a unique key of attribute_options that includes the distribution column
-- shop_id; 0110 puts it in place of the key without shop_id.
-- squawk-ignore require-lock-timeout
CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS uq_attribute_options_shop_id_attribute_id_id
    ON shop.attribute_options (shop_id, attribute_id, id);
