-- Global licences (granted, no shop, no order) get a table of their own. On Citus,
-- shop.licenses is distributed by shop_id and cannot hold a row without one; shop.global_licenses
-- becomes a reference table there.
--
-- Expand step. Releases before this one keep global licences in shop.licenses (shop_id NULL)
-- and may run beside this one: the rows are copied, and until the contract step each table's
-- writes of a global licence are mirrored into the other by the triggers below (a mirrored
-- write is not mirrored back: pg_trigger_depth). `shared-db shop distribute` drops the triggers
-- and the shop-less rows of shop.licenses on Citus, where no release can have stored one.
-- Contract (a later release, once none before this one runs): delete shop.licenses' rows
-- without a shop, drop the triggers and their functions.
SET LOCAL lock_timeout = '5s';

CREATE TABLE shop.global_licenses (
    id uuid NOT NULL DEFAULT gen_random_uuid(),
    name text NOT NULL,
    is_recurring boolean NOT NULL,
    start_date timestamptz DEFAULT now(),
    end_date timestamptz,
    improviser_user uuid NOT NULL,
    -- the type of shop.licenses.seats, so both read back as one Rust type
    -- squawk-ignore prefer-bigint-over-int
    seats integer NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    modified_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT pk_global_licenses PRIMARY KEY (id),
    CONSTRAINT ck_global_licenses_name_length CHECK (char_length(name) <= 255),
    CONSTRAINT ck_global_licenses_seats_positive CHECK (seats > 0)
);
CREATE INDEX ix_global_licenses_improviser_user ON shop.global_licenses (improviser_user);
CREATE TRIGGER tr_global_licenses_modified_at BEFORE UPDATE ON shop.global_licenses
    FOR EACH ROW EXECUTE FUNCTION shop.set_modified_at();

-- An older release's write of a global licence in shop.licenses, into shop.global_licenses.
CREATE FUNCTION shop.mirror_licenses_to_global_licenses() RETURNS trigger
    LANGUAGE plpgsql AS $$
BEGIN
    IF pg_trigger_depth() > 1 THEN
        RETURN NULL; -- itself a mirror of a write to shop.global_licenses
    END IF;
    -- a global licence deleted, given a shop, or given another id
    IF TG_OP <> 'INSERT' AND OLD.shop_id IS NULL
       AND (TG_OP = 'DELETE' OR NEW.shop_id IS NOT NULL OR NEW.id <> OLD.id) THEN
        DELETE FROM shop.global_licenses WHERE id = OLD.id;
    END IF;
    -- a global licence written
    IF TG_OP <> 'DELETE' AND NEW.shop_id IS NULL THEN
        INSERT INTO shop.global_licenses (id, name, is_recurring, start_date, end_date,
                                          improviser_user, seats, created_at, modified_at)
        VALUES (NEW.id, NEW.name, NEW.is_recurring, NEW.start_date, NEW.end_date,
                NEW.improviser_user, NEW.seats, NEW.created_at, NEW.modified_at)
        ON CONFLICT (id) DO UPDATE
           SET name = EXCLUDED.name, is_recurring = EXCLUDED.is_recurring,
               start_date = EXCLUDED.start_date, end_date = EXCLUDED.end_date,
               improviser_user = EXCLUDED.improviser_user, seats = EXCLUDED.seats;
    END IF;
    RETURN NULL;
END
$$;

-- This release's write of a global licence, into shop.licenses for the older releases.
CREATE FUNCTION shop.mirror_global_licenses_to_licenses() RETURNS trigger
    LANGUAGE plpgsql AS $$
BEGIN
    IF pg_trigger_depth() > 1 THEN
        RETURN NULL; -- itself a mirror of a write to shop.licenses
    END IF;
    IF TG_OP = 'DELETE' OR (TG_OP = 'UPDATE' AND NEW.id <> OLD.id) THEN
        DELETE FROM shop.licenses WHERE id = OLD.id AND shop_id IS NULL;
    END IF;
    IF TG_OP <> 'DELETE' THEN
        -- (shop_id, id) is the only key, and NULL shop_ids never conflict: update, else insert
        UPDATE shop.licenses
           SET name = NEW.name, is_recurring = NEW.is_recurring, start_date = NEW.start_date,
               end_date = NEW.end_date, improviser_user = NEW.improviser_user, seats = NEW.seats
         WHERE id = NEW.id AND shop_id IS NULL;
        IF NOT FOUND THEN
            INSERT INTO shop.licenses (id, shop_id, name, is_recurring, start_date, end_date,
                                       improviser_user, seats, order_id, created_at, modified_at)
            VALUES (NEW.id, NULL, NEW.name, NEW.is_recurring, NEW.start_date, NEW.end_date,
                    NEW.improviser_user, NEW.seats, NULL, NEW.created_at, NEW.modified_at);
        END IF;
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER tr_licenses_mirror_global AFTER INSERT OR UPDATE OR DELETE ON shop.licenses
    FOR EACH ROW EXECUTE FUNCTION shop.mirror_licenses_to_global_licenses();
CREATE TRIGGER tr_global_licenses_mirror AFTER INSERT OR UPDATE OR DELETE ON shop.global_licenses
    FOR EACH ROW EXECUTE FUNCTION shop.mirror_global_licenses_to_licenses();

-- The global licences already there (the trigger above holds shop.licenses' writers until
-- this commits, so none slips between the copy and the mirror).
INSERT INTO shop.global_licenses (id, name, is_recurring, start_date, end_date, improviser_user,
                                  seats, created_at, modified_at)
SELECT id, name, is_recurring, start_date, end_date, improviser_user, seats, created_at,
       modified_at
FROM shop.licenses WHERE shop_id IS NULL
ON CONFLICT (id) DO NOTHING;
