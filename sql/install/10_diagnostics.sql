--------------------------------------------------------------------------
-- Diagnostics
--------------------------------------------------------------------------

-- Proves the training path end to end: a trainer background worker builds
-- the actor-critic with libtorch, runs a forward pass (compared with the C
-- forward pass) and ppo_updates PPO updates on a random batch.
CREATE OR REPLACE FUNCTION rl_mlops.check_trainer(
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
