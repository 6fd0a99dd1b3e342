-- Serving (ARCHITECTURE.md "Serving", issue 6): act, policy and value against an
-- independent forward pass in SQL; decide and backtest against
-- observations and positions rebuilt in SQL; every error path; privileges
-- (registry read as the owner, source read as the caller); the per-backend
-- cache inside one session.  Two sessions and replicas: test/t/04*.pl.
\set ON_ERROR_STOP 1
BEGIN;
SET LOCAL client_min_messages = error;
SET LOCAL TimeZone = 'UTC';
SELECT plan(95);

CREATE EXTENSION rl_mlops;
\ir helpers/checkpoint.sql
\ir helpers/serving.sql

--------------------------------------------------------------------------
-- Data: a table whose names need quoting, and a view of it with the
-- helper's names; a table with features, hourly.
--------------------------------------------------------------------------

CREATE TABLE rl_test."Market Bars" ("Sym" text, "When" timestamptz, "Close Price" numeric);
INSERT INTO rl_test."Market Bars"
SELECT s, timestamptz '2024-01-01' + i * interval '1 day',
       round((100 * exp(0.002 * sin(i * 0.37 + length(s)) + 0.001 * sin(i * 1.3) + 0.0001 * i))::numeric, 6)
  FROM generate_series(0, 399) AS i, unnest(ARRAY['AAA', 'BBBB']) AS s;
-- bad series: a NULL price, a zero price
INSERT INTO rl_test."Market Bars"
SELECT s, timestamptz '2024-01-01' + i * interval '1 day',
       CASE WHEN i = 50 THEN (CASE s WHEN 'NUL' THEN NULL ELSE 0 END) ELSE 100 + i END
  FROM generate_series(0, 99) AS i, unnest(ARRAY['NUL', 'NEG']) AS s;
CREATE INDEX ON rl_test."Market Bars" ("Sym", "When");
CREATE VIEW rl_test.mb AS
SELECT "Sym" AS symbol, "When" AS ts, "Close Price" AS price, NULL::float4[] AS features
  FROM rl_test."Market Bars";

CREATE TABLE rl_test.fbars (symbol text, ts timestamptz, price float8, features float4[]);
INSERT INTO rl_test.fbars
SELECT s, timestamptz '2024-03-01' + i * interval '1 hour', 50 * exp(0.001 * sin(i * 0.5)),
       CASE WHEN s = 'FN' AND i = 150 THEN NULL ELSE ARRAY[sin(i), cos(i)]::float4[] END
  FROM generate_series(0, 199) AS i, unnest(ARRAY['F1', 'FN']) AS s;

SELECT lives_ok($$SELECT rl_mlops.create_agent('srv', 'rl_test."Market Bars"', symbol_column => 'Sym',
                                               time_column => 'When', price_column => 'Close Price')$$,
                'agent srv over a relation and columns whose names need quoting');
SELECT lives_ok($$SELECT rl_mlops.create_agent('feat', 'rl_test.fbars', features_column => 'features',
                                               window_size => 8, hidden_size => 16)$$,
                'agent feat with 2 features, window 8, hidden 16');
SELECT lives_ok($$SELECT rl_mlops.create_agent('idle', 'rl_test.fbars')$$, 'agent idle, never deployed');

-- Random observations of the srv architecture (33 = 32 returns + position).
CREATE TABLE rl_test.obs AS
SELECT i, array_agg(CASE WHEN j = 33 THEN (i % 3) - 1 ELSE 3 * sin(i * 7.1 + j * 1.7) END::float4 ORDER BY j) AS obs
  FROM generate_series(1, 200) AS i, generate_series(1, 33) AS j GROUP BY i;

--------------------------------------------------------------------------
-- The functions themselves
--------------------------------------------------------------------------

SELECT is((SELECT string_agg(format('%s:%s%s%s', proname, provolatile, CASE WHEN proisstrict THEN 's' ELSE '' END, proparallel),
                             ' ' ORDER BY proname)
             FROM pg_proc WHERE pronamespace = 'rl_mlops'::regnamespace
              AND proname IN ('act', 'policy', 'value', 'decide', 'backtest', 'backtest_summary')),
          'act:sss backtest:sr backtest_summary:sr decide:sr policy:sss value:sss',
          'act, policy, value are STABLE STRICT PARALLEL SAFE; decide and backtests STABLE, PARALLEL RESTRICTED');
SELECT ok(NOT bool_or(has_function_privilege('public', f, 'EXECUTE')),
          'no serving function is executable by PUBLIC')
  FROM unnest(ARRAY['rl_mlops.act(real[], text)', 'rl_mlops.policy(real[], text)', 'rl_mlops.value(real[], text)',
                    'rl_mlops.decide(text, text, timestamptz, integer)',
                    'rl_mlops.backtest(text, text, timestamptz, timestamptz, text)',
                    'rl_mlops.backtest_summary(text, text, timestamptz, timestamptz, text)',
                    'rl_mlops.serving_cache()']) AS f;

--------------------------------------------------------------------------
-- Before any deployment
--------------------------------------------------------------------------

SELECT throws_ok($$SELECT rl_mlops.act(obs, 'srv') FROM rl_test.obs WHERE i = 1$$,
                 '55000', 'agent "srv" has no active model', 'act without an active model: 55000');
SELECT throws_ok($$SELECT * FROM rl_mlops.decide('srv', 'AAA', '2024-06-01')$$,
                 '55000', 'agent "srv" has no active model', 'decide without an active model: 55000');
SELECT throws_ok($$SELECT rl_mlops.act(obs, 'nobody') FROM rl_test.obs WHERE i = 1$$,
                 '42704', 'agent "nobody" does not exist', 'act of an unknown agent: 42704');
SELECT throws_ok($$SELECT rl_mlops.policy(obs) FROM rl_test.obs WHERE i = 1$$,
                 '42704', 'agent "default" does not exist', 'the agent defaults to ''default''');

CREATE TEMP TABLE v AS
SELECT 1 AS n, rl_test.serving_model('srv', 1, p_deploy => true) AS version UNION ALL
SELECT 2, rl_test.serving_model('srv', 2);
CREATE FUNCTION pg_temp.v(n int) RETURNS text LANGUAGE sql AS $$ SELECT version FROM v WHERE v.n = $1 $$;
SELECT lives_ok($$SELECT rl_test.serving_model('feat', 3, p_deploy => true)$$, 'feat has an active model (seed 3)');

--------------------------------------------------------------------------
-- act, policy, value
--------------------------------------------------------------------------

SELECT is(count(*)::int, 0, 'policy and value equal the SQL forward pass of the checkpoint within 1e-5 (50 observations)')
  FROM rl_test.obs,
       LATERAL (SELECT rl_mlops.policy(obs, 'srv') AS p, rl_mlops.value(obs, 'srv') AS val,
                       rl_test.ref_forward(1, obs, 64) AS ref OFFSET 0) r
 WHERE i <= 50 AND (abs(p[1] - ref[1]) > 1e-5 OR abs(p[2] - ref[2]) > 1e-5 OR abs(p[3] - ref[3]) > 1e-5
    OR abs(val - ref[4]) > 1e-5);
SELECT is(count(*)::int, 0, 'probabilities are three positive numbers summing to 1')
  FROM rl_test.obs, LATERAL (SELECT rl_mlops.policy(obs, 'srv') AS p OFFSET 0) r
 WHERE cardinality(p) <> 3 OR p[1] <= 0 OR p[2] <= 0 OR p[3] <= 0 OR abs(p[1] + p[2] + p[3] - 1) > 1e-6;
SELECT is(count(*)::int, 0, 'act is the argmax of policy')
  FROM rl_test.obs WHERE rl_mlops.act(obs, 'srv') <> rl_test.argmax(rl_mlops.policy(obs, 'srv'));
SELECT ok(count(DISTINCT rl_mlops.act(obs, 'srv')) > 1, 'act is not constant over the observations')
  FROM rl_test.obs;
SELECT is(rl_mlops.act(NULL::real[], 'srv'), NULL, 'act is STRICT: NULL in, NULL out');
SELECT is(count(*)::int, 0, 'feat: policy equals the SQL forward pass of its own checkpoint (11 inputs, hidden 16)')
  FROM (SELECT array_agg(sin(i * j)::float4 ORDER BY j) AS o FROM generate_series(1, 20) AS i, generate_series(1, 11) AS j GROUP BY i) x,
       LATERAL (SELECT rl_mlops.policy(o, 'feat') AS p, rl_test.ref_forward(3, o, 16) AS ref OFFSET 0) r
 WHERE abs(p[1] - ref[1]) > 1e-5 OR abs(p[2] - ref[2]) > 1e-5 OR abs(p[3] - ref[3]) > 1e-5;

-- Observation errors
SELECT is(rl_test.error_of($$SELECT rl_mlops.act(array_fill(0.5::real, ARRAY[5]), 'srv')$$),
          '22023 | observation has the wrong length | expected 33, got 5', 'a short observation: 22023, expected 33, got 5');
SELECT is(rl_test.error_of($$SELECT rl_mlops.act('{}'::real[], 'srv')$$),
          '22023 | observation has the wrong length | expected 33, got 0', 'an empty observation: 22023');
SELECT is(rl_test.error_of($$SELECT rl_mlops.policy(array_fill(0.5::real, ARRAY[34]), 'srv')$$),
          '22023 | observation has the wrong length | expected 33, got 34', 'a long observation: 22023');
SELECT is(rl_test.error_of($$SELECT rl_mlops.act(array_fill(0.5::real, ARRAY[11]), 'srv')$$),
          '22023 | observation has the wrong length | expected 33, got 11',
          'an observation of another agent''s size: 22023');
SELECT is(rl_test.error_of($$SELECT rl_mlops.value(array_fill(0.5::real, ARRAY[3, 11]), 'srv')$$),
          '22023 | observation must be a one-dimensional array | The array has 2 dimensions.',
          'a two-dimensional observation: 22023');
SELECT is(rl_test.error_of($$SELECT rl_mlops.act(array_fill(0.5::real, ARRAY[2]) || NULL::real || array_fill(0.5::real, ARRAY[30]), 'srv')$$),
          '22004 | observation must not contain nulls | Element 3 is null.', 'a NULL element: 22004 naming it');
SELECT is(rl_test.error_of($$SELECT rl_mlops.act(array_fill(0.5::real, ARRAY[32]) || 'NaN'::real, 'srv')$$),
          '22023 | observation must be finite | Element 33 is NaN.', 'NaN: 22023 naming the element');
SELECT is(rl_test.error_of($$SELECT rl_mlops.policy('{Infinity}'::real[] || array_fill(0.5::real, ARRAY[32]), 'srv')$$),
          '22023 | observation must be finite | Element 1 is Infinity.', 'Infinity: 22023');

-- Parallel workers serve too (each loads the model in its own cache).
CREATE TEMP TABLE serial AS SELECT array_agg(rl_mlops.act(obs, 'srv') ORDER BY i) AS a FROM rl_test.obs;
SET LOCAL force_parallel_mode = on;
SET LOCAL parallel_setup_cost = 0;
SET LOCAL parallel_tuple_cost = 0;
CREATE FUNCTION pg_temp.workers_launched() RETURNS int LANGUAGE plpgsql AS $$
DECLARE j json;
BEGIN
    EXECUTE 'EXPLAIN (ANALYZE, FORMAT JSON) SELECT rl_mlops.act(obs, ''srv'') FROM rl_test.obs' INTO j;
    RETURN (j -> 0 -> 'Plan' ->> 'Workers Launched')::int;
END $$;
SELECT cmp_ok(pg_temp.workers_launched(), '>=', 1, 'act runs in a parallel worker');
CREATE TEMP TABLE parallel AS SELECT array_agg(rl_mlops.act(obs, 'srv') ORDER BY i) AS a FROM rl_test.obs;
RESET force_parallel_mode;
RESET parallel_setup_cost;
RESET parallel_tuple_cost;
SELECT is((SELECT a FROM parallel), (SELECT a FROM serial), 'a parallel query gives the same actions');

--------------------------------------------------------------------------
-- decide
--------------------------------------------------------------------------

CREATE TEMP TABLE d AS SELECT * FROM rl_mlops.decide('srv', 'AAA', '2024-06-15 12:00', 1);
SELECT results_eq($$SELECT ts, price, version FROM d$$,
                  $$SELECT timestamptz '2024-06-15', "Close Price"::float8, pg_temp.v(1)
                      FROM rl_test."Market Bars" WHERE "Sym" = 'AAA' AND "When" = '2024-06-15'$$,
                  'decide uses the last bar at or before "at" and names the active version');
SELECT is((SELECT probabilities FROM d),
          rl_mlops.policy(rl_test.ref_obs('rl_test.mb', 'AAA', '2024-06-15 12:00', 1, 32, 0.001), 'srv'),
          'decide''s probabilities are policy() of the observation rebuilt in SQL (returns / sigma, position)');
SELECT is((SELECT array[action, "position"] FROM d), array[rl_test.argmax(probabilities), rl_test.argmax(probabilities) - 1],
          'decide''s action is greedy and its position is action - 1') FROM d;
SELECT isnt((SELECT probabilities FROM rl_mlops.decide('srv', 'AAA', '2024-06-15', -1)),
            (SELECT probabilities FROM d), 'the position held is part of the observation');
SELECT is((SELECT probabilities FROM rl_mlops.decide('srv', 'BBBB', '2024-06-15', 0)),
          rl_mlops.policy(rl_test.ref_obs('rl_test.mb', 'BBBB', '2024-06-15', 0, 32, 0.001), 'srv'),
          'decide reads the symbol asked for');
SELECT is((SELECT probabilities FROM rl_mlops.decide('feat', 'F1', '2024-03-05 10:30', 0)),
          rl_mlops.policy(rl_test.ref_obs('rl_test.fbars', 'F1', '2024-03-05 10:30', 0, 8, 0.001), 'feat'),
          'with features: returns / sigma, position, then the features of the bar');
SELECT is((SELECT ts FROM rl_mlops.decide('srv', 'AAA', '2024-03-01', 0)), timestamptz '2024-03-01',
          'a bar exactly at "at" is used');
SELECT ok((SELECT ts FROM rl_mlops.decide('srv', 'AAA')) = timestamptz '2024-01-01' + interval '399 days',
          '"at" defaults to now(): the latest bar');

-- position NULL: the greedy policy replayed from flat over episode_length bars
SELECT lives_ok($$SELECT rl_mlops.configure('srv', episode_length => 20)$$, 'episode_length 20');
CREATE TEMP TABLE replay AS
SELECT "position" FROM rl_mlops.backtest('srv', 'AAA', timestamptz '2024-06-15' - interval '20 days', '2024-06-15')
 ORDER BY ts DESC LIMIT 1;
SELECT is((SELECT count(*)::int FROM rl_mlops.backtest('srv', 'AAA', timestamptz '2024-06-15' - interval '20 days', '2024-06-15')),
          20, 'the replay window holds episode_length decisions');
SELECT is((SELECT row(d.*)::text FROM rl_mlops.decide('srv', 'AAA', '2024-06-15 12:00') d),
          (SELECT row(d.*)::text FROM replay, rl_mlops.decide('srv', 'AAA', '2024-06-15 12:00', replay."position") d),
          'decide with position NULL = decide with the position the policy reached over the last episode_length bars from flat');
SELECT is((SELECT row(d.*)::text FROM rl_mlops.decide('srv', 'AAA', '2024-02-05') d),
          (SELECT row(d.*)::text FROM rl_mlops.decide('srv', 'AAA', '2024-02-05', (
               SELECT "position" FROM rl_mlops.backtest('srv', 'AAA', '2024-01-01', '2024-02-05') ORDER BY ts DESC LIMIT 1)) d),
          'with less history than episode_length the replay starts at the first full window');
SELECT is((SELECT row(d.*)::text FROM rl_mlops.decide('srv', 'AAA', '2024-02-02') d),
          (SELECT row(d.*)::text FROM rl_mlops.decide('srv', 'AAA', '2024-02-02', 0) d),
          'with exactly one window of history there is nothing to replay: flat');

-- decide errors
SELECT is(rl_test.error_of($$SELECT rl_mlops.decide('srv', 'ZZZ', '2024-06-15')$$),
          'P0002 | symbol "ZZZ" not found in relation rl_test."Market Bars" | Agent "srv" reads symbols from column Sym.',
          'an unknown symbol: no_data_found');
SELECT is(rl_test.error_of($$SELECT rl_mlops.decide('srv', 'AAA', '2023-01-01')$$),
          'P0002 | symbol "AAA" has no rows at or before 2023-01-01 00:00:00+00 in relation rl_test."Market Bars" | ',
          'no bar at or before "at": no_data_found');
SELECT is(rl_test.error_of($$SELECT rl_mlops.decide('srv', 'AAA', '2024-01-20')$$),
          'P0002 | not enough history of symbol "AAA" at 2024-01-20 00:00:00+00 | An observation needs 33 prices (window 32 plus one); the source has 20 up to that time.',
          'less than a window of history: no_data_found with the counts');
SELECT is(rl_test.error_of($$SELECT rl_mlops.decide('srv', 'NUL', '2024-03-01', 0)$$),
          '22004 | price of symbol "NUL" at 2024-02-20 00:00:00+00 is null | Column Close Price of relation rl_test."Market Bars" must hold a price in every row.',
          'a NULL price: 22004 naming the bar');
SELECT is(rl_test.error_of($$SELECT rl_mlops.decide('srv', 'NEG', '2024-03-01', 0)$$),
          '22023 | price of symbol "NEG" at 2024-02-20 00:00:00+00 is not positive | The price is 0; log returns need finite prices greater than zero.',
          'a zero price: 22023 naming the bar');
SELECT lives_ok($$SELECT rl_mlops.decide('srv', 'NUL', '2024-04-09', 0)$$,
                'bad prices outside the window read do not matter');
SELECT is(rl_test.error_of($$SELECT rl_mlops.decide('feat', 'FN', '2024-03-07 08:00', 0)$$),
          '22004 | features of symbol "FN" at 2024-03-07 06:00:00+00 are null | Agent "feat" needs 2 features in column features of relation rl_test.fbars in every row.',
          'NULL features: 22004');
SELECT throws_ok($$SELECT rl_mlops.decide('srv', 'AAA', '2024-06-15', 2)$$,
                 '22023', 'position must be -1, 0 or 1', 'position 2: 22023');
SELECT throws_ok($$SELECT rl_mlops.decide('srv', NULL, '2024-06-15')$$,
                 '22004', 'symbol must not be null', 'symbol NULL: 22004');
SELECT throws_ok($$SELECT rl_mlops.decide('srv', 'AAA', NULL)$$,
                 '22004', 'at must not be null', 'at NULL: 22004');
SELECT throws_ok($$SELECT rl_mlops.decide('nobody', 'AAA')$$,
                 '42704', 'agent "nobody" does not exist', 'decide of an unknown agent: 42704');
SELECT throws_ok($$SELECT rl_mlops.decide('idle', 'F1')$$,
                 '55000', 'agent "idle" has no active model', 'decide of an agent without a model: 55000');

--------------------------------------------------------------------------
-- backtest and backtest_summary
--------------------------------------------------------------------------

CREATE TEMP TABLE bt AS SELECT * FROM rl_mlops.backtest('srv', 'AAA', '2024-03-01', '2024-06-01');
CREATE TEMP TABLE bs AS SELECT * FROM rl_mlops.backtest_summary('srv', 'AAA', '2024-03-01', '2024-06-01');
SELECT results_eq($$SELECT count(*)::int, min(ts), max(ts) FROM bt$$,
                  $$VALUES (92, timestamptz '2024-03-01', timestamptz '2024-05-31')$$,
                  'one row per bar in [from, to] except the last, which has no next return');
SELECT is((SELECT count(*)::int FROM bt WHERE "position" NOT IN (-1, 0, 1)), 0, 'positions are -1, 0 or 1');
SELECT is((SELECT array_agg(price ORDER BY ts) FROM bt),
          (SELECT array_agg("Close Price"::float8 ORDER BY "When") FROM rl_test."Market Bars"
            WHERE "Sym" = 'AAA' AND "When" >= '2024-03-01' AND "When" < '2024-06-01'),
          'each row carries its bar''s price');
WITH RECURSIVE bars AS (
    SELECT row_number() OVER (ORDER BY ts) AS n, ts FROM rl_test.mb
     WHERE symbol = 'AAA' AND ts >= '2024-03-01' AND ts < '2024-06-01'),
chain (n, ts, pos) AS (
    SELECT n, ts, rl_mlops.act(rl_test.ref_obs('rl_test.mb', 'AAA', ts, 0, 32, 0.001), 'srv') - 1 FROM bars WHERE n = 1
    UNION ALL
    SELECT b.n, b.ts, rl_mlops.act(rl_test.ref_obs('rl_test.mb', 'AAA', b.ts, c.pos, 32, 0.001), 'srv') - 1
      FROM chain c JOIN bars b ON b.n = c.n + 1)
SELECT is((SELECT array_agg("position" ORDER BY ts) FROM bt), array_agg(pos ORDER BY n),
          'positions are the greedy chain of act() from flat over observations rebuilt in SQL')
  FROM chain;
CREATE TEMP TABLE btx AS
SELECT ts, "position", reward, equity,
       reward * 0.001 AS net,
       (SELECT ln(n."Close Price"::float8 / b.price) FROM rl_test."Market Bars" n
         WHERE n."Sym" = 'AAA' AND n."When" > b.ts ORDER BY n."When" LIMIT 1) AS r_next,
       lag("position", 1, 0) OVER (ORDER BY ts) AS prev
  FROM bt b;
SELECT is((SELECT count(*)::int FROM btx
            WHERE abs(net - ("position" * r_next - 0.0005 * abs("position" - prev))) > 1e-12),
          0, 'reward * sigma = position * next log return - 5 bp * |position change|');
SELECT ok((SELECT bool_and(abs(equity - e) < 1e-9)
             FROM (SELECT equity, exp(sum(net) OVER (ORDER BY ts)) AS e FROM btx) x),
          'equity = exp(cumulative net log return), from 1');
SELECT results_eq($$SELECT version, steps FROM bs$$, $$SELECT pg_temp.v(1), 92::bigint$$,
                  'summary: the active version and the number of decisions');
SELECT ok((SELECT abs(bs.total_log_return - (SELECT sum(net) FROM btx)) < 1e-12
              AND abs(bs.buy_hold_log_return - (SELECT sum(r_next) FROM btx)) < 1e-12
              AND abs(bs.turnover - (SELECT avg(abs("position" - prev)) FROM btx)) < 1e-12
              AND abs(bs.max_drawdown - (SELECT max(1 - equity / greatest(1, peak))
                                           FROM (SELECT equity, max(equity) OVER (ORDER BY ts) AS peak FROM btx) p)) < 1e-9
            FROM bs),
   'summary: total log return, buy & hold, turnover and max drawdown agree with the rows');
SELECT ok((SELECT abs(bs.sharpe - (SELECT avg(net) / stddev_samp(net) * sqrt(365.25) FROM btx)) < 1e-9 FROM bs),
          'summary: Sharpe = mean / std of net returns * sqrt(periods_per_year)');
SELECT is((SELECT periods_per_year FROM bs), 365.25::float8, 'daily bars: 365.25 periods per year');
SELECT is((SELECT periods_per_year FROM rl_mlops.backtest_summary('feat', 'F1', '2024-03-02', '2024-03-08')),
          8766::float8, 'hourly bars: 8766 periods per year');
SELECT is((SELECT min(ts) FROM rl_mlops.backtest('srv', 'AAA', '-infinity', '2024-03-01')),
          timestamptz '2024-01-01' + interval '32 days',
          'a range that starts before the history begins at the first full window');

-- a named version side by side with the active one
SELECT lives_ok(format('SELECT rl_mlops.deploy_model(''srv'', %L)', pg_temp.v(2)), 'deploy v2');
SELECT results_eq($$SELECT * FROM rl_mlops.backtest_summary('srv', 'AAA', '2024-03-01', '2024-06-01', pg_temp.v(1))$$,
                  $$SELECT * FROM bs$$,
                  'a named (archived) version backtests exactly as it did while active');
SELECT is((SELECT version FROM rl_mlops.backtest_summary('srv', 'AAA', '2024-03-01', '2024-06-01')), pg_temp.v(2),
          'version NULL is the active version');
SELECT isnt((SELECT array_agg("position" ORDER BY ts) FROM rl_mlops.backtest('srv', 'AAA', '2024-03-01', '2024-06-01')),
            (SELECT array_agg("position" ORDER BY ts) FROM bt), 'two versions give two different backtests');

-- backtest errors
SELECT is(rl_test.error_of($$SELECT rl_mlops.backtest_summary('srv', 'AAA', '2024-06-01', '2024-03-01')$$),
          '22023 | backtest range is empty | "from" (2024-06-01 00:00:00+00) is after "to" (2024-03-01 00:00:00+00).',
          'from after to: 22023');
SELECT throws_ok($$SELECT * FROM rl_mlops.backtest('srv', 'AAA', '2024-03-01', '2024-06-01', '20000101_000000')$$,
                 '42704', 'model version "20000101_000000" of agent "srv" does not exist', 'an unknown version: 42704');
SELECT is(rl_test.error_of($$SELECT rl_mlops.backtest_summary('srv', 'AAA', '2024-03-01', '2024-03-01')$$),
          'P0002 | not enough history for a backtest of symbol "AAA" | A decision needs 32 earlier prices and a later price in the range; the source has 1 rows in the range and 32 before it.',
          'a one-bar range: no_data_found');
SELECT is(rl_test.error_of($$SELECT rl_mlops.backtest_summary('srv', 'AAA', '2030-01-01', '2030-02-01')$$),
          'P0002 | symbol "AAA" has no rows between 2030-01-01 00:00:00+00 and 2030-02-01 00:00:00+00 in relation rl_test."Market Bars" | ',
          'an empty range: no_data_found');
SELECT throws_ok($$SELECT * FROM rl_mlops.backtest('srv', 'ZZZ', '2024-03-01', '2024-06-01')$$,
                 'P0002', 'symbol "ZZZ" not found in relation rl_test."Market Bars"', 'backtest of an unknown symbol');
SELECT throws_ok($$SELECT * FROM rl_mlops.backtest('srv', 'AAA', NULL, '2024-06-01')$$,
                 '22004', 'from must not be null', 'from NULL: 22004');

--------------------------------------------------------------------------
-- Privileges: USAGE + EXECUTE is enough to serve; the source is read as
-- the caller.
--------------------------------------------------------------------------

CREATE ROLE rl_test_trader;
GRANT USAGE ON SCHEMA rl_mlops TO rl_test_trader;
GRANT EXECUTE ON FUNCTION rl_mlops.act(real[], text), rl_mlops.decide(text, text, timestamptz, integer),
                          rl_mlops.serving_cache() TO rl_test_trader;
GRANT SELECT ON rl_test.obs TO rl_test_trader;
CREATE TEMP TABLE expect_act AS SELECT rl_mlops.act(obs, 'srv') AS a FROM rl_test.obs WHERE i = 1;
DO $$ BEGIN PERFORM rl_mlops._invalidate_serving(); END $$;
CREATE TEMP TABLE priv0 AS SELECT registry_reads AS r FROM rl_mlops.serving_cache() WHERE agent = 'srv';
SELECT is(rl_test.as_role('rl_test_trader', $$SELECT rl_mlops.act(obs, 'srv') FROM rl_test.obs WHERE i = 1$$),
          'ok: ' || (SELECT a FROM expect_act),
          'a role with only USAGE and EXECUTE serves after an invalidation');
SELECT is((SELECT registry_reads FROM rl_mlops.serving_cache() WHERE agent = 'srv'), (SELECT r + 1 FROM priv0),
          '... having re-read the registry (as the extension owner)');
SELECT is(rl_test.as_role('rl_test_trader', 'SELECT count(*) FROM rl_mlops.models'),
          '42501: permission denied for table models', '... though it cannot read the registry itself');
SELECT is(rl_test.as_role('rl_test_trader', $$SELECT action FROM rl_mlops.decide('srv', 'AAA', '2024-06-15')$$),
          '42501: permission denied for table Market Bars', 'decide reads the source with the caller''s privileges');
GRANT SELECT ON rl_test."Market Bars" TO rl_test_trader;
SELECT is(rl_test.as_role('rl_test_trader', $$SELECT action FROM rl_mlops.decide('srv', 'AAA', '2024-06-15')$$),
          'ok: ' || (SELECT action FROM rl_mlops.decide('srv', 'AAA', '2024-06-15')), '... and serves once granted SELECT');
SELECT is(rl_test.as_role('rl_test_trader', $$SELECT rl_mlops.policy(obs, 'srv') FROM rl_test.obs WHERE i = 1$$),
          '42501: permission denied for function policy', 'EXECUTE is granted function by function');

--------------------------------------------------------------------------
-- The cache, in one session: deploy, rollback and invalidations
--------------------------------------------------------------------------

CREATE TEMP TABLE c0 AS SELECT registry_reads, loads FROM rl_mlops.serving_cache() WHERE agent = 'srv';
SELECT is((SELECT count(rl_mlops.act(obs, 'srv'))::int FROM rl_test.obs, generate_series(1, 10)), 2000, '2000 act() calls');
SELECT results_eq($$SELECT registry_reads, loads FROM rl_mlops.serving_cache() WHERE agent = 'srv'$$,
                  $$SELECT * FROM c0$$, 'act() does not read the registry between invalidations');
SELECT is((SELECT version FROM rl_mlops.serving_cache() WHERE agent = 'srv'), pg_temp.v(2), 'the cache holds v2');
SELECT is(count(*)::int, 0, 'v2 is served: policy equals the SQL forward pass of seed 2')
  FROM rl_test.obs, LATERAL (SELECT rl_mlops.policy(obs, 'srv') AS p, rl_test.ref_forward(2, obs, 64) AS ref OFFSET 0) r
 WHERE i <= 20 AND (abs(p[1] - ref[1]) > 1e-5 OR abs(p[2] - ref[2]) > 1e-5);
SELECT lives_ok($$SELECT rl_mlops.rollback('srv')$$, 'rollback to v1');
SELECT is(count(*)::int, 0, 'after the rollback v1 is served at once in this session')
  FROM rl_test.obs, LATERAL (SELECT rl_mlops.policy(obs, 'srv') AS p, rl_test.ref_forward(1, obs, 64) AS ref OFFSET 0) r
 WHERE i <= 20 AND (abs(p[1] - ref[1]) > 1e-5 OR abs(p[2] - ref[2]) > 1e-5);
SELECT results_eq($$SELECT version, registry_reads, loads FROM rl_mlops.serving_cache() WHERE agent = 'srv'$$,
                  $$SELECT pg_temp.v(1), registry_reads + 1, loads + 1 FROM c0$$,
                  'the rollback cost one registry read and one parse');
DO $$ BEGIN PERFORM rl_mlops._invalidate_serving(); END $$;
SELECT is(rl_mlops.act(obs, 'srv'), rl_mlops.act(obs, 'srv'), 'serve after an invalidation that changed nothing')
  FROM rl_test.obs WHERE i = 1;
SELECT results_eq($$SELECT version, registry_reads, loads FROM rl_mlops.serving_cache() WHERE agent = 'srv'$$,
                  $$SELECT pg_temp.v(1), registry_reads + 2, loads + 1 FROM c0$$,
                  'an invalidation with the same active version re-reads the registry but does not re-parse');
SAVEPOINT before_deploy;
SELECT lives_ok(format('SELECT rl_mlops.deploy_model(''srv'', %L)', pg_temp.v(2)), 'deploy v2 in a subtransaction');
SELECT is((SELECT version FROM rl_mlops.decide('srv', 'AAA', '2024-06-15')), pg_temp.v(2), 'v2 served inside it');
ROLLBACK TO SAVEPOINT before_deploy;
SELECT is((SELECT version FROM rl_mlops.decide('srv', 'AAA', '2024-06-15')), pg_temp.v(1),
          'rolling the subtransaction back serves v1 again');

-- A checkpoint that vanished behind the registry's back: the active
-- version's weights, verified when they were loaded, keep serving; a
-- version that has to be read is an error.
CREATE TEMP TABLE expect_v1 AS SELECT rl_mlops.policy(obs, 'srv') AS p FROM rl_test.obs WHERE i = 1;
SAVEPOINT before_unlink;
DO $$ BEGIN PERFORM lo_unlink(checkpoint) FROM rl_mlops.models WHERE agent = 'srv'; END $$;
DO $$ BEGIN PERFORM rl_mlops._invalidate_serving(); END $$;
SELECT is(rl_mlops.policy(obs, 'srv'), (SELECT p FROM expect_v1), 'the cached active version keeps serving')
  FROM rl_test.obs WHERE i = 1;
SELECT throws_like(format($$SELECT * FROM rl_mlops.backtest_summary('srv', 'AAA', '2024-03-01', '2024-06-01', %L)$$, pg_temp.v(2)),
                   'checkpoint large object % does not exist',
                   'a named version whose large object vanished is an error');
ROLLBACK TO SAVEPOINT before_unlink;

-- DROP EXTENSION and CREATE EXTENSION again: nothing cached survives.
DROP EXTENSION rl_mlops;
CREATE EXTENSION rl_mlops;
SELECT lives_ok($$SELECT rl_mlops.create_agent('srv', 'rl_test.mb')$$, 'a new agent srv without a model');
SELECT throws_ok($$SELECT rl_mlops.act(obs, 'srv') FROM rl_test.obs WHERE i = 1$$,
                 '55000', 'agent "srv" has no active model', 'the old srv''s cached weights are gone');

SELECT * FROM finish();
ROLLBACK;
