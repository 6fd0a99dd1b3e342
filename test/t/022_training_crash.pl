# A training worker killed with SIGKILL: the postmaster restarts the
# cluster, the run shows failed / "worker died" at once in
# training_progress and status() (its worker process is gone), without
# either writing, and is marked so by the scheduler's next look
# (retrain_due) or the next run; the registry is unchanged and the next
# retrain succeeds.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use RlMlops;

my $node = new_cluster('training_crash', conf => 'restart_after_crash = on');

my $registry_q = q{
	SELECT concat_ws(' / ',
	    (SELECT string_agg(version || ':' || state || ':' || checkpoint, ',' ORDER BY version)
	       FROM rl_mlops.models),
	    (SELECT version FROM rl_mlops.models WHERE state = 'active'),
	    'large objects ' || (SELECT count(*) FROM pg_largeobject_metadata),
	    'deployments ' || (SELECT count(*) FROM rl_mlops.deployments))};

sql(q{CREATE EXTENSION rl_mlops});
create_bars($node, 'src', seed => 0.7);
small_agent($node, 'k', 'src', initial_epochs => 2, data_window => undef);
my ($rc, $out, $err) = $node->psql('postgres', "SELECT rl_mlops.retrain('k', async => false)");
like($err, qr/NOTICE:  run $out succeeded/, 'agent k has a first model');

# Start a long run and SIGKILL its worker while it trains.
sub start_and_kill
{
	my $before = sql($registry_q);
	my $run = sql(q{SELECT rl_mlops.retrain('k', epochs => 10000)});
	$node->poll_query_until('postgres',
		"SELECT state = 'training' AND epoch >= 1 FROM rl_mlops.runs WHERE id = $run")
	  or die "run $run did not start training";
	my $pid = sql("SELECT worker_pid FROM rl_mlops.runs WHERE id = $run");
	my $logpos = -s $node->logfile;
	kill 'KILL', $pid or die "could not kill $pid: $!";
	wait_crash_restart($node, $logpos);
	like(slurp_file($node->logfile, $logpos), qr/\(PID $pid\) was terminated by signal 9/,
		"run $run: the worker was killed and the cluster restarted");
	return ($run, $before);
}

my ($run, $before) = start_and_kill();
is( sql("SELECT concat_ws('|', state, error) FROM rl_mlops.training_progress WHERE run_id = $run"),
	'failed|worker died', 'training_progress shows the run failed: worker died, before anyone reaped it');
is(sql("SELECT state FROM rl_mlops.runs WHERE id = $run"), 'training',
	'the run row itself still says training');
is(sql(q{SELECT status #>> '{status,scheduler,is_training}' FROM rl_mlops.status('k') status}),
	'false', 'status() reports no training in progress');
is(sql("SELECT state FROM rl_mlops.runs WHERE id = $run"), 'training',
	'status() only reads: the run row still says training');
sql(q{SELECT rl_mlops.retrain_due('k')});
is( sql("SELECT concat_ws('|', state, error, finished_at IS NOT NULL) FROM rl_mlops.runs WHERE id = $run"),
	'failed|worker died|t', 'the scheduler\'s look (retrain_due) marked the run failed: worker died');
like(slurp_file($node->logfile), qr/rl_mlops: marked 1 run\(s\) of agent k failed: worker died/,
	'and logged it');
is(sql($registry_q), $before, 'models, active model, large objects unchanged');
is(sql(q{SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'rl_mlops trainer'}), '0',
	'no worker left');

($rc, $out, $err) = $node->psql('postgres', "SELECT rl_mlops.retrain('k', async => false, epochs => 1)");
like($err, qr/NOTICE:  run $out succeeded/, 'the next retrain succeeds');
my $next = $out;
is( sql("SELECT parent_version FROM rl_mlops.runs WHERE id = $next"),
	sql(q{SELECT version FROM rl_mlops.models WHERE state = 'archived' ORDER BY version DESC LIMIT 1}),
	'it warm-started from the model that was active during the crash');

# Killed again; this time nobody looks: the next run's worker finds the
# dead run and marks it.
($run, $before) = start_and_kill();
is(sql("SELECT state FROM rl_mlops.runs WHERE id = $run"), 'training', 'the dead run is not marked yet');
($rc, $out, $err) = $node->psql('postgres', "SELECT rl_mlops.retrain('k', async => false, epochs => 1)");
like($err, qr/NOTICE:  run $out succeeded/, 'a retrain right after the crash starts a new run and succeeds');
isnt($out, $run, 'a new run, not the dead one');
is( sql("SELECT concat_ws('|', state, error) FROM rl_mlops.runs WHERE id = $run"),
	'failed|worker died', 'the new run marked the dead one failed: worker died');
my $next_pid = sql("SELECT worker_pid FROM rl_mlops.runs WHERE id = $out");
like(slurp_file($node->logfile), qr/\[$next_pid\] LOG:  rl_mlops: marked 1 run\(s\) of agent k failed: worker died/,
	'and logged it');
is(sql(q{SELECT count(*) FROM rl_mlops.models}), 3, 'three models: the first and two successful retrains, none from the killed runs');

$node->stop;
done_testing();
