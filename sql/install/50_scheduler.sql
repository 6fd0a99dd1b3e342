--------------------------------------------------------------------------
-- Scheduled retraining with pg_cron (ARCHITECTURE.md "A training run")
--
-- pg_cron only calls SQL: a job per agent runs retrain_if_due(agent) every
-- check_schedule (hourly by default; "check" itself is a reserved word), which starts a run when the scheduler is
-- enabled, now() >= next_retrain_time (= last_retrain_time +
-- interval_days) and no run is in progress.  A tick missed while the server
-- was down is caught up by the next one; the agent's run lock means two
-- ticks can never start two runs.  rl_mlops works without pg_cron; only
-- these scheduling functions need it.
--------------------------------------------------------------------------

-- The pg_cron job name of an agent (job names are of type name: 63 bytes).
-- p_kind: 'retrain' (schedule_retraining) or 'monitor' (schedule_monitoring).
CREATE OR REPLACE FUNCTION rl_mlops._cron_job_name(p_agent text, p_kind text DEFAULT 'retrain')
RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE WHEN octet_length('rl_mlops_' || p_kind || '_' || p_agent) <= 63
                THEN 'rl_mlops_' || p_kind || '_' || p_agent
                ELSE 'rl_mlops_' || p_kind || '_' || md5(p_agent) END
$$;

-- Refuse, with the steps to fix it, when pg_cron is not usable here.
CREATE OR REPLACE FUNCTION rl_mlops._require_pg_cron()
RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_extension WHERE extname = 'pg_cron') THEN
        RAISE EXCEPTION 'pg_cron is not installed in database "%"', current_database()
            USING ERRCODE = 'feature_not_supported',
                  DETAIL = 'Scheduled retraining creates a pg_cron job; rl_mlops itself does not need pg_cron.',
                  HINT = format('Set shared_preload_libraries = ''pg_cron'' and cron.database_name = %L '
                                'in postgresql.conf, restart, then run CREATE EXTENSION pg_cron. '
                                'Without pg_cron, call rl_mlops.retrain_if_due() from any scheduler.',
                                current_database());
    END IF;
END
$$;

-- An agent's pg_cron job and how its last run went (cron.job_run_details).
DO $$
BEGIN
    IF pg_catalog.to_regtype('rl_mlops.cron_job_info') IS NULL THEN
        CREATE TYPE rl_mlops.cron_job_info AS (
            jobid bigint, schedule text, active boolean, username text,
            last_run_status text, last_run_message text, last_run_at timestamptz);
    END IF;
END
$$;

-- The agent's pg_cron job, if pg_cron is installed and the job exists.
-- SECURITY DEFINER to see every role's jobs; not granted to PUBLIC (it
-- tells which agents are scheduled): GRANT it to readers of
-- scheduler_status (see the README).
CREATE OR REPLACE FUNCTION rl_mlops.cron_job(agent text, kind text DEFAULT 'retrain')
RETURNS rl_mlops.cron_job_info
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    j rl_mlops.cron_job_info;
BEGIN
    IF EXISTS (SELECT 1 FROM pg_catalog.pg_extension WHERE extname = 'pg_cron') THEN
        EXECUTE 'SELECT jobid, schedule, active, username::text FROM cron.job WHERE jobname = $1'
           INTO j.jobid, j.schedule, j.active, j.username
          USING rl_mlops._cron_job_name(cron_job.agent, cron_job.kind);
        IF j.jobid IS NOT NULL THEN
            EXECUTE 'SELECT status, return_message, start_time FROM cron.job_run_details'
                    ' WHERE jobid = $1 ORDER BY runid DESC LIMIT 1'
               INTO j.last_run_status, j.last_run_message, j.last_run_at
              USING j.jobid;
        END IF;
    END IF;
    RETURN j;
END
$$;

-- cron_job() for the views and status(), which PUBLIC may call: NULL for
-- a role that may not execute cron_job().
CREATE OR REPLACE FUNCTION rl_mlops._cron_job_if_granted(p_agent text, p_kind text DEFAULT 'retrain')
RETURNS rl_mlops.cron_job_info
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF pg_catalog.has_function_privilege('rl_mlops.cron_job(text, text)', 'EXECUTE') THEN
        RETURN rl_mlops.cron_job(p_agent, p_kind);
    END IF;
    RETURN NULL;
END
$$;

-- Whether the agent has a pg_cron job of a kind; NULL when the caller may
-- not look (no EXECUTE on cron_job).  "enabled" in scheduler_status and
-- status() is the setting and such a job: a setting on with no job starts
-- nothing.
CREATE OR REPLACE FUNCTION rl_mlops._has_cron_job(p_agent text, p_kind text DEFAULT 'retrain')
RETURNS boolean
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE WHEN pg_catalog.has_function_privilege('rl_mlops.cron_job(text, text)', 'EXECUTE')
                THEN (rl_mlops._cron_job_if_granted(p_agent, p_kind)).jobid IS NOT NULL END
$$;

-- Pause, resume or change the interval of an agent's scheduled
-- retraining, and nothing else: what (un)schedule_retraining set, so that
-- an operator may schedule without EXECUTE on configure() and every
-- setting it changes.
CREATE OR REPLACE FUNCTION rl_mlops.set_scheduler(agent text, enabled boolean DEFAULT NULL,
                                                  interval_days integer DEFAULT NULL)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    a rl_mlops.agents := rl_mlops._lock_agent(set_scheduler.agent);
BEGIN
    UPDATE rl_mlops.agents
       SET scheduler_enabled = coalesce(set_scheduler.enabled, scheduler_enabled),
           interval_days = coalesce(set_scheduler.interval_days, agents.interval_days)
     WHERE name = a.name
    RETURNING * INTO a;
    RETURN jsonb_build_object('agent', a.name, 'enabled', a.scheduler_enabled,
                              'interval_days', a.interval_days);
END
$$;

-- Remove the agent's pg_cron job of a kind; true if there was one.  As
-- the owner (drop_agent) any role's job; as another caller (the unschedule
-- functions) pg_cron itself refuses another role's job unless superuser.
CREATE OR REPLACE FUNCTION rl_mlops._unschedule_cron_job(p_agent text, p_kind text DEFAULT 'retrain')
RETURNS boolean
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    job bigint := (rl_mlops.cron_job(p_agent, p_kind)).jobid;
    removed boolean := false;
BEGIN
    IF job IS NOT NULL THEN
        -- pg_cron lets only the job's role or a superuser unschedule it
        EXECUTE 'SELECT cron.unschedule($1::bigint)' INTO removed USING job;
    END IF;
    RETURN removed;
END
$$;

-- Is a retrain due?  {"due", "reason", "next_retrain_time", "run_id"}.
-- The decision of retrain_if_due, readable on its own (not by PUBLIC:
-- it tells which agents exist and when they train).
CREATE OR REPLACE FUNCTION rl_mlops.retrain_due(agent text DEFAULT 'default')
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    a rl_mlops.agents := rl_mlops._agent(retrain_due.agent);
    running bigint;
    next_time timestamptz := a.last_retrain_time + make_interval(days => a.interval_days);
BEGIN
    IF NOT a.scheduler_enabled THEN
        RETURN jsonb_build_object('due', false, 'reason', 'scheduler disabled',
                                  'next_retrain_time', next_time);
    END IF;
    PERFORM rl_mlops._reap_dead_runs(a.name);
    SELECT id INTO running FROM rl_mlops.runs r
     WHERE r.agent = a.name AND rl_mlops._run_unfinished(r.state)
     ORDER BY id DESC LIMIT 1;
    IF running IS NOT NULL THEN
        RETURN jsonb_build_object('due', false, 'reason', format('run %s in progress', running),
                                  'run_id', running, 'next_retrain_time', next_time);
    END IF;
    IF next_time IS NOT NULL AND now() < next_time THEN
        RETURN jsonb_build_object('due', false, 'reason', format('not due until %s', next_time),
                                  'next_retrain_time', next_time);
    END IF;
    RETURN jsonb_build_object('due', true,
                              'reason', CASE WHEN next_time IS NULL THEN 'never trained'
                                             ELSE format('due since %s', next_time) END,
                              'next_retrain_time', next_time);
END
$$;

-- What the pg_cron job calls: start a run when retrain_due() says so,
-- otherwise do nothing and say why.  Runs as the job's role, so the run
-- reads the data with that role's privileges.  The only way to start a
-- run recorded with trigger 'schedule': C, so that no argument can claim
-- it.
CREATE OR REPLACE FUNCTION rl_mlops.retrain_if_due(agent text DEFAULT 'default')
RETURNS jsonb
AS 'MODULE_PATHNAME', 'rl_retrain_if_due'
LANGUAGE C VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp;

-- Before a role schedules the agent's job of a kind ('retrain' or
-- 'monitor'): pg_cron must be there, the role must be able to log in
-- (pg_cron runs a job by connecting as its role: a NOLOGIN role's job would
-- fail at every tick), and no other role may have that job already (pg_cron
-- names jobs per role).
CREATE OR REPLACE FUNCTION rl_mlops._check_cron_scheduler(p_agent text, p_kind text)
RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    what text := CASE p_kind WHEN 'monitor' THEN 'monitoring' ELSE 'retraining' END;
    other text;
BEGIN
    PERFORM rl_mlops._require_pg_cron();
    IF NOT (SELECT rolcanlogin FROM pg_catalog.pg_roles WHERE rolname = current_user) THEN
        RAISE EXCEPTION 'role "%" cannot log in, so pg_cron cannot run its jobs', current_user
            USING ERRCODE = 'invalid_authorization_specification',
                  DETAIL = 'pg_cron runs a job by connecting as the role that scheduled it.',
                  HINT = format('Schedule as a LOGIN role that is a member of %I '
                                '(RESET ROLE first), or ALTER ROLE %I LOGIN.', current_user, current_user);
    END IF;
    SELECT j.username INTO other FROM rl_mlops.cron_job(p_agent, p_kind) j;
    IF other IS NOT NULL AND other <> current_user THEN
        RAISE EXCEPTION '% of agent "%" is already scheduled by role "%"', what, p_agent, other
            USING ERRCODE = 'duplicate_object',
                  HINT = format('That role (or a superuser) must run rl_mlops.unschedule_%s() first.', what);
    END IF;
END
$$;

-- Create or update the agent's pg_cron job and enable the scheduler.  The
-- job belongs to (and runs as) the role calling this.
CREATE OR REPLACE FUNCTION rl_mlops.schedule_retraining(
    agent text DEFAULT 'default',
    interval_days integer DEFAULT 7,
    check_schedule text DEFAULT '0 * * * *')
RETURNS bigint
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    job bigint;
BEGIN
    PERFORM rl_mlops._check_cron_scheduler(schedule_retraining.agent, 'retrain');
    PERFORM rl_mlops.set_scheduler(schedule_retraining.agent, enabled => true,
                                   interval_days => schedule_retraining.interval_days);
    EXECUTE 'SELECT cron.schedule($1, $2, $3)'
       INTO job
      USING rl_mlops._cron_job_name(schedule_retraining.agent),
            schedule_retraining.check_schedule,
            format('SELECT rl_mlops.retrain_if_due(%L)', schedule_retraining.agent);
    RAISE NOTICE 'agent "%" retrains every % day(s); pg_cron job % checks "%"',
        schedule_retraining.agent, schedule_retraining.interval_days, job, schedule_retraining.check_schedule;
    RETURN job;
END
$$;

-- Remove the agent's pg_cron job and disable its scheduler.
CREATE OR REPLACE FUNCTION rl_mlops.unschedule_retraining(agent text DEFAULT 'default')
RETURNS boolean
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM rl_mlops._require_pg_cron();
    PERFORM rl_mlops.set_scheduler(unschedule_retraining.agent, enabled => false);
    RETURN rl_mlops._unschedule_cron_job(unschedule_retraining.agent, 'retrain');
END
$$;

-- The scheduler of every agent, one row each (status()'s "scheduler").
-- The cron_* columns need EXECUTE on rl_mlops.cron_job(text, text); without it
-- they are NULL.
CREATE OR REPLACE VIEW rl_mlops.scheduler_status AS
SELECT a.name AS agent,
       a.scheduler_enabled AND coalesce(j.jobid IS NOT NULL OR NOT pg_catalog.has_function_privilege(
           'rl_mlops.cron_job(text, text)', 'EXECUTE'), true) AS enabled,
       a.interval_days,
       a.last_retrain_time,
       a.last_retrain_time + make_interval(days => a.interval_days) AS next_retrain_time,
       r.id IS NOT NULL AS is_training,
       r.id AS run_id, r.state AS run_state, r.epoch, r.epochs,
       j.jobid AS cron_jobid, j.schedule AS cron_schedule, j.active AS cron_active,
       j.username AS cron_role,
       j.last_run_status AS cron_last_status, j.last_run_message AS cron_last_message,
       j.last_run_at AS cron_last_run_at,
       a.scheduler_enabled
  FROM rl_mlops.agents a
  LEFT JOIN LATERAL (SELECT * FROM rl_mlops.runs x
                      WHERE x.agent = a.name
                        AND rl_mlops._run_unfinished(x.state)
                        AND rl_mlops._worker_alive(x.worker_pid, x.worker_started_at)
                      ORDER BY x.id DESC LIMIT 1) r ON true
  LEFT JOIN LATERAL rl_mlops._cron_job_if_granted(a.name) j ON true
 ORDER BY a.name;

-- _check_cron_scheduler and _unschedule_cron_job stay executable by
-- PUBLIC: the scheduling functions, which run as their caller, call them.
REVOKE ALL ON FUNCTION
    rl_mlops.cron_job(text, text),
    rl_mlops.retrain_due(text),
    rl_mlops.retrain_if_due(text),
    rl_mlops.schedule_retraining(text, integer, text),
    rl_mlops.unschedule_retraining(text),
    rl_mlops.set_scheduler(text, boolean, integer)
FROM PUBLIC;
