-- rl_mlops 0.2.0: install script, and the second half of every upgrade
-- script (see sql/upgrade/README.md): every statement of sql/install/ can
-- run again over an older version of itself (IF NOT EXISTS, OR REPLACE).
\echo Use "CREATE EXTENSION rl_mlops" to load this file. \quit

-- A member of the extension, so DROP EXTENSION removes it.
CREATE SCHEMA IF NOT EXISTS rl_mlops;
COMMENT ON SCHEMA rl_mlops IS 'rl_mlops: model lifecycle of a reinforcement-learning trading agent';
