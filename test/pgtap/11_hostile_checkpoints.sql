-- Hostile input (issue 3, "Bad input"): every malformed checkpoint, every
-- refused deploy or rollback and a large object deleted behind the
-- registry's back.  After each error: the same model rows, the same active
-- version, the same deployment history and no orphan large object.
\set ON_ERROR_STOP 1
BEGIN;
SET LOCAL client_min_messages = error;
SELECT plan(119);

CREATE EXTENSION rl_mlops;
\ir helpers/checkpoint.sql

CREATE TEMP TABLE lo_before_models AS SELECT count(*) AS n FROM pg_largeobject_metadata;

-- Agent h: v0 deployed first, then v1 (active, v0 archived), v2 and v5
-- validated, v3 only registered, v4 rejected by the forward-pass check.
SELECT lives_ok($$SELECT rl_mlops.create_agent('h', 'rl_test.bars')$$, 'agent h');
CREATE TEMP TABLE v (n int PRIMARY KEY, version text);
INSERT INTO v VALUES (0, rl_test.add_model('h', 10, p_deploy => true));
INSERT INTO v VALUES (1, rl_test.add_model('h', 11, p_deploy => true));
INSERT INTO v VALUES (2, rl_test.add_model('h', 12));
INSERT INTO v VALUES (3, rl_mlops.import_model('h', rl_test.checkpoint(13)));
INSERT INTO v VALUES (4, rl_mlops.import_model('h', rl_test.checkpoint(14, corrupt => 'huge')));
INSERT INTO v VALUES (5, rl_test.add_model('h', 15));
DO $$ BEGIN PERFORM rl_mlops.validate_model('h', (SELECT version FROM v WHERE n = 4)); END $$;
CREATE FUNCTION pg_temp.v(i int) RETURNS text LANGUAGE sql AS $$ SELECT version FROM v WHERE n = i $$;
CREATE FUNCTION pg_temp.oid_of(i int) RETURNS oid LANGUAGE sql AS
$$ SELECT checkpoint FROM rl_mlops.models WHERE agent = 'h' AND version = pg_temp.v(i) $$;

SELECT results_eq(
    $$SELECT n, state FROM rl_mlops.models JOIN v USING (version) WHERE agent = 'h' ORDER BY n$$,
    $$VALUES (0, 'archived'::text), (1, 'active'), (2, 'validated'), (3, 'registered'), (4, 'rejected'), (5, 'validated')$$,
    'set-up: one model in each state');
SELECT is((SELECT count(*) FROM pg_largeobject_metadata) - (SELECT n FROM lo_before_models), 6::bigint,
          'set-up: one large object per model');

CREATE TEMP TABLE base AS SELECT rl_test.snapshot('h') AS s;

--------------------------------------------------------------------------
-- Malformed checkpoints: import_model refuses them, writes nothing
--------------------------------------------------------------------------

CREATE TEMP TABLE bad (ord serial, what text, bytes bytea, sqlstate text, message text, detail text);
INSERT INTO bad (what, bytes, sqlstate, message, detail) VALUES
    ('random bytes', rl_test.checkpoint(1, corrupt => 'random'),
     '22P03', 'invalid checkpoint header length', '^The header claims [0-9]+ bytes but only 4088 bytes follow the length\.$'),
    ('an empty file', rl_test.checkpoint(corrupt => 'empty'),
     '22P03', 'checkpoint is too short', 'this one has 0'),
    ('a truncated file', rl_test.checkpoint(corrupt => 'truncated'),
     '22P03', 'invalid tensor "critic.weight" in checkpoint', 'beyond the [0-9]+ data bytes'),
    ('a file cut inside its header', rl_test.checkpoint(corrupt => 'truncated_header'),
     '22P03', 'invalid checkpoint header length', 'but only 12 bytes follow'),
    ('a header length larger than the file', rl_test.checkpoint(corrupt => 'header_len'),
     '22P03', 'invalid checkpoint header length', 'The header claims [0-9]+ bytes'),
    ('a huge claimed header (2^64 - 1 bytes)', rl_test.checkpoint(corrupt => 'huge_header'),
     '22P03', 'invalid checkpoint header length', 'claims 18446744073709551615 bytes'),
    ('a header that is not JSON', rl_test.checkpoint(corrupt => 'not_json'),
     '22P03', 'invalid checkpoint header', 'not valid JSON'),
    ('a header without __metadata__ and no sigma', rl_test.checkpoint(corrupt => 'no_metadata'),
     '22023', 'checkpoint has no rl_mlops metadata, so sigma must be given', 'no __metadata__'),
    ('offsets outside the buffer', rl_test.checkpoint(corrupt => 'offsets'),
     '22P03', 'invalid tensor "actor.bias" in checkpoint', 'data_offsets end at [0-9]+, beyond the [0-9]+ data bytes'),
    ('overlapping offsets', rl_test.checkpoint(corrupt => 'overlap'),
     '22P03', 'invalid checkpoint data layout', 'overlap'),
    ('dtype I8', rl_test.checkpoint(corrupt => 'dtype'),
     '22P03', 'invalid tensor "trunk.0.bias" in checkpoint', 'only F32, F16, BF16 and F64'),
    ('a missing tensor', rl_test.checkpoint(corrupt => 'missing'),
     '22000', 'checkpoint is missing tensor "critic.bias"', NULL),
    ('an extra tensor', rl_test.checkpoint(corrupt => 'extra'),
     '22000', 'unexpected tensor "extra.weight" in checkpoint', '8 parameters'),
    ('a duplicate tensor', rl_test.checkpoint(corrupt => 'duplicate'),
     '22P03', 'invalid tensor "actor.bias" in checkpoint', 'more than once'),
    ('a wrong shape', rl_test.checkpoint(corrupt => 'shape'),
     '22000', 'tensor "trunk.0.weight" has the wrong shape', 'has \[33, 64\]; the agent''s architecture needs \[64, 33\]'),
    ('a shape larger than its data', rl_test.checkpoint(corrupt => 'shape_size'),
     '22P03', 'invalid tensor "trunk.0.bias" in checkpoint', 'span 256 bytes but its shape needs 260'),
    ('a NaN weight', rl_test.checkpoint(corrupt => 'nan'),
     '22P03', 'non-finite value in checkpoint tensor "trunk.2.weight"', 'NaN'),
    ('an infinite weight', rl_test.checkpoint(corrupt => 'inf'),
     '22P03', 'non-finite value in checkpoint tensor "trunk.2.weight"', 'infinite'),
    ('incomplete optimizer state', rl_test.checkpoint(corrupt => 'partial_optim'),
     '22000', 'checkpoint has incomplete optimizer state', 'optim.exp_avg_sq.critic.bias'),
    ('another hidden size', rl_test.checkpoint(hidden_size => 32),
     '22000', 'checkpoint architecture does not match the agent', 'expects hidden = 64 but the checkpoint has 32'),
    ('another window', rl_test.checkpoint(window_size => 16),
     '22000', 'checkpoint architecture does not match the agent', 'expects window = 32 but the checkpoint has 16'),
    ('features the agent does not have', rl_test.checkpoint(n_features => 4),
     '22000', 'checkpoint architecture does not match the agent', 'expects n_features = 0 but the checkpoint has 4');

SELECT t FROM bad, LATERAL (
    SELECT throws_ok(format('SELECT rl_mlops.import_model(''h'', %L::bytea)', bytes), sqlstate, message,
                     format('import_model refuses %s', what))
    UNION ALL
    SELECT CASE WHEN detail IS NULL
                THEN is(split_part(rl_test.error_of(format('SELECT rl_mlops.import_model(''h'', %L::bytea)', bytes)), ' | ', 3),
                        '', format('%s: no detail', what))
                ELSE matches(split_part(rl_test.error_of(format('SELECT rl_mlops.import_model(''h'', %L::bytea)', bytes)), ' | ', 3),
                             detail, format('%s: the detail says what is wrong', what))
           END
    UNION ALL
    SELECT is(rl_test.snapshot('h'), (SELECT s FROM base),
              format('after %s: same rows, same active version, no orphan large object', what))
) x(t) ORDER BY ord;

-- the size cap (rl_mlops.max_checkpoint_size) on import and on read
SET rl_mlops.max_checkpoint_size = '64kB';
SELECT throws_ok($$SELECT rl_mlops.import_model('h', rl_test.checkpoint(16, optimizer => true))$$,
                 '22P03', 'checkpoint is too large', 'import_model refuses a checkpoint above max_checkpoint_size');
SELECT is(rl_test.snapshot('h'), (SELECT s FROM base), 'after a too large checkpoint: nothing written');
SELECT lives_ok($$SELECT rl_mlops.import_model('h', rl_test.checkpoint(17))$$,
                'a checkpoint under the cap is still accepted');
RESET rl_mlops.max_checkpoint_size;
SELECT throws_ok($$SELECT rl_mlops.import_model('h', NULL)$$, '22004', 'checkpoint must not be null',
                 'import_model refuses NULL');
SELECT throws_ok($$SELECT rl_mlops.import_model('nope', rl_test.checkpoint(1))$$, '42704',
                 'agent "nope" does not exist', 'import_model refuses an unknown agent');
DO $$ BEGIN
    PERFORM lo_unlink(checkpoint) FROM rl_mlops.models WHERE agent = 'h' AND version NOT IN (SELECT version FROM v);
    DELETE FROM rl_mlops.models WHERE agent = 'h' AND version NOT IN (SELECT version FROM v);
END $$;
SELECT is(rl_test.snapshot('h'), (SELECT s FROM base), 'back to the set-up');

--------------------------------------------------------------------------
-- Refused deploys and rollbacks
--------------------------------------------------------------------------

SELECT throws_ok($$SELECT rl_mlops.deploy_model('h', '20000101_000000')$$, '42704',
                 'model version "20000101_000000" of agent "h" does not exist',
                 'deploying an unknown version is refused');
SELECT is(rl_test.snapshot('h'), (SELECT s FROM base), 'after deploying an unknown version: nothing changed');
SELECT throws_ok(format('SELECT rl_mlops.deploy_model(''h'', %L)', pg_temp.v(4)), '55000',
                 format('model version "%s" of agent "h" was rejected by validation', pg_temp.v(4)),
                 'deploying a rejected version is refused');
SELECT matches(rl_test.error_of(format('SELECT rl_mlops.deploy_model(''h'', %L)', pg_temp.v(4))),
               'forward_pass: forward pass gives an invalid probability',
               'the refusal says which check failed');
SELECT is(rl_test.snapshot('h'), (SELECT s FROM base), 'after deploying a rejected version: nothing changed');
SELECT throws_ok(format('SELECT rl_mlops.deploy_model(''h'', %L)', pg_temp.v(3)), '55000',
                 format('model version "%s" of agent "h" has not been validated', pg_temp.v(3)),
                 'deploying an unvalidated version is refused');
SELECT is(rl_test.snapshot('h'), (SELECT s FROM base), 'after deploying an unvalidated version: nothing changed');
SELECT throws_ok($$SELECT rl_mlops.deploy_model('nope', '20000101_000000')$$, '42704',
                 'agent "nope" does not exist', 'deploying for an unknown agent is refused');

SELECT lives_ok($$SELECT rl_mlops.create_agent('r', 'rl_test.bars')$$, 'agent r');
SELECT throws_ok($$SELECT rl_mlops.rollback('r')$$, '55000', 'agent "r" has no active model to roll back',
                 'rollback with no model at all is refused');
CREATE TEMP TABLE r_first AS SELECT rl_test.add_model('r', 20, p_deploy => true) AS version;
CREATE TEMP TABLE r_base AS SELECT rl_test.snapshot('r') AS s;
SELECT throws_ok($$SELECT rl_mlops.rollback('r')$$, '55000', 'agent "r" has no earlier deployment to roll back to',
                 'rollback with no earlier deployment is refused');
SELECT is(rl_test.snapshot('r'), (SELECT s FROM r_base), 'after the refused rollback: nothing changed');
SELECT throws_ok($$SELECT rl_mlops.rollback('nope')$$, '42704', 'agent "nope" does not exist',
                 'rollback of an unknown agent is refused');

--------------------------------------------------------------------------
-- A checkpoint changed or deleted behind the registry's back
--------------------------------------------------------------------------

-- v2 (validated, not active): its large object unlinked directly
CREATE TEMP TABLE v2_oid AS SELECT pg_temp.oid_of(2) AS o;
DO $$ BEGIN PERFORM lo_unlink((SELECT o FROM v2_oid)); END $$;
UPDATE base SET s = rl_test.snapshot('h');
SELECT throws_ok(format('SELECT rl_mlops.deploy_model(''h'', %L)', pg_temp.v(2)), '55000',
                 format('model version "%s" of agent "h" no longer passes validation', pg_temp.v(2)),
                 'deploying a validated version whose large object is gone is refused');
SELECT matches(rl_test.error_of(format('SELECT rl_mlops.deploy_model(''h'', %L)', pg_temp.v(2))),
               'readable: checkpoint large object [0-9]+ does not exist',
               'the refusal names the missing large object');
SELECT is(rl_test.snapshot('h'), (SELECT s FROM base), 'after the refused deploy: nothing changed');
CREATE TEMP TABLE val2 AS SELECT rl_mlops.validate_model('h', pg_temp.v(2)) AS j;
SELECT results_eq(
    $$SELECT j -> 'ok', j #> '{checks,readable,ok}', j #>> '{checks,readable,message}',
             j #> '{checks,loads,ok}', j #>> '{checks,loads,message}', j #> '{checks,forward_pass,ok}' FROM val2$$,
    $$SELECT 'false'::jsonb, 'false'::jsonb,
             format('checkpoint large object %s does not exist: The large object was unlinked outside the registry.',
                    (SELECT o FROM v2_oid)),
             'false'::jsonb, 'skipped: an earlier check failed', 'false'::jsonb$$,
    'validate_model records readable = false and skips the later checks');
SELECT results_eq(
    $$SELECT state, validation = (SELECT j FROM val2) FROM rl_mlops.models WHERE agent = 'h' AND version = pg_temp.v(2)$$,
    $$VALUES ('rejected'::text, true)$$,
    'the version is now rejected, with the failed checks on its row');
SELECT throws_ok(format('SELECT rl_mlops.deploy_model(''h'', %L)', pg_temp.v(2)), '55000',
                 format('model version "%s" of agent "h" was rejected by validation', pg_temp.v(2)),
                 'deploying it is refused as rejected');
SELECT throws_ok(format('SELECT rl_mlops.export_model(''h'', %L)', pg_temp.v(2)), '42704',
                 format('checkpoint large object %s does not exist', (SELECT o FROM v2_oid)),
                 'exporting it names the missing large object');
SELECT is(rl_test.snapshot('h'), (SELECT s FROM base), 'after all that: same rows, same active version');

-- v5 (validated): one byte of its large object overwritten
DO $$ BEGIN PERFORM lo_put(pg_temp.oid_of(5), 200, '\x00'::bytea); END $$;
SELECT throws_ok(format('SELECT rl_mlops.deploy_model(''h'', %L)', pg_temp.v(5)), '55000',
                 format('model version "%s" of agent "h" no longer passes validation', pg_temp.v(5)),
                 'deploying a version whose large object was modified is refused');
SELECT throws_ok(format('SELECT rl_mlops.export_model(''h'', %L)', pg_temp.v(5)), 'XX001',
                 format('checkpoint large object %s does not match its sha256', pg_temp.oid_of(5)),
                 'exporting a modified checkpoint is refused');
SELECT results_eq(
    $$SELECT (j -> 'ok')::text, (j #> '{checks,readable,ok}')::text, j #>> '{checks,readable,message}' ~ 'does not match its sha256'
        FROM (SELECT rl_mlops.validate_model('h', pg_temp.v(5)) AS j) x$$,
    $$VALUES ('false', 'false', true)$$,
    'validate_model finds the sha256 mismatch');
SELECT is((SELECT state FROM rl_mlops.models WHERE agent = 'h' AND version = pg_temp.v(5)), 'rejected',
          'the modified version is rejected');
SELECT is(rl_test.snapshot('h'), (SELECT s FROM base), 'after the modified checkpoint: nothing else changed');

-- v1 (the active one): its large object unlinked directly.  Observed and
-- documented behaviour: validation records the failure but the state stays
-- 'active' (validate_model never changes an active or archived state);
-- status() still names it; deploy_model of it is the usual no-op for the
-- active version (not refused); rollback to an intact version works, and
-- the broken version can then not be deployed again.
CREATE TEMP TABLE v1_oid AS SELECT pg_temp.oid_of(1) AS o;
DO $$ BEGIN PERFORM lo_unlink((SELECT o FROM v1_oid)); END $$;
UPDATE base SET s = rl_test.snapshot('h');
SELECT results_eq(
    $$SELECT j -> 'ok', j #> '{checks,readable,ok}' FROM (SELECT rl_mlops.validate_model('h', pg_temp.v(1)) AS j) x$$,
    $$VALUES ('false'::jsonb, 'false'::jsonb)$$,
    'validating the active version finds its large object missing');
SELECT is((SELECT state FROM rl_mlops.models WHERE agent = 'h' AND version = pg_temp.v(1)), 'active',
          'the active version keeps its state (validation never demotes it)');
SELECT is((SELECT validation #> '{checks,readable,ok}' FROM rl_mlops.models WHERE agent = 'h' AND version = pg_temp.v(1)),
          'false'::jsonb, 'but its row records the failed check');
SELECT results_eq(
    $$SELECT j #>> '{status,model_info,current_version}', (j #>> '{status,model_loaded}')::boolean
        FROM (SELECT rl_mlops.status('h') AS j) x$$,
    $$SELECT pg_temp.v(1), true$$,
    'status() still names the active version');
SELECT is(rl_mlops.deploy_model('h', pg_temp.v(1)), pg_temp.v(1),
          'deploy_model of the broken active version is a no-op (not refused)');
SELECT is(rl_test.snapshot('h'), (SELECT s FROM base), 'and records nothing');
SELECT throws_ok($$SELECT rl_mlops.export_model('h')$$, '42704',
                 format('checkpoint large object %s does not exist', (SELECT o FROM v1_oid)),
                 'export_model of the active version names the missing large object');
SELECT is(rl_mlops.rollback('h', reason => 'checkpoint lost'), pg_temp.v(0),
          'rollback to the previous, intact version works');
SELECT results_eq(
    $$SELECT n, state FROM rl_mlops.models JOIN v USING (version) WHERE agent = 'h' AND n IN (0, 1) ORDER BY n$$,
    $$VALUES (0, 'active'::text), (1, 'archived'::text)$$,
    'the broken version is archived');
UPDATE base SET s = rl_test.snapshot('h');
SELECT throws_ok(format('SELECT rl_mlops.deploy_model(''h'', %L)', pg_temp.v(1)), '55000',
                 format('model version "%s" of agent "h" no longer passes validation', pg_temp.v(1)),
                 'the broken version cannot be deployed again');
SELECT throws_ok(format('SELECT rl_mlops.rollback(''h'', to_version => %L)', pg_temp.v(1)), '55000',
                 format('model version "%s" of agent "h" no longer passes validation', pg_temp.v(1)),
                 'nor rolled back to');
SELECT is(rl_test.snapshot('h'), (SELECT s FROM base), 'after the refusals: nothing changed');

-- Retention and drop_agent must cope with a large object that is already
-- gone (otherwise one lost checkpoint would block every later deploy).
UPDATE rl_mlops.models SET created_at = now() - interval '100 days',
                           archived_at = CASE WHEN state = 'archived' THEN now() - interval '100 days' END,
                           validated_at = now() - interval '100 days'
 WHERE agent = 'h' AND version IN (pg_temp.v(1), pg_temp.v(2));
UPDATE rl_mlops.deployments SET deployed_at = now() - interval '100 days' WHERE agent = 'h';
SELECT is((SELECT array_agg(x ORDER BY x) FROM jsonb_array_elements_text(rl_mlops.cleanup_old_models('h') -> 'removed') x),
          ARRAY[pg_temp.v(1), pg_temp.v(2)],
          'cleanup removes old versions whose large objects are already gone');
SELECT is((SELECT count(*)::int FROM rl_mlops.models WHERE agent = 'h'), 4, 'their rows are gone');
INSERT INTO v VALUES (6, rl_test.add_model('h', 30));
SELECT is(rl_mlops.deploy_model('h', pg_temp.v(6)), pg_temp.v(6), 'deploying (with retention) still works');
DO $$ BEGIN PERFORM lo_unlink(pg_temp.oid_of(3)); END $$;
SELECT is(rl_mlops.drop_agent('h') -> 'models_removed', '5'::jsonb,
          'drop_agent removes an agent one of whose large objects is gone');
SELECT is((SELECT count(*) FROM pg_largeobject_metadata) - (SELECT n FROM lo_before_models), 1::bigint,
          'only agent r''s large object is left');

-- DROP EXTENSION unlinks the remaining checkpoints (event trigger)
DROP EXTENSION rl_mlops;
SELECT is((SELECT count(*) FROM pg_largeobject_metadata), (SELECT n FROM lo_before_models),
          'DROP EXTENSION leaves no large object behind');

SELECT * FROM finish();
ROLLBACK;
