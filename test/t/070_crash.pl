# Crashes and kills during training runs (issue 7).  Whatever happens, the
# active model is exactly the old one or exactly the new one, the deployment
# history agrees with models.state, no run stays unfinished once anyone
# looks, nothing is orphaned: rl_mlops.check_integrity() returns nothing.
#
#   1. SIGKILL of the worker while it trains (crash restart).
#   2. SIGKILL of the worker while its deploy transaction is open.
#   3. Immediate shutdown while the deploy transaction is open.
#   4. The deploy released and an immediate shutdown right after (either
#      outcome is fine, a mix of both is not).
#   5. Immediate shutdown while the worker trains.
#   6. pg_terminate_backend() of the worker: the run ends cancelled, no crash
#      restart, the worker is not restarted; cancel_retrain() likewise.
#   7. cancel_retrain() while the deploy transaction is open.
#
# The deploy transaction is held open with rl_mlops.test_pause_before_deploy_commit:
# the worker then waits for advisory lock 1380732236 (one-key form) before
# committing, and this test holds that lock.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use RlMlops;

my $PAUSE_KEY = 1380732236;

my $node = new_cluster('crash',
	conf => [ 'restart_after_crash = on', 'rl_mlops.test_pause_before_deploy_commit = on' ]);

# What no fault may change except through a committed deployment.
my $state_q = q{
	SELECT concat_ws(' / ',
	    (SELECT string_agg(version || ':' || state || ':' || checkpoint, ',' ORDER BY version)
	       FROM rl_mlops.models),
	    'active ' || coalesce((SELECT version FROM rl_mlops.models WHERE state = 'active'), '-'),
	    'deployments ' || (SELECT count(*) FROM rl_mlops.deployments),
	    'large objects ' || (SELECT count(*) FROM pg_largeobject_metadata))};

# After each fault, integrity_ok($node, $name, 'c'): the scheduler's
# decision looks (and so marks a dead run failed), then no run is left
# unfinished and check_integrity() finds nothing.

# The worker of run $run as pg_stat_activity shows it.
sub worker_pid
{
	my $run = shift;
	my $pid = sql(q{SELECT pid FROM pg_stat_activity WHERE backend_type = 'rl_mlops trainer'});
	is($pid, sql("SELECT worker_pid FROM rl_mlops.runs WHERE id = $run"),
		"run $run: its worker shows in pg_stat_activity as 'rl_mlops trainer'");
	return $pid;
}

# A long run, training.
sub start_training
{
	my $run = sql(q{SELECT rl_mlops.retrain('c', epochs => 10000)});
	$node->poll_query_until('postgres',
		"SELECT state = 'training' AND epoch >= 1 FROM rl_mlops.runs WHERE id = $run")
	  or die "run $run did not start training";
	return $run;
}

# A short run that stops with its deploy transaction open: returns the
# session that holds the pause lock, the run and the candidate version.
sub start_paused_deploy
{
	my $holder = $node->background_psql('postgres', on_error_stop => 0);
	$holder->query_safe("SELECT pg_advisory_lock($PAUSE_KEY)");
	my $run = sql(q{SELECT rl_mlops.retrain('c', epochs => 1)});
	$node->poll_query_until('postgres', qq{
		SELECT count(*) = 1 FROM pg_locks
		 WHERE locktype = 'advisory' AND NOT granted
		   AND classid = 0 AND objid = $PAUSE_KEY AND objsubid = 1})
	  or die "run $run did not reach the deploy pause";
	my $candidate = sql("SELECT produced_version FROM rl_mlops.runs WHERE id = $run");
	return ($holder, $run, $candidate);
}

# The holder session dies with the server; quitting it may complain.
sub drop_session { my $s = shift; eval { $s->quit }; }

sql(q{CREATE EXTENSION rl_mlops});
create_bars($node, 'bars', seed => 0.3);
small_agent($node, 'c', 'bars', initial_epochs => 2, incremental_epochs => 1);
my ($rc, $out, $err) = $node->psql('postgres', "SELECT rl_mlops.retrain('c', async => false)");
like($err, qr/NOTICE:  run $out succeeded/, 'agent c has a first model (the pause lock is free: no wait)');
integrity_ok($node, 'set-up', 'c');

#
# 1. SIGKILL while training.
#
my $before = sql($state_q);
my $run = start_training();
my $pid = worker_pid($run);
my $pos = -s $node->logfile;
kill 'KILL', $pid or die "could not kill $pid: $!";
wait_crash_restart($node, $pos);
like(slurp_file($node->logfile, $pos), qr/\(PID $pid\) was terminated by signal 9/,
	'1. SIGKILL while training: crash restart');
is(sql("SELECT state || '|' || error FROM rl_mlops.training_progress WHERE run_id = $run"),
	'failed|worker died', '1. training_progress shows the run failed: worker died');
integrity_ok($node, '1. SIGKILL while training', 'c');
is(sql("SELECT state || '|' || error FROM rl_mlops.runs WHERE id = $run"), 'failed|worker died',
	'1. after retrain_due() the run row says failed: worker died');
is(sql($state_q), $before, '1. registry unchanged');
($rc, $out, $err) = $node->psql('postgres', "SELECT rl_mlops.retrain('c', async => false, epochs => 1)");
like($err, qr/NOTICE:  run $out succeeded/, '1. the next retrain succeeds');
integrity_ok($node, '1. after the next retrain', 'c');

#
# 2. SIGKILL while the deploy transaction is open.
#
my $old = active_version($node, 'c');
my $deployments = sql(q{SELECT count(*) FROM rl_mlops.deployments});
my ($holder, $candidate);
($holder, $run, $candidate) = start_paused_deploy();
is(sql("SELECT state FROM rl_mlops.runs WHERE id = $run"), 'deploying', '2. the run is deploying');
is(active_version($node, 'c'), $old, '2. while the deploy is uncommitted the old model is active');
is(sql("SELECT state FROM rl_mlops.models WHERE agent = 'c' AND version = '$candidate'"), 'validated',
	'2. the candidate is registered and validated (committed before the deploy)');
$pid = worker_pid($run);
$pos = -s $node->logfile;
kill 'KILL', $pid or die "could not kill $pid: $!";
wait_crash_restart($node, $pos);
drop_session($holder);
is(active_version($node, 'c'), $old, '2. after the crash the old model is still active');
is(sql("SELECT state FROM rl_mlops.models WHERE agent = 'c' AND version = '$candidate'"), 'validated',
	'2. the candidate stays validated, not half deployed');
is(sql(q{SELECT count(*) FROM rl_mlops.deployments}), $deployments, '2. no deployment was recorded');
integrity_ok($node, '2. SIGKILL in the deploy transaction', 'c');
is(sql("SELECT state || '|' || error FROM rl_mlops.runs WHERE id = $run"), 'failed|worker died',
	'2. the run is failed: worker died');
is(sql("SELECT rl_mlops.deploy_model('c', '$candidate', 'by hand after the crash')"), $candidate,
	'2. the candidate can still be deployed by hand');
integrity_ok($node, '2. after deploying it by hand', 'c');

#
# 3. Immediate shutdown while the deploy transaction is open.
#
$old = active_version($node, 'c');
$before = sql($state_q);
($holder, $run, $candidate) = start_paused_deploy();
$node->stop('immediate');
drop_session($holder);
$node->start;
is(active_version($node, 'c'), $old, '3. after an immediate shutdown in the deploy transaction the old model is active');
is(sql("SELECT state FROM rl_mlops.models WHERE agent = 'c' AND version = '$candidate'"), 'validated',
	'3. the candidate stays validated');
integrity_ok($node, '3. immediate shutdown in the deploy transaction', 'c');
is(sql("SELECT state || '|' || error FROM rl_mlops.runs WHERE id = $run"), 'failed|worker died',
	'3. the run is failed: worker died');
my $after = sql($state_q);
$before =~ s/ \/ active .*//;
like($after, qr/^\Q$before\E,$candidate:validated:\d+ \/ active \Q$old\E \//,
	'3. the registry is the old one plus the validated candidate');

#
# 4. The deploy released and an immediate shutdown right after: the deploy
# commits or not, never in part.
#
$old = active_version($node, 'c');
$deployments = sql(q{SELECT count(*) FROM rl_mlops.deployments});
($holder, $run, $candidate) = start_paused_deploy();
$holder->query_safe("SELECT pg_advisory_unlock($PAUSE_KEY)");
$node->stop('immediate');
drop_session($holder);
$node->start;
sql(q{SELECT rl_mlops.retrain_due('c')});
my ($now_active, $run_state, $cand_state, $n_dep, $last_dep) = split /\|/, sql(qq{
	SELECT concat_ws('|', (SELECT version FROM rl_mlops.models WHERE state = 'active'),
	                 (SELECT state FROM rl_mlops.runs WHERE id = $run),
	                 (SELECT state FROM rl_mlops.models WHERE agent = 'c' AND version = '$candidate'),
	                 (SELECT count(*) FROM rl_mlops.deployments),
	                 (SELECT version || ' from ' || previous_version FROM rl_mlops.deployments ORDER BY id DESC LIMIT 1))});
note("4. outcome: active $now_active, run $run_state");
ok( ($now_active eq $old && $run_state eq 'failed' && $cand_state eq 'validated' && $n_dep == $deployments)
	  || ($now_active eq $candidate && $run_state eq 'succeeded' && $n_dep == $deployments + 1
		&& $last_dep eq "$candidate from $old"),
	'4. either nothing of the deploy happened or all of it (active, run, history)');
integrity_ok($node, '4. immediate shutdown right after the deploy was released', 'c');

#
# 5. Immediate shutdown while training.
#
$before = sql($state_q);
$run = start_training();
$node->stop('immediate');
$node->start;
integrity_ok($node, '5. immediate shutdown while training', 'c');
is(sql("SELECT state || '|' || error FROM rl_mlops.runs WHERE id = $run"), 'failed|worker died',
	'5. the run is failed: worker died');
is(sql($state_q), $before, '5. registry unchanged');

#
# 6. pg_terminate_backend() of the worker, and cancel_retrain().
#
$before = sql($state_q);
my $runs_before = sql(q{SELECT count(*) FROM rl_mlops.runs});
$pos = -s $node->logfile;
$run = start_training();
$pid = worker_pid($run);
sql("SELECT pg_terminate_backend($pid)");
$node->poll_query_until('postgres',
	"SELECT state IN ('cancelled', 'failed', 'succeeded') FROM rl_mlops.runs WHERE id = $run")
  or die "run $run did not end";
is(sql("SELECT state || '|' || error FROM rl_mlops.runs WHERE id = $run"), 'cancelled|training run cancelled',
	'6. pg_terminate_backend(): the run ends cancelled');
$node->poll_query_until('postgres',
	q{SELECT count(*) = 0 FROM pg_stat_activity WHERE backend_type = 'rl_mlops trainer'})
  or die 'the worker did not exit';
is(sql(q{SELECT count(*) FROM rl_mlops.runs}), $runs_before + 1, '6. one run row: no worker started again');
$run = start_training();
is(sql(q{SELECT rl_mlops.cancel_retrain('c')}), $run, '6. cancel_retrain() returns the run');
is(sql("SELECT state FROM rl_mlops.runs WHERE id = $run"), 'cancelled', '6. the run ends cancelled');
is(sql(q{SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'rl_mlops trainer'}), '0',
	'6. no worker left');
my $log = slurp_file($node->logfile, $pos);
unlike($log, qr/terminated by signal|reinitializing/, '6. no crash restart');
is(scalar(() = $log =~ /rl_mlops: Starting retraining of agent "c"/g), 2,
	'6. each worker started once: never restarted');
is(sql($state_q), $before, '6. registry unchanged');
integrity_ok($node, '6. terminate and cancel', 'c');

#
# 7. cancel_retrain() while the deploy transaction is open: the worker only
# checks for a stop request before deploying, so the deploy commits once
# the pause ends; either way the registry is consistent.
#
$old = active_version($node, 'c');
($holder, $run, $candidate) = start_paused_deploy();
is(sql(q{SELECT rl_mlops.cancel_retrain('c', timeout_ms => 100)}), $run,
	'7. cancel_retrain() during the deploy returns the run');
$holder->query_safe("SELECT pg_advisory_unlock($PAUSE_KEY)");
drop_session($holder);
$node->poll_query_until('postgres',
	"SELECT state IN ('cancelled', 'failed', 'succeeded') FROM rl_mlops.runs WHERE id = $run")
  or die "run $run did not end";
($now_active, $run_state) = split /\|/,
  sql("SELECT (SELECT version FROM rl_mlops.models WHERE state = 'active') || '|' || state FROM rl_mlops.runs WHERE id = $run");
note("7. outcome: active $now_active, run $run_state");
ok( ($now_active eq $candidate && $run_state eq 'succeeded')
	  || ($now_active eq $old && $run_state eq 'cancelled'),
	'7. the late cancel leaves the deploy whole: the new model with a succeeded run, or the old one with a cancelled run');
integrity_ok($node, '7. cancel during the deploy', 'c');

$node->stop;
done_testing();
