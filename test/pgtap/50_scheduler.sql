-- The scheduler's decision (retrain_due / retrain_if_due) and the pg_cron
-- job management, inside one transaction.  Starting a real run from a
-- real pg_cron tick is test/t/050_scheduler.pl.
\set ON_ERROR_STOP 1
BEGIN;
SELECT plan(36);

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

-- A run in progress: its worker is a live process (this backend, here).
INSERT INTO rl_mlops.runs (agent, state, started_at, worker_pid, worker_started_at)
SELECT 'sched', 'training', now(), pid, backend_start
  FROM pg_stat_activity WHERE pid = pg_backend_pid();
SELECT matches(rl_mlops.retrain_due('sched') ->> 'reason', '^run [0-9]+ in progress$',
               'never two runs: a run in progress is reported');
SELECT is((rl_mlops.retrain_if_due('sched') ->> 'started')::boolean, false,
          'retrain_if_due starts nothing while a run is in progress');
-- The worker dies (the process recorded, this PID started at another
-- time, is gone): the run is reaped and the agent is due.
UPDATE rl_mlops.runs SET worker_started_at = worker_started_at - interval '1 second'
 WHERE agent = 'sched';
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

-- pg_cron logs in as a job's role: a NOLOGIN role cannot schedule.
CREATE ROLE rl_test_nologin_ops;
GRANT USAGE ON SCHEMA rl_mlops, cron TO rl_test_nologin_ops;
GRANT EXECUTE ON FUNCTION rl_mlops.schedule_retraining(text, integer, text),
                          rl_mlops.configure(text, integer, integer, interval, double precision, integer,
                                             double precision, double precision, double precision,
                                             double precision, double precision, integer, integer,
                                             double precision, double precision, double precision, bigint,
                                             integer, integer, integer, boolean, integer, text,
                                             double precision, integer, boolean, double precision,
                                             integer, double precision, interval, interval, integer, boolean,
                                             boolean, text, double precision)
   TO rl_test_nologin_ops;
SET ROLE rl_test_nologin_ops;
SELECT throws_ok($$SELECT rl_mlops.schedule_retraining('sched')$$, '28000',
                 'role "rl_test_nologin_ops" cannot log in, so pg_cron cannot run its jobs',
                 'a NOLOGIN role cannot schedule: its job would fail at every tick');
RESET ROLE;
SELECT ok(NOT EXISTS (SELECT 1 FROM cron.job WHERE jobname = 'rl_mlops_retrain_sched'), '... and no job was made');

-- The job's last run is shown; drop_agent removes the job with the agent,
-- and a job left without its agent is an integrity problem.
SELECT rl_mlops.schedule_retraining('sched', check_schedule => '0 3 * * *') AS job \gset
INSERT INTO cron.job_run_details (jobid, runid, job_pid, database, username, command, status,
                                  return_message, start_time, end_time)
VALUES (:job, 1, 0, current_database(), current_user, 'x', 'failed', 'connection failed', now(), now());
SELECT results_eq($$SELECT cron_last_status, cron_last_message FROM rl_mlops.scheduler_status WHERE agent = 'sched'$$,
                  $$VALUES ('failed'::text, 'connection failed'::text)$$,
                  'scheduler_status shows how the last pg_cron run of the job went');
SELECT is(rl_mlops.status('sched') #>> '{status,scheduler,cron_job,last_run_message}', 'connection failed',
          '... and so does status()');
-- Monitoring on a schedule: its own job, beside the retraining one.
SELECT rl_mlops.schedule_monitoring('sched', schedule => '*/2 * * * *') AS monjob \gset
SELECT is((SELECT jobname || ' | ' || schedule || ' | ' || command FROM cron.job WHERE jobid = :monjob) COLLATE "C",
          'rl_mlops_monitor_sched | */2 * * * * | SELECT rl_mlops.monitor(''sched'')' COLLATE "C",
          'schedule_monitoring creates a job that calls monitor()');
SELECT is(rl_mlops.status('sched') #>> '{status,monitoring,cron_job,schedule}', '*/2 * * * *',
          'status() shows the monitoring job');
SELECT ok(rl_mlops.unschedule_monitoring('sched'), 'unschedule_monitoring removes it');
SELECT ok(NOT EXISTS (SELECT 1 FROM cron.job WHERE jobid = :monjob), '... from cron.job');
SELECT rl_mlops.schedule_monitoring('sched') AS monjob \gset
SELECT lives_ok($$SELECT rl_mlops.drop_agent('sched')$$, 'drop_agent with a scheduled job');
SELECT ok(NOT EXISTS (SELECT 1 FROM cron.job WHERE jobid IN (:job, :monjob)),
          'drop_agent removed the agent''s pg_cron jobs, retraining and monitoring');
SELECT cron.schedule('rl_mlops_retrain_gone', '0 3 * * *', 'SELECT rl_mlops.retrain_if_due(''gone'')') AS orphan \gset
SELECT is((SELECT string_agg(kind || ' ' || object, '; ') FROM rl_mlops.check_integrity()),
          'orphan_cron_job job ' || :orphan, 'check_integrity() reports a job whose agent is gone');

SELECT * FROM finish();
ROLLBACK;
