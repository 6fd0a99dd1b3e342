# Serving on a streaming hot standby (ARCHITECTURE.md "Serving", issue 6): a deploy
# or rollback on the primary reaches the standby's serving backends through
# the replayed relcache invalidation, with no file copying and no
# reconnect; a deploy rolled back on the primary changes nothing there.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use RlMlops;

my $src = $ENV{RL_MLOPS_SRC} // '.';
my $tmp = PostgreSQL::Test::Utils::tempdir;

for my $seed (1, 2)
{
	system_or_bail('/usr/bin/python3', "$src/test/python/interop.py", 'write',
		"$tmp/ck$seed.safetensors", '--seed', $seed);
}

my $obs_sql =
  "(SELECT array_agg(((i * 37 % 33) / 8.0 - 2)::real ORDER BY i) || 0::real FROM generate_series(1, 32) AS i)";
my $policy = "SELECT rl_mlops.policy($obs_sql)";
my $decide = "SELECT version FROM rl_mlops.decide('default', 'AAA')";
my $cache = q{SELECT version || ' loads=' || loads
	FROM rl_mlops.serving_cache() WHERE agent = 'default'};

my $primary = new_cluster('primary', init => { allows_streaming => 1 });
$primary->safe_psql('postgres', q{
	CREATE EXTENSION rl_mlops;
	CREATE TABLE bars (symbol text, ts timestamptz, price float8);
	INSERT INTO bars SELECT 'AAA', timestamptz '2024-01-01' + i * interval '1 day',
	                        100 * exp(0.01 * sin(i * 0.3))
	  FROM generate_series(0, 299) AS i;
	SELECT rl_mlops.create_agent('default', 'bars');
	CREATE ROLE trader LOGIN;
	GRANT USAGE ON SCHEMA rl_mlops TO trader;
	GRANT EXECUTE ON FUNCTION rl_mlops.act(real[], text), rl_mlops.policy(real[], text),
	                          rl_mlops.decide(text, text, timestamptz, integer) TO trader;
	GRANT SELECT ON bars TO trader;
});
my ($v1, $v2);
for my $seed (1, 2)
{
	my $v = $primary->safe_psql('postgres', qq{
		SELECT rl_mlops.import_model('default', pg_read_binary_file('$tmp/ck$seed.safetensors'))});
	$primary->safe_psql('postgres', "SELECT rl_mlops.validate_model('default', '$v')");
	$seed == 1 ? ($v1 = $v) : ($v2 = $v);
}
$primary->safe_psql('postgres', "SELECT rl_mlops.deploy_model('default', '$v1')");
my $p1 = $primary->safe_psql('postgres', $policy);

$primary->backup('backup');
my $standby = PostgreSQL::Test::Cluster->new('standby');
$standby->init_from_backup($primary, 'backup', has_streaming => 1);
$standby->start;
$primary->wait_for_catchup($standby);
is($standby->safe_psql('postgres', 'SELECT pg_is_in_recovery()'), 't', 'the standby is a hot standby');

# One long-lived serving session on the standby.
my $s = $standby->background_psql('postgres');
is($s->query_safe($policy), $p1, 'the standby serves v1 as the primary does');
is($s->query_safe($decide), $v1, 'decide() on the standby names v1');
is($s->query_safe($cache), "$v1 loads=1", 'the standby session parsed v1 once');

# Deploy v2 on the primary.
$primary->safe_psql('postgres', "SELECT rl_mlops.deploy_model('default', '$v2')");
my $p2 = $primary->safe_psql('postgres', $policy);
isnt($p2, $p1, 'v2 gives other probabilities on the primary');
$primary->wait_for_catchup($standby);
is($s->query_safe($policy), $p2, 'after replay the same standby session serves v2');
is($s->query_safe($decide), $v2, 'decide() on the standby names v2');
is($s->query_safe($cache), "$v2 loads=2", 'it parsed v2 once, read from the replicated large object');
is($standby->safe_psql('postgres', $policy), $p2, 'a new standby session serves v2');
is($standby->safe_psql('postgres', "SET ROLE trader; SELECT rl_mlops.act($obs_sql)"),
	$primary->safe_psql('postgres', "SELECT rl_mlops.act($obs_sql)"),
	'a role with only USAGE and EXECUTE serves on the standby');

# A deploy rolled back on the primary: nothing reaches the standby.
$primary->safe_psql('postgres', "BEGIN; SELECT rl_mlops.rollback('default'); ROLLBACK;");
$primary->wait_for_catchup($standby);
is($s->query_safe($policy), $p2, 'a rolled-back rollback leaves the standby on v2');
is($s->query_safe($cache), "$v2 loads=2", '... without any parse');

# rollback() committed on the primary: the standby goes back to v1.
$primary->safe_psql('postgres', "SELECT rl_mlops.rollback('default')");
$primary->wait_for_catchup($standby);
is($s->query_safe($policy), $p1, 'after rollback() replays the standby session serves v1');
is($s->query_safe($decide), $v1, 'decide() on the standby names v1 again');

# monitor() writes: refused on the standby with a clear error; serving
# there goes on.
my ($rc, $out, $err) = $standby->psql('postgres', "\\set VERBOSITY verbose\nSELECT rl_mlops.monitor('default')");
like($err, qr/ERROR:  25006: monitor\(\) cannot run on a hot standby/, 'monitor() on the standby: 25006');
like($err, qr/HINT:  Call rl_mlops.monitor\(\) on the primary\./, '... with a hint');
is($s->query_safe($policy), $p1, 'and serving on the standby is unaffected');
# what monitor() wrote on the primary reads the same on the standby
$primary->safe_psql('postgres', "SELECT rl_mlops.monitor('default')");
$primary->wait_for_catchup($standby);
my $monitoring = q{SELECT (rl_mlops.status('default') -> 'status' -> 'monitoring' -> 'last_call' ->> 'at')
                       || ' ' || (SELECT count(*) FROM rl_mlops.live_performance)};
my $on_primary = $primary->safe_psql('postgres', $monitoring);
like($on_primary, qr/^\d{4}-.* \d+$/, 'status() on the primary shows the monitor() call');
is($s->query_safe($monitoring), $on_primary, 'status() and live_performance on the standby show the same');

# an A/B challenger added on the primary: the standby's backends route the
# symbols exactly as the primary's, from the replayed invalidation on
my $routes = q{SELECT string_agg(s || '=' || (rl_mlops.decide('default', s)).version, ',' ORDER BY s)
                 FROM (SELECT DISTINCT symbol AS s FROM bars) x};
$primary->safe_psql('postgres', q{
	INSERT INTO bars SELECT 'S' || lpad(k::text, 3, '0'), timestamptz '2024-01-01' + i * interval '1 day',
	                        100 * exp(0.01 * sin(i * 0.3 + k))
	  FROM generate_series(0, 99) AS k, generate_series(0, 59) AS i});
$primary->safe_psql('postgres', "SELECT rl_mlops.add_challenger('default', '$v2', 0.5)");
$primary->wait_for_catchup($standby);
my $on_primary_routes = $primary->safe_psql('postgres', $routes);
like($on_primary_routes, qr/=\Q$v2\E.*=\Q$v1\E|=\Q$v1\E.*=\Q$v2\E/, 'a challenger at 0.5 decides for some symbols on the primary');
is($s->query_safe($routes), $on_primary_routes, 'the standby session routes every symbol as the primary');
$primary->safe_psql('postgres', "SELECT rl_mlops.remove_challenger('default', '$v2')");
$primary->wait_for_catchup($standby);
unlike($s->query_safe($routes), qr/\Q$v2\E/, 'removed on the primary: the standby serves the champion only');

$s->quit;
$standby->stop;
$primary->stop;
done_testing();
