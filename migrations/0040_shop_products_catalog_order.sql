-- shop: the storefront catalog page (`shop::products::catalog_page` / `catalog_page_after`) walks a
-- shop's products in (order_number, id) order. Without this index every page sorts all of the shop's
-- products; with it a keyset page reads only its own 50 rows, whatever its depth (benchmark W5).
CREATE INDEX ix_products_shop_id_order_number_id ON shop.products (shop_id, order_number, id);
