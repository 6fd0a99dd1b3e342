# The per-backend serving cache across sessions (ARCHITECTURE.md "Serving", issue 6):
# a deploy is served by other backends after it commits and never before;
# a rolled-back deploy leaves every backend on the old model; no backend
# polls (act() does not read the registry between invalidations); the C
# forward pass serves what PyTorch computes for the same checkpoint.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use RlMlops;

my $src = $ENV{RL_MLOPS_SRC} // '.';
my $tmp = PostgreSQL::Test::Utils::tempdir;

# Two checkpoints made by PyTorch (test/python/interop.py).
for my $seed (1, 2)
{
	system_or_bail('/usr/bin/python3', "$src/test/python/interop.py", 'write',
		"$tmp/ck$seed.safetensors", '--seed', $seed);
}

# An observation of exactly representable floats: 32 returns and a position.
my @obs = map { ((($_ * 37) % 33) / 8.0) - 2.0 } 1 .. 32;
push @obs, 0;
my $obs_sql = "'{" . join(',', @obs) . "}'::real[]";
my $policy = "SELECT rl_mlops.policy($obs_sql)";
my $cache = q{SELECT version || ' reads=' || registry_reads || ' loads=' || loads
	FROM rl_mlops.serving_cache() WHERE agent = 'default'};

# PyTorch's probabilities for that observation.
sub torch_probs
{
	my ($ckpt) = @_;
	my $out = `/usr/bin/python3 $src/test/python/interop.py forward $ckpt '[[@{[join(',', @obs)]}]]'`;
	die "interop.py forward failed" if $? != 0;
	$out =~ /"probs":\s*\[\[([^\]]+)\]\]/ or die "unexpected output: $out";
	return [ split /\s*,\s*/, $1 ];
}

# Probabilities as psql prints a real[].
sub parse_probs
{
	my ($text) = @_;
	$text =~ s/[{}]//g;
	return [ split /,/, $text ];
}

# Largest absolute difference of two vectors.
sub max_diff
{
	my ($x, $y) = @_;
	my $d = 0;
	for my $i (0 .. $#$y)
	{
		my $e = abs($x->[$i] - $y->[$i]);
		$d = $e if $e > $d;
	}
	return $d;
}

my $node = new_cluster('serving');
$node->safe_psql('postgres', qq{
	CREATE EXTENSION rl_mlops;
	CREATE TABLE bars (symbol text, ts timestamptz, price float8);
	INSERT INTO bars SELECT 'AAA', timestamptz '2024-01-01' + i * interval '1 hour',
	                        100 * exp(0.01 * sin(i * 0.3))
	  FROM generate_series(0, 299) AS i;
	SELECT rl_mlops.create_agent('default', 'bars');
});
my ($v1, $v2);
for my $seed (1, 2)
{
	my $v = $node->safe_psql('postgres', qq{
		SELECT rl_mlops.import_model('default', pg_read_binary_file('$tmp/ck$seed.safetensors'))});
	$node->safe_psql('postgres', "SELECT rl_mlops.validate_model('default', '$v')");
	$seed == 1 ? ($v1 = $v) : ($v2 = $v);
}
$node->safe_psql('postgres', "SELECT rl_mlops.deploy_model('default', '$v1')");
my $decide = "SELECT version FROM rl_mlops.decide('default', 'AAA')";

my $a = $node->background_psql('postgres');
my $b = $node->background_psql('postgres');
# query_safe dies on any stderr: a deploy of these random networks warns
# that they lost money on the agent's holdout (tested in 160_lineage)
$_->query_safe('SET client_min_messages = error') for ($a, $b);

# B serves v1, and what it serves is PyTorch's output for checkpoint 1.
my $p1 = $b->query_safe($policy);
cmp_ok(max_diff(parse_probs($p1), torch_probs("$tmp/ck1.safetensors")), '<', 1e-5,
	'the C forward pass serves what PyTorch computes for v1 (within 1e-5)');
is($b->query_safe($cache), "$v1 reads=1 loads=1", 'B read the registry once and parsed v1 once');
$b->query_safe("SELECT sum(rl_mlops.act($obs_sql)) FROM generate_series(1, 10000)");
is($b->query_safe($cache), "$v1 reads=1 loads=1",
	'10000 act() calls later B has not read the registry again (no polling, no SPI)');

# A deploys v2 in an open transaction: only A serves it.
$a->query_safe('BEGIN');
$a->query_safe("SELECT rl_mlops.deploy_model('default', '$v2')");
my $p2 = $a->query_safe($policy);
isnt($p2, $p1, 'the deploying session serves v2 inside its transaction');
cmp_ok(max_diff(parse_probs($p2), torch_probs("$tmp/ck2.safetensors")), '<', 1e-5,
	'... and v2 is PyTorch\'s checkpoint 2');
is($b->query_safe($policy), $p1, 'B still serves v1 while the deploy is not committed');
is($b->query_safe($decide), $v1, 'B\'s decide() names v1');

# A rolls back: everyone stays on v1.
$a->query_safe('ROLLBACK');
is($a->query_safe($policy), $p1, 'after ROLLBACK the deploying session serves v1 again');
is($b->query_safe($policy), $p1, 'after ROLLBACK B serves v1');
is($b->query_safe($cache), "$v1 reads=1 loads=1",
	'a rolled-back deploy sent B nothing: no registry read, no parse');

# A deploys v2 and commits: B serves v2 at its next statement.
$a->query_safe("SELECT rl_mlops.deploy_model('default', '$v2')");
is($b->query_safe($policy), $p2, 'after COMMIT B serves v2 without reconnecting');
is($b->query_safe($decide), $v2, 'B\'s decide() names v2');
is($b->query_safe($cache), "$v2 reads=2 loads=2", 'B re-read the registry once and parsed v2 once');
is($node->safe_psql('postgres', $policy), $p2, 'a new session serves v2');

# Invalidations of other relations do not touch the cache.
$a->query_safe('CREATE INDEX ON bars (symbol, ts); ALTER TABLE bars ADD COLUMN note text; ANALYZE bars');
$b->query_safe($policy);
is($b->query_safe($cache), "$v2 reads=2 loads=2", 'relcache invalidations of other tables are ignored');

# One that changes nothing costs a registry read but no parse.
$a->query_safe('SELECT rl_mlops._invalidate_serving()');
is($b->query_safe($policy), $p2, 'B serves v2 after an invalidation that changed nothing');
is($b->query_safe($cache), "$v2 reads=3 loads=2", '... with one registry read and no parse');

# Rollback commits: B serves v1 again.
$a->query_safe("SELECT rl_mlops.rollback('default')");
is($b->query_safe($policy), $p1, 'after rollback() commits B serves v1');
is($b->query_safe($cache), "$v1 reads=4 loads=3", '... having parsed v1 again');

# A repeatable-read transaction of B that began before a deploy commits:
# once B processes the invalidation it serves the committed version (the
# registry is re-read with a fresh snapshot, not B's old one), and it keeps
# serving it after its transaction ends.
$b->query_safe('BEGIN ISOLATION LEVEL REPEATABLE READ');
$b->query_safe('SELECT count(*) FROM bars');
$a->query_safe("SELECT rl_mlops.deploy_model('default', '$v2')");
is($b->query_safe("SELECT count(*) FROM rl_mlops.models WHERE agent = 'default' AND state = 'active' AND version = '$v2'"), '0',
	'B\'s repeatable-read snapshot does not see the deploy');
is($b->query_safe($policy), $p2, '... but B serves the committed v2 once the invalidation arrived');
$b->query_safe('COMMIT');
is($b->query_safe($policy), $p2, 'B serves v2 after its transaction');

# Agents are cached side by side.
$a->query_safe(qq{
	SELECT rl_mlops.create_agent('other', 'bars');
	SELECT rl_mlops.import_model('other', pg_read_binary_file('$tmp/ck1.safetensors'))});
my $vo = $a->query_safe("SELECT version FROM rl_mlops.models WHERE agent = 'other'");
$a->query_safe("SELECT rl_mlops.validate_model('other', '$vo'); SELECT rl_mlops.deploy_model('other', '$vo')");
is($b->query_safe("SELECT rl_mlops.policy($obs_sql, 'other')"), $p1, 'agent "other" serves its own model');
is($b->query_safe($policy), $p2, 'while "default" still serves v2');

$a->quit;
$b->quit;
$node->stop;
done_testing();
