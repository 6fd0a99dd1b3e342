# Races between sessions (issue 7), each forced into its worst interleaving
# with locks the test holds, then checked with check_integrity():
#   1. retrain vs retrain: both callers get the same run, one worker trains;
#   2. deploy vs deploy: of two different versions, serialised with a
#      consistent history; of the same version, one deployment only;
#   3. deploy vs cleanup: the active version and the newest keep_min
#      versions are never deleted, and a deploy of a version a cleanup just
#      removed fails cleanly;
#   4. rollback vs a retrain finishing: the rollback waits for the retrain's
#      deploy to commit, then rolls back from it.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use RlMlops;

my $PAUSE_KEY = 1380732236;

my $node = new_cluster('races', conf => 'rl_mlops.test_pause_before_deploy_commit = on');

# Wait until a backend whose query matches $re waits for a lock.
sub wait_blocked
{
	my ($re, $what) = @_;
	$node->poll_query_until('postgres', qq{
		SELECT count(*) > 0 FROM pg_stat_activity
		 WHERE wait_event_type = 'Lock' AND query ~ '$re'})
	  or die "$what never waited for a lock";
}

# Every deployment's previous_version is the version deployed (or rolled
# back to) just before it, and the last one is the active version.
sub history_consistent
{
	my $name = shift;
	is( sql(q{
		SELECT count(*) FROM (
		    SELECT previous_version, lag(version) OVER (ORDER BY id) AS before
		      FROM rl_mlops.deployments WHERE agent = 'r') d
		 WHERE previous_version IS DISTINCT FROM before}),
		'0', "$name: each deployment's previous version is the one deployed before it");
	is(sql(q{SELECT version FROM rl_mlops.deployments WHERE agent = 'r' ORDER BY id DESC LIMIT 1}),
		active_version($node, 'r'), "$name: the last deployment is the active version");
}

sql(q{CREATE EXTENSION rl_mlops});
create_bars($node, 'bars', seed => 0.6);
small_agent($node, 'r', 'bars', initial_epochs => 2, incremental_epochs => 1);
my ($rc, $out, $err) = $node->psql('postgres', "SELECT rl_mlops.retrain('r', async => false)");
like($err, qr/NOTICE:  run $out succeeded/, 'agent r has a first model');

#
# 1. retrain vs retrain.  With rl_mlops.runs locked against writes, the
# first worker takes the agent's row lock and waits to record its run; the
# second waits for that row lock, then finds the first one's run.
#
my $runs_before = sql(q{SELECT count(*) FROM rl_mlops.runs});
my $locker = $node->background_psql('postgres', on_error_stop => 0);
$locker->query_safe('BEGIN; LOCK TABLE rl_mlops.runs IN EXCLUSIVE MODE;');
my @callers = map { $node->background_psql('postgres', on_error_stop => 0) } 1 .. 2;
$_->query_until(qr/go/, "\\echo go\nSELECT 'run ' || rl_mlops.retrain('r', epochs => 1);\n") for @callers;
ok( $node->poll_query_until('postgres',
		q{SELECT count(*) = 2 FROM pg_stat_activity WHERE backend_type = 'rl_mlops trainer'}),
	'1. two retrain() calls started two workers at once');
ok( $node->poll_query_until('postgres', q{
		SELECT string_agg(wait_event, ',' ORDER BY wait_event = 'relation') = 'transactionid,relation'
		  FROM pg_stat_activity
		 WHERE backend_type = 'rl_mlops trainer' AND wait_event_type = 'Lock'}),
	'1. one of them holds the agent\'s row lock and waits to record its run, the other waits for the row');
$locker->query_safe('COMMIT');
$locker->quit;
my @ids;
for my $c (@callers)
{
	$c->{run}->pump until $c->{stdout} =~ /run (\d+)/ || $c->{timeout}->is_expired;
	push @ids, $c->{stdout} =~ /run (\d+)/ ? $1 : 'none';
	$c->quit;
}
is($ids[0], $ids[1], "1. both callers got the same run ($ids[0])");
is(sql(q{SELECT count(*) FROM rl_mlops.runs}), $runs_before + 1, '1. one run row');
$node->poll_query_until('postgres',
	"SELECT state NOT IN ('queued', 'preparing', 'training', 'validating', 'deploying') FROM rl_mlops.runs WHERE id = $ids[0]")
  or die "run $ids[0] did not end";
is(sql("SELECT state FROM rl_mlops.runs WHERE id = $ids[0]"), 'succeeded', '1. and it succeeded');
is(sql(q{SELECT count(*) FROM rl_mlops.models WHERE origin = 'trained'}), '2', '1. one model more, not two');
integrity_ok($node, '1. retrain vs retrain', 'r');

#
# Versions to deploy: copies of the active checkpoint, validated.
#
my @v = map {
	sql(q{SELECT rl_mlops.import_model('r', rl_mlops.export_model('r'))})
} 1 .. 4;
sql("SELECT rl_mlops.validate_model('r', '$_')") for @v;
# Validation judged each copy on the agent's holdout; deploying one that
# lost money would WARN (160_lineage tests it) and make query_safe die.
sql(q{UPDATE rl_mlops.models SET metrics = '{}' WHERE agent = 'r' AND origin = 'imported'});

#
# 2. deploy vs deploy.
#
my $s1 = $node->background_psql('postgres', on_error_stop => 0);
my $s2 = $node->background_psql('postgres', on_error_stop => 0);
$s1->query_safe("BEGIN; SELECT rl_mlops.deploy_model('r', '$v[0]', 'session 1');");
$s2->query_until(qr/go/, "\\echo go\nSELECT rl_mlops.deploy_model('r', '$v[1]', 'session 2');\n");
wait_blocked('session 2', '2. the second deploy');
is(active_version($node, 'r'), sql(q{SELECT version FROM rl_mlops.deployments ORDER BY id DESC LIMIT 1}),
	'2. while both are in flight the committed state is unchanged');
$s1->query_safe('COMMIT');
$s2->{run}->pump until $s2->{stdout} =~ /\Q$v[1]\E/ || $s2->{timeout}->is_expired;
is(active_version($node, 'r'), $v[1], '2. the second deploy waited for the first, then won');
is( sql(q{SELECT string_agg(version || ' from ' || previous_version || ' (' || reason || ')', ', ' ORDER BY id)
	        FROM (SELECT * FROM rl_mlops.deployments ORDER BY id DESC LIMIT 2) d}),
	"$v[0] from " . sql(q{SELECT previous_version FROM rl_mlops.deployments
	                        WHERE reason = 'session 1'}) . " (session 1), $v[1] from $v[0] (session 2)",
	'2. the history records both, the second from the first');
history_consistent('2. two versions');

# the same version from both sessions: one deployment only
my $n_dep = sql(q{SELECT count(*) FROM rl_mlops.deployments});
$s1->query_safe("BEGIN; SELECT rl_mlops.deploy_model('r', '$v[2]', 'same 1');");
$s2->query_until(qr/go2/, "\\echo go2\nSELECT 'again ' || rl_mlops.deploy_model('r', '$v[2]', 'same 2');\n");
wait_blocked('same 2', '2. the second deploy of the same version');
$s1->query_safe('COMMIT');
$s2->{run}->pump until $s2->{stdout} =~ /again \Q$v[2]\E/ || $s2->{timeout}->is_expired;
like($s2->{stderr}, qr/NOTICE:  model version "\Q$v[2]\E" of agent "r" is already active/,
	'2. the same version twice: the second deploy finds it already active');
is(sql(q{SELECT count(*) FROM rl_mlops.deployments}), $n_dep + 1, '2. one deployment recorded, not two');
history_consistent('2. the same version');
integrity_ok($node, '2. deploy vs deploy', 'r');
$s1->quit;
$s2->quit;

#
# 3. deploy vs cleanup.  retention 0 days, keep_min 2: every archived
# version but the newest two is a cleanup victim.
#
# (probation_days 0: no version is kept in shadow for live monitoring)
sql(q{SELECT rl_mlops.configure('r', retention_days => 0, keep_min => 2, probation_days => 0) IS NULL});
sql(q{UPDATE rl_mlops.models SET created_at = created_at - interval '1 day', archived_at = archived_at - interval '1 day'
       WHERE agent = 'r'});
my $oldest = sql(q{SELECT version FROM rl_mlops.models WHERE state = 'archived' ORDER BY created_at, version LIMIT 1});
my $dry = sql(q{SELECT rl_mlops.cleanup_old_models('r', dry_run => true) -> 'removed'});
like($dry, qr/"\Q$oldest\E"/, "3. the oldest archived version $oldest is a cleanup victim");

# deploy first (uncommitted), cleanup waits: the deployed version survives
$s1 = $node->background_psql('postgres', on_error_stop => 0);
$s2 = $node->background_psql('postgres', on_error_stop => 0);
# (query, not query_safe: deploy_model may warn that this old version lost
# money on its holdout, which is not what this race is about)
my ($deployed) = $s1->query("BEGIN; SELECT rl_mlops.deploy_model('r', '$oldest', 'race with cleanup');");
is($deployed, $oldest, '3. the deploy of the oldest version is in flight');
$s1->{stderr} = '';
$s2->query_until(qr/go/, "\\echo go\nSELECT 'cleanup ' || rl_mlops.cleanup_old_models('r')::text;\n");
wait_blocked('cleanup_old_models', '3. the cleanup');
$s1->query_safe('COMMIT');
$s2->{run}->pump until $s2->{stdout} =~ /cleanup \{/ || $s2->{timeout}->is_expired;
unlike($s2->{stdout}, qr/"\Q$oldest\E"/, '3. the cleanup after the deploy did not remove the deployed version');
is(active_version($node, 'r'), $oldest, '3. it is active');
is( sql(q{SELECT count(*) FROM rl_mlops.models m JOIN pg_largeobject_metadata l ON l.oid = m.checkpoint
	       WHERE m.agent = 'r' AND (m.state = 'active' OR m.version IN
	             (SELECT version FROM rl_mlops.models WHERE agent = 'r' ORDER BY created_at DESC, version DESC LIMIT 2))}),
	'3', '3. the active version and the newest keep_min versions, with their large objects, are all there');
history_consistent('3. deploy, then cleanup');
integrity_ok($node, '3. deploy vs cleanup', 'r');

# cleanup first (uncommitted), then a deploy of a version it removes:
# three more versions deployed in turn (kept meanwhile), two of them then
# archived and old
sql(q{SELECT rl_mlops.configure('r', retention_days => 30) IS NULL});
for my $i (1 .. 3)
{
	my $w = sql(q{SELECT rl_mlops.import_model('r', rl_mlops.export_model('r'))});
	sql("SELECT rl_mlops.validate_model('r', '$w')");
	sql("SELECT rl_mlops.deploy_model('r', '$w')");
}
sql(q{SELECT rl_mlops.configure('r', retention_days => 0) IS NULL});
sql(q{UPDATE rl_mlops.models SET created_at = created_at - interval '1 day', archived_at = archived_at - interval '1 day'
       WHERE agent = 'r'});
my $victim = sql(q{SELECT rl_mlops.cleanup_old_models('r', dry_run => true) ->> 'removed'});
($victim) = $victim =~ /"([0-9_]+)"/;
ok(defined $victim, "3. version $victim is a cleanup victim");
my $before_active = active_version($node, 'r');
$s1->query_safe("BEGIN; SELECT rl_mlops.cleanup_old_models('r');");
$s2->query_until(qr/go2/, "\\echo go2\nSELECT rl_mlops.deploy_model('r', '$victim', 'too late');\n\\echo done2\n");
wait_blocked('too late', '3. the deploy of a removed version');
$s1->query_safe('COMMIT');
$s2->{run}->pump until $s2->{stdout} =~ /done2/ || $s2->{timeout}->is_expired;
like($s2->{stderr}, qr/ERROR:  model version "\Q$victim\E" of agent "r" does not exist/,
	'3. the deploy of a version the cleanup removed fails cleanly');
is(active_version($node, 'r'), $before_active, '3. the active version is unchanged');
integrity_ok($node, '3. cleanup vs deploy', 'r');
$s1->quit;
$s2->quit;

#
# 4. rollback vs a retrain finishing: the worker's deploy transaction is
# held open; a rollback waits for it, then rolls back from the new model.
#
sql(q{SELECT rl_mlops.configure('r', retention_days => 30, keep_min => 3) IS NULL});
my $old = active_version($node, 'r');
my $holder = $node->background_psql('postgres', on_error_stop => 0);
$holder->query_safe("SELECT pg_advisory_lock($PAUSE_KEY)");
my $run = sql(q{SELECT rl_mlops.retrain('r', epochs => 1)});
$node->poll_query_until('postgres', qq{
	SELECT count(*) = 1 FROM pg_locks
	 WHERE locktype = 'advisory' AND NOT granted AND classid = 0 AND objid = $PAUSE_KEY AND objsubid = 1})
  or die "run $run did not reach the deploy pause";
my $new = sql("SELECT produced_version FROM rl_mlops.runs WHERE id = $run");
$s1 = $node->background_psql('postgres', on_error_stop => 0);
$s1->query_until(qr/go/, "\\echo go\nSELECT 'rolled back to ' || rl_mlops.rollback('r', reason => 'race');\n");
wait_blocked('rollback', '4. the rollback');
is(active_version($node, 'r'), $old, '4. while both wait, the old model is active');
$holder->query_safe("SELECT pg_advisory_unlock($PAUSE_KEY)");
$holder->quit;
$s1->{run}->pump until $s1->{stdout} =~ /rolled back to/ || $s1->{timeout}->is_expired;
like($s1->{stdout}, qr/rolled back to \Q$old\E/, '4. the rollback went back to the model before the new one');
is(sql("SELECT state FROM rl_mlops.runs WHERE id = $run"), 'succeeded', '4. the retrain itself succeeded');
is( sql(q{SELECT string_agg(action || ' ' || version || ' from ' || previous_version, ', ' ORDER BY id)
	        FROM (SELECT * FROM rl_mlops.deployments ORDER BY id DESC LIMIT 2) d}),
	"deploy $new from $old, rollback $old from $new",
	'4. the history: the retrain\'s deploy, then the rollback from it');
is(active_version($node, 'r'), $old, '4. the old model is active again');
history_consistent('4. rollback vs retrain');
integrity_ok($node, '4. rollback vs retrain', 'r');
$s1->quit;

$node->stop;
done_testing();
