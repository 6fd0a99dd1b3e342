-- rl_mlops 0.1.0: install script.
\echo Use "CREATE EXTENSION rl_mlops" to load this file. \quit

-- A member of the extension, so DROP EXTENSION removes it.
CREATE SCHEMA rl_mlops;
COMMENT ON SCHEMA rl_mlops IS 'rl_mlops: model lifecycle of a reinforcement-learning trading agent';
