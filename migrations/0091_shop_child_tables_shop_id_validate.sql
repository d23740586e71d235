-- Validates 0090's checks (SHARE UPDATE EXCLUSIVE: readers and writers go on).
SET LOCAL lock_timeout = '5s';

ALTER TABLE shop.category_translations VALIDATE CONSTRAINT ck_category_translations_shop_id_not_null;
ALTER TABLE shop.product_translations VALIDATE CONSTRAINT ck_product_translations_shop_id_not_null;
ALTER TABLE shop.tag_translations VALIDATE CONSTRAINT ck_tag_translations_shop_id_not_null;
ALTER TABLE shop.attribute_translations VALIDATE CONSTRAINT ck_attribute_translations_shop_id_not_null;
ALTER TABLE shop.attribute_options VALIDATE CONSTRAINT ck_attribute_options_shop_id_not_null;
