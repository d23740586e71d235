-- no-transaction
-- shop: one order per (shop, idempotency key): a create retried after a lost COMMIT finds the first
-- order. NULL keys (creates without a key) never conflict. Built concurrently: orders is an existing table.
CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS uq_orders_shop_id_idempotency_key ON shop.orders (shop_id, idempotency_key);
