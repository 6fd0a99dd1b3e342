-- Retention (issue 3, DESIGN section 6): cleanup_old_models removes
-- archived and rejected versions older than retention_days, never the
-- active one, a pinned one or one of the newest keep_min; unlinks their
-- large objects in the same transaction; reports what it removed and the
-- bytes freed; runs after every deploy.  Ages are made by backdating rows.
\set ON_ERROR_STOP 1
BEGIN;
SET LOCAL client_min_messages = error;
SELECT plan(43);

CREATE EXTENSION rl_mlops;
\ir helpers/checkpoint.sql

SELECT lives_ok($$SELECT rl_mlops.create_agent('k', 'rl_test.bars')$$, 'agent k (retention 30 days, keep_min 3)');
SELECT lives_ok($$SELECT rl_mlops.create_agent('o', 'rl_test.bars')$$, 'agent o (an other agent)');

-- m0 .. m10; m0 carries optimizer state, so sizes differ.
CREATE TEMP TABLE v (n int PRIMARY KEY, version text, age_days int);
INSERT INTO v VALUES (0, rl_mlops.import_model('k', rl_test.checkpoint(100, optimizer => true)), 100);
INSERT INTO v SELECT n, rl_mlops.import_model('k', rl_test.checkpoint(100 + n, corrupt => CASE WHEN n = 3 THEN 'huge' END)),
                     (ARRAY[90, 88, 85, 75, 70, 60, 65, 5, 4, 3])[n]
  FROM generate_series(1, 10) n ORDER BY n;
DO $$ BEGIN PERFORM rl_mlops.validate_model('k', version) FROM v ORDER BY n; END $$;
-- deployments leave m0 m1 m2 m6 m8 m9 m10 archived and m7 active
DO $$ BEGIN PERFORM rl_mlops.deploy_model('k', version) FROM v WHERE n IN (0, 1, 2, 6, 8, 9, 10, 7)
                    ORDER BY array_position(ARRAY[0, 1, 2, 6, 8, 9, 10, 7], n); END $$;
-- m4 back to registered (never validated)
UPDATE rl_mlops.models SET state = 'registered', validation = NULL, validated_at = NULL
 WHERE agent = 'k' AND version = (SELECT version FROM v WHERE n = 4);
SELECT lives_ok(format('SELECT rl_mlops.pin_model(''k'', %L)', (SELECT version FROM v WHERE n = 2)), 'pin m2');
-- ages: created age_days ago; archived/validated 80 days ago except m6
-- (archived 10 days ago) and m8-m10 (archived 50 days ago)
UPDATE rl_mlops.models m SET
       created_at = now() - make_interval(days => v.age_days),
       validated_at = CASE WHEN m.validated_at IS NOT NULL THEN now() - interval '80 days' END,
       archived_at = CASE WHEN m.state <> 'archived' THEN NULL
                          WHEN v.n = 6 THEN now() - interval '10 days'
                          WHEN v.n >= 8 THEN now() - interval '50 days'
                          ELSE now() - interval '80 days' END
  FROM v WHERE m.agent = 'k' AND m.version = v.version;
-- agent o: one old archived version that k's cleanup must not touch
CREATE TEMP TABLE o_v AS SELECT rl_test.add_model('o', 200, p_deploy => true) AS v1;
SELECT lives_ok($$SELECT rl_test.add_model('o', 201, p_deploy => true)$$, 'agent o: a second deploy');
UPDATE rl_mlops.models SET created_at = now() - interval '1 year', archived_at = now() - interval '1 year'
 WHERE agent = 'o' AND state = 'archived';

SELECT results_eq(
    $$SELECT n, state, pinned FROM rl_mlops.models JOIN v USING (version) WHERE agent = 'k' ORDER BY n$$,
    $$VALUES (0, 'archived'::text, false), (1, 'archived', false), (2, 'archived', true), (3, 'rejected', false),
             (4, 'registered', false), (5, 'validated', false), (6, 'archived', false), (7, 'active', false),
             (8, 'archived', false), (9, 'archived', false), (10, 'archived', false)$$,
    'set-up: the states and the pin');

CREATE TEMP TABLE sizes AS
SELECT n, m.checkpoint, length(rl_mlops.export_model('k', m.version))::bigint AS bytes
  FROM rl_mlops.models m JOIN v USING (version) WHERE m.agent = 'k';
CREATE TEMP TABLE lo0 AS SELECT count(*) AS c FROM pg_largeobject_metadata;
CREATE FUNCTION pg_temp.versions(ns int[]) RETURNS jsonb LANGUAGE sql AS
$$ SELECT jsonb_agg(version ORDER BY age_days DESC) FROM v WHERE n = ANY (ns) $$;
CREATE FUNCTION pg_temp.bytes(ns int[]) RETURNS bigint LANGUAGE sql AS
$$ SELECT sum(bytes)::bigint FROM sizes WHERE n = ANY (ns) $$;
CREATE FUNCTION pg_temp.left_of(ns int[]) RETURNS int[] LANGUAGE sql AS
$$ SELECT array_agg(n ORDER BY n) FROM rl_mlops.models JOIN v USING (version) WHERE agent = 'k' AND n = ANY (ns) $$;

--------------------------------------------------------------------------
-- dry run, then the real thing
--------------------------------------------------------------------------

CREATE TEMP TABLE dry AS SELECT rl_mlops.cleanup_old_models('k', dry_run => true) AS j;
SELECT is((SELECT j -> 'removed' FROM dry), pg_temp.versions(ARRAY[0, 1, 3]),
          'dry run: would remove the old archived m0, m1 and the old rejected m3, oldest first');
SELECT results_eq(
    $$SELECT j ->> 'agent', (j ->> 'dry_run')::boolean, (j ->> 'count')::int, (j ->> 'bytes_freed')::bigint,
             (j ->> 'retention_days')::int, (j ->> 'keep_min')::int FROM dry$$,
    $$SELECT 'k', true, 3, pg_temp.bytes(ARRAY[0, 1, 3]), 30, 3$$,
    'dry run: reports count, bytes that would be freed, retention_days, keep_min');
SELECT is((SELECT count(*)::int FROM rl_mlops.models WHERE agent = 'k'), 11, 'dry run: removes no row');
SELECT is((SELECT count(*) FROM pg_largeobject_metadata), (SELECT c FROM lo0), 'dry run: unlinks no large object');

CREATE TEMP TABLE real_run AS SELECT rl_mlops.cleanup_old_models('k') AS j;
SELECT is((SELECT j -> 'removed' FROM real_run), (SELECT j -> 'removed' FROM dry),
          'the real run removes what the dry run announced');
SELECT results_eq(
    $$SELECT (j ->> 'dry_run')::boolean, (j ->> 'count')::int, (j ->> 'bytes_freed')::bigint FROM real_run$$,
    $$SELECT false, 3, pg_temp.bytes(ARRAY[0, 1, 3])$$,
    'bytes_freed is the size of the removed checkpoints');
SELECT is(pg_temp.bytes(ARRAY[0, 1, 3]), (SELECT 81388 + 27112 + 27112)::bigint,
          'those sizes are the real checkpoint lengths');
SELECT is(pg_temp.left_of(ARRAY[0, 1, 3]), NULL, 'their rows are gone');
SELECT is((SELECT count(*)::int FROM pg_largeobject_metadata WHERE oid IN (SELECT checkpoint FROM sizes WHERE n IN (0, 1, 3))), 0,
          'their large objects are unlinked');
SELECT is((SELECT c FROM lo0) - (SELECT count(*) FROM pg_largeobject_metadata), 3::bigint,
          'exactly three large objects fewer');
SELECT throws_ok(format('SELECT lo_get(%s)', (SELECT checkpoint FROM sizes WHERE n = 0)), '42704', NULL,
                 'an unlinked checkpoint cannot be read');
SELECT is(pg_temp.left_of(ARRAY[2, 4, 5, 6, 7, 8, 9, 10]), ARRAY[2, 4, 5, 6, 7, 8, 9, 10],
          'kept: pinned m2, registered m4, validated m5, recent m6, active m7, newest m8-m10');
SELECT is((SELECT count(*)::int FROM rl_mlops.models WHERE agent = 'o'), 2, 'the other agent''s versions are untouched');

SELECT ok(rl_mlops.cleanup_old_models('k')
          @> jsonb_build_object('agent', 'k', 'dry_run', false, 'removed', '[]'::jsonb, 'count', 0,
                                'bytes_freed', 0, 'retention_days', 30, 'keep_min', 3),
          'a second run finds nothing to remove');

--------------------------------------------------------------------------
-- each rule on its own
--------------------------------------------------------------------------

-- pinned: never, until unpinned
SELECT is((SELECT (j ->> 'count')::int FROM (SELECT rl_mlops.cleanup_old_models('k') j) x), 0, 'pinned m2 survives');
SELECT lives_ok(format('SELECT rl_mlops.unpin_model(''k'', %L)', (SELECT version FROM v WHERE n = 2)), 'unpin m2');
SELECT is(rl_mlops.cleanup_old_models('k') -> 'removed', pg_temp.versions(ARRAY[2]), 'unpinned, the old m2 is removed');

-- retention_days: m6 was archived 10 days ago
SELECT is(rl_mlops.cleanup_old_models('k', dry_run => true) -> 'count', '0'::jsonb,
          'm6, archived 10 days ago, is younger than 30 days');
SELECT lives_ok($$SELECT rl_mlops.configure('k', retention_days => 5)$$, 'retention_days 5');
SELECT is(rl_mlops.cleanup_old_models('k', dry_run => true) -> 'removed', pg_temp.versions(ARRAY[6]),
          'with 5 days m6 is due; its age counts from archived_at, not created_at');

-- keep_min: m6 is the 4th newest
SELECT lives_ok($$SELECT rl_mlops.configure('k', keep_min => 4)$$, 'keep_min 4');
SELECT is(rl_mlops.cleanup_old_models('k', dry_run => true) -> 'count', '0'::jsonb,
          'with keep_min 4, m6 is one of the newest 4 and stays');
SELECT lives_ok($$SELECT rl_mlops.configure('k', keep_min => 1, retention_days => 0)$$, 'keep_min 1, retention 0');
SELECT is(rl_mlops.cleanup_old_models('k') -> 'removed', pg_temp.versions(ARRAY[6, 8, 9]),
          'keep_min 1: everything archived but the newest goes');
SELECT is(pg_temp.left_of(ARRAY[4, 5, 7, 10]), ARRAY[4, 5, 7, 10],
          'never removed: the registered and validated ones, the active m7 (65 days old), the newest m10');
SELECT is((SELECT state FROM rl_mlops.models JOIN v USING (version) WHERE agent = 'k' AND n = 7), 'active',
          'the active version is still active');

-- rejected versions age from their validation
SELECT lives_ok($$SELECT rl_mlops.configure('k', retention_days => 30, keep_min => 3)$$, 'back to 30 days, keep_min 3');
CREATE TEMP TABLE young_rejected AS SELECT rl_mlops.import_model('k', rl_test.checkpoint(300, corrupt => 'huge')) AS version;
DO $$ BEGIN PERFORM rl_mlops.validate_model('k', (SELECT version FROM young_rejected)); END $$;
UPDATE rl_mlops.models SET created_at = now() - interval '90 days', validated_at = now() - interval '2 days'
 WHERE agent = 'k' AND version = (SELECT version FROM young_rejected);
SELECT is(rl_mlops.cleanup_old_models('k', dry_run => true) -> 'count', '0'::jsonb,
          'a version rejected 2 days ago stays, however old its row');
UPDATE rl_mlops.models SET validated_at = now() - interval '31 days'
 WHERE agent = 'k' AND version = (SELECT version FROM young_rejected);
SELECT is(rl_mlops.cleanup_old_models('k') -> 'removed', jsonb_build_array((SELECT version FROM young_rejected)),
          'rejected 31 days ago, it is removed');

--------------------------------------------------------------------------
-- cleanup runs after every deploy (and after rollback), in its transaction
--------------------------------------------------------------------------

CREATE TEMP TABLE n11 AS SELECT rl_test.add_model('k', 311) AS version;
CREATE TEMP TABLE n12 AS SELECT rl_test.add_model('k', 312) AS version;
CREATE TEMP TABLE n13 AS SELECT rl_mlops.import_model('k', rl_test.checkpoint(313)) AS version;
-- m10, archived long ago, was kept as one of the newest 3 until n11-n13 arrived
UPDATE rl_mlops.models SET archived_at = now() - interval '60 days'
 WHERE agent = 'k' AND version = (SELECT version FROM v WHERE n = 10);
CREATE TEMP TABLE lo1 AS SELECT count(*) AS c FROM pg_largeobject_metadata;
SAVEPOINT before_deploy;
SELECT is(rl_mlops.deploy_model('k', (SELECT version FROM n11)), (SELECT version FROM n11), 'deploy n11');
SELECT is(pg_temp.left_of(ARRAY[10]), NULL, 'the deploy removed the old archived m10');
SELECT is((SELECT c FROM lo1) - (SELECT count(*) FROM pg_largeobject_metadata), 1::bigint,
          'and unlinked its large object');
SELECT results_eq(
    $$SELECT n, state FROM rl_mlops.models JOIN v USING (version) WHERE agent = 'k' AND n = 7$$,
    $$VALUES (7, 'archived'::text)$$,
    'the version it replaced is archived now, so it is kept');
ROLLBACK TO SAVEPOINT before_deploy;
SELECT is(pg_temp.left_of(ARRAY[10]), ARRAY[10], 'rolling back the deploy brings the removed row back');
SELECT is((SELECT count(*) FROM pg_largeobject_metadata), (SELECT c FROM lo1),
          'and its large object: cleanup is part of the deploy''s transaction');
SELECT lives_ok(format('SELECT rl_mlops.deploy_model(''k'', %L)', (SELECT version FROM n11)), 'deploy n11 again');
SELECT is(rl_mlops.rollback('k'), (SELECT version FROM v WHERE n = 7), 'roll back to m7');
SELECT is(pg_temp.left_of(ARRAY[10]), NULL, 'm10 is gone after the deploy');

SELECT * FROM finish();
ROLLBACK;
