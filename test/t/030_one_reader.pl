# One reader per fact (issue 11): training and serving read the source,
# the agent and the settings the same way.
#   1. The deploy gate's holdout Sharpe of a one-symbol agent equals
#      backtest_summary() over the holdout bounds recorded in the metrics
#      (one backtest, one annualisation).
#   2. The same bad data gets the same error (message and SQLSTATE) in
#      training and in serving: a non-positive price, a price whose log
#      return overflows, features of the wrong length.
#   3. The training worker honours rl_mlops.max_checkpoint_size when it
#      reads the active model (it reads the server's settings by name).
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use RlMlops;

my $node = new_cluster('one_reader');

# (rc, stdout, stderr) with the SQLSTATE in error messages.
sub run_verbose
{
	my $q = shift;
	return $node->psql('postgres', "\\set VERBOSITY verbose\n$q");
}

sql(q{CREATE EXTENSION rl_mlops});
create_bars($node, 'one', symbols => 1, seed => 0.8);
small_agent($node, 'one', 'one');

#
# 1. Gate and backtest_summary agree.
#
my ($rc, $run, $err) = $node->psql('postgres', q{SELECT rl_mlops.retrain('one', async => false)});
like($err, qr/NOTICE:  run $run succeeded/, '1. a model of agent one');
my ($version, $from, $to, $gate_sharpe, $gate_return, $gate_steps) = split /\|/, sql(q{
	SELECT concat_ws('|', version, metrics #>> '{holdout_ranges,SYM001,from}',
	                 metrics #>> '{holdout_ranges,SYM001,to}', metrics #>> '{holdout,sharpe}',
	                 metrics #>> '{holdout,total_log_return}', metrics #>> '{holdout,steps}')
	  FROM rl_mlops.models WHERE agent = 'one' AND state = 'active'});
is(sql(qq{SELECT count(*) FROM one WHERE ts BETWEEN '$from' AND '$to'}), '301',
	'1. the metrics record the holdout bounds: the last training bar and the 300 holdout bars');
my ($bt_sharpe, $bt_return, $bt_steps) = split /\|/, sql(qq{
	SELECT concat_ws('|', sharpe, total_log_return, steps)
	  FROM rl_mlops.backtest_summary('one', 'SYM001', '$from', '$to', '$version')});
is($bt_steps, $gate_steps, '1. backtest_summary() over the holdout makes the gate\'s decisions');
ok(abs($bt_return - $gate_return) < 1e-9,
	"1. and earns the gate's holdout log return ($bt_return vs $gate_return)");
ok(abs($bt_sharpe - $gate_sharpe) < 1e-9 * (1 + abs($gate_sharpe)),
	"1. and reports the gate's holdout Sharpe ($bt_sharpe vs $gate_sharpe)");

#
# 2. The same bad data, the same error.  Each case damages a copy of the
# data the model was trained on; training reads it through a second agent,
# serving through the first (its source is swapped for the copy's rows).
#
sub same_error
{
	my ($name, $damage, $re) = @_;
	sql(qq{DROP TABLE IF EXISTS bad; CREATE TABLE bad AS SELECT * FROM one; $damage});
	sql(q{SELECT rl_mlops.drop_agent('bad') FROM rl_mlops.agents WHERE name = 'bad'});
	small_agent($node, 'bad', 'bad');
	my ($rc, $run, $err) = $node->psql('postgres', q{SELECT rl_mlops.retrain('bad', async => false)});
	my $train_error = sql(qq{SELECT error FROM rl_mlops.runs WHERE id = $run});
	# serving reads agent one's source: give it the damaged rows for a moment
	my ($src, $out, $serve_err) = run_verbose(q{
		BEGIN;
		CREATE TEMP TABLE saved AS SELECT * FROM one;
		TRUNCATE one; INSERT INTO one SELECT * FROM bad;
		SELECT * FROM rl_mlops.backtest_summary('one', 'SYM001', '-infinity', 'infinity');
		ROLLBACK;});
	my ($serve_state, $serve_msg) = $serve_err =~ /ERROR:  (\w{5}): (.*)/;
	like($serve_msg // '', $re, "2. $name: serving's error");
	is(substr($train_error, 0, length($serve_msg // 'x')), $serve_msg // 'none',
		"2. $name: training's run fails with the same message");
	return $serve_state;
}
is(same_error('a price of zero', q{UPDATE bad SET price = 0 WHERE ts = (SELECT min(ts) + interval '100 minutes' FROM bad)},
		qr/^price of symbol "SYM001" at .* is not positive$/), '22023', '2. a price of zero: SQLSTATE 22023');
is(same_error('a denormal price', q{UPDATE bad SET price = 1e-310 WHERE ts = (SELECT min(ts) + interval '100 minutes' FROM bad)},
		qr/^price of symbol "SYM001" at .* gives a log return that is not finite$/), '22023',
	'2. a denormal price: SQLSTATE 22023');

#
# 3. The worker reads the active model within rl_mlops.max_checkpoint_size.
#
sql(q{LOAD 'rl_mlops'; ALTER SYSTEM SET rl_mlops.max_checkpoint_size = '64kB'; SELECT pg_reload_conf()});
$node->poll_query_until('postgres', q{SELECT current_setting('rl_mlops.max_checkpoint_size', true) = '64kB'})
  or die 'the setting did not arrive';
ok(sql(q{SELECT size_bytes > 65536 FROM rl_mlops.models WHERE agent = 'one' AND state = 'active'}) eq 't',
	'3. the active checkpoint is larger than 64kB');
($rc, $run, $err) = $node->psql('postgres', q{SELECT rl_mlops.retrain('one', async => false)});
like($err, qr/WARNING:  run $run ended failed\nDETAIL:  checkpoint large object \d+ is too large: It has \d+ bytes; the limit is 65536 bytes\./,
	'3. an incremental run refuses the active model above rl_mlops.max_checkpoint_size');
sql(q{LOAD 'rl_mlops'; ALTER SYSTEM RESET rl_mlops.max_checkpoint_size; SELECT pg_reload_conf()});
$node->poll_query_until('postgres', q{SELECT current_setting('rl_mlops.max_checkpoint_size', true) IS DISTINCT FROM '64kB'})
  or die 'the setting was not reset';
($rc, $run, $err) = $node->psql('postgres', q{SELECT rl_mlops.retrain('one', async => false)});
like($err, qr/NOTICE:  run $run succeeded|WARNING:  run $run ended rejected/, '3. and reads it again once the limit is back');

$node->stop;
done_testing();
