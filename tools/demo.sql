-- make demo: what a user does first, on a throwaway cluster.
\echo '== CREATE EXTENSION'
CREATE EXTENSION pg_cron;
CREATE EXTENSION rl_mlops;

\echo '== the trainer path: a background worker runs libtorch'
SELECT * FROM rl_mlops.check_trainer(ppo_updates => 3);
