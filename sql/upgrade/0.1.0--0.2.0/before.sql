-- rl_mlops 0.1.0 -> 0.2.0, first half: what must change before the 0.2.0
-- install script runs again over 0.1.0 (see sql/upgrade/README.md).
\echo Use "ALTER EXTENSION rl_mlops UPDATE TO '0.2.0'" to load this file. \quit

-- 0.2.0 allows one unfinished run per agent (a unique index) and tracks
-- workers by PID and start time instead of an advisory lock.  Runs whose
-- 0.1.0 worker is gone are failed now, as 0.1.0 would have on its next look.
-- Upgrade with no training run in progress: a 0.1.0 worker still running
-- is reported as dead by 0.2.0 once its run row is looked at again.
UPDATE rl_mlops.runs
   SET state = 'failed', error = 'worker died', finished_at = pg_catalog.now()
 WHERE rl_mlops._run_unfinished(state)
   AND NOT rl_mlops._run_lock_held(agent);

-- _cron_job_name(agent) gains a kind ('retrain' or 'monitor', default
-- 'retrain'): the one-argument version would make its calls ambiguous.
DROP FUNCTION rl_mlops._cron_job_name(text);

-- synthetic_bars() gains volatility clustering and fat tails (three
-- arguments with defaults): the seven-argument version would make every
-- call ambiguous.  It is executable by PUBLIC in both versions.
DROP FUNCTION rl_mlops.synthetic_bars(integer, integer, double precision, double precision,
                                      timestamptz, interval, double precision);

-- create_agent() returns the agent's settings as jsonb, not a row: a
-- function's result type cannot be replaced.  Renamed here, so that the
-- install script creates the new one; after.sql gives its grants to the
-- new one and drops it.
ALTER FUNCTION rl_mlops.create_agent(text, regclass, name, name, name, name, integer, integer, integer)
    RENAME TO _create_agent_0_1_0;

-- backtest_summary() gains sharpe_stderr, low_sample and in_sample (OUT
-- columns at the end): a function's result type cannot be replaced.  It is
-- executable by PUBLIC in both versions.
DROP FUNCTION rl_mlops.backtest_summary(text, text, timestamptz, timestamptz, text);
