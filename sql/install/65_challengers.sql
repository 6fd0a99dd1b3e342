--------------------------------------------------------------------------
-- Challengers (ARCHITECTURE.md, "Challengers"); monitor() and the view
-- rl_mlops.challengers are in 70_monitoring.sql
--
-- Up to 8 validated versions beside the champion.  monitor() paper-trades
-- each on the champion's bars and runs the paired always-valid test of the
-- challenger minus the champion, Holm-corrected over the family of
-- challengers compared with this champion; with auto_promote a challenger
-- that beats the champion is deployed (action 'promote').  A challenger
-- with a traffic_share in (0, 1) also decides for that share of the
-- agent's symbols in decide() (a stable hash of the symbol); 0 is a pure
-- shadow.  Retrained models become challengers in deploy_mode 'challenger'.
--------------------------------------------------------------------------

ALTER TABLE rl_mlops.agents
    ADD COLUMN IF NOT EXISTS auto_promote boolean NOT NULL DEFAULT false,
    ADD COLUMN IF NOT EXISTS deploy_mode text NOT NULL DEFAULT 'direct'
        CONSTRAINT deploy_mode_is_direct_or_challenger
        CHECK (deploy_mode IN ('direct', 'challenger')),
    ADD COLUMN IF NOT EXISTS challenger_share double precision NOT NULL DEFAULT 0.2
        CONSTRAINT challenger_share_between_0_and_1
        CHECK (challenger_share >= 0 AND challenger_share < 1);

-- One row per challenger, kept after removal (removed_at) while its
-- comparison counts in the family of the same champion.  slot orders the
-- A/B split: adding a challenger never moves the symbols of the others.
CREATE TABLE IF NOT EXISTS rl_mlops.agent_challengers (
    agent text NOT NULL,
    version text NOT NULL,
    traffic_share double precision NOT NULL DEFAULT 0
        CONSTRAINT traffic_share_between_0_and_1 CHECK (traffic_share >= 0 AND traffic_share < 1),
    slot integer NOT NULL,
    added_at timestamptz NOT NULL DEFAULT now(),
    added_by text NOT NULL,
    removed_at timestamptz,
    -- the paired test against "champion" (started afresh for a new one)
    champion text,
    state double precision[],
    decisions bigint NOT NULL DEFAULT 0,
    mean_difference double precision,
    log_lambda double precision,
    log_threshold double precision,
    p_value double precision,
    p_value_holm double precision,
    family_size integer,
    beats_champion boolean NOT NULL DEFAULT false,
    PRIMARY KEY (agent, version),
    FOREIGN KEY (agent, version) REFERENCES rl_mlops.models (agent, version)
        ON UPDATE CASCADE ON DELETE CASCADE
);
SELECT pg_catalog.pg_extension_config_dump('rl_mlops.agent_challengers', '');

-- Add (or re-share) a challenger.  Refused: an unvalidated, rejected or
-- active version, a share outside [0, 1), shares summing to 1 or more, a
-- ninth challenger.
CREATE OR REPLACE FUNCTION rl_mlops.add_challenger(agent text, version text,
                                                   traffic_share double precision DEFAULT 0)
RETURNS text
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    a rl_mlops.agents := rl_mlops._lock_agent(add_challenger.agent);
    m rl_mlops.models := rl_mlops._model(add_challenger.agent, add_challenger.version);
    others integer;
    others_share double precision;
BEGIN
    IF traffic_share IS NULL OR traffic_share = 'NaN' OR traffic_share < 0 OR traffic_share >= 1 THEN
        RAISE EXCEPTION 'traffic_share must be at least 0 and less than 1'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('Got %s.', coalesce(traffic_share::text, 'NULL')),
                  HINT = '0 is a pure shadow (paper-traded, never served); 0.2 serves the challenger''s decisions for about a fifth of the symbols.';
    END IF;
    IF m.state = 'active' THEN
        RAISE EXCEPTION 'model version "%" of agent "%" is the champion', m.version, a.name
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'A challenger is a validated version beside the active one.';
    END IF;
    PERFORM rl_mlops._check_servable(a, m);

    SELECT count(*), coalesce(sum(c.traffic_share), 0) INTO others, others_share
      FROM rl_mlops.agent_challengers c
     WHERE c.agent = a.name AND c.version <> m.version AND c.removed_at IS NULL;
    IF others >= 8 THEN
        RAISE EXCEPTION 'agent "%" already has 8 challengers', a.name
            USING ERRCODE = 'program_limit_exceeded',
                  HINT = 'Remove one with rl_mlops.remove_challenger() first.';
    END IF;
    IF others_share + traffic_share >= 1 THEN
        RAISE EXCEPTION 'the traffic shares of agent "%" would sum to %', a.name, others_share + traffic_share
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('The other challengers take %s of the symbols; the champion must keep some.', others_share),
                  HINT = 'Give this challenger a share below ' || (1 - others_share) || ', or 0 for a pure shadow.';
    END IF;

    INSERT INTO rl_mlops.agent_challengers AS c (agent, version, traffic_share, slot, added_by)
    VALUES (a.name, m.version, traffic_share,
            (SELECT coalesce(max(x.slot), 0) + 1 FROM rl_mlops.agent_challengers x WHERE x.agent = a.name),
            session_user)
    ON CONFLICT ON CONSTRAINT agent_challengers_pkey DO UPDATE
       SET traffic_share = EXCLUDED.traffic_share,
           -- a removed one comes back as new: a new test, the last slot
           slot = CASE WHEN c.removed_at IS NULL THEN c.slot ELSE EXCLUDED.slot END,
           added_at = CASE WHEN c.removed_at IS NULL THEN c.added_at ELSE now() END,
           added_by = EXCLUDED.added_by,
           champion = CASE WHEN c.removed_at IS NULL THEN c.champion END,
           state = CASE WHEN c.removed_at IS NULL THEN c.state END,
           decisions = CASE WHEN c.removed_at IS NULL THEN c.decisions ELSE 0 END,
           removed_at = NULL;
    PERFORM rl_mlops._invalidate_serving();
    RAISE LOG 'rl_mlops: version % of agent % is a challenger (traffic share %)', m.version, a.name, traffic_share;
    RETURN m.version;
END
$$;

-- Stop paper-trading and serving a challenger.  Its ledger rows stay
-- until the ledger's own retention.
CREATE OR REPLACE FUNCTION rl_mlops.remove_challenger(agent text, version text)
RETURNS boolean
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    a rl_mlops.agents := rl_mlops._lock_agent(remove_challenger.agent);
    m rl_mlops.models := rl_mlops._model(remove_challenger.agent, remove_challenger.version);
BEGIN
    UPDATE rl_mlops.agent_challengers c SET removed_at = now(), traffic_share = 0
     WHERE c.agent = a.name AND c.version = m.version AND c.removed_at IS NULL;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'model version "%" of agent "%" is not a challenger', m.version, a.name
            USING ERRCODE = 'undefined_object',
                  HINT = 'SELECT version FROM rl_mlops.challengers lists them.';
    END IF;
    PERFORM rl_mlops._invalidate_serving();
    RETURN true;
END
$$;

-- A trained version that passed validation and the gate: deployed
-- (deploy_mode 'direct') or added as a challenger with challenger_share.
-- Returns 'deploy' or 'challenger'.
CREATE OR REPLACE FUNCTION rl_mlops._deploy_trained(p_agent text, p_version text, p_reason text)
RETURNS text
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    a rl_mlops.agents := rl_mlops._lock_agent(p_agent);
BEGIN
    IF a.deploy_mode = 'challenger'
       AND EXISTS (SELECT 1 FROM rl_mlops.models WHERE agent = p_agent AND state = 'active') THEN
        PERFORM rl_mlops.add_challenger(p_agent, p_version, a.challenger_share);
        RETURN 'challenger';
    END IF;
    PERFORM rl_mlops.deploy_model(p_agent, p_version, p_reason);
    RETURN 'deploy';
END
$$;

REVOKE ALL ON FUNCTION
    rl_mlops.add_challenger(text, text, double precision),
    rl_mlops.remove_challenger(text, text),
    rl_mlops._deploy_trained(text, text, text)
FROM PUBLIC;
