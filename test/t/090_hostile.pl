# Hostile input with real training runs (issue 7; the rest is in
# test/pgtap/70_hostile.sql):
#   1. 200 MB checkpoints through import_model(bytea), and a checkpoint
#      large object grown to 200 MB behind the registry's back: refused
#      cleanly, never a 1 GB error or a crash;
#   2. a source table and columns named to inject SQL, an agent named
#      likewise: trained, served, scheduled with pg_cron, nothing dropped;
#      an agent name create_agent() accepts can be trained;
#   3. a role cannot read data it may not read through a run (a view of
#      its own over another role's table);
#   4. functions and operators planted in public by a role whose
#      search_path puts public first are never called, by retrain() or by
#      its worker.
# Every part ends with check_integrity() returning nothing.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use RlMlops;

my $node = new_cluster('hostile', cron => 1);

my $registry_q = q{
	SELECT concat_ws(' / ',
	    (SELECT string_agg(agent || ':' || version || ':' || state || ':' || checkpoint, ','
	                       ORDER BY agent, version) FROM rl_mlops.models),
	    'large objects ' || (SELECT count(*) FROM pg_largeobject_metadata),
	    'deployments ' || (SELECT count(*) FROM rl_mlops.deployments))};

sql(q{
	CREATE EXTENSION pg_cron;
	CREATE EXTENSION rl_mlops;
});
create_bars($node, 'bars', seed => 0.8);
small_agent($node, 'big', 'bars');
my ($rc, $out, $err) = $node->psql('postgres', "SELECT rl_mlops.retrain('big', async => false)");
like($err, qr/NOTICE:  run $out succeeded/, 'agent big has a model');

#
# 1. 200 MB checkpoints.  201326592 zero bytes come from a large object
# extended by lo_truncate (sparse: cheap to make); it holds no checkpoint,
# so check_integrity() does not take it for an orphan.
#
my $zoid = sql(q{SELECT lo_create(0)});
sql("BEGIN; SELECT lo_truncate(lo_open($zoid, 131072), 201326592); COMMIT;");
my $zeros = "lo_get($zoid)";
my $before = sql($registry_q);
my $pos = -s $node->logfile;
$err = error_of($node, qq{SELECT rl_mlops.import_model('big', rl_mlops.export_model('big') || $zeros)});
like($err, qr/ERROR:  invalid checkpoint data layout\nDETAIL:  The last 201326592 data bytes belong to no tensor\./,
	'1. a valid checkpoint followed by 200 MB is refused: the bytes belong to no tensor');
$err = error_of($node, qq{
	WITH h AS (SELECT convert_to('{"__metadata__":{"format":"rl_mlops/1","window":"32","n_features":"0",'
	                             '"obs_dim":"33","hidden":"64","n_actions":"3","sigma":"0.01"},'
	                             '"pad":{"dtype":"F32","shape":[50331648],"data_offsets":[0,201326592]}}', 'UTF8') AS h)
	SELECT rl_mlops.import_model('big',
	           (SELECT string_agg(substr(int8send(length(h)), 9 - i, 1), ''::bytea ORDER BY i)
	              FROM generate_series(1, 8) i) || h || $zeros)
	  FROM h});
like($err, qr/ERROR:  unexpected tensor "pad" in checkpoint/,
	'1. a checkpoint whose one tensor holds 200 MB is parsed, then refused by the architecture check');
$err = error_of($node, qq{SET rl_mlops.max_checkpoint_size = '100MB';
	SELECT rl_mlops.import_model('big', rl_mlops.export_model('big') || $zeros)});
like($err, qr/ERROR:  checkpoint is too large\nDETAIL:  The checkpoint has 20\d{7} bytes; the limit is 104857600\./,
	'1. with max_checkpoint_size = 100MB it is refused before parsing');
is(sql($registry_q), $before, '1. nothing was written by the refused imports');

# The active checkpoint's large object grown by 200 MB behind our back.
my ($oid, $size, $version) = split /\|/,
  sql(q{SELECT checkpoint || '|' || size_bytes || '|' || version FROM rl_mlops.models WHERE state = 'active'});
sql("BEGIN; SELECT lo_truncate(lo_open($oid, 131072), $size + 201326592); COMMIT;");
is(sql("SELECT length(lo_get($oid))"), $size + 201326592, '1. the active checkpoint is now 200 MB larger');
like(sql("SELECT kind || ' ' || object || ': ' || detail FROM rl_mlops.check_integrity()"),
	qr/^checkpoint_corrupt $version: .*does not match its sha256/,
	'1. check_integrity() reports it (read in chunks, no 1 GB limit)');
$err = error_of($node, "SELECT length(rl_mlops.export_model('big'))");
like($err, qr/ERROR:  checkpoint large object $oid does not match its sha256/,
	'1. export_model refuses it: sha256 mismatch');
like(sql("SELECT rl_mlops.validate_model('big', '$version') #>> '{checks,readable,message}'"),
	qr/does not match its sha256/, '1. validate_model records the mismatch');
$err = error_of($node, q{SELECT rl_mlops.act(array_fill(0.1::real, ARRAY[33]), 'big')});
like($err, qr/ERROR:  .*large object $oid/, '1. serving refuses it with an error naming the large object');
unlike(slurp_file($node->logfile, $pos), qr/terminated by signal|invalid memory alloc request size/,
	'1. no crash, no 1 GB allocation error');
sql("BEGIN; SELECT lo_truncate(lo_open($oid, 131072), $size); COMMIT;");
like(sql("SELECT kind FROM rl_mlops.check_integrity()"), qr/^active_not_validated$/,
	'1. restored, the active model still carries its failed validation');
is(sql("SELECT rl_mlops.validate_model('big', '$version') ->> 'ok'"), 'true', '1. validated again');
sql("SELECT lo_unlink($zoid)");
integrity_ok($node, '1. 200 MB checkpoints');

#
# 2. Names that try to inject.
#
# SQL literals below double the single quotes of these names
my $table = q{public."we""ird; DROP TABLE victim; --"};
my $sym = q{sym''; DROP TABLE victim; --};
my $sym_value = q{''; DROP TABLE victim; --};
my $agent = q{a'); DROP TABLE victim; -- "🚀"};
my $agent_lit = $agent =~ s/'/''/gr;
sql(qq{
	CREATE TABLE victim (x int);
	CREATE TABLE $table ("sym'; DROP TABLE victim; --" text, "t""s" timestamptz,
	                     "prïce € ""); DROP TABLE victim; --" float8);
	INSERT INTO $table SELECT symbol || '$sym_value', ts, price FROM bars;
	SELECT rl_mlops.create_agent('$agent_lit', '$table'::regclass,
	    symbol_column => '$sym', time_column => 't"s',
	    price_column => 'prïce € "); DROP TABLE victim; --') IS NULL;
	SELECT rl_mlops.configure('$agent_lit', initial_epochs => 1, data_window => '10 days') IS NULL;
});
($rc, $out, $err) = $node->psql('postgres', "SELECT rl_mlops.retrain('$agent_lit', async => false)");
like($err, qr/NOTICE:  run $out succeeded/, '2. an agent with a hostile name over hostile columns trains');
is(sql(qq{SELECT metrics ->> 'symbols' FROM rl_mlops.models WHERE agent = '$agent_lit'}), '2',
	'2. on both symbols of the hostile table');
is(sql(qq{SELECT version IS NOT NULL FROM rl_mlops.decide('$agent_lit', 'SYM001$sym_value')}), 't',
	'2. decide() reads the hostile table');
my $job = sql(qq{SELECT rl_mlops.schedule_retraining('$agent_lit', interval_days => 1)});
my ($jobname, $command) = split /\|/, sql("SELECT jobname || '|' || command FROM cron.job WHERE jobid = $job");
is($command, "SELECT rl_mlops.retrain_if_due('$agent_lit')", '2. the pg_cron job quotes the agent name');
is($jobname, sql(qq{SELECT rl_mlops._cron_job_name('$agent_lit')}), '2. and is named after it');
# what pg_cron will run: not due yet, then due (trained 2 days ago)
like(sql($command), qr/"started": false/, '2. the job\'s command runs: not due yet');
sql(qq{UPDATE rl_mlops.agents SET last_retrain_time = now() - interval '2 days' WHERE name = '$agent_lit'});
my $decision = sql($command);
like($decision, qr/"started": true/, '2. the job\'s command starts a run once due');
my ($run) = $decision =~ /"run_id": (\d+)/;
wait_run($node, $run);
is(sql("SELECT trigger || ' ' || state FROM rl_mlops.runs WHERE id = $run"), 'schedule succeeded',
	'2. the scheduled run succeeds');
ok(sql(qq{SELECT rl_mlops.unschedule_retraining('$agent_lit')}), '2. unscheduled');
is(sql(q{SELECT to_regclass('public.victim') IS NOT NULL}), 't', '2. the victim table still exists');

my $long = 'ё' x 40;    # 40 characters, 80 bytes
small_agent($node, $long, 'bars');
($rc, $out, $err) = $node->psql('postgres', "SELECT rl_mlops.retrain('$long', async => false)");
like($err, qr/NOTICE:  run \d+ succeeded/,
	'2. an agent name create_agent() accepts (40 characters, 80 bytes) can be trained');
integrity_ok($node, '2. hostile names');

#
# 3. No reading another role's data through a run.
#
sql(q{
	CREATE ROLE bob;
	CREATE TABLE bob_bars AS SELECT * FROM bars;
	ALTER TABLE bob_bars OWNER TO bob;
	REVOKE ALL ON bob_bars FROM PUBLIC;
	CREATE ROLE alice LOGIN;
	GRANT USAGE ON SCHEMA rl_mlops TO alice;
	GRANT SELECT ON ALL TABLES IN SCHEMA rl_mlops TO alice;
	GRANT CREATE ON SCHEMA public TO alice;
	GRANT EXECUTE ON FUNCTION rl_mlops.retrain(text, boolean, integer, boolean),
	    rl_mlops.create_agent(text, regclass, name, name, name, name, integer, integer, integer)
	   TO alice;
	SELECT rl_mlops.create_agent('bobs', 'bob_bars') IS NULL;
});
$before = sql($registry_q);
my $runs = sql(q{SELECT count(*) FROM rl_mlops.runs});
$err = error_of($node, q{SELECT rl_mlops.retrain('bobs', async => false)}, extra_params => [ '-U', 'alice' ]);
like($err, qr/ERROR:  permission denied to train agent "bobs"/,
	'3. alice cannot train an agent over bob\'s table');
$err = error_of($node, q{
	CREATE VIEW alice_view AS SELECT * FROM bob_bars;
	SELECT rl_mlops.create_agent('spy', 'alice_view') IS NULL;
	SELECT rl_mlops.retrain('spy', async => false);}, extra_params => [ '-U', 'alice' ]);
like($err, qr/WARNING:  run \d+ ended failed\nDETAIL:  permission denied for table bob_bars/,
	'3. through a view of her own, her run reads as her and is refused bob\'s table');
is(sql(q{SELECT count(*) FROM rl_mlops.runs}), $runs + 1, '3. one (failed) run');
is(sql(q{SELECT requested_by FROM rl_mlops.runs ORDER BY id DESC LIMIT 1}), 'alice', '3. requested by alice');
is(sql($registry_q), $before, '3. no model came out of bob\'s data');
integrity_ok($node, '3. privileges');

#
# 4. Planted functions and operators.  mallory may retrain; her
# search_path puts public, where she may create, before pg_catalog.
#
sql(q{
	CREATE ROLE mallory LOGIN;
	GRANT USAGE ON SCHEMA rl_mlops TO mallory;
	GRANT CREATE ON SCHEMA public TO mallory;
	GRANT SELECT ON bars TO mallory;
	GRANT EXECUTE ON FUNCTION rl_mlops.retrain(text, boolean, integer, boolean) TO mallory;
	CREATE TABLE public.planted_calls (fn text, as_user name, backend text);
	GRANT INSERT ON public.planted_calls TO PUBLIC;
	ALTER ROLE mallory SET search_path = public, pg_catalog;
});
small_agent($node, 'm', 'bars');
my @planted = (
	[ 'texteq',               'a text, b text',         'boolean',     'pg_catalog.texteq(a, b)' ],
	[ 'int8eq',               'a bigint, b bigint',     'boolean',     'pg_catalog.int8eq(a, b)' ],
	[ 'int4eq',               'a integer, b integer',   'boolean',     'pg_catalog.int4eq(a, b)' ],
	[ 'now',                  '',                       'timestamptz', 'pg_catalog.now()' ],
	[ 'hashtext',             't text',                 'integer',     'pg_catalog.hashtext(t)' ],
	[ 'pg_try_advisory_lock', 'a integer, b integer',   'boolean',     'pg_catalog.pg_try_advisory_lock(a, b)' ],
	[ 'has_table_privilege',  'u oid, r oid, p text',   'boolean',     'pg_catalog.has_table_privilege(u, r, p)' ],
	[ 'to_timestamp',         'e double precision',     'timestamptz', 'pg_catalog.to_timestamp(e)' ],
	[ 'jsonb_set',            'j jsonb, p text[], v jsonb', 'jsonb',   'pg_catalog.jsonb_set(j, p, v)' ],
	[ 'jsonb_build_object',   'VARIADIC a text[]',      'jsonb',       'pg_catalog.jsonb_build_object(VARIADIC a)' ],
	[ 'to_jsonb',             'b boolean',              'jsonb',       'pg_catalog.to_jsonb(b)' ],
	[ 'extract',              'f text, t timestamptz',  'numeric',     'pg_catalog.extract(f, t)' ],
	[ 'lo_unlink',            'o oid',                  'integer',     'pg_catalog.lo_unlink(o)' ],
	[ 'sha256',               'b bytea',                'bytea',       'pg_catalog.sha256(b)' ]);
my $plant = '';
for my $p (@planted)
{
	my ($fn, $args, $ret, $body) = @$p;
	$plant .= qq{CREATE FUNCTION public.$fn($args) RETURNS $ret LANGUAGE plpgsql SET search_path = pg_catalog AS
	  \$f\$BEGIN
	      INSERT INTO public.planted_calls
	      SELECT '$fn', current_user, backend_type FROM pg_stat_activity WHERE pid = pg_backend_pid();
	      RETURN $body;
	  END\$f\$;\n};
}
$plant .= q{
	CREATE OPERATOR public.= (leftarg = text, rightarg = text, function = public.texteq);
	CREATE OPERATOR public.= (leftarg = bigint, rightarg = bigint, function = public.int8eq);
	CREATE OPERATOR public.= (leftarg = integer, rightarg = integer, function = public.int4eq);
};
$node->safe_psql('postgres', $plant, extra_params => [ '-U', 'mallory' ]);
is($node->safe_psql('postgres', q{SELECT count(*) FROM pg_proc WHERE pronamespace = 'public'::regnamespace},
		extra_params => [ '-U', 'mallory' ]), scalar(@planted), '4. mallory planted her functions');
$node->safe_psql('postgres', q{SELECT 'x' = 'x'}, extra_params => [ '-U', 'mallory' ]);
is(sql(q{SELECT string_agg(fn, ',') FROM public.planted_calls}), 'texteq',
	'4. her own queries call them: the plant works');
sql(q{TRUNCATE public.planted_calls});

($rc, $out, $err) = $node->psql('postgres', "SELECT rl_mlops.retrain('m', async => false)",
	extra_params => [ '-U', 'mallory' ]);
like($err, qr/NOTICE:  run $out succeeded/, '4. mallory\'s run succeeds');
is(sql(q{SELECT string_agg(DISTINCT fn || ' as ' || as_user, ', ') FROM public.planted_calls
          WHERE backend = 'rl_mlops trainer'}),
	'', '4. the training worker called none of them');
is(sql(q{SELECT string_agg(DISTINCT fn || ' as ' || as_user || ' in ' || backend, ', ') FROM public.planted_calls
          WHERE as_user <> 'mallory'}),
	'', '4. none ran with another role\'s rights');
is(sql(q{SELECT string_agg(DISTINCT fn || ' as ' || as_user || ' in ' || backend, ', ') FROM public.planted_calls}),
	'', '4. retrain() called none of them at all');
integrity_ok($node, '4. planted functions');

$node->stop;
done_testing();
