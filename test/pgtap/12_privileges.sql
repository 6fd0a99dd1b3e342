-- Privileges (ARCHITECTURE.md README "Security", issue 3): real roles.  A reader reads
-- status, metadata and the views but cannot change anything; EXECUTE on
-- one mutating function is enough for that function; checkpoints belong
-- to the extension owner; SECURITY DEFINER functions pin search_path.
\set ON_ERROR_STOP 1
BEGIN;
SET LOCAL client_min_messages = error;
SELECT plan(72);

CREATE EXTENSION rl_mlops;
\ir helpers/checkpoint.sql

-- An agent with an active model (v1) and a validated one (v2), as the owner.
SELECT lives_ok($$SELECT rl_mlops.create_agent('p', 'rl_test.bars')$$, 'agent p');
CREATE TEMP TABLE v AS
SELECT 1 AS n, rl_test.add_model('p', 1, p_deploy => true) AS version UNION ALL
SELECT 2, rl_test.add_model('p', 2);
GRANT SELECT ON v TO PUBLIC;
CREATE TEMP TABLE base AS SELECT rl_test.snapshot('p') AS s;

CREATE ROLE rl_test_reader;
GRANT USAGE ON SCHEMA rl_mlops TO rl_test_reader;
GRANT SELECT ON ALL TABLES IN SCHEMA rl_mlops TO rl_test_reader;
CREATE ROLE rl_test_deployer;
GRANT USAGE ON SCHEMA rl_mlops TO rl_test_deployer;
GRANT EXECUTE ON FUNCTION rl_mlops.deploy_model(text, text, text) TO rl_test_deployer;
CREATE ROLE rl_test_importer;
GRANT USAGE ON SCHEMA rl_mlops TO rl_test_importer;
GRANT EXECUTE ON FUNCTION rl_mlops.import_model(text, bytea, integer, double precision, jsonb, text, double precision) TO rl_test_importer;
CREATE ROLE rl_test_creator;
GRANT USAGE ON SCHEMA rl_mlops TO rl_test_creator;
GRANT EXECUTE ON FUNCTION rl_mlops.create_agent(text, regclass, name, name, name, name, integer, integer, integer)
    TO rl_test_creator;
CREATE ROLE rl_test_nobody;
-- Internal helpers that status() and the scheduling functions (SECURITY
-- INVOKER) call, so their callers must be able to run them; each is
-- harmless on its own (30_training.sql, 50_scheduler.sql, 70_monitoring.sql).
CREATE TEMP TABLE rl_test_read_path AS
SELECT ARRAY['_agent', '_run_unfinished', '_worker_alive', '_cron_job_if_granted', '_cron_job_name', '_require_pg_cron', '_monitoring_status', '_check_cron_scheduler', '_unschedule_cron_job', '_dashboard_data', '_dashboard_page', '_chart_js', '_holdout_loss', '_has_cron_job']::name[] AS read_path;
GRANT SELECT ON rl_test_read_path TO PUBLIC;
CREATE TABLE rl_test.private_bars (symbol text, ts timestamptz, price float8);
REVOKE ALL ON rl_test.private_bars FROM PUBLIC;

--------------------------------------------------------------------------
-- The reader
--------------------------------------------------------------------------

SELECT is(rl_test.as_role('rl_test_reader', $$SELECT rl_mlops.status('p') #>> '{status,model_info,current_version}'$$),
          'ok: ' || (SELECT version FROM v WHERE n = 1), 'the reader can read status()');
SELECT is(rl_test.as_role('rl_test_reader', $$SELECT jsonb_array_length(rl_mlops.metadata('p') -> 'models')$$),
          'ok: 2', 'the reader can read metadata()');
SELECT is(rl_test.as_role('rl_test_reader', $$SELECT count(*) FROM rl_mlops.models_overview$$),
          'ok: 2', 'the reader can read models_overview');
SELECT is(rl_test.as_role('rl_test_reader', $$SELECT count(*) FROM rl_mlops.deployment_history$$),
          'ok: 1', 'the reader can read deployment_history');
SELECT is(rl_test.as_role('rl_test_reader', $$SELECT version FROM rl_mlops.current_models WHERE agent = 'p'$$),
          'ok: ' || (SELECT version FROM v WHERE n = 1), 'the reader can read current_models');
SELECT is(rl_test.as_role('rl_test_reader', $$SELECT count(*) FROM rl_mlops.runs$$),
          'ok: 0', 'the reader can read runs');

SELECT is(rl_test.as_role('rl_test_reader', format('SELECT rl_mlops.%s', call)),
          format('42501: permission denied for function %s', split_part(call, '(', 1)),
          format('the reader cannot run %s', split_part(call, '(', 1)))
  FROM (VALUES
    ('create_agent(''x'', ''rl_test.bars'')'),
    ('configure(''p'', keep_min => 1)'),
    ('import_model(''p'', rl_test.checkpoint(3))'),
    ('export_model(''p'')'),
    ('validate_model(''p'', (SELECT version FROM v WHERE n = 2))'),
    ('deploy_model(''p'', (SELECT version FROM v WHERE n = 2))'),
    ('rollback(''p'')'),
    ('cleanup_old_models(''p'')'),
    ('cleanup_old_models(''p'', dry_run => true)'),
    ('pin_model(''p'', (SELECT version FROM v WHERE n = 1))'),
    ('unpin_model(''p'', (SELECT version FROM v WHERE n = 1))'),
    ('drop_agent(''p'')'),
    ('drop_all()'),
    ('check_trainer()'),
    ('_store_checkpoint(rl_test.checkpoint(3), 32, 0, 64)'),
    ('_read_checkpoint((SELECT checkpoint FROM rl_mlops.models LIMIT 1), '''')'),
    ('_validate_checkpoint((SELECT checkpoint FROM rl_mlops.models LIMIT 1), '''', 32, 0, 64, 0.001)'),
    ('_network_checkpoint(rl_test.checkpoint(3), 32, 0, 64, 0.001, ''20260101_000000'')'),
    ('_judge_imported(''p'', (SELECT version FROM v WHERE n = 1), NULL)'),
    ('_invalidate_serving()'),
    ('_lock_agent(''p'')'),
    ('_model(''p'', (SELECT version FROM v WHERE n = 1))'),
    ('_new_version(''p'')'),
    ('_check_source_column(''rl_test.bars'', ''price'', ''price'', NULL)'),
    ('_activate(a, m, ''deploy'', NULL) FROM rl_mlops.agents a, rl_mlops.models m LIMIT 1'),
    ('_on_drop_extension()')
  ) AS t(call);

SELECT is((SELECT array_agg(p.oid::regprocedure::text ORDER BY 1) FROM pg_proc p
            WHERE p.pronamespace = 'rl_mlops'::regnamespace AND p.proname LIKE '\_%'
              AND has_function_privilege('rl_test_reader', p.oid, 'EXECUTE')
              AND p.proname NOT IN (SELECT unnest(read_path) FROM rl_test_read_path)),
          NULL, 'no underscore-internal function is executable by the reader (but those status() itself calls)');
-- Functions PUBLIC may run: the documented reading ones, and the internal
-- helpers status() calls with the reader's rights (README "Security").  A new
-- function that shows up here must be revoked or added here on purpose.
SELECT is((SELECT array_agg(p.oid::regprocedure::text ORDER BY 1) FROM pg_proc p
            WHERE p.pronamespace = 'rl_mlops'::regnamespace
              AND has_function_privilege('public', p.oid, 'EXECUTE')
              AND p.proname NOT IN ('status', 'metadata', 'act', 'policy', 'value', 'decide', 'backtest',
                                    'synthetic_bars')
              AND p.proname NOT IN (SELECT unnest(read_path) FROM rl_test_read_path)),
          NULL, 'PUBLIC can execute no function of rl_mlops except the reading ones');
SELECT ok(NOT has_function_privilege('public', p.oid, 'EXECUTE'),
          format('PUBLIC cannot execute %s', p.oid::regprocedure))
  FROM pg_proc p
 WHERE p.oid IN ('rl_mlops._store_checkpoint(bytea, integer, integer, integer, double precision)'::regprocedure,
                 'rl_mlops._network_checkpoint(bytea, integer, integer, integer, double precision, text)'::regprocedure,
                 'rl_mlops._judge_imported(text, text, text)'::regprocedure,
                 'rl_mlops._read_checkpoint(oid, text)'::regprocedure,
                 'rl_mlops._validate_checkpoint(oid, text, integer, integer, integer, double precision)'::regprocedure,
                 'rl_mlops._invalidate_serving()'::regprocedure,
                 'rl_mlops._lock_agent(text)'::regprocedure,
                 'rl_mlops._model(text, text)'::regprocedure,
                 'rl_mlops._new_version(text)'::regprocedure,
                 'rl_mlops._activate(rl_mlops.agents, rl_mlops.models, text, text)'::regprocedure,
                 'rl_mlops._on_drop_extension()'::regprocedure)
 ORDER BY p.proname;

SELECT is(rl_test.as_role('rl_test_reader', format('SELECT lo_get(%s)', checkpoint)),
          format('42501: permission denied for large object %s', checkpoint),
          'the reader cannot read a checkpoint large object directly')
  FROM rl_mlops.models m JOIN v USING (version) WHERE m.agent = 'p' AND n = 1;
SELECT is(rl_test.as_role('rl_test_reader', format('SELECT lo_unlink(%s)', checkpoint)),
          format('42501: must be owner of large object %s', checkpoint),
          'the reader cannot unlink a checkpoint large object')
  FROM rl_mlops.models m JOIN v USING (version) WHERE m.agent = 'p' AND n = 1;
SELECT is(rl_test.as_role('rl_test_reader', $$UPDATE rl_mlops.models SET state = 'active' WHERE false RETURNING 1$$),
          '42501: permission denied for table models', 'the reader cannot write the registry tables');
SELECT is(rl_test.as_role('rl_test_reader', $$INSERT INTO rl_mlops.deployments (agent, version, action) VALUES ('p', 'x', 'deploy') RETURNING 1$$),
          '42501: permission denied for table deployments', 'the reader cannot forge deployment history');
SELECT is(rl_test.snapshot('p'), (SELECT s FROM base), 'the reader changed nothing');

SELECT is(rl_test.as_role('rl_test_nobody', $$SELECT rl_mlops.status('p')$$),
          '42501: permission denied for schema rl_mlops', 'a role without the documented GRANTs cannot read status');

--------------------------------------------------------------------------
-- EXECUTE on one function is enough for that function, and no more
--------------------------------------------------------------------------

SELECT is(rl_test.as_role('rl_test_deployer', format('SELECT rl_mlops.deploy_model(''p'', %L, ''granted deploy'')',
                                                       (SELECT version FROM v WHERE n = 2))),
          'ok: ' || (SELECT version FROM v WHERE n = 2), 'a role granted EXECUTE on deploy_model can deploy');
SELECT results_eq(
    $$SELECT version, previous_version, action, reason, deployed_by FROM rl_mlops.deployments ORDER BY id DESC LIMIT 1$$,
    $$SELECT (SELECT version FROM v WHERE n = 2), (SELECT version FROM v WHERE n = 1), 'deploy'::text,
             'granted deploy'::text, 'rl_test_deployer'::name$$,
    'the history records the deploying role as who');
SELECT is(rl_test.as_role('rl_test_deployer', $$SELECT rl_mlops.rollback('p')$$),
          '42501: permission denied for function rollback', 'but it cannot roll back');
SELECT is(rl_test.as_role('rl_test_deployer', $$SELECT rl_mlops.status('p')$$),
          '42501: permission denied for table agents', 'nor read status without SELECT on the tables');

SELECT is(rl_test.as_role('rl_test_importer', $$SELECT rl_mlops.import_model('p', rl_test.checkpoint(4))$$) ~ '^ok: [0-9]{8}_[0-9]{6}',
          true, 'a role granted EXECUTE on import_model can import');
CREATE TEMP TABLE imported AS
SELECT m.version, m.created_by, l.lomowner, m.checkpoint FROM rl_mlops.models m
  JOIN pg_largeobject_metadata l ON l.oid = m.checkpoint
 WHERE m.agent = 'p' AND m.version NOT IN (SELECT version FROM v);
SELECT is((SELECT created_by FROM imported), 'rl_test_importer'::name, 'the model records the importing role');
SELECT is((SELECT lomowner FROM imported), (SELECT extowner FROM pg_extension WHERE extname = 'rl_mlops'),
          'its large object belongs to the extension owner, not to the importer');
SELECT isnt((SELECT lomowner FROM imported), 'rl_test_importer'::regrole::oid, 'the importer does not own it');
SELECT is(rl_test.as_role('rl_test_importer', format('SELECT lo_get(%s)', (SELECT checkpoint FROM imported))),
          format('42501: permission denied for large object %s', (SELECT checkpoint FROM imported)),
          'the importer cannot read the large object directly');
SELECT is(rl_test.as_role('rl_test_importer', format('SELECT rl_mlops.validate_model(''p'', %L)', (SELECT version FROM imported))),
          '42501: permission denied for function validate_model', 'nor validate it');
SELECT ok((SELECT bool_and(l.lomowner = e.extowner) FROM rl_mlops.models m
             JOIN pg_largeobject_metadata l ON l.oid = m.checkpoint, pg_extension e
            WHERE e.extname = 'rl_mlops'),
          'every checkpoint large object belongs to the extension owner');

SELECT is(rl_test.as_role('rl_test_creator', $$SELECT rl_mlops.create_agent('c1', 'rl_test.private_bars') ->> 'name'$$),
          '42501: permission denied for relation rl_test.private_bars',
          'create_agent refuses a source the caller cannot read');
GRANT SELECT ON rl_test.private_bars TO rl_test_creator;
SELECT is(rl_test.as_role('rl_test_creator', $$SELECT rl_mlops.create_agent('c1', 'rl_test.private_bars') ->> 'name'$$),
          'ok: c1', 'with SELECT on the source it can create the agent');
SELECT is((SELECT created_by FROM rl_mlops.agents WHERE name = 'c1'), 'rl_test_creator'::name,
          'the agent records the creating role');
SELECT is(rl_test.as_role('rl_test_creator', $$SELECT rl_mlops.configure('c1', keep_min => 5)$$),
          '42501: permission denied for function configure', 'creating does not grant configuring');

--------------------------------------------------------------------------
-- SECURITY DEFINER hygiene
--------------------------------------------------------------------------

SELECT is((SELECT array_agg(p.proname::text ORDER BY p.proname) FROM pg_proc p
            WHERE p.pronamespace = 'rl_mlops'::regnamespace AND p.prosecdef
              AND NOT coalesce(p.proconfig @> ARRAY['search_path=pg_catalog, pg_temp'], false)),
          NULL, 'every SECURITY DEFINER function sets search_path = pg_catalog, pg_temp');
SELECT cmp_ok((SELECT count(*)::int FROM pg_proc p WHERE p.pronamespace = 'rl_mlops'::regnamespace AND p.prosecdef),
              '>=', 11, 'and there are SECURITY DEFINER functions to check (the mutating API)');
SELECT is((SELECT array_agg(p.proname::text ORDER BY p.proname) FROM pg_proc p
            WHERE p.pronamespace = 'rl_mlops'::regnamespace AND p.prosecdef
              AND p.proname IN ('status', 'metadata', '_store_checkpoint', '_read_checkpoint',
                                '_validate_checkpoint', '_network_checkpoint', '_judge_imported', '_invalidate_serving',
                                '_on_drop_extension')),
          NULL, 'reading and internal C functions are not SECURITY DEFINER');
SELECT is((SELECT array_agg(p.proname::text ORDER BY p.proname) FROM pg_proc p
            WHERE p.pronamespace = 'rl_mlops'::regnamespace AND p.prosecdef
              AND p.proname IN ('create_agent', 'configure', 'import_model', 'export_model', 'validate_model',
                                'deploy_model', 'rollback', 'cleanup_old_models', 'pin_model', 'drop_agent', 'drop_all')),
          ARRAY['cleanup_old_models', 'configure', 'deploy_model', 'drop_agent', 'drop_all',
                'export_model', 'import_model', 'pin_model', 'rollback', 'validate_model'],
          'the mutating API is SECURITY DEFINER (so callers need no rights on the tables or large objects)');
-- create_agent reads the source as its caller (counting features), so it
-- is C that switches to the owner only for the registry's checks and insert
SELECT is((SELECT p.prosecdef::text || ' ' || l.lanname::text FROM pg_proc p
            JOIN pg_language l ON l.oid = p.prolang
            WHERE p.oid = 'rl_mlops.create_agent(text, regclass, name, name, name, name, integer, integer, integer)'::regprocedure),
          'false c', 'create_agent is C, not SECURITY DEFINER: it reads the source as its caller');

SELECT * FROM finish();
ROLLBACK;
