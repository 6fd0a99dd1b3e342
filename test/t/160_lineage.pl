# Lineage and numbers a quant trusts (issue 15, parts): each run and the
# model it made record the exact settings used; a person tags and
# describes versions; deploying a version that lost money on its holdout
# warns, and status() says so while it is active.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use RlMlops;

my $node = new_cluster('lineage');
sql(q{CREATE EXTENSION rl_mlops});
create_bars($node, 'bars', seed => 0.3);
small_agent($node, 'l', 'bars', initial_epochs => 2, learning_rate => 0.0007, seed => 11);
my ($rc, $run, $err) = $node->psql('postgres', q{SELECT rl_mlops.retrain('l', async => false)});
like($err, qr/NOTICE:  run $run succeeded/, 'a trained model');
my $v = sql(qq{SELECT produced_version FROM rl_mlops.runs WHERE id = $run});

# the settings, on the run and its model
is(sql(qq{SELECT concat_ws(' ', settings ->> 'learning_rate', settings ->> 'seed', settings ->> 'initial_epochs',
                 settings ->> 'data_window', settings ->> 'rl_mlops', settings ? 'libtorch', settings ? 'postgresql')
            FROM rl_mlops.runs WHERE id = $run}),
	'0.0007 11 2 10 days 0.2.0 t t', 'the run records the settings it used and the library versions');
like(sql(qq{SELECT settings ->> 'libtorch' FROM rl_mlops.runs WHERE id = $run}), qr/^\d+\.\d+/, '... libtorch\'s version');
is(sql(qq{SELECT m.settings = r.settings FROM rl_mlops.models m JOIN rl_mlops.runs r ON r.id = m.run_id
           WHERE m.agent = 'l' AND m.version = '$v'}), 't', 'the model has the same record');
sql(q{SELECT rl_mlops.configure('l', learning_rate => 0.003) IS NULL});
is(sql(qq{SELECT settings ->> 'learning_rate' FROM rl_mlops.models WHERE agent = 'l' AND version = '$v'}), '0.0007',
	'a later configure() leaves the record as it was');

# tags and a description
is(sql(qq{SELECT rl_mlops.tag_model('l', '$v', '{"experiment": "lr-sweep"}', 'first try')}),
	qq({"tags": {"experiment": "lr-sweep"}, "version": "$v", "description": "first try"}), 'tag_model sets tags and a description');
is(sql(qq{SELECT rl_mlops.tag_model('l', '$v', '{"owner": "desk-3"}') ->> 'tags'}),
	'{"owner": "desk-3", "experiment": "lr-sweep"}', 'tags merge; the description stays');
is(sql(qq{SELECT tags ->> 'owner' || ' / ' || description FROM rl_mlops.models_overview WHERE agent = 'l' AND version = '$v'}),
	'desk-3 / first try', 'models_overview shows them');
like(error_of(qq{\\set VERBOSITY verbose\nSELECT rl_mlops.tag_model('l', '$v', '[1, 2]')}),
	qr/22023: tags must be a JSON object/, 'tags that are not an object: 22023');
sql(q{CREATE ROLE stranger LOGIN; GRANT USAGE ON SCHEMA rl_mlops TO stranger});
like(error_of(qq{SELECT rl_mlops.tag_model('l', '$v', '{}')}, extra_params => [ '-U', 'stranger' ]),
	qr/permission denied for function tag_model/, 'tag_model is not for PUBLIC');

# the same bytes again: a new version, never without a word
($rc, my $copy_out, my $copy_err) = $node->psql('postgres', q{SELECT rl_mlops.import_model('l', rl_mlops.export_model('l'))});
like($copy_err, qr/NOTICE:  the checkpoint of new version \Q$copy_out\E of agent l is byte for byte that of \Q$v\E \(active\)/,
	'importing the active model\'s bytes again: a NOTICE naming it');

# a version that lost money on its holdout: deployed with a WARNING, and
# status() says so while it is active
my $loser = sql(q{SELECT rl_mlops.import_model('l', rl_mlops.export_model('l'))});
sql(qq{SELECT rl_mlops.validate_model('l', '$loser') IS NULL;
       UPDATE rl_mlops.models SET metrics = '{"holdout": {"total_log_return": -0.25, "buy_hold_log_return": 0.1, "steps": 400}}'
        WHERE agent = 'l' AND version = '$loser'});
is(sql(q{SELECT jsonb_array_length(rl_mlops.status('l') -> 'status' -> 'alerts')}), '0',
	'status(): no alert while the active version earned its keep');
($rc, my $out, $err) = $node->psql('postgres', qq{SELECT rl_mlops.deploy_model('l', '$loser')});
is($rc, 0, 'the loser is deployed (the gate is the operator\'s choice)');
like($err, qr/WARNING:  deploying a version that did not earn its keep on its holdout\nDETAIL:  version \Q$loser\E lost money on its holdout: net log return -0.2500 over 400 decisions\.\nHINT:  rl_mlops.configure\('l', deploy_gate => 'not_worse'\)/,
	'... with a WARNING, the figures and the hint');
like(sql(q{SELECT rl_mlops.status('l') -> 'status' -> 'alerts' ->> 0}), qr/lost money on its holdout/,
	'status() lists it among its alerts');
sql(qq{UPDATE rl_mlops.models SET metrics = '{"holdout": {"total_log_return": 0.05, "buy_hold_log_return": 0.1, "steps": 400}}'
        WHERE agent = 'l' AND version = '$loser'});
like(sql(q{SELECT rl_mlops.status('l') -> 'status' -> 'alerts' ->> 0}), qr/earned less than buy-and-hold on its holdout: net log return 0.0500 against 0.1000/,
	'less than buy-and-hold: an alert too');
integrity_ok($node, 'lineage', 'l');

$node->stop;
done_testing();
