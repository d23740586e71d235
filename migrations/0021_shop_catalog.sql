-- shop: catalog (categories, products, tags, attributes) with their translation and link tables.
-- Translation rows: exactly one per parent (UNIQUE parent id, which is also its index), deleted with the parent.
-- Description columns are unbounded text and deliberately carry NO b-tree index (the old index made
-- inserts of descriptions over ~2.7 KB fail).
-- Composite foreign keys (shop_id, x_id) make it impossible to link rows of two different shops.

CREATE TABLE shop.categories (
    id           uuid         NOT NULL DEFAULT gen_random_uuid(),
    shop_id      uuid         NOT NULL,
    color        varchar(20)           DEFAULT '#376E1A',
    icon         varchar(100),
    order_number integer      NOT NULL,
    main_image   varchar(255),
    alt1_image   varchar(255),
    alt2_image   varchar(255),
    CONSTRAINT pk_categories PRIMARY KEY (id),
    CONSTRAINT fk_categories_shop_id_shops FOREIGN KEY (shop_id) REFERENCES shop.shops (id) ON DELETE RESTRICT,
    CONSTRAINT uq_categories_shop_id_id UNIQUE (shop_id, id),
    -- deferred so that two rows can swap their numbers inside one transaction
    CONSTRAINT uq_categories_shop_id_order_number UNIQUE (shop_id, order_number) DEFERRABLE INITIALLY DEFERRED
);

CREATE TABLE shop.category_translations (
    id               uuid         NOT NULL DEFAULT gen_random_uuid(),
    category_id      uuid         NOT NULL,
    main_name        varchar(255) NOT NULL,
    main_description text         NOT NULL,
    alt1_name        varchar(255),
    alt1_description text,
    alt2_name        varchar(255),
    alt2_description text,
    CONSTRAINT pk_category_translations PRIMARY KEY (id),
    CONSTRAINT fk_category_translations_category_id_categories FOREIGN KEY (category_id)
        REFERENCES shop.categories (id) ON DELETE CASCADE,
    CONSTRAINT uq_category_translations_category_id UNIQUE (category_id)
);

CREATE TABLE shop.products (
    id                      uuid             NOT NULL DEFAULT gen_random_uuid(),
    shop_id                 uuid             NOT NULL,
    category_id             uuid,
    price                   double precision,
    tax_category            varchar(20)      NOT NULL DEFAULT 'vat_standard',
    discounted_price        double precision,
    discounted_from         timestamptz,
    discounted_to           timestamptz,
    image_1                 varchar(255),
    image_2                 varchar(255),
    image_3                 varchar(255),
    image_4                 varchar(255),
    image_5                 varchar(255),
    image_6                 varchar(255),
    created_at              timestamptz      NOT NULL DEFAULT now(),
    modified_at             timestamptz      NOT NULL DEFAULT now(),
    recurring_price_monthly double precision,
    recurring_price_yearly  double precision,
    max_one                 boolean          NOT NULL DEFAULT false,
    digital                 varchar(255),
    shippable               boolean          NOT NULL DEFAULT true,
    featured                boolean          NOT NULL DEFAULT false,
    new_product             boolean          NOT NULL DEFAULT false,
    order_number            integer          NOT NULL,
    stock                   integer          NOT NULL DEFAULT 1,
    CONSTRAINT pk_products PRIMARY KEY (id),
    CONSTRAINT fk_products_shop_id_shops FOREIGN KEY (shop_id) REFERENCES shop.shops (id) ON DELETE RESTRICT,
    -- a category with products cannot be deleted; the category must belong to the product's shop
    CONSTRAINT fk_products_category_id_categories FOREIGN KEY (shop_id, category_id)
        REFERENCES shop.categories (shop_id, id) ON DELETE RESTRICT,
    CONSTRAINT uq_products_shop_id_id UNIQUE (shop_id, id),
    CONSTRAINT uq_products_shop_id_category_id_order_number UNIQUE NULLS NOT DISTINCT (shop_id, category_id, order_number)
        DEFERRABLE INITIALLY DEFERRED,
    CONSTRAINT ck_products_stock_non_negative CHECK (stock >= 0),
    CONSTRAINT ck_products_tax_category CHECK (tax_category IN
        ('vat_standard', 'vat_lower_1', 'vat_lower_2', 'vat_lower_3', 'vat_special', 'vat_zero'))
);
CREATE INDEX ix_products_category_id ON shop.products (category_id);
-- keyset pagination of a shop's products
CREATE INDEX ix_products_shop_id_created_at_id ON shop.products (shop_id, created_at, id);
CREATE TRIGGER tr_products_modified_at BEFORE UPDATE ON shop.products
    FOR EACH ROW EXECUTE FUNCTION shop.set_modified_at();

CREATE TABLE shop.product_translations (
    id                     uuid         NOT NULL DEFAULT gen_random_uuid(),
    product_id             uuid         NOT NULL,
    main_name              varchar(255) NOT NULL,
    main_description       text         NOT NULL,
    main_description_short text         NOT NULL,
    alt1_name              varchar(255),
    alt1_description       text,
    alt1_description_short text,
    alt2_name              varchar(255),
    alt2_description       text,
    alt2_description_short text,
    CONSTRAINT pk_product_translations PRIMARY KEY (id),
    CONSTRAINT fk_product_translations_product_id_products FOREIGN KEY (product_id)
        REFERENCES shop.products (id) ON DELETE CASCADE,
    CONSTRAINT uq_product_translations_product_id UNIQUE (product_id)
);

CREATE TABLE shop.tags (
    id      uuid        NOT NULL DEFAULT gen_random_uuid(),
    shop_id uuid        NOT NULL,
    name    varchar(60),
    CONSTRAINT pk_tags PRIMARY KEY (id),
    CONSTRAINT fk_tags_shop_id_shops FOREIGN KEY (shop_id) REFERENCES shop.shops (id) ON DELETE RESTRICT,
    CONSTRAINT uq_tags_shop_id_id UNIQUE (shop_id, id)
);

CREATE TABLE shop.tag_translations (
    id        uuid         NOT NULL DEFAULT gen_random_uuid(),
    tag_id    uuid         NOT NULL,
    main_name varchar(100) NOT NULL,
    alt1_name varchar(100),
    alt2_name varchar(100),
    CONSTRAINT pk_tag_translations PRIMARY KEY (id),
    CONSTRAINT fk_tag_translations_tag_id_tags FOREIGN KEY (tag_id) REFERENCES shop.tags (id) ON DELETE CASCADE,
    CONSTRAINT uq_tag_translations_tag_id UNIQUE (tag_id)
);

CREATE TABLE shop.products_to_tags (
    id         uuid NOT NULL DEFAULT gen_random_uuid(),
    shop_id    uuid NOT NULL,
    product_id uuid NOT NULL,
    tag_id     uuid NOT NULL,
    CONSTRAINT pk_products_to_tags PRIMARY KEY (id),
    CONSTRAINT fk_products_to_tags_shop_id_shops FOREIGN KEY (shop_id) REFERENCES shop.shops (id) ON DELETE RESTRICT,
    -- links go with their product or tag; both must belong to the link's shop
    CONSTRAINT fk_products_to_tags_product_id_products FOREIGN KEY (shop_id, product_id)
        REFERENCES shop.products (shop_id, id) ON DELETE CASCADE,
    CONSTRAINT fk_products_to_tags_tag_id_tags FOREIGN KEY (shop_id, tag_id)
        REFERENCES shop.tags (shop_id, id) ON DELETE CASCADE,
    CONSTRAINT uq_products_to_tags_product_id_tag_id UNIQUE (product_id, tag_id)
);
CREATE INDEX ix_products_to_tags_shop_id_tag_id ON shop.products_to_tags (shop_id, tag_id);
CREATE INDEX ix_products_to_tags_shop_id_product_id ON shop.products_to_tags (shop_id, product_id);

CREATE TABLE shop.attributes (
    id      uuid        NOT NULL DEFAULT gen_random_uuid(),
    shop_id uuid        NOT NULL,
    name    varchar(60) NOT NULL,
    unit    varchar(20),
    CONSTRAINT pk_attributes PRIMARY KEY (id),
    CONSTRAINT fk_attributes_shop_id_shops FOREIGN KEY (shop_id) REFERENCES shop.shops (id) ON DELETE RESTRICT,
    CONSTRAINT uq_attributes_shop_id_name UNIQUE (shop_id, name)
);

CREATE TABLE shop.attribute_translations (
    id           uuid         NOT NULL DEFAULT gen_random_uuid(),
    attribute_id uuid         NOT NULL,
    main_name    varchar(100) NOT NULL,
    alt1_name    varchar(100),
    alt2_name    varchar(100),
    CONSTRAINT pk_attribute_translations PRIMARY KEY (id),
    CONSTRAINT fk_attribute_translations_attribute_id_attributes FOREIGN KEY (attribute_id)
        REFERENCES shop.attributes (id) ON DELETE CASCADE,
    CONSTRAINT uq_attribute_translations_attribute_id UNIQUE (attribute_id)
);

CREATE TABLE shop.attribute_options (
    id           uuid        NOT NULL DEFAULT gen_random_uuid(),
    attribute_id uuid        NOT NULL,
    value_key    varchar(60) NOT NULL,
    CONSTRAINT pk_attribute_options PRIMARY KEY (id),
    -- options go with their attribute (unless a product still uses one: see product_attribute_values)
    CONSTRAINT fk_attribute_options_attribute_id_attributes FOREIGN KEY (attribute_id)
        REFERENCES shop.attributes (id) ON DELETE CASCADE,
    CONSTRAINT uq_attribute_options_attribute_id_value_key UNIQUE (attribute_id, value_key),
    CONSTRAINT uq_attribute_options_attribute_id_id UNIQUE (attribute_id, id)
);

CREATE TABLE shop.product_attribute_values (
    id           uuid NOT NULL DEFAULT gen_random_uuid(),
    product_id   uuid NOT NULL,
    attribute_id uuid NOT NULL,
    option_id    uuid,
    CONSTRAINT pk_product_attribute_values PRIMARY KEY (id),
    CONSTRAINT fk_product_attribute_values_product_id_products FOREIGN KEY (product_id)
        REFERENCES shop.products (id) ON DELETE CASCADE,
    -- an attribute or option still used by a product cannot be deleted (Conflict)
    CONSTRAINT fk_product_attribute_values_attribute_id_attributes FOREIGN KEY (attribute_id)
        REFERENCES shop.attributes (id) ON DELETE RESTRICT,
    -- the option must be one of the attribute's options
    CONSTRAINT fk_product_attribute_values_option_id_attribute_options FOREIGN KEY (attribute_id, option_id)
        REFERENCES shop.attribute_options (attribute_id, id) ON DELETE RESTRICT,
    CONSTRAINT uq_product_attribute_values_product_attribute_option
        UNIQUE NULLS NOT DISTINCT (product_id, attribute_id, option_id)
);
CREATE INDEX ix_product_attribute_values_attribute_id_option_id ON shop.product_attribute_values (attribute_id, option_id);
CREATE INDEX ix_product_attribute_values_option_id ON shop.product_attribute_values (option_id);
