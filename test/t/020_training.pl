# Training runs in a background worker (ARCHITECTURE.md "A training run", "The trading environment"): a
# synchronous first training that really learns, live progress of an
# asynchronous run, one run per agent, incremental training that continues
# the optimizer, full retraining from scratch, an epochs override, the
# same checkpoint bytes for the same seed, and the deployment gate.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;
use JSON::PP;
use POSIX qw(ceil floor);
use RlMlops;

my $node = new_cluster('training');

# A checkpoint as exported: the safetensors header (raw and parsed) and the
# tensor bytes after it.
sub checkpoint
{
	my ($agent, $version) = @_;
	my $bytes = pack('H*',
		sql("SELECT encode(rl_mlops.export_model('$agent', '$version'), 'hex')"));
	my $hlen = unpack('Q<', substr($bytes, 0, 8));
	my $raw = substr($bytes, 8, $hlen);
	return {
		header_raw => $raw,
		header => decode_json($raw),
		payload => substr($bytes, 8 + $hlen)
	};
}

# The float32 values of one tensor of a checkpoint.
sub tensor
{
	my ($ck, $name) = @_;
	my ($from, $to) = @{ $ck->{header}{$name}{data_offsets} };
	return unpack('f<*', substr($ck->{payload}, $from, $to - $from));
}

# The metrics of a model version; versions are unique per agent only.
sub metrics
{
	my ($agent, $v) = @_;
	return decode_json(sql("SELECT metrics FROM rl_mlops.models WHERE agent = '$agent' AND version = '$v'"));
}

# 4 symbols x 3000 one-minute bars whose log returns are AR(1), phi 0.25:
# momentum a policy can learn.  The default data_window (30 days) holds it
# all; the last 20% of each series is the holdout.
my ($symbols, $bars, $window, $episode, $minibatch, $passes) = (4, 3000, 32, 256, 256, 4);
sql(q{CREATE EXTENSION rl_mlops});
create_bars($node, 'bars', symbols => $symbols, bars => $bars, seed => 0.42);
small_agent($node, 'a', 'bars', initial_epochs => 10, incremental_epochs => 3, data_window => undef);
my $holdout = floor($bars * 0.2);
my $train_decisions = $symbols * ($bars - $holdout - $window - 1);
my $updates_per_epoch = $passes * ceil($train_decisions / $minibatch);

#
# 1. First training, synchronous: trained from scratch, validated, deployed.
#
my ($rc, $out, $err) = $node->psql('postgres', "SELECT rl_mlops.retrain('a', async => false)");
is($rc, 0, 'retrain(async => false) returns');
my $run1 = $out;
like($err, qr/NOTICE:  run $run1 succeeded: model version \d{8}_\d{6} deployed/,
	'the synchronous caller gets a NOTICE naming the deployed version');
my ($v1) = $err =~ /model version (\S+) deployed/;
$v1 //= '';

is( sql(qq{
	SELECT concat_ws('|', state, trigger, requested_by, full_training, epoch, epochs, samples,
	                 parent_version IS NULL, produced_version, error IS NULL,
	                 loss IS NOT NULL AND loss::text NOT IN ('NaN', 'Infinity', '-Infinity'),
	                 samples_per_second > 0, worker_pid > 0 AND worker_pid <> pg_backend_pid(),
	                 data_from = (SELECT min(ts) FROM bars), data_to = (SELECT max(ts) FROM bars),
	                 started_at <= finished_at)
	  FROM rl_mlops.runs WHERE id = $run1}),
	"succeeded|manual|postgres|f|10|10|$train_decisions|t|$v1|t|t|t|t|t|t|t",
	'run row: succeeded, 10 of 10 epochs, samples, no parent, produced version, data window');

is( sql(qq{
	SELECT concat_ws('|', state, origin, run_id, training_epochs, parent_version IS NULL,
	                 training_loss = (SELECT loss FROM rl_mlops.runs WHERE id = $run1),
	                 sigma > 0, (metrics ->> 'sigma')::float8 = sigma, validation ->> 'ok',
	                 (SELECT string_agg(k || '=' || (validation #>> ARRAY['checks', k, 'ok']), ',' ORDER BY k)
	                    FROM jsonb_object_keys(validation -> 'checks') k),
	                 data_from = (SELECT min(ts) FROM bars), deployed_at IS NOT NULL)
	  FROM rl_mlops.models WHERE agent = 'a' AND version = '$v1'}),
	"active|trained|$run1|10|t|t|t|t|true|architecture=true,forward_pass=true,libtorch_agreement=true,loads=true,readable=true|t|t",
	'model row: active, trained by the run, every validation check passed incl. libtorch_agreement');

my $m1 = metrics('a', $v1);
is_deeply([ sort keys %$m1 ],
	[ sort qw(holdout initial holdout_ranges holdout_by_symbol sigma forward_max_diff periods_per_year symbols
		  train_decisions holdout_decisions warm_start fresh_optimizer worker_peak_rss_mb libtorch) ],
	'metrics of a first training: holdout and initial backtests, holdout bounds and per symbol, no champion');
for my $k (qw(holdout initial))
{
	is_deeply([ sort keys %{ $m1->{$k} } ],
		[ sort qw(steps total_log_return sharpe max_drawdown turnover buy_hold_log_return) ],
		"metrics.$k has the backtest summary keys");
	is($m1->{$k}{steps}, $symbols * $holdout, "metrics.$k covers the whole holdout");
}
ok(!$m1->{warm_start}, 'metrics.warm_start is false for a first training');
ok($m1->{forward_max_diff} <= 1e-5, "libtorch and the C forward pass agree ($m1->{forward_max_diff})");
is($m1->{train_decisions}, $train_decisions, 'metrics.train_decisions');
is($m1->{symbols}, $symbols, 'metrics.symbols');

# It must really learn: on the holdout, the greedy policy beats both the
# network it started from and buy-and-hold.
my ($h, $i, $bh) = map { $_ + 0 } ($m1->{holdout}{total_log_return},
	$m1->{initial}{total_log_return}, $m1->{holdout}{buy_hold_log_return});
note("holdout log return $h, untrained $i, buy and hold $bh");
ok($h > $i, 'the trained policy beats the untrained network on the holdout');
ok($h > $bh, 'the trained policy beats buy-and-hold on the holdout');
ok($h > 0, 'the trained policy makes money on the holdout after costs');

is( sql(q{SELECT concat_ws('|', count(*), min(action), min(version), bool_and(reason ~ 'retrain run'))
	FROM rl_mlops.deployments WHERE agent = 'a'}),
	"1|deploy|$v1|t", 'one deployment recorded, naming the run');
is( sql(q{SELECT concat_ws('|', status #>> '{status,model_info,current_version}',
	                        status #>> '{status,scheduler,is_training}',
	                        status #>> '{status,scheduler,last_retrain_time}' IS NOT NULL)
	FROM rl_mlops.status('a') status}),
	"$v1|false|t", 'status(): current version, not training, last_retrain_time set');

# The seed's log steps, in order, from the worker's process.
my $pid1 = sql("SELECT worker_pid FROM rl_mlops.runs WHERE id = $run1");
my $log = slurp_file($node->logfile);
my $pos = 0;
my @missing;
for my $line ('rl_mlops: Step 1: Preparing training data...',
	'rl_mlops: Step 2: Training model... (from scratch, 10 epochs)',
	"rl_mlops: run $run1 epoch 1/10: loss",
	"rl_mlops: run $run1 epoch 10/10: loss",
	'rl_mlops: Step 3: Validating new model...',
	'rl_mlops: Step 4: Deploying new model...',
	"rl_mlops: Retraining complete! New model $v1 deployed")
{
	my $at = index($log, "[$pid1] LOG:  $line", $pos);
	if ($at < 0) { push @missing, $line; next; }
	$pos = $at;
}
is_deeply(\@missing, [], 'the worker logged the step lines, in order');

#
# 2. Asynchronous incremental run with an epochs override: retrain()
#    returns while the worker trains; progress is visible; a second
#    retrain() meanwhile returns the same run and starts no worker.
#    Two sessions ask at the same moment: both get the same run.
#
my $async_epochs = 25;
my @h;
my @outs = ('', '');
my @errs = ('', '');
for my $k (0, 1)
{
	push @h, IPC::Run::start(
		[ 'psql', '-X', '-qtA', '-d', $node->connstr('postgres'),
		  '-c', "SELECT rl_mlops.retrain('a', epochs => $async_epochs)" ],
		'>', \$outs[$k], '2>', \$errs[$k]);
}
$_->finish for @h;
chomp @outs;
my $run2 = $outs[0];
like($run2, qr/^\d+$/, 'asynchronous retrain() returns a run id');
is($outs[1], $run2, 'a concurrent retrain() of the same agent returns the same run');
like(join('', @errs), qr/agent "a" is already training in run $run2/,
	'the concurrent caller gets a NOTICE naming the run in progress');
like(sql("SELECT state FROM rl_mlops.runs WHERE id = $run2"), qr/^(preparing|training)$/,
	'retrain() returned while the run is still in progress');

ok( $node->poll_query_until('postgres', qq{
	SELECT state = 'training' AND epoch >= 2 FROM rl_mlops.training_progress WHERE run_id = $run2}),
	'training_progress shows the epochs advancing');
is( sql(qq{
	SELECT concat_ws('|', agent, epochs, pct > 0 AND pct < 100, loss IS NOT NULL,
	                 samples_per_second > 0, samples, parent_version, error IS NULL,
	                 elapsed > '0'::interval, requested_by)
	  FROM rl_mlops.training_progress WHERE run_id = $run2}),
	"a|$async_epochs|t|t|t|$train_decisions|$v1|t|t|postgres",
	'training_progress: epochs, pct, loss, samples/s, parent version');
is( sql(qq{
	SELECT concat_ws('|', count(*), min(usename), bool_and(pid = (SELECT worker_pid FROM rl_mlops.runs WHERE id = $run2)))
	  FROM pg_stat_activity WHERE backend_type = 'rl_mlops trainer'}),
	'1|postgres|t', 'one trainer worker, connected as the requesting role');
is( sql(q{SELECT status #>> '{status,scheduler,is_training}' FROM rl_mlops.status('a') status}),
	'true', 'status() says is_training');

($rc, $out, $err) = $node->psql('postgres', "SELECT rl_mlops.retrain('a', async => false, full => true)");
is($out, $run2, 'retrain() during a run returns the running run, even with async => false');
like($err, qr/NOTICE:  agent "a" is already training in run $run2/, 'with a NOTICE');
is(sql(q{SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'rl_mlops trainer'}), '1',
	'no second worker appeared');
is(sql(q{SELECT count(*) FROM rl_mlops.runs WHERE agent = 'a'}), '2', 'no second run row');

is((wait_run($node, $run2))[0], 'succeeded', 'the asynchronous run succeeded');
my $v2 = sql("SELECT produced_version FROM rl_mlops.runs WHERE id = $run2");
is( sql(qq{
	SELECT concat_ws('|', r.epoch, r.epochs, r.parent_version, r.full_training, m.parent_version,
	                 m.training_epochs, m.state,
	                 (SELECT state FROM rl_mlops.models WHERE agent = 'a' AND version = '$v1'))
	  FROM rl_mlops.runs r JOIN rl_mlops.models m ON m.version = r.produced_version AND m.agent = r.agent
	 WHERE r.id = $run2}),
	"$async_epochs|$async_epochs|$v1|f|$v1|$async_epochs|active|archived",
	"incremental run: $async_epochs epochs (override), parent = previous active model, which is archived");
my $m2 = metrics('a', $v2);
ok($m2->{warm_start}, 'metrics.warm_start is true');
is($m2->{champion_version}, $v1, 'metrics.champion_version names the previous model');
is_deeply([ sort keys %{ $m2->{champion} } ],
	[ sort qw(steps total_log_return sharpe max_drawdown turnover buy_hold_log_return) ],
	'metrics.champion: the active model backtested on the same holdout');
is($m2->{champion}{total_log_return}, $m2->{initial}{total_log_return},
	'a warm start begins from the champion: initial and champion backtests agree');

my $ck1 = checkpoint('a', $v1);
my $ck2 = checkpoint('a', $v2);
my ($step1) = tensor($ck1, 'optim.step');
my ($step2) = tensor($ck2, 'optim.step');
is($step1, 10 * $updates_per_epoch, "optim.step after the first training = 10 epochs x $updates_per_epoch updates");
is($step2, $step1 + $async_epochs * $updates_per_epoch, 'the incremental run continued the optimizer step count');
isnt(join(',', tensor($ck2, 'optim.exp_avg_sq.actor.weight')),
	join(',', tensor($ck1, 'optim.exp_avg_sq.actor.weight')), 'and its Adam moments');

#
# 3. Incremental with the agent's default: incremental_epochs.
#
($rc, $out, $err) = $node->psql('postgres', "SELECT rl_mlops.retrain('a', async => false)");
my $run3 = $out;
like($err, qr/NOTICE:  run $run3 succeeded/, 'a default retrain is incremental and succeeds');
my $v3 = sql("SELECT produced_version FROM rl_mlops.runs WHERE id = $run3");
is(sql("SELECT concat_ws('|', epochs, parent_version, full_training) FROM rl_mlops.runs WHERE id = $run3"),
	"3|$v2|f", 'epochs = incremental_epochs, parent = previous version');
my ($step3) = tensor(checkpoint('a', $v3), 'optim.step');
is($step3, $step2 + 3 * $updates_per_epoch, 'optim.step continued again');
isnt($v3, $v2, 'a new version');

#
# 4. full => true: from scratch with initial_epochs, no parent.  Same seed,
#    same data, one thread: the very bytes of the first training.
#
($rc, $out, $err) = $node->psql('postgres', "SELECT rl_mlops.retrain('a', async => false, full => true)");
my $run4 = $out;
like($err, qr/NOTICE:  run $run4 succeeded/, 'a full retrain succeeds');
my $v4 = sql("SELECT produced_version FROM rl_mlops.runs WHERE id = $run4");
is( sql(qq{SELECT concat_ws('|', r.epochs, r.parent_version IS NULL, r.full_training,
	                        m.parent_version IS NULL, m.metrics ->> 'warm_start')
	  FROM rl_mlops.runs r JOIN rl_mlops.models m ON m.version = r.produced_version AND m.agent = r.agent
	 WHERE r.id = $run4}),
	'10|t|t|t|false', 'full retrain: initial_epochs, no parent, no warm start');
my $ck4 = checkpoint('a', $v4);
is((tensor($ck4, 'optim.step'))[0], 10 * $updates_per_epoch, 'the optimizer started from zero');
ok($ck4->{payload} eq $ck1->{payload},
	'full retrain on the same data and seed gives the same tensor bytes as the first training');
is(metrics('a', $v4)->{champion_version}, $v3, 'the full run was still compared with the champion');

#
# 5. Determinism across agents: same table, same seed, one thread, full
#    training: identical tensor payloads.  The headers differ, because
#    __metadata__ holds each checkpoint's version (nothing else differs).
#
small_agent($node, 'b', 'bars', initial_epochs => 10, seed => 42, threads => 1, data_window => undef);
($rc, $out, $err) = $node->psql('postgres', "SELECT rl_mlops.retrain('b', async => false)");
like($err, qr/NOTICE:  run $out succeeded/, 'agent b trains');
my $vb = sql("SELECT produced_version FROM rl_mlops.runs WHERE id = $out");
my $ckb = checkpoint('b', $vb);
is(length($ckb->{payload}), length($ck1->{payload}), 'same payload length');
ok($ckb->{payload} eq $ck1->{payload}, 'same seed, same data, one thread: the same tensor bytes');
isnt($vb, $v1, 'the two checkpoints have different versions');
isnt($ckb->{header_raw}, $ck1->{header_raw}, 'so their headers differ');
my %hb = %{ $ckb->{header} };
my %h1 = %{ $ck1->{header} };
delete $hb{__metadata__}{version};
delete $h1{__metadata__}{version};
is_deeply(\%hb, \%h1, 'and only by the version in __metadata__');

#
# 6. Deployment gate "better" with a minimum change no candidate can make:
#    the run ends rejected and the active model stays.
#
sql(q{SELECT rl_mlops.configure('a', deploy_gate => 'better', gate_min_delta => 100) IS NULL});
my $last_before = sql(q{SELECT last_retrain_time FROM rl_mlops.agents WHERE name = 'a'});
($rc, $out, $err) = $node->psql('postgres', "SELECT rl_mlops.retrain('a', async => false, epochs => 1)");
my $run6 = $out;
like($err, qr/WARNING:  run $run6 ended rejected/, 'a gate rejection is a WARNING to the caller');
like($err, qr/DETAIL:  gate better: holdout Sharpe \S+ does not beat \S+ \(min change 100\)/,
	'with the gate decision as detail');
my $v6 = sql("SELECT produced_version FROM rl_mlops.runs WHERE id = $run6");
is( sql(qq{SELECT concat_ws('|', state, error ~ '^gate better', finished_at IS NOT NULL)
	  FROM rl_mlops.runs WHERE id = $run6}),
	'rejected|t|t', 'run rejected, with the reason');
is(sql(q{SELECT version FROM rl_mlops.models WHERE agent = 'a' AND state = 'active'}), $v4,
	'the active model did not change');
is(sql(qq{SELECT concat_ws('|', state, validation ->> 'ok', validation #>> '{checks,deploy_gate,ok}',
	                           validation #>> '{checks,deploy_gate,message}' ~ '^gate better', deployed_at IS NULL)
	        FROM rl_mlops.models WHERE agent = 'a' AND version = '$v6'}),
	'rejected|false|false|t|t', 'the candidate is rejected by its deploy_gate check, never deployed (retention removes it in time)');
isnt(sql(q{SELECT last_retrain_time FROM rl_mlops.agents WHERE name = 'a'}), $last_before,
	'a rejected attempt still counts as a retrain for the schedule');
like(slurp_file($node->logfile), qr/rl_mlops: Model $v6 not deployed: gate better.*\n.*rl_mlops: Keeping current model active/,
	'the log says the current model stays');

$node->stop;
done_testing();
