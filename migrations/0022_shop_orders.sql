-- shop: customer accounts, orders with a per-shop gap-free counter, licenses.

CREATE TABLE shop.accounts (
    id        uuid         NOT NULL DEFAULT gen_random_uuid(),
    shop_id   uuid         NOT NULL,
    name      varchar(255),
    hash_name varchar(255),
    details   jsonb,
    CONSTRAINT pk_accounts PRIMARY KEY (id),
    CONSTRAINT fk_accounts_shop_id_shops FOREIGN KEY (shop_id) REFERENCES shop.shops (id) ON DELETE RESTRICT,
    CONSTRAINT uq_accounts_shop_id_id UNIQUE (shop_id, id)
);
CREATE INDEX ix_accounts_hash_name ON shop.accounts (hash_name);

CREATE TYPE shop.order_status AS ENUM ('pending', 'complete', 'cancelled');

-- last customer_order_id handed out per shop; bumped with one UPDATE ... RETURNING in the order's transaction
CREATE TABLE shop.order_counters (
    shop_id                uuid    NOT NULL,
    last_customer_order_id integer NOT NULL,
    CONSTRAINT pk_order_counters PRIMARY KEY (shop_id),
    CONSTRAINT fk_order_counters_shop_id_shops FOREIGN KEY (shop_id) REFERENCES shop.shops (id) ON DELETE CASCADE,
    CONSTRAINT ck_order_counters_positive CHECK (last_customer_order_id > 0)
);

CREATE TABLE shop.orders (
    id                uuid              NOT NULL DEFAULT gen_random_uuid(),
    customer_order_id integer           NOT NULL,
    notes             text,
    shop_id           uuid              NOT NULL,
    account_id        uuid,
    order_info        jsonb             NOT NULL DEFAULT '[]',
    created_at        timestamptz       NOT NULL DEFAULT now(),
    total             double precision,
    status            shop.order_status NOT NULL DEFAULT 'pending',
    completed_by      uuid,
    completed_at      timestamptz,
    CONSTRAINT pk_orders PRIMARY KEY (id),
    CONSTRAINT fk_orders_shop_id_shops FOREIGN KEY (shop_id) REFERENCES shop.shops (id) ON DELETE RESTRICT,
    -- an account's orders go with the account (as in the existing backend); same shop enforced
    CONSTRAINT fk_orders_account_id_accounts FOREIGN KEY (shop_id, account_id)
        REFERENCES shop.accounts (shop_id, id) ON DELETE CASCADE,
    CONSTRAINT fk_orders_completed_by_users FOREIGN KEY (completed_by) REFERENCES shop.users (id) ON DELETE SET NULL,
    CONSTRAINT uq_orders_shop_id_customer_order_id UNIQUE (shop_id, customer_order_id),
    CONSTRAINT ck_orders_order_info_array CHECK (jsonb_typeof(order_info) = 'array'),
    CONSTRAINT ck_orders_completed_at CHECK ((status = 'complete') = (completed_at IS NOT NULL))
);
CREATE INDEX ix_orders_account_id ON shop.orders (account_id);
CREATE INDEX ix_orders_completed_by ON shop.orders (completed_by);

CREATE TABLE shop.licenses (
    id              uuid         NOT NULL DEFAULT gen_random_uuid(),
    name            varchar(255) NOT NULL,
    is_recurring    boolean      NOT NULL,
    start_date      timestamptz           DEFAULT now(),
    end_date        timestamptz,
    improviser_user uuid         NOT NULL,
    seats           integer      NOT NULL,
    order_id        uuid,
    created_at      timestamptz  NOT NULL DEFAULT now(),
    modified_at     timestamptz  NOT NULL DEFAULT now(),
    CONSTRAINT pk_licenses PRIMARY KEY (id),
    -- a license keeps its order (and so the order's account) from being deleted
    CONSTRAINT fk_licenses_order_id_orders FOREIGN KEY (order_id) REFERENCES shop.orders (id) ON DELETE RESTRICT,
    CONSTRAINT ck_licenses_seats_positive CHECK (seats > 0)
);
CREATE INDEX ix_licenses_order_id ON shop.licenses (order_id);
CREATE INDEX ix_licenses_improviser_user ON shop.licenses (improviser_user);
CREATE TRIGGER tr_licenses_modified_at BEFORE UPDATE ON shop.licenses
    FOR EACH ROW EXECUTE FUNCTION shop.set_modified_at();

CREATE TABLE shop.early_access (
    id         uuid         NOT NULL DEFAULT gen_random_uuid(),
    email      varchar(255) NOT NULL,
    created_at timestamptz  NOT NULL DEFAULT now(),
    CONSTRAINT pk_early_access PRIMARY KEY (id),
    CONSTRAINT uq_early_access_email UNIQUE (email)
);

CREATE TABLE shop.info_requests (
    id         uuid         NOT NULL DEFAULT gen_random_uuid(),
    email      varchar(255),
    shop_id    uuid         NOT NULL,
    product_id uuid,
    CONSTRAINT pk_info_requests PRIMARY KEY (id),
    CONSTRAINT fk_info_requests_shop_id_shops FOREIGN KEY (shop_id) REFERENCES shop.shops (id) ON DELETE RESTRICT,
    -- deleting the product keeps the request and forgets the product (PostgreSQL 15 column list)
    CONSTRAINT fk_info_requests_product_id_products FOREIGN KEY (shop_id, product_id)
        REFERENCES shop.products (shop_id, id) ON DELETE SET NULL (product_id)
);
CREATE INDEX ix_info_requests_shop_id ON shop.info_requests (shop_id);
CREATE INDEX ix_info_requests_product_id ON shop.info_requests (product_id);

CREATE TABLE shop.faq (
    id          uuid         NOT NULL DEFAULT gen_random_uuid(),
    question    varchar(255) NOT NULL,
    answer      varchar(255) NOT NULL,
    category    varchar(100) NOT NULL,
    created_at  timestamptz  NOT NULL DEFAULT now(),
    modified_at timestamptz  NOT NULL DEFAULT now(),
    CONSTRAINT pk_faq PRIMARY KEY (id),
    CONSTRAINT uq_faq_question UNIQUE (question)
);
CREATE TRIGGER tr_faq_modified_at BEFORE UPDATE ON shop.faq
    FOR EACH ROW EXECUTE FUNCTION shop.set_modified_at();
