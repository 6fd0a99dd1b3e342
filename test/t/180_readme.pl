# The README runs as written (issue 15, part 5): every ```sql block of
# README.md, in order, against a fresh cluster with pg_cron, as psql runs
# it (blocks marked "sql signatures" list signatures and are not run).
# Then the roles its GRANT blocks make can do what the README says they
# can, scheduling included, and nothing more; and the act() example's
# observation is the one decide() builds.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use RlMlops;

my $src = $ENV{RL_MLOPS_SRC} // '.';

# The runnable blocks: [first line number, text].
my @blocks;
open(my $fh, '<', "$src/README.md") or die "README.md: $!";
my ($in, $start, $text) = (0, 0, '');
while (my $line = <$fh>)
{
	if (!$in && $line =~ /^```sql\s*$/)
	{
		($in, $start, $text) = (1, $., '');
	}
	elsif ($in && $line =~ /^```\s*$/)
	{
		push @blocks, [ $start, $text ];
		$in = 0;
	}
	elsif ($in)
	{
		$text .= $line;
	}
}
close $fh;
cmp_ok(scalar @blocks, '>=', 6, 'README.md has runnable SQL blocks (' . scalar(@blocks) . ')');

my $node = new_cluster('readme', cron => 1);
sql(q{CREATE EXTENSION pg_cron});

for my $b (@blocks)
{
	my ($line, $q) = @$b;
	my ($rc, $out, $err) = $node->psql('postgres', $q, on_error_stop => 1);
	is($rc, 0, "README.md line $line runs") or diag($err);
	unlike($err, qr/^(psql:.*)?(ERROR|WARNING):/m, "README.md line $line: no error or warning") or diag($err);
}

# act() on the README's observation is decide()'s action from flat
my $obs = q{
	WITH last AS (SELECT ts, ln(price / lag(price) OVER (ORDER BY ts)) AS r
	                FROM market_bars WHERE symbol = 'SYM001' ORDER BY ts DESC LIMIT 32),
	     o AS (SELECT array_agg((r / m.sigma)::real ORDER BY ts) || 0::real AS obs
	             FROM last, rl_mlops.models m WHERE m.agent = 'default' AND m.state = 'active' GROUP BY m.sigma)};
is(sql(qq{$obs SELECT rl_mlops.act(obs) = d.action AND rl_mlops.policy(obs, 'default') = d.probabilities
            FROM o, rl_mlops.decide('default', 'SYM001', now(), 0) d}), 't',
	'the README\'s observation for act() is the one decide() builds (same action and probabilities)');

# the roles of the GRANT blocks, as LOGIN members
sql(q{CREATE ROLE ops LOGIN IN ROLE quant_ops; CREATE ROLE reader LOGIN IN ROLE quant_reader;
      ALTER ROLE trader LOGIN; ALTER ROLE rl_exporter LOGIN});
sub as
{
	my ($role, $q) = @_;
	my ($rc, $out, $err) = $node->psql('postgres', $q, extra_params => [ '-U', $role ]);
	return $rc == 0 ? "ok $out" : $err;
}
sub denied { like(as(@_[0, 1]), qr/permission denied for function/, $_[2]) }
sub allowed { like(as(@_[0, 1]), qr/^ok/, $_[2]) }

sql(q{SELECT rl_mlops.unschedule_retraining('default')});
allowed('ops', q{SELECT rl_mlops.schedule_retraining('default', interval_days => 3)},
	'the operator schedules retraining (without configure())');
is(sql(q{SELECT concat_ws(' ', enabled, interval_days, cron_role) FROM rl_mlops.scheduler_status WHERE agent = 'default'}),
	't 3 ops', '... the job is the operator\'s, the interval set');
allowed('ops', q{SELECT rl_mlops.set_scheduler('default', enabled => false)}, 'pauses it');
allowed('ops', q{SELECT rl_mlops.unschedule_retraining('default')}, 'and unschedules it');
is(sql(q{SELECT enabled FROM rl_mlops.scheduler_status WHERE agent = 'default'}), 'f',
	'scheduler_status: not enabled without a job');
allowed('ops', q{SELECT rl_mlops.deploy_model('default', version) FROM rl_mlops.models
                 WHERE agent = 'default' AND state = 'archived' ORDER BY archived_at DESC LIMIT 1},
	'the operator deploys');
allowed('ops', q{SELECT rl_mlops.rollback('default')}, 'and rolls back');
allowed('ops', q{SELECT rl_mlops.retrain('default', async => false, epochs => 1)}, 'retrains');
allowed('ops', q{SELECT rl_mlops.monitor('default')}, 'monitors');
denied('ops', q{SELECT rl_mlops.configure('default', learning_rate => 0.1)}, 'but may not configure()');
denied('ops', q{SELECT rl_mlops.drop_agent('default')}, 'nor drop the agent');
denied('ops', q{SELECT rl_mlops.import_model('default', '\x00'::bytea)}, 'nor import');
denied('ops', q{SELECT rl_mlops.create_agent('x', 'market_bars')}, 'nor create agents');

allowed('reader', q{SELECT count(*) FROM rl_mlops.models_overview; SELECT rl_mlops.status('default')},
	'the reader reads the views and status()');
allowed('reader', q{SELECT rl_mlops.dashboard('default') IS NOT NULL}, '... and the dashboard');
denied('reader', q{SELECT rl_mlops.rollback('default')}, 'but changes nothing');

allowed('trader', q{SELECT * FROM rl_mlops.decide('default', 'SYM001')}, 'the trader decides');
denied('trader', q{SELECT rl_mlops.monitor('default')}, 'and does nothing else');
allowed('rl_exporter', q{SELECT count(*) FROM rl_mlops.live_performance}, 'the exporter reads the registry');

# the README's configure() error, short: no 36-line statement or failing row
my $cerr = error_of(q{SELECT rl_mlops.configure('default', initial_epochs => 0)});
like($cerr, qr/^psql:<stdin>:1: ERROR:  new row for relation "agents" violates check constraint "initial_epochs_between_1_and_10000"\nHINT:  The constraint's name says the allowed values/,
	'configure() refuses an absurd value as the README shows, with a hint');
cmp_ok(scalar(split /\n/, $cerr), '<=', 3, 'in at most three lines (' . scalar(split /\n/, $cerr) . ')');

integrity_ok($node, 'readme');
$node->stop;
done_testing();
