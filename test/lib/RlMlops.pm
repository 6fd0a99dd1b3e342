# The helpers the TAP tests in test/t share: a cluster (optionally with
# pg_cron), SQL on it, a small agent over synthetic bars, waiting for a
# run, the integrity check.  test/suite_tap.sh puts test/lib on @INC.
#
#   use RlMlops;
#   my $node = new_cluster('name', cron => 1, conf => [ 'restart_after_crash = on' ]);
#   sql(q{CREATE EXTENSION rl_mlops});
#   create_bars($node, 'bars', seed => 0.3);
#   small_agent($node, 'c', 'bars', initial_epochs => 2);
#   my ($state, $error) = wait_run($node, $run);
#   integrity_ok($node, '1. after the crash', 'c');
#
# Every helper takes the node as an optional first argument; without it,
# the node new_cluster() made last.
package RlMlops;

use strict;
use warnings;
use Carp;
use Exporter 'import';
use Scalar::Util qw(blessed);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

our @EXPORT = qw(new_cluster sql sql_in error_of integrity_ok create_bars small_agent
  wait_run active_version wait_crash_restart);

# Run states that are not final (the test's own list, not the extension's).
our @UNFINISHED = qw(queued preparing training validating deploying);

my $default_node;

# The node a helper works on: its first argument if that is a cluster
# (removed from @$args), else the node new_cluster() made last.
sub _node
{
	my $args = shift;
	return shift @$args if blessed($args->[0]) && $args->[0]->isa('PostgreSQL::Test::Cluster');
	croak 'no cluster: call new_cluster() first or pass the node' unless $default_node;
	return $default_node;
}

# new_cluster(NAME, cron => 1, conf => LINES, init => {...}, start => 1):
# initdb (with the init options, e.g. allows_streaming => 1), pg_cron
# preloaded for the database postgres and connecting over the node's
# socket directory if cron, then the extra postgresql.conf lines (a string
# or a list of lines), and start unless start => 0.  The node becomes the
# default of the other helpers.
sub new_cluster
{
	my ($name, %opt) = @_;
	my $node = PostgreSQL::Test::Cluster->new($name);
	$node->init(%{ $opt{init} // {} });
	my $conf = '';
	$conf .= join("\n",
		"shared_preload_libraries = 'pg_cron'",
		"cron.database_name = 'postgres'",
		"cron.host = '" . $node->host . "'") . "\n"
	  if $opt{cron};
	if (defined $opt{conf})
	{
		my @lines = ref $opt{conf} ? @{ $opt{conf} } : ($opt{conf});
		$conf .= join('', map { /\n\z/ ? $_ : "$_\n" } @lines);
	}
	$node->append_conf('postgresql.conf', $conf) if $conf ne '';
	$node->start unless defined $opt{start} && !$opt{start};
	$default_node = $node;
	return $node;
}

# sql([NODE,] QUERY): its output, run in the database postgres; dies on error.
sub sql
{
	my $node = _node(\@_);
	return $node->safe_psql('postgres', $_[0]);
}

# sql_in([NODE,] DB, QUERY): the same in database DB.
sub sql_in
{
	my $node = _node(\@_);
	my ($db, $q) = @_;
	return $node->safe_psql($db, $q);
}

# error_of([NODE,] QUERY, PSQL_OPTIONS...): what psql printed on stderr
# (errors, warnings, notices), '' if nothing; never dies.
sub error_of
{
	my $node = _node(\@_);
	my ($q, @opt) = @_;
	my ($rc, $out, $err) = $node->psql('postgres', $q, @opt);
	return $err;
}

# integrity_ok([NODE,] NAME[, AGENT]): one test, check_integrity() returns
# nothing.  With AGENT (after a fault): first rl_mlops.retrain_due(AGENT),
# the scheduler's look that marks a dead run failed, and a test before it
# that no run is left unfinished.
sub integrity_ok
{
	my $node = _node(\@_);
	my ($name, $agent) = @_;
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	if (defined $agent)
	{
		$node->safe_psql('postgres', 'SELECT rl_mlops.retrain_due(' . _quote($agent) . ')');
		my $states = join(', ', map { "'$_'" } @UNFINISHED);
		is($node->safe_psql('postgres', "SELECT count(*) FROM rl_mlops.runs WHERE state IN ($states)"),
			'0', "$name: no run left unfinished");
	}
	is( $node->safe_psql('postgres',
			q{SELECT string_agg(kind || ' ' || coalesce(agent, '-') || ' ' || object || ': ' || detail, E'\n')
			    FROM rl_mlops.check_integrity()}),
		'', "$name: check_integrity() returns nothing");
}

# create_bars([NODE,] TABLE, symbols => 2, bars => 1500, seed => 0.8): a
# table of rl_mlops.synthetic_bars() (AR(1) log returns, phi 0.25, sigma
# 0.01, one-minute bars from 2026-01-01); the seed picks the series.
sub create_bars
{
	my $node = _node(\@_);
	my ($table, %opt) = @_;
	my ($symbols, $bars, $seed) = ($opt{symbols} // 2, $opt{bars} // 1500, $opt{seed} // 0.8);
	$node->safe_psql('postgres', qq{
		CREATE TABLE $table AS
		SELECT * FROM rl_mlops.synthetic_bars($symbols, $bars, 0.25, 0.01, '2026-01-01', '1 minute', $seed)});
}

# small_agent([NODE,] AGENT, SOURCE, SETTING => VALUE...): create_agent()
# over SOURCE, then configure() with initial_epochs => 1, data_window =>
# '10 days' and the settings given; a setting given as undef is left at
# the extension's default.  Numbers go in as they are, anything else as a
# quoted literal.
sub small_agent
{
	my $node = _node(\@_);
	my ($agent, $source, %set) = @_;
	%set = (initial_epochs => 1, data_window => '10 days', %set);
	my @order = grep { exists $set{$_} } qw(initial_epochs incremental_epochs data_window);
	my %seen = map { $_ => 1 } @order;
	push @order, sort grep { !$seen{$_} } keys %set;
	my $args = join('', map { ", $_ => " . _literal($set{$_}) } grep { defined $set{$_} } @order);
	my ($ag, $src) = map { _quote($_) } ($agent, $source);
	$node->safe_psql('postgres', qq{
		SELECT rl_mlops.create_agent($ag, $src) IS NULL;
		SELECT rl_mlops.configure($ag$args) IS NULL});
}

# A number as it is, anything else as a quoted SQL literal.
sub _literal
{
	my $v = shift;
	return $v =~ /^-?\d+(\.\d+)?([eE][-+]?\d+)?$/ ? $v : _quote($v);
}

# A quoted SQL literal.
sub _quote
{
	(my $v = shift) =~ s/'/''/g;
	return "'$v'";
}

# wait_run([NODE,] RUN): wait until rl_mlops.training_progress shows run
# RUN ended (succeeded, rejected, failed, cancelled: a run whose worker
# died shows failed there at once); its state and error ('' if none).
# ('no run', '') if RUN is not a run id; dies if it does not end.
sub wait_run
{
	my $node = _node(\@_);
	my $run = shift;
	return ('no run', '') unless defined $run && $run =~ /^\d+$/;
	$node->poll_query_until('postgres', qq{
		SELECT state IN ('succeeded', 'rejected', 'failed', 'cancelled')
		  FROM rl_mlops.training_progress WHERE run_id = $run})
	  or die "run $run did not end";
	return split /\|/, $node->safe_psql('postgres',
		"SELECT state || '|' || coalesce(error, '') FROM rl_mlops.training_progress WHERE run_id = $run"), 2;
}

# active_version([NODE,] AGENT): the version of AGENT that is active, or ''.
sub active_version
{
	my $node = _node(\@_);
	my $ag = _quote(shift);
	return $node->safe_psql('postgres',
		"SELECT version FROM rl_mlops.models WHERE agent = $ag AND state = 'active'");
}

# wait_crash_restart([NODE,] LOGPOS): wait for the crash restart that
# began after log position LOGPOS to finish and take connections again.
sub wait_crash_restart
{
	my $node = _node(\@_);
	my $pos = shift;
	$node->wait_for_log(qr/all server processes terminated; reinitializing/, $pos);
	$node->wait_for_log(qr/database system is ready to accept connections/, $pos);
	$node->poll_query_until('postgres', 'SELECT true') or die 'no restart';
}

1;
