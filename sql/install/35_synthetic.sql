--------------------------------------------------------------------------
-- Synthetic market data, for the demo, the tests and first experiments
--------------------------------------------------------------------------

-- Bars of "symbols" symbols whose log returns follow AR(1):
-- r_t = phi * r_{t-1} + sigma * e_t, e_t standard normal (Box-Muller on a
-- seeded random()).  phi > 0 is momentum an agent can learn.  The same
-- seed gives the same bars.
CREATE OR REPLACE FUNCTION rl_mlops.synthetic_bars(
    symbols integer DEFAULT 3,
    bars integer DEFAULT 10000,
    phi double precision DEFAULT 0.25,
    sigma double precision DEFAULT 0.01,
    start_at timestamptz DEFAULT '2026-01-01 00:00:00+00',
    step interval DEFAULT '1 minute',
    seed double precision DEFAULT 0.42)
RETURNS TABLE (symbol text, ts timestamptz, price double precision)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r double precision;
    p double precision;
BEGIN
    IF symbols NOT BETWEEN 1 AND 1000 OR bars NOT BETWEEN 2 AND 10000000 THEN
        RAISE EXCEPTION 'symbols must be between 1 and 1000 and bars between 2 and 10000000'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF seed NOT BETWEEN -1 AND 1 THEN
        RAISE EXCEPTION 'seed must be between -1 and 1 (it is passed to setseed)'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM setseed(seed);
    FOR s IN 1 .. symbols LOOP
        r := 0;
        p := 100;
        FOR i IN 0 .. bars - 1 LOOP
            symbol := 'SYM' || lpad(s::text, 3, '0');
            ts := start_at + step * i;
            price := p;
            RETURN NEXT;
            r := phi * r + sigma * sqrt(-2 * ln(1 - random())) * cos(2 * pi() * random());
            p := p * exp(r);
        END LOOP;
    END LOOP;
END
$$;
