-- The scheduler's decision (retrain_due / retrain_if_due) and the pg_cron
-- job management, inside one transaction.  Starting a real run from a
-- real pg_cron tick is test/t/050_scheduler.pl.
\set ON_ERROR_STOP 1
BEGIN;
SELECT plan(25);

CREATE EXTENSION rl_mlops;
CREATE TABLE public.sched_bars AS SELECT * FROM rl_mlops.synthetic_bars(symbols => 1, bars => 100);
SELECT lives_ok($$SELECT rl_mlops.create_agent('sched', 'public.sched_bars')$$, 'agent created');

-- Without pg_cron installed in this database: a clear error with the steps.
SELECT throws_ok($$SELECT rl_mlops.schedule_retraining('sched')$$, '0A000',
                 'pg_cron is not installed in database "rl_test"',
                 'scheduling without pg_cron is refused');
SELECT matches((SELECT rl_mlops.status('sched')::text), '"cron_job": null',
               'status works without pg_cron');

-- Never trained: due.
SELECT is(rl_mlops.retrain_due('sched') ->> 'due', 'true', 'an agent never trained is due');
SELECT is(rl_mlops.retrain_due('sched') ->> 'reason', 'never trained', '... because it was never trained');

-- Trained a day ago with a 7-day interval: not due, and says until when.
UPDATE rl_mlops.agents SET last_retrain_time = now() - interval '1 day' WHERE name = 'sched';
SELECT is(rl_mlops.retrain_due('sched') ->> 'due', 'false', 'not due one day after a retrain');
SELECT matches(rl_mlops.retrain_due('sched') ->> 'reason', '^not due until ', '... and says until when');
SELECT is((rl_mlops.retrain_due('sched') ->> 'next_retrain_time')::timestamptz,
          now() + interval '6 days', 'next_retrain_time = last retrain + interval_days');
SELECT is((rl_mlops.retrain_if_due('sched') ->> 'started')::boolean, false,
          'retrain_if_due starts nothing when not due');

-- Exactly due, and long overdue (the server was down): due, once.
UPDATE rl_mlops.agents SET last_retrain_time = now() - interval '7 days' WHERE name = 'sched';
SELECT is(rl_mlops.retrain_due('sched') ->> 'due', 'true', 'due exactly at last retrain + 7 days');
UPDATE rl_mlops.agents SET last_retrain_time = now() - interval '40 days' WHERE name = 'sched';
SELECT is(rl_mlops.retrain_due('sched') ->> 'due', 'true', 'a missed due time is caught up');
SELECT matches(rl_mlops.retrain_due('sched') ->> 'reason', '^due since ', '... saying since when');

-- Paused: configure(scheduler_enabled => false) keeps the schedule.
SELECT lives_ok($$SELECT rl_mlops.configure('sched', scheduler_enabled => false)$$, 'scheduler paused');
SELECT is(rl_mlops.retrain_due('sched') ->> 'reason', 'scheduler disabled', 'a paused scheduler is never due');
SELECT is((rl_mlops.retrain_if_due('sched') ->> 'started')::boolean, false,
          'retrain_if_due starts nothing while paused');
SELECT lives_ok($$SELECT rl_mlops.configure('sched', scheduler_enabled => true)$$, 'scheduler resumed');

-- A run in progress (its worker holds the agent's lock: we take it here).
SELECT pg_advisory_lock(1380732236, hashtext('sched')) AS locked \gset
INSERT INTO rl_mlops.runs (agent, state, started_at) VALUES ('sched', 'training', now());
SELECT matches(rl_mlops.retrain_due('sched') ->> 'reason', '^run [0-9]+ in progress$',
               'never two runs: a run in progress is reported');
SELECT is((rl_mlops.retrain_if_due('sched') ->> 'started')::boolean, false,
          'retrain_if_due starts nothing while a run is in progress');
-- The worker dies (the lock goes away): the run is reaped and the agent is due.
SELECT pg_advisory_unlock(1380732236, hashtext('sched')) AS unlocked \gset
SELECT is(rl_mlops.retrain_due('sched') ->> 'due', 'true', 'due again once the worker is gone');
SELECT results_eq($$SELECT state, error FROM rl_mlops.runs WHERE agent = 'sched'$$,
                  $$VALUES ('failed'::text, 'worker died'::text)$$,
                  'the dead run is marked failed: worker died');

-- With pg_cron: one job per agent, as the scheduling role.
CREATE EXTENSION pg_cron;
SELECT rl_mlops.schedule_retraining('sched', interval_days => 3, check_schedule => '*/5 * * * *') AS job \gset
SELECT is((SELECT jobid FROM cron.job WHERE jobname = 'rl_mlops_retrain_sched'), :job::bigint,
          'schedule_retraining creates the pg_cron job and returns its id');
SELECT is((SELECT schedule || ' | ' || command || ' | ' || username FROM cron.job
            WHERE jobname = 'rl_mlops_retrain_sched') COLLATE "C",
          ('*/5 * * * * | SELECT rl_mlops.retrain_if_due(''sched'') | ' || current_user) COLLATE "C",
          'the job calls retrain_if_due as the role that scheduled it');
SELECT results_eq($$SELECT enabled, interval_days, cron_schedule FROM rl_mlops.scheduler_status WHERE agent = 'sched'$$,
                  $$VALUES (true, 3, '*/5 * * * *'::text)$$,
                  'scheduler_status shows the interval and the job');
SELECT ok(rl_mlops.unschedule_retraining('sched'), 'unschedule_retraining removes the job');
SELECT ok(NOT EXISTS (SELECT 1 FROM cron.job WHERE jobname = 'rl_mlops_retrain_sched')
          AND NOT (SELECT scheduler_enabled FROM rl_mlops.agents WHERE name = 'sched'),
          '... and the scheduler is disabled');

SELECT * FROM finish();
ROLLBACK;
