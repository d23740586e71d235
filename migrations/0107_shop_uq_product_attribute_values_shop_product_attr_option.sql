-- no-transaction
-- Citus (issue 25): a unique key of product_attribute_values that includes the distribution column
-- shop_id; 0110 puts it in place of the key without shop_id.
-- squawk-ignore require-lock-timeout
CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS uq_product_attribute_values_shop_product_attr_option
    ON shop.product_attribute_values (shop_id, product_id, attribute_id, option_id) NULLS NOT DISTINCT;
