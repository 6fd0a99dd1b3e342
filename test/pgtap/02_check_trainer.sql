-- check_trainer(): a real trainer worker runs libtorch and reports back.
\set ON_ERROR_STOP 1
BEGIN;
SELECT plan(6);

CREATE EXTENSION rl_mlops;
CREATE TEMP TABLE chk AS SELECT * FROM rl_mlops.check_trainer(ppo_updates => 5);

SELECT ok((SELECT ok FROM chk), 'the trainer worker reports ok');
SELECT matches((SELECT libtorch_version FROM chk), '^[0-9]+\.[0-9]+', 'it reports the libtorch version');
SELECT is((SELECT threads_used FROM chk), 1, 'it runs libtorch on the requested thread count');
SELECT cmp_ok((SELECT loss_after FROM chk), '<', (SELECT loss_before FROM chk),
              'five PPO updates lower the loss on their batch');
SELECT cmp_ok((SELECT max_forward_diff FROM chk), '<', 1e-5::float8,
              'libtorch and the C forward pass agree within 1e-5');
SELECT is((SELECT count(*)::int FROM pg_stat_activity WHERE backend_type = 'rl_mlops trainer check'), 0,
          'the worker has exited');

SELECT * FROM finish();
ROLLBACK;
