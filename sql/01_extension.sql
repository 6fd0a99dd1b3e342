-- The extension installs into schema rl_mlops and uninstalls cleanly.
CREATE EXTENSION rl_mlops;
SELECT extname, extversion, nspname
  FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
 WHERE extname = 'rl_mlops';

-- Argument checks of check_trainer() happen before any worker starts.
SELECT * FROM rl_mlops.check_trainer(ppo_updates => 0);
SELECT * FROM rl_mlops.check_trainer(threads => 0);
SELECT * FROM rl_mlops.check_trainer(threads => 65);

-- Mutating and diagnostic functions are not for PUBLIC.
SELECT has_function_privilege('public', 'rl_mlops.check_trainer(integer, integer)', 'EXECUTE');

DROP EXTENSION rl_mlops;
SELECT count(*) AS schemas_left FROM pg_namespace WHERE nspname = 'rl_mlops';
SELECT count(*) AS functions_left FROM pg_proc WHERE probin LIKE '%rl_mlops%';
