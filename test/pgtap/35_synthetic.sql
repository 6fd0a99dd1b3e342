-- synthetic_bars(): the market generator of the demo and the tests
-- (issue 14): constant-volatility AR(1) by default, GARCH(1,1) volatility
-- clustering and Student-t shocks when asked; seeded, so every number
-- below is fixed (no test here depends on chance).
\set ON_ERROR_STOP 1
BEGIN;
SET LOCAL client_min_messages = error;

SELECT plan(14);

CREATE EXTENSION rl_mlops;

SELECT throws_ok($$SELECT * FROM rl_mlops.synthetic_bars(garch_alpha => 0.5, garch_beta => 0.5)$$, '22023',
                 'garch_alpha and garch_beta must be at least 0 with a sum below 1',
                 'GARCH coefficients summing to 1 are refused (no finite variance)');
SELECT throws_ok($$SELECT * FROM rl_mlops.synthetic_bars(garch_alpha => -0.1)$$, '22023', NULL,
                 'a negative GARCH coefficient is refused');
SELECT throws_ok($$SELECT * FROM rl_mlops.synthetic_bars(garch_alpha => 'NaN')$$, '22023', NULL,
                 'a NaN GARCH coefficient is refused');
SELECT throws_ok($$SELECT * FROM rl_mlops.synthetic_bars(tail_df => 2)$$, '22023',
                 'tail_df must be between 3 and 1000 (or NULL for normal shocks)',
                 'a Student-t with 2 degrees of freedom (no variance) is refused');

-- log returns of one symbol, 20,000 bars, three markets
CREATE TEMP TABLE r AS
SELECT m, ln(price / lag(price) OVER (PARTITION BY m ORDER BY ts)) AS r, ts
  FROM (SELECT 'normal' AS m, * FROM rl_mlops.synthetic_bars(1, 20000, 0, 0.01, seed => 0.1)
        UNION ALL
        SELECT 't5', * FROM rl_mlops.synthetic_bars(1, 20000, 0, 0.01, seed => 0.1, tail_df => 5)
        UNION ALL
        SELECT 'garch', * FROM rl_mlops.synthetic_bars(1, 20000, 0, 0.01, seed => 0.1,
                                                       garch_alpha => 0.08, garch_beta => 0.9)) x;
CREATE TEMP TABLE stats AS
SELECT m, stddev(r) AS sd,
       avg((r - mu) ^ 4) / avg((r - mu) ^ 2) ^ 2 AS kurtosis,
       corr(r2, r2_prev) AS acf_r2
  FROM (SELECT m, r, avg(r) OVER (PARTITION BY m) AS mu, r * r AS r2,
               lag(r * r) OVER (PARTITION BY m ORDER BY ts) AS r2_prev
          FROM r WHERE r IS NOT NULL) y
 GROUP BY m;

SELECT ok(abs((SELECT sd FROM stats WHERE m = m0) / 0.01 - 1) < 0.1,
          format('%s shocks: the sd of returns is sigma (0.01) within 10%%', m0))
  FROM unnest(ARRAY['normal', 't5', 'garch']) AS m0;
SELECT ok((SELECT kurtosis FROM stats WHERE m = 'normal') BETWEEN 2.8 AND 3.2, 'normal shocks: kurtosis about 3');
SELECT ok((SELECT kurtosis FROM stats WHERE m = 't5') > 5, 't(5) shocks: fat tails, kurtosis above 5');
SELECT ok((SELECT abs(acf_r2) FROM stats WHERE m = 'normal') < 0.05, 'constant volatility: squared returns uncorrelated');
SELECT ok((SELECT acf_r2 FROM stats WHERE m = 'garch') > 0.1, 'GARCH: squared returns correlated (volatility clusters)');
SELECT is((SELECT md5(string_agg(price::text, ',' ORDER BY ts)) FROM rl_mlops.synthetic_bars(1, 500, 0.1, 0.01, seed => 0.3,
                                                                                            garch_alpha => 0.08, garch_beta => 0.9, tail_df => 5)),
          (SELECT md5(string_agg(price::text, ',' ORDER BY ts)) FROM rl_mlops.synthetic_bars(1, 500, 0.1, 0.01, seed => 0.3,
                                                                                            garch_alpha => 0.08, garch_beta => 0.9, tail_df => 5)),
          'the same seed gives the same bars');

SELECT is((SELECT min(ts) FROM rl_mlops.synthetic_bars(1, 3, start_at => '2026-01-01 10:17:42.25+00')),
          '2026-01-01 10:17:00+00'::timestamptz, 'bars of whole minutes start on a whole minute');
SELECT is((SELECT max(ts) FROM rl_mlops.synthetic_bars(1, 3, step => '1.5 seconds', start_at => '2026-01-01 10:17:42.25+00')),
          '2026-01-01 10:17:45+00'::timestamptz, 'other steps start on a whole second');

SELECT * FROM finish();
ROLLBACK;
