-- no-transaction
-- Citus (issue 25): a unique key of products_to_tags that includes the distribution column
-- shop_id; 0110 puts it in place of the key without shop_id.
-- squawk-ignore require-lock-timeout
CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS uq_products_to_tags_shop_id_product_id_tag_id
    ON shop.products_to_tags (shop_id, product_id, tag_id);
