-- no-transaction
-- shop: (shop_id, id) of attributes becomes a foreign-key target, so product attribute values can
-- name the shop of their attribute (0044). Built concurrently: attributes is an existing table.
CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS uq_attributes_shop_id_id ON shop.attributes (shop_id, id);
