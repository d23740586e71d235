-- Citus (issue 25): a table distributed by shop_id needs shop_id in every row, and its child
-- tables must carry it too to be co-located with their parent (a foreign key between distributed
-- tables must include the distribution column). The translation tables and attribute_options
-- hang off a shop-owned parent by its id alone; here they get the parent's shop_id.
--
-- Contract: a writer of a release before this one inserts translations and options without
-- shop_id, which the check below refuses, so such binaries must not serve on top of it.
SET LOCAL lock_timeout = '5s';

INSERT INTO _shared_db_contracts (version, requires_version, release, reason)
VALUES (90, 90, 'shared-db 0.6 (issue 25)',
        'translation and attribute option rows must carry shop_id (keys of a schema distributable by shop_id)');

ALTER TABLE shop.category_translations ADD COLUMN IF NOT EXISTS shop_id uuid;
ALTER TABLE shop.product_translations ADD COLUMN IF NOT EXISTS shop_id uuid;
ALTER TABLE shop.tag_translations ADD COLUMN IF NOT EXISTS shop_id uuid;
ALTER TABLE shop.attribute_translations ADD COLUMN IF NOT EXISTS shop_id uuid;
ALTER TABLE shop.attribute_options ADD COLUMN IF NOT EXISTS shop_id uuid;

-- Backfill from the parent (the shop tables are small next to planexe's; one statement each).
UPDATE shop.category_translations t SET shop_id = c.shop_id
FROM shop.categories c WHERE c.id = t.category_id AND t.shop_id IS NULL;
UPDATE shop.product_translations t SET shop_id = p.shop_id
FROM shop.products p WHERE p.id = t.product_id AND t.shop_id IS NULL;
UPDATE shop.tag_translations t SET shop_id = g.shop_id
FROM shop.tags g WHERE g.id = t.tag_id AND t.shop_id IS NULL;
UPDATE shop.attribute_translations t SET shop_id = a.shop_id
FROM shop.attributes a WHERE a.id = t.attribute_id AND t.shop_id IS NULL;
UPDATE shop.attribute_options o SET shop_id = a.shop_id
FROM shop.attributes a WHERE a.id = o.attribute_id AND o.shop_id IS NULL;

-- Checked for new rows now, validated for old ones in 0091 (without blocking writers); 0110
-- turns them into NOT NULL without a scan.
ALTER TABLE shop.category_translations
    ADD CONSTRAINT ck_category_translations_shop_id_not_null CHECK (shop_id IS NOT NULL) NOT VALID;
ALTER TABLE shop.product_translations
    ADD CONSTRAINT ck_product_translations_shop_id_not_null CHECK (shop_id IS NOT NULL) NOT VALID;
ALTER TABLE shop.tag_translations
    ADD CONSTRAINT ck_tag_translations_shop_id_not_null CHECK (shop_id IS NOT NULL) NOT VALID;
ALTER TABLE shop.attribute_translations
    ADD CONSTRAINT ck_attribute_translations_shop_id_not_null CHECK (shop_id IS NOT NULL) NOT VALID;
ALTER TABLE shop.attribute_options
    ADD CONSTRAINT ck_attribute_options_shop_id_not_null CHECK (shop_id IS NOT NULL) NOT VALID;
