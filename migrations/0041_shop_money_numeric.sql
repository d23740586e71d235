-- shop: prices and totals become numeric(12,2): whole cents, at most 9 999 999 999.99, never
-- negative, never NaN (src/shop/money.rs says why that scale).
--
-- Rounding rule for the existing double precision values, tested by tests/shop/money.rs:
--   1. the double becomes numeric as PostgreSQL prints it, with 15 significant digits
--      (0.1 + 0.2 = 0.30000000000000004 becomes 0.3);
--   2. that is rounded to whole cents, halves away from zero
--      (19.99 -> 19.99, 0.1 + 0.2 -> 0.30, 1e-7 -> 0.00, 2.675 -> 2.68);
--   3. NaN and +-Infinity have no value in numeric(12,2) and become NULL (every converted column
--      is nullable: "no price").
-- Prices inside orders.order_info (JSON numbers written from f64) become strings with two
-- decimals, rounded the same way from the JSON number's decimal text: "19.99", "0.30", "0.00".
-- A negative amount or one above 9 999 999 999.99 fails this migration (the CHECK or the type);
-- such rows are fixed by hand first.
--
-- The ALTERs rewrite products and orders under an ACCESS EXCLUSIVE lock; the lock wait is
-- bounded so that a busy table makes the migration fail (and be retried) instead of queueing
-- every reader behind it.
SET LOCAL lock_timeout = '5s';

CREATE FUNCTION pg_temp.cents(v double precision) RETURNS numeric(12,2)
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN v IN ('NaN', 'Infinity', '-Infinity') THEN NULL ELSE round(v::numeric, 2) END
$$;

ALTER TABLE shop.products
    ALTER COLUMN price TYPE numeric(12,2) USING pg_temp.cents(price),
    ALTER COLUMN discounted_price TYPE numeric(12,2) USING pg_temp.cents(discounted_price),
    ALTER COLUMN recurring_price_monthly TYPE numeric(12,2) USING pg_temp.cents(recurring_price_monthly),
    ALTER COLUMN recurring_price_yearly TYPE numeric(12,2) USING pg_temp.cents(recurring_price_yearly),
    -- NaN >= 0 is true for numeric, so NaN is excluded by name
    ADD CONSTRAINT ck_products_money CHECK (
        price >= 0 AND price <> 'NaN'
        AND discounted_price >= 0 AND discounted_price <> 'NaN'
        AND recurring_price_monthly >= 0 AND recurring_price_monthly <> 'NaN'
        AND recurring_price_yearly >= 0 AND recurring_price_yearly <> 'NaN');

ALTER TABLE shop.orders
    ALTER COLUMN total TYPE numeric(12,2) USING pg_temp.cents(total),
    ADD CONSTRAINT ck_orders_money CHECK (total >= 0 AND total <> 'NaN');

UPDATE shop.orders o
SET order_info = (
    SELECT jsonb_agg(
               CASE WHEN jsonb_typeof(e.item -> 'price') = 'number'
                    THEN jsonb_set(e.item, '{price}',
                                   to_jsonb(round((e.item ->> 'price')::numeric, 2)::text))
                    ELSE e.item END
               ORDER BY e.n)
    FROM jsonb_array_elements(o.order_info) WITH ORDINALITY AS e(item, n))
WHERE EXISTS (SELECT 1 FROM jsonb_array_elements(o.order_info) AS i(item)
              WHERE jsonb_typeof(i.item -> 'price') = 'number');
