--------------------------------------------------------------------------
-- Serving (ARCHITECTURE.md "Serving")
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
CREATE OR REPLACE FUNCTION rl_mlops.act(obs real[], agent text DEFAULT 'default')
RETURNS integer
AS 'MODULE_PATHNAME', 'rl_act'
LANGUAGE C STABLE STRICT PARALLEL SAFE;

-- The policy's probabilities of the three actions (they sum to 1).
CREATE OR REPLACE FUNCTION rl_mlops.policy(obs real[], agent text DEFAULT 'default')
RETURNS real[]
AS 'MODULE_PATHNAME', 'rl_policy'
LANGUAGE C STABLE STRICT PARALLEL SAFE;

-- The critic's value of an observation.
CREATE OR REPLACE FUNCTION rl_mlops.value(obs real[], agent text DEFAULT 'default')
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
CREATE OR REPLACE FUNCTION rl_mlops.decide(
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
CREATE OR REPLACE FUNCTION rl_mlops.backtest(
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
-- periods_per_year = 365.25 days / the median spacing of the bars used;
-- sharpe_stderr is its standard error (iid returns), low_sample says it
-- rests on fewer than 250 decisions, in_sample that the range overlaps the
-- bars the version was trained and validated on.
CREATE OR REPLACE FUNCTION rl_mlops.backtest_summary(
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
    OUT periods_per_year double precision,
    OUT sharpe_stderr double precision,
    OUT low_sample boolean,
    OUT in_sample boolean)
RETURNS record
AS 'MODULE_PATHNAME', 'rl_backtest_summary'
LANGUAGE C STABLE PARALLEL RESTRICTED;

-- What this backend has cached: one row per version it serves for an
-- agent (the champion, then its A/B challengers), whether the agent's entry
-- is up to date, how often it read the registry and how often it parsed a
-- checkpoint.
CREATE OR REPLACE FUNCTION rl_mlops.serving_cache(
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
