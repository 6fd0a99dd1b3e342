# The trainer path: library dependencies, check_trainer() in a real worker,
# a worker terminated while it works, and no free worker slot.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use RlMlops;

my $pkglibdir = `pg_config --pkglibdir`;
chomp $pkglibdir;

# ARCHITECTURE.md "Processes and libraries": serving backends never load libtorch.
my $ldd_serving = `ldd $pkglibdir/rl_mlops.so`;
is($?, 0, 'ldd reads rl_mlops.so');
unlike($ldd_serving, qr/torch|c10/, 'rl_mlops.so does not depend on libtorch');
like(`ldd $pkglibdir/rl_mlops_trainer.so`, qr/libtorch/,
	'rl_mlops_trainer.so links libtorch');

my $node = new_cluster('trainer', conf => 'restart_after_crash = on');
$node->safe_psql('postgres', 'CREATE EXTENSION rl_mlops');

# A check in a real worker; the calling backend must not map libtorch.
my ($ok, $maps) = split /\|/, $node->safe_psql('postgres', q{
	SELECT (SELECT ok AND libtorch_version ~ '^1\.' FROM rl_mlops.check_trainer()),
	       pg_read_file('/proc/' || pg_backend_pid() || '/maps') ~ 'libtorch'});
is($ok, 't', 'check_trainer() returns ok with the libtorch version');
is($maps, 'f', 'the calling backend never mapped libtorch');

# A role reached with SET ROLE may be NOLOGIN: the worker connects as the
# login role and becomes the current one.
is($node->safe_psql('postgres', q{
	CREATE ROLE ops_nologin NOLOGIN;
	GRANT USAGE ON SCHEMA rl_mlops TO ops_nologin;
	GRANT EXECUTE ON FUNCTION rl_mlops.check_trainer(integer, integer) TO ops_nologin;
	SET ROLE ops_nologin;
	SELECT ok FROM rl_mlops.check_trainer();}),
	't', 'check_trainer() works for a NOLOGIN role reached with SET ROLE');

# Terminate the worker while it trains: the caller gets a clear error and
# the server keeps running.
my $caller = $node->background_psql('postgres', on_error_stop => 0);
$caller->query_until(qr/started/,
	"\\echo started\nSELECT * FROM rl_mlops.check_trainer(ppo_updates => 1000000);\n");
my $worker_seen = $node->poll_query_until('postgres', q{
	SELECT count(*) = 1 FROM pg_stat_activity
	 WHERE backend_type = 'rl_mlops trainer check'});
ok($worker_seen, 'the trainer worker shows in pg_stat_activity');
$node->safe_psql('postgres', q{
	SELECT pg_terminate_backend(pid) FROM pg_stat_activity
	 WHERE backend_type = 'rl_mlops trainer check'});
$caller->quit;
my $err = $caller->{stderr};
like($err, qr/rl_mlops trainer worker exited before reporting a result/,
	'the caller gets a clear error when the worker is terminated');
is($node->safe_psql('postgres', 'SELECT 1'), '1', 'the server keeps running');
unlike(slurp_file($node->logfile), qr/terminated by signal|server process .* was terminated/,
	'no crash restart happened');

# No free worker slot: a clear error with a hint.
$node->append_conf('postgresql.conf', "max_worker_processes = 0\n");
$node->restart;
my ($rc, $stdout, $stderr) = $node->psql('postgres',
	'SELECT * FROM rl_mlops.check_trainer()');
like($stderr, qr/could not start an rl_mlops trainer worker/,
	'no free worker slot gives a clear error');
like($stderr, qr/HINT:.*max_worker_processes/, 'the hint names max_worker_processes');

$node->stop;
done_testing();
