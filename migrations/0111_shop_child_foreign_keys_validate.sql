-- Validates 0110's foreign keys (SHARE UPDATE EXCLUSIVE on the child, ROW SHARE on the parent:
-- writers go on).
SET LOCAL lock_timeout = '5s';

ALTER TABLE shop.category_translations VALIDATE CONSTRAINT fk_category_translations_category_id_categories;
ALTER TABLE shop.product_translations VALIDATE CONSTRAINT fk_product_translations_product_id_products;
ALTER TABLE shop.tag_translations VALIDATE CONSTRAINT fk_tag_translations_tag_id_tags;
ALTER TABLE shop.attribute_translations VALIDATE CONSTRAINT fk_attribute_translations_attribute_id_attributes;
ALTER TABLE shop.attribute_options VALIDATE CONSTRAINT fk_attribute_options_attribute_id_attributes;
ALTER TABLE shop.product_attribute_values VALIDATE CONSTRAINT fk_product_attribute_values_option_id_attribute_options;
