-- Retention (issue 3; issue 15 adds never-validated versions): cleanup_old_models removes
-- archived, rejected and registered versions older than retention_days, never the
-- active one, a pinned one or one of the newest keep_min; unlinks their
-- large objects in the same transaction; reports what it removed and the
-- bytes freed; runs after every deploy.  Ages are made by backdating rows.
\set ON_ERROR_STOP 1
BEGIN;
SET LOCAL client_min_messages = error;
SELECT plan(59);

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
-- the deployments as long ago: no version is in probation (live
-- monitoring's shadow, which retention keeps; 110_monitor.pl tests that)
UPDATE rl_mlops.deployments SET deployed_at = now() - interval '80 days' WHERE agent = 'k';
-- agent o: one old archived version that k's cleanup must not touch
CREATE TEMP TABLE o_v AS SELECT rl_test.add_model('o', 200, p_deploy => true) AS v1;
SELECT lives_ok($$SELECT rl_test.add_model('o', 201, p_deploy => true)$$, 'agent o: a second deploy');
UPDATE rl_mlops.models SET created_at = now() - interval '1 year', archived_at = now() - interval '1 year'
 WHERE agent = 'o' AND state = 'archived';
UPDATE rl_mlops.deployments SET deployed_at = now() - interval '1 year' WHERE agent = 'o';

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
SELECT is((SELECT j -> 'removed' FROM dry), pg_temp.versions(ARRAY[0, 1, 3, 4]),
          'dry run: would remove the old archived m0, m1, the old rejected m3 and the old never-validated m4, oldest first');
SELECT results_eq(
    $$SELECT j ->> 'agent', (j ->> 'dry_run')::boolean, (j ->> 'count')::int, (j ->> 'bytes_freed')::bigint,
             (j ->> 'retention_days')::int, (j ->> 'keep_min')::int FROM dry$$,
    $$SELECT 'k', true, 4, pg_temp.bytes(ARRAY[0, 1, 3, 4]), 30, 3$$,
    'dry run: reports count, bytes that would be freed, retention_days, keep_min');
SELECT is((SELECT count(*)::int FROM rl_mlops.models WHERE agent = 'k'), 11, 'dry run: removes no row');
SELECT is((SELECT count(*) FROM pg_largeobject_metadata), (SELECT c FROM lo0), 'dry run: unlinks no large object');

CREATE TEMP TABLE real_run AS SELECT rl_mlops.cleanup_old_models('k') AS j;
SELECT is((SELECT j -> 'removed' FROM real_run), (SELECT j -> 'removed' FROM dry),
          'the real run removes what the dry run announced');
SELECT results_eq(
    $$SELECT (j ->> 'dry_run')::boolean, (j ->> 'count')::int, (j ->> 'bytes_freed')::bigint FROM real_run$$,
    $$SELECT false, 4, pg_temp.bytes(ARRAY[0, 1, 3, 4])$$,
    'bytes_freed is the size of the removed checkpoints');
SELECT is(pg_temp.bytes(ARRAY[0, 1, 3]), (SELECT 81388 + 27112 + 27112)::bigint,
          'those sizes are the real checkpoint lengths');
SELECT is(pg_temp.left_of(ARRAY[0, 1, 3, 4]), NULL, 'their rows are gone');
SELECT is((SELECT count(*)::int FROM pg_largeobject_metadata WHERE oid IN (SELECT checkpoint FROM sizes WHERE n IN (0, 1, 3, 4))), 0,
          'their large objects are unlinked');
SELECT is((SELECT c FROM lo0) - (SELECT count(*) FROM pg_largeobject_metadata), 4::bigint,
          'exactly four large objects fewer');
SELECT throws_ok(format('SELECT lo_get(%s)', (SELECT checkpoint FROM sizes WHERE n = 0)), '42704', NULL,
                 'an unlinked checkpoint cannot be read');
SELECT is(pg_temp.left_of(ARRAY[2, 5, 6, 7, 8, 9, 10]), ARRAY[2, 5, 6, 7, 8, 9, 10],
          'kept: pinned m2, validated m5, recent m6, active m7, newest m8-m10');
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
SELECT is(pg_temp.left_of(ARRAY[5, 7, 10]), ARRAY[5, 7, 10],
          'never removed: the validated one, the active m7 (65 days old), the newest m10');
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

--------------------------------------------------------------------------
-- keep_min counts every state and breaks created_at ties by version; the
-- pass reads index ranges, so check it against the ranking definition
--------------------------------------------------------------------------

SELECT lives_ok($$SELECT rl_mlops.create_agent('t', 'rl_test.bars')$$, 'agent t (retention 30 days, keep_min 3)');
-- t1 .. t9, oldest first; t4 and t5 were created at the same instant, and
-- versions are all digits so their order is the same in every collation.
-- since_days: the age retention compares (archived_at, else validated_at,
-- else created_at).
CREATE TEMP TABLE tv (n int PRIMARY KEY, version text, state text, pinned boolean,
                      created_days int, since_days int);
INSERT INTO tv VALUES
    (1, '20200101_000001', 'archived', false, 100, 92),
    (2, '20200101_000002', 'archived', false, 90, 88),
    (3, '20200101_000003', 'archived', false, 80, 84),
    (4, '20200101_000004', 'archived', false, 70, 80),
    (5, '20200101_000005', 'archived', false, 70, 76),
    (6, '20200101_000006', 'rejected', false, 60, 72),
    (7, '20200101_000007', 'registered', false, 50, 50),
    (8, '20200101_000008', 'archived', true, 40, 100),
    (9, '20200101_000009', 'active', false, 30, 30);
DO $$
DECLARE
    r record;
    imported text;
BEGIN
    FOR r IN SELECT * FROM tv ORDER BY n LOOP
        imported := rl_mlops.import_model('t', rl_test.checkpoint(400 + r.n));
        UPDATE rl_mlops.models
           SET version = r.version, state = r.state, pinned = r.pinned,
               created_at = now() - make_interval(days => r.created_days),
               validated_at = CASE WHEN r.state <> 'registered' THEN now() - make_interval(days => r.since_days) END,
               deployed_at = CASE WHEN r.state IN ('archived', 'active') THEN now() - make_interval(days => r.since_days) END,
               archived_at = CASE WHEN r.state = 'archived' THEN now() - make_interval(days => r.since_days) END
         WHERE agent = 't' AND version = imported;
    END LOOP;
END
$$;
SELECT results_eq(
    $$SELECT version, state, pinned, created_at, coalesce(archived_at, validated_at, created_at)
        FROM rl_mlops.models WHERE agent = 't' ORDER BY version$$,
    $$SELECT version, state, pinned, now() - make_interval(days => created_days), now() - make_interval(days => since_days)
        FROM tv ORDER BY n$$,
    'set-up of t: states, pin, creation times (t4 and t5 equal) and ages');

CREATE FUNCTION pg_temp.t(ns int[]) RETURNS jsonb LANGUAGE sql AS
$$ SELECT coalesce(jsonb_agg(version ORDER BY n), '[]') FROM tv WHERE n = ANY (ns) $$;
-- What retention must remove, by its definition: every version ranked by
-- (created_at DESC, version DESC), oldest of the removed first.
CREATE FUNCTION pg_temp.by_definition(p_agent text) RETURNS jsonb LANGUAGE sql AS $$
    SELECT coalesce(jsonb_agg(m.version ORDER BY m.created_at, m.version), '[]')
      FROM (SELECT version, state, pinned, created_at,
                   coalesce(archived_at, validated_at, created_at) AS since,
                   row_number() OVER (ORDER BY created_at DESC, version DESC) AS newest_rank
              FROM rl_mlops.models WHERE agent = p_agent) m,
           rl_mlops.agents a
     WHERE a.name = p_agent
       AND m.state IN ('archived', 'rejected', 'registered') AND NOT m.pinned
       AND m.newest_rank > a.keep_min
       AND m.since < now() - make_interval(days => a.retention_days)
$$;
CREATE FUNCTION pg_temp.t_removes(p_keep_min int) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
    PERFORM rl_mlops.configure('t', keep_min => p_keep_min);
    RETURN rl_mlops.cleanup_old_models('t', dry_run => true) -> 'removed';
END
$$;

SELECT is(pg_temp.t_removes(1), pg_temp.t(ARRAY[1, 2, 3, 4, 5, 6, 7]),
          'keep_min 1: every old unpinned archived, rejected or never-validated version, oldest first, t4 before t5 by version');
SELECT is(pg_temp.t_removes(4), pg_temp.t(ARRAY[1, 2, 3, 4, 5]),
          'keep_min 4: the active t9, pinned t8, registered t7 and rejected t6 are the newest 4, so t6 stays');
SELECT is(pg_temp.t_removes(5), pg_temp.t(ARRAY[1, 2, 3, 4]),
          'keep_min 5: of t4 and t5, created at the same instant, the greater version t5 is the newer and stays');
SELECT is(pg_temp.t_removes(6), pg_temp.t(ARRAY[1, 2, 3]),
          'keep_min 6: both of the tie stay');
SELECT is(pg_temp.t_removes(8), pg_temp.t(ARRAY[1]),
          'keep_min 8: only the oldest goes');
SELECT is(pg_temp.t_removes(9), '[]'::jsonb, 'keep_min 9 = the number of versions: nothing goes');
SELECT is(pg_temp.t_removes(1000), '[]'::jsonb, 'keep_min above the number of versions: nothing goes');

-- every keep_min from 1 to 10 with retention_days around each age
CREATE TEMP TABLE t_grid AS
SELECT k, d, NULL::jsonb AS removed, NULL::jsonb AS expected
  FROM generate_series(1, 10) k, unnest(ARRAY[0, 29, 31, 60, 74, 78, 82, 86, 90, 95, 101]) d;
DO $$
DECLARE
    r record;
BEGIN
    FOR r IN SELECT k, d FROM t_grid LOOP
        PERFORM rl_mlops.configure('t', keep_min => r.k, retention_days => r.d);
        UPDATE t_grid SET removed = rl_mlops.cleanup_old_models('t', dry_run => true) -> 'removed',
                          expected = pg_temp.by_definition('t')
         WHERE k = r.k AND d = r.d;
    END LOOP;
END
$$;
SELECT is((SELECT count(*)::int FROM t_grid WHERE expected <> '[]'), 72,
          'the grid is not trivial: 72 of its 110 settings remove something (retention up to 90 days, keep_min up to 8)');
SELECT is_empty($$SELECT k, d, removed, expected FROM t_grid WHERE removed IS DISTINCT FROM expected$$,
                'for all 110 settings the dry run removes exactly what the ranking definition says');

SELECT lives_ok($$SELECT rl_mlops.configure('t', keep_min => 5, retention_days => 30)$$, 'keep_min 5, retention 30');
CREATE TEMP TABLE t_lo AS SELECT checkpoint FROM rl_mlops.models WHERE agent = 't';
SELECT results_eq(
    $$SELECT j -> 'removed', (j ->> 'bytes_freed')::bigint
        FROM (SELECT rl_mlops.cleanup_old_models('t') j) x$$,
    $$SELECT pg_temp.t(ARRAY[1, 2, 3, 4]), 4 * 27112::bigint$$,
    'the real run removes t1-t4 and reports their bytes');
SELECT is((SELECT array_agg(version ORDER BY version) FROM rl_mlops.models WHERE agent = 't'),
          (SELECT array_agg(version ORDER BY n) FROM tv WHERE n >= 5), 't5-t9 are left');
SELECT is((SELECT count(*)::int FROM pg_largeobject_metadata WHERE oid IN (SELECT checkpoint FROM t_lo)), 5,
          'and only their 5 large objects');
SELECT is(pg_temp.by_definition('t'), '[]'::jsonb, 'nothing more is due by the definition');

SELECT * FROM finish();
ROLLBACK;
