-- no-transaction
-- Citus (issue 25): a unique key of category_translations that includes the distribution column
-- shop_id; 0110 puts it in place of the key without shop_id.
-- squawk-ignore require-lock-timeout
CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS uq_category_translations_shop_id_category_id
    ON shop.category_translations (shop_id, category_id);
