-- shop: schema, shared trigger function, users, roles, shops and their membership tables.
-- Tables live in their own schema `shop` so they never collide with the planexe tables in `public`.
-- Constraint names follow migrations/README.md (## shop): pk_, fk_, uq_, ix_, ck_.

CREATE SCHEMA shop;

-- modified_at is maintained by the database, not by application code.
CREATE FUNCTION shop.set_modified_at() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.modified_at := now();
    RETURN NEW;
END;
$$;

CREATE TABLE shop.users (
    id           uuid         NOT NULL DEFAULT gen_random_uuid(),
    email        varchar(255),
    first_name   varchar(255),
    last_name    varchar(255),
    username     varchar(255),
    password     varchar(255),
    active       boolean      NOT NULL DEFAULT true,
    created_at   timestamptz  NOT NULL DEFAULT now(),
    confirmed_at timestamptz,
    mail_offers  boolean      NOT NULL DEFAULT false,
    CONSTRAINT pk_users PRIMARY KEY (id),
    CONSTRAINT uq_users_email UNIQUE (email),
    CONSTRAINT uq_users_username UNIQUE (username)
);

CREATE TABLE shop.roles (
    id          uuid         NOT NULL DEFAULT gen_random_uuid(),
    name        varchar(80)  NOT NULL,
    description varchar(255),
    CONSTRAINT pk_roles PRIMARY KEY (id),
    CONSTRAINT uq_roles_name UNIQUE (name)
);

CREATE TABLE shop.roles_users (
    id      uuid NOT NULL DEFAULT gen_random_uuid(),
    user_id uuid NOT NULL,
    role_id uuid NOT NULL,
    CONSTRAINT pk_roles_users PRIMARY KEY (id),
    CONSTRAINT fk_roles_users_user_id_users FOREIGN KEY (user_id) REFERENCES shop.users (id) ON DELETE CASCADE,
    CONSTRAINT fk_roles_users_role_id_roles FOREIGN KEY (role_id) REFERENCES shop.roles (id) ON DELETE RESTRICT,
    CONSTRAINT uq_roles_users_user_id_role_id UNIQUE (user_id, role_id)
);
CREATE INDEX ix_roles_users_role_id ON shop.roles_users (role_id);

CREATE TABLE shop.shops (
    id                uuid             NOT NULL DEFAULT gen_random_uuid(),
    name              varchar(255)     NOT NULL,
    description       varchar(255),
    allowed_ips       jsonb,
    vat_standard      double precision NOT NULL DEFAULT 21.0,
    vat_lower_1       double precision NOT NULL DEFAULT 10.0,
    vat_lower_2       double precision NOT NULL DEFAULT 5.0,
    vat_lower_3       double precision NOT NULL DEFAULT 2.0,
    vat_special       double precision NOT NULL DEFAULT 12.0,
    vat_zero          double precision NOT NULL DEFAULT 0.0,
    created_at        timestamptz      NOT NULL DEFAULT now(),
    modified_at       timestamptz      NOT NULL DEFAULT now(),
    config            jsonb            NOT NULL DEFAULT '{}',
    stripe_secret_key varchar(255),
    stripe_public_key varchar(255),
    config_version    integer          NOT NULL DEFAULT 1,
    shop_type         jsonb            NOT NULL DEFAULT '{}',
    internal_url      varchar(255)              DEFAULT '',
    external_url      varchar(255)              DEFAULT '',
    discord_webhook   varchar(255),
    CONSTRAINT pk_shops PRIMARY KEY (id),
    CONSTRAINT uq_shops_name UNIQUE (name),
    CONSTRAINT uq_shops_description UNIQUE (description),
    -- the old backend found double-encoded (string) configs; only objects are stored now
    CONSTRAINT ck_shops_config_object CHECK (jsonb_typeof(config) = 'object'),
    CONSTRAINT ck_shops_shop_type_object CHECK (jsonb_typeof(shop_type) = 'object'),
    CONSTRAINT ck_shops_allowed_ips_array CHECK (allowed_ips IS NULL OR jsonb_typeof(allowed_ips) = 'array')
);
CREATE TRIGGER tr_shops_modified_at BEFORE UPDATE ON shop.shops
    FOR EACH ROW EXECUTE FUNCTION shop.set_modified_at();

CREATE TABLE shop.shops_users (
    id      uuid NOT NULL DEFAULT gen_random_uuid(),
    user_id uuid NOT NULL,
    shop_id uuid NOT NULL,
    CONSTRAINT pk_shops_users PRIMARY KEY (id),
    CONSTRAINT fk_shops_users_user_id_users FOREIGN KEY (user_id) REFERENCES shop.users (id) ON DELETE CASCADE,
    CONSTRAINT fk_shops_users_shop_id_shops FOREIGN KEY (shop_id) REFERENCES shop.shops (id) ON DELETE CASCADE,
    CONSTRAINT uq_shops_users_shop_id_user_id UNIQUE (shop_id, user_id)
);
CREATE INDEX ix_shops_users_user_id ON shop.shops_users (user_id);
