-- The extension's objects, privileges and a clean DROP EXTENSION.
\set ON_ERROR_STOP 1
BEGIN;
SELECT plan(9);

CREATE EXTENSION rl_mlops;

SELECT has_schema('rl_mlops', 'schema rl_mlops exists');
SELECT has_function('rl_mlops', 'check_trainer', ARRAY['integer', 'integer'],
                    'check_trainer(integer, integer) exists');
SELECT ok(NOT has_function_privilege('public', 'rl_mlops.check_trainer(integer, integer)', 'EXECUTE'),
          'PUBLIC cannot run check_trainer');
SELECT throws_ok('SELECT * FROM rl_mlops.check_trainer(ppo_updates => 0)',
                 '22023', 'ppo_updates must be between 1 and 1000000',
                 'check_trainer refuses zero updates');
SELECT throws_ok('SELECT * FROM rl_mlops.check_trainer(threads => 100)',
                 '22023', 'threads must be between 1 and 64',
                 'check_trainer refuses 100 threads');

DROP EXTENSION rl_mlops;

SELECT hasnt_schema('rl_mlops', 'DROP EXTENSION removes the schema');
SELECT is((SELECT count(*)::int FROM pg_proc WHERE probin LIKE '%rl_mlops%'), 0,
          'DROP EXTENSION removes every C function');
SELECT is((SELECT count(*)::int FROM pg_largeobject_metadata), 0,
          'no large object is left behind');
SELECT is((SELECT count(*)::int FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE n.nspname = 'rl_mlops'), 0,
          'no relation is left behind');

SELECT * FROM finish();
ROLLBACK;
