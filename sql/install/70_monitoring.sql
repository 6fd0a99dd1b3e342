--------------------------------------------------------------------------
-- Live performance (ARCHITECTURE.md, "Live monitoring")
--
-- monitor(agent) paper-trades the champion and the versions in shadow on
-- every bar of the source it has not evaluated yet: the greedy decision
-- at bar t (data up to t) earns the net log return to bar t+1, so a bar's
-- row exists only once the next bar does.  The replaced champion stays in
-- shadow for probation_days after every deployment; the paired,
-- always-valid test (src/core/sequential.c) of the champion against it
-- rolls back on evidence only.
--------------------------------------------------------------------------

-- Settings of monitoring, bounded like every other setting.
ALTER TABLE rl_mlops.agents
    ADD COLUMN IF NOT EXISTS probation_days integer NOT NULL DEFAULT 7
        CONSTRAINT probation_days_between_0_and_365 CHECK (probation_days BETWEEN 0 AND 365),
    ADD COLUMN IF NOT EXISTS auto_rollback boolean NOT NULL DEFAULT true,
    ADD COLUMN IF NOT EXISTS monitor_alpha double precision NOT NULL DEFAULT 0.01
        CONSTRAINT monitor_alpha_between_0_and_0_2 CHECK (monitor_alpha > 0 AND monitor_alpha <= 0.2),
    ADD COLUMN IF NOT EXISTS min_live_decisions integer NOT NULL DEFAULT 100
        CONSTRAINT min_live_decisions_between_2_and_1000000
        CHECK (min_live_decisions BETWEEN 2 AND 1000000),
    ADD COLUMN IF NOT EXISTS max_live_drawdown double precision NOT NULL DEFAULT 0.2
        CONSTRAINT max_live_drawdown_between_0_and_10
        CHECK (max_live_drawdown > 0 AND max_live_drawdown <= 10),
    ADD COLUMN IF NOT EXISTS stale_after interval NOT NULL DEFAULT '1 day'
        CONSTRAINT stale_after_between_1_minute_and_1_year
        CHECK (stale_after >= interval '1 minute' AND stale_after <= interval '1 year'),
    ADD COLUMN IF NOT EXISTS rollback_cooldown interval NOT NULL DEFAULT '1 day'
        CONSTRAINT rollback_cooldown_between_0_and_1_year
        CHECK (rollback_cooldown >= interval '0' AND rollback_cooldown <= interval '1 year'),
    ADD COLUMN IF NOT EXISTS ledger_retention_days integer NOT NULL DEFAULT 90
        CONSTRAINT ledger_retention_days_between_1_and_36500
        CHECK (ledger_retention_days BETWEEN 1 AND 36500),
    ADD COLUMN IF NOT EXISTS retrain_on_drift boolean NOT NULL DEFAULT false;

-- A run started because the market drifted from the training data.
ALTER TABLE rl_mlops.runs
    DROP CONSTRAINT IF EXISTS runs_trigger_check,
    ADD CONSTRAINT runs_trigger_check CHECK (trigger IN ('manual', 'schedule', 'drift'));

-- Which deployment replaced a version, and when: its probation (the
-- monitored versions, retention, live_performance's role).
CREATE INDEX IF NOT EXISTS deployments_agent_previous
    ON rl_mlops.deployments (agent, previous_version, deployed_at);
ALTER TABLE rl_mlops.deployments
    DROP CONSTRAINT IF EXISTS deployments_action_check,
    ADD CONSTRAINT deployments_action_check
        CHECK (action IN ('deploy', 'rollback', 'auto_rollback', 'promote'));

-- Where paper trading of a version stands on a symbol: the last bar whose
-- decision is in the ledger and the position held from it.
CREATE TABLE IF NOT EXISTS rl_mlops.live_positions (
    agent text NOT NULL,
    version text NOT NULL,
    symbol text NOT NULL,
    first_bar timestamptz NOT NULL,
    last_bar timestamptz,
    position integer NOT NULL DEFAULT 0 CHECK (position BETWEEN -1 AND 1),
    late_bars bigint NOT NULL DEFAULT 0,
    -- the last bars it passed (a window): a row at or before last_bar that
    -- is not among them came late
    recent_bars timestamptz[] NOT NULL DEFAULT '{}',
    PRIMARY KEY (agent, version, symbol),
    FOREIGN KEY (agent, version) REFERENCES rl_mlops.models (agent, version)
        ON UPDATE CASCADE ON DELETE CASCADE
);

-- One row per version, symbol and decision: the position taken at bar ts
-- and the net log return it earned to the next bar.
CREATE TABLE IF NOT EXISTS rl_mlops.live_ledger (
    agent text NOT NULL,
    version text NOT NULL,
    role text NOT NULL CHECK (role IN ('champion', 'shadow', 'challenger')),
    symbol text NOT NULL,
    ts timestamptz NOT NULL,
    position integer NOT NULL CHECK (position BETWEEN -1 AND 1),
    net_return double precision NOT NULL,
    buy_hold_return double precision NOT NULL,
    PRIMARY KEY (agent, version, symbol, ts)
);
CREATE INDEX IF NOT EXISTS live_ledger_agent_ts ON rl_mlops.live_ledger (agent, ts);

-- Bars that arrived late: at or before a symbol's last evaluated bar, so
-- never evaluated (positions are never rewritten); counted, reported once.
CREATE TABLE IF NOT EXISTS rl_mlops.live_late_bars (
    agent text NOT NULL,
    version text NOT NULL,
    symbol text NOT NULL,
    ts timestamptz NOT NULL,
    detected_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (agent, version, symbol, ts)
);

-- Running aggregates of each version's live decisions, kept by monitor()
-- (never recomputed from the ledger, which retention trims).
CREATE TABLE IF NOT EXISTS rl_mlops.live_metrics (
    agent text NOT NULL,
    version text NOT NULL,
    since timestamptz,
    last_bar timestamptz,
    decisions bigint NOT NULL DEFAULT 0,
    mean_return double precision NOT NULL DEFAULT 0,
    m2_return double precision NOT NULL DEFAULT 0,
    total_return double precision NOT NULL DEFAULT 0,
    buy_hold_return double precision NOT NULL DEFAULT 0,
    abs_position_changes double precision NOT NULL DEFAULT 0,
    max_drawdown double precision NOT NULL DEFAULT 0,
    equity double precision NOT NULL DEFAULT 0,
    peak_equity double precision NOT NULL DEFAULT 0,
    hits bigint NOT NULL DEFAULT 0,
    sharpe double precision,
    market_decisions bigint NOT NULL DEFAULT 0,  -- the market's r_{t+1} on the same bars:
    market_mean double precision NOT NULL DEFAULT 0,
    market_m2 double precision NOT NULL DEFAULT 0,
    market_m3 double precision NOT NULL DEFAULT 0,   -- third and fourth central moment sums:
    market_m4 double precision NOT NULL DEFAULT 0,   -- the kurtosis the drift test allows for
    drift_statistic double precision,  -- log(live variance / training sigma^2)
    drift_p_value double precision,
    drift_detected_at timestamptz,     -- when drift was last significant
    PRIMARY KEY (agent, version),
    FOREIGN KEY (agent, version) REFERENCES rl_mlops.models (agent, version)
        ON UPDATE CASCADE ON DELETE CASCADE
);
COMMENT ON COLUMN rl_mlops.live_metrics.equity IS 'log of the equity (from 0), for the drawdown';
COMMENT ON COLUMN rl_mlops.live_metrics.total_return IS
    'sum of the net log returns of every decision (all symbols): pos_t * r_{t+1} - cost * |pos_t - pos_{t-1}|';
COMMENT ON COLUMN rl_mlops.live_metrics.max_drawdown IS
    'largest loss from a peak, as a fraction of the peak equity: 1 - exp(log equity - peak log equity)';
COMMENT ON COLUMN rl_mlops.live_metrics.abs_position_changes IS
    'sum of |pos_t - pos_{t-1}| (positions -1, 0, 1); turnover = this / decisions, 0 to 2 per bar';
COMMENT ON COLUMN rl_mlops.live_metrics.buy_hold_return IS
    'sum of the market''s log returns r_{t+1} over the same decisions (holding +1, no costs)';
COMMENT ON COLUMN rl_mlops.live_metrics.sharpe IS
    'annualised with 365.25 days over the median bar spacing of the last monitor() call''s bars';

-- The champion against the version it replaced, on the bars both traded:
-- the sequential test's state (rl_seq_serialize) and its last result.
CREATE TABLE IF NOT EXISTS rl_mlops.live_comparisons (
    agent text NOT NULL,
    champion text NOT NULL,
    predecessor text NOT NULL,
    started_at timestamptz NOT NULL DEFAULT now(),
    deployment_id bigint NOT NULL,      -- the deployment whose probation this is
    state double precision[] NOT NULL,
    decisions bigint NOT NULL DEFAULT 0,
    mean_difference double precision,
    log_lambda double precision,
    log_threshold double precision,
    p_value double precision,
    PRIMARY KEY (agent, champion, predecessor)
);

-- What each monitor() call did (the last one is status()'s "monitoring").
CREATE TABLE IF NOT EXISTS rl_mlops.monitor_calls (
    id bigserial PRIMARY KEY,
    agent text NOT NULL,
    called_at timestamptz NOT NULL DEFAULT now(),
    result jsonb NOT NULL
);
CREATE INDEX IF NOT EXISTS monitor_calls_agent_id ON rl_mlops.monitor_calls (agent, id);

SELECT pg_catalog.pg_extension_config_dump('rl_mlops.live_positions', '');
SELECT pg_catalog.pg_extension_config_dump('rl_mlops.live_ledger', '');
SELECT pg_catalog.pg_extension_config_dump('rl_mlops.live_late_bars', '');
SELECT pg_catalog.pg_extension_config_dump('rl_mlops.live_metrics', '');
SELECT pg_catalog.pg_extension_config_dump('rl_mlops.live_comparisons', '');
SELECT pg_catalog.pg_extension_config_dump('rl_mlops.monitor_calls', '');
SELECT pg_catalog.pg_extension_config_dump('rl_mlops.monitor_calls_id_seq', '');

-- The versions monitor() paper-trades for an agent and their roles: the
-- champion, and every version a deployment replaced within the last
-- probation_days (still in shadow, never removed by retention meanwhile).
CREATE OR REPLACE FUNCTION rl_mlops._live_versions(p_agent text)
RETURNS TABLE (version text, role text, first_bar_after timestamptz, predecessor text,
               deployment_id bigint)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT m.version, 'champion', coalesce(m.data_to, m.created_at),
           d.previous_version, d.id
      FROM rl_mlops.models m
      JOIN rl_mlops.agents a ON a.name = m.agent
      LEFT JOIN LATERAL (SELECT x.id, x.previous_version FROM rl_mlops.deployments x
                          WHERE x.agent = m.agent AND x.version = m.version
                          ORDER BY x.id DESC LIMIT 1) last ON true
      LEFT JOIN rl_mlops.deployments d
             ON d.id = last.id AND d.deployed_at > now() - make_interval(days => a.probation_days)
     WHERE m.agent = p_agent AND m.state = 'active'
    UNION ALL
    SELECT DISTINCT ON (s.version) s.version, 'shadow', coalesce(s.data_to, s.created_at), NULL, NULL
      FROM rl_mlops.deployments d
      JOIN rl_mlops.agents a ON a.name = d.agent
      JOIN rl_mlops.models s ON s.agent = d.agent AND s.version = d.previous_version
     WHERE d.agent = p_agent
       AND d.deployed_at > now() - make_interval(days => a.probation_days)
       AND s.state <> 'active'
       AND NOT EXISTS (SELECT 1 FROM rl_mlops.agent_challengers c
                        WHERE c.agent = p_agent AND c.version = s.version AND c.removed_at IS NULL)
    UNION ALL
    SELECT c.version, 'challenger', greatest(coalesce(m.data_to, m.created_at), c.added_at), NULL, NULL
      FROM rl_mlops.agent_challengers c
      JOIN rl_mlops.models m ON m.agent = c.agent AND m.version = c.version
     WHERE c.agent = p_agent AND c.removed_at IS NULL AND m.state <> 'active'
$$;

-- Paper-trade the champion and the shadows on the bars not evaluated yet
-- and act on the evidence (see the header).  Returns what it did.
CREATE OR REPLACE FUNCTION rl_mlops.monitor(agent text DEFAULT 'default')
RETURNS jsonb
AS 'MODULE_PATHNAME', 'rl_monitor'
LANGUAGE C VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp;

-- Live performance per agent, version and role: running aggregates (the
-- one annualisation: 365.25 days over the median bar spacing) and, for a
-- champion in probation, the paired test against its predecessor.
CREATE OR REPLACE VIEW rl_mlops.live_performance AS
SELECT lm.agent, lm.version,
       CASE WHEN m.state = 'active' THEN 'champion'
            WHEN EXISTS (SELECT 1 FROM rl_mlops.agent_challengers ch
                          WHERE ch.agent = lm.agent AND ch.version = lm.version
                            AND ch.removed_at IS NULL) THEN 'challenger'
            WHEN EXISTS (SELECT 1 FROM rl_mlops.deployments d JOIN rl_mlops.agents a ON a.name = d.agent
                          WHERE d.agent = lm.agent AND d.previous_version = lm.version
                            AND d.deployed_at > now() - make_interval(days => a.probation_days))
                 THEN 'shadow'
            ELSE 'retired' END AS role,
       lm.since, lm.last_bar, lm.decisions,
       lm.total_return, lm.sharpe, lm.max_drawdown,
       CASE WHEN lm.decisions > 0 THEN lm.abs_position_changes / lm.decisions END AS turnover,
       CASE WHEN lm.decisions > 0 THEN lm.hits::double precision / lm.decisions END AS hit_rate,
       lm.buy_hold_return,
       c.predecessor, c.decisions AS paired_decisions, c.mean_difference,
       c.log_lambda AS test_statistic, c.log_threshold AS test_threshold, c.p_value,
       CASE WHEN lm.market_decisions > 1 THEN sqrt(lm.market_m2 / (lm.market_decisions - 1)) END
           AS live_volatility,
       m.sigma AS training_sigma, lm.drift_statistic, lm.drift_p_value, lm.drift_detected_at
  FROM rl_mlops.live_metrics lm
  JOIN rl_mlops.models m ON m.agent = lm.agent AND m.version = lm.version
  -- the comparison of the champion's latest deployment (a version deployed
  -- again has one per deployment it made against another predecessor)
  LEFT JOIN rl_mlops.live_comparisons c
         ON c.agent = lm.agent AND c.champion = lm.version AND m.state = 'active'
        AND c.deployment_id = (SELECT max(d.id) FROM rl_mlops.deployments d
                                WHERE d.agent = lm.agent AND d.version = lm.version)
 ORDER BY lm.agent, role, lm.version;

-- The challengers of each agent, their live metrics beside the
-- champion's, and the paired test (challenger minus champion).
CREATE OR REPLACE VIEW rl_mlops.challengers AS
SELECT c.agent, c.version, c.traffic_share,
       CASE WHEN c.traffic_share > 0 THEN 'a/b' ELSE 'shadow' END AS mode,
       c.added_at AS since, c.added_by,
       lm.decisions, lm.total_return, lm.sharpe, lm.max_drawdown,
       champ.version AS champion, cm.decisions AS champion_decisions,
       cm.total_return AS champion_total_return, cm.sharpe AS champion_sharpe,
       cm.max_drawdown AS champion_max_drawdown,
       c.decisions AS paired_decisions, c.mean_difference,
       c.log_lambda AS test_statistic, c.log_threshold AS test_threshold,
       c.p_value, c.p_value_holm, c.family_size, c.beats_champion
  FROM rl_mlops.agent_challengers c
  LEFT JOIN rl_mlops.live_metrics lm ON lm.agent = c.agent AND lm.version = c.version
  LEFT JOIN rl_mlops.models champ ON champ.agent = c.agent AND champ.state = 'active'
  LEFT JOIN rl_mlops.live_metrics cm ON cm.agent = c.agent AND cm.version = champ.version
 WHERE c.removed_at IS NULL
 ORDER BY c.agent, c.slot;

-- Deploy on the evidence monitor() found (as the owner): action
-- auto_rollback (back to the predecessor) or promote (a challenger), the
-- evidence in details.
CREATE OR REPLACE FUNCTION rl_mlops._deploy_on_evidence(p_agent text, p_version text, p_action text,
                                                        p_reason text, p_details jsonb)
RETURNS text
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    a rl_mlops.agents := rl_mlops._lock_agent(p_agent);
    m rl_mlops.models := rl_mlops._model(p_agent, p_version);
BEGIN
    PERFORM rl_mlops._activate(a, m, p_action, p_reason);
    UPDATE rl_mlops.deployments SET details = p_details
     WHERE id = (SELECT max(id) FROM rl_mlops.deployments WHERE agent = p_agent);
    RETURN p_version;
END
$$;

-- What status() shows of monitoring: the last call, the champion's live
-- metrics, the probation comparison.
CREATE OR REPLACE FUNCTION rl_mlops._monitoring_status(p_agent text)
RETURNS jsonb
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT jsonb_build_object(
        'last_call', (SELECT jsonb_build_object('at', c.called_at, 'alerts', c.result -> 'alerts',
                                                'errors', c.result -> 'errors',
                                                'actions', c.result -> 'actions')
                        FROM rl_mlops.monitor_calls c WHERE c.agent = p_agent
                       ORDER BY c.id DESC LIMIT 1),
        'versions', (SELECT jsonb_agg(to_jsonb(p) - 'agent' ORDER BY p.role, p.version)
                       FROM rl_mlops.live_performance p WHERE p.agent = p_agent),
        'challengers', (SELECT jsonb_agg(to_jsonb(c) - 'agent' ORDER BY c.since, c.version)
                          FROM rl_mlops.challengers c WHERE c.agent = p_agent),
        'cron_job', (SELECT jsonb_build_object('jobid', j.jobid, 'schedule', j.schedule,
                                               'active', j.active, 'last_run_status', j.last_run_status,
                                               'last_run_message', j.last_run_message)
                       FROM rl_mlops._cron_job_if_granted(p_agent, 'monitor') j
                      WHERE j.jobid IS NOT NULL))
$$;

-- A pg_cron job that calls monitor(agent) on a schedule (every minute by
-- default), as the role calling this (which must be able to log in and
-- to read the source).  One job per agent.
CREATE OR REPLACE FUNCTION rl_mlops.schedule_monitoring(agent text DEFAULT 'default',
                                                        schedule text DEFAULT '* * * * *')
RETURNS bigint
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    job bigint;
BEGIN
    PERFORM rl_mlops._check_cron_scheduler(schedule_monitoring.agent, 'monitor');
    PERFORM rl_mlops._agent(schedule_monitoring.agent);
    EXECUTE 'SELECT cron.schedule($1, $2, $3)'
       INTO job
      USING rl_mlops._cron_job_name(schedule_monitoring.agent, 'monitor'),
            schedule_monitoring.schedule,
            format('SELECT rl_mlops.monitor(%L)', schedule_monitoring.agent);
    RETURN job;
END
$$;

-- Remove the agent's monitoring job; true if there was one.
CREATE OR REPLACE FUNCTION rl_mlops.unschedule_monitoring(agent text DEFAULT 'default')
RETURNS boolean
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM rl_mlops._require_pg_cron();
    PERFORM rl_mlops._agent(unschedule_monitoring.agent);
    RETURN rl_mlops._unschedule_cron_job(unschedule_monitoring.agent, 'monitor');
END
$$;

REVOKE ALL ON FUNCTION
    rl_mlops.schedule_monitoring(text, text),
    rl_mlops.unschedule_monitoring(text),
    rl_mlops._live_versions(text),
    rl_mlops._deploy_on_evidence(text, text, text, text, jsonb),
    rl_mlops.monitor(text)
FROM PUBLIC;
