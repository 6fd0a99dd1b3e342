# Prometheus (issue 14): the real prometheus-postgres-exporter with
# tools/prometheus/queries.yaml against a cluster on 127.0.0.1 serves the
# rl_mlops metrics with their labels; the alert rules pass promtool's check
# and unit tests.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use HTTP::Tiny;
use IPC::Run;
use RlMlops;
use RlMlopsLive;

my $src = $ENV{RL_MLOPS_SRC} // '.';
my $prom = "$src/tools/prometheus";

# 1. The rules.
my ($out, $err);
IPC::Run::run([ 'promtool', 'check', 'rules', "$prom/alerts.yml" ], '>', \$out, '2>', \$err);
like($out . $err, qr/SUCCESS: \d+ rules found/, 'promtool check rules: alerts.yml is valid');
IPC::Run::run([ 'promtool', 'test', 'rules', "$prom/alerts_test.yml" ], '>', \$out, '2>', \$err);
like($out . $err, qr/SUCCESS/, 'promtool test rules: every alert fires when it should and only then');
unlike($out . $err, qr/FAILED/, '... with no failed case');

# 2. A cluster on 127.0.0.1 with a champion, a shadow and a challenger
# that monitor() has paper-traded.
my $node = new_cluster('prometheus');
$node->append_conf('postgresql.conf', "listen_addresses = '127.0.0.1'");
$node->append_conf('pg_hba.conf', 'host all all 127.0.0.1/32 trust');
$node->restart;
sql(q{CREATE EXTENSION rl_mlops});
market('pm', 0.25, 0.3, 200);
small_agent($node, 'pm', 'pm', initial_epochs => 2, data_window => '2 days');
my ($rc, $run, $e) = $node->psql('postgres', q{SELECT rl_mlops.retrain('pm', async => false)});
like($e, qr/NOTICE:  run $run succeeded/, 'a trained champion');
my $first = sql(q{SELECT version FROM rl_mlops.models WHERE agent = 'pm' AND state = 'active'});
my @copies = map { copy_of_champion('pm') } 1 .. 2;
sql(qq{SELECT rl_mlops.deploy_model('pm', '$copies[0]') IS NULL;
       SELECT rl_mlops.add_challenger('pm', '$copies[1]', 0.2) IS NULL});
arrive('pm', 60);
sql(q{SELECT rl_mlops.monitor('pm') IS NULL});
sql(q{CREATE ROLE rl_exporter LOGIN IN ROLE pg_monitor;
      GRANT USAGE ON SCHEMA rl_mlops TO rl_exporter;
      GRANT SELECT ON ALL TABLES IN SCHEMA rl_mlops TO rl_exporter});
sql(q{SELECT rl_mlops.create_agent('empty', 'pm') IS NULL});

# 3. The exporter, as the documented reader role.
my $port = PostgreSQL::Test::Cluster::get_free_port();
my $dsn = sprintf('postgresql://rl_exporter@127.0.0.1:%d/postgres?sslmode=disable', $node->port);
my ($eout, $eerr) = ('', '');
my $exporter = IPC::Run::start(
	[ 'env', "DATA_SOURCE_NAME=$dsn", 'prometheus-postgres-exporter',
	  "--web.listen-address=127.0.0.1:$port", "--extend.query-path=$prom/queries.yaml" ],
	'>', \$eout, '2>', \$eerr);
my $metrics = '';
for (1 .. 100)
{
	my $res = HTTP::Tiny->new(timeout => 10)->get("http://127.0.0.1:$port/metrics");
	if ($res->{success} && $res->{content} =~ /^rl_mlops_agent_model_active/m)
	{
		$metrics = $res->{content};
		last;
	}
	select(undef, undef, undef, 0.2);
}
$exporter->kill_kill;
ok($metrics ne '', 'the exporter serves metrics') or diag($eerr);
like($metrics, qr/^pg_up(\{[^}]*\})? 1$/m, 'it reaches the cluster');
like($metrics, qr/^pg_exporter_user_queries_load_error\{[^}]*\} 0$/m, 'queries.yaml loads without error');
like($metrics, qr/^pg_exporter_last_scrape_error(\{[^}]*\})? 0$/m, 'every query ran without error');
sub metric
{
	my ($name, %labels) = @_;
	my @lines = grep { /^\Q$name\E\{/ } split /\n/, $metrics;
	for my $l (sort keys %labels) { @lines = grep { /[{,]\Q$l\E="\Q$labels{$l}\E"/ } @lines; }
	return scalar(@lines) == 1 ? (split / /, $lines[0])[-1] : undef;
}
is(metric('rl_mlops_agent_model_active', agent => 'pm', active_version => $copies[0]), '1',
	'rl_mlops_agent_model_active with the active version as a label');
is(metric('rl_mlops_agent_model_active', agent => 'empty'), '0', '... 0 for an agent with no model');
ok(metric('rl_mlops_agent_checkpoint_bytes', agent => 'pm') > 100000, 'checkpoint bytes');
is(metric('rl_mlops_versions_count', agent => 'pm', state => 'validated'), '1', 'versions by state');
is(metric('rl_mlops_runs_count', agent => 'pm', state => 'succeeded'), '1', 'runs by state');
ok(metric('rl_mlops_last_run_samples_per_second', agent => 'pm', state => 'succeeded', trigger => 'manual') > 0,
	"the last run's samples/s");
ok(defined metric('rl_mlops_last_run_duration_seconds', agent => 'pm'), "the last run's duration");
ok(metric('rl_mlops_monitor_seconds_since_last_call', agent => 'pm') >= 0, 'seconds since the last monitor()');
is(metric('rl_mlops_deployments_total', agent => 'pm', action => 'deploy'), '2', 'deployments by action');
is(metric('rl_mlops_deployments_total', agent => 'pm', action => 'auto_rollback'), '0', '... auto_rollback 0');
for my $v ([ $copies[0], 'champion' ], [ $first, 'shadow' ], [ $copies[1], 'challenger' ])
{
	my ($version, $role) = @$v;
	# (imported versions trade from the first bar after their import: a
	# bar or two fewer, by the clock)
	ok(metric('rl_mlops_live_decisions', agent => 'pm', version => $version, role => $role) >= 50,
		"live decisions of the $role");
	ok(defined metric('rl_mlops_live_total_return', agent => 'pm', version => $version, role => $role),
		"live return of the $role");
	ok(defined metric('rl_mlops_live_max_drawdown', agent => 'pm', version => $version, role => $role),
		"live drawdown of the $role");
	ok(defined metric('rl_mlops_live_drift_detected', agent => 'pm', version => $version, role => $role),
		"drift flag of the $role");
}
ok(defined metric('rl_mlops_live_test_statistic', agent => 'pm', version => $copies[0], role => 'champion'),
	'the probation test statistic');
like(metric('rl_mlops_live_test_threshold', agent => 'pm', version => $copies[0], role => 'champion'),
	qr/^4\.605/, '... and its threshold log(1/0.01)');
is(metric('rl_mlops_challenger_traffic_share', agent => 'pm', version => $copies[1], mode => 'a/b'), '0.2',
	'the challenger and its share');
like($metrics, qr/^# HELP rl_mlops_live_sharpe Live annualised Sharpe ratio$/m, 'metrics carry their help text');

$node->stop;
done_testing();
