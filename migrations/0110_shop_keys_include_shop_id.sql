-- Citus (issue 25): every key of a shop-owned table includes shop_id, so that one schema serves
-- a single PostgreSQL server and a Citus cluster distributing these tables by shop_id.
-- - Primary and unique keys without shop_id are replaced by the (shop_id, …) indexes built
--   concurrently by 0092–0109 (taken over here as constraints: a catalog change, no scan).
-- - Tables whose (shop_id, id) key already existed keep it and lose the id-only primary key;
--   they use that key as their replica identity (Citus moves shards by logical replication).
-- - Foreign keys from child tables reference their parent by (shop_id, parent id), added NOT
--   VALID here and validated in 0111.
-- Ids stay random uuids; what no longer exists is a database check that an id is unique across
-- shops (every statement names its shop).
--
-- Contract: `ON CONFLICT (category_id)` and the like of older binaries find no matching key.
-- Linter: every dropped constraint is replaced in the same statement by one that includes shop_id
-- (the guarantee stays, per shop), and each SET NOT NULL is proved by a check validated in 0091
-- (PostgreSQL skips the scan).
-- squawk-ignore-file ban-drop-constraint, adding-not-nullable-field
SET LOCAL lock_timeout = '5s';

INSERT INTO _shared_db_contracts (version, requires_version, release, reason)
VALUES (110, 90, 'shared-db 0.6 (issue 25)',
        'keys of shop-owned tables include shop_id (ON CONFLICT targets changed)');

-- Child tables: NOT NULL shop_id (proved by 0091's validated checks: no scan).
ALTER TABLE shop.category_translations ALTER COLUMN shop_id SET NOT NULL,
    DROP CONSTRAINT ck_category_translations_shop_id_not_null;
ALTER TABLE shop.product_translations ALTER COLUMN shop_id SET NOT NULL,
    DROP CONSTRAINT ck_product_translations_shop_id_not_null;
ALTER TABLE shop.tag_translations ALTER COLUMN shop_id SET NOT NULL,
    DROP CONSTRAINT ck_tag_translations_shop_id_not_null;
ALTER TABLE shop.attribute_translations ALTER COLUMN shop_id SET NOT NULL,
    DROP CONSTRAINT ck_attribute_translations_shop_id_not_null;
ALTER TABLE shop.attribute_options ALTER COLUMN shop_id SET NOT NULL,
    DROP CONSTRAINT ck_attribute_options_shop_id_not_null;

-- Foreign keys by id alone go first (they depend on the id-only keys dropped below).
ALTER TABLE shop.category_translations DROP CONSTRAINT fk_category_translations_category_id_categories;
ALTER TABLE shop.product_translations DROP CONSTRAINT fk_product_translations_product_id_products;
ALTER TABLE shop.tag_translations DROP CONSTRAINT fk_tag_translations_tag_id_tags;
ALTER TABLE shop.attribute_translations DROP CONSTRAINT fk_attribute_translations_attribute_id_attributes;
ALTER TABLE shop.attribute_options DROP CONSTRAINT fk_attribute_options_attribute_id_attributes;
ALTER TABLE shop.product_attribute_values DROP CONSTRAINT fk_product_attribute_values_option_id_attribute_options;

-- Tables with a (shop_id, id) key already: the id-only primary key goes.
ALTER TABLE shop.categories DROP CONSTRAINT pk_categories,
    REPLICA IDENTITY USING INDEX uq_categories_shop_id_id;
ALTER TABLE shop.products DROP CONSTRAINT pk_products,
    REPLICA IDENTITY USING INDEX uq_products_shop_id_id;
ALTER TABLE shop.tags DROP CONSTRAINT pk_tags,
    REPLICA IDENTITY USING INDEX uq_tags_shop_id_id;
ALTER TABLE shop.attributes DROP CONSTRAINT pk_attributes,
    REPLICA IDENTITY USING INDEX uq_attributes_shop_id_id;
ALTER TABLE shop.accounts DROP CONSTRAINT pk_accounts,
    REPLICA IDENTITY USING INDEX uq_accounts_shop_id_id;
ALTER TABLE shop.orders DROP CONSTRAINT pk_orders,
    REPLICA IDENTITY USING INDEX uq_orders_shop_id_id;

-- Tables whose primary key becomes (shop_id, id).
ALTER TABLE shop.shops_users DROP CONSTRAINT pk_shops_users,
    ADD CONSTRAINT pk_shops_users PRIMARY KEY USING INDEX uq_shops_users_shop_id_id;
ALTER TABLE shop.category_translations DROP CONSTRAINT pk_category_translations,
    ADD CONSTRAINT pk_category_translations PRIMARY KEY USING INDEX uq_category_translations_shop_id_id,
    DROP CONSTRAINT uq_category_translations_category_id,
    ADD CONSTRAINT uq_category_translations_shop_id_category_id
        UNIQUE USING INDEX uq_category_translations_shop_id_category_id;
ALTER TABLE shop.product_translations DROP CONSTRAINT pk_product_translations,
    ADD CONSTRAINT pk_product_translations PRIMARY KEY USING INDEX uq_product_translations_shop_id_id,
    DROP CONSTRAINT uq_product_translations_product_id,
    ADD CONSTRAINT uq_product_translations_shop_id_product_id
        UNIQUE USING INDEX uq_product_translations_shop_id_product_id;
ALTER TABLE shop.tag_translations DROP CONSTRAINT pk_tag_translations,
    ADD CONSTRAINT pk_tag_translations PRIMARY KEY USING INDEX uq_tag_translations_shop_id_id,
    DROP CONSTRAINT uq_tag_translations_tag_id,
    ADD CONSTRAINT uq_tag_translations_shop_id_tag_id
        UNIQUE USING INDEX uq_tag_translations_shop_id_tag_id;
ALTER TABLE shop.attribute_translations DROP CONSTRAINT pk_attribute_translations,
    ADD CONSTRAINT pk_attribute_translations PRIMARY KEY USING INDEX uq_attribute_translations_shop_id_id,
    DROP CONSTRAINT uq_attribute_translations_attribute_id,
    ADD CONSTRAINT uq_attribute_translations_shop_id_attribute_id
        UNIQUE USING INDEX uq_attribute_translations_shop_id_attribute_id;
ALTER TABLE shop.attribute_options DROP CONSTRAINT pk_attribute_options,
    ADD CONSTRAINT pk_attribute_options PRIMARY KEY USING INDEX uq_attribute_options_shop_id_id,
    DROP CONSTRAINT uq_attribute_options_attribute_id_value_key,
    ADD CONSTRAINT uq_attribute_options_shop_id_attribute_id_value_key
        UNIQUE USING INDEX uq_attribute_options_shop_id_attribute_id_value_key,
    DROP CONSTRAINT uq_attribute_options_attribute_id_id,
    ADD CONSTRAINT uq_attribute_options_shop_id_attribute_id_id
        UNIQUE USING INDEX uq_attribute_options_shop_id_attribute_id_id;
ALTER TABLE shop.products_to_tags DROP CONSTRAINT pk_products_to_tags,
    ADD CONSTRAINT pk_products_to_tags PRIMARY KEY USING INDEX uq_products_to_tags_shop_id_id,
    DROP CONSTRAINT uq_products_to_tags_product_id_tag_id,
    ADD CONSTRAINT uq_products_to_tags_shop_id_product_id_tag_id
        UNIQUE USING INDEX uq_products_to_tags_shop_id_product_id_tag_id;
ALTER TABLE shop.product_attribute_values DROP CONSTRAINT pk_product_attribute_values,
    ADD CONSTRAINT pk_product_attribute_values PRIMARY KEY USING INDEX uq_product_attribute_values_shop_id_id,
    DROP CONSTRAINT uq_product_attribute_values_product_attribute_option,
    ADD CONSTRAINT uq_product_attribute_values_shop_product_attr_option
        UNIQUE USING INDEX uq_product_attribute_values_shop_product_attr_option;
ALTER TABLE shop.info_requests DROP CONSTRAINT pk_info_requests,
    ADD CONSTRAINT pk_info_requests PRIMARY KEY USING INDEX uq_info_requests_shop_id_id;
-- Global licences have no shop (shop_id NULL), so no primary key: a unique (shop_id, id), and the
-- whole row as replica identity.
ALTER TABLE shop.licenses DROP CONSTRAINT pk_licenses,
    ADD CONSTRAINT uq_licenses_shop_id_id UNIQUE USING INDEX uq_licenses_shop_id_id,
    REPLICA IDENTITY FULL;

-- Child → parent by (shop_id, parent id): co-located foreign keys.
ALTER TABLE shop.category_translations ADD CONSTRAINT fk_category_translations_category_id_categories
    FOREIGN KEY (shop_id, category_id) REFERENCES shop.categories (shop_id, id) ON DELETE CASCADE NOT VALID;
ALTER TABLE shop.product_translations ADD CONSTRAINT fk_product_translations_product_id_products
    FOREIGN KEY (shop_id, product_id) REFERENCES shop.products (shop_id, id) ON DELETE CASCADE NOT VALID;
ALTER TABLE shop.tag_translations ADD CONSTRAINT fk_tag_translations_tag_id_tags
    FOREIGN KEY (shop_id, tag_id) REFERENCES shop.tags (shop_id, id) ON DELETE CASCADE NOT VALID;
ALTER TABLE shop.attribute_translations ADD CONSTRAINT fk_attribute_translations_attribute_id_attributes
    FOREIGN KEY (shop_id, attribute_id) REFERENCES shop.attributes (shop_id, id) ON DELETE CASCADE NOT VALID;
ALTER TABLE shop.attribute_options ADD CONSTRAINT fk_attribute_options_attribute_id_attributes
    FOREIGN KEY (shop_id, attribute_id) REFERENCES shop.attributes (shop_id, id) ON DELETE CASCADE NOT VALID;
ALTER TABLE shop.product_attribute_values ADD CONSTRAINT fk_product_attribute_values_option_id_attribute_options
    FOREIGN KEY (shop_id, attribute_id, option_id) REFERENCES shop.attribute_options (shop_id, attribute_id, id)
    ON DELETE RESTRICT NOT VALID;
