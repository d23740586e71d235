-- shop: optimistic concurrency for admin edits, and tenant integrity enforced by the schema.
--
-- 1. `version` on shops, categories and products: bumped by every edit through the library
--    (`update` passes the version it read and a stale one changes nothing). Stock changes do
--    not bump it: a sale never makes an admin's edit stale.
-- 2. product_attribute_values gets the shop_id of its product, with composite foreign keys to
--    the product and to the attribute: a value can no longer link two shops' rows.
-- 3. a licence names the shop of its order ((shop_id, order_id) -> orders (shop_id, id)).
-- 4. completed_by must be a member of the order's shop
--    ((shop_id, completed_by) -> shops_users (shop_id, user_id)); ending the membership (or
--    deleting the user) keeps the order and forgets who completed it, as deleting the user did.
-- 5. orders.idempotency_key: the caller's key of a create, so a retried create after a lost
--    COMMIT returns the first order instead of placing a second (unique index in 0045).
--
-- Existing rows: the new shop_id columns are filled from the parent rows; a row that already
-- links two shops (or a completed_by who is not a member) fails the validation of its
-- constraint, naming it, and nothing is changed. Lock waits are bounded.
SET LOCAL lock_timeout = '5s';

ALTER TABLE shop.shops ADD COLUMN version integer NOT NULL DEFAULT 1;
ALTER TABLE shop.categories ADD COLUMN version integer NOT NULL DEFAULT 1;
ALTER TABLE shop.products ADD COLUMN version integer NOT NULL DEFAULT 1;

ALTER TABLE shop.attributes ADD CONSTRAINT uq_attributes_shop_id_id UNIQUE USING INDEX uq_attributes_shop_id_id;
ALTER TABLE shop.orders ADD CONSTRAINT uq_orders_shop_id_id UNIQUE USING INDEX uq_orders_shop_id_id;

-- 2. product attribute values
ALTER TABLE shop.product_attribute_values ADD COLUMN shop_id uuid;
UPDATE shop.product_attribute_values v SET shop_id = p.shop_id
FROM shop.products p WHERE p.id = v.product_id;
ALTER TABLE shop.product_attribute_values
    ALTER COLUMN shop_id SET NOT NULL,
    DROP CONSTRAINT fk_product_attribute_values_product_id_products,
    DROP CONSTRAINT fk_product_attribute_values_attribute_id_attributes,
    ADD CONSTRAINT fk_product_attribute_values_product_id_products FOREIGN KEY (shop_id, product_id)
        REFERENCES shop.products (shop_id, id) ON DELETE CASCADE,
    -- an attribute still used by a product cannot be deleted (Conflict)
    ADD CONSTRAINT fk_product_attribute_values_attribute_id_attributes FOREIGN KEY (shop_id, attribute_id)
        REFERENCES shop.attributes (shop_id, id) ON DELETE RESTRICT;

-- 3. licences
ALTER TABLE shop.licenses ADD COLUMN shop_id uuid;
UPDATE shop.licenses l SET shop_id = o.shop_id FROM shop.orders o WHERE o.id = l.order_id;
ALTER TABLE shop.licenses
    DROP CONSTRAINT fk_licenses_order_id_orders,
    ADD CONSTRAINT fk_licenses_shop_id_shops FOREIGN KEY (shop_id) REFERENCES shop.shops (id) ON DELETE RESTRICT,
    -- a license keeps its order (and so the order's account) from being deleted
    ADD CONSTRAINT fk_licenses_order_id_orders FOREIGN KEY (shop_id, order_id)
        REFERENCES shop.orders (shop_id, id) ON DELETE RESTRICT,
    -- a single NULL would switch the composite key off (MATCH SIMPLE): an order implies its shop
    ADD CONSTRAINT ck_licenses_order_has_shop CHECK (order_id IS NULL OR shop_id IS NOT NULL);

-- 4. completed_by
ALTER TABLE shop.orders
    DROP CONSTRAINT fk_orders_completed_by_users,
    ADD CONSTRAINT fk_orders_completed_by_shops_users FOREIGN KEY (shop_id, completed_by)
        REFERENCES shop.shops_users (shop_id, user_id) ON DELETE SET NULL (completed_by);

-- 5. idempotent order creation
ALTER TABLE shop.orders ADD COLUMN idempotency_key uuid;
