-- Citus (issue 25) refuses ON DELETE SET NULL on a foreign key that includes the distribution
-- column, even with PostgreSQL 15's column list (`SET NULL (product_id)`). The two such keys
-- become NO ACTION, checked at the end of the statement; the statements that delete a product,
-- a shop member or a user clear the referencing column in the same statement first (a
-- data-modifying CTE), so the outcome is the one SET NULL gave.
--
-- Contract: an older binary's delete would now be refused instead of clearing the column.
-- Linter: each dropped key is re-added at once, NOT VALID, and validated in 0113.
-- squawk-ignore-file ban-drop-constraint
SET LOCAL lock_timeout = '5s';

INSERT INTO _shared_db_contracts (version, requires_version, release, reason)
VALUES (112, 112, 'shared-db 0.6 (issue 25)',
        'deleting a product or a member clears info_requests.product_id / orders.completed_by in the statement (no SET NULL keys)');

ALTER TABLE shop.info_requests DROP CONSTRAINT fk_info_requests_product_id_products,
    ADD CONSTRAINT fk_info_requests_product_id_products FOREIGN KEY (shop_id, product_id)
        REFERENCES shop.products (shop_id, id) ON DELETE NO ACTION NOT VALID;
ALTER TABLE shop.orders DROP CONSTRAINT fk_orders_completed_by_shops_users,
    ADD CONSTRAINT fk_orders_completed_by_shops_users FOREIGN KEY (shop_id, completed_by)
        REFERENCES shop.shops_users (shop_id, user_id) ON DELETE NO ACTION NOT VALID;
