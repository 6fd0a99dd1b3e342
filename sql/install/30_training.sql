--------------------------------------------------------------------------
-- Training runs (DESIGN sections 2, 6 and 7)
--------------------------------------------------------------------------

-- Where the run's data came from (set by the worker in step 1).
ALTER TABLE rl_mlops.runs ADD COLUMN data_from timestamptz, ADD COLUMN data_to timestamptz;

-- Is a run worker alive for this agent?  Workers hold a session advisory
-- lock (two-key form: class 1380732236 = 'RLML', key hashtext(agent))
-- for their whole life; it disappears with the process, however it dies.
CREATE FUNCTION rl_mlops._run_lock_held(p_agent text)
RETURNS boolean
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT EXISTS (
        SELECT 1 FROM pg_catalog.pg_locks
         WHERE locktype = 'advisory' AND granted
           AND database = (SELECT oid FROM pg_catalog.pg_database WHERE datname = current_database())
           AND classid = 1380732236::oid
           AND objid = ((pg_catalog.hashtext(p_agent)::bigint + 4294967296) % 4294967296)::text::oid
           AND objsubid = 2)
$$;

-- Mark unfinished runs whose worker is gone as failed ("worker died").
-- Called by status(), retrain() and the next run's worker.
CREATE FUNCTION rl_mlops._reap_dead_runs(p_agent text)
RETURNS integer
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    n integer := 0;
BEGIN
    IF pg_catalog.pg_is_in_recovery() OR rl_mlops._run_lock_held(p_agent) THEN
        RETURN 0;
    END IF;
    -- Checked again in the UPDATE itself: a worker that took the lock
    -- since the test above inserts its run after this statement's
    -- snapshot, so the UPDATE cannot see (and wrongly fail) that run.
    UPDATE rl_mlops.runs
       SET state = 'failed', error = 'worker died', finished_at = now()
     WHERE agent = p_agent
       AND rl_mlops._run_unfinished(state)
       AND NOT rl_mlops._run_lock_held(p_agent);
    GET DIAGNOSTICS n = ROW_COUNT;
    IF n > 0 THEN
        RAISE LOG 'rl_mlops: marked % run(s) of agent % failed: worker died', n, p_agent;
    END IF;
    RETURN n;
END
$$;

-- Register a checkpoint the training worker produced (as the owner).
CREATE FUNCTION rl_mlops._register_trained(
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
                                 data_from, data_to, sigma, metrics)
    VALUES (a.name, p_version, s.checkpoint, s.sha256, s.size_bytes, 'trained',
            p_parent, p_run_id, p_epochs, p_loss, p_from, p_to, s.sigma, p_metrics);
    UPDATE rl_mlops.runs SET produced_version = p_version WHERE id = p_run_id;
END
$$;

-- Start a training run in a background worker connected as the calling
-- role; returns the run id at once (async) or when the run has ended.  A
-- run already in progress for the agent is returned instead of a new one.
CREATE FUNCTION rl_mlops.retrain(
    agent text DEFAULT 'default',
    async boolean DEFAULT true,
    epochs integer DEFAULT NULL,
    full boolean DEFAULT false,
    trigger text DEFAULT 'manual')
RETURNS bigint
AS 'MODULE_PATHNAME', 'rl_retrain'
LANGUAGE C VOLATILE PARALLEL UNSAFE
-- it runs registry statements as the owner: never through the caller's path
SET search_path = pg_catalog, pg_temp;

-- Stop the agent's run between batches (SIGTERM to its worker); the run
-- ends 'cancelled' and the active model stays.  Returns the run id, or
-- NULL when nothing was running.
CREATE FUNCTION rl_mlops.cancel_retrain(agent text DEFAULT 'default', timeout_ms integer DEFAULT 30000)
RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r rl_mlops.runs;
BEGIN
    PERFORM rl_mlops._agent(cancel_retrain.agent);
    SELECT * INTO r FROM rl_mlops.runs
     WHERE runs.agent = cancel_retrain.agent
       AND rl_mlops._run_unfinished(state)
     ORDER BY id DESC LIMIT 1;
    IF NOT FOUND THEN
        RAISE NOTICE 'agent "%" has no training run in progress', cancel_retrain.agent;
        RETURN NULL;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_stat_activity
                    WHERE pid = r.worker_pid AND backend_type = 'rl_mlops trainer') THEN
        PERFORM rl_mlops._reap_dead_runs(cancel_retrain.agent);
        RETURN r.id;
    END IF;
    -- waits up to timeout_ms for the worker to exit (it records 'cancelled')
    PERFORM pg_catalog.pg_terminate_backend(r.worker_pid, cancel_retrain.timeout_ms);
    RETURN r.id;
END
$$;

-- Live progress of runs, newest first; a run whose worker is gone shows
-- as failed even before anyone reaped it.
CREATE VIEW rl_mlops.training_progress AS
SELECT r.id AS run_id, r.agent,
       CASE WHEN rl_mlops._run_unfinished(r.state)
                 AND NOT rl_mlops._run_lock_held(r.agent)
            THEN 'failed' ELSE r.state END AS state,
       r.trigger, r.epoch, r.epochs,
       round(100.0 * r.epoch / nullif(r.epochs, 0), 1) AS pct,
       round(r.loss::numeric, 6) AS loss,
       round(r.samples_per_second::numeric) AS samples_per_second,
       r.samples, r.parent_version, r.produced_version,
       CASE WHEN rl_mlops._run_unfinished(r.state)
                 AND NOT rl_mlops._run_lock_held(r.agent)
            THEN 'worker died' ELSE r.error END AS error,
       r.requested_by, r.worker_pid, r.started_at, r.finished_at,
       coalesce(r.finished_at, now()) - r.started_at AS elapsed
  FROM rl_mlops.runs r
 ORDER BY r.id DESC;

REVOKE ALL ON FUNCTION
    rl_mlops._register_trained(text, text, bytea, bigint, text, integer, double precision,
                               timestamptz, timestamptz, jsonb),
    rl_mlops.retrain(text, boolean, integer, boolean, text),
    rl_mlops.cancel_retrain(text, integer)
FROM PUBLIC;
