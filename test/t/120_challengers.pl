# Challengers (issue 13): validated versions beside the champion,
# paper-traded by monitor(), served to a share of the symbols by decide(),
# promoted on evidence.
#   1. Refused with clear errors: the champion, an unvalidated version, a
#      share outside [0, 1), shares summing to 1, a ninth challenger, an
#      unknown agent or version, removing a non-challenger; not for PUBLIC.
#   2. A/B routing: stable, near the share, unchanged for the others when
#      one is added or removed; a shadow challenger is never served; the
#      same in another backend; serving_cache() shows every version.
#   3. A good challenger beside a bad champion: flagged with auto_promote
#      off, promoted with it on (deployment 'promote' with the evidence);
#      the old champion stays in shadow; a second backend's cache follows.
#   4. Canary: in deploy_mode 'challenger' a retrained model becomes a
#      challenger with challenger_share; the champion stays.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use RlMlops;
use RlMlopsLive;

my $node = new_cluster('challengers');
sql(q{CREATE EXTENSION rl_mlops});

sub active { return sql(qq{SELECT version FROM rl_mlops.models WHERE agent = '$_[0]' AND state = 'active'}); }

#
# 1. Errors.
#
market('ch', 0.25, 0.3, 3000);
small_agent($node, 'ch', 'ch', initial_epochs => 30, data_window => '2 days');
my ($rc, $run, $err) = $node->psql('postgres', q{SELECT rl_mlops.retrain('ch', async => false)});
like($err, qr/NOTICE:  run $run succeeded/, '1. a trained champion');
my $good = active('ch');
my $registered = sql(q{SELECT rl_mlops.import_model('ch', rl_mlops.export_model('ch'))});
sub err { my ($q) = @_; return error_of("\\set VERBOSITY verbose\n$q"); }
like(err(qq{SELECT rl_mlops.add_challenger('ch', '$good')}),
	qr/55000: model version "\Q$good\E" of agent "ch" is the champion/, '1. the champion: 55000');
like(err(qq{SELECT rl_mlops.add_challenger('ch', '$registered')}),
	qr/55000: model version "\Q$registered\E" of agent "ch" has not been validated.*HINT:  Run rl_mlops.validate_model/s,
	'1. an unvalidated version: 55000 with a hint');
sql(qq{SELECT rl_mlops.validate_model('ch', '$registered') IS NULL});
for my $share ('1', '-0.1', "'NaN'", 'NULL')
{
	like(err(qq{SELECT rl_mlops.add_challenger('ch', '$registered', $share)}),
		qr/22023: traffic_share must be at least 0 and less than 1/, "1. traffic_share $share: 22023");
}
like(err(q{SELECT rl_mlops.add_challenger('nobody', 'x')}), qr/agent "nobody" does not exist/,
	'1. an unknown agent');
like(err(q{SELECT rl_mlops.add_challenger('ch', '19990101_000000')}),
	qr/model version "19990101_000000" of agent "ch" does not exist/, '1. an unknown version');
like(err(qq{SELECT rl_mlops.remove_challenger('ch', '$registered')}),
	qr/42704: model version "\Q$registered\E" of agent "ch" is not a challenger/,
	'1. removing a version that is not a challenger: 42704');
my @copies = ($registered, map { copy_of_champion('ch') } 1 .. 8);
sql(qq{SELECT rl_mlops.add_challenger('ch', '$copies[0]', 0.6)});
like(err(qq{SELECT rl_mlops.add_challenger('ch', '$copies[1]', 0.4)}),
	qr/22023: the traffic shares of agent "ch" would sum to 1\b.*HINT:  Give this challenger a share below 0.4/s,
	'1. shares summing to 1: 22023 with a hint');
sql(qq{SELECT rl_mlops.add_challenger('ch', '$_', 0) IS NULL}) for @copies[1 .. 7];
is(sql(q{SELECT count(*) FROM rl_mlops.challengers WHERE agent = 'ch'}), '8', '1. eight challengers');
like(err(qq{SELECT rl_mlops.add_challenger('ch', '$copies[8]')}),
	qr/54000: agent "ch" already has 8 challengers/, '1. a ninth: 54000');
is(sql(qq{SELECT rl_mlops.add_challenger('ch', '$copies[0]', 0.1)}), $copies[0],
	'1. adding a challenger again changes its share');
is(sql(qq{SELECT traffic_share FROM rl_mlops.challengers WHERE agent = 'ch' AND version = '$copies[0]'}), '0.1',
	'1. ... to the new one');
sql(qq{SELECT rl_mlops.remove_challenger('ch', '$_')}) for @copies[0 .. 7];
is(sql(q{SELECT count(*) FROM rl_mlops.challengers WHERE agent = 'ch'}), '0', '1. all removed');
sql(q{CREATE ROLE stranger LOGIN; GRANT USAGE ON SCHEMA rl_mlops TO stranger});
like(error_of(qq{SELECT rl_mlops.add_challenger('ch', '$copies[0]')}, extra_params => [ '-U', 'stranger' ]),
	qr/permission denied for function add_challenger/, '1. add_challenger is not for PUBLIC');
like(error_of(qq{SELECT rl_mlops.remove_challenger('ch', '$copies[0]')}, extra_params => [ '-U', 'stranger' ]),
	qr/permission denied for function remove_challenger/, '1. nor remove_challenger');

#
# 2. A/B routing over 400 symbols.
#
sql(q{CREATE TABLE ab AS SELECT * FROM rl_mlops.synthetic_bars(400, 40, 0.1, 0.01,
        '2026-01-01', '1 minute', 0.5);
      CREATE INDEX ON ab (symbol, ts)});
small_agent($node, 'ab', 'ab');
sql(q{SELECT rl_mlops.import_model('ab', rl_mlops.export_model('ch')) AS v \gset
      SELECT rl_mlops.validate_model('ab', :'v') IS NULL;
      SELECT rl_mlops.deploy_model('ab', :'v') IS NULL});
my $champ = active('ab');
my ($c1, $c2, $c3) = map { copy_of_champion('ab') } 1 .. 3;
my $routes_q = q{SELECT string_agg(s.symbol || '=' || d.version, ',' ORDER BY s.symbol)
                   FROM (SELECT DISTINCT symbol FROM ab) s,
                        LATERAL rl_mlops.decide('ab', s.symbol) d};
sub routes { my %r = map { split /=/ } split /,/, sql($routes_q); return \%r; }
sub count_of { my ($r, $v) = @_; return scalar grep { $_ eq $v } values %$r; }
my $none = routes();
is(count_of($none, $champ), 400, '2. no challenger: the champion decides for every symbol');
sql(qq{SELECT rl_mlops.add_challenger('ab', '$c1', 0.3) IS NULL;
       SELECT rl_mlops.add_challenger('ab', '$c3', 0) IS NULL});
my $r1 = routes();
my $n1 = count_of($r1, $c1);
ok($n1 >= 90 && $n1 <= 150, "2. share 0.3: $n1 of 400 symbols to the challenger");
is(count_of($r1, $c3), 0, '2. a shadow challenger (share 0) is never served');
is_deeply(routes(), $r1, '2. the same routing at the next call (another backend)');
sql(qq{SELECT rl_mlops.add_challenger('ab', '$c2', 0.2) IS NULL});
my $r2 = routes();
my $n2 = count_of($r2, $c2);
ok($n2 >= 50 && $n2 <= 110, "2. a second at 0.2: $n2 of 400 symbols");
is_deeply([ sort grep { $r2->{$_} eq $c1 } keys %$r2 ], [ sort grep { $r1->{$_} eq $c1 } keys %$r1 ],
	'2. adding a challenger leaves the first one\'s symbols where they were');
sql(qq{SELECT rl_mlops.remove_challenger('ab', '$c2')});
is_deeply(routes(), $r1, '2. removing the second gives its symbols back to the champion');
my $s = $node->background_psql('postgres');
$s->query_safe(q{SELECT count(*) FROM (SELECT DISTINCT symbol FROM ab) s, LATERAL rl_mlops.decide('ab', s.symbol) d});
is($s->query_safe(q{SELECT string_agg(version, ',' ORDER BY version) FROM rl_mlops.serving_cache() WHERE agent = 'ab'}),
	join(',', sort($champ, $c1)), '2. serving_cache() shows the champion and the A/B challenger');
sql(qq{SELECT rl_mlops.remove_challenger('ab', '$c1')});
is($s->query_safe(q{SELECT bool_or(up_to_date) FROM rl_mlops.serving_cache() WHERE agent = 'ab'}), 'f',
	'2. removing it invalidates the cache of another backend at commit');
$s->query_safe(q{SELECT rl_mlops.decide('ab', 'SYM001')});
is($s->query_safe(q{SELECT string_agg(version, ',' ORDER BY version) FROM rl_mlops.serving_cache() WHERE agent = 'ab'}),
	$champ, '2. ... whose next decide() serves and caches the champion only');
$s->quit;

#
# 3. A good challenger beside a bad champion.
#
my $bad_hex = swapped_checkpoint('ch');
my $bad = sql(qq{SELECT rl_mlops.import_model('ch', decode('$bad_hex', 'hex'))});
sql(qq{SELECT rl_mlops.validate_model('ch', '$bad') IS NULL;
       SELECT rl_mlops.configure('ch', auto_rollback => false, probation_days => 0) IS NULL;
       SELECT rl_mlops.deploy_model('ch', '$bad', 'a bad champion') IS NULL;
       SELECT rl_mlops.add_challenger('ch', '$good', 0) IS NULL});
# a second challenger with no edge: a copy of the champion
my $twin = copy_of_champion('ch');
sql(qq{SELECT rl_mlops.add_challenger('ch', '$twin', 0) IS NULL});
is(sql(q{SELECT string_agg(version || ':' || role, ',' ORDER BY role, version) FROM rl_mlops._live_versions('ch')}),
	join(',', map { "$_:challenger" } sort($good, $twin)) . ",$bad:champion",
	'3. the bad champion and two challengers are live');
my $bars = bars_until('ch', 'ch', 1500, q{r::text LIKE '%beats the champion%'});
my $flag = sql(q{SELECT result FROM rl_mlops.monitor_calls WHERE agent = 'ch' ORDER BY id DESC LIMIT 1});
like($flag, qr/challenger \Q$good\E beats the champion \Q$bad\E \(Holm-adjusted p [^)]*\): auto_promote is off/,
	"3. with auto_promote off, after $bars bars: an alert that the challenger beats the champion");
like($flag, qr/"actions": \[\]/, '3. ... and no action');
is(active('ch'), $bad, '3. ... the champion stays');
ok($bars >= 100 && $bars < 1500, "3. not before min_live_decisions (100) ($bars)");
is(sql(qq{SELECT beats_champion || ' ' || family_size || ' ' || (abs(p_value_holm - least(1, 2 * p_value)) < 1e-12)
            FROM rl_mlops.challengers WHERE agent = 'ch' AND version = '$good'}), 'true 2 true',
	'3. the view says so, with the family size (2) and the Holm-adjusted p-value (2 p, the smaller of two)');
is(sql(qq{SELECT beats_champion || ' ' || p_value FROM rl_mlops.challengers WHERE agent = 'ch' AND version = '$twin'}),
	'false 1', '3. the copy of the champion does not beat it (p 1)');
like(sql(q{SELECT rl_mlops.status('ch') -> 'status' -> 'monitoring' -> 'challengers'}), qr/"beats_champion": true/,
	'3. status() lists the challenger');
# a damaged test state is an error, never a guess
sql(qq{UPDATE rl_mlops.agent_challengers SET state = '{1,2}' WHERE agent = 'ch' AND version = '$twin'});
like(error_of(q{SELECT rl_mlops.monitor('ch')}),
	qr/the comparison of challenger "\Q$twin\E" with "\Q$bad\E" is corrupt/, '3. a corrupt test state: an error');
sql(qq{UPDATE rl_mlops.agent_challengers SET state = NULL, champion = NULL WHERE agent = 'ch' AND version = '$twin'});
my $s2 = $node->background_psql('postgres');
$s2->query_safe(q{SELECT rl_mlops.decide('ch', 'SYM001')});
sql(q{SELECT rl_mlops.configure('ch', auto_promote => true) IS NULL});
my $r = sql(q{SELECT rl_mlops.monitor('ch')});
like($r, qr/"actions": \["promote \Q$good\E over \Q$bad\E"\]/, '3. with auto_promote on: promoted');
is(active('ch'), $good, '3. the good version is the champion');
my ($action, $details) = split /\|/, sql(q{SELECT action || '|' || details FROM rl_mlops.deployments
                                            WHERE agent = 'ch' ORDER BY id DESC LIMIT 1});
is($action, 'promote', '3. a deployment with action promote');
like($details, qr/"challenger": \{"version": "\Q$good\E", "decisions": \d+, "live_return": [\d.e-]+\}/,
	'3. ... with the evidence in details: both versions\' live returns');
like($details, qr/"threshold": 4\.60517.*"p_value_holm": [\d.e-]+/, '3. ... the threshold and the Holm-adjusted p-value');
is(sql(q{SELECT string_agg(version, ',') FROM rl_mlops.challengers WHERE agent = 'ch'}), $twin,
	'3. the promoted version is no longer a challenger; the other one stays');
sql(qq{SELECT rl_mlops.remove_challenger('ch', '$twin')});
like($s2->query_safe(q{SELECT (rl_mlops.decide('ch', 'SYM001')).version}), qr/^\Q$good\E$/,
	'3. another backend decides with the promoted version');
$s2->quit;
like(slurp_file($node->logfile), qr/rl_mlops: monitor\(\): challenger \Q$good\E earns more than \Q$bad\E/,
	'3. the log says so');
# retention keeps a challenger; once removed, its ledger rows outlive it
sql(qq{SELECT rl_mlops.add_challenger('ch', '$bad') IS NULL;
       SELECT rl_mlops.configure('ch', retention_days => 0, keep_min => 1) IS NULL;
       SELECT rl_mlops.cleanup_old_models('ch') IS NULL});
is(sql(qq{SELECT state FROM rl_mlops.models WHERE agent = 'ch' AND version = '$bad'}), 'archived',
	'3. retention keeps an archived version while it is a challenger');
my $ledger_rows = sql(qq{SELECT count(*) FROM rl_mlops.live_ledger WHERE agent = 'ch' AND version = '$bad'});
ok($ledger_rows > 100, "3. it has ledger rows ($ledger_rows)");
sql(qq{SELECT rl_mlops.remove_challenger('ch', '$bad');
       SELECT rl_mlops.cleanup_old_models('ch') IS NULL});
is(sql(qq{SELECT count(*) FROM rl_mlops.models WHERE agent = 'ch' AND version = '$bad'}), '0',
	'3. removed, it goes at the next cleanup');
is(sql(qq{SELECT count(*) FROM rl_mlops.live_ledger WHERE agent = 'ch' AND version = '$bad'}), $ledger_rows,
	'3. ... its ledger rows stay until the ledger\'s own retention');
sql(q{SELECT rl_mlops.configure('ch', retention_days => 30, keep_min => 3) IS NULL});
integrity_ok($node, '3. promotion', 'ch');

#
# 4. Canary deployment of a retrained model.
#
sql(q{SELECT rl_mlops.configure('ch', deploy_mode => 'challenger', challenger_share => 0.25,
                                incremental_epochs => 1) IS NULL});
($rc, $run, $err) = $node->psql('postgres', q{SELECT rl_mlops.retrain('ch', async => false)});
like($err, qr/NOTICE:  run $run succeeded/, '4. a retrain in deploy_mode challenger succeeds');
is(active('ch'), $good, '4. ... the champion stays');
my $canary = sql("SELECT produced_version FROM rl_mlops.runs WHERE id = $run");
is(sql(qq{SELECT traffic_share FROM rl_mlops.challengers WHERE agent = 'ch' AND version = '$canary'}), '0.25',
	'4. the new model is a challenger with challenger_share');
like(slurp_file($node->logfile), qr/Retraining complete! New model \Q$canary\E is a challenger/, '4. the log says so');
like(error_of(q{SELECT rl_mlops.configure('ch', deploy_mode => 'canary')}), qr/deploy_mode_is_direct_or_challenger/,
	'4. an unknown deploy_mode is refused');
integrity_ok($node, '4. canary', 'ch');

$node->stop;
done_testing();
