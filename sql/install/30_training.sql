--------------------------------------------------------------------------
-- Training runs (ARCHITECTURE.md "Processes and libraries", "A training run", "The trading environment")
--------------------------------------------------------------------------

-- Where the run's data came from (set by the worker in step 1).
ALTER TABLE rl_mlops.runs ADD COLUMN IF NOT EXISTS data_from timestamptz,
                         ADD COLUMN IF NOT EXISTS data_to timestamptz;

-- Which worker process runs a run: its PID and process start time
-- (together they name one process, whatever PIDs are reused later).
ALTER TABLE rl_mlops.runs ADD COLUMN IF NOT EXISTS worker_started_at timestamptz;
-- The exact settings a run used (_run_settings below).
ALTER TABLE rl_mlops.runs ADD COLUMN IF NOT EXISTS settings jsonb;
COMMENT ON COLUMN rl_mlops.runs.loss IS
    'PPO loss of the last epoch, mean over its minibatches: clipped policy loss + value_coef * value loss '
    '(squared error of returns in sigma units) - entropy_coef * entropy; it may rise while the policy improves';
COMMENT ON COLUMN rl_mlops.runs.samples_per_second IS
    'decisions rolled out and trained on per second of the last epoch (rollout plus update passes)';
COMMENT ON COLUMN rl_mlops.models.sigma IS
    'standard deviation of the training log returns: observations and rewards are scaled by it';

-- One unfinished run per agent, enforced by the database: a run's worker
-- inserts its row under the agent's row lock (rl_mlops._begin_run), which
-- only the registry can take; no advisory lock, nothing another role can
-- hold or collide with.
CREATE UNIQUE INDEX IF NOT EXISTS runs_one_unfinished_per_agent
    ON rl_mlops.runs (agent) WHERE rl_mlops._run_unfinished(state);

-- Is the worker process (pid, process start time) of a run still running?
CREATE OR REPLACE FUNCTION rl_mlops._worker_alive(pid integer, started_at timestamptz)
RETURNS boolean
AS 'MODULE_PATHNAME', 'rl_worker_alive'
LANGUAGE C VOLATILE;

-- Mark unfinished runs whose worker is gone as failed ("worker died").
-- Called by retrain(), cancel_retrain(), retrain_due() and the next run's
-- worker; readers see such runs as failed without writing anything.
CREATE OR REPLACE FUNCTION rl_mlops._reap_dead_runs(p_agent text)
RETURNS integer
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    n integer := 0;
BEGIN
    IF pg_catalog.pg_is_in_recovery() THEN
        RETURN 0;
    END IF;
    UPDATE rl_mlops.runs
       SET state = 'failed', error = 'worker died', finished_at = now()
     WHERE agent = p_agent
       AND rl_mlops._run_unfinished(state)
       AND NOT rl_mlops._worker_alive(worker_pid, worker_started_at);
    GET DIAGNOSTICS n = ROW_COUNT;
    IF n > 0 THEN
        RAISE LOG 'rl_mlops: marked % run(s) of agent % failed: worker died', n, p_agent;
    END IF;
    RETURN n;
END
$$;

-- A run worker's first step: under the agent's row lock, either find the
-- run that answers the request (one in progress, or one started since the
-- caller looked: p_seen_run_id is the newest run id it saw) or insert a
-- new run in state 'preparing'.  Called by the worker as the owner.
CREATE OR REPLACE FUNCTION rl_mlops._begin_run(
    p_agent text, p_trigger text, p_full boolean, p_requested_by name,
    p_worker_pid integer, p_worker_started_at timestamptz, p_seen_run_id bigint,
    OUT run_id bigint, OUT already_running boolean)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM rl_mlops._lock_agent(p_agent);
    PERFORM rl_mlops._reap_dead_runs(p_agent);
    SELECT r.id INTO run_id FROM rl_mlops.runs r
     WHERE r.agent = p_agent AND (rl_mlops._run_unfinished(r.state) OR r.id > p_seen_run_id)
     ORDER BY r.id DESC LIMIT 1;
    already_running := run_id IS NOT NULL;
    IF NOT already_running THEN
        INSERT INTO rl_mlops.runs (agent, trigger, full_training, state, requested_by,
                                   worker_pid, worker_started_at, started_at)
        VALUES (p_agent, p_trigger, p_full, 'preparing', p_requested_by,
                p_worker_pid, p_worker_started_at, now())
        RETURNING id INTO run_id;
    END IF;
END
$$;

-- The exact settings a run uses, recorded on the run: the agent's row
-- (locked FOR SHARE until the worker has read it too), the versions of
-- PostgreSQL, rl_mlops and libtorch.  Models copy it from their run.
CREATE OR REPLACE FUNCTION rl_mlops._run_settings(p_run_id bigint, p_agent text, p_libtorch text)
RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    a rl_mlops.agents;
BEGIN
    SELECT * INTO a FROM rl_mlops.agents WHERE name = p_agent FOR SHARE;
    UPDATE rl_mlops.runs
       SET settings = (to_jsonb(a) - 'name' - 'created_at' - 'last_retrain_time')
                      || jsonb_build_object('postgresql', current_setting('server_version'),
                                            'rl_mlops', (SELECT extversion FROM pg_extension
                                                          WHERE extname = 'rl_mlops'),
                                            'libtorch', p_libtorch)
     WHERE id = p_run_id;
END
$$;

-- A run's progress, as its worker reports it (each call commits on its own).
CREATE OR REPLACE FUNCTION rl_mlops._run_progress(
    p_run_id bigint, p_state text,
    p_epoch integer DEFAULT NULL, p_loss double precision DEFAULT NULL,
    p_samples_per_second double precision DEFAULT NULL)
RETURNS void
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
    UPDATE rl_mlops.runs
       SET state = p_state,
           epoch = coalesce(p_epoch, epoch),
           loss = coalesce(p_loss, loss),
           samples_per_second = coalesce(p_samples_per_second, samples_per_second)
     WHERE id = p_run_id
$$;

-- What a run trains on, once its data is read.
CREATE OR REPLACE FUNCTION rl_mlops._run_data(
    p_run_id bigint, p_epochs integer, p_samples integer, p_parent text,
    p_from timestamptz, p_to timestamptz)
RETURNS void
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
    UPDATE rl_mlops.runs
       SET state = 'training', epochs = p_epochs, samples = p_samples,
           parent_version = p_parent, data_from = p_from, data_to = p_to
     WHERE id = p_run_id
$$;

-- A run's final state; a finished attempt (succeeded or rejected) counts
-- as a retrain for the schedule (the original service's rule).  A run that fails
-- after registering its model keeps pointing at it.
CREATE OR REPLACE FUNCTION rl_mlops._finish_run(
    p_run_id bigint, p_state text, p_error text, p_version text)
RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    agent_name text;
BEGIN
    UPDATE rl_mlops.runs
       SET state = p_state, error = p_error,
           produced_version = coalesce(p_version, produced_version),
           finished_at = now()
     WHERE id = p_run_id
    RETURNING agent INTO agent_name;
    IF p_state IN ('succeeded', 'rejected') THEN
        UPDATE rl_mlops.agents SET last_retrain_time = now() WHERE name = agent_name;
    END IF;
END
$$;

-- Record one more check in a version's validation (the worker's libtorch
-- agreement and deploy gate); a failed check rejects the version.
-- Returns the version's state.
CREATE OR REPLACE FUNCTION rl_mlops._record_check(
    p_agent text, p_version text, p_check text, p_ok boolean, p_message text)
RETURNS text
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
    UPDATE rl_mlops.models
       SET validation = jsonb_set(jsonb_set(validation, ARRAY['checks', p_check],
                                            jsonb_build_object('ok', p_ok, 'message', p_message)),
                                  '{ok}', to_jsonb((validation ->> 'ok')::boolean AND p_ok)),
           state = CASE WHEN (validation ->> 'ok')::boolean AND p_ok THEN state ELSE 'rejected' END
     WHERE agent = p_agent AND version = p_version
    RETURNING state
$$;

-- Register a checkpoint the training worker produced (as the owner).
CREATE OR REPLACE FUNCTION rl_mlops._register_trained(
    p_agent text, p_version text, p_checkpoint bytea, p_run_id bigint, p_parent text,
    p_epochs integer, p_loss double precision, p_from timestamptz, p_to timestamptz,
    p_metrics jsonb)
RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    a rl_mlops.agents := rl_mlops._lock_agent(p_agent);
    s record;
BEGIN
    s := rl_mlops._store_checkpoint(p_checkpoint, a.window_size, a.n_features, a.hidden_size);
    INSERT INTO rl_mlops.models (agent, version, checkpoint, sha256, size_bytes, origin,
                                 parent_version, run_id, training_epochs, training_loss,
                                 data_from, data_to, sigma, metrics, settings)
    VALUES (a.name, p_version, s.checkpoint, s.sha256, s.size_bytes, 'trained',
            p_parent, p_run_id, p_epochs, p_loss, p_from, p_to, s.sigma, p_metrics,
            (SELECT r.settings FROM rl_mlops.runs r WHERE r.id = p_run_id));
    UPDATE rl_mlops.runs SET produced_version = p_version WHERE id = p_run_id;
END
$$;

-- Start a training run in a background worker connected as the calling
-- role; returns the run id at once (async) or when the run has ended.  A
-- run already in progress for the agent is returned instead of a new one.
-- Runs started here are recorded as trigger 'manual'; only
-- retrain_if_due() records 'schedule'.
CREATE OR REPLACE FUNCTION rl_mlops.retrain(
    agent text DEFAULT 'default',
    async boolean DEFAULT true,
    epochs integer DEFAULT NULL,
    full boolean DEFAULT false)
RETURNS bigint
AS 'MODULE_PATHNAME', 'rl_retrain'
LANGUAGE C VOLATILE PARALLEL UNSAFE
-- it runs registry statements as the owner: never through the caller's path
SET search_path = pg_catalog, pg_temp;

-- Stop the agent's run between batches (SIGTERM to its worker); the run
-- ends 'cancelled' and the active model stays.  Returns the run id, or
-- NULL when nothing was running.  timeout_ms NULL means the default.
CREATE OR REPLACE FUNCTION rl_mlops.cancel_retrain(agent text DEFAULT 'default', timeout_ms integer DEFAULT 30000)
RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r rl_mlops.runs;
BEGIN
    PERFORM rl_mlops._agent(cancel_retrain.agent);
    IF cancel_retrain.timeout_ms < 0 THEN
        RAISE EXCEPTION 'timeout_ms must not be negative'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT * INTO r FROM rl_mlops.runs
     WHERE runs.agent = cancel_retrain.agent
       AND rl_mlops._run_unfinished(state)
     ORDER BY id DESC LIMIT 1;
    IF NOT FOUND THEN
        RAISE NOTICE 'agent "%" has no training run in progress', cancel_retrain.agent;
        RETURN NULL;
    END IF;
    IF NOT rl_mlops._worker_alive(r.worker_pid, r.worker_started_at) THEN
        PERFORM rl_mlops._reap_dead_runs(cancel_retrain.agent);
        RETURN r.id;
    END IF;
    -- waits up to timeout_ms for the worker to exit (it records 'cancelled')
    PERFORM pg_catalog.pg_terminate_backend(r.worker_pid, coalesce(cancel_retrain.timeout_ms, 30000));
    RETURN r.id;
END
$$;

-- Live progress of runs, newest first; a run whose worker is gone shows
-- as failed even before anyone reaped it.
CREATE OR REPLACE VIEW rl_mlops.training_progress AS
SELECT r.id AS run_id, r.agent,
       CASE WHEN rl_mlops._run_unfinished(r.state)
                 AND NOT rl_mlops._worker_alive(r.worker_pid, r.worker_started_at)
            THEN 'failed' ELSE r.state END AS state,
       r.trigger, r.epoch, r.epochs,
       round(100.0 * r.epoch / nullif(r.epochs, 0), 1) AS pct,
       round(r.loss::numeric, 6) AS loss,
       round(r.samples_per_second::numeric) AS samples_per_second,
       r.samples, r.parent_version, r.produced_version,
       CASE WHEN rl_mlops._run_unfinished(r.state)
                 AND NOT rl_mlops._worker_alive(r.worker_pid, r.worker_started_at)
            THEN 'worker died' ELSE r.error END AS error,
       r.requested_by, r.worker_pid, r.started_at, r.finished_at,
       coalesce(r.finished_at, now()) - r.started_at AS elapsed
  FROM rl_mlops.runs r
 ORDER BY r.id DESC;

-- _worker_alive stays executable by PUBLIC: the views readers read call it.
REVOKE ALL ON FUNCTION
    rl_mlops._reap_dead_runs(text),
    rl_mlops._begin_run(text, text, boolean, name, integer, timestamptz, bigint),
    rl_mlops._run_progress(bigint, text, integer, double precision, double precision),
    rl_mlops._run_data(bigint, integer, integer, text, timestamptz, timestamptz),
    rl_mlops._run_settings(bigint, text, text),
    rl_mlops._finish_run(bigint, text, text, text),
    rl_mlops._record_check(text, text, text, boolean, text),
    rl_mlops._register_trained(text, text, bytea, bigint, text, integer, double precision,
                               timestamptz, timestamptz, jsonb),
    rl_mlops.retrain(text, boolean, integer, boolean),
    rl_mlops.cancel_retrain(text, integer)
FROM PUBLIC;
