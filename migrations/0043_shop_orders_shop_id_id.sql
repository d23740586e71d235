-- no-transaction
-- shop: (shop_id, id) of orders becomes a foreign-key target, so a licence can name the shop of its
-- order (0044). Built concurrently: orders is an existing table.
CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS uq_orders_shop_id_id ON shop.orders (shop_id, id);
