-- no-transaction
-- Citus (issue 25): a unique key of attribute_translations that includes the distribution column
-- shop_id; 0110 puts it in place of the key without shop_id.
-- squawk-ignore require-lock-timeout
CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS uq_attribute_translations_shop_id_id
    ON shop.attribute_translations (shop_id, id);
