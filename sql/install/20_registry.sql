--------------------------------------------------------------------------
-- Registry tables (ARCHITECTURE.md "Tables")
--------------------------------------------------------------------------

-- Who is calling: the current role as SET ROLE left it, also inside the
-- registry's SECURITY DEFINER functions (where current_user is the owner).
-- Recorded as created_by, deployed_by and requested_by.
CREATE OR REPLACE FUNCTION rl_mlops._caller()
RETURNS name
AS 'MODULE_PATHNAME', 'rl_caller'
LANGUAGE C STABLE STRICT PARALLEL SAFE;

-- One row per trading agent: where its prices are, its network, how it
-- trains, how long models are kept and when it retrains.  Absurd settings
-- are refused here, when they are set, by named CHECK constraints.
CREATE TABLE IF NOT EXISTS rl_mlops.agents (
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
CREATE TABLE IF NOT EXISTS rl_mlops.models (
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
CREATE UNIQUE INDEX IF NOT EXISTS models_one_active_per_agent
    ON rl_mlops.models (agent) WHERE state = 'active';
-- Retention reads only these two, so a deploy's retention pass costs
-- O(removed + keep_min + log n), not O(versions): the newest versions in
-- keep_min order (created_at, then version, as models_overview lists them),
-- and the versions retention may remove, by the age it compares.
CREATE INDEX IF NOT EXISTS models_agent_newest ON rl_mlops.models (agent, created_at, version);
CREATE INDEX IF NOT EXISTS models_retention_age
    ON rl_mlops.models (agent, (coalesce(archived_at, validated_at, created_at)))
    WHERE state IN ('archived', 'rejected') AND NOT pinned;

COMMENT ON TABLE rl_mlops.models IS
    'Model registry: one row per checkpoint version (checkpoint = large object oid)';

-- Append-only deployment history.
CREATE TABLE IF NOT EXISTS rl_mlops.deployments (
    id bigserial PRIMARY KEY,
    agent text NOT NULL REFERENCES rl_mlops.agents (name) ON UPDATE CASCADE,
    version text NOT NULL,
    previous_version text,
    action text NOT NULL CHECK (action IN ('deploy', 'rollback')),
    reason text,
    deployed_by name NOT NULL DEFAULT rl_mlops._caller(),
    deployed_at timestamptz NOT NULL DEFAULT now()
);
-- Deployments made by monitor() and why (the test's statistic and inputs).
ALTER TABLE rl_mlops.deployments ADD COLUMN IF NOT EXISTS details jsonb;
CREATE INDEX IF NOT EXISTS deployments_agent_id ON rl_mlops.deployments (agent, id);
-- rollback(): the latest deploy of the active version, however long the
-- history (rollbacks are left out: they never say where to roll back to).
CREATE INDEX IF NOT EXISTS deployments_agent_version_deploy
    ON rl_mlops.deployments (agent, version, id) WHERE action = 'deploy';

-- One row per training run, updated in its own transactions while the
-- worker runs so that psql sees live progress.
CREATE TABLE IF NOT EXISTS rl_mlops.runs (
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
-- Lineage: the exact settings a run used (runs.settings, in
-- 30_training.sql), copied to its model; tags and a description a person
-- gives a version (tag_model).
-- What a checkpoint file itself says: "rl_mlops/1" files carry their
-- architecture and sigma; a plain PyTorch state_dict ("pt" or "none") gets
-- them from the agent and import_model(sigma => ...), kept in this row.
ALTER TABLE rl_mlops.models ADD COLUMN IF NOT EXISTS file_format text NOT NULL DEFAULT 'rl_mlops/1'
                                CONSTRAINT file_format_is_known
                                CHECK (file_format IN ('rl_mlops/1', 'pt', 'none')),
                            ADD COLUMN IF NOT EXISTS widened_from text;
ALTER TABLE rl_mlops.models ADD COLUMN IF NOT EXISTS settings jsonb,
                            ADD COLUMN IF NOT EXISTS tags jsonb NOT NULL DEFAULT '{}',
                            ADD COLUMN IF NOT EXISTS description text;
CREATE INDEX IF NOT EXISTS runs_agent_id ON rl_mlops.runs (agent, id);

-- What each column means, for \d+ (README "Definitions and units").
COMMENT ON COLUMN rl_mlops.models.version IS
    'UTC time of registration, YYYYMMDD_HHMMSS (_2, _3 within one second); unique per agent';
COMMENT ON COLUMN rl_mlops.models.checkpoint IS
    'oid of the large object holding the safetensors bytes, owned by the extension owner';
COMMENT ON COLUMN rl_mlops.models.sha256 IS 'sha256 of the checkpoint bytes, checked on every read';
COMMENT ON COLUMN rl_mlops.models.size_bytes IS 'size of the checkpoint in bytes';
COMMENT ON COLUMN rl_mlops.models.origin IS 'trained (by a run of this agent) or imported (import_model)';
COMMENT ON COLUMN rl_mlops.models.parent_version IS
    'version it was warm-started from (trained) or said to derive from (imported)';
COMMENT ON COLUMN rl_mlops.models.training_epochs IS 'epochs of the run that made it';
COMMENT ON COLUMN rl_mlops.models.training_loss IS 'the run''s PPO loss of its last epoch (see runs.loss)';
COMMENT ON COLUMN rl_mlops.models.data_from IS 'first bar of the data window it was trained and validated on';
COMMENT ON COLUMN rl_mlops.models.data_to IS 'last bar of that window (the holdout ends here)';
COMMENT ON COLUMN rl_mlops.models.metrics IS
    'holdout backtests (holdout, initial, champion on the same bars, holdout_by_symbol), holdout_ranges, '
    'sigma, periods_per_year, decisions, worker_peak_rss_mb, library version';
COMMENT ON COLUMN rl_mlops.models.validation IS 'each validation check as {"ok", "message"}, and ok for all';
COMMENT ON COLUMN rl_mlops.models.state IS 'registered, validated, rejected, active (at most one per agent) or archived';
COMMENT ON COLUMN rl_mlops.models.pinned IS 'kept by retention whatever its age';
COMMENT ON COLUMN rl_mlops.models.file_format IS
    '__metadata__ format of the file: rl_mlops/1, or pt / none for a plain PyTorch state_dict '
    '(its architecture is the agent''s, its sigma the one import_model was given)';
COMMENT ON COLUMN rl_mlops.models.widened_from IS 'dtypes of the file widened to F32 on reading (F16, BF16, F64), or NULL';
COMMENT ON COLUMN rl_mlops.models.settings IS 'the agent''s settings the run used, with PostgreSQL, rl_mlops and libtorch versions';
COMMENT ON COLUMN rl_mlops.models.tags IS 'free-form JSON object set by tag_model';
COMMENT ON COLUMN rl_mlops.models.description IS 'free text set by tag_model';
COMMENT ON COLUMN rl_mlops.models.agent IS 'the agent (rl_mlops.agents.name)';
COMMENT ON COLUMN rl_mlops.models.file_name IS 'checkpoint_<version>.safetensors, the name lo_export should use';
COMMENT ON COLUMN rl_mlops.models.run_id IS 'the training run that made it (rl_mlops.runs.id)';
COMMENT ON COLUMN rl_mlops.models.created_at IS 'when it was registered';
COMMENT ON COLUMN rl_mlops.models.validated_at IS 'when validate_model (or the run) last validated it';
COMMENT ON COLUMN rl_mlops.models.deployed_at IS 'when it last became active';
COMMENT ON COLUMN rl_mlops.models.archived_at IS 'when it was last replaced as the active version';
COMMENT ON COLUMN rl_mlops.models.created_by IS 'role that registered it (current role after SET ROLE)';
COMMENT ON COLUMN rl_mlops.deployments.action IS
    'deploy, rollback, auto_rollback (monitor() on evidence) or promote (a challenger, on evidence)';
COMMENT ON COLUMN rl_mlops.deployments.previous_version IS 'the version that was active before';
COMMENT ON COLUMN rl_mlops.deployments.details IS 'monitor()''s evidence for an automatic deployment';

-- Is a run's state one of the unfinished ones (its worker may still run)?
-- The one place that lists them.
CREATE OR REPLACE FUNCTION rl_mlops._run_unfinished(p_state text)
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

-- sigma NULL: the file must carry its own (rl_mlops metadata).
CREATE OR REPLACE FUNCTION rl_mlops._store_checkpoint(
    data bytea, window_size integer, n_features integer, hidden_size integer,
    sigma double precision DEFAULT NULL,
    OUT checkpoint oid, OUT sha256 text, OUT size_bytes bigint, OUT sigma double precision,
    OUT file_format text, OUT widened_from text)
RETURNS record
AS 'MODULE_PATHNAME', 'rl_store_checkpoint' LANGUAGE C VOLATILE;

-- An imported version's holdout backtest and gate (validate_model).
CREATE OR REPLACE FUNCTION rl_mlops._judge_imported(agent text, version text, champion text)
RETURNS jsonb
AS 'MODULE_PATHNAME', 'rl_judge_imported' LANGUAGE C VOLATILE;

-- The network alone as an rl_mlops/1 file (export_model(optimizer => false)).
CREATE OR REPLACE FUNCTION rl_mlops._network_checkpoint(
    data bytea, window_size integer, n_features integer, hidden_size integer,
    sigma double precision, version text)
RETURNS bytea
AS 'MODULE_PATHNAME', 'rl_network_checkpoint' LANGUAGE C VOLATILE;

CREATE OR REPLACE FUNCTION rl_mlops._read_checkpoint(checkpoint oid, sha256 text)
RETURNS bytea
AS 'MODULE_PATHNAME', 'rl_read_checkpoint' LANGUAGE C STRICT STABLE;

CREATE OR REPLACE FUNCTION rl_mlops._validate_checkpoint(
    checkpoint oid, sha256 text, window_size integer, n_features integer, hidden_size integer,
    sigma double precision)
RETURNS jsonb
AS 'MODULE_PATHNAME', 'rl_validate_checkpoint' LANGUAGE C VOLATILE;

CREATE OR REPLACE FUNCTION rl_mlops._invalidate_serving()
RETURNS void
AS 'MODULE_PATHNAME', 'rl_invalidate_serving' LANGUAGE C STRICT VOLATILE;

--------------------------------------------------------------------------
-- Internal SQL helpers
--------------------------------------------------------------------------

-- The agent's row, locked: every registry change of one agent serialises here.
CREATE OR REPLACE FUNCTION rl_mlops._lock_agent(p_agent text)
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
CREATE OR REPLACE FUNCTION rl_mlops._agent(p_agent text)
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
CREATE OR REPLACE FUNCTION rl_mlops._model(p_agent text, p_version text)
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
CREATE OR REPLACE FUNCTION rl_mlops._new_version(p_agent text)
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
CREATE OR REPLACE FUNCTION rl_mlops._check_source_column(
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

-- create_agent()'s checks of the source, as the owner: the reader (the
-- role calling create_agent) may read it, and the columns exist with usable
-- types.  Reads only the catalog, never the relation.
CREATE OR REPLACE FUNCTION rl_mlops._check_agent_source(
    p_source regclass, p_reader regrole, p_symbol_column name, p_time_column name,
    p_price_column name, p_features_column name, p_n_features integer)
RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF p_source IS NULL THEN
        RAISE EXCEPTION 'source relation must not be null' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF NOT pg_catalog.has_table_privilege(p_reader, p_source, 'SELECT') THEN
        RAISE EXCEPTION 'permission denied for relation %', p_source
            USING ERRCODE = 'insufficient_privilege',
                  DETAIL = 'The role creating an agent must be able to read its source.';
    END IF;
    PERFORM rl_mlops._check_source_column(p_source, p_symbol_column, 'symbol', NULL);
    PERFORM rl_mlops._check_source_column(p_source, p_time_column, 'time',
        ARRAY['timestamptz', 'timestamp', 'date']::regtype[]);
    PERFORM rl_mlops._check_source_column(p_source, p_price_column, 'price',
        ARRAY['numeric', 'float8', 'float4', 'int2', 'int4', 'int8']::regtype[]);
    IF p_features_column IS NOT NULL THEN
        PERFORM rl_mlops._check_source_column(p_source, p_features_column, 'features',
            ARRAY['float4[]', 'float8[]', 'numeric[]']::regtype[]);
    ELSIF coalesce(p_n_features, 0) <> 0 THEN
        RAISE EXCEPTION 'n_features needs a features column'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Pass features_column => ''...'', or leave n_features out.';
    END IF;
END
$$;

-- create_agent()'s insert, as the owner, once the number of features is
-- known (given, or counted by reading the source as the caller).
CREATE OR REPLACE FUNCTION rl_mlops._insert_agent(
    p_name text, p_source regclass, p_symbol_column name, p_time_column name,
    p_price_column name, p_features_column name, p_n_features integer,
    p_window_size integer, p_hidden_size integer)
RETURNS rl_mlops.agents
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    a rl_mlops.agents;
BEGIN
    IF p_features_column IS NOT NULL AND p_n_features IS NULL THEN
        RAISE EXCEPTION 'cannot infer the number of features of column "%"', p_features_column
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'The column holds no non-NULL array the calling role can read.',
                  HINT = 'Pass n_features => N.';
    END IF;
    INSERT INTO rl_mlops.agents (name, source, symbol_column, time_column, price_column,
                                 features_column, n_features, window_size, hidden_size)
    VALUES (p_name, p_source, p_symbol_column, p_time_column, p_price_column,
            p_features_column, coalesce(p_n_features, 0), p_window_size, p_hidden_size)
    RETURNING * INTO a;
    RETURN a;
EXCEPTION WHEN unique_violation THEN
    RAISE EXCEPTION 'agent "%" already exists', p_name
        USING ERRCODE = 'duplicate_object',
              HINT = 'Change its settings with rl_mlops.configure().';
END
$$;

-- Register a trading agent over a price table or view; returns its
-- settings (the new row of rl_mlops.agents) as jsonb.  C: the checks and
-- the insert run as the owner, but counting the features (n_features NULL)
-- reads the source as the calling role, so code in a view or a policy
-- never runs with the owner's rights.
CREATE OR REPLACE FUNCTION rl_mlops.create_agent(
    name text,
    source regclass,
    symbol_column name DEFAULT 'symbol',
    time_column name DEFAULT 'ts',
    price_column name DEFAULT 'price',
    features_column name DEFAULT NULL,
    n_features integer DEFAULT NULL,
    window_size integer DEFAULT 32,
    hidden_size integer DEFAULT 64)
RETURNS jsonb
AS 'MODULE_PATHNAME', 'rl_create_agent'
LANGUAGE C VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp;

-- Change training, retention, scheduler and deployment-gate settings.
-- NULL leaves a setting as it is.  The architecture and the source are
-- fixed for an agent's life: its checkpoints depend on them.
CREATE OR REPLACE FUNCTION rl_mlops.configure(
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
    gate_min_delta double precision DEFAULT NULL,
    probation_days integer DEFAULT NULL,
    auto_rollback boolean DEFAULT NULL,
    monitor_alpha double precision DEFAULT NULL,
    min_live_decisions integer DEFAULT NULL,
    max_live_drawdown double precision DEFAULT NULL,
    stale_after interval DEFAULT NULL,
    rollback_cooldown interval DEFAULT NULL,
    ledger_retention_days integer DEFAULT NULL,
    retrain_on_drift boolean DEFAULT NULL,
    auto_promote boolean DEFAULT NULL,
    deploy_mode text DEFAULT NULL,
    challenger_share double precision DEFAULT NULL)
RETURNS rl_mlops.agents
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    a rl_mlops.agents;
    err text;
    err_constraint text;
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
        gate_min_delta = coalesce(configure.gate_min_delta, gate_min_delta),
        probation_days = coalesce(configure.probation_days, probation_days),
        auto_rollback = coalesce(configure.auto_rollback, auto_rollback),
        monitor_alpha = coalesce(configure.monitor_alpha, monitor_alpha),
        min_live_decisions = coalesce(configure.min_live_decisions, min_live_decisions),
        max_live_drawdown = coalesce(configure.max_live_drawdown, max_live_drawdown),
        stale_after = coalesce(configure.stale_after, stale_after),
        rollback_cooldown = coalesce(configure.rollback_cooldown, rollback_cooldown),
        ledger_retention_days = coalesce(configure.ledger_retention_days, ledger_retention_days),
        retrain_on_drift = coalesce(configure.retrain_on_drift, retrain_on_drift),
        auto_promote = coalesce(configure.auto_promote, auto_promote),
        deploy_mode = coalesce(configure.deploy_mode, deploy_mode),
        challenger_share = coalesce(configure.challenger_share, challenger_share)
     WHERE name = configure.name
    RETURNING * INTO a;
    RETURN a;
EXCEPTION WHEN check_violation THEN
    -- say which setting, without the 36-line statement and failing row
    GET STACKED DIAGNOSTICS err = MESSAGE_TEXT, err_constraint = CONSTRAINT_NAME;
    RAISE EXCEPTION '%', err
        USING ERRCODE = 'check_violation', CONSTRAINT = err_constraint,
              HINT = 'The constraint''s name says the allowed values; \d+ rl_mlops.agents lists them all.';
END
$$;

--------------------------------------------------------------------------
-- Checkpoints in and out
--------------------------------------------------------------------------

-- Register a checkpoint made elsewhere (for example in PyTorch).  The
-- bytes must pass the strict parser and match the agent's architecture;
-- the new version starts in state 'registered'.  A plain state_dict
-- (safetensors metadata {"format": "pt"} or none) needs sigma; the bytes
-- are kept as given.
CREATE OR REPLACE FUNCTION rl_mlops.import_model(
    agent text,
    checkpoint bytea,
    training_epochs integer DEFAULT NULL,
    training_loss double precision DEFAULT NULL,
    metrics jsonb DEFAULT '{}',
    parent_version text DEFAULT NULL,
    sigma double precision DEFAULT NULL)
RETURNS text
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    a rl_mlops.agents := rl_mlops._lock_agent(import_model.agent);
    s record;
    v text;
    same text;
BEGIN
    IF import_model.checkpoint IS NULL THEN
        RAISE EXCEPTION 'checkpoint must not be null' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF import_model.parent_version IS NOT NULL THEN
        PERFORM rl_mlops._model(a.name, import_model.parent_version);
    END IF;
    s := rl_mlops._store_checkpoint(import_model.checkpoint, a.window_size, a.n_features,
                                    a.hidden_size, import_model.sigma);
    v := rl_mlops._new_version(a.name);
    INSERT INTO rl_mlops.models (agent, version, checkpoint, sha256, size_bytes, origin,
                                 parent_version, training_epochs, training_loss, sigma, metrics,
                                 file_format, widened_from)
    VALUES (a.name, v, s.checkpoint, s.sha256, s.size_bytes, 'imported',
            import_model.parent_version, import_model.training_epochs, import_model.training_loss,
            s.sigma, coalesce(import_model.metrics, '{}'), s.file_format, s.widened_from);
    -- the same bytes again make a new version (a copy can be deployed or
    -- challenge on its own), but never without a word
    SELECT string_agg(format('%s (%s)', x.version, x.state), ', ' ORDER BY x.created_at, x.version)
      INTO same
      FROM rl_mlops.models x
     WHERE x.agent = a.name AND x.sha256 = s.sha256 AND x.version <> v;
    IF same IS NOT NULL THEN
        RAISE NOTICE 'the checkpoint of new version % of agent % is byte for byte that of %', v, a.name, same
            USING HINT = 'Deploy or roll back to the existing version instead, if that is what was meant.';
    END IF;
    RETURN v;
END
$$;

-- The checkpoint bytes of a version (default: the active one), verified
-- against the recorded sha256: exactly the bytes registered.  With
-- optimizer => false, the network alone as an rl_mlops/1 file (F32, the
-- registry's version and sigma, no Adam state).
CREATE OR REPLACE FUNCTION rl_mlops.export_model(agent text, version text DEFAULT NULL,
                                                 optimizer boolean DEFAULT true)
RETURNS bytea
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    m rl_mlops.models;
    a rl_mlops.agents;
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
    IF export_model.optimizer IS NULL THEN
        RAISE EXCEPTION 'optimizer must not be null' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF export_model.optimizer THEN
        RETURN rl_mlops._read_checkpoint(m.checkpoint, m.sha256);
    END IF;
    SELECT * INTO a FROM rl_mlops.agents WHERE name = m.agent;
    RETURN rl_mlops._network_checkpoint(rl_mlops._read_checkpoint(m.checkpoint, m.sha256),
                                        a.window_size, a.n_features, a.hidden_size,
                                        m.sigma, m.version);
END
$$;

--------------------------------------------------------------------------
-- Validation, deployment, rollback
--------------------------------------------------------------------------

-- The failed checks of a validation result, as "check: message; ...".
CREATE OR REPLACE FUNCTION rl_mlops._failed_checks(p_validation jsonb)
RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT string_agg(key || ': ' || (value ->> 'message'), '; ' ORDER BY key)
      FROM jsonb_each(p_validation -> 'checks')
     WHERE NOT (value ->> 'ok')::boolean
$$;

-- Run the validation checks on a version and record each check's result.
-- registered/validated/rejected versions become 'validated' or
-- 'rejected'; an active or archived version keeps its state.  An imported
-- version is also judged like a trained one: its holdout backtest on the
-- agent's data (read as the caller) and the agent's deployment gate
-- against the active model on the same bars.
CREATE OR REPLACE FUNCTION rl_mlops.validate_model(agent text, version text)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    a rl_mlops.agents := rl_mlops._lock_agent(validate_model.agent);
    m rl_mlops.models := rl_mlops._model(a.name, validate_model.version);
    result jsonb;
    champion text;
    judged jsonb;
    new_metrics jsonb;
    err text;
    err_detail text;
BEGIN
    result := rl_mlops._validate_checkpoint(m.checkpoint, m.sha256, a.window_size,
                                            a.n_features, a.hidden_size, m.sigma)
              || jsonb_build_object('validated_at', now());
    IF (result ->> 'ok')::boolean AND m.origin = 'imported' THEN
        SELECT x.version INTO champion FROM rl_mlops.models x
         WHERE x.agent = a.name AND x.state = 'active' AND x.version <> m.version;
        BEGIN
            judged := rl_mlops._judge_imported(a.name, m.version, champion);
            result := jsonb_set(result, '{checks,holdout_backtest}', jsonb_build_object(
                          'ok', true,
                          'message', format('%s decisions on %s symbols of the agent''s data: net log return %s, Sharpe %s%s',
                                            judged #>> '{holdout,steps}', judged ->> 'symbols',
                                            round((judged #>> '{holdout,total_log_return}')::numeric, 4),
                                            round((judged #>> '{holdout,sharpe}')::numeric, 3),
                                            CASE WHEN champion IS NOT NULL
                                                 THEN format(' (active %s on the same bars: %s, Sharpe %s)', champion,
                                                             round((judged #>> '{champion,total_log_return}')::numeric, 4),
                                                             round((judged #>> '{champion,sharpe}')::numeric, 3))
                                                 ELSE '' END)));
            result := jsonb_set(result, '{checks,deploy_gate}', judged -> 'deploy_gate');
            new_metrics := m.metrics || (judged - 'deploy_gate');
        EXCEPTION WHEN OTHERS THEN
            GET STACKED DIAGNOSTICS err = MESSAGE_TEXT, err_detail = PG_EXCEPTION_DETAIL;
            -- the backtest informs; only a comparing gate needs it
            result := jsonb_set(result, '{checks,holdout_backtest}', jsonb_build_object(
                          'ok', a.deploy_gate = 'valid' OR champion IS NULL,
                          'message', 'not run: ' || err || coalesce(nullif(': ' || err_detail, ': '), '')));
        END;
        result := jsonb_set(result, '{ok}', to_jsonb(NOT EXISTS (
                      SELECT 1 FROM jsonb_each(result -> 'checks') c WHERE NOT (c.value ->> 'ok')::boolean)));
    END IF;
    UPDATE rl_mlops.models
       SET validation = result,
           metrics = coalesce(new_metrics, metrics),
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

-- A version may serve (be deployed, or become a challenger) only if it
-- was validated and its large object still passes validation now.
CREATE OR REPLACE FUNCTION rl_mlops._check_servable(a rl_mlops.agents, m rl_mlops.models)
RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
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
                                             a.n_features, a.hidden_size, m.sigma);
    IF NOT (recheck ->> 'ok')::boolean THEN
        RAISE EXCEPTION 'model version "%" of agent "%" no longer passes validation', m.version, a.name
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  DETAIL = rl_mlops._failed_checks(recheck);
    END IF;
END
$$;

-- Make a version the active one: archive the current one, record the
-- deployment, drop serving caches at commit, then apply retention.  The
-- caller holds the agent's lock; the version is checked again right here.
CREATE OR REPLACE FUNCTION rl_mlops._activate(a rl_mlops.agents, m rl_mlops.models, p_action text, p_reason text)
RETURNS text
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    current_version text;
BEGIN
    PERFORM rl_mlops._check_servable(a, m);

    SELECT version INTO current_version FROM rl_mlops.models
     WHERE agent = a.name AND state = 'active';
    UPDATE rl_mlops.models SET state = 'archived', archived_at = now()
     WHERE agent = a.name AND state = 'active';
    UPDATE rl_mlops.models SET state = 'active', deployed_at = now(), archived_at = NULL
     WHERE agent = a.name AND version = m.version;
    INSERT INTO rl_mlops.deployments (agent, version, previous_version, action, reason)
    VALUES (a.name, m.version, current_version, p_action, p_reason);
    -- a challenger deployed is the champion now, no longer a challenger
    DELETE FROM rl_mlops.agent_challengers c WHERE c.agent = a.name AND c.version = m.version;
    PERFORM rl_mlops._invalidate_serving();
    RAISE LOG 'rl_mlops: deployed model version % of agent % (%)', m.version, a.name, p_action;
    PERFORM rl_mlops.cleanup_old_models(a.name);
    RETURN m.version;
END
$$;

-- Deploy a validated (or archived) version.
-- Why a version should not be trusted with money, from its holdout
-- backtest: a net loss, or less than buy-and-hold; NULL if neither (or no
-- holdout, as for an imported version).  deploy_model warns with it and
-- status() lists it for the active version.
CREATE OR REPLACE FUNCTION rl_mlops._holdout_loss(m rl_mlops.models)
RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE
        WHEN (m.metrics #>> '{holdout,total_log_return}')::float8 < 0
        THEN format('version %s lost money on its holdout: net log return %s over %s decisions',
                    m.version, round((m.metrics #>> '{holdout,total_log_return}')::numeric, 4),
                    m.metrics #>> '{holdout,steps}')
        WHEN (m.metrics #>> '{holdout,total_log_return}')::float8
             < (m.metrics #>> '{holdout,buy_hold_log_return}')::float8
        THEN format('version %s earned less than buy-and-hold on its holdout: net log return %s against %s',
                    m.version, round((m.metrics #>> '{holdout,total_log_return}')::numeric, 4),
                    round((m.metrics #>> '{holdout,buy_hold_log_return}')::numeric, 4))
        END
$$;

CREATE OR REPLACE FUNCTION rl_mlops.deploy_model(agent text, version text, reason text DEFAULT NULL)
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
    IF rl_mlops._holdout_loss(m) IS NOT NULL THEN
        RAISE WARNING 'deploying a version that did not earn its keep on its holdout'
            USING DETAIL = rl_mlops._holdout_loss(m) || '.',
                  HINT = format('rl_mlops.configure(%L, deploy_gate => ''not_worse'') keeps such versions from being deployed by training runs.', a.name);
    END IF;
    RETURN rl_mlops._activate(a, m, 'deploy', deploy_model.reason);
END
$$;

-- Go back to the version that was active before the current one was
-- deployed (repeated rollbacks walk further back), or to a named version.
CREATE OR REPLACE FUNCTION rl_mlops.rollback(agent text, to_version text DEFAULT NULL, reason text DEFAULT NULL)
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
-- the active one, a pinned one, or one of the newest keep_min (newest by
-- created_at, then version; every state counts).  Their large objects are
-- unlinked in the same transaction.  Runs after every deploy, so it reads
-- only index ranges: the keep_min newest (models_agent_newest) and the
-- removable versions older than retention_days (models_retention_age).
CREATE OR REPLACE FUNCTION rl_mlops.cleanup_old_models(agent text, dry_run boolean DEFAULT false)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    a rl_mlops.agents := rl_mlops._lock_agent(cleanup_old_models.agent);
    kept_created timestamptz;
    kept_version text;
    victims text[] := '{}';
    freed bigint := 0;
BEGIN
    -- The keep_min-th newest version: it and every newer one are kept.
    SELECT m.created_at, m.version INTO kept_created, kept_version
      FROM rl_mlops.models m
     WHERE m.agent = a.name
     ORDER BY m.created_at DESC, m.version DESC
     OFFSET a.keep_min - 1 LIMIT 1;
    -- No such version (keep_min or fewer versions): nothing is removed.
    IF FOUND THEN
        SELECT coalesce(array_agg(m.version ORDER BY m.created_at, m.version), '{}'),
               coalesce(sum(m.size_bytes), 0)
          INTO victims, freed
          FROM rl_mlops.models m
         WHERE m.agent = a.name
           -- never-validated imports age out too (never a validated one:
           -- it may be deployed or challenge)
           AND m.state IN ('archived', 'rejected', 'registered')
           AND NOT m.pinned
           AND coalesce(m.archived_at, m.validated_at, m.created_at)
               < now() - make_interval(days => a.retention_days)
           AND (m.created_at, m.version) < (kept_created, kept_version)
           -- a version in shadow (probation) may be rolled back to
           AND NOT EXISTS (SELECT 1 FROM rl_mlops.deployments d
                            WHERE d.agent = a.name AND d.previous_version = m.version
                              AND d.deployed_at > now() - make_interval(days => a.probation_days))
           -- nor a challenger
           AND NOT EXISTS (SELECT 1 FROM rl_mlops.agent_challengers c
                            WHERE c.agent = a.name AND c.version = m.version AND c.removed_at IS NULL);
    END IF;

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

-- Tags (a JSON object, merged into the version's) and a description a
-- person gives a version: what it was for, what was tried.
CREATE OR REPLACE FUNCTION rl_mlops.tag_model(agent text, version text, tags jsonb DEFAULT '{}',
                                              description text DEFAULT NULL)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    a rl_mlops.agents := rl_mlops._lock_agent(tag_model.agent);
    m rl_mlops.models := rl_mlops._model(a.name, tag_model.version);
    result jsonb;
BEGIN
    IF tag_model.tags IS NULL OR jsonb_typeof(tag_model.tags) <> 'object' THEN
        RAISE EXCEPTION 'tags must be a JSON object'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('Got %s.', coalesce(jsonb_typeof(tag_model.tags), 'NULL')),
                  HINT = 'For example: tags => ''{"experiment": "lr-sweep", "owner": "desk-3"}''.';
    END IF;
    UPDATE rl_mlops.models x
       SET tags = x.tags || tag_model.tags,
           description = coalesce(tag_model.description, x.description)
     WHERE x.agent = a.name AND x.version = m.version
    RETURNING jsonb_build_object('version', x.version, 'tags', x.tags, 'description', x.description)
      INTO result;
    RETURN result;
END
$$;

-- Pinned versions are never removed by retention.
CREATE OR REPLACE FUNCTION rl_mlops.pin_model(agent text, version text, pinned boolean DEFAULT true)
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

CREATE OR REPLACE FUNCTION rl_mlops.unpin_model(agent text, version text)
RETURNS boolean
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT rl_mlops.pin_model(agent, version, false) $$;

-- Remove an agent with all its versions and their large objects.
CREATE OR REPLACE FUNCTION rl_mlops.drop_agent(name text)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    a rl_mlops.agents := rl_mlops._lock_agent(drop_agent.name);
    n integer;
BEGIN
    PERFORM rl_mlops._reap_dead_runs(a.name);
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
    DELETE FROM rl_mlops.live_ledger l WHERE l.agent = a.name;
    DELETE FROM rl_mlops.live_late_bars l WHERE l.agent = a.name;
    DELETE FROM rl_mlops.live_comparisons c WHERE c.agent = a.name;
    DELETE FROM rl_mlops.monitor_calls c WHERE c.agent = a.name;
    DELETE FROM rl_mlops.agents ag WHERE ag.name = a.name;
    -- its pg_cron job would fail every tick ("agent does not exist")
    IF rl_mlops._unschedule_cron_job(a.name, 'retrain') THEN
        RAISE NOTICE 'removed the retraining pg_cron job of agent "%"', a.name;
    END IF;
    IF rl_mlops._unschedule_cron_job(a.name, 'monitor') THEN
        RAISE NOTICE 'removed the monitoring pg_cron job of agent "%"', a.name;
    END IF;
    -- other backends drop the agent's cached weights at commit
    PERFORM rl_mlops._invalidate_serving();
    RETURN jsonb_build_object('agent', a.name, 'models_removed', n);
END
$$;

-- Remove every agent and every checkpoint large object: the documented
-- step before DROP EXTENSION (the event trigger below does it for a plain
-- "DROP EXTENSION rl_mlops").
CREATE OR REPLACE FUNCTION rl_mlops.drop_all()
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
CREATE OR REPLACE FUNCTION rl_mlops._on_drop_extension()
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

DROP EVENT TRIGGER IF EXISTS rl_mlops_drop_extension;
CREATE EVENT TRIGGER rl_mlops_drop_extension ON ddl_command_start
    WHEN TAG IN ('DROP EXTENSION')
    EXECUTE FUNCTION rl_mlops._on_drop_extension();

--------------------------------------------------------------------------
-- Status and metadata in the original service's JSON shapes (ARCHITECTURE.md "A training run")
--------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION rl_mlops.status(agent text DEFAULT 'default')
RETURNS jsonb
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
-- timestamps in UTC, as versions are, whatever the session's TimeZone
SET TimeZone = 'UTC'
AS $$
DECLARE
    a rl_mlops.agents := rl_mlops._agent(status.agent);
    m rl_mlops.models;
    total integer;
    running rl_mlops.runs;
BEGIN
    SELECT * INTO m FROM rl_mlops.models WHERE models.agent = a.name AND state = 'active';
    SELECT count(*) INTO total FROM rl_mlops.models WHERE models.agent = a.name;
    SELECT * INTO running FROM rl_mlops.runs r
     WHERE r.agent = a.name AND rl_mlops._run_unfinished(r.state)
       AND rl_mlops._worker_alive(r.worker_pid, r.worker_started_at)
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
                'enabled', a.scheduler_enabled AND coalesce(rl_mlops._has_cron_job(a.name), true),
                'is_training', running.id IS NOT NULL,
                'last_retrain_time', a.last_retrain_time,
                'next_retrain_time', a.last_retrain_time + make_interval(days => a.interval_days),
                'interval_days', a.interval_days,
                'cron_job', (SELECT CASE WHEN j.jobid IS NOT NULL THEN jsonb_build_object(
                                 'jobid', j.jobid, 'schedule', j.schedule, 'active', j.active,
                                 'role', j.username, 'last_run_status', j.last_run_status,
                                 'last_run_message', j.last_run_message,
                                 'last_run_at', j.last_run_at) END
                               FROM rl_mlops._cron_job_if_granted(a.name) j),
                'run', CASE WHEN running.id IS NOT NULL THEN jsonb_build_object(
                           'id', running.id, 'state', running.state, 'epoch', running.epoch,
                           'epochs', running.epochs, 'loss', running.loss) END),
            'monitoring', rl_mlops._monitoring_status(a.name),
            'alerts', to_jsonb(array_remove(ARRAY[rl_mlops._holdout_loss(m)], NULL))));
END
$$;

CREATE OR REPLACE FUNCTION rl_mlops.metadata(agent text DEFAULT 'default')
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
                       'sigma', m.sigma,
                       'file_format', m.file_format,
                       'widened_from', m.widened_from,
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

CREATE OR REPLACE VIEW rl_mlops.models_overview AS
SELECT agent, version, state, pinned, origin, parent_version,
       training_epochs, round(training_loss::numeric, 6) AS training_loss,
       pg_catalog.pg_size_pretty(size_bytes) AS size,
       (metrics #>> '{holdout,sharpe}')::double precision AS holdout_sharpe,
       (validation ->> 'ok')::boolean AS valid,
       created_at, deployed_at, archived_at,
       checkpoint, left(sha256, 12) AS sha256_prefix, file_name,
       size_bytes, tags, description, sigma, file_format, widened_from
  FROM rl_mlops.models
 ORDER BY agent, created_at DESC, version DESC;

-- Newest first, all agents (monitor()'s evidence for automatic ones).
CREATE OR REPLACE VIEW rl_mlops.deployment_history AS
SELECT id, agent, deployed_at, action, version, previous_version, deployed_by, reason, details
  FROM rl_mlops.deployments
 ORDER BY id DESC;

CREATE OR REPLACE VIEW rl_mlops.current_models AS
SELECT a.name AS agent, m.version, m.deployed_at, now() - m.deployed_at AS active_for,
       m.training_epochs, m.training_loss, m.checkpoint, m.sha256,
       (SELECT count(*) FROM rl_mlops.models x WHERE x.agent = a.name) AS total_models
  FROM rl_mlops.agents a
  LEFT JOIN rl_mlops.models m ON m.agent = a.name AND m.state = 'active'
 ORDER BY a.name;

--------------------------------------------------------------------------
-- Privileges (ARCHITECTURE.md README "Security"): mutating and internal functions are not
-- for PUBLIC; reading needs USAGE on the schema and SELECT on the tables.
--------------------------------------------------------------------------

REVOKE ALL ON FUNCTION
    rl_mlops._caller(),
    rl_mlops._failed_checks(jsonb),
    rl_mlops._store_checkpoint(bytea, integer, integer, integer, double precision),
    rl_mlops._network_checkpoint(bytea, integer, integer, integer, double precision, text),
    rl_mlops._judge_imported(text, text, text),
    rl_mlops._read_checkpoint(oid, text),
    rl_mlops._validate_checkpoint(oid, text, integer, integer, integer, double precision),
    rl_mlops._invalidate_serving(),
    rl_mlops._lock_agent(text),
    rl_mlops._model(text, text),
    rl_mlops._new_version(text),
    rl_mlops._check_source_column(regclass, name, text, regtype[]),
    rl_mlops._check_agent_source(regclass, regrole, name, name, name, name, integer),
    rl_mlops._insert_agent(text, regclass, name, name, name, name, integer, integer, integer),
    rl_mlops._activate(rl_mlops.agents, rl_mlops.models, text, text),
    rl_mlops._check_servable(rl_mlops.agents, rl_mlops.models),
    rl_mlops.tag_model(text, text, jsonb, text),
    rl_mlops.create_agent(text, regclass, name, name, name, name, integer, integer, integer),
    rl_mlops.configure(text, integer, integer, interval, double precision, integer,
                       double precision, double precision, double precision, double precision,
                       double precision, integer, integer, double precision, double precision,
                       double precision, bigint, integer, integer, integer, boolean, integer,
                       text, double precision, integer, boolean, double precision, integer,
                       double precision, interval, interval, integer, boolean, boolean, text, double precision),
    rl_mlops.import_model(text, bytea, integer, double precision, jsonb, text, double precision),
    rl_mlops.export_model(text, text, boolean),
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
