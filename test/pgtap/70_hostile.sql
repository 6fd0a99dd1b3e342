-- Fault tolerance and hostile input (issue 7), inside one transaction:
--   1. check_integrity() is silent on a healthy registry and reports each
--      kind of broken invariant (every fault below is undone afterwards);
--   2. hostile checkpoints (zip and pickle files, a 2^63 header length,
--      10^6 tensors, deep nesting, ...) are refused with nothing written;
--   3. every absurd setting of configure() and create_agent() is refused by
--      its CHECK constraint, and every such constraint is exercised;
--   4. names with quotes, semicolons and unicode do not inject, including
--      into the pg_cron job;
--   5. a role without the documented GRANTs can change nothing;
--   6. functions and operators planted in schema public are never called
--      by our functions, even with search_path = public, pg_catalog.
-- Training itself (a real worker) is in test/t/090_hostile.pl.
\set ON_ERROR_STOP 1
BEGIN;
SET LOCAL client_min_messages = error;
SELECT plan(258);

CREATE EXTENSION rl_mlops;
\ir helpers/checkpoint.sql

--------------------------------------------------------------------------
-- 1. check_integrity()
--------------------------------------------------------------------------

-- Agent i: v1 deployed then archived, v2 active, v3 validated, v4 only
-- registered, v5 rejected by the forward-pass check.
SELECT lives_ok($$SELECT rl_mlops.create_agent('i', 'rl_test.bars')$$, 'agent i');
CREATE TEMP TABLE v (n int PRIMARY KEY, version text);
INSERT INTO v VALUES (1, rl_test.add_model('i', 31, p_deploy => true));
INSERT INTO v VALUES (2, rl_test.add_model('i', 32, p_deploy => true));
INSERT INTO v VALUES (3, rl_test.add_model('i', 33));
INSERT INTO v VALUES (4, rl_mlops.import_model('i', rl_test.checkpoint(34)));
INSERT INTO v VALUES (5, rl_mlops.import_model('i', rl_test.checkpoint(35, corrupt => 'huge')));
DO $$ BEGIN PERFORM rl_mlops.validate_model('i', (SELECT version FROM v WHERE n = 5)); END $$;
CREATE FUNCTION pg_temp.v(i int) RETURNS text LANGUAGE sql AS $$ SELECT version FROM v WHERE n = i $$;
CREATE FUNCTION pg_temp.oid_of(i int) RETURNS oid LANGUAGE sql AS
$$ SELECT checkpoint FROM rl_mlops.models WHERE agent = 'i' AND version = pg_temp.v(i) $$;
SELECT results_eq(
    $$SELECT n, state FROM rl_mlops.models JOIN v USING (version) WHERE agent = 'i' ORDER BY n$$,
    $$VALUES (1, 'archived'::text), (2, 'active'), (3, 'validated'), (4, 'registered'), (5, 'rejected')$$,
    'set-up: one model in each state');

-- The problems check_integrity() reports after a fault, as
-- "kind agent object" lines; the fault is undone (an exception rolls
-- back the block) before this returns.
CREATE FUNCTION pg_temp.problems_after(fault text, p_agent text DEFAULT NULL)
RETURNS text
LANGUAGE plpgsql
AS $$
DECLARE
    res text;
BEGIN
    BEGIN
        EXECUTE fault;
        SELECT coalesce(string_agg(kind || ' ' || coalesce(agent, '-') || ' ' || object, '; '
                                   ORDER BY kind, agent, object), '')
          INTO res FROM rl_mlops.check_integrity(p_agent);
        RAISE EXCEPTION 'undo' USING ERRCODE = 'U0001';
    EXCEPTION WHEN SQLSTATE 'U0001' THEN
        NULL;
    END;
    RETURN res;
END
$$;
CREATE TEMP TABLE lo_base AS SELECT count(*) AS n FROM pg_largeobject_metadata;
CREATE ROLE rl_test_lo_owner;

SELECT is(pg_temp.problems_after('SELECT 1'), '', 'a healthy registry: check_integrity() returns nothing');
SELECT is(pg_temp.problems_after('SELECT 1', 'i'), '', '... nor check_integrity(agent)');
SELECT throws_ok($$SELECT * FROM rl_mlops.check_integrity('nope')$$, '42704', 'agent "nope" does not exist',
                 'check_integrity of an unknown agent is an error');
SELECT is(pg_temp.problems_after(format('SELECT lo_unlink(%s)', pg_temp.oid_of(2))),
          format('checkpoint_missing i %s', pg_temp.v(2)),
          'the active version''s large object unlinked: checkpoint_missing');
SELECT is(pg_temp.problems_after(format('SELECT lo_put(%s, 300, ''\x00ff''::bytea)', pg_temp.oid_of(2))),
          format('checkpoint_corrupt i %s', pg_temp.v(2)),
          'the active version''s bytes changed: checkpoint_corrupt');
SELECT is(pg_temp.problems_after(format('SELECT lo_put(%s, 300, ''\x00ff''::bytea)', pg_temp.oid_of(1))),
          format('checkpoint_corrupt i %s', pg_temp.v(1)),
          'an archived version''s bytes changed (a rollback target): checkpoint_corrupt');
SELECT is(pg_temp.problems_after(format('SELECT lo_unlink(%s)', pg_temp.oid_of(4))),
          format('checkpoint_missing i %s', pg_temp.v(4)),
          'a registered version''s large object unlinked: checkpoint_missing');
SELECT is(pg_temp.problems_after(format($f$UPDATE rl_mlops.models SET validation = NULL WHERE agent = 'i' AND version = %L$f$, pg_temp.v(2))),
          format('active_not_validated i %s', pg_temp.v(2)),
          'an active version without a recorded validation: active_not_validated');
SELECT is(pg_temp.problems_after(format($f$UPDATE rl_mlops.models SET validation = jsonb_set(validation, '{ok}', 'false')
                                            WHERE agent = 'i' AND version = %L$f$, pg_temp.v(2))),
          format('active_not_validated i %s', pg_temp.v(2)),
          'an active version whose recorded validation failed: active_not_validated');
SELECT is(pg_temp.problems_after($f$UPDATE rl_mlops.models SET state = 'archived' WHERE agent = 'i' AND state = 'active'$f$),
          format('history_mismatch i %s', pg_temp.v(2)),
          'no active version although one was deployed last: history_mismatch');
SELECT is(pg_temp.problems_after(format($f$INSERT INTO rl_mlops.deployments (agent, version, previous_version, action)
                                            VALUES ('i', %L, %L, 'deploy')$f$, pg_temp.v(3), pg_temp.v(2))),
          format('history_mismatch i %s', pg_temp.v(2)),
          'the history names another version than the active one: history_mismatch');
SELECT is(pg_temp.problems_after(format($f$DROP INDEX rl_mlops.models_one_active_per_agent;
                                            UPDATE rl_mlops.models SET state = 'active' WHERE agent = 'i' AND version = %L$f$, pg_temp.v(1))),
          format('several_active i %s, %s', pg_temp.v(1), pg_temp.v(2)),
          'two active versions (the unique index dropped): several_active');
SELECT is(pg_temp.problems_after(format($f$DELETE FROM rl_mlops.models WHERE agent = 'i' AND version = %L$f$, pg_temp.v(3))),
          format('orphan_checkpoint - %s', pg_temp.oid_of(3)),
          'a version row deleted without its large object: orphan_checkpoint');
SELECT is(pg_temp.problems_after(format($f$DELETE FROM rl_mlops.models WHERE agent = 'i' AND version = %L$f$, pg_temp.v(3)), 'i'),
          '', '... reported by check_integrity() of all agents only');
SELECT is(pg_temp.problems_after($f$SELECT lo_from_bytea(0, '\x0102030405060708090a'::bytea)$f$), '',
          'a large object of the owner that holds no checkpoint is not ours: not reported');
SELECT is(pg_temp.problems_after($f$DO $d$ DECLARE o oid := lo_from_bytea(0, rl_test.checkpoint(36));
                                   BEGIN EXECUTE format('ALTER LARGE OBJECT %s OWNER TO rl_test_lo_owner', o); END $d$$f$),
          '', 'an unreferenced checkpoint of another role is not ours: not reported');
SELECT is(pg_temp.problems_after(format('ALTER LARGE OBJECT %s OWNER TO rl_test_lo_owner', pg_temp.oid_of(2))),
          format('checkpoint_owner i %s', pg_temp.v(2)),
          'the active checkpoint given to another role: checkpoint_owner');
SELECT is(pg_temp.problems_after(format($f$DO $d$ DECLARE
                                       bad bytea := rl_test.checkpoint(37, corrupt => 'huge');
                                       old oid := %s;
                                   BEGIN
                                       UPDATE rl_mlops.models SET checkpoint = lo_from_bytea(0, bad),
                                              sha256 = encode(sha256(bad), 'hex'), size_bytes = length(bad)
                                        WHERE agent = 'i' AND version = %L;
                                       PERFORM lo_unlink(old);
                                   END $d$$f$, pg_temp.oid_of(3), pg_temp.v(3))),
          format('checkpoint_invalid i %s', pg_temp.v(3)),
          'a validated version whose (consistently recorded) bytes fail the forward pass: checkpoint_invalid');
SELECT is(pg_temp.problems_after($f$INSERT INTO rl_mlops.runs (agent, state, worker_pid, started_at)
                                   VALUES ('i', 'training', 999999, now())$f$),
          format('run_without_worker i run %s', currval('rl_mlops.runs_id_seq')),
          'an unfinished run without a worker: run_without_worker');
-- a live "worker": this backend, named by its PID and start time
SELECT is(pg_temp.problems_after($f$INSERT INTO rl_mlops.runs (agent, state, worker_pid, worker_started_at, started_at)
                                   SELECT 'i', 'training', pid, backend_start, now()
                                     FROM pg_stat_activity WHERE pid = pg_backend_pid()$f$),
          '', 'an unfinished run whose worker process is alive is fine');
SELECT is(pg_temp.problems_after($f$INSERT INTO rl_mlops.runs (agent, state, worker_pid, worker_started_at, started_at)
                                   SELECT 'i', 'training', pid, backend_start - interval '1 second', now()
                                     FROM pg_stat_activity WHERE pid = pg_backend_pid()$f$),
          format('run_without_worker i run %s', currval('rl_mlops.runs_id_seq')),
          'the same PID started at another time is another process: run_without_worker');
SELECT throws_ok($f$INSERT INTO rl_mlops.runs (agent, state, started_at)
                    VALUES ('i', 'training', now()), ('i', 'validating', now())$f$,
                 '23505', NULL, 'two unfinished runs of one agent are refused by the database');

-- the details are sentences that name the object
CREATE TEMP TABLE details AS SELECT NULL::text AS d;
DO $$
DECLARE
    r text;
BEGIN
    BEGIN
        PERFORM lo_unlink(pg_temp.oid_of(2));
        SELECT detail INTO r FROM rl_mlops.check_integrity('i');
        RAISE EXCEPTION 'undo' USING ERRCODE = 'U0001';
    EXCEPTION WHEN SQLSTATE 'U0001' THEN NULL;
    END;
    UPDATE details SET d = r;
END $$;
SELECT is((SELECT d FROM details),
          format('Large object %s of version %s (active) does not exist.', pg_temp.oid_of(2), pg_temp.v(2)),
          'the detail is a sentence naming the large object, the version and its state');
SELECT is(pg_temp.problems_after('SELECT 1'), '', 'every fault above was undone: the registry is healthy again');
SELECT is((SELECT count(*) FROM pg_largeobject_metadata), (SELECT n FROM lo_base), '... and no large object leaked');

SELECT ok(NOT has_function_privilege('public', 'rl_mlops.check_integrity(text)', 'EXECUTE'),
          'check_integrity is not executable by PUBLIC (it reads every checkpoint)');
SELECT is((SELECT prosecdef || ' ' || array_to_string(proconfig, ',') FROM pg_proc
            WHERE oid = 'rl_mlops.check_integrity(text)'::regprocedure),
          'true search_path=pg_catalog, pg_temp', 'check_integrity is SECURITY DEFINER with a pinned search_path');

--------------------------------------------------------------------------
-- 2. Hostile checkpoints
--------------------------------------------------------------------------

SELECT lives_ok($$SELECT rl_mlops.create_agent('h', 'rl_test.bars')$$, 'agent h');
CREATE TEMP TABLE h_base AS SELECT rl_test.snapshot('h') AS s;
CREATE TEMP TABLE hostile (ord serial, what text, bytes bytea, sqlstate text, detail text);
INSERT INTO hostile (what, bytes, sqlstate, detail) VALUES
    ('a zip archive (torch.save): PK\x03\x04 then bytes',
     '\x504b0304'::bytea || (SELECT string_agg(sha256(int4send(i)), ''::bytea) FROM generate_series(1, 64) i),
     '22P03', 'The header claims [0-9]+ bytes but only 2044 bytes follow the length\.'),
    ('a pickle (protocol 4, framed)',
     '\x80049505000000000000007d942e'::bytea,
     '22P03', 'The header claims 93652096 bytes but only 6 bytes follow the length\.'),
    ('a pickle shorter than a length prefix', '\x80027d71002e'::bytea,
     '22P03', 'A safetensors file has at least 8 bytes; this one has 6\.'),
    ('a header length of 2^63', rl_test.le64(9223372036854775808) || '\x7b7d'::bytea,
     '22P03', 'The header claims 9223372036854775808 bytes but only 2 bytes follow the length\.'),
    ('a header length of 2^63 - 1', rl_test.le64(9223372036854775807) || '\x7b7d'::bytea,
     '22P03', 'The header claims 9223372036854775807 bytes but only 2 bytes follow the length\.'),
    ('a header length of 0', rl_test.le64(0) || '\x7b7d'::bytea,
     '22P03', 'not valid JSON'),
    ('a header that is not UTF-8', rl_test.le64(4) || '\x7bff7d20'::bytea,
     '22P03', 'not valid UTF-8'),
    ('a JSON array 100000 levels deep',
     (SELECT rl_test.le64(length(h)) || h FROM (SELECT convert_to('{"__metadata__":' || repeat('[', 100000), 'UTF8') AS h) x),
     '22P03', 'not a JSON object|an array'),
    ('a tensor name of 1 MB',
     (SELECT rl_test.le64(length(h)) || h FROM (SELECT convert_to('{"' || repeat('n', 1048576) || '":{}}', 'UTF8') AS h) x),
     '22P03', 'longer than 256 bytes'),
    ('a shape of 2^31 - 1 x 2^31 - 1',
     (SELECT rl_test.le64(length(h)) || h || '\x00000000'::bytea
        FROM (SELECT convert_to('{"__metadata__":{"format":"rl_mlops/1","window":"32","n_features":"0","obs_dim":"33",'
                                '"hidden":"64","n_actions":"3","sigma":"0.001"},'
                                '"actor.bias":{"dtype":"F32","shape":[2147483647,2147483647],"data_offsets":[0,4]}}',
                                'UTF8') AS h) x),
     '22P03', 'span 4 bytes but its shape needs 18446744056529682436'),
    ('data_offsets ending at 2^63',
     (SELECT rl_test.le64(length(h)) || h || '\x00000000'::bytea
        FROM (SELECT convert_to('{"__metadata__":{"format":"rl_mlops/1","window":"32","n_features":"0","obs_dim":"33",'
                                '"hidden":"64","n_actions":"3","sigma":"0.001"},'
                                '"actor.bias":{"dtype":"F32","shape":[1],"data_offsets":[0,9223372036854775807]}}',
                                'UTF8') AS h) x),
     '22P03', 'beyond the 4 data bytes'),
    ('data_offsets that end before they begin',
     (SELECT rl_test.le64(length(h)) || h || '\x00000000'::bytea
        FROM (SELECT convert_to('{"__metadata__":{"format":"rl_mlops/1","window":"32","n_features":"0","obs_dim":"33",'
                                '"hidden":"64","n_actions":"3","sigma":"0.001"},'
                                '"actor.bias":{"dtype":"F32","shape":[1],"data_offsets":[4,0]}}', 'UTF8') AS h) x),
     '22P03', 'end before they begin'),
    ('a sigma of 1e400', rl_test.checkpoint(41, sigma => '1e400'),
     '22P03', 'not a positive finite number'),
    ('a sigma of NaN', rl_test.checkpoint(41, sigma => 'NaN'),
     '22P03', 'not a positive finite number');

-- 10^6 tiny tensors (a 60 MB header) and 10^6 metadata keys
INSERT INTO hostile (what, bytes, sqlstate, detail)
SELECT '10^6 tiny tensors', rl_test.le64(length(h)) || h || decode(repeat('00', 4000000), 'hex'),
       '22P03', 'The header has more than 64 tensors\.'
  FROM (SELECT convert_to('{' || string_agg(format('"t%s":{"dtype":"F32","shape":[1],"data_offsets":[%s,%s]}',
                                                   i, 4 * (i - 1), 4 * i), ',') || '}', 'UTF8') AS h
          FROM generate_series(1, 1000000) i) x;
INSERT INTO hostile (what, bytes, sqlstate, detail)
SELECT '10^6 metadata keys', rl_test.le64(length(h)) || h,
       '22P03', 'It has more than 64 keys\.'
  FROM (SELECT convert_to('{"__metadata__":{' || string_agg(format('"k%s":"v"', i), ',') || '}}', 'UTF8') AS h
          FROM generate_series(1, 1000000) i) x;
GRANT SELECT ON hostile TO PUBLIC;

CREATE TEMP TABLE hostile_result (ord int, e text, snap text);
DO $$
DECLARE
    n int;
BEGIN
    FOR n IN SELECT ord FROM hostile ORDER BY ord LOOP
        INSERT INTO hostile_result
        VALUES (n, rl_test.error_of(format('SELECT rl_mlops.import_model(''h'', bytes) FROM hostile WHERE ord = %s', n)),
                rl_test.snapshot('h'));
    END LOOP;
END $$;
SELECT t FROM hostile JOIN hostile_result USING (ord), LATERAL (
    SELECT is(split_part(e, ' | ', 1), sqlstate, format('import_model refuses %s (%s)', what, sqlstate))
    UNION ALL
    SELECT matches(split_part(e, ' | ', 3), detail, format('%s: the detail says why', what))
    UNION ALL
    SELECT is(snap, (SELECT s FROM h_base), format('after %s: no model, no large object written', what))
) y(t) ORDER BY ord;
DROP TABLE hostile;
SELECT is(pg_temp.problems_after('SELECT 1'), '', 'after the hostile checkpoints: check_integrity() returns nothing');

--------------------------------------------------------------------------
-- 3. Absurd settings
--------------------------------------------------------------------------

-- "SQLSTATE constraint" of the error a statement raises, or "no error".
CREATE FUNCTION pg_temp.violation(p_sql text)
RETURNS text
LANGUAGE plpgsql
AS $$
DECLARE
    st text;
    con text;
BEGIN
    EXECUTE p_sql;
    RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, con = CONSTRAINT_NAME;
    RETURN st || ' ' || coalesce(con, '-');
END
$$;

SELECT lives_ok($$SELECT rl_mlops.create_agent('cfg', 'rl_test.bars')$$, 'agent cfg');
CREATE TEMP TABLE cfg_before AS SELECT to_jsonb(a) - 'created_at' AS row FROM rl_mlops.agents a WHERE name = 'cfg';
CREATE TEMP TABLE absurd (ord serial, param text, val text);
INSERT INTO absurd (param, val) VALUES
    ('initial_epochs', '0'), ('initial_epochs', '10001'), ('initial_epochs', '-2147483648'),
    ('incremental_epochs', '0'), ('incremental_epochs', '2147483647'),
    ('data_window', '''59 minutes'''), ('data_window', '''-1 day'''), ('data_window', '''101 years'''),
    ('holdout_fraction', '0.049'), ('holdout_fraction', '0.51'), ('holdout_fraction', '''NaN'''),
    ('holdout_fraction', '''-Infinity'''),
    ('episode_length', '7'), ('episode_length', '100001'),
    ('transaction_cost', '-0.0001'), ('transaction_cost', '0.11'), ('transaction_cost', '''NaN'''),
    ('learning_rate', '0'), ('learning_rate', '1.5'), ('learning_rate', '''NaN'''), ('learning_rate', '''Infinity'''),
    ('gamma', '0'), ('gamma', '1.0000001'), ('gamma', '''NaN'''),
    ('gae_lambda', '-0.01'), ('gae_lambda', '1.01'), ('gae_lambda', '''NaN'''),
    ('clip_range', '0'), ('clip_range', '1.5'), ('clip_range', '''NaN'''),
    ('update_passes', '0'), ('update_passes', '101'),
    ('minibatch_size', '7'), ('minibatch_size', '65537'),
    ('value_coef', '-1'), ('value_coef', '101'), ('value_coef', '''NaN'''),
    ('entropy_coef', '-0.01'), ('entropy_coef', '11'), ('entropy_coef', '''NaN'''),
    ('max_grad_norm', '0'), ('max_grad_norm', '1001'), ('max_grad_norm', '''NaN'''),
    ('seed', '-1'),
    ('threads', '0'), ('threads', '65'),
    ('retention_days', '-1'), ('retention_days', '36501'),
    ('keep_min', '0'), ('keep_min', '1001'),
    ('interval_days', '0'), ('interval_days', '366'),
    ('deploy_gate', '''best'''), ('deploy_gate', ''''''), ('deploy_gate', '''valid; DROP TABLE rl_test.bars'''),
    ('gate_min_delta', '-0.1'), ('gate_min_delta', '101'), ('gate_min_delta', '''NaN'''),
    ('probation_days', '-1'), ('probation_days', '366'),
    ('monitor_alpha', '0'), ('monitor_alpha', '0.21'), ('monitor_alpha', '''NaN'''),
    ('min_live_decisions', '1'), ('min_live_decisions', '1000001'),
    ('max_live_drawdown', '0'), ('max_live_drawdown', '11'), ('max_live_drawdown', '''NaN'''),
    ('stale_after', '''59 seconds'''), ('stale_after', '''2 years'''),
    ('rollback_cooldown', '''-1 minute'''), ('rollback_cooldown', '''2 years'''),
    ('ledger_retention_days', '0'), ('ledger_retention_days', '36501'),
    ('deploy_mode', '''canary'''), ('deploy_mode', '''direct; DROP TABLE rl_test.bars'''),
    ('challenger_share', '-0.01'), ('challenger_share', '1'), ('challenger_share', '''NaN''');

SELECT is(pg_temp.violation(format('SELECT rl_mlops.configure(''cfg'', %s => %s)', a.param, a.val)),
          '23514 ' || (SELECT c.conname FROM pg_constraint c
                         JOIN pg_attribute att ON att.attrelid = c.conrelid AND att.attnum = ANY (c.conkey)
                        WHERE c.conrelid = 'rl_mlops.agents'::regclass AND c.contype = 'c'
                          AND att.attname = a.param),
          format('configure refuses %s => %s by its CHECK constraint', a.param, a.val))
  FROM absurd a ORDER BY ord;
SELECT is((SELECT to_jsonb(a) - 'created_at' FROM rl_mlops.agents a WHERE name = 'cfg'), (SELECT row FROM cfg_before),
          'after every refused setting the agent is unchanged');

CREATE TEMP TABLE absurd_create (ord serial, call text, con text);
INSERT INTO absurd_create (call, con) VALUES
    ($$create_agent('', 'rl_test.bars')$$, 'name_is_1_to_63_printable_characters'),
    ($$create_agent(repeat('x', 64), 'rl_test.bars')$$, 'name_is_1_to_63_printable_characters'),
    ($$create_agent(E'tab\there', 'rl_test.bars')$$, 'name_is_1_to_63_printable_characters'),
    ($$create_agent(E'nl\n', 'rl_test.bars')$$, 'name_is_1_to_63_printable_characters'),
    ($$create_agent('w1', 'rl_test.bars', window_size => 1)$$, 'window_size_between_2_and_1024'),
    ($$create_agent('w2', 'rl_test.bars', window_size => 1025)$$, 'window_size_between_2_and_1024'),
    ($$create_agent('h1', 'rl_test.bars', hidden_size => 1)$$, 'hidden_size_between_2_and_1024'),
    ($$create_agent('h2', 'rl_test.bars', hidden_size => 2147483647)$$, 'hidden_size_between_2_and_1024'),
    ($$create_agent('f1', 'rl_test.bars', features_column => 'features', n_features => 257)$$, 'n_features_between_0_and_256');
SELECT is(pg_temp.violation('SELECT rl_mlops.' || call), '23514 ' || con, format('%s is refused by %s', call, con))
  FROM absurd_create ORDER BY ord;

SELECT is((SELECT array_agg(conname::text ORDER BY conname) FROM pg_constraint
            WHERE conrelid = 'rl_mlops.agents'::regclass AND contype = 'c'
              AND conname NOT IN (SELECT con FROM absurd_create)
              AND conname NOT IN (SELECT c.conname FROM pg_constraint c
                                    JOIN pg_attribute att ON att.attrelid = c.conrelid AND att.attnum = ANY (c.conkey)
                                   WHERE c.conrelid = 'rl_mlops.agents'::regclass
                                     AND att.attname IN (SELECT param FROM absurd))),
          NULL, 'every CHECK constraint of rl_mlops.agents is exercised above');
SELECT is((SELECT count(*) FROM rl_mlops.agents WHERE name NOT IN ('i', 'h', 'cfg')), 0::bigint,
          'no agent was created by the refused calls');

--------------------------------------------------------------------------
-- 4. Names that try to inject
--------------------------------------------------------------------------

CREATE TABLE rl_test.victim (x int);
CREATE TABLE rl_test."we""ird; DROP TABLE rl_test.victim; --" (
    "sym; DROP TABLE rl_test.victim; --" text,
    "t""s" timestamptz,
    "prïce € ""); DROP TABLE rl_test.victim; --" float8);
INSERT INTO rl_test."we""ird; DROP TABLE rl_test.victim; --"
SELECT 'S''; DROP TABLE rl_test.victim; --', ts, price
  FROM rl_mlops.synthetic_bars(symbols => 1, bars => 200);
CREATE TEMP TABLE hostile_names (ord int, agent text);
INSERT INTO hostile_names VALUES
    (1, $n$x'); DROP TABLE rl_test.victim; --$n$),
    (2, $n$"; DROP TABLE rl_test.victim; --$n$),
    (3, 'агент 🚀 ''$$ $1 %s %I \\ \'),
    (4, repeat('é', 63));
SELECT lives_ok(format($c$SELECT rl_mlops.create_agent(%L, 'rl_test."we""ird; DROP TABLE rl_test.victim; --"',
                                                        symbol_column => 'sym; DROP TABLE rl_test.victim; --',
                                                        time_column => 't"s',
                                                        price_column => 'prïce € "); DROP TABLE rl_test.victim; --')$c$,
                       agent),
                format('create_agent with hostile names (agent %s)', ord))
  FROM hostile_names ORDER BY ord;
SELECT is((SELECT count(*) FROM rl_mlops.agents a JOIN hostile_names h ON h.agent = a.name), 4::bigint,
          'the four agents exist under their exact names');
SELECT is(rl_test.add_model(agent, 50 + ord, p_deploy => true) IS NOT NULL, true,
          format('import, validate and deploy for agent %s', ord))
  FROM hostile_names ORDER BY ord;
SELECT is((SELECT (d).version FROM (SELECT rl_mlops.decide(agent, 'S''; DROP TABLE rl_test.victim; --',
                                                           'infinity', 0) AS d) x),
          (SELECT version FROM rl_mlops.models m WHERE m.agent = h.agent AND state = 'active'),
          format('decide() reads the hostile table for agent %s', ord))
  FROM hostile_names h ORDER BY ord;
SELECT cmp_ok((SELECT steps FROM rl_mlops.backtest_summary(agent, 'S''; DROP TABLE rl_test.victim; --',
                                                           '-infinity', 'infinity')), '>', 100::bigint,
              format('backtest_summary() reads the hostile table for agent %s', ord))
  FROM hostile_names h ORDER BY ord;
SELECT is((rl_mlops.status(agent) #>> '{status,agent}'), agent, format('status() names agent %s exactly', ord))
  FROM hostile_names ORDER BY ord;

CREATE EXTENSION pg_cron;
SELECT is(rl_mlops.schedule_retraining(agent) IS NOT NULL, true, format('schedule_retraining for agent %s', ord))
  FROM hostile_names ORDER BY ord;
SELECT is((SELECT command FROM cron.job WHERE jobname = rl_mlops._cron_job_name(agent)),
          'SELECT rl_mlops.retrain_if_due(' || quote_literal(agent) || ')',
          format('the pg_cron job of agent %s quotes its name', ord))
  FROM hostile_names ORDER BY ord;
-- what the job will run, run here: due (never trained) and harmless
SELECT is((SELECT count(*) FROM cron.job WHERE command ~ 'retrain_if_due'), 4::bigint, 'one job per agent');
SELECT ok(rl_mlops.unschedule_retraining(agent), format('unschedule_retraining for agent %s', ord))
  FROM hostile_names ORDER BY ord;
SELECT has_table('rl_test', 'victim', 'after all that, the victim table still exists');
SELECT is(pg_temp.problems_after('SELECT 1'), '', 'after the hostile names: check_integrity() returns nothing');

--------------------------------------------------------------------------
-- 5. A role without the documented GRANTs changes nothing
--------------------------------------------------------------------------

-- rl_test_reader may read everything (USAGE, SELECT on the tables and the
-- source) but was granted no function.
CREATE ROLE rl_test_reader;
GRANT USAGE ON SCHEMA rl_mlops, cron TO rl_test_reader;
GRANT SELECT ON ALL TABLES IN SCHEMA rl_mlops TO rl_test_reader;
CREATE TEMP TABLE i_base AS SELECT rl_test.snapshot('i') AS s, (SELECT count(*) FROM rl_mlops.runs) AS runs;
SELECT is(rl_test.as_role('rl_test_reader', format('SELECT rl_mlops.%s', call)),
          format('42501: permission denied for function %s', split_part(call, '(', 1)),
          format('without a GRANT a role cannot run %s', split_part(call, '(', 1)))
  FROM (VALUES
    ('retrain(''i'')'),
    ('retrain(''i'', async => false)'),
    ('cancel_retrain(''i'')'),
    ('schedule_retraining(''i'')'),
    ('unschedule_retraining(''i'')'),
    ('retrain_if_due(''i'')'),
    ('deploy_model(''i'', ' || quote_literal(pg_temp.v(3)) || ')'),
    ('rollback(''i'')'),
    ('import_model(''i'', rl_test.checkpoint(60))'),
    ('cleanup_old_models(''i'')'),
    ('check_integrity()'),
    ('_register_trained(''i'', ''20990101_000000'', ''\x00''::bytea, 1, NULL, 1, 0, now(), now(), ''{}'')')
  ) AS t(call);
SELECT is(rl_test.snapshot('i'), (SELECT s FROM i_base), 'the refused calls changed no model, deployment or large object');
SELECT is((SELECT count(*) FROM rl_mlops.runs), (SELECT runs FROM i_base), '... and started no run');
SELECT is((SELECT count(*) FROM cron.job), 0::bigint, '... and scheduled nothing');

--------------------------------------------------------------------------
-- 6. Functions and operators planted in public are never called
--------------------------------------------------------------------------

-- Every planted object records that it was called (and as whom, from
-- where) while an attack runs, then behaves like the original so that
-- nothing else changes.  (Outside attacks this file's own statements may
-- call them: a planted function whose argument types match better than
-- the pg_catalog one wins wherever public is in the search_path at all.)
CREATE TABLE rl_test.planted_calls (fn text, as_user name, context text);
GRANT INSERT, SELECT ON rl_test.planted_calls TO PUBLIC;
CREATE FUNCTION rl_test.called(fn text) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog
AS $$
DECLARE
    c text;
BEGIN
    IF current_setting('rl_test.attacking', true) = 'on' THEN
        GET DIAGNOSTICS c = PG_CONTEXT;
        INSERT INTO rl_test.planted_calls VALUES (fn, current_user, c);
    END IF;
END
$$;
DO $plant$
DECLARE
    f record;
BEGIN
    FOR f IN SELECT * FROM (VALUES
        ('lo_unlink', 'o oid', 'integer', 'pg_catalog.lo_unlink(o)'),
        ('lo_get', 'o oid', 'bytea', 'pg_catalog.lo_get(o)'),
        ('lo_get', 'o oid, off bigint, len integer', 'bytea', 'pg_catalog.lo_get(o, off, len)'),
        ('lo_from_bytea', 'o oid, b bytea', 'oid', 'pg_catalog.lo_from_bytea(o, b)'),
        ('lo_put', 'o oid, off bigint, b bytea', 'void', 'pg_catalog.lo_put(o, off, b)'),
        ('sha256', 'b bytea', 'bytea', 'pg_catalog.sha256(b)'),
        ('encode', 'b bytea, f text', 'text', 'pg_catalog.encode(b, f)'),
        ('hashtext', 't text', 'integer', 'pg_catalog.hashtext(t)'),
        ('pg_try_advisory_lock', 'a integer, b integer', 'boolean', 'pg_catalog.pg_try_advisory_lock(a, b)'),
        ('pg_advisory_xact_lock', 'k bigint', 'void', 'pg_catalog.pg_advisory_xact_lock(k)'),
        ('pg_terminate_backend', 'p integer, t bigint', 'boolean', 'pg_catalog.pg_terminate_backend(p, t)'),
        ('jsonb_build_object', 'VARIADIC a text[]', 'jsonb', 'pg_catalog.jsonb_build_object(VARIADIC a)'),
        ('jsonb_each', 'j jsonb, OUT key text, OUT value jsonb', 'SETOF record', 'pg_catalog.jsonb_each(j)'),
        ('to_jsonb', 'a text[]', 'jsonb', 'pg_catalog.to_jsonb(a)'),
        ('jsonb_set', 'j jsonb, p text[], v jsonb', 'jsonb', 'pg_catalog.jsonb_set(j, p, v)'),
        ('now', '', 'timestamptz', 'pg_catalog.now()'),
        ('clock_timestamp', '', 'timestamptz', 'pg_catalog.clock_timestamp()'),
        ('to_char', 't timestamp, f text', 'text', 'pg_catalog.to_char(t, f)'),
        ('make_interval', 'days integer', 'interval', 'pg_catalog.make_interval(days => days)'),
        ('format', 'f text, VARIADIC a text[]', 'text', 'pg_catalog.format(f, VARIADIC a)'),
        ('array_to_string', 'a text[], s text', 'text', 'pg_catalog.array_to_string(a, s)'),
        ('cardinality', 'a text[]', 'integer', 'pg_catalog.cardinality(a)'),
        ('length', 't text', 'integer', 'pg_catalog.length(t)'),
        ('pg_is_in_recovery', '', 'boolean', 'pg_catalog.pg_is_in_recovery()'),
        ('current_database', '', 'name', 'pg_catalog.current_database()'),
        ('has_table_privilege', 'u name, r oid, p text', 'boolean', 'pg_catalog.has_table_privilege(u, r, p)'),
        ('texteq', 'a text, b text', 'boolean', 'pg_catalog.texteq(a, b)'),
        ('int8eq', 'a bigint, b bigint', 'boolean', 'pg_catalog.int8eq(a, b)'),
        ('oideq', 'a oid, b oid', 'boolean', 'pg_catalog.oideq(a, b)'),
        ('textcat', 'a text, b text', 'text', 'pg_catalog.textcat(a, b)'),
        ('timestamptz_lt', 'a timestamptz, b timestamptz', 'boolean', 'pg_catalog.timestamptz_lt(a, b)')
      ) AS t(name, args, ret, body)
    LOOP
        EXECUTE format('CREATE FUNCTION public.%I(%s) RETURNS %s LANGUAGE plpgsql SET search_path = pg_catalog AS %L',
                       f.name, f.args, f.ret,
                       format('BEGIN PERFORM rl_test.called(%L); %s; END',
                              f.name, CASE WHEN f.ret LIKE 'SETOF%' THEN 'RETURN QUERY SELECT * FROM ' || f.body
                                           WHEN f.ret = 'void' THEN 'PERFORM ' || f.body || '; RETURN'
                                           ELSE 'RETURN ' || f.body END));
    END LOOP;
END
$plant$;
CREATE OPERATOR public.= (leftarg = text, rightarg = text, function = public.texteq);
CREATE OPERATOR public.= (leftarg = bigint, rightarg = bigint, function = public.int8eq);
CREATE OPERATOR public.= (leftarg = oid, rightarg = oid, function = public.oideq);
CREATE OPERATOR public.|| (leftarg = text, rightarg = text, function = public.textcat);
CREATE OPERATOR public.< (leftarg = timestamptz, rightarg = timestamptz, function = public.timestamptz_lt);

-- The attacker: granted every function (an operator's role, not a
-- superuser), and it puts public before pg_catalog.
CREATE ROLE rl_test_attacker LOGIN;   -- pg_cron runs jobs by logging in
GRANT USAGE ON SCHEMA rl_mlops, cron TO rl_test_attacker;
GRANT SELECT ON ALL TABLES IN SCHEMA rl_mlops TO rl_test_attacker;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA rl_mlops TO rl_test_attacker;
CREATE TABLE rl_test.atk_bars AS SELECT * FROM rl_mlops.synthetic_bars(symbols => 1, bars => 200);
GRANT SELECT ON rl_test.atk_bars TO rl_test_attacker;
CREATE TEMP TABLE atk_ckpt AS SELECT rl_test.checkpoint(70) AS a, rl_test.checkpoint(71) AS b;
GRANT SELECT ON atk_ckpt TO rl_test_attacker;

-- Run a statement as the attacker with search_path = public, pg_catalog:
-- "ok" or "SQLSTATE: message".
CREATE FUNCTION pg_temp.attack(p_sql text)
RETURNS text
LANGUAGE plpgsql SET search_path = pg_catalog
AS $$
DECLARE
    st text;
    msg text;
BEGIN
    EXECUTE 'SET SESSION AUTHORIZATION rl_test_attacker';
    PERFORM pg_catalog.set_config('search_path', 'public, pg_catalog', true);
    PERFORM pg_catalog.set_config('rl_test.attacking', 'on', true);
    EXECUTE p_sql;
    PERFORM pg_catalog.set_config('rl_test.attacking', 'off', true);
    PERFORM pg_catalog.set_config('search_path', 'pg_catalog', true);
    RESET SESSION AUTHORIZATION;
    RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT;
    RESET SESSION AUTHORIZATION;
    RETURN pg_catalog.concat(st, ': ', msg);
END
$$;

SELECT is(pg_temp.attack('SELECT now()'), 'ok', 'the attacker''s own query ...');
SELECT is((SELECT string_agg(fn, ',') FROM rl_test.planted_calls), 'now',
          '... does call the planted now(): the plant works');
DELETE FROM rl_test.planted_calls;

SELECT is(pg_temp.attack(call), 'ok', format('as the attacker: %s', call))
  FROM (VALUES
    (1, $$SELECT rl_mlops.create_agent('atk', 'rl_test.atk_bars')$$),
    (2, $$SELECT rl_mlops.configure('atk', keep_min => 1, retention_days => 0)$$),
    (3, $$SELECT rl_mlops.import_model('atk', a) FROM atk_ckpt$$),
    (4, $$SELECT rl_mlops.import_model('atk', b) FROM atk_ckpt$$),
    (5, $$SELECT rl_mlops.validate_model('atk', version) FROM rl_mlops.models WHERE agent OPERATOR(pg_catalog.=) 'atk'$$),
    (6, $$SELECT rl_mlops.deploy_model('atk', min(version)) FROM rl_mlops.models WHERE agent OPERATOR(pg_catalog.=) 'atk'$$),
    (7, $$SELECT rl_mlops.deploy_model('atk', max(version)) FROM rl_mlops.models WHERE agent OPERATOR(pg_catalog.=) 'atk'$$),
    (8, $$SELECT rl_mlops.rollback('atk')$$),
    (9, $$SELECT rl_mlops.pin_model('atk', max(version)) FROM rl_mlops.models WHERE agent OPERATOR(pg_catalog.=) 'atk'$$),
    (10, $$SELECT rl_mlops.unpin_model('atk', max(version)) FROM rl_mlops.models WHERE agent OPERATOR(pg_catalog.=) 'atk'$$),
    (11, $$SELECT rl_mlops.cleanup_old_models('atk', dry_run => true)$$),
    (12, $$SELECT rl_mlops.cleanup_old_models('atk')$$),
    (13, $$SELECT rl_mlops.export_model('atk')$$),
    (14, $$SELECT rl_mlops.status('atk')$$),
    (15, $$SELECT rl_mlops.metadata('atk')$$),
    (16, $$SELECT rl_mlops.act(array_fill(0.1::real, ARRAY[33]), 'atk')$$),
    (17, $$SELECT rl_mlops.policy(array_fill(0.1::real, ARRAY[33]), 'atk')$$),
    (18, $$SELECT rl_mlops.value(array_fill(0.1::real, ARRAY[33]), 'atk')$$),
    (20, $$SELECT rl_mlops.retrain_due('atk')$$),
    (21, $$SELECT rl_mlops.cancel_retrain('atk')$$),
    (22, $$SELECT * FROM rl_mlops.check_integrity()$$),
    (23, $$SELECT rl_mlops.schedule_retraining('atk')$$),
    (24, $$SELECT rl_mlops.unschedule_retraining('atk')$$),
    (25, $$SELECT count(*) FROM rl_mlops.training_progress$$),
    (26, $$SELECT count(*) FROM rl_mlops.scheduler_status$$)
  ) AS t(ord, call) ORDER BY ord;
SELECT is((SELECT string_agg(DISTINCT fn || ' as ' || as_user || ' from ' || context, ', ') FROM rl_test.planted_calls), NULL,
          'none of the planted functions or operators was called by the registry, lifecycle or scheduling API');
DELETE FROM rl_test.planted_calls;

-- decide() and the backtests read the source relation as the caller: the
-- registry part runs as the owner, the source query as the caller.
SELECT is(pg_temp.attack(call), 'ok', format('as the attacker: %s', call))
  FROM (VALUES
    (1, $$SELECT rl_mlops.decide('atk', 'SYM001')$$),
    (2, $$SELECT rl_mlops.decide('atk', 'SYM001', 'infinity', 0)$$),
    (3, $$SELECT rl_mlops.backtest_summary('atk', 'SYM001', '-infinity', 'infinity')$$),
    (4, $$SELECT count(*) FROM rl_mlops.backtest('atk', 'SYM001', '-infinity', 'infinity')$$)
  ) AS t(ord, call) ORDER BY ord;
SELECT is((SELECT string_agg(DISTINCT fn || ' as ' || as_user, ', ') FROM rl_test.planted_calls
            WHERE as_user <> 'rl_test_attacker'), NULL,
          'no planted function ran with another role''s rights while serving read the source');
SELECT is((SELECT string_agg(DISTINCT fn || ' as ' || as_user || ' from ' || context, ', ') FROM rl_test.planted_calls), NULL,
          'none of the planted functions or operators was called by decide() or the backtests');
SELECT is(pg_temp.attack($$SELECT rl_mlops.drop_agent('atk')$$), 'ok', 'as the attacker: drop_agent');

SELECT is(pg_temp.problems_after('SELECT 1'), '', 'at the end: check_integrity() returns nothing');

SELECT * FROM finish();
ROLLBACK;
