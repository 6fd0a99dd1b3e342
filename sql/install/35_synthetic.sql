--------------------------------------------------------------------------
-- Synthetic market data, for the demo, the tests and first experiments
--------------------------------------------------------------------------

-- Bars of "symbols" symbols whose log returns follow AR(1) with
-- GARCH(1,1) shocks, optionally Student-t:
--   r_t   = phi * r_{t-1} + e_t,      e_t = sqrt(h_t) * z_t
--   h_t   = sigma^2 * (1 - a - b) + a * e_{t-1}^2 + b * h_{t-1}
--   z_t   standard normal (Box-Muller on a seeded random()), or with
--         tail_df = k a Student-t with k degrees of freedom scaled to unit
--         variance: fat tails.
-- a = garch_alpha, b = garch_beta (a + b < 1: sigma is the unconditional
-- sd of e); a = b = 0 is constant volatility (the 0.1.0 generator: same
-- seed, same bars).  phi > 0 is momentum an agent can learn: |phi| well
-- below 0.1 is weak, as in real markets; 0.25 (the default) is a toy that
-- makes Sharpe ratios no quant believes.  The same seed gives the same bars.
-- Bars fall on whole units: start_at is truncated to the minute when step
-- is a whole number of minutes (else to the second), so that
-- start_at => now() - interval '10 days' gives bars at :00 seconds.
CREATE OR REPLACE FUNCTION rl_mlops.synthetic_bars(
    symbols integer DEFAULT 3,
    bars integer DEFAULT 10000,
    phi double precision DEFAULT 0.25,
    sigma double precision DEFAULT 0.01,
    start_at timestamptz DEFAULT '2026-01-01 00:00:00+00',
    step interval DEFAULT '1 minute',
    seed double precision DEFAULT 0.42,
    garch_alpha double precision DEFAULT 0,
    garch_beta double precision DEFAULT 0,
    tail_df integer DEFAULT NULL)
RETURNS TABLE (symbol text, ts timestamptz, price double precision)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r double precision;
    p double precision;
    h double precision;
    e double precision;
    z double precision;
    chi2 double precision;
    first_bar timestamptz := date_trunc(CASE WHEN extract(epoch FROM step) % 60 = 0 THEN 'minute'
                                             ELSE 'second' END, start_at);
BEGIN
    IF symbols NOT BETWEEN 1 AND 1000 OR bars NOT BETWEEN 2 AND 10000000 THEN
        RAISE EXCEPTION 'symbols must be between 1 and 1000 and bars between 2 and 10000000'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF seed NOT BETWEEN -1 AND 1 THEN
        RAISE EXCEPTION 'seed must be between -1 and 1 (it is passed to setseed)'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF NOT (garch_alpha >= 0 AND garch_beta >= 0 AND garch_alpha + garch_beta < 1) THEN
        RAISE EXCEPTION 'garch_alpha and garch_beta must be at least 0 with a sum below 1'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('Got garch_alpha %s and garch_beta %s.', garch_alpha, garch_beta),
                  HINT = 'garch_alpha 0.08, garch_beta 0.9 clusters volatility like many daily equity series.';
    END IF;
    IF tail_df IS NOT NULL AND tail_df NOT BETWEEN 3 AND 1000 THEN
        RAISE EXCEPTION 'tail_df must be between 3 and 1000 (or NULL for normal shocks)'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('Got %s; a Student-t needs more than 2 degrees of freedom for a variance.', tail_df);
    END IF;
    PERFORM setseed(seed);
    FOR s IN 1 .. symbols LOOP
        r := 0;
        p := 100;
        h := sigma * sigma;
        e := 0;
        FOR i IN 0 .. bars - 1 LOOP
            symbol := 'SYM' || lpad(s::text, 3, '0');
            ts := first_bar + step * i;
            price := p;
            RETURN NEXT;
            IF tail_df IS NULL AND garch_alpha = 0 AND garch_beta = 0 THEN
                -- the 0.1.0 expression, bit for bit
                r := phi * r + sigma * sqrt(-2 * ln(1 - random())) * cos(2 * pi() * random());
            ELSE
                z := sqrt(-2 * ln(1 - random())) * cos(2 * pi() * random());
                IF tail_df IS NOT NULL THEN
                    chi2 := 0;
                    FOR k IN 1 .. tail_df LOOP
                        chi2 := chi2 + (sqrt(-2 * ln(1 - random())) * cos(2 * pi() * random())) ^ 2;
                    END LOOP;
                    z := z / sqrt(chi2 / tail_df) * sqrt((tail_df - 2)::double precision / tail_df);
                END IF;
                h := sigma * sigma * (1 - garch_alpha - garch_beta) + garch_alpha * e * e + garch_beta * h;
                e := sqrt(h) * z;
                r := phi * r + e;
            END IF;
            p := p * exp(r);
        END LOOP;
    END LOOP;
END
$$;
