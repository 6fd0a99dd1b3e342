-- The model registry (issue 3): agents and their settings, import/export,
-- versions, validation, deployment, history, rollback, status() and
-- metadata() in the original service's JSON shapes (ARCHITECTURE.md "Tables", "A training run").
\set ON_ERROR_STOP 1
BEGIN;
SET LOCAL client_min_messages = error;
-- Versions are UTC whatever the session's time zone.
SET LOCAL TimeZone = 'America/New_York';
SELECT plan(156);

CREATE EXTENSION rl_mlops;
\ir helpers/checkpoint.sql

--------------------------------------------------------------------------
-- Agents
--------------------------------------------------------------------------

CREATE TEMP TABLE created AS
SELECT * FROM jsonb_populate_record(NULL::rl_mlops.agents, rl_mlops.create_agent('a', 'rl_test.bars'));
SELECT results_eq(
    $$SELECT name, source, window_size, hidden_size, n_features, initial_epochs, incremental_epochs,
             data_window, retention_days, keep_min, interval_days, learning_rate, deploy_gate
        FROM created$$,
    $$VALUES ('a'::text, 'rl_test.bars'::regclass, 32, 64, 0, 30, 5, interval '30 days', 30, 3, 7,
              3e-4::float8, 'valid'::text)$$,
    'create_agent returns the new agent with the documented defaults');
SELECT is((SELECT created_by FROM rl_mlops.agents WHERE name = 'a'), session_user,
          'the agent records who created it');

SELECT throws_ok($$SELECT rl_mlops.create_agent('a', 'rl_test.bars')$$,
                 '42710', 'agent "a" already exists', 'a second agent of the same name is refused');

-- create_agent: absurd architectures and names, refused by named CHECK constraints
SELECT throws_ok(format('SELECT rl_mlops.create_agent(%L, ''rl_test.bars'', %s)', name, args),
                 '23514', format('new row for relation "agents" violates check constraint "%s"', constraint_name),
                 format('create_agent refuses %s', what))
  FROM (VALUES
    ('w0', 'window_size => 0', 'window_size_between_2_and_1024', 'window 0'),
    ('w1', 'window_size => 1', 'window_size_between_2_and_1024', 'window 1'),
    ('wbig', 'window_size => 100000', 'window_size_between_2_and_1024', 'window 100000'),
    ('h0', 'hidden_size => 0', 'hidden_size_between_2_and_1024', 'hidden size 0'),
    ('hbig', 'hidden_size => 1000000000', 'hidden_size_between_2_and_1024', 'hidden size 10^9'),
    ('', 'window_size => 32', 'name_is_1_to_63_printable_characters', 'an empty name'),
    (repeat('x', 64), 'window_size => 32', 'name_is_1_to_63_printable_characters', 'a 64-character name'),
    (E'bad\nname', 'window_size => 32', 'name_is_1_to_63_printable_characters', 'a name with a newline')
  ) AS t(name, args, constraint_name, what);

-- configure: every absurd value refused at once, naming the constraint
SELECT throws_ok(format('SELECT rl_mlops.configure(''a'', %s => %s)', setting, value),
                 '23514', format('new row for relation "agents" violates check constraint "%s"', constraint_name),
                 format('configure refuses %s => %s', setting, value))
  FROM (VALUES
    ('initial_epochs', '0', 'initial_epochs_between_1_and_10000'),
    ('initial_epochs', '1000000000', 'initial_epochs_between_1_and_10000'),
    ('incremental_epochs', '0', 'incremental_epochs_between_1_and_10000'),
    ('incremental_epochs', '1000000000', 'incremental_epochs_between_1_and_10000'),
    ('learning_rate', '1e308', 'learning_rate_between_1e_8_and_1'),
    ('learning_rate', '0', 'learning_rate_between_1e_8_and_1'),
    ('learning_rate', '''NaN''', 'learning_rate_between_1e_8_and_1'),
    ('learning_rate', '''Infinity''', 'learning_rate_between_1e_8_and_1'),
    ('retention_days', '-1', 'retention_days_between_0_and_36500'),
    ('keep_min', '0', 'keep_min_between_1_and_1000'),
    ('keep_min', '-5', 'keep_min_between_1_and_1000'),
    ('interval_days', '0', 'interval_days_between_1_and_365'),
    ('data_window', '''0 seconds''', 'data_window_between_1_hour_and_100_years'),
    ('data_window', '''-30 days''', 'data_window_between_1_hour_and_100_years'),
    ('holdout_fraction', '0.99', 'holdout_fraction_between_0_05_and_0_5'),
    ('holdout_fraction', '''NaN''', 'holdout_fraction_between_0_05_and_0_5'),
    ('gamma', '0', 'gamma_between_0_and_1'),
    ('gamma', '''NaN''', 'gamma_between_0_and_1'),
    ('gae_lambda', '2', 'gae_lambda_between_0_and_1'),
    ('clip_range', '0', 'clip_range_between_0_and_1'),
    ('episode_length', '0', 'episode_length_between_8_and_100000'),
    ('transaction_cost', '-0.01', 'transaction_cost_between_0_and_0_1'),
    ('update_passes', '0', 'update_passes_between_1_and_100'),
    ('minibatch_size', '1', 'minibatch_size_between_8_and_65536'),
    ('value_coef', '-1', 'value_coef_between_0_and_100'),
    ('entropy_coef', '1e300', 'entropy_coef_between_0_and_10'),
    ('max_grad_norm', '0', 'max_grad_norm_between_0_and_1000'),
    ('seed', '-1', 'seed_not_negative'),
    ('threads', '0', 'threads_between_1_and_64'),
    ('threads', '1000', 'threads_between_1_and_64'),
    ('deploy_gate', '''yolo''', 'deploy_gate_is_valid_not_worse_or_better'),
    ('gate_min_delta', '-1', 'gate_min_delta_between_0_and_100')
  ) AS t(setting, value, constraint_name);

SELECT results_eq(
    $$SELECT initial_epochs, incremental_epochs, learning_rate, retention_days, keep_min, gamma, threads
        FROM rl_mlops.agents WHERE name = 'a'$$,
    $$VALUES (30, 5, 3e-4::float8, 30, 3, 0.99::float8, 1)$$,
    'refused settings left the agent as it was');
SELECT is((SELECT count(*)::int FROM rl_mlops.agents), 1, 'no refused agent was created');

-- configure: NULL keeps a setting, a sane value is stored
SELECT results_eq(
    $$SELECT retention_days, keep_min, incremental_epochs, learning_rate, window_size
        FROM rl_mlops.configure('a', retention_days => 7, keep_min => 5)$$,
    $$VALUES (7, 5, 5, 3e-4::float8, 32)$$,
    'configure changes the named settings and keeps the others');
SELECT is((SELECT retention_days FROM rl_mlops.configure('a', retention_days => 30)), 30,
          'configure can change a setting back');
SELECT is((SELECT keep_min FROM rl_mlops.configure('a', keep_min => 3)), 3, 'keep_min back to 3');

-- the source relation must have the named columns, of usable types
SELECT throws_ok($$SELECT rl_mlops.create_agent('b', 'rl_test.bars', symbol_column => 'ticker')$$,
                 '42703', 'column "ticker" does not exist in relation rl_test.bars',
                 'a source without the symbol column is refused');
SELECT throws_ok($$SELECT rl_mlops.create_agent('b', 'rl_test.bars', time_column => 'at')$$,
                 '42703', 'column "at" does not exist in relation rl_test.bars',
                 'a source without the time column is refused');
SELECT throws_ok($$SELECT rl_mlops.create_agent('b', 'rl_test.bars', price_column => 'close')$$,
                 '42703', 'column "close" does not exist in relation rl_test.bars',
                 'a source without the price column is refused');
SELECT throws_ok($$SELECT rl_mlops.create_agent('b', 'rl_test.bars', features_column => 'feats')$$,
                 '42703', 'column "feats" does not exist in relation rl_test.bars',
                 'a source without the features column is refused');
SELECT throws_ok($$SELECT rl_mlops.create_agent('b', 'rl_test.bars', price_column => 'symbol')$$,
                 '42804', 'column "symbol" of relation rl_test.bars has type text, not a price type',
                 'a text price column is refused');
SELECT throws_ok($$SELECT rl_mlops.create_agent('b', 'rl_test.no_such_table')$$,
                 '42P01', NULL, 'a source that does not exist is refused');
SELECT throws_ok($$SELECT rl_mlops.create_agent('b', 'rl_test.bars', n_features => 3)$$,
                 '22023', 'n_features needs a features column', 'n_features without a features column is refused');
SELECT is((rl_mlops.create_agent('f', 'rl_test.bars', features_column => 'features') ->> 'n_features')::int,
          2, 'n_features is inferred from the features column');
SELECT is((SELECT count(*)::int FROM rl_mlops.agents), 2, 'only the valid agents exist');

-- an unknown agent: 42704 from every function that names one
SELECT throws_ok(format('SELECT rl_mlops.%s', call), '42704', 'agent "nope" does not exist',
                 format('%s of an unknown agent is refused', split_part(call, '(', 1)))
  FROM (VALUES
    ('configure(''nope'', keep_min => 3)'),
    ('import_model(''nope'', rl_test.checkpoint())'),
    ('export_model(''nope'')'),
    ('validate_model(''nope'', ''20250101_000000'')'),
    ('deploy_model(''nope'', ''20250101_000000'')'),
    ('rollback(''nope'')'),
    ('cleanup_old_models(''nope'')'),
    ('pin_model(''nope'', ''20250101_000000'')'),
    ('unpin_model(''nope'', ''20250101_000000'')'),
    ('drop_agent(''nope'')'),
    ('status(''nope'')'),
    ('metadata(''nope'')')
  ) AS t(call);
SELECT throws_ok($$SELECT rl_mlops.export_model('nope', '20250101_000000')$$, '42704',
                 'model version "20250101_000000" of agent "nope" does not exist',
                 'export_model of a version of an unknown agent is refused');

--------------------------------------------------------------------------
-- Import and export
--------------------------------------------------------------------------

CREATE TEMP TABLE ck AS
SELECT 1 AS n, rl_test.checkpoint(1) AS bytes UNION ALL
SELECT 2, rl_test.checkpoint(2, optimizer => true) UNION ALL
SELECT 3, rl_test.checkpoint(3) UNION ALL
SELECT 4, rl_test.checkpoint(4) UNION ALL
SELECT 5, rl_test.checkpoint(5, corrupt => 'huge');
CREATE TEMP TABLE v (n int PRIMARY KEY, version text);
-- agent a's models (agent f may have the same version names)
CREATE TEMP VIEW am AS SELECT * FROM rl_mlops.models WHERE agent = 'a';

SELECT ok(rl_mlops.status('a') #> '{status,model_info}'
          @> jsonb_build_object('current_version', NULL, 'current_path', NULL, 'total_models', 0, 'retention_days', 30),
          'status before any import: no model, every model_info key of the original service present (nulls included)');
SELECT is(rl_mlops.status('a') #> '{status,model_loaded}', 'false'::jsonb, 'status: model_loaded false');

INSERT INTO v SELECT 1, rl_mlops.import_model('a', bytes, training_epochs => 5, training_loss => 0.0234,
                                             metrics => '{"holdout": {"sharpe": 1.5}}')
  FROM ck WHERE n = 1;
SELECT matches((SELECT version FROM v WHERE n = 1), '^[0-9]{8}_[0-9]{6}$',
               'import_model returns a version YYYYMMDD_HHMMSS');
SELECT cmp_ok(abs(extract(epoch FROM to_timestamp((SELECT version FROM v WHERE n = 1), 'YYYYMMDD_HH24MISS')::timestamp
                                   - (clock_timestamp() AT TIME ZONE 'UTC')))::float8,
              '<', 120::float8, 'the version is the current UTC time (session time zone is not UTC)');
SELECT results_eq(
    $$SELECT m.state, m.origin, m.size_bytes, m.sha256, m.file_name, m.training_epochs, m.training_loss,
             m.created_by, m.pinned, m.sigma, m.metrics, m.validation IS NULL, m.deployed_at IS NULL
        FROM am m JOIN v USING (version) JOIN ck USING (n) WHERE n = 1$$,
    $$SELECT 'registered'::text, 'imported'::text, length(bytes)::bigint, encode(sha256(bytes), 'hex'),
             'checkpoint_' || version || '.safetensors', 5, 0.0234::float8, session_user::name, false,
             0.001::float8, '{"holdout": {"sharpe": 1.5}}'::jsonb, true, true
        FROM ck JOIN v USING (n) WHERE n = 1$$,
    'the imported row: registered, size, sha256, file name, epochs, loss, who, sigma, metrics');
SELECT is((SELECT lomowner FROM pg_largeobject_metadata l JOIN am m ON m.checkpoint = l.oid
            JOIN v USING (version) WHERE n = 1),
          (SELECT extowner FROM pg_extension WHERE extname = 'rl_mlops'),
          'the checkpoint is a large object owned by the extension owner');
SELECT ok((SELECT lo_get(checkpoint) FROM am JOIN v USING (version) WHERE n = 1)
          = (SELECT bytes FROM ck WHERE n = 1), 'the large object holds exactly the imported bytes');
SELECT ok(rl_mlops.export_model('a', (SELECT version FROM v WHERE n = 1)) = (SELECT bytes FROM ck WHERE n = 1),
          'export_model returns the imported bytes, byte-identical');

INSERT INTO v SELECT 2, rl_mlops.import_model('a', bytes) FROM ck WHERE n = 2;
SELECT ok(rl_mlops.export_model('a', (SELECT version FROM v WHERE n = 2)) = (SELECT bytes FROM ck WHERE n = 2),
          'a checkpoint with optimizer state round-trips byte-identical');
SELECT isnt((SELECT checkpoint FROM am JOIN v USING (version) WHERE n = 1),
            (SELECT checkpoint FROM am JOIN v USING (version) WHERE n = 2),
            'each version has its own large object');
SELECT throws_ok($$SELECT rl_mlops.export_model('a')$$, 'P0002', 'agent "a" has no active model',
                 'export_model without a version needs an active model');
SELECT throws_ok($$SELECT rl_mlops.export_model('a', '20000101_000000')$$, '42704',
                 'model version "20000101_000000" of agent "a" does not exist',
                 'export_model of an unknown version is refused');
SELECT throws_ok($$SELECT rl_mlops.import_model('a', rl_test.checkpoint(9), parent_version => '20000101_000000')$$,
                 '42704', 'model version "20000101_000000" of agent "a" does not exist',
                 'import_model with an unknown parent version is refused');
SELECT throws_ok($$SELECT rl_mlops.import_model('a', NULL)$$, '22004', 'checkpoint must not be null',
                 'import_model of NULL is refused');
SELECT is((SELECT count(*)::int FROM rl_mlops.models WHERE agent = 'a'), 2, 'refused imports added no row');

-- Versions in the same second get _2, _3: import three in a row until
-- all three fall in one second (a second boundary in between is retried).
CREATE FUNCTION pg_temp.same_second_versions() RETURNS text[] LANGUAGE plpgsql AS $$
DECLARE
    vs text[];
BEGIN
    FOR attempt IN 1..5 LOOP
        vs := ARRAY[rl_mlops.import_model('a', rl_test.checkpoint(30 + attempt)),
                    rl_mlops.import_model('a', rl_test.checkpoint(40 + attempt)),
                    rl_mlops.import_model('a', rl_test.checkpoint(50 + attempt))];
        IF left(vs[1], 15) = left(vs[3], 15) THEN
            RETURN vs;
        END IF;
    END LOOP;
    RETURN vs;
END $$;
CREATE TEMP TABLE triple AS SELECT pg_temp.same_second_versions() AS vs;
CREATE FUNCTION pg_temp.suffix(v text) RETURNS int LANGUAGE sql AS
$$ SELECT coalesce(nullif(split_part(v, '_', 3), '')::int, 1) $$;
SELECT is((SELECT ARRAY[(left(vs[2], 15) = left(vs[1], 15))::int, pg_temp.suffix(vs[2]) - pg_temp.suffix(vs[1]),
                        pg_temp.suffix(vs[3]) - pg_temp.suffix(vs[2]), (vs[2] ~ '_[0-9]+$')::int] FROM triple),
          ARRAY[1, 1, 1, 1],
          'imports in the same second get versions V, V_2, V_3... (consecutive suffixes)');
SELECT is((SELECT array_agg(pg_temp.suffix(version) ORDER BY pg_temp.suffix(version))
             FROM rl_mlops.models, triple WHERE agent = 'a' AND left(version, 15) = left(vs[1], 15)),
          (SELECT array_agg(i) FROM triple, generate_series(1, pg_temp.suffix(vs[3])) i),
          'the versions of that second are V, V_2, ... V_n without gaps');
SELECT ok((SELECT bool_and(file_name = 'checkpoint_' || version || '.safetensors')
             FROM rl_mlops.models, triple WHERE agent = 'a' AND version = ANY (vs)),
          'suffixed versions have matching file names');
SELECT is((SELECT count(DISTINCT version)::int FROM rl_mlops.models WHERE agent = 'a'),
          (SELECT count(*)::int FROM rl_mlops.models WHERE agent = 'a'), 'versions are unique per agent');
SELECT is(rl_mlops.import_model('f', rl_test.checkpoint(1, n_features => 2)) ~ '^[0-9]{8}_[0-9]{6}(_[0-9]+)?$', true,
          'another agent (with features) has its own versions');
SELECT throws_ok($$SELECT rl_mlops.import_model('f', rl_test.checkpoint(1))$$, '22000',
                 'checkpoint architecture does not match the agent',
                 'a checkpoint without the agent''s features is refused');

--------------------------------------------------------------------------
-- Validation
--------------------------------------------------------------------------

CREATE TEMP TABLE val AS SELECT rl_mlops.validate_model('a', (SELECT version FROM v WHERE n = 1)) AS j;
SELECT is((SELECT j -> 'ok' FROM val), 'true'::jsonb, 'validate_model: a good checkpoint is ok');
SELECT is((SELECT array_agg(k ORDER BY k) FROM val, jsonb_object_keys(j -> 'checks') k),
          ARRAY['architecture', 'forward_pass', 'holdout_backtest', 'loads', 'readable'],
          'validation records the four checks of the original service, and an import''s holdout backtest');
SELECT ok((SELECT bool_and((c.value -> 'ok') = 'true'::jsonb AND jsonb_typeof(c.value -> 'message') = 'string')
             FROM val, jsonb_each(j -> 'checks') c),
          'every check records ok and a message');
SELECT matches((SELECT j #>> '{checks,readable,message}' FROM val), 'sha256 matches',
               'the readable check verifies the sha256');
SELECT results_eq(
    $$SELECT state, validation = (SELECT j FROM val), validated_at = now()
        FROM am JOIN v USING (version) WHERE n = 1$$,
    $$VALUES ('validated'::text, true, true)$$,
    'the row is validated and records the checks');

INSERT INTO v SELECT 5, rl_mlops.import_model('a', bytes) FROM ck WHERE n = 5;
CREATE TEMP TABLE val5 AS SELECT rl_mlops.validate_model('a', (SELECT version FROM v WHERE n = 5)) AS j;
SELECT results_eq(
    $$SELECT j -> 'ok', j #> '{checks,readable,ok}', j #> '{checks,loads,ok}', j #> '{checks,architecture,ok}',
             j #> '{checks,forward_pass,ok}', j #>> '{checks,forward_pass,message}' FROM val5$$,
    $$VALUES ('false'::jsonb, 'true'::jsonb, 'true'::jsonb, 'true'::jsonb, 'false'::jsonb,
              'forward pass gives an invalid probability')$$,
    'weights that overflow the forward pass fail only the forward_pass check');
SELECT is((SELECT state FROM am JOIN v USING (version) WHERE n = 5), 'rejected',
          'a version that fails validation is rejected');
SELECT is((rl_mlops.validate_model('a', (SELECT version FROM v WHERE n = 1))) -> 'ok', 'true'::jsonb,
          'validating twice is fine');

--------------------------------------------------------------------------
-- Deployment, history, rollback
--------------------------------------------------------------------------

INSERT INTO v SELECT 3, rl_mlops.import_model('a', bytes) FROM ck WHERE n = 3;
INSERT INTO v SELECT 4, rl_mlops.import_model('a', bytes) FROM ck WHERE n = 4;
DO $$ BEGIN PERFORM rl_mlops.validate_model('a', version) FROM v WHERE n IN (2, 3, 4) ORDER BY n; END $$;

SELECT is(rl_mlops.deploy_model('a', (SELECT version FROM v WHERE n = 1), reason => 'first model'),
          (SELECT version FROM v WHERE n = 1), 'deploy_model returns the deployed version');
SELECT results_eq(
    $$SELECT state, deployed_at = now(), archived_at IS NULL FROM am JOIN v USING (version) WHERE n = 1$$,
    $$VALUES ('active'::text, true, true)$$, 'the deployed version is active');
SELECT results_eq(
    $$SELECT agent, version, previous_version, action, reason, deployed_by, deployed_at = now()
        FROM rl_mlops.deployments ORDER BY id$$,
    $$SELECT 'a'::text, version, NULL::text, 'deploy'::text, 'first model'::text, session_user::name, true
        FROM v WHERE n = 1$$,
    'the deployment records version, no previous, action, why, who and when');

SELECT is(rl_mlops.deploy_model('a', (SELECT version FROM v WHERE n = 2), 'better sharpe'),
          (SELECT version FROM v WHERE n = 2), 'deploying a second version');
SELECT results_eq(
    $$SELECT n, state, archived_at IS NOT DISTINCT FROM now() FROM am JOIN v USING (version) WHERE n IN (1, 2) ORDER BY n$$,
    $$VALUES (1, 'archived'::text, true), (2, 'active'::text, false)$$,
    'the previous active version is archived');
SELECT is((SELECT count(*)::int FROM rl_mlops.models WHERE agent = 'a' AND state = 'active'), 1,
          'exactly one active version per agent');
SELECT throws_ok($$UPDATE rl_mlops.models SET state = 'active' WHERE agent = 'a' AND state = 'archived'$$,
                 '23505', NULL, 'the database itself refuses a second active version');
SELECT results_eq(
    $$SELECT version, previous_version, action, reason FROM rl_mlops.deployments ORDER BY id DESC LIMIT 1$$,
    $$SELECT (SELECT version FROM v WHERE n = 2), (SELECT version FROM v WHERE n = 1), 'deploy'::text,
             'better sharpe'::text$$,
    'the second deployment names the previous version');

SELECT is(rl_mlops.deploy_model('a', (SELECT version FROM v WHERE n = 2)), (SELECT version FROM v WHERE n = 2),
          'deploying the active version again is a no-op');
SELECT is((SELECT count(*)::int FROM rl_mlops.deployments), 2, 'a no-op deploy records nothing');

SELECT is(rl_mlops.deploy_model('a', (SELECT version FROM v WHERE n = 3), 'weekly'),
          (SELECT version FROM v WHERE n = 3), 'deploying a third version');
SELECT ok(rl_mlops.export_model('a') = (SELECT bytes FROM ck WHERE n = 3),
          'export_model without a version returns the active checkpoint');

-- a ROLLBACK of the caller's transaction around deploy changes nothing
CREATE TEMP TABLE before_deploy AS
SELECT version, state, deployed_at, archived_at FROM rl_mlops.models WHERE agent = 'a';
SAVEPOINT caller;
DO $$ BEGIN PERFORM rl_mlops.deploy_model('a', (SELECT version FROM v WHERE n = 4), 'will be rolled back'); END $$;
SELECT is((SELECT state FROM am JOIN v USING (version) WHERE n = 4), 'active',
          'inside the caller''s transaction the new version is active');
ROLLBACK TO SAVEPOINT caller;
SELECT set_eq($$SELECT version, state, deployed_at, archived_at FROM rl_mlops.models WHERE agent = 'a'$$,
              $$SELECT * FROM before_deploy$$,
              'after the caller''s ROLLBACK every model row is as before');
SELECT is((SELECT count(*)::int FROM rl_mlops.deployments), 3, 'and the rolled-back deployment left no history');
SELECT is(rl_mlops.status('a') #>> '{status,model_info,current_version}', (SELECT version FROM v WHERE n = 3),
          'and status names the version active before');

-- the views
SELECT results_eq(
    $$SELECT action, version, previous_version, deployed_by, reason FROM rl_mlops.deployment_history WHERE agent = 'a'$$,
    $$SELECT * FROM (VALUES
        ('deploy'::text, (SELECT version FROM v WHERE n = 3), (SELECT version FROM v WHERE n = 2), session_user::name, 'weekly'::text),
        ('deploy', (SELECT version FROM v WHERE n = 2), (SELECT version FROM v WHERE n = 1), session_user, 'better sharpe'),
        ('deploy', (SELECT version FROM v WHERE n = 1), NULL, session_user, 'first model')) x$$,
    'deployment_history lists who deployed what and why, newest first');
SELECT results_eq(
    $$SELECT agent, version, total_models FROM rl_mlops.current_models$$,
    $$VALUES ('a'::text, (SELECT version FROM v WHERE n = 3), (SELECT count(*) FROM rl_mlops.models WHERE agent = 'a')),
             ('f', NULL, 1::bigint)$$,
    'current_models names each agent''s active version');
SELECT results_eq(
    $$SELECT state, valid, holdout_sharpe, file_name FROM rl_mlops.models_overview JOIN v USING (version) WHERE agent = 'a' AND n IN (1, 5) ORDER BY n$$,
    $$SELECT * FROM (VALUES ('archived'::text, true, 1.5::float8, 'checkpoint_' || (SELECT version FROM v WHERE n = 1) || '.safetensors'),
                            ('rejected', false, NULL, 'checkpoint_' || (SELECT version FROM v WHERE n = 5) || '.safetensors')) x$$,
    'models_overview shows state, validity, holdout Sharpe and file name');

-- rollback: to the version deployed before the current one, repeatedly
SELECT is(rl_mlops.rollback('a', reason => 'bad fills'), (SELECT version FROM v WHERE n = 2),
          'rollback goes back to the previously deployed version');
SELECT results_eq(
    $$SELECT n, state FROM am JOIN v USING (version) WHERE n IN (2, 3) ORDER BY n$$,
    $$VALUES (2, 'active'::text), (3, 'archived'::text)$$,
    'the rolled-back-from version is archived');
SELECT results_eq(
    $$SELECT version, previous_version, action, reason, deployed_by FROM rl_mlops.deployments ORDER BY id DESC LIMIT 1$$,
    $$SELECT (SELECT version FROM v WHERE n = 2), (SELECT version FROM v WHERE n = 3), 'rollback'::text,
             'bad fills'::text, session_user::name$$,
    'the rollback is recorded as a rollback, with who and why');
SELECT is(rl_mlops.rollback('a'), (SELECT version FROM v WHERE n = 1),
          'a second rollback walks further back');
SELECT throws_ok($$SELECT rl_mlops.rollback('a')$$, '55000',
                 'agent "a" has no earlier deployment to roll back to',
                 'rolling back past the first deployment is refused');
SELECT is(rl_mlops.rollback('a', to_version => (SELECT version FROM v WHERE n = 3)), (SELECT version FROM v WHERE n = 3),
          'rollback to a named version');
SELECT is((SELECT action FROM rl_mlops.deployments ORDER BY id DESC LIMIT 1), 'rollback',
          'a rollback to a named version is recorded as a rollback');
SELECT throws_ok(format('SELECT rl_mlops.rollback(''a'', to_version => %L)', (SELECT version FROM v WHERE n = 3)),
                 '55000', format('model version "%s" of agent "a" is already active', (SELECT version FROM v WHERE n = 3)),
                 'rollback to the active version is refused');
SELECT throws_ok($$SELECT rl_mlops.rollback('a', to_version => '20000101_000000')$$, '42704',
                 'cannot roll back agent "a" to version "20000101_000000": it no longer exists',
                 'rollback to an unknown version is refused');
SELECT throws_ok(format('SELECT rl_mlops.rollback(''a'', to_version => %L)', (SELECT vs[1] FROM triple)),
                 '55000', format('model version "%s" of agent "a" has not been validated', (SELECT vs[1] FROM triple)),
                 'rollback to a version never validated is refused');
SELECT throws_ok(format('SELECT rl_mlops.rollback(''a'', to_version => %L)', (SELECT version FROM v WHERE n = 5)),
                 '55000', format('model version "%s" of agent "a" was rejected by validation', (SELECT version FROM v WHERE n = 5)),
                 'rollback to a rejected version is refused');
SELECT is((SELECT version FROM rl_mlops.models WHERE agent = 'a' AND state = 'active'), (SELECT version FROM v WHERE n = 3),
          'refused rollbacks left the active version alone');

--------------------------------------------------------------------------
-- status() and metadata(): the original service's shapes and field names
--------------------------------------------------------------------------

UPDATE rl_mlops.agents SET last_retrain_time = '2025-11-28 15:30:00+00' WHERE name = 'a';
CREATE TEMP TABLE st AS SELECT rl_mlops.status('a') AS j;
SELECT is((SELECT array_agg(k ORDER BY k) FROM st, jsonb_object_keys(j) k), ARRAY['status', 'success'],
          'status(): top-level keys success and status');
SELECT is((SELECT j -> 'success' FROM st), 'true'::jsonb, 'status(): success is true');
SELECT ok((SELECT j -> 'status' ?& ARRAY['model_loaded', 'model_info', 'scheduler'] FROM st),
          'status(): status has model_loaded, model_info, scheduler');
SELECT ok((SELECT j #> '{status,model_info}' ?& ARRAY['current_version', 'current_path', 'total_models', 'retention_days'] FROM st),
          'status(): model_info has current_version, current_path, total_models, retention_days');
SELECT ok((SELECT j #> '{status,scheduler}' ?& ARRAY['enabled', 'is_training', 'last_retrain_time', 'next_retrain_time', 'interval_days'] FROM st),
          'status(): scheduler has enabled, is_training, last_retrain_time, next_retrain_time, interval_days');
SELECT results_eq(
    $$SELECT jsonb_typeof(j #> '{status,model_loaded}'), jsonb_typeof(j #> '{status,model_info}'),
             jsonb_typeof(j #> '{status,model_info,current_version}'), jsonb_typeof(j #> '{status,model_info,current_path}'),
             jsonb_typeof(j #> '{status,model_info,total_models}'), jsonb_typeof(j #> '{status,model_info,retention_days}'),
             jsonb_typeof(j #> '{status,scheduler,enabled}'), jsonb_typeof(j #> '{status,scheduler,is_training}'),
             jsonb_typeof(j #> '{status,scheduler,last_retrain_time}'), jsonb_typeof(j #> '{status,scheduler,next_retrain_time}'),
             jsonb_typeof(j #> '{status,scheduler,interval_days}')
        FROM st$$,
    $$VALUES ('boolean', 'object', 'string', 'string', 'number', 'number', 'boolean', 'boolean', 'string', 'string', 'number')$$,
    'status(): every field has the original service''s JSON type');
SELECT results_eq(
    $$SELECT (j #>> '{status,model_loaded}')::boolean, j #>> '{status,model_info,current_version}',
             j #>> '{status,model_info,current_path}', (j #>> '{status,model_info,total_models}')::int,
             (j #>> '{status,model_info,retention_days}')::int, (j #>> '{status,scheduler,enabled}')::boolean,
             (j #>> '{status,scheduler,is_training}')::boolean, (j #>> '{status,scheduler,last_retrain_time}')::timestamptz,
             (j #>> '{status,scheduler,next_retrain_time}')::timestamptz, (j #>> '{status,scheduler,interval_days}')::int
        FROM st$$,
    $$SELECT true, m.version, format('pg_largeobject:%s/checkpoint_%s.safetensors', m.checkpoint, m.version),
             (SELECT count(*)::int FROM rl_mlops.models WHERE agent = 'a'), 30, false, false,  -- enabled: no pg_cron job
             '2025-11-28 15:30:00+00'::timestamptz, '2025-12-05 15:30:00+00'::timestamptz, 7
        FROM am m JOIN v USING (version) WHERE n = 3$$,
    'status(): the values (version, path, counts, next retrain = last + 7 days)');

CREATE TEMP TABLE md AS SELECT rl_mlops.metadata('a') AS j;
SELECT ok((SELECT j ?& ARRAY['models', 'current_version', 'last_retrain_time', 'next_retrain_time'] FROM md),
          'metadata(): models, current_version, last_retrain_time, next_retrain_time');
SELECT results_eq(
    $$SELECT jsonb_typeof(j -> 'models'), jsonb_array_length(j -> 'models'), j ->> 'current_version',
             (j ->> 'last_retrain_time')::timestamptz, (j ->> 'next_retrain_time')::timestamptz FROM md$$,
    $$SELECT 'array', (SELECT count(*)::int FROM rl_mlops.models WHERE agent = 'a'), (SELECT version FROM v WHERE n = 3),
             '2025-11-28 15:30:00+00'::timestamptz, '2025-12-05 15:30:00+00'::timestamptz$$,
    'metadata(): one entry per model, the current version and the retrain times');
SELECT ok((SELECT bool_and(e ?& ARRAY['version', 'deployed_at', 'source_path', 'active_path', 'training_epochs', 'training_loss'])
             FROM md, jsonb_array_elements(j -> 'models') e),
          'metadata(): every model has version, deployed_at, source_path, active_path, training_epochs, training_loss');
SELECT results_eq(
    $$SELECT jsonb_typeof(e -> 'version'), jsonb_typeof(e -> 'deployed_at'), jsonb_typeof(e -> 'source_path'),
             jsonb_typeof(e -> 'active_path'), jsonb_typeof(e -> 'training_epochs'), jsonb_typeof(e -> 'training_loss')
        FROM md, jsonb_array_elements(j -> 'models') e WHERE e ->> 'version' = (SELECT version FROM v WHERE n = 1)$$,
    $$VALUES ('string', 'string', 'string', 'null', 'number', 'number')$$,
    'metadata(): field types of an archived, deployed-before model');
SELECT results_eq(
    $$SELECT e ->> 'version', e ->> 'active_path' = e ->> 'source_path'
        FROM md, jsonb_array_elements(j -> 'models') e WHERE e ->> 'active_path' IS NOT NULL$$,
    $$SELECT version, true FROM v WHERE n = 3$$,
    'metadata(): only the active model has an active_path, equal to its source_path');
SELECT is((SELECT (e ->> 'training_loss')::float8 FROM md, jsonb_array_elements(j -> 'models') e
            WHERE e ->> 'version' = (SELECT version FROM v WHERE n = 1)), 0.0234::float8,
          'metadata(): training_loss as imported');
SELECT is(rl_mlops.metadata('f') -> 'current_version', 'null'::jsonb,
          'metadata(): current_version is null when nothing is deployed');

--------------------------------------------------------------------------
-- Pins and dropping an agent
--------------------------------------------------------------------------

SELECT is(rl_mlops.pin_model('a', (SELECT version FROM v WHERE n = 1)), true, 'pin_model returns true');
SELECT is((SELECT pinned FROM am JOIN v USING (version) WHERE n = 1), true, 'the version is pinned');
SELECT is(rl_mlops.unpin_model('a', (SELECT version FROM v WHERE n = 1)), false, 'unpin_model returns false');
SELECT is((SELECT pinned FROM am JOIN v USING (version) WHERE n = 1), false, 'the version is unpinned');
SELECT throws_ok($$SELECT rl_mlops.pin_model('a', '20000101_000000')$$, '42704',
                 'model version "20000101_000000" of agent "a" does not exist', 'pinning an unknown version is refused');

CREATE TEMP TABLE a_oids AS SELECT checkpoint FROM rl_mlops.models WHERE agent = 'a';
SELECT is(rl_mlops.drop_agent('a'), jsonb_build_object('agent', 'a', 'models_removed', (SELECT count(*) FROM a_oids)),
          'drop_agent reports the models it removed');
SELECT is((SELECT count(*)::int FROM pg_largeobject_metadata WHERE oid IN (SELECT checkpoint FROM a_oids)), 0,
          'drop_agent unlinks the agent''s large objects');
SELECT results_eq(
    $$SELECT (SELECT count(*) FROM rl_mlops.agents WHERE name = 'a'), (SELECT count(*) FROM rl_mlops.models WHERE agent = 'a'),
             (SELECT count(*) FROM rl_mlops.deployments WHERE agent = 'a')$$,
    $$VALUES (0::bigint, 0::bigint, 0::bigint)$$,
    'drop_agent removes the agent, its models and its history');
SELECT is((SELECT count(*)::int FROM rl_mlops.models WHERE agent = 'f'), 1, 'other agents keep their models');
SELECT is(rl_mlops.drop_all(), 1, 'drop_all drops the remaining agent');
SELECT is((SELECT count(*)::int FROM rl_mlops.models), 0, 'no model row is left');

-- \d+ explains every column of the registry (issue 15)
SELECT is((SELECT array_agg(attname ORDER BY attnum) FROM pg_attribute
            WHERE attrelid = 'rl_mlops.models'::regclass AND attnum > 0 AND NOT attisdropped
              AND col_description(attrelid, attnum) IS NULL),
          NULL, 'every column of rl_mlops.models has a comment');

SELECT * FROM finish();
ROLLBACK;
