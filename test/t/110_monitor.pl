# Live monitoring (issue 12): monitor() paper-trades the champion and the
# replaced version on bars that arrive after them.
#   1. The ledger equals backtest_summary() on the same bars (positions
#      carried over between calls), no row before the next bar exists, a
#      call with no new bar changes nothing.
#   2. A trained model replaced by a bad one (its short and long actor rows
#      swapped) is rolled back automatically on evidence, a deployment
#      'auto_rollback' with the statistic in details; with auto_rollback
#      off it is only an alert.
#   3. Two zero-edge models on a random walk, looked at after every bar
#      for 3,000 bars: no rollback.
#   4. Stale data and bad data: alerts and errors, never an action; the
#      version in shadow is kept by retention during probation; monitor()
#      is not for PUBLIC.
#   5. Two calls at once never write a bar twice; a crash before commit
#      leaves everything as it was.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use RlMlops;
use RlMlopsLive;

my $node = new_cluster('monitor', conf => 'restart_after_crash = on');
sql(q{CREATE EXTENSION rl_mlops});

sub active { return sql(qq{SELECT version FROM rl_mlops.models WHERE agent = '$_[0]' AND state = 'active'}); }

#
# 1. Ledger, no look-ahead, idempotence.
#
market('ar', 0.25, 0.3, 4200);
small_agent($node, 'ar', 'ar', initial_epochs => 30, data_window => '2 days');
my ($rc, $run, $err) = $node->psql('postgres', q{SELECT rl_mlops.retrain('ar', async => false)});
like($err, qr/NOTICE:  run $run succeeded/, '1. a trained champion');
my $good = active('ar');
like(sql(q{SELECT rl_mlops.monitor('ar')}), qr/"decisions": 0/, '1. no bar after its data: nothing to evaluate');
arrive('ar', 1);
like(sql(q{SELECT rl_mlops.monitor('ar')}), qr/"decisions": 0/,
	'1. one new bar: no decision yet (its return needs the next bar)');
arrive('ar', 50);
like(sql(q{SELECT rl_mlops.monitor('ar')}), qr/"decisions": 50/, '1. 51 new bars: 50 decisions');
arrive('ar', 30);
like(sql(q{SELECT rl_mlops.monitor('ar')}), qr/"decisions": 30/, '1. 30 more: 30 decisions, positions carried over');
my $ledger = sql(q{SELECT count(*) || ' ' || sum(net_return) FROM rl_mlops.live_ledger WHERE agent = 'ar'});
like(sql(q{SELECT rl_mlops.monitor('ar')}), qr/"decisions": 0/, '1. a call with no new bar decides nothing');
is(sql(q{SELECT count(*) || ' ' || sum(net_return) FROM rl_mlops.live_ledger WHERE agent = 'ar'}), $ledger,
	'1. ... and changes no ledger row');
is(sql(q{SELECT max(l.ts) < (SELECT max(ts) FROM ar) FROM rl_mlops.live_ledger l WHERE agent = 'ar'}), 't',
	'1. the newest bar has no row: no look-ahead');
my ($from, $to, $sum, $n) = split /\|/, sql(qq{
	SELECT min(l.ts) || '|' || (SELECT min(ts) FROM ar WHERE ts > max(l.ts)) || '|' || sum(net_return) || '|' || count(*)
	  FROM rl_mlops.live_ledger l WHERE agent = 'ar' AND version = '$good'});
my ($bt_sum, $bt_n) = split /\|/, sql(qq{
	SELECT total_log_return || '|' || steps FROM rl_mlops.backtest_summary('ar', 'SYM001', '$from', '$to', '$good')});
is($bt_n, $n, '1. backtest_summary() over the same bars makes as many decisions');
is(sql(qq{SELECT low_sample || ' ' || in_sample || ' ' || (abs(sharpe_stderr - sqrt(periods_per_year / steps * (1 + sharpe ^ 2 / (2 * periods_per_year)))) < 1e-9)
           FROM rl_mlops.backtest_summary('ar', 'SYM001', '$from', '$to', '$good')}), 'true false true',
	'1. ... flagged low_sample (80 decisions), not in_sample (after its data), with the Sharpe ratio\'s standard error');
is(sql(qq{SELECT in_sample FROM rl_mlops.backtest_summary('ar', 'SYM001', now() - interval '1 day', now(), '$good')}), 't',
	'1. a backtest over its training bars is flagged in_sample');
ok(abs($bt_sum - $sum) < 1e-9, "1. the ledger's total equals backtest_summary()'s ($sum vs $bt_sum)");
is(sql(qq{SELECT decisions || ' ' || round(total_return::numeric, 9) FROM rl_mlops.live_performance
           WHERE agent = 'ar' AND version = '$good'}),
	"$n " . sprintf('%.9f', $sum), '1. live_performance keeps the same totals');
# a bar that arrives late, between two bars already evaluated
sql(q{INSERT INTO ar SELECT 'SYM001', t - interval '150 seconds', (SELECT price FROM ar WHERE ts = t - interval '3 minutes')
        FROM (SELECT max(ts) AS t FROM rl_mlops.live_ledger WHERE agent = 'ar') l});
arrive('ar', 1);
my $late = sql(q{SELECT rl_mlops.monitor('ar')});
like($late, qr/"decisions": 1, "late_bars": 1/, '1. a late bar is counted (and the new one evaluated)');
like($late, qr/1 bar\(s\) arrived at or before the last evaluated bar/, '1. ... and reported');
is(sql(qq{SELECT late_bars FROM rl_mlops.live_positions WHERE agent = 'ar' AND version = '$good'}), '1',
	'1. live_positions keeps the count');
arrive('ar', 1);
like(sql(q{SELECT rl_mlops.monitor('ar')}), qr/"decisions": 1, "late_bars": 0/, '1. a late bar is counted once');
is(sql(q{SELECT count(*) FROM rl_mlops.live_ledger l JOIN rl_mlops.live_late_bars b USING (agent, version, symbol, ts)
          WHERE l.agent = 'ar'}), '0', '1. the late bar is not mixed into the ledger');

#
# 2. A bad model replaces the good one: rolled back on evidence.
#
my $r;
my $bad_hex = swapped_checkpoint('ar');
my $bad = sql(qq{SELECT rl_mlops.import_model('ar', decode('$bad_hex', 'hex'))});
sql(qq{SELECT rl_mlops.validate_model('ar', '$bad') IS NULL;
       SELECT rl_mlops.deploy_model('ar', '$bad', 'a bad model') IS NULL});
is(active('ar'), $bad, '2. the bad model is deployed');
like(sql(q{SELECT string_agg(version || ':' || role, ',' ORDER BY role) FROM rl_mlops._live_versions('ar')}),
	qr/^\Q$bad\E:champion,\Q$good\E:shadow$/, '2. the replaced model is in shadow');
my $bars = bars_until('ar', 'ar', 2000, q{jsonb_array_length(r -> 'actions') > 0});
is(active('ar'), $good, "2. monitor() rolled back to the good model (after $bars bars of the bad one)");
ok($bars >= 100 && $bars < 2000, "2. not before min_live_decisions (100) and within 2000 bars ($bars)");
my ($action, $details) = split /\|/, sql(q{SELECT action || '|' || details FROM rl_mlops.deployments
                                            WHERE agent = 'ar' ORDER BY id DESC LIMIT 1});
is($action, 'auto_rollback', '2. the rollback is a deployment with action auto_rollback');
like($details, qr/"statistic": [\d.]+.*"threshold": 4\.60517/, '2. its details hold the statistic and the threshold log(1/0.01)');
like($details, qr/"predecessor": \{.*"live_return"/, '2. ... and both versions\' live returns');
like(slurp_file($node->logfile), qr/rl_mlops: monitor\(\): version \Q$bad\E earns less than \Q$good\E/,
	'2. the log says so');
# the bad model is now in shadow; deployed by hand again within the
# rollback_cooldown (1 day) of the automatic rollback: an alert only
sql(qq{SELECT rl_mlops.deploy_model('ar', '$bad', 'again') IS NULL});
my $cooled = bars_until('ar', 'ar', 2000, q{r::text LIKE '%in rollback_cooldown%'});
ok($cooled < 2000, "2. within rollback_cooldown the evidence is an alert (after $cooled bars)");
is(active('ar'), $bad, '2. ... and nothing was rolled back');
# deployed again, auto_rollback off: an alert only
sql(qq{SELECT rl_mlops.deploy_model('ar', '$good', 'back') IS NULL;
       SELECT rl_mlops.deploy_model('ar', '$bad', 'and again') IS NULL;
       SELECT rl_mlops.configure('ar', auto_rollback => false, rollback_cooldown => '0') IS NULL});
my $alerted = bars_until('ar', 'ar', 2000, q{r::text LIKE '%auto_rollback is off%'});
ok($alerted < 2000, "2. with auto_rollback off the evidence is an alert (after $alerted bars)");
is(active('ar'), $bad, '2. ... and nothing was rolled back');
is(sql(q{SELECT count(*) FROM rl_mlops.deployments WHERE agent = 'ar' AND action = 'auto_rollback'}), '1',
	'2. one automatic rollback in all');
integrity_ok($node, '2. after the rollback');

is(sql(q{SELECT count(*) FROM (SELECT 1 FROM rl_mlops.live_ledger WHERE agent = 'ar'
                                 GROUP BY version, symbol, ts HAVING count(*) > 1) d}), '0',
	'2. no ledger row twice');

#
# 3. Two zero-edge models on a random walk, 3,000 looks: no rollback.
#
market('rw', 0.0, 0.7, 3100);
small_agent($node, 'rw', 'rw', initial_epochs => 2, data_window => '2 days');
($rc, $run, $err) = $node->psql('postgres', q{SELECT rl_mlops.retrain('rw', async => false)});
like($err, qr/NOTICE:  run $run succeeded/, '3. a model of a random walk');
my $first = active('rw');
sql(q{SELECT rl_mlops.configure('rw', seed => 7) IS NULL});
($rc, $run, $err) = $node->psql('postgres', q{SELECT rl_mlops.retrain('rw', async => false, full => true)});
like($err, qr/NOTICE:  run $run succeeded/, '3. a second one, another seed, deployed over it');
my $second = active('rw');
isnt($second, $first, '3. two versions');
bars_until('rw', 'rw', 3000, 'false');
my $looks = sql(q{SELECT decisions FROM rl_mlops.live_comparisons WHERE agent = 'rw'});
ok($looks >= 2900, "3. the two were compared on $looks paired bars, a look after each");
is(active('rw'), $second, '3. no rollback between two zero-edge models');
is(sql(q{SELECT count(*) FROM rl_mlops.deployments WHERE agent = 'rw' AND action = 'auto_rollback'}), '0',
	'3. no auto_rollback deployment');
# ledger retention, in bar time: the aggregates keep their totals
my $totals = sql(q{SELECT string_agg(version || ':' || decisions, ',' ORDER BY version) FROM rl_mlops.live_metrics WHERE agent = 'rw'});
sql(q{SELECT rl_mlops.configure('rw', ledger_retention_days => 1) IS NULL});
arrive('rw', 1);
sql(q{SELECT rl_mlops.monitor('rw')});
is(sql(q{SELECT min(ts) >= max(ts) - interval '1 day' FROM rl_mlops.live_ledger WHERE agent = 'rw'}), 't',
	'3. ledger_retention_days 1: rows older than a day of bars are removed');
is(sql(q{SELECT string_agg(version || ':' || (decisions - 1), ',' ORDER BY version) FROM rl_mlops.live_metrics WHERE agent = 'rw'}),
	$totals, '3. ... and live_metrics still counts every decision');

#
# 3b. Drift: the market's volatility triples after training.
#
sql(q{
	CREATE TABLE dr_all AS
	SELECT * FROM rl_mlops.synthetic_bars(1, 1500, 0.0, 0.01,
	    date_trunc('minute', now()) - interval '1500 minutes', '1 minute', 0.4)
	UNION ALL
	SELECT symbol, ts, price FROM rl_mlops.synthetic_bars(1, 400, 0.0, 0.03,
	    date_trunc('minute', now()), '1 minute', 0.5);
	CREATE TABLE dr AS SELECT * FROM dr_all WHERE ts < date_trunc('minute', now());
});
small_agent($node, 'dr', 'dr', initial_epochs => 1, data_window => '2 days');
($rc, $run, $err) = $node->psql('postgres', q{SELECT rl_mlops.retrain('dr', async => false)});
like($err, qr/NOTICE:  run $run succeeded/, '3b. a model of a calm market');
sql(q{SELECT rl_mlops.configure('dr', retrain_on_drift => true) IS NULL});
like(sql(q{SELECT rl_mlops.retrain_if_due('dr')}), qr/"started": false/, '3b. no drift yet: not due');
arrive('dr', 60);
like(sql(q{SELECT rl_mlops.monitor('dr')}), qr/"alerts": \[\]/, '3b. 59 bars: too few to call it drift');
arrive('dr', 150);
$r = sql(q{SELECT rl_mlops.monitor('dr')});
like($r, qr/drift: the live volatility of the market is [\d.]+ times the training sigma/, '3b. 209 bars of a market three times as volatile: drift');
like($r, qr/"actions": \[\]/, '3b. ... an alert, not an action');
is(sql(q{SELECT drift_p_value < 0.01 AND live_volatility > 2 * training_sigma FROM rl_mlops.live_performance WHERE agent = 'dr'}),
	't', '3b. live_performance shows the drift test and both volatilities');
# the running moments the test's kurtosis comes from, against the ledger's
# market returns (one symbol: the rows of a version are its bars)
is(sql(q{SELECT abs(m.market_decisions * m.market_m4 / (m.market_m2 * m.market_m2)
                    - (SELECT avg((x - mu) ^ 4) / avg((x - mu) ^ 2) ^ 2
                         FROM (SELECT buy_hold_return AS x, avg(buy_hold_return) OVER () AS mu
                                 FROM rl_mlops.live_ledger l WHERE l.agent = m.agent AND l.version = m.version) y)) < 1e-6
           FROM rl_mlops.live_metrics m WHERE m.agent = 'dr'}),
	't', '3b. the running kurtosis of the market returns equals the ledger\'s');
my $decision = sql(q{SELECT rl_mlops.retrain_if_due('dr')});
like($decision, qr/"started": true/, '3b. with retrain_on_drift, retrain_if_due() retrains early');
like($decision, qr/"reason": "drift since the last retrain"/, '3b. ... and says why');
my ($drift_run) = $decision =~ /"run_id": (\d+)/;
my ($state) = wait_run($node, $drift_run);
is(sql(qq{SELECT trigger FROM rl_mlops.runs WHERE id = $drift_run}), 'drift', '3b. the run is recorded with trigger drift');
like(sql(q{SELECT rl_mlops.retrain_if_due('dr')}), qr/"started": false/, '3b. once retrained, no second early run');

#
# 4. Alerts are not actions; probation; privileges.
#
# an agent whose bars stopped in January
create_bars($node, 'old', symbols => 1, seed => 0.8);
sql(q{CREATE TABLE old_tail AS SELECT * FROM old WHERE ts > (SELECT max(ts) - interval '100 minutes' FROM old);
      DELETE FROM old WHERE ts > (SELECT max(ts) - interval '100 minutes' FROM old)});
small_agent($node, 'old', 'old');
($rc, $run, $err) = $node->psql('postgres', q{SELECT rl_mlops.retrain('old', async => false)});
like($err, qr/NOTICE:  run $run succeeded/, '4. a model of January bars');
sql(q{INSERT INTO old SELECT * FROM old_tail});
$r = sql(q{SELECT rl_mlops.monitor('old')});
like($r, qr/"decisions": 99/, '4. 100 bars after its data: 99 decisions (the newest waits for the next bar)');
like($r, qr/"alerts": \["no new bar since [^"]+ \(stale_after 1 day\)"\]/,
	'4. stale data (no bar for stale_after): an alert');
like($r, qr/"actions": \[\]/, '4. ... never an action');
sql(q{SELECT rl_mlops.configure('old', stale_after => '1 year') IS NULL});
like(sql(q{SELECT rl_mlops.monitor('old')}), qr/"alerts": \[\]/, '4. not stale within stale_after');
sql(q{INSERT INTO rw SELECT 'SYM001', max(ts) + interval '1 minute', 0 FROM rw;
      INSERT INTO rw SELECT 'SYM001', max(ts) + interval '1 minute', 100 FROM rw});
$r = sql(q{SELECT rl_mlops.monitor('rw')});
like($r, qr/"errors": \["symbol SYM001: price of symbol \\"SYM001\\" at [^"]+ is not positive"\]/,
	'4. a bar with a bad price: the symbol stops there, with the error');
like($r, qr/"actions": \[\]/, '4. ... and no action');
is(active('rw'), $second, '4. the champion stays');
sql(q{SELECT rl_mlops.configure('rw', retention_days => 0, keep_min => 1) IS NULL;
      SELECT rl_mlops.cleanup_old_models('rw') IS NULL});
is(sql(qq{SELECT state FROM rl_mlops.models WHERE agent = 'rw' AND version = '$first'}), 'archived',
	'4. retention keeps the version in shadow during probation');
sql(q{SELECT rl_mlops.configure('rw', probation_days => 0) IS NULL;
      SELECT rl_mlops.cleanup_old_models('rw') IS NULL});
is(sql(qq{SELECT count(*) FROM rl_mlops.models WHERE agent = 'rw' AND version = '$first'}), '0',
	'4. ... and removes it once probation is over');
sql(q{CREATE ROLE stranger LOGIN; GRANT USAGE ON SCHEMA rl_mlops TO stranger});
like(error_of(q{SELECT rl_mlops.monitor('rw')}, extra_params => [ '-U', 'stranger' ]),
	qr/permission denied for function monitor/, '4. monitor() is not for PUBLIC');
like(error_of(q{SELECT rl_mlops.configure('rw', monitor_alpha => 0.5)}),
	qr/monitor_alpha_between_0_and_0_2/, '4. an absurd alpha is refused by its CHECK constraint');
integrity_ok($node, '4. monitoring');
like(sql(q{SET TimeZone = 'Asia/Tokyo'; SELECT rl_mlops.status('rw') -> 'status' -> 'model_info' ->> 'deployed_at'}),
	qr/\+00:00$/, "4. status() shows UTC whatever the session's TimeZone");
is(sql(q{SELECT (SELECT array_agg(id) FROM rl_mlops.deployment_history)
               = (SELECT array_agg(id ORDER BY id DESC) FROM rl_mlops.deployments)
           AND (SELECT count(DISTINCT agent) FROM rl_mlops.deployments) > 1}), 't',
	'4. deployment_history lists the newest first, across agents');

#
# 5. Concurrency and crashes: two calls at once (a pg_cron tick and a
# person) never write a bar twice; a crash before commit leaves the
# ledger, the positions and the aggregates as they were, and consistent.
#
# The ledger agrees with the positions and the running totals, per version.
my $consistent_q = q{
	SELECT count(*) FILTER (WHERE NOT ok) || ' of ' || count(*) FROM (
	  SELECT m.decisions = l.n AND abs(m.total_return - l.total) < 1e-9
	         AND m.last_bar = l.last AND p.last_bar = l.last AS ok
	    FROM rl_mlops.live_metrics m
	    JOIN (SELECT version, count(*) AS n, sum(net_return) AS total, max(ts) AS last
	            FROM rl_mlops.live_ledger WHERE agent = 'ar' GROUP BY version) l USING (version)
	    JOIN rl_mlops.live_positions p ON p.agent = m.agent AND p.version = m.version
	   WHERE m.agent = 'ar') x};
like(sql($consistent_q), qr/^0 of [1-9]/, '5. before: the ledger agrees with the positions and the totals');
arrive('ar', 20);
my $rows_before = sql(q{SELECT count(*) FROM rl_mlops.live_ledger WHERE agent = 'ar'});
my $decided_q = q{(SELECT sum((x ->> 'decisions')::int) FROM jsonb_array_elements(rl_mlops.monitor('ar') -> 'versions') x)};
my $s1 = $node->background_psql('postgres', on_error_stop => 0);
my $s2 = $node->background_psql('postgres', on_error_stop => 0);
my $first_call = $s1->query_safe("BEGIN; SELECT $decided_q");
ok($first_call >= 40, "5. the first call evaluates the new bars ($first_call decisions, 2 versions)");
$s2->query_until(qr/go/, "\\echo go\nSELECT 'second ' || $decided_q;\n");
ok( $node->poll_query_until('postgres', q{
	SELECT count(*) = 1 FROM pg_stat_activity
	 WHERE query LIKE 'SELECT ''second ''%' AND wait_event_type = 'Lock'}),
	'5. the second call waits for the first');
$s1->query_safe('COMMIT');
$s2->{run}->pump until $s2->{stdout} =~ /second \d+/ || $s2->{timeout}->is_expired;
like($s2->{stdout}, qr/second 0\b/, '5. then finds nothing left to evaluate');
is($s2->{stderr}, '', '5. ... without an error (no ledger row written twice)');
is(sql(q{SELECT count(*) FROM rl_mlops.live_ledger WHERE agent = 'ar'}), $rows_before + $first_call,
	'5. the ledger holds the first call\'s rows, once');
like(sql($consistent_q), qr/^0 of [1-9]/, '5. after two calls at once: consistent');
$s1->quit;
$s2->quit;

# a crash (SIGKILL of the calling backend: the cluster restarts) after
# monitor() and before its commit
my $state_q = q{
	SELECT (SELECT count(*) || '/' || sum(net_return) FROM rl_mlops.live_ledger WHERE agent = 'ar') || ' '
	    || (SELECT string_agg(version || ':' || decisions || ':' || total_return, ',' ORDER BY version)
	          FROM rl_mlops.live_metrics WHERE agent = 'ar') || ' '
	    || (SELECT string_agg(version || ':' || last_bar || ':' || position, ',' ORDER BY version)
	          FROM rl_mlops.live_positions WHERE agent = 'ar')
	    || (SELECT count(*) FROM rl_mlops.monitor_calls WHERE agent = 'ar')};
my $before_crash = sql($state_q);
arrive('ar', 10);
my $s3 = $node->background_psql('postgres', on_error_stop => 0);
my $pid = $s3->query_safe('SELECT pg_backend_pid()');
is($s3->query_safe("BEGIN; SELECT $decided_q"), 20, '5. a call evaluates 10 new bars of 2 versions, not committed yet');
my $logpos = -s $node->logfile;
kill 'KILL', $pid;
$s3->{run}->kill_kill;
wait_crash_restart($node, $logpos);
is(sql($state_q), $before_crash, '5. after a crash before commit: ledger, totals, positions and calls as they were');
like(sql($consistent_q), qr/^0 of [1-9]/, '5. ... and consistent');
is(sql("SELECT $decided_q"), 20, '5. the next call evaluates the same 10 bars');
like(sql($consistent_q), qr/^0 of [1-9]/, '5. ... consistently');
integrity_ok($node, '5. concurrency and crashes');
is(sql(q{SELECT count(*) - count(DISTINCT (agent, version)) FROM rl_mlops.live_performance}), '0',
	'live_performance has one row per version, also for a champion deployed again after a rollback');

$node->stop;
done_testing();
