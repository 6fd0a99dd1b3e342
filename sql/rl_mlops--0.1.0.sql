-- rl_mlops 0.1.0: install script.
\echo Use "CREATE EXTENSION rl_mlops" to load this file. \quit

-- A member of the extension, so DROP EXTENSION removes it.
CREATE SCHEMA rl_mlops;
COMMENT ON SCHEMA rl_mlops IS 'rl_mlops: model lifecycle of a reinforcement-learning trading agent';
--------------------------------------------------------------------------
-- Diagnostics
--------------------------------------------------------------------------

-- Proves the training path end to end: a trainer background worker builds
-- the actor-critic with libtorch, runs a forward pass (compared with the C
-- forward pass) and ppo_updates PPO updates on a random batch.
CREATE FUNCTION rl_mlops.check_trainer(
    ppo_updates integer DEFAULT 1,
    threads integer DEFAULT 1,
    OUT ok boolean,
    OUT libtorch_version text,
    OUT threads_used integer,
    OUT loss_before double precision,
    OUT loss_after double precision,
    OUT max_forward_diff double precision,
    OUT elapsed_ms double precision)
RETURNS record
AS 'MODULE_PATHNAME', 'rl_check_trainer'
LANGUAGE C STRICT VOLATILE PARALLEL UNSAFE;

REVOKE ALL ON FUNCTION rl_mlops.check_trainer(integer, integer) FROM PUBLIC;
--------------------------------------------------------------------------
-- Registry tables (DESIGN section 4)
--------------------------------------------------------------------------

-- Who is calling: the current role as SET ROLE left it, also inside the
-- registry's SECURITY DEFINER functions (where current_user is the owner).
-- Recorded as created_by, deployed_by and requested_by.
CREATE FUNCTION rl_mlops._caller()
RETURNS name
AS 'MODULE_PATHNAME', 'rl_caller'
LANGUAGE C STABLE STRICT PARALLEL SAFE;

-- One row per trading agent: where its prices are, its network, how it
-- trains, how long models are kept and when it retrains.  Absurd settings
-- are refused here, when they are set, by named CHECK constraints.
CREATE TABLE rl_mlops.agents (
    name text PRIMARY KEY
        CONSTRAINT name_is_1_to_63_printable_characters
        CHECK (length(name) BETWEEN 1 AND 63 AND name !~ '[[:cntrl:]]'),
    source regclass NOT NULL,
    symbol_column name NOT NULL DEFAULT 'symbol',
    time_column name NOT NULL DEFAULT 'ts',
    price_column name NOT NULL DEFAULT 'price',
    features_column name,
    n_features integer NOT NULL DEFAULT 0
        CONSTRAINT n_features_between_0_and_256 CHECK (n_features BETWEEN 0 AND 256),
    window_size integer NOT NULL DEFAULT 32
        CONSTRAINT window_size_between_2_and_1024 CHECK (window_size BETWEEN 2 AND 1024),
    hidden_size integer NOT NULL DEFAULT 64
        CONSTRAINT hidden_size_between_2_and_1024 CHECK (hidden_size BETWEEN 2 AND 1024),
    initial_epochs integer NOT NULL DEFAULT 30
        CONSTRAINT initial_epochs_between_1_and_10000 CHECK (initial_epochs BETWEEN 1 AND 10000),
    incremental_epochs integer NOT NULL DEFAULT 5
        CONSTRAINT incremental_epochs_between_1_and_10000 CHECK (incremental_epochs BETWEEN 1 AND 10000),
    data_window interval NOT NULL DEFAULT '30 days'
        CONSTRAINT data_window_between_1_hour_and_100_years
        CHECK (data_window >= interval '1 hour' AND data_window <= interval '100 years'),
    holdout_fraction double precision NOT NULL DEFAULT 0.2
        CONSTRAINT holdout_fraction_between_0_05_and_0_5
        CHECK (holdout_fraction BETWEEN 0.05 AND 0.5),
    episode_length integer NOT NULL DEFAULT 256
        CONSTRAINT episode_length_between_8_and_100000 CHECK (episode_length BETWEEN 8 AND 100000),
    transaction_cost double precision NOT NULL DEFAULT 0.0005
        CONSTRAINT transaction_cost_between_0_and_0_1 CHECK (transaction_cost BETWEEN 0 AND 0.1),
    learning_rate double precision NOT NULL DEFAULT 3e-4
        CONSTRAINT learning_rate_between_1e_8_and_1 CHECK (learning_rate BETWEEN 1e-8 AND 1),
    gamma double precision NOT NULL DEFAULT 0.99
        CONSTRAINT gamma_between_0_and_1 CHECK (gamma > 0 AND gamma <= 1),
    gae_lambda double precision NOT NULL DEFAULT 0.95
        CONSTRAINT gae_lambda_between_0_and_1 CHECK (gae_lambda BETWEEN 0 AND 1),
    clip_range double precision NOT NULL DEFAULT 0.2
        CONSTRAINT clip_range_between_0_and_1 CHECK (clip_range > 0 AND clip_range <= 1),
    update_passes integer NOT NULL DEFAULT 4
        CONSTRAINT update_passes_between_1_and_100 CHECK (update_passes BETWEEN 1 AND 100),
    minibatch_size integer NOT NULL DEFAULT 256
        CONSTRAINT minibatch_size_between_8_and_65536 CHECK (minibatch_size BETWEEN 8 AND 65536),
    value_coef double precision NOT NULL DEFAULT 0.5
        CONSTRAINT value_coef_between_0_and_100 CHECK (value_coef BETWEEN 0 AND 100),
    entropy_coef double precision NOT NULL DEFAULT 0.01
        CONSTRAINT entropy_coef_between_0_and_10 CHECK (entropy_coef BETWEEN 0 AND 10),
    max_grad_norm double precision NOT NULL DEFAULT 0.5
        CONSTRAINT max_grad_norm_between_0_and_1000 CHECK (max_grad_norm > 0 AND max_grad_norm <= 1000),
    seed bigint NOT NULL DEFAULT 42
        CONSTRAINT seed_not_negative CHECK (seed >= 0),
    threads integer NOT NULL DEFAULT 1
        CONSTRAINT threads_between_1_and_64 CHECK (threads BETWEEN 1 AND 64),
    retention_days integer NOT NULL DEFAULT 30
        CONSTRAINT retention_days_between_0_and_36500 CHECK (retention_days BETWEEN 0 AND 36500),
    keep_min integer NOT NULL DEFAULT 3
        CONSTRAINT keep_min_between_1_and_1000 CHECK (keep_min BETWEEN 1 AND 1000),
    scheduler_enabled boolean NOT NULL DEFAULT true,
    interval_days integer NOT NULL DEFAULT 7
        CONSTRAINT interval_days_between_1_and_365 CHECK (interval_days BETWEEN 1 AND 365),
    last_retrain_time timestamptz,
    deploy_gate text NOT NULL DEFAULT 'valid'
        CONSTRAINT deploy_gate_is_valid_not_worse_or_better
        CHECK (deploy_gate IN ('valid', 'not_worse', 'better')),
    gate_min_delta double precision NOT NULL DEFAULT 0
        CONSTRAINT gate_min_delta_between_0_and_100 CHECK (gate_min_delta BETWEEN 0 AND 100),
    created_at timestamptz NOT NULL DEFAULT now(),
    created_by name NOT NULL DEFAULT rl_mlops._caller()
);

COMMENT ON TABLE rl_mlops.agents IS
    'Trading agents: source relation, architecture, training, retention and scheduler settings';

-- One row per checkpoint version.  The checkpoint itself is a large object
-- owned by the extension owner.
CREATE TABLE rl_mlops.models (
    agent text NOT NULL REFERENCES rl_mlops.agents (name) ON UPDATE CASCADE,
    version text NOT NULL
        CONSTRAINT version_is_a_utc_timestamp
        CHECK (version ~ '^[0-9]{8}_[0-9]{6}(_[0-9]+)?$'),
    checkpoint oid NOT NULL UNIQUE,
    sha256 text NOT NULL CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    size_bytes bigint NOT NULL CHECK (size_bytes > 0),
    file_name text GENERATED ALWAYS AS ('checkpoint_' || version || '.safetensors') STORED,
    origin text NOT NULL DEFAULT 'imported' CHECK (origin IN ('trained', 'imported')),
    parent_version text,
    run_id bigint,
    training_epochs integer,
    training_loss double precision,
    data_from timestamptz,
    data_to timestamptz,
    sigma double precision,
    metrics jsonb NOT NULL DEFAULT '{}',
    validation jsonb,
    state text NOT NULL DEFAULT 'registered'
        CHECK (state IN ('registered', 'validated', 'rejected', 'active', 'archived')),
    pinned boolean NOT NULL DEFAULT false,
    created_at timestamptz NOT NULL DEFAULT now(),
    validated_at timestamptz,
    deployed_at timestamptz,
    archived_at timestamptz,
    created_by name NOT NULL DEFAULT rl_mlops._caller(),
    PRIMARY KEY (agent, version)
);

-- At most one active model per agent, enforced by the database itself.
CREATE UNIQUE INDEX models_one_active_per_agent
    ON rl_mlops.models (agent) WHERE state = 'active';
CREATE INDEX models_agent_created ON rl_mlops.models (agent, created_at);

COMMENT ON TABLE rl_mlops.models IS
    'Model registry: one row per checkpoint version (checkpoint = large object oid)';

-- Append-only deployment history.
CREATE TABLE rl_mlops.deployments (
    id bigserial PRIMARY KEY,
    agent text NOT NULL REFERENCES rl_mlops.agents (name) ON UPDATE CASCADE,
    version text NOT NULL,
    previous_version text,
    action text NOT NULL CHECK (action IN ('deploy', 'rollback')),
    reason text,
    deployed_by name NOT NULL DEFAULT rl_mlops._caller(),
    deployed_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX deployments_agent_id ON rl_mlops.deployments (agent, id);

-- One row per training run, updated in its own transactions while the
-- worker runs so that psql sees live progress.
CREATE TABLE rl_mlops.runs (
    id bigserial PRIMARY KEY,
    agent text NOT NULL REFERENCES rl_mlops.agents (name) ON UPDATE CASCADE,
    trigger text NOT NULL DEFAULT 'manual' CHECK (trigger IN ('manual', 'schedule')),
    requested_by name NOT NULL DEFAULT rl_mlops._caller(),
    full_training boolean NOT NULL DEFAULT false,
    state text NOT NULL DEFAULT 'queued'
        CHECK (state IN ('queued', 'preparing', 'training', 'validating', 'deploying',
                         'succeeded', 'rejected', 'failed', 'cancelled')),
    epoch integer NOT NULL DEFAULT 0,
    epochs integer,
    loss double precision,
    samples_per_second double precision,
    samples integer,
    worker_pid integer,
    parent_version text,
    produced_version text,
    error text,
    created_at timestamptz NOT NULL DEFAULT now(),
    started_at timestamptz,
    finished_at timestamptz
);
CREATE INDEX runs_agent_id ON rl_mlops.runs (agent, id);

-- Is a run's state one of the unfinished ones (its worker may still run)?
-- The one place that lists them.
CREATE FUNCTION rl_mlops._run_unfinished(p_state text)
RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT p_state IN ('queued', 'preparing', 'training', 'validating', 'deploying') $$;

SELECT pg_catalog.pg_extension_config_dump('rl_mlops.agents', '');
SELECT pg_catalog.pg_extension_config_dump('rl_mlops.models', '');
SELECT pg_catalog.pg_extension_config_dump('rl_mlops.deployments', '');
SELECT pg_catalog.pg_extension_config_dump('rl_mlops.deployments_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('rl_mlops.runs', '');
SELECT pg_catalog.pg_extension_config_dump('rl_mlops.runs_id_seq', '');

--------------------------------------------------------------------------
-- Internal C functions: bytes only, never granted to PUBLIC
--------------------------------------------------------------------------

CREATE FUNCTION rl_mlops._store_checkpoint(
    data bytea, window_size integer, n_features integer, hidden_size integer,
    OUT checkpoint oid, OUT sha256 text, OUT size_bytes bigint, OUT sigma double precision)
RETURNS record
AS 'MODULE_PATHNAME', 'rl_store_checkpoint' LANGUAGE C STRICT VOLATILE;

CREATE FUNCTION rl_mlops._read_checkpoint(checkpoint oid, sha256 text)
RETURNS bytea
AS 'MODULE_PATHNAME', 'rl_read_checkpoint' LANGUAGE C STRICT STABLE;

CREATE FUNCTION rl_mlops._validate_checkpoint(
    checkpoint oid, sha256 text, window_size integer, n_features integer, hidden_size integer)
RETURNS jsonb
AS 'MODULE_PATHNAME', 'rl_validate_checkpoint' LANGUAGE C STRICT VOLATILE;

CREATE FUNCTION rl_mlops._invalidate_serving()
RETURNS void
AS 'MODULE_PATHNAME', 'rl_invalidate_serving' LANGUAGE C STRICT VOLATILE;

--------------------------------------------------------------------------
-- Internal SQL helpers
--------------------------------------------------------------------------

-- The agent's row, locked: every registry change of one agent serialises here.
CREATE FUNCTION rl_mlops._lock_agent(p_agent text)
RETURNS rl_mlops.agents
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    a rl_mlops.agents;
BEGIN
    SELECT * INTO a FROM rl_mlops.agents WHERE name = p_agent FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'agent "%" does not exist', p_agent
            USING ERRCODE = 'undefined_object',
                  HINT = 'Create it with rl_mlops.create_agent().';
    END IF;
    RETURN a;
END
$$;

-- The agent's row without a lock, or the same error as _lock_agent: for
-- the functions that only read.
CREATE FUNCTION rl_mlops._agent(p_agent text)
RETURNS rl_mlops.agents
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    a rl_mlops.agents;
BEGIN
    SELECT * INTO a FROM rl_mlops.agents WHERE name = p_agent;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'agent "%" does not exist', p_agent
            USING ERRCODE = 'undefined_object',
                  HINT = 'Create it with rl_mlops.create_agent().';
    END IF;
    RETURN a;
END
$$;

-- A model row of an agent, or a clear error.
CREATE FUNCTION rl_mlops._model(p_agent text, p_version text)
RETURNS rl_mlops.models
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    m rl_mlops.models;
BEGIN
    SELECT * INTO m FROM rl_mlops.models WHERE agent = p_agent AND version = p_version;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'model version "%" of agent "%" does not exist', p_version, p_agent
            USING ERRCODE = 'undefined_object',
                  HINT = 'SELECT version, state FROM rl_mlops.models_overview lists the versions.';
    END IF;
    RETURN m;
END
$$;

-- A new version name: UTC YYYYMMDD_HHMMSS, then _2, _3... within one second.
-- The caller holds the agent's lock.
CREATE FUNCTION rl_mlops._new_version(p_agent text)
RETURNS text
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    base text := to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYYMMDD_HH24MISS');
    candidate text := base;
    n integer := 1;
BEGIN
    WHILE EXISTS (SELECT 1 FROM rl_mlops.models WHERE agent = p_agent AND version = candidate) LOOP
        n := n + 1;
        candidate := base || '_' || n;
    END LOOP;
    RETURN candidate;
END
$$;

-- Check that a column exists in the source relation and has a usable type.
CREATE FUNCTION rl_mlops._check_source_column(
    p_source regclass, p_column name, p_role text, p_types regtype[])
RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    t regtype;
BEGIN
    SELECT atttypid::regtype INTO t
      FROM pg_attribute
     WHERE attrelid = p_source AND attname = p_column AND attnum > 0 AND NOT attisdropped;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'column "%" does not exist in relation %', p_column, p_source
            USING ERRCODE = 'undefined_column',
                  HINT = format('Name the %s column with %s_column => ''...''.', p_role, p_role);
    END IF;
    IF p_types IS NOT NULL AND NOT t = ANY (p_types) THEN
        RAISE EXCEPTION 'column "%" of relation % has type %, not a % type', p_column, p_source, t, p_role
            USING ERRCODE = 'datatype_mismatch',
                  DETAIL = format('Accepted types: %s.', array_to_string(p_types, ', '));
    END IF;
END
$$;

--------------------------------------------------------------------------
-- Agents
--------------------------------------------------------------------------

-- Register a trading agent over a price table or view.
CREATE FUNCTION rl_mlops.create_agent(
    name text,
    source regclass,
    symbol_column name DEFAULT 'symbol',
    time_column name DEFAULT 'ts',
    price_column name DEFAULT 'price',
    features_column name DEFAULT NULL,
    n_features integer DEFAULT NULL,
    window_size integer DEFAULT 32,
    hidden_size integer DEFAULT 64)
RETURNS rl_mlops.agents
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    a rl_mlops.agents;
    nf integer := create_agent.n_features;
BEGIN
    IF create_agent.source IS NULL THEN
        RAISE EXCEPTION 'source relation must not be null' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF NOT pg_catalog.has_table_privilege(rl_mlops._caller(), create_agent.source, 'SELECT') THEN
        RAISE EXCEPTION 'permission denied for relation %', create_agent.source
            USING ERRCODE = 'insufficient_privilege',
                  DETAIL = 'The role creating an agent must be able to read its source.';
    END IF;
    PERFORM rl_mlops._check_source_column(create_agent.source, create_agent.symbol_column, 'symbol', NULL);
    PERFORM rl_mlops._check_source_column(create_agent.source, create_agent.time_column, 'time',
        ARRAY['timestamptz', 'timestamp', 'date']::regtype[]);
    PERFORM rl_mlops._check_source_column(create_agent.source, create_agent.price_column, 'price',
        ARRAY['numeric', 'float8', 'float4', 'int2', 'int4', 'int8']::regtype[]);
    IF create_agent.features_column IS NOT NULL THEN
        PERFORM rl_mlops._check_source_column(create_agent.source, create_agent.features_column, 'features',
            ARRAY['float4[]', 'float8[]', 'numeric[]']::regtype[]);
        IF nf IS NULL THEN
            EXECUTE format('SELECT array_length(%I, 1) FROM %s WHERE %I IS NOT NULL LIMIT 1',
                           create_agent.features_column, create_agent.source, create_agent.features_column)
               INTO nf;
            IF nf IS NULL THEN
                RAISE EXCEPTION 'cannot infer the number of features of column "%"', create_agent.features_column
                    USING ERRCODE = 'invalid_parameter_value',
                          HINT = 'Pass n_features => N.';
            END IF;
        END IF;
    ELSIF coalesce(nf, 0) <> 0 THEN
        RAISE EXCEPTION 'n_features needs a features column'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Pass features_column => ''...'', or leave n_features out.';
    END IF;

    INSERT INTO rl_mlops.agents AS ag (name, source, symbol_column, time_column, price_column,
                                 features_column, n_features, window_size, hidden_size)
    VALUES (create_agent.name, create_agent.source, create_agent.symbol_column,
            create_agent.time_column, create_agent.price_column, create_agent.features_column,
            coalesce(nf, 0), create_agent.window_size, create_agent.hidden_size)
    RETURNING * INTO a;
    RETURN a;
EXCEPTION WHEN unique_violation THEN
    RAISE EXCEPTION 'agent "%" already exists', create_agent.name
        USING ERRCODE = 'duplicate_object',
              HINT = 'Change its settings with rl_mlops.configure().';
END
$$;

-- Change training, retention, scheduler and deployment-gate settings.
-- NULL leaves a setting as it is.  The architecture and the source are
-- fixed for an agent's life: its checkpoints depend on them.
CREATE FUNCTION rl_mlops.configure(
    name text,
    initial_epochs integer DEFAULT NULL,
    incremental_epochs integer DEFAULT NULL,
    data_window interval DEFAULT NULL,
    holdout_fraction double precision DEFAULT NULL,
    episode_length integer DEFAULT NULL,
    transaction_cost double precision DEFAULT NULL,
    learning_rate double precision DEFAULT NULL,
    gamma double precision DEFAULT NULL,
    gae_lambda double precision DEFAULT NULL,
    clip_range double precision DEFAULT NULL,
    update_passes integer DEFAULT NULL,
    minibatch_size integer DEFAULT NULL,
    value_coef double precision DEFAULT NULL,
    entropy_coef double precision DEFAULT NULL,
    max_grad_norm double precision DEFAULT NULL,
    seed bigint DEFAULT NULL,
    threads integer DEFAULT NULL,
    retention_days integer DEFAULT NULL,
    keep_min integer DEFAULT NULL,
    scheduler_enabled boolean DEFAULT NULL,
    interval_days integer DEFAULT NULL,
    deploy_gate text DEFAULT NULL,
    gate_min_delta double precision DEFAULT NULL)
RETURNS rl_mlops.agents
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    a rl_mlops.agents;
BEGIN
    PERFORM rl_mlops._lock_agent(configure.name);
    UPDATE rl_mlops.agents SET
        initial_epochs = coalesce(configure.initial_epochs, initial_epochs),
        incremental_epochs = coalesce(configure.incremental_epochs, incremental_epochs),
        data_window = coalesce(configure.data_window, data_window),
        holdout_fraction = coalesce(configure.holdout_fraction, holdout_fraction),
        episode_length = coalesce(configure.episode_length, episode_length),
        transaction_cost = coalesce(configure.transaction_cost, transaction_cost),
        learning_rate = coalesce(configure.learning_rate, learning_rate),
        gamma = coalesce(configure.gamma, gamma),
        gae_lambda = coalesce(configure.gae_lambda, gae_lambda),
        clip_range = coalesce(configure.clip_range, clip_range),
        update_passes = coalesce(configure.update_passes, update_passes),
        minibatch_size = coalesce(configure.minibatch_size, minibatch_size),
        value_coef = coalesce(configure.value_coef, value_coef),
        entropy_coef = coalesce(configure.entropy_coef, entropy_coef),
        max_grad_norm = coalesce(configure.max_grad_norm, max_grad_norm),
        seed = coalesce(configure.seed, seed),
        threads = coalesce(configure.threads, threads),
        retention_days = coalesce(configure.retention_days, retention_days),
        keep_min = coalesce(configure.keep_min, keep_min),
        scheduler_enabled = coalesce(configure.scheduler_enabled, scheduler_enabled),
        interval_days = coalesce(configure.interval_days, interval_days),
        deploy_gate = coalesce(configure.deploy_gate, deploy_gate),
        gate_min_delta = coalesce(configure.gate_min_delta, gate_min_delta)
     WHERE name = configure.name
    RETURNING * INTO a;
    RETURN a;
END
$$;

--------------------------------------------------------------------------
-- Checkpoints in and out
--------------------------------------------------------------------------

-- Register a checkpoint made elsewhere (for example in PyTorch).  The
-- bytes must pass the strict parser and match the agent's architecture;
-- the new version starts in state 'registered'.
CREATE FUNCTION rl_mlops.import_model(
    agent text,
    checkpoint bytea,
    training_epochs integer DEFAULT NULL,
    training_loss double precision DEFAULT NULL,
    metrics jsonb DEFAULT '{}',
    parent_version text DEFAULT NULL)
RETURNS text
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    a rl_mlops.agents := rl_mlops._lock_agent(import_model.agent);
    s record;
    v text;
BEGIN
    IF import_model.checkpoint IS NULL THEN
        RAISE EXCEPTION 'checkpoint must not be null' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF import_model.parent_version IS NOT NULL THEN
        PERFORM rl_mlops._model(a.name, import_model.parent_version);
    END IF;
    s := rl_mlops._store_checkpoint(import_model.checkpoint, a.window_size, a.n_features, a.hidden_size);
    v := rl_mlops._new_version(a.name);
    INSERT INTO rl_mlops.models (agent, version, checkpoint, sha256, size_bytes, origin,
                                 parent_version, training_epochs, training_loss, sigma, metrics)
    VALUES (a.name, v, s.checkpoint, s.sha256, s.size_bytes, 'imported',
            import_model.parent_version, import_model.training_epochs, import_model.training_loss,
            s.sigma, coalesce(import_model.metrics, '{}'));
    RETURN v;
END
$$;

-- The checkpoint bytes of a version (default: the active one), verified
-- against the recorded sha256.
CREATE FUNCTION rl_mlops.export_model(agent text, version text DEFAULT NULL)
RETURNS bytea
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    m rl_mlops.models;
BEGIN
    IF export_model.version IS NULL THEN
        SELECT * INTO m FROM rl_mlops.models
         WHERE models.agent = export_model.agent AND state = 'active';
        IF NOT FOUND THEN
            PERFORM rl_mlops._agent(export_model.agent);
            RAISE EXCEPTION 'agent "%" has no active model', export_model.agent
                USING ERRCODE = 'no_data_found',
                      HINT = 'Name a version, or deploy one first.';
        END IF;
    ELSE
        m := rl_mlops._model(export_model.agent, export_model.version);
    END IF;
    RETURN rl_mlops._read_checkpoint(m.checkpoint, m.sha256);
END
$$;

--------------------------------------------------------------------------
-- Validation, deployment, rollback
--------------------------------------------------------------------------

-- The failed checks of a validation result, as "check: message; ...".
CREATE FUNCTION rl_mlops._failed_checks(p_validation jsonb)
RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT string_agg(key || ': ' || (value ->> 'message'), '; ' ORDER BY key)
      FROM jsonb_each(p_validation -> 'checks')
     WHERE NOT (value ->> 'ok')::boolean
$$;

-- Run the seed's checks on a version and record each check's result.
-- registered/validated/rejected versions become 'validated' or
-- 'rejected'; an active or archived version keeps its state.
CREATE FUNCTION rl_mlops.validate_model(agent text, version text)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    a rl_mlops.agents := rl_mlops._lock_agent(validate_model.agent);
    m rl_mlops.models := rl_mlops._model(a.name, validate_model.version);
    result jsonb;
BEGIN
    result := rl_mlops._validate_checkpoint(m.checkpoint, m.sha256, a.window_size,
                                            a.n_features, a.hidden_size)
              || jsonb_build_object('validated_at', now());
    UPDATE rl_mlops.models
       SET validation = result,
           validated_at = now(),
           state = CASE
                     WHEN state IN ('active', 'archived') THEN state
                     WHEN (result ->> 'ok')::boolean THEN 'validated'
                     ELSE 'rejected'
                   END
     WHERE models.agent = a.name AND models.version = m.version;
    IF NOT (result ->> 'ok')::boolean THEN
        RAISE WARNING 'model version "%" of agent "%" failed validation', m.version, a.name
            USING DETAIL = rl_mlops._failed_checks(result);
    END IF;
    RETURN result;
END
$$;

-- Make a version the active one: archive the current one, record the
-- deployment, drop serving caches at commit, then apply retention.  The
-- caller holds the agent's lock; the version is checked again right here.
CREATE FUNCTION rl_mlops._activate(a rl_mlops.agents, m rl_mlops.models, p_action text, p_reason text)
RETURNS text
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    current_version text;
    recheck jsonb;
BEGIN
    IF m.state = 'registered' THEN
        RAISE EXCEPTION 'model version "%" of agent "%" has not been validated', m.version, a.name
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = format('Run rl_mlops.validate_model(%L, %L) first.', a.name, m.version);
    ELSIF m.state = 'rejected' THEN
        RAISE EXCEPTION 'model version "%" of agent "%" was rejected by validation', m.version, a.name
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  DETAIL = coalesce(rl_mlops._failed_checks(m.validation), 'No validation recorded.');
    END IF;

    -- The large object may have changed since validation: check it again.
    recheck := rl_mlops._validate_checkpoint(m.checkpoint, m.sha256, a.window_size,
                                             a.n_features, a.hidden_size);
    IF NOT (recheck ->> 'ok')::boolean THEN
        RAISE EXCEPTION 'model version "%" of agent "%" no longer passes validation', m.version, a.name
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  DETAIL = rl_mlops._failed_checks(recheck);
    END IF;

    SELECT version INTO current_version FROM rl_mlops.models
     WHERE agent = a.name AND state = 'active';
    UPDATE rl_mlops.models SET state = 'archived', archived_at = now()
     WHERE agent = a.name AND state = 'active';
    UPDATE rl_mlops.models SET state = 'active', deployed_at = now(), archived_at = NULL
     WHERE agent = a.name AND version = m.version;
    INSERT INTO rl_mlops.deployments (agent, version, previous_version, action, reason)
    VALUES (a.name, m.version, current_version, p_action, p_reason);
    PERFORM rl_mlops._invalidate_serving();
    RAISE LOG 'rl_mlops: deployed model version % of agent % (%)', m.version, a.name, p_action;
    PERFORM rl_mlops.cleanup_old_models(a.name);
    RETURN m.version;
END
$$;

-- Deploy a validated (or archived) version.
CREATE FUNCTION rl_mlops.deploy_model(agent text, version text, reason text DEFAULT NULL)
RETURNS text
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    a rl_mlops.agents := rl_mlops._lock_agent(deploy_model.agent);
    m rl_mlops.models := rl_mlops._model(a.name, deploy_model.version);
BEGIN
    IF m.state = 'active' THEN
        RAISE NOTICE 'model version "%" of agent "%" is already active', m.version, a.name;
        RETURN m.version;
    END IF;
    RETURN rl_mlops._activate(a, m, 'deploy', deploy_model.reason);
END
$$;

-- Go back to the version that was active before the current one was
-- deployed (repeated rollbacks walk further back), or to a named version.
CREATE FUNCTION rl_mlops.rollback(agent text, to_version text DEFAULT NULL, reason text DEFAULT NULL)
RETURNS text
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    a rl_mlops.agents := rl_mlops._lock_agent(rollback.agent);
    current_version text;
    target text := rollback.to_version;
    m rl_mlops.models;
BEGIN
    SELECT version INTO current_version FROM rl_mlops.models
     WHERE models.agent = a.name AND state = 'active';
    IF current_version IS NULL THEN
        RAISE EXCEPTION 'agent "%" has no active model to roll back', a.name
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    IF target IS NULL THEN
        SELECT previous_version INTO target FROM rl_mlops.deployments d
         WHERE d.agent = a.name AND d.version = current_version AND d.action = 'deploy'
         ORDER BY d.id DESC LIMIT 1;
        IF target IS NULL THEN
            RAISE EXCEPTION 'agent "%" has no earlier deployment to roll back to', a.name
                USING ERRCODE = 'object_not_in_prerequisite_state',
                      DETAIL = format('Version %s was deployed with no model active before it.', current_version),
                      HINT = 'Name a version: rl_mlops.rollback(agent, to_version => ''...'').';
        END IF;
    END IF;
    IF target = current_version THEN
        RAISE EXCEPTION 'model version "%" of agent "%" is already active', target, a.name
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    SELECT * INTO m FROM rl_mlops.models WHERE models.agent = a.name AND version = target;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'cannot roll back agent "%" to version "%": it no longer exists', a.name, target
            USING ERRCODE = 'undefined_object',
                  HINT = 'Retention removed it; pin versions you want to keep with rl_mlops.pin_model().';
    END IF;
    RETURN rl_mlops._activate(a, m, 'rollback', rollback.reason);
END
$$;

--------------------------------------------------------------------------
-- Retention
--------------------------------------------------------------------------

-- Remove archived and rejected versions older than retention_days; never
-- the active one, a pinned one, or one of the newest keep_min.  Their large
-- objects are unlinked in the same transaction.
CREATE FUNCTION rl_mlops.cleanup_old_models(agent text, dry_run boolean DEFAULT false)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    a rl_mlops.agents := rl_mlops._lock_agent(cleanup_old_models.agent);
    victims text[];
    freed bigint;
BEGIN
    SELECT coalesce(array_agg(version ORDER BY created_at), '{}'), coalesce(sum(size_bytes), 0)
      INTO victims, freed
      FROM (SELECT version, state, pinned, size_bytes, created_at,
                   coalesce(archived_at, validated_at, created_at) AS since,
                   row_number() OVER (ORDER BY created_at DESC, version DESC) AS newest_rank
              FROM rl_mlops.models WHERE models.agent = a.name) m
     WHERE state IN ('archived', 'rejected')
       AND NOT pinned
       AND newest_rank > a.keep_min
       AND since < now() - make_interval(days => a.retention_days);

    IF NOT dry_run AND cardinality(victims) > 0 THEN
        -- a large object unlinked behind the registry's back must not
        -- block retention (and with it every deploy)
        PERFORM pg_catalog.lo_unlink(checkpoint)
           FROM rl_mlops.models
          WHERE models.agent = a.name AND version = ANY (victims)
            AND EXISTS (SELECT 1 FROM pg_catalog.pg_largeobject_metadata l
                         WHERE l.oid = models.checkpoint);
        DELETE FROM rl_mlops.models WHERE models.agent = a.name AND version = ANY (victims);
        RAISE LOG 'rl_mlops: removed % old model(s) of agent %, % bytes', cardinality(victims), a.name, freed;
    END IF;
    RETURN jsonb_build_object('agent', a.name, 'dry_run', dry_run,
                              'removed', to_jsonb(victims), 'count', cardinality(victims),
                              'bytes_freed', freed, 'retention_days', a.retention_days,
                              'keep_min', a.keep_min);
END
$$;

-- Pinned versions are never removed by retention.
CREATE FUNCTION rl_mlops.pin_model(agent text, version text, pinned boolean DEFAULT true)
RETURNS boolean
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    a rl_mlops.agents := rl_mlops._lock_agent(pin_model.agent);
    m rl_mlops.models := rl_mlops._model(a.name, pin_model.version);
BEGIN
    UPDATE rl_mlops.models SET pinned = pin_model.pinned
     WHERE models.agent = a.name AND models.version = m.version;
    RETURN pin_model.pinned;
END
$$;

CREATE FUNCTION rl_mlops.unpin_model(agent text, version text)
RETURNS boolean
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT rl_mlops.pin_model(agent, version, false) $$;

-- Remove an agent with all its versions and their large objects.
CREATE FUNCTION rl_mlops.drop_agent(name text)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    a rl_mlops.agents := rl_mlops._lock_agent(drop_agent.name);
    n integer;
BEGIN
    IF EXISTS (SELECT 1 FROM rl_mlops.runs r WHERE r.agent = a.name
                AND rl_mlops._run_unfinished(r.state)) THEN
        RAISE EXCEPTION 'agent "%" has a training run in progress', a.name
            USING ERRCODE = 'object_in_use',
                  HINT = 'Cancel it with rl_mlops.cancel_retrain() first.';
    END IF;
    PERFORM pg_catalog.lo_unlink(checkpoint) FROM rl_mlops.models m
     WHERE m.agent = a.name
       AND EXISTS (SELECT 1 FROM pg_catalog.pg_largeobject_metadata l WHERE l.oid = m.checkpoint);
    DELETE FROM rl_mlops.models m WHERE m.agent = a.name;
    GET DIAGNOSTICS n = ROW_COUNT;
    DELETE FROM rl_mlops.deployments d WHERE d.agent = a.name;
    DELETE FROM rl_mlops.runs r WHERE r.agent = a.name;
    DELETE FROM rl_mlops.agents ag WHERE ag.name = a.name;
    -- other backends drop the agent's cached weights at commit
    PERFORM rl_mlops._invalidate_serving();
    RETURN jsonb_build_object('agent', a.name, 'models_removed', n);
END
$$;

-- Remove every agent and every checkpoint large object: the documented
-- step before DROP EXTENSION (the event trigger below does it for a plain
-- "DROP EXTENSION rl_mlops").
CREATE FUNCTION rl_mlops.drop_all()
RETURNS integer
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    n integer := 0;
    agent_name text;
BEGIN
    FOR agent_name IN SELECT name FROM rl_mlops.agents ORDER BY name LOOP
        PERFORM rl_mlops.drop_agent(agent_name);
        n := n + 1;
    END LOOP;
    RETURN n;
END
$$;

-- Event trigger: a statement that is exactly "DROP EXTENSION [IF EXISTS]
-- rl_mlops [CASCADE|RESTRICT]" first unlinks the checkpoints, in the same
-- transaction (so a failed DROP keeps them).  Anything less certain (a
-- multi-statement string, DROP SCHEMA ... CASCADE) is left alone: run
-- rl_mlops.drop_all() first in that case.
CREATE FUNCTION rl_mlops._on_drop_extension()
RETURNS event_trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF current_query() ~* '^\s*drop\s+extension\s+(if\s+exists\s+)?"?rl_mlops"?(\s+(cascade|restrict))?\s*;?\s*$' THEN
        PERFORM rl_mlops.drop_all();
    END IF;
END
$$;

CREATE EVENT TRIGGER rl_mlops_drop_extension ON ddl_command_start
    WHEN TAG IN ('DROP EXTENSION')
    EXECUTE FUNCTION rl_mlops._on_drop_extension();

--------------------------------------------------------------------------
-- Status and metadata in the seed's JSON shapes (DESIGN section 6)
--------------------------------------------------------------------------

CREATE FUNCTION rl_mlops.status(agent text DEFAULT 'default')
RETURNS jsonb
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    a rl_mlops.agents := rl_mlops._agent(status.agent);
    m rl_mlops.models;
    total integer;
    running rl_mlops.runs;
BEGIN
    -- a run whose worker died is marked failed the next time anyone looks
    PERFORM rl_mlops._reap_dead_runs(a.name);
    SELECT * INTO m FROM rl_mlops.models WHERE models.agent = a.name AND state = 'active';
    SELECT count(*) INTO total FROM rl_mlops.models WHERE models.agent = a.name;
    SELECT * INTO running FROM rl_mlops.runs r
     WHERE r.agent = a.name AND rl_mlops._run_unfinished(r.state)
     ORDER BY r.id DESC LIMIT 1;
    RETURN jsonb_build_object(
        'success', true,
        'status', jsonb_build_object(
            'agent', a.name,
            'model_loaded', m.version IS NOT NULL,
            'model_info', jsonb_build_object(
                'current_version', m.version,
                'current_path', CASE WHEN m.version IS NOT NULL
                                     THEN format('pg_largeobject:%s/%s', m.checkpoint, m.file_name) END,
                'checkpoint_oid', m.checkpoint::bigint,
                'sha256', m.sha256,
                'deployed_at', m.deployed_at,
                'total_models', total,
                'retention_days', a.retention_days),
            'scheduler', jsonb_build_object(
                'enabled', a.scheduler_enabled,
                'is_training', running.id IS NOT NULL,
                'last_retrain_time', a.last_retrain_time,
                'next_retrain_time', a.last_retrain_time + make_interval(days => a.interval_days),
                'interval_days', a.interval_days,
                'cron_job', (SELECT CASE WHEN j.jobid IS NOT NULL THEN jsonb_build_object(
                                 'jobid', j.jobid, 'schedule', j.schedule, 'active', j.active) END
                               FROM rl_mlops._cron_job(a.name) j),
                'run', CASE WHEN running.id IS NOT NULL THEN jsonb_build_object(
                           'id', running.id, 'state', running.state, 'epoch', running.epoch,
                           'epochs', running.epochs, 'loss', running.loss) END)));
END
$$;

CREATE FUNCTION rl_mlops.metadata(agent text DEFAULT 'default')
RETURNS jsonb
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    a rl_mlops.agents := rl_mlops._agent(metadata.agent);
BEGIN
    RETURN jsonb_build_object(
        'models', coalesce((
            SELECT jsonb_agg(jsonb_build_object(
                       'version', m.version,
                       'deployed_at', m.deployed_at,
                       'source_path', format('pg_largeobject:%s/%s', m.checkpoint, m.file_name),
                       'active_path', CASE WHEN m.state = 'active'
                                           THEN format('pg_largeobject:%s/%s', m.checkpoint, m.file_name) END,
                       'training_epochs', m.training_epochs,
                       'training_loss', m.training_loss,
                       'state', m.state,
                       'created_at', m.created_at,
                       'sha256', m.sha256,
                       'parent_version', m.parent_version,
                       'metrics', m.metrics)
                   ORDER BY m.created_at, m.version)
              FROM rl_mlops.models m WHERE m.agent = a.name), '[]'),
        'current_version', (SELECT version FROM rl_mlops.models m
                             WHERE m.agent = a.name AND m.state = 'active'),
        'last_retrain_time', a.last_retrain_time,
        'next_retrain_time', a.last_retrain_time + make_interval(days => a.interval_days));
END
$$;

--------------------------------------------------------------------------
-- Views for psql
--------------------------------------------------------------------------

CREATE VIEW rl_mlops.models_overview AS
SELECT agent, version, state, pinned, origin, parent_version,
       training_epochs, round(training_loss::numeric, 6) AS training_loss,
       pg_catalog.pg_size_pretty(size_bytes) AS size,
       (metrics #>> '{holdout,sharpe}')::double precision AS holdout_sharpe,
       (validation ->> 'ok')::boolean AS valid,
       created_at, deployed_at, archived_at,
       checkpoint, left(sha256, 12) AS sha256_prefix, file_name
  FROM rl_mlops.models
 ORDER BY agent, created_at DESC, version DESC;

CREATE VIEW rl_mlops.deployment_history AS
SELECT id, agent, deployed_at, action, version, previous_version, deployed_by, reason
  FROM rl_mlops.deployments
 ORDER BY agent, id DESC;

CREATE VIEW rl_mlops.current_models AS
SELECT a.name AS agent, m.version, m.deployed_at, now() - m.deployed_at AS active_for,
       m.training_epochs, m.training_loss, m.checkpoint, m.sha256,
       (SELECT count(*) FROM rl_mlops.models x WHERE x.agent = a.name) AS total_models
  FROM rl_mlops.agents a
  LEFT JOIN rl_mlops.models m ON m.agent = a.name AND m.state = 'active'
 ORDER BY a.name;

--------------------------------------------------------------------------
-- Privileges (DESIGN section 9): mutating and internal functions are not
-- for PUBLIC; reading needs USAGE on the schema and SELECT on the tables.
--------------------------------------------------------------------------

REVOKE ALL ON FUNCTION
    rl_mlops._caller(),
    rl_mlops._failed_checks(jsonb),
    rl_mlops._store_checkpoint(bytea, integer, integer, integer),
    rl_mlops._read_checkpoint(oid, text),
    rl_mlops._validate_checkpoint(oid, text, integer, integer, integer),
    rl_mlops._invalidate_serving(),
    rl_mlops._lock_agent(text),
    rl_mlops._model(text, text),
    rl_mlops._new_version(text),
    rl_mlops._check_source_column(regclass, name, text, regtype[]),
    rl_mlops._activate(rl_mlops.agents, rl_mlops.models, text, text),
    rl_mlops.create_agent(text, regclass, name, name, name, name, integer, integer, integer),
    rl_mlops.configure(text, integer, integer, interval, double precision, integer,
                       double precision, double precision, double precision, double precision,
                       double precision, integer, integer, double precision, double precision,
                       double precision, bigint, integer, integer, integer, boolean, integer,
                       text, double precision),
    rl_mlops.import_model(text, bytea, integer, double precision, jsonb, text),
    rl_mlops.export_model(text, text),
    rl_mlops.validate_model(text, text),
    rl_mlops.deploy_model(text, text, text),
    rl_mlops.rollback(text, text, text),
    rl_mlops.cleanup_old_models(text, boolean),
    rl_mlops.pin_model(text, text, boolean),
    rl_mlops.unpin_model(text, text),
    rl_mlops.drop_agent(text),
    rl_mlops.drop_all(),
    rl_mlops._on_drop_extension()
FROM PUBLIC;
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
--------------------------------------------------------------------------
-- Synthetic market data, for the demo, the tests and first experiments
--------------------------------------------------------------------------

-- Bars of "symbols" symbols whose log returns follow AR(1):
-- r_t = phi * r_{t-1} + sigma * e_t, e_t standard normal (Box-Muller on a
-- seeded random()).  phi > 0 is momentum an agent can learn.  The same
-- seed gives the same bars.
CREATE FUNCTION rl_mlops.synthetic_bars(
    symbols integer DEFAULT 3,
    bars integer DEFAULT 10000,
    phi double precision DEFAULT 0.25,
    sigma double precision DEFAULT 0.01,
    start_at timestamptz DEFAULT '2026-01-01 00:00:00+00',
    step interval DEFAULT '1 minute',
    seed double precision DEFAULT 0.42)
RETURNS TABLE (symbol text, ts timestamptz, price double precision)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r double precision;
    p double precision;
BEGIN
    IF symbols NOT BETWEEN 1 AND 1000 OR bars NOT BETWEEN 2 AND 10000000 THEN
        RAISE EXCEPTION 'symbols must be between 1 and 1000 and bars between 2 and 10000000'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF seed NOT BETWEEN -1 AND 1 THEN
        RAISE EXCEPTION 'seed must be between -1 and 1 (it is passed to setseed)'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM setseed(seed);
    FOR s IN 1 .. symbols LOOP
        r := 0;
        p := 100;
        FOR i IN 0 .. bars - 1 LOOP
            symbol := 'SYM' || lpad(s::text, 3, '0');
            ts := start_at + step * i;
            price := p;
            RETURN NEXT;
            r := phi * r + sigma * sqrt(-2 * ln(1 - random())) * cos(2 * pi() * random());
            p := p * exp(r);
        END LOOP;
    END LOOP;
END
$$;
--------------------------------------------------------------------------
-- Serving (DESIGN section 8)
--
-- The active model's weights are parsed once per backend and kept until a
-- deploy or rollback commits (a relcache invalidation of rl_mlops.models,
-- replayed on hot standbys too).  The registry is read as the extension
-- owner; the source relation as the caller.  None of these functions is
-- granted to PUBLIC: GRANT USAGE ON SCHEMA rl_mlops and EXECUTE on them
-- (see the README) to the roles that serve.
--------------------------------------------------------------------------

-- The greedy action for an observation: 0 = short, 1 = flat, 2 = long.
-- obs is window scaled returns, the current position (-1, 0, 1), then the
-- agent's features, exactly as in training.
CREATE FUNCTION rl_mlops.act(obs real[], agent text DEFAULT 'default')
RETURNS integer
AS 'MODULE_PATHNAME', 'rl_act'
LANGUAGE C STABLE STRICT PARALLEL SAFE;

-- The policy's probabilities of the three actions (they sum to 1).
CREATE FUNCTION rl_mlops.policy(obs real[], agent text DEFAULT 'default')
RETURNS real[]
AS 'MODULE_PATHNAME', 'rl_policy'
LANGUAGE C STABLE STRICT PARALLEL SAFE;

-- The critic's value of an observation.
CREATE FUNCTION rl_mlops.value(obs real[], agent text DEFAULT 'default')
RETURNS real
AS 'MODULE_PATHNAME', 'rl_value'
LANGUAGE C STABLE STRICT PARALLEL SAFE;

-- The position to hold from the last bar of a symbol at or before "at",
-- from an observation built from the source relation as in training.  The
-- "position" argument is the position held now; NULL means: the position
-- the greedy policy reaches over the preceding episode_length bars,
-- starting flat (as training episodes and backtests start).  The result's
-- "position" is the one to hold from this bar on (action - 1).
-- PARALLEL RESTRICTED: the source may be a temporary table.
CREATE FUNCTION rl_mlops.decide(
    agent text,
    symbol text,
    at timestamptz DEFAULT now(),
    "position" integer DEFAULT NULL,
    OUT "position" integer,
    OUT action integer,
    OUT probabilities real[],
    OUT ts timestamptz,
    OUT price double precision,
    OUT version text)
RETURNS record
AS 'MODULE_PATHNAME', 'rl_decide'
LANGUAGE C STABLE PARALLEL RESTRICTED;

-- A greedy backtest of one symbol over [from, to], one row per decision:
-- the bar's time and price, the position held until the next bar, the
-- reward (net log return / sigma) earned over it and the equity after it
-- (starting at 1).  version NULL = the active model.
CREATE FUNCTION rl_mlops.backtest(
    agent text,
    symbol text,
    "from" timestamptz,
    "to" timestamptz,
    version text DEFAULT NULL)
RETURNS TABLE (
    ts timestamptz,
    price double precision,
    "position" integer,
    reward double precision,
    equity double precision)
AS 'MODULE_PATHNAME', 'rl_backtest_rows'
LANGUAGE C STABLE PARALLEL RESTRICTED ROWS 1000;

-- The same backtest's metrics in one row.  Sharpe is annualised with
-- periods_per_year = 365.25 days / the median spacing of the bars used.
CREATE FUNCTION rl_mlops.backtest_summary(
    agent text,
    symbol text,
    "from" timestamptz,
    "to" timestamptz,
    version text DEFAULT NULL,
    OUT version text,
    OUT steps bigint,
    OUT total_log_return double precision,
    OUT sharpe double precision,
    OUT max_drawdown double precision,
    OUT turnover double precision,
    OUT buy_hold_log_return double precision,
    OUT periods_per_year double precision)
RETURNS record
AS 'MODULE_PATHNAME', 'rl_backtest_summary'
LANGUAGE C STABLE PARALLEL RESTRICTED;

-- What this backend has cached: the version it serves per agent, whether
-- the entry is up to date, how often it read the registry and how often
-- it parsed a checkpoint.
CREATE FUNCTION rl_mlops.serving_cache(
    OUT agent text,
    OUT version text,
    OUT up_to_date boolean,
    OUT registry_reads bigint,
    OUT loads bigint)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'rl_serving_cache'
LANGUAGE C VOLATILE PARALLEL RESTRICTED ROWS 10;

REVOKE ALL ON FUNCTION
    rl_mlops.act(real[], text),
    rl_mlops.policy(real[], text),
    rl_mlops.value(real[], text),
    rl_mlops.decide(text, text, timestamptz, integer),
    rl_mlops.backtest(text, text, timestamptz, timestamptz, text),
    rl_mlops.backtest_summary(text, text, timestamptz, timestamptz, text),
    rl_mlops.serving_cache()
FROM PUBLIC;
--------------------------------------------------------------------------
-- Scheduled retraining with pg_cron (DESIGN section 6)
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
CREATE FUNCTION rl_mlops._cron_job_name(p_agent text)
RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE WHEN octet_length('rl_mlops_retrain_' || p_agent) <= 63
                THEN 'rl_mlops_retrain_' || p_agent
                ELSE 'rl_mlops_retrain_' || md5(p_agent) END
$$;

-- Refuse, with the steps to fix it, when pg_cron is not usable here.
CREATE FUNCTION rl_mlops._require_pg_cron()
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

-- The agent's pg_cron job, if pg_cron is installed and the job visible.
CREATE FUNCTION rl_mlops._cron_job(p_agent text, OUT jobid bigint, OUT schedule text,
                                   OUT active boolean, OUT username text)
RETURNS record
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_catalog.pg_extension WHERE extname = 'pg_cron') THEN
        EXECUTE 'SELECT jobid, schedule, active, username::text FROM cron.job WHERE jobname = $1'
           INTO jobid, schedule, active, username
          USING rl_mlops._cron_job_name(p_agent);
    END IF;
END
$$;

-- Is a retrain due?  {"due", "reason", "next_retrain_time", "run_id"}.
-- The decision of retrain_if_due, readable on its own.
CREATE FUNCTION rl_mlops.retrain_due(agent text DEFAULT 'default')
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

-- What the pg_cron job calls: start a run (trigger 'schedule') when due,
-- otherwise do nothing and say why.  Runs as the job's role, so the run
-- reads the data with that role's privileges.
CREATE FUNCTION rl_mlops.retrain_if_due(agent text DEFAULT 'default')
RETURNS jsonb
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    decision jsonb := rl_mlops.retrain_due(retrain_if_due.agent);
    run_id bigint;
BEGIN
    IF NOT (decision ->> 'due')::boolean THEN
        RAISE LOG 'rl_mlops: retrain of agent % not started: %', retrain_if_due.agent, decision ->> 'reason';
        RETURN decision || jsonb_build_object('started', false);
    END IF;
    run_id := rl_mlops.retrain(retrain_if_due.agent, async => true, trigger => 'schedule');
    RAISE LOG 'rl_mlops: Starting automated retraining of agent % (run %)', retrain_if_due.agent, run_id;
    RETURN decision || jsonb_build_object('started', true, 'run_id', run_id);
END
$$;

-- Create or update the agent's pg_cron job and enable the scheduler.  The
-- job belongs to (and runs as) the role calling this.
CREATE FUNCTION rl_mlops.schedule_retraining(
    agent text DEFAULT 'default',
    interval_days integer DEFAULT 7,
    check_schedule text DEFAULT '0 * * * *')
RETURNS bigint
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    job bigint;
    other text;
BEGIN
    PERFORM rl_mlops._require_pg_cron();
    -- one job per agent: pg_cron names jobs per role, so check other roles
    SELECT j.username INTO other FROM rl_mlops._cron_job(schedule_retraining.agent) j;
    IF other IS NOT NULL AND other <> current_user THEN
        RAISE EXCEPTION 'retraining of agent "%" is already scheduled by role "%"',
                        schedule_retraining.agent, other
            USING ERRCODE = 'duplicate_object',
                  HINT = 'That role (or a superuser) must run rl_mlops.unschedule_retraining() first.';
    END IF;
    PERFORM rl_mlops.configure(schedule_retraining.agent,
                               interval_days => schedule_retraining.interval_days,
                               scheduler_enabled => true);
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
CREATE FUNCTION rl_mlops.unschedule_retraining(agent text DEFAULT 'default')
RETURNS boolean
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    removed boolean := false;
    job bigint;
BEGIN
    PERFORM rl_mlops._require_pg_cron();
    PERFORM rl_mlops.configure(unschedule_retraining.agent, scheduler_enabled => false);
    SELECT j.jobid INTO job FROM rl_mlops._cron_job(unschedule_retraining.agent) j;
    IF job IS NOT NULL THEN
        -- pg_cron itself refuses a job of another role unless superuser
        EXECUTE 'SELECT cron.unschedule($1::bigint)' INTO removed USING job;
    END IF;
    RETURN removed;
END
$$;

-- The scheduler of every agent, one row each (status()'s "scheduler").
CREATE VIEW rl_mlops.scheduler_status AS
SELECT a.name AS agent,
       a.scheduler_enabled AS enabled,
       a.interval_days,
       a.last_retrain_time,
       a.last_retrain_time + make_interval(days => a.interval_days) AS next_retrain_time,
       r.id IS NOT NULL AS is_training,
       r.id AS run_id, r.state AS run_state, r.epoch, r.epochs,
       j.jobid AS cron_jobid, j.schedule AS cron_schedule, j.active AS cron_active,
       j.username AS cron_role
  FROM rl_mlops.agents a
  LEFT JOIN LATERAL (SELECT * FROM rl_mlops.runs x
                      WHERE x.agent = a.name
                        AND rl_mlops._run_unfinished(x.state)
                        AND rl_mlops._run_lock_held(a.name)
                      ORDER BY x.id DESC LIMIT 1) r ON true
  LEFT JOIN LATERAL rl_mlops._cron_job(a.name) j ON true
 ORDER BY a.name;

REVOKE ALL ON FUNCTION
    rl_mlops.retrain_if_due(text),
    rl_mlops.schedule_retraining(text, integer, text),
    rl_mlops.unschedule_retraining(text)
FROM PUBLIC;
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
CREATE TYPE rl_mlops.integrity_problem AS (
    agent text,     -- NULL for an orphan large object (no agent owns it)
    kind text,      -- what is wrong, see check_integrity()
    object text,    -- the version, run or large object concerned
    detail text     -- a full sentence
);

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
--   run_without_worker    a run is unfinished but no worker of its agent is
--                         alive (status() or the next retrain marks it failed)
--   several_runs          more than one unfinished run of one agent
--   orphan_checkpoint     (all agents only) a large object of the extension
--                         owner that holds an rl_mlops checkpoint but that no
--                         version references
-- Each check is one statement (one snapshot), and a problem that a
-- concurrent change could explain is confirmed with a fresh snapshot, so a
-- deploy or cleanup running meanwhile is not reported as a problem.
CREATE FUNCTION rl_mlops.check_integrity(agent text DEFAULT NULL)
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
    dead text[] := '{}';
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
        SELECT m.agent, m.version, m.state, m.checkpoint, m.sha256, m.validation,
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
                                           r.hidden_size);
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
    -- then the workers' locks, then the candidates again: a run that ended
    -- meanwhile is final by then, and a run started meanwhile is not a
    -- candidate.  The primary's locks are not visible on a standby.
    IF NOT pg_catalog.pg_is_in_recovery() THEN
        SELECT array_agg(x.id) INTO unfinished FROM rl_mlops.runs x
         WHERE (check_integrity.agent IS NULL OR x.agent = check_integrity.agent)
           AND rl_mlops._run_unfinished(x.state);
        IF unfinished IS NOT NULL THEN
            SELECT coalesce(array_agg(d.agent), '{}') INTO dead
              FROM (SELECT DISTINCT x.agent FROM rl_mlops.runs x WHERE x.id = ANY (unfinished)) d
             WHERE NOT rl_mlops._run_lock_held(d.agent);
            FOR r IN
                SELECT x.agent, x.id, x.state, x.worker_pid FROM rl_mlops.runs x
                 WHERE x.id = ANY (unfinished) AND x.agent = ANY (dead)
                   AND rl_mlops._run_unfinished(x.state)
                 ORDER BY x.id
            LOOP
                p := (r.agent, 'run_without_worker', 'run ' || r.id,
                      format('Run %s is %s but its worker (PID %s) is gone; status() or the next retrain() marks it failed.',
                             r.id, r.state, coalesce(r.worker_pid::text, 'unknown')));
                RETURN NEXT p;
            END LOOP;
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
