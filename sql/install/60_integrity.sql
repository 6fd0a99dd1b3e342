--------------------------------------------------------------------------
-- Integrity check (issue 7: fault tolerance)
--
-- The promise: whatever happens (a killed worker, a crash, an immediate
-- shutdown, concurrent deploys and cleanups), the active model is a
-- validated checkpoint whose large object exists and matches its sha256,
-- no run stays unfinished without a worker, and no checkpoint large object
-- is orphaned.  check_integrity() lists every way the registry breaks that
-- promise, one row per problem; no row means the promise holds.
--
-- It only reads (it also runs on a hot standby, where the run checks are
-- skipped: the primary's workers are not visible there).  It is SECURITY
-- DEFINER because it reads the checkpoint large objects, which belong to
-- the extension owner; it is revoked from PUBLIC like the rest of the
-- registry's functions because it reads every checkpoint in full (a cost)
-- and lists large object oids.  GRANT EXECUTE on it to monitoring roles.
--------------------------------------------------------------------------

-- One problem found by check_integrity().
DO $$
BEGIN
    IF pg_catalog.to_regtype('rl_mlops.integrity_problem') IS NULL THEN
        CREATE TYPE rl_mlops.integrity_problem AS (
            agent text,     -- NULL for an orphan large object (no agent owns it)
            kind text,      -- what is wrong, see check_integrity()
            object text,    -- the version, run or large object concerned
            detail text     -- a full sentence
        );
    END IF;
END
$$;

-- Every violation of the registry's invariants, for one agent or all.
-- Kinds:
--   several_active        more than one active version (the partial unique
--                         index forbids it; checked anyway)
--   history_mismatch      the last deployment recorded is not the active version
--   active_not_validated  the active version has no successful validation recorded
--   checkpoint_missing    a version's large object does not exist
--   checkpoint_corrupt    a version's large object cannot be read or does
--                         not match its recorded sha256
--   checkpoint_invalid    an active, archived or validated version's
--                         checkpoint no longer passes the parser, the
--                         architecture or the forward-pass check
--   checkpoint_owner      a version's large object is not owned by the
--                         extension owner (another role could change it)
--   run_without_worker    a run is unfinished but its worker process is gone
--                         (retrain() or the next run marks it failed)
--   several_runs          more than one unfinished run of one agent
--   orphan_cron_job       (all agents only) a pg_cron job of rl_mlops whose
--                         agent no longer exists
--   orphan_checkpoint     (all agents only) a large object of the extension
--                         owner that holds an rl_mlops checkpoint but that no
--                         version references
-- Each check is one statement (one snapshot), and a problem that a
-- concurrent change could explain is confirmed with a fresh snapshot, so a
-- deploy or cleanup running meanwhile is not reported as a problem.
CREATE OR REPLACE FUNCTION rl_mlops.check_integrity(agent text DEFAULT NULL)
RETURNS SETOF rl_mlops.integrity_problem
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    p rl_mlops.integrity_problem;
    owner_oid oid;
    r record;
    v jsonb;
    failed text;
    unfinished bigint[];
BEGIN
    IF check_integrity.agent IS NOT NULL THEN
        PERFORM rl_mlops._agent(check_integrity.agent);
    END IF;
    SELECT e.extowner INTO owner_oid FROM pg_catalog.pg_extension e WHERE e.extname = 'rl_mlops';

    -- Active versions and the deployment history, in one snapshot.
    FOR r IN
        SELECT a.name,
               (SELECT array_agg(m.version ORDER BY m.version) FROM rl_mlops.models m
                 WHERE m.agent = a.name AND m.state = 'active') AS active,
               (SELECT d.version FROM rl_mlops.deployments d
                 WHERE d.agent = a.name ORDER BY d.id DESC LIMIT 1) AS last_deployed
          FROM rl_mlops.agents a
         WHERE check_integrity.agent IS NULL OR a.name = check_integrity.agent
         ORDER BY a.name
    LOOP
        IF cardinality(r.active) > 1 THEN
            p := (r.name, 'several_active', array_to_string(r.active, ', '),
                  format('Agent %s has %s active versions; exactly one may be active.',
                         r.name, cardinality(r.active)));
            RETURN NEXT p;
        END IF;
        IF coalesce(cardinality(r.active), 0) <= 1 AND r.active[1] IS DISTINCT FROM r.last_deployed THEN
            p := (r.name, 'history_mismatch', coalesce(r.active[1], r.last_deployed),
                  CASE WHEN r.active IS NULL
                       THEN format('The last deployment recorded is version %s, but no version is active.',
                                   r.last_deployed)
                       WHEN r.last_deployed IS NULL
                       THEN format('Version %s is active, but no deployment of it is recorded.', r.active[1])
                       ELSE format('Version %s is active, but the last deployment recorded is version %s.',
                                   r.active[1], r.last_deployed)
                  END);
            RETURN NEXT p;
        END IF;
    END LOOP;

    -- Every version: its recorded validation, its large object's existence
    -- and owner, then its bytes (sha256) and, for the versions that may be
    -- deployed, the checks a deploy would make.
    FOR r IN
        SELECT m.agent, m.version, m.state, m.checkpoint, m.sha256, m.validation, m.sigma,
               a.window_size, a.n_features, a.hidden_size,
               l.oid IS NOT NULL AS lo_exists, l.lomowner
          FROM rl_mlops.models m
          JOIN rl_mlops.agents a ON a.name = m.agent
          LEFT JOIN pg_catalog.pg_largeobject_metadata l ON l.oid = m.checkpoint
         WHERE check_integrity.agent IS NULL OR m.agent = check_integrity.agent
         ORDER BY m.agent, m.created_at, m.version
    LOOP
        IF r.state = 'active' AND (r.validation ->> 'ok') IS DISTINCT FROM 'true' THEN
            p := (r.agent, 'active_not_validated', r.version,
                  format('Version %s is active but has no successful validation recorded.', r.version));
            RETURN NEXT p;
        END IF;
        IF NOT r.lo_exists THEN
            p := (r.agent, 'checkpoint_missing', r.version,
                  format('Large object %s of version %s (%s) does not exist.', r.checkpoint, r.version, r.state));
            RETURN NEXT p;
            CONTINUE;
        END IF;
        IF r.lomowner <> owner_oid THEN
            p := (r.agent, 'checkpoint_owner', r.version,
                  format('Large object %s of version %s belongs to role %s, not to the extension owner %s.',
                         r.checkpoint, r.version, r.lomowner::regrole, owner_oid::regrole));
            RETURN NEXT p;
        END IF;
        v := rl_mlops._validate_checkpoint(r.checkpoint, r.sha256, r.window_size, r.n_features,
                                           r.hidden_size, r.sigma);
        IF (v ->> 'ok')::boolean THEN
            CONTINUE;
        END IF;
        -- a cleanup or drop_agent may have removed the version meanwhile
        CONTINUE WHEN NOT EXISTS (SELECT 1 FROM rl_mlops.models m
                                   WHERE m.agent = r.agent AND m.version = r.version
                                     AND m.checkpoint = r.checkpoint);
        SELECT string_agg(key || ': ' || (value ->> 'message'), '; ' ORDER BY key) INTO failed
          FROM jsonb_each(v -> 'checks')
         WHERE NOT (value ->> 'ok')::boolean AND value ->> 'message' <> 'skipped: an earlier check failed';
        IF NOT (v #>> '{checks,readable,ok}')::boolean THEN
            IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_largeobject_metadata l WHERE l.oid = r.checkpoint) THEN
                p := (r.agent, 'checkpoint_missing', r.version,
                      format('Large object %s of version %s (%s) does not exist.', r.checkpoint, r.version, r.state));
            ELSE
                p := (r.agent, 'checkpoint_corrupt', r.version,
                      format('Version %s (%s) cannot be read back as recorded: %s.', r.version, r.state,
                             rtrim(v #>> '{checks,readable,message}', '.')));
            END IF;
            RETURN NEXT p;
        ELSIF r.state IN ('active', 'archived', 'validated') THEN
            p := (r.agent, 'checkpoint_invalid', r.version,
                  format('Version %s (%s) no longer passes validation: %s.', r.version, r.state,
                         rtrim(failed, '.')));
            RETURN NEXT p;
        END IF;
    END LOOP;

    -- Unfinished runs whose worker is gone.  The candidates are read first,
    -- then their workers, then the candidates again: a run that ended
    -- meanwhile is final by then, and a run started meanwhile is not a
    -- candidate.  The primary's workers are not visible on a standby.
    IF NOT pg_catalog.pg_is_in_recovery() THEN
        SELECT array_agg(x.id) INTO unfinished FROM rl_mlops.runs x
         WHERE (check_integrity.agent IS NULL OR x.agent = check_integrity.agent)
           AND rl_mlops._run_unfinished(x.state)
           AND NOT rl_mlops._worker_alive(x.worker_pid, x.worker_started_at);
        IF unfinished IS NOT NULL THEN
            FOR r IN
                SELECT x.agent, x.id, x.state, x.worker_pid FROM rl_mlops.runs x
                 WHERE x.id = ANY (unfinished)
                   AND rl_mlops._run_unfinished(x.state)
                 ORDER BY x.id
            LOOP
                p := (r.agent, 'run_without_worker', 'run ' || r.id,
                      format('Run %s is %s but its worker (PID %s) is gone; retrain() or the next run marks it failed.',
                             r.id, r.state, coalesce(r.worker_pid::text, 'unknown')));
                RETURN NEXT p;
            END LOOP;
        END IF;
        FOR r IN
            SELECT x.agent, array_agg(x.id ORDER BY x.id) AS ids FROM rl_mlops.runs x
             WHERE (check_integrity.agent IS NULL OR x.agent = check_integrity.agent)
               AND rl_mlops._run_unfinished(x.state)
             GROUP BY x.agent HAVING count(*) > 1
             ORDER BY x.agent
        LOOP
            p := (r.agent, 'several_runs', 'runs ' || array_to_string(r.ids, ', '),
                  format('Agent %s has %s unfinished runs; one run per agent may be in progress.',
                         r.agent, cardinality(r.ids)));
            RETURN NEXT p;
        END LOOP;
    END IF;

    -- pg_cron jobs of rl_mlops whose agent is gone: they would fail at
    -- every tick.
    IF check_integrity.agent IS NULL
       AND EXISTS (SELECT 1 FROM pg_catalog.pg_extension WHERE extname = 'pg_cron') THEN
        FOR r IN EXECUTE
            'SELECT j.jobid, j.jobname, j.command FROM cron.job j
              WHERE (j.command LIKE ''SELECT rl_mlops.retrain_if_due(%''
                     OR j.command LIKE ''SELECT rl_mlops.monitor(%'')
                AND NOT EXISTS (SELECT 1 FROM rl_mlops.agents a
                                 WHERE j.jobname IN (rl_mlops._cron_job_name(a.name, ''retrain''),
                                                     rl_mlops._cron_job_name(a.name, ''monitor'')))
              ORDER BY j.jobid'
        LOOP
            p := (NULL, 'orphan_cron_job', 'job ' || r.jobid,
                  format('pg_cron job %s (%s) runs "%s" for an agent that does not exist.',
                         r.jobid, r.jobname, r.command));
            RETURN NEXT p;
        END LOOP;
    END IF;

    -- Orphans: large objects of the extension owner that no version
    -- references and whose safetensors header (within its first MB) names
    -- the rl_mlops checkpoint format.  Other large objects the owner may
    -- have are none of our business.
    IF check_integrity.agent IS NULL THEN
        FOR r IN
            WITH unreferenced AS MATERIALIZED (
                SELECT l.oid FROM pg_catalog.pg_largeobject_metadata l
                 WHERE l.lomowner = owner_oid
                   AND NOT EXISTS (SELECT 1 FROM rl_mlops.models m WHERE m.checkpoint = l.oid))
            SELECT u.oid FROM unreferenced u
             WHERE pg_catalog.position(pg_catalog.lo_get(u.oid, 0, 1048576), '"rl_mlops/1"'::bytea) > 0
             ORDER BY u.oid
        LOOP
            p := (NULL, 'orphan_checkpoint', r.oid::text,
                  format('Large object %s holds an rl_mlops checkpoint that no model version references.',
                         r.oid));
            RETURN NEXT p;
        END LOOP;
    END IF;
    RETURN;
END
$$;

COMMENT ON FUNCTION rl_mlops.check_integrity(text) IS
    'Every violation of the registry''s invariants (active model validated and intact, no dead unfinished run, no orphan checkpoint); no row = all hold';

REVOKE ALL ON FUNCTION rl_mlops.check_integrity(text) FROM PUBLIC;
