# Training runs that must not start or must not deploy (ARCHITECTURE.md "A training run",
# 9 and 10): argument errors, bad source data, a dropped column, a role
# that cannot read the source, cancel_retrain(), no free worker slot, a
# run above rl_mlops.max_training_memory.
# Every failure is recorded on its run with its message, and leaves the
# active model, the model rows and the large objects as they were.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;
use RlMlops;

my $node = new_cluster('training_failures');

# What a failed run must not change: every model row of every agent, the
# active versions and the large objects.
my $registry_q = q{
	SELECT concat_ws(' / ',
	    (SELECT string_agg(agent || ':' || version || ':' || state || ':' || checkpoint, ','
	                       ORDER BY agent, version) FROM rl_mlops.models),
	    (SELECT string_agg(agent || '=' || version, ',' ORDER BY agent)
	       FROM rl_mlops.models WHERE state = 'active'),
	    'large objects ' || (SELECT count(*) FROM pg_largeobject_metadata),
	    'deployments ' || (SELECT count(*) FROM rl_mlops.deployments))};

# A synchronous retrain that must end with a failed run whose error matches
# $error_re; the registry must be unchanged.
sub failing_run
{
	my ($name, $error_re, %opt) = @_;
	my $args = $opt{args} // '';
	my $before = sql($registry_q);
	my $runs_before = sql(q{SELECT count(*) FROM rl_mlops.runs});
	my ($rc, $run, $err) = $node->psql('postgres', "SELECT rl_mlops.retrain('f', async => false$args)");
	is($rc, 0, "$name: retrain() itself returns");
	like($err, qr/WARNING:  run $run ended failed\nDETAIL:  $error_re/,
		"$name: the caller gets a WARNING with the error as detail");
	is(sql(q{SELECT count(*) FROM rl_mlops.runs}), $runs_before + 1, "$name: one run row");
	my ($state, $error, $done, $produced) = split /\|/,
	  sql("SELECT concat_ws('|', state, error, finished_at IS NOT NULL, produced_version IS NULL) FROM rl_mlops.runs WHERE id = $run");
	is($state, 'failed', "$name: run failed");
	like($error, qr/^$error_re/, "$name: the run's error says why");
	is("$done|$produced", 't|t', "$name: run finished, produced nothing");
	is(sql($registry_q), $before, "$name: models, active model, large objects unchanged");
	my $pid = sql("SELECT worker_pid FROM rl_mlops.runs WHERE id = $run");
	like(slurp_file($node->logfile),
		qr/\[$pid\] LOG:  rl_mlops: Training failed: $error_re.*?\[$pid\] LOG:  rl_mlops: Keeping current model active/s,
		"$name: the worker logged the failure and kept the current model");
	return $run;
}

sql(q{CREATE EXTENSION rl_mlops});
create_bars($node, 'src', symbols => 3, seed => 0.5);
small_agent($node, 'f', 'src', initial_epochs => 2, incremental_epochs => 1, data_window => undef);
sql(q{
	CREATE TABLE src_all AS SELECT * FROM src;
	CREATE ROLE alice LOGIN;
	GRANT USAGE ON SCHEMA rl_mlops TO alice;
	GRANT EXECUTE ON FUNCTION rl_mlops.retrain(text, boolean, integer, boolean) TO alice;
});
my ($rc, $out, $err) = $node->psql('postgres', "SELECT rl_mlops.retrain('f', async => false)");
like($err, qr/NOTICE:  run $out succeeded/, 'agent f has a first model');

#
# Errors at the call, before any worker: nothing recorded.
#
my $runs0 = sql(q{SELECT count(*) FROM rl_mlops.runs});
for my $case (
	[ "SELECT rl_mlops.retrain('nobody')", qr/ERROR:  42704: agent "nobody" does not exist/, 'unknown agent' ],
	[ "SELECT rl_mlops.retrain('f', epochs => 0)", qr/ERROR:  22023: epochs must be between 1 and 10000/, 'epochs 0' ],
	[ "SELECT rl_mlops.retrain('f', epochs => 10001)", qr/ERROR:  22023: epochs must be between 1 and 10000/, 'epochs 10001' ],
	[ "SELECT rl_mlops.retrain('f', trigger => 'schedule')", qr/ERROR:  42883: function rl_mlops.retrain\(unknown, trigger => unknown\) does not exist/,
	  'no trigger argument: a manual run cannot be recorded as scheduled' ],
	[ "BEGIN; CREATE TABLE t_written (x int); SELECT rl_mlops.retrain('f', async => false)",
	  qr/ERROR:  25001: retrain\(async => false\) cannot run in a transaction that has already written data/,
	  'synchronous retrain in a transaction that wrote' ])
{
	my ($q, $re, $name) = @$case;
	($rc, $out, $err) = $node->psql('postgres', "\\set VERBOSITY verbose\n$q");
	like($err, $re, "$name: error with its SQLSTATE");
}
is(sql(q{SELECT count(*) FROM rl_mlops.runs}), $runs0, 'no run row for errors at the call');
is(sql(q{SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'rl_mlops trainer'}), '0',
	'and no worker');

#
# A role that cannot read the source cannot train: error at the call,
# before any worker or run row.
#
my $before = sql($registry_q);
($rc, $out, $err) = $node->psql('postgres',
	"\\set VERBOSITY verbose\nSELECT rl_mlops.retrain('f', async => false)",
	extra_params => [ '-U', 'alice' ]);
like($err, qr/ERROR:  42501: permission denied to train agent "f"/,
	'a role without SELECT on the source gets 42501 at the call');
like($err, qr/DETAIL:  .*role "alice" cannot read it/, 'the detail names the role');
is(sql(q{SELECT count(*) FROM rl_mlops.runs}), $runs0, 'no run row');
is(sql($registry_q), $before, 'registry unchanged');

#
# The worker reads the source as the role that asked: with row level
# security letting alice see one symbol, her run trains on that symbol only.
#
sql(q{
	GRANT SELECT ON src TO alice;
	ALTER TABLE src ENABLE ROW LEVEL SECURITY;
	CREATE POLICY alice_one_symbol ON src FOR SELECT TO alice USING (symbol = 'SYM001');
});
($rc, $out, $err) = $node->psql('postgres', "SELECT rl_mlops.retrain('f', async => false, epochs => 1)",
	extra_params => [ '-U', 'alice' ]);
like($err, qr/NOTICE:  run $out succeeded/, 'alice, who can read the source, trains');
is( sql(qq{SELECT concat_ws('|', r.requested_by, r.samples, m.metrics ->> 'symbols')
	  FROM rl_mlops.runs r JOIN rl_mlops.models m ON m.agent = r.agent AND m.version = r.produced_version
	 WHERE r.id = $out}),
	'alice|' . (1500 - 300 - 32 - 1) . '|1',
	'the run is alice\'s and saw only the rows her policy shows: the worker read as alice');

# A role reached with SET ROLE, even a NOLOGIN one, is the role the worker
# reads as: bob's policy shows him SYM003 only.
sql(q{
	CREATE ROLE bob NOLOGIN;
	GRANT USAGE ON SCHEMA rl_mlops TO bob;
	GRANT EXECUTE ON FUNCTION rl_mlops.retrain(text, boolean, integer, boolean) TO bob;
	GRANT SELECT ON src TO bob;
	CREATE POLICY bob_one_symbol ON src FOR SELECT TO bob USING (symbol = 'SYM003');
});
($rc, $out, $err) = $node->psql('postgres', "SET ROLE bob;\nSELECT rl_mlops.retrain('f', async => false, epochs => 1)");
like($err, qr/NOTICE:  run $out succeeded/, 'SET ROLE bob (NOLOGIN), then retrain: succeeds');
is( sql(qq{SELECT concat_ws('|', r.requested_by, r.samples, m.metrics ->> 'symbols',
	                        abs((m.metrics #>> '{holdout,buy_hold_log_return}')::float8
	                            - ln((SELECT price FROM src WHERE symbol = 'SYM003' ORDER BY ts DESC LIMIT 1)
	                                 / (SELECT price FROM src WHERE symbol = 'SYM003' ORDER BY ts OFFSET 1199 LIMIT 1))) < 1e-8)
	  FROM rl_mlops.runs r JOIN rl_mlops.models m ON m.agent = r.agent AND m.version = r.produced_version
	 WHERE r.id = $out}),
	'bob|' . (1500 - 300 - 32 - 1) . '|1|t',
	'the run is bob\'s and saw only SYM003 (its holdout buy-and-hold is SYM003\'s)');
sql(q{
	DROP POLICY alice_one_symbol ON src;
	DROP POLICY bob_one_symbol ON src;
	REVOKE SELECT ON src FROM bob;
	ALTER TABLE src DISABLE ROW LEVEL SECURITY;
});

# Privileges are checked by the worker too: alice loses SELECT while her
# run waits for a lock on the source; the worker then cannot read it.
my $locker = $node->background_psql('postgres');
$locker->query_safe('BEGIN; LOCK TABLE src IN ACCESS EXCLUSIVE MODE;');
$before = sql($registry_q);
($rc, $out, $err) = $node->psql('postgres', "SELECT rl_mlops.retrain('f')",
	extra_params => [ '-U', 'alice' ]);
my $run_lock = $out;
ok( $node->poll_query_until('postgres', q{
	SELECT count(*) = 1 FROM pg_stat_activity
	 WHERE backend_type = 'rl_mlops trainer' AND wait_event_type = 'Lock'}),
	'alice\'s worker waits for the source');
$locker->query_safe('REVOKE SELECT ON src FROM alice; COMMIT;');
$locker->quit;
$node->poll_query_until('postgres',
	"SELECT state = 'failed' FROM rl_mlops.runs WHERE id = $run_lock") or die;
like(sql("SELECT error FROM rl_mlops.runs WHERE id = $run_lock"), qr/^permission denied for table src/,
	'the worker, connected as alice, is refused by the source');
is(sql($registry_q), $before, 'registry unchanged');

#
# Bad source data: each run fails with a precise message.
#
my $row = q{(symbol, ts) = ('SYM002', '2026-01-01 10:00+00')};
sql("UPDATE src SET price = NULL WHERE $row");
failing_run('NULL price', qr/price of symbol "SYM002" at \S+ \S+ is null: Column price of relation public.src must hold a price in every row\./);
sql("UPDATE src SET price = 0 WHERE $row");
failing_run('zero price', qr/price of symbol "SYM002" at \S+ \S+ is not positive: The price is 0; log returns need finite prices greater than zero\./);
sql("UPDATE src s SET price = a.price FROM src_all a WHERE (a.symbol, a.ts) = (s.symbol, s.ts) AND (s.symbol, s.ts) = ('SYM002', '2026-01-01 10:00+00')");

# Too little data: 20 bars per symbol cannot fill a window of 32.
sql(q{DELETE FROM src WHERE ts < (SELECT max(ts) FROM src) - interval '20 minutes'});
failing_run('too little data',
	qr/not enough training data: The last 30 days of the source hold 63 rows, counted back from its newest row \([^)]+\); every symbol needs at least 34 prices/);
sql(q{INSERT INTO src SELECT * FROM src_all a WHERE a.ts < (SELECT max(ts) FROM src) - interval '20 minutes'});
is(sql(q{SELECT count(*) FROM src}), '4500', 'source restored');

#
# cancel_retrain() during a long run: the run ends cancelled, between
# batches, and nothing is registered.
#
$before = sql($registry_q);
my $run_c = sql(q{SELECT rl_mlops.retrain('f', epochs => 10000)});
ok( $node->poll_query_until('postgres',
		"SELECT state = 'training' AND epoch >= 1 FROM rl_mlops.training_progress WHERE run_id = $run_c"),
	'a long run is training');
is(sql(q{SELECT rl_mlops.cancel_retrain('f')}), $run_c, 'cancel_retrain() returns the run id');
is( sql("SELECT concat_ws('|', state, error, epoch < 10000, finished_at IS NOT NULL) FROM rl_mlops.runs WHERE id = $run_c"),
	'cancelled|training run cancelled|t|t', 'the run ended cancelled when cancel_retrain() returned');
is(sql(q{SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'rl_mlops trainer'}), '0',
	'the worker is gone');
is(sql($registry_q), $before, 'cancel: models, active model, large objects unchanged');
my $pid_c = sql("SELECT worker_pid FROM rl_mlops.runs WHERE id = $run_c");
like(slurp_file($node->logfile),
	qr/\[$pid_c\] LOG:  rl_mlops: Training cancelled: training run cancelled\n.*?\[$pid_c\] LOG:  rl_mlops: Keeping current model active/s,
	'the worker logged the cancellation');
unlike(slurp_file($node->logfile), qr/terminated by signal/, 'no crash restart');
# A synchronous caller that gives up (Ctrl-C, here pg_cancel_backend)
# takes its run down with it: the worker is terminated, the run cancelled.
$before = sql($registry_q);
my $runs_before = sql(q{SELECT max(id) FROM rl_mlops.runs});
my ($sync_out, $sync_err) = ('', '');
my $sync = IPC::Run::start(
	[ 'psql', '-X', '-qtA', '-d', $node->connstr('postgres'),
	  '-c', "SELECT rl_mlops.retrain('f', async => false, epochs => 10000)" ],
	'>', \$sync_out, '2>', \$sync_err);
ok( $node->poll_query_until('postgres', qq{
	SELECT state = 'training' AND epoch >= 1 FROM rl_mlops.runs WHERE id > $runs_before}),
	'a synchronous run is training');
my $run_t = sql(qq{SELECT id FROM rl_mlops.runs WHERE id > $runs_before});
is( sql(q{SELECT count(pg_cancel_backend(pid)) FROM pg_stat_activity
	 WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()
	   AND query ~ 'async => false, epochs => 10000'}),
	'1', 'cancel the waiting caller');
$sync->finish;
like($sync_err, qr/ERROR:  canceling statement due to user request/, 'the caller gets its cancel error');
$node->poll_query_until('postgres',
	"SELECT state NOT IN ('preparing', 'training') FROM rl_mlops.runs WHERE id = $run_t") or die;
is(sql("SELECT concat_ws('|', state, error) FROM rl_mlops.runs WHERE id = $run_t"),
	'cancelled|training run cancelled', 'its run was cancelled');
is(sql($registry_q), $before, 'caller gone: models, active model, large objects unchanged');

($rc, $out, $err) = $node->psql('postgres', q{SELECT rl_mlops.cancel_retrain('f') IS NULL});
is($out, 't', 'cancel_retrain() with nothing running returns NULL');
like($err, qr/NOTICE:  agent "f" has no training run in progress/, 'with a NOTICE');

#
# No free worker slot: the logical replication launcher takes one of two
# slots and a running training the other; another agent's retrain() fails
# at the call with a hint, and nothing is recorded.
#
$node->append_conf('postgresql.conf', "max_worker_processes = 2\nmax_parallel_workers = 0\n");
$node->restart;
sql(q{SELECT rl_mlops.create_agent('g', 'src') IS NULL});
my $run_busy = sql(q{SELECT rl_mlops.retrain('f', epochs => 10000)});
$before = sql($registry_q);
$runs0 = sql(q{SELECT count(*) FROM rl_mlops.runs});
($rc, $out, $err) = $node->psql('postgres', "\\set VERBOSITY verbose\nSELECT rl_mlops.retrain('g')");
like($err, qr/ERROR:  53000: could not start an rl_mlops trainer worker/,
	'no free worker slot: 53000 at the call');
like($err, qr/HINT:  Raise "max_worker_processes"/, 'the hint names max_worker_processes');
is(sql(q{SELECT count(*) FROM rl_mlops.runs}), $runs0, 'no run row');
is(sql(q{SELECT state FROM rl_mlops.runs WHERE id = } . $run_busy), 'training', 'the running run goes on');
is(sql(q{SELECT rl_mlops.cancel_retrain('f')}), $run_busy, 'cancel it');
is(sql($registry_q), $before, 'registry unchanged');
$node->append_conf('postgresql.conf', "max_worker_processes = 8\nmax_parallel_workers = 8\n");
$node->restart;

#
# Memory: a run whose estimate exceeds rl_mlops.max_training_memory fails
# after reading its data, before training.  Workers read the server's
# value: wait until new sessions see it.
#
sql(q{LOAD 'rl_mlops'; ALTER SYSTEM SET rl_mlops.max_training_memory = '64MB'; SELECT pg_reload_conf()});
$node->poll_query_until('postgres', q{SELECT current_setting('rl_mlops.max_training_memory', true) = '64MB'})
  or die 'the new setting did not arrive';
failing_run('memory bound',
	qr/training run of agent "f" would need about \d+ MB, more than rl_mlops.max_training_memory \(64 MB\)/);
sql(q{LOAD 'rl_mlops'; ALTER SYSTEM RESET rl_mlops.max_training_memory; SELECT pg_reload_conf()});
$node->poll_query_until('postgres', q{SELECT current_setting('rl_mlops.max_training_memory', true) IS DISTINCT FROM '64MB'})
  or die 'the setting was not reset';

#
# A source column dropped after create_agent: the worker checks the columns
# it reads, under a lock, before its query.
#
sql(q{ALTER TABLE src DROP COLUMN price});
failing_run('dropped column', qr/column "price" of the source relation of agent "f" no longer exists/);

$node->stop;
done_testing();
