-- Validates 0112's foreign keys (writers go on).
SET LOCAL lock_timeout = '5s';

ALTER TABLE shop.info_requests VALIDATE CONSTRAINT fk_info_requests_product_id_products;
ALTER TABLE shop.orders VALIDATE CONSTRAINT fk_orders_completed_by_shops_users;
