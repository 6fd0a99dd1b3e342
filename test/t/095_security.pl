# Security and crash fixes (issue 10), each attack run as an attacker
# would, with the README's roles and GRANTs:
#   1. a search_path trojan planted through row level security on a source:
#      no planted function or operator runs as the extension owner;
#   2. the same through a function in a view;
#   3. create_agent() reads the source as the caller (a view calling the
#      caller's function, a security_invoker view over a table the caller
#      cannot read);
#   4. the source dropped, swapped, a column dropped or retyped around a
#      run: clear errors, never a crash;
#   5. no lock a role without any grant can take blocks a run, and two
#      agents whose names hash alike both train;
#   6. no SECURITY DEFINER function of the extension is executable by PUBLIC;
#   7. retrain() cannot record a manual run as scheduled;
#   8. cancel_retrain(agent, NULL) cancels;
#   9. a denormal price never yields infinite returns in training or serving;
#  10. a row at ts = 'infinity' does not stop training on the finite rows.
# Every part ends with check_integrity() returning nothing, and the
# postmaster never restarts.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);
use RlMlops;

# A crash (the bug this test catches) restarts the cluster, so that the
# rest of the test still runs and reports.
my $node = new_cluster('security', cron => 1, conf => 'restart_after_crash = on');

# (rc, stdout, stderr) of a script run by a role; errors with their SQLSTATE.
sub as_role
{
	my ($role, $q) = @_;
	return $node->psql('postgres', "\\set VERBOSITY verbose\n$q", extra_params => [ '-U', $role ]);
}

# No process of the cluster died of a signal since log position $pos.
sub no_crash_ok
{
	my ($name, $pos) = @_;
	unlike(slurp_file($node->logfile, $pos), qr/terminated by signal|all server processes terminated/,
		"$name: no process died of a signal, no crash restart");
}

my $super = sql(q{SELECT current_user});
my $started = sql(q{SELECT pg_postmaster_start_time()});
my ($rc, $out, $err, $pos, $run, $state, $error, $run1, $run2);

#
# The README's roles, an attacker and a stranger.
#
sql(q{
	CREATE EXTENSION pg_cron;
	CREATE EXTENSION rl_mlops;
});
create_bars($node, 'public.bars', seed => 0.8);
sql(q{
	CREATE TABLE public.trojan_log (fn text, who name, backend text);
	GRANT INSERT ON public.trojan_log TO PUBLIC;

	CREATE ROLE quant_reader NOLOGIN;
	GRANT USAGE ON SCHEMA rl_mlops TO quant_reader;
	GRANT SELECT ON ALL TABLES IN SCHEMA rl_mlops TO quant_reader;
	CREATE ROLE quant_ops NOLOGIN;
	GRANT quant_reader TO quant_ops;
	GRANT SELECT ON public.bars TO quant_ops;
	GRANT EXECUTE ON FUNCTION rl_mlops.deploy_model(text, text, text),
	                          rl_mlops.rollback(text, text, text),
	                          rl_mlops.validate_model(text, text),
	                          rl_mlops.cancel_retrain(text, integer),
	                          rl_mlops.create_agent(text, regclass, name, name, name, name, integer, integer, integer)
	   TO quant_ops;
	CREATE ROLE ops LOGIN IN ROLE quant_ops;

	CREATE ROLE mallory LOGIN;
	CREATE SCHEMA mallory AUTHORIZATION mallory;
	CREATE TABLE mallory.bars AS TABLE public.bars;
	CREATE TABLE mallory.bars2 AS TABLE public.bars;
	ALTER TABLE mallory.bars OWNER TO mallory;
	ALTER TABLE mallory.bars2 OWNER TO mallory;

	CREATE ROLE stranger LOGIN;
	-- may use the schema, has no other grant
	CREATE ROLE peeker LOGIN;
	GRANT USAGE ON SCHEMA rl_mlops TO peeker;
});
is(sql(q{SELECT to_regprocedure('rl_mlops.retrain(text, boolean, integer, boolean)') IS NOT NULL}), 't',
	'0. retrain() takes four arguments: agent, async, epochs, full (no trigger)');
if (sql(q{SELECT to_regprocedure('rl_mlops.retrain(text, boolean, integer, boolean)') IS NOT NULL}) eq 't')
{
	sql(q{GRANT EXECUTE ON FUNCTION rl_mlops.retrain(text, boolean, integer, boolean) TO quant_ops});
}
else
{
	# a build without the fix: grant what exists so that the rest can run
	sql(q{GRANT EXECUTE ON FUNCTION rl_mlops.retrain(text, boolean, integer, boolean, text) TO quant_ops});
}

#
# mallory's plants: functions and operators in her schema that log who
# calls them, then answer as pg_catalog would.
#
my @planted = (
	[ 'to_timestamp',       'e double precision',          'timestamptz', 'pg_catalog.to_timestamp(e)' ],
	[ 'now',                '',                            'timestamptz', 'pg_catalog.now()' ],
	[ 'jsonb_set',          'j jsonb, p text[], v jsonb',  'jsonb',       'pg_catalog.jsonb_set(j, p, v)' ],
	[ 'jsonb_build_object', 'VARIADIC a text[]',           'jsonb',       'pg_catalog.jsonb_build_object(VARIADIC a)' ],
	[ 'to_jsonb',           'b boolean',                   'jsonb',       'pg_catalog.to_jsonb(b)' ],
	[ 'texteq',             'a text, b text',              'boolean',     'pg_catalog.texteq(a, b)' ],
	[ 'int8eq',             'a bigint, b bigint',          'boolean',     'pg_catalog.int8eq(a, b)' ],
	[ 'int4eq',             'a integer, b integer',        'boolean',     'pg_catalog.int4eq(a, b)' ]);
my $plant = q{
	GRANT USAGE ON SCHEMA mallory TO PUBLIC;
	-- moves the reader's search_path for good (no SET clause: it stays)
	CREATE FUNCTION mallory.hook() RETURNS boolean LANGUAGE plpgsql SECURITY INVOKER AS
	  $f$BEGIN
	      INSERT INTO public.trojan_log
	      SELECT 'hook', current_user, a.backend_type FROM pg_catalog.pg_stat_activity a
	       WHERE a.pid OPERATOR(pg_catalog.=) pg_catalog.pg_backend_pid();
	      PERFORM pg_catalog.set_config('search_path', 'mallory, pg_catalog', false);
	      RETURN true;
	  END$f$;
	CREATE FUNCTION mallory.feat() RETURNS real[] LANGUAGE plpgsql SET search_path = pg_catalog AS
	  $f$BEGIN
	      INSERT INTO public.trojan_log
	      SELECT 'feat', current_user, backend_type FROM pg_stat_activity WHERE pid = pg_backend_pid();
	      RETURN ARRAY[1, 2]::real[];
	  END$f$;
};
for my $p (@planted)
{
	my ($fn, $args, $ret, $body) = @$p;
	$plant .= qq{CREATE FUNCTION mallory.$fn($args) RETURNS $ret LANGUAGE plpgsql SET search_path = pg_catalog AS
	  \$f\$BEGIN
	      INSERT INTO public.trojan_log
	      SELECT '$fn', current_user, backend_type FROM pg_stat_activity WHERE pid = pg_backend_pid();
	      RETURN $body;
	  END\$f\$;\n};
}
$plant .= q{
	CREATE OPERATOR mallory.= (leftarg = text, rightarg = text, function = mallory.texteq);
	CREATE OPERATOR mallory.= (leftarg = bigint, rightarg = bigint, function = mallory.int8eq);
	CREATE OPERATOR mallory.= (leftarg = integer, rightarg = integer, function = mallory.int4eq);

	ALTER TABLE mallory.bars ENABLE ROW LEVEL SECURITY;
	CREATE POLICY hook ON mallory.bars USING (mallory.hook());
	GRANT SELECT ON mallory.bars TO quant_ops;
	CREATE VIEW mallory.bars_v AS SELECT symbol, ts, price FROM mallory.bars2 WHERE mallory.hook();
	GRANT SELECT ON mallory.bars_v TO quant_ops;
	CREATE VIEW mallory.feat_v AS SELECT symbol, ts, price, mallory.feat() AS f FROM mallory.bars2;
	GRANT SELECT ON mallory.feat_v TO quant_ops;
};
$node->safe_psql('postgres', $plant, extra_params => [ '-U', 'mallory' ]);

# the plants work: with mallory's search_path they are what gets called
$node->safe_psql('postgres', q{
	SELECT mallory.hook();
	SELECT 'x'::text = 'x'::text, 1::bigint = 1::bigint, 1 = 1, now() IS NOT NULL,
	       to_timestamp(0::float8) IS NOT NULL, jsonb_set('{}'::jsonb, '{a}', 'true'::jsonb),
	       to_jsonb(true), jsonb_build_object('a', 'b');
}, extra_params => [ '-U', 'mallory' ]);
is(sql(q{SELECT string_agg(DISTINCT fn || ' as ' || who, ', ') FROM public.trojan_log}),
	join(', ', map { "$_ as mallory" }
		sort qw(hook int4eq int8eq jsonb_build_object jsonb_set now texteq to_jsonb to_timestamp)),
	'0. after hook() moved the search_path, the planted functions and operators are called');
sql(q{TRUNCATE public.trojan_log});

# Every call of a planted function so far, unless it ran as ops (who
# asked), quant_ops or mallory herself.
my $foreign_calls = q{
	SELECT string_agg(DISTINCT fn || ' as ' || who || ' in ' || backend, ', ')
	  FROM public.trojan_log WHERE who NOT IN ('ops', 'quant_ops', 'mallory')};

#
# 1. A search_path trojan through row level security: ops trains over
# mallory's table, whose policy moves the reader's search_path.
#
$pos = -s $node->logfile;
small_agent($node, 'rls', 'mallory.bars');
($rc, $out, $err) = as_role('ops', q{SELECT rl_mlops.retrain('rls', async => false)});
($state, $error) = wait_run($node, $out);
like($state, qr/^(succeeded|rejected)$/, "1. ops's run over the table with the trojan policy ends well ($state $error)")
  or diag $err;
isnt(sql(q{SELECT count(*) FROM public.trojan_log WHERE fn = 'hook'}), '0',
	'1. the policy ran: the attack was attempted');
is(sql($foreign_calls), '', "1. no planted code ran as $super (or any role but ops, quant_ops, mallory)");
is(sql(q{SELECT count(*) FROM rl_mlops.models WHERE agent = 'rls' AND state = 'active'}), '1',
	'1. agent rls has an active model');
no_crash_ok('1. trojan through RLS', $pos);
integrity_ok($node, '1. trojan through RLS');
sql(q{TRUNCATE public.trojan_log});

#
# 2. The same through a view whose WHERE clause calls the hook.
#
$pos = -s $node->logfile;
small_agent($node, 'viewtrojan', 'mallory.bars_v');
($rc, $out, $err) = as_role('ops', q{SELECT rl_mlops.retrain('viewtrojan', async => false)});
($state, $error) = wait_run($node, $out);
like($state, qr/^(succeeded|rejected)$/, "2. ops's run over the trojan view ends well ($state $error)")
  or diag $err;
isnt(sql(q{SELECT count(*) FROM public.trojan_log WHERE fn = 'hook'}), '0',
	'2. the view\'s hook ran: the attack was attempted');
is(sql($foreign_calls), '', "2. no planted code ran as $super");
no_crash_ok('2. trojan through a view', $pos);
integrity_ok($node, '2. trojan through a view');
sql(q{TRUNCATE public.trojan_log});

#
# 3. create_agent() infers n_features by reading the source: as the
# caller, never as the owner.
#
($rc, $out, $err) = as_role('ops',
	q{SELECT rl_mlops.create_agent('featview', 'mallory.feat_v', features_column => 'f') ->> 'n_features'});
is($out, '2', '3. ops creates an agent over mallory\'s view, n_features inferred: 2') or diag $err;
is(sql(q{SELECT n_features FROM rl_mlops.agents WHERE name = 'featview'}), '2', '3. recorded n_features 2');
isnt(sql(q{SELECT count(*) FROM public.trojan_log WHERE fn = 'feat'}), '0', '3. the view\'s function ran');
is(sql($foreign_calls), '', "3. it ran as the caller, not as $super");
sql(q{TRUNCATE public.trojan_log});

sql(q{
	CREATE TABLE public.secret_bars AS SELECT symbol, ts, price, ARRAY[1, 2, 3]::real[] AS f FROM public.bars;
	REVOKE ALL ON public.secret_bars FROM PUBLIC;
});
$node->safe_psql('postgres', q{
	CREATE VIEW mallory.secret_v WITH (security_invoker = true) AS
	SELECT symbol, ts, price, f FROM public.secret_bars;
	GRANT SELECT ON mallory.secret_v TO quant_ops;
}, extra_params => [ '-U', 'mallory' ]);
($rc, $out, $err) = as_role('ops', q{
	DO $$
	BEGIN
	    PERFORM rl_mlops.create_agent('secretview', 'mallory.secret_v', features_column => 'f');
	    RAISE NOTICE 'created';
	EXCEPTION WHEN insufficient_privilege THEN
	    RAISE NOTICE 'denied: %', SQLERRM;
	END
	$$});
like($err, qr/NOTICE:  00000: denied: permission denied for table secret_bars/,
	'3. create_agent over a security_invoker view of a table ops cannot read: 42501 for secret_bars');
is(sql(q{SELECT count(*) FROM rl_mlops.agents WHERE name = 'secretview'}), '0', '3. no agent secretview');
integrity_ok($node, '3. create_agent reads as the caller');

#
# 4. The source dropped or swapped around a run, a column dropped or
# retyped: the run fails with a clear error, never a crash.  Besides right
# after retrain() returns (where the worker may or may not have read the
# data yet), each removal is also forced into a moment of the run by a
# lock the test holds: while the worker waits for rl_mlops.models (after
# recording its run, before reading: where a build without the fix
# crashed), while it waits for its lock on the source, and while it trains.
#
$pos = -s $node->logfile;

# The run ended well (it had read the data) or failed saying the source is
# gone; or retrain() itself refused, saying so.
sub source_gone_ok
{
	my ($name, $run, $err) = @_;
	my ($state, $error) = wait_run($node, $run);
	ok( $state =~ /^(succeeded|rejected)$/
		  || ($state eq 'failed' && $error =~ /no longer exists|does not exist|replaced/)
		  || (!defined $run && $err =~ /ERROR:  .*(no longer exists|does not exist)/),
		"$name: " . (defined $run ? "the run ended $state" . ($error ne '' ? " ($error)" : '')
		                          : "retrain() refused: $err"))
	  or diag $err;
	# after a crash restart, wait until connections are accepted again
	$node->poll_query_until('postgres', 'SELECT true');
}

# retrain($agent) from another session while this test holds $lock_table
# in ACCESS EXCLUSIVE mode; once someone waits for it, $ddl runs in the
# holding transaction, which commits.  Returns the run id (if any) and the
# caller's stderr.
sub retrain_while_blocked
{
	my ($agent, $lock_table, $ddl) = @_;
	my $holder = $node->background_psql('postgres', on_error_stop => 0);
	$holder->query_safe("BEGIN; LOCK TABLE $lock_table IN ACCESS EXCLUSIVE MODE");
	my $caller = $node->background_psql('postgres', on_error_stop => 0);
	$caller->query_until(qr/go/, "\\echo go\nSELECT 'run ' || rl_mlops.retrain('$agent');\n\\echo done\n");
	$node->poll_query_until('postgres',
		"SELECT EXISTS (SELECT 1 FROM pg_locks WHERE relation = '$lock_table'::regclass AND NOT granted)")
	  or die "nobody waited for $lock_table";
	my ($out, $failed) = $holder->query("$ddl; COMMIT");
	diag "the removal failed: $holder->{stderr}" if $failed;
	eval {
		$caller->{run}->pump until $caller->{stdout} =~ /done/ || $caller->{timeout}->is_expired;
	};
	my ($run) = $caller->{stdout} =~ /run (\d+)/;
	my $err = $caller->{stderr};
	eval { $holder->quit; };
	eval { $caller->quit; };
	return ($run, $err);
}

for my $i (1 .. 8)
{
	sql(qq{CREATE TABLE public.drop$i AS TABLE public.bars});
	small_agent($node, "drop$i", "public.drop$i", initial_epochs => ($i == 8 ? 30 : 1));
}
for my $i (1 .. 5)
{
	($rc, $out, $err) = $node->psql('postgres', qq{SELECT rl_mlops.retrain('drop$i');\nDROP TABLE public.drop$i;});
	($run) = $out =~ /^(\d+)/;
	source_gone_ok("4a. try $i: source dropped right after retrain()", $run, $err);
}
($run, $err) = retrain_while_blocked('drop6', 'rl_mlops.models', 'DROP TABLE public.drop6');
source_gone_ok('4a. source dropped after the run was recorded, before the worker read it', $run, $err);
($run, $err) = retrain_while_blocked('drop7', 'public.drop7', 'DROP TABLE public.drop7');
source_gone_ok('4a. source dropped while the worker waited for its lock on it', $run, $err);
$run = sql(q{SELECT rl_mlops.retrain('drop8')});
$node->poll_query_until('postgres', "SELECT state NOT IN ('queued', 'preparing') FROM rl_mlops.runs WHERE id = $run")
  or die "run $run never got past preparing";
sql(q{DROP TABLE public.drop8});
source_gone_ok('4a. source dropped while the worker trained', $run, '');
no_crash_ok('4a. source dropped', $pos);

$pos = -s $node->logfile;
sql(q{CREATE TABLE public.swapme AS TABLE public.bars;
	CREATE TABLE public.swapme2 AS TABLE public.bars});
small_agent($node, 'swap', 'public.swapme');
small_agent($node, 'swap2', 'public.swapme2');
($rc, $out, $err) = $node->psql('postgres', q{
	SELECT rl_mlops.retrain('swap');
	CREATE TABLE public.swapme_new AS TABLE public.swapme;
	DROP TABLE public.swapme;
	ALTER TABLE public.swapme_new RENAME TO swapme;});
($run) = $out =~ /^(\d+)/;
source_gone_ok('4b. source swapped (CREATE, DROP, RENAME) right after retrain()', $run, $err);
($run, $err) = retrain_while_blocked('swap2', 'rl_mlops.models', q{
	CREATE TABLE public.swapme2_new AS TABLE public.swapme2;
	DROP TABLE public.swapme2;
	ALTER TABLE public.swapme2_new RENAME TO swapme2});
source_gone_ok('4b. source swapped after the run was recorded, before the worker read it', $run, $err);
no_crash_ok('4b. source swapped', $pos);

($rc, $out, $err) = $node->psql('postgres', "\\set VERBOSITY verbose\nSELECT rl_mlops.retrain('swap', async => false)");
like($err, qr/ERROR:  42P01: source relation of agent "swap" no longer exists/,
	'4c. retrain() of an agent whose source was dropped: 42P01, the relation no longer exists');
unlike($err, qr/permission denied/, '4c. not "permission denied"');

$pos = -s $node->logfile;
sql(q{CREATE TABLE public.coldrop AS TABLE public.bars});
small_agent($node, 'coldrop', 'public.coldrop');
sql(q{ALTER TABLE public.coldrop DROP COLUMN price});
($rc, $out, $err) = $node->psql('postgres', "\\set VERBOSITY verbose\nSELECT rl_mlops.retrain('coldrop', async => false)");
($run) = $out =~ /^(\d+)/;
($state, $error) = wait_run($node, $run);
ok( ($err =~ /ERROR:  42703: .*price/ && !defined $run)
	  || ($state eq 'failed' && $error =~ /price/),
	"4d. the price column dropped: an error naming it (" . ($run ? "$state $error" : $err) . ')');
is(sql(q{SELECT count(*) FROM rl_mlops.models WHERE agent = 'coldrop'}), '0', '4d. no model');
no_crash_ok('4d. column dropped', $pos);

$pos = -s $node->logfile;
sql(q{CREATE TABLE public.coltype AS TABLE public.bars});
small_agent($node, 'coltype', 'public.coltype');
sql(q{ALTER TABLE public.coltype ALTER COLUMN price TYPE text USING price::text});
($rc, $out, $err) = $node->psql('postgres', "\\set VERBOSITY verbose\nSELECT rl_mlops.retrain('coltype', async => false)");
($run) = $out =~ /^(\d+)/;
($state, $error) = wait_run($node, $run);
ok( ($err =~ /ERROR:  [0-9A-Z]{5}: .*price/ && !defined $run)
	  || ($state eq 'failed' && $error =~ /price/),
	"4e. the price column retyped to text: an error naming it (" . ($run ? "$state $error" : $err) . ')');
is(sql(q{SELECT count(*) FROM rl_mlops.models WHERE agent = 'coltype'}), '0', '4e. no model');
no_crash_ok('4e. column retyped', $pos);
integrity_ok($node, '4. dropped and swapped sources');

#
# 5. No lock a stranger can take.
#
small_agent($node, 'lockme', 'public.bars');
my $stranger = $node->background_psql('postgres', on_error_stop => 0, extra_params => [ '-U', 'stranger' ]);
$stranger->query_safe(q{SELECT pg_advisory_lock(1380732236, hashtext('lockme'))});
$stranger->query_safe(q{SELECT pg_advisory_lock(1380732236)});
is(sql(q{SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a USING (pid)
          WHERE l.locktype = 'advisory' AND l.granted AND a.usename = 'stranger'}), '2',
	'5a. stranger (no grant at all) holds both advisory locks');
($rc, $out, $err) = $node->psql('postgres', q{SELECT rl_mlops.retrain('lockme', async => false)});
($run) = $out =~ /^(\d+)/;
($state, $error) = wait_run($node, $run);
is($state, 'succeeded', '5a. retrain(\'lockme\') is not blocked by the stranger\'s locks') or diag $err;
is(sql(q{SELECT count(*) FROM rl_mlops.models WHERE agent = 'lockme' AND state = 'active'}), '1',
	'5a. agent lockme has an active model');
$stranger->quit;

is(sql(q{SELECT hashtext('a39477') = hashtext('a246055')}), 't', '5b. a39477 and a246055 share a hashtext');
small_agent($node, 'a39477', 'public.bars');
small_agent($node, 'a246055', 'public.bars');
# The run of a39477 is held (rl_mlops.models locked) while a246055's starts.
{
	my $holder = $node->background_psql('postgres', on_error_stop => 0);
	$holder->query_safe('BEGIN; LOCK TABLE rl_mlops.models IN ACCESS EXCLUSIVE MODE');
	my @callers = map { $node->background_psql('postgres', on_error_stop => 0) } 1 .. 2;
	my $waiters = q{(SELECT count(*) FROM pg_locks WHERE relation = 'rl_mlops.models'::regclass AND NOT granted)};
	$callers[0]->query_until(qr/go/, "\\echo go\nSELECT 'run ' || rl_mlops.retrain('a39477');\n\\echo done\n");
	$node->poll_query_until('postgres', "SELECT $waiters >= 1") or die 'the run of a39477 never waited';
	$callers[1]->query_until(qr/go/, "\\echo go\nSELECT 'run ' || rl_mlops.retrain('a246055');\n\\echo done\n");
	# until the second retrain() answered, or it waits too
	until ($callers[1]->{stdout} =~ /done/ || sql("SELECT $waiters") >= 2)
	{
		die 'retrain(\'a246055\') neither answered nor waited' if $callers[1]->{timeout}->is_expired;
		$callers[1]->{run}->pump_nb;
		usleep(100_000);
	}
	$holder->query_safe('COMMIT');
	$holder->quit;
	for my $c (@callers)
	{
		$c->{run}->pump until $c->{stdout} =~ /done/ || $c->{timeout}->is_expired;
	}
	($run1) = $callers[0]->{stdout} =~ /run (\d+)/;
	($run2) = $callers[1]->{stdout} =~ /run (\d+)/;
	ok(defined $run1 && defined $run2 && $run1 != $run2,
		'5b. retrain() of both gave two runs: ' . ($run1 // 'none') . ' and ' . ($run2 // 'none'))
	  or diag $callers[0]->{stderr} . $callers[1]->{stderr};
	$_->quit for @callers;
}
my @s1 = wait_run($node, $run1);
my @s2 = wait_run($node, $run2);
is($s1[0], 'succeeded', "5b. run of a39477 succeeded (@s1)");
is($s2[0], 'succeeded', "5b. run of a246055 succeeded (@s2)");
integrity_ok($node, '5. locks');

#
# 6. No SECURITY DEFINER function of the extension is executable by PUBLIC.
#
my $definers = q{
	SELECT p.oid, p.oid::regprocedure AS fn, p.proacl, p.proowner, p.proconfig
	  FROM pg_proc p
	  JOIN pg_depend d ON d.classid = 'pg_proc'::regclass AND d.objid = p.oid
	 WHERE d.refclassid = 'pg_extension'::regclass
	   AND d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'rl_mlops')
	   AND d.deptype = 'e' AND p.prosecdef};
isnt(sql("SELECT count(*) FROM ($definers) f"), '0', '6. the extension has SECURITY DEFINER functions');
is( sql(qq{SELECT string_agg(fn::text, ', ' ORDER BY fn::text) FROM ($definers) f
	        WHERE EXISTS (SELECT 1 FROM aclexplode(coalesce(f.proacl, acldefault('f', f.proowner))) x
	                       WHERE x.grantee = 0 AND x.privilege_type = 'EXECUTE')}),
	'', '6. none is executable by PUBLIC');
is( sql(qq{SELECT string_agg(fn::text || ' ' || coalesce(proconfig::text, '{}'), ', ' ORDER BY fn::text)
	         FROM ($definers) f
	        WHERE NOT coalesce('search_path=pg_catalog, pg_temp' = ANY (proconfig), false)
	           OR (SELECT count(*) FROM unnest(proconfig) c WHERE c LIKE 'search_path=%') <> 1}),
	'', '6. each sets search_path = pg_catalog, pg_temp');
($rc, $out, $err) = as_role('stranger', q{SELECT rl_mlops.retrain_due('lockme')});
like($err, qr/ERROR:  42501: permission denied/, '6. stranger: retrain_due() is denied (42501)');
($rc, $out, $err) = as_role('peeker', q{SELECT rl_mlops.retrain_due('lockme')});
like($err, qr/ERROR:  42501: permission denied for function retrain_due/,
	'6. a role with USAGE on the schema only: retrain_due() is denied (42501)');
integrity_ok($node, '6. PUBLIC');

#
# 7. No spoofed trigger: retrain() has no trigger parameter.
#
($rc, $out, $err) = $node->psql('postgres',
	"\\set VERBOSITY verbose\nSELECT rl_mlops.retrain('lockme', trigger => 'schedule')");
like($err, qr/ERROR:  42883: /, '7. retrain(trigger => ...) by the superuser: no such function (42883)');
$run = $out =~ /^(\d+)/ ? $1 : undef;
wait_run($node, $run) if defined $run;
($rc, $out, $err) = as_role('ops', q{SELECT rl_mlops.retrain('lockme', trigger => 'schedule')});
like($err, qr/ERROR:  42883: /, '7. retrain(trigger => ...) by ops: no such function (42883)');
$run = $out =~ /^(\d+)/ ? $1 : undef;
wait_run($node, $run) if defined $run;
is(sql(q{SELECT string_agg(DISTINCT trigger, ',') FROM rl_mlops.runs WHERE requested_by = 'ops'}), 'manual',
	'7. every run ops started is recorded as manual');
integrity_ok($node, '7. trigger');

#
# 8. cancel_retrain(agent, NULL) cancels the run.
#
small_agent($node, 'longrun', 'public.bars', initial_epochs => 1000);
$run = sql(q{SELECT rl_mlops.retrain('longrun')});
$node->poll_query_until('postgres', "SELECT state NOT IN ('queued', 'preparing') FROM rl_mlops.runs WHERE id = $run")
  or die "run $run never got past preparing";
is(sql("SELECT state FROM rl_mlops.runs WHERE id = $run"), 'training', "8. run $run of longrun (1000 epochs) is training");
($rc, $out, $err) = $node->psql('postgres', q{SELECT rl_mlops.cancel_retrain('longrun', NULL)});
is($out, $run, '8. cancel_retrain(\'longrun\', NULL) returns the run id') or diag $err;
($state, $error) = wait_run($node, $run);
is($state, 'cancelled', "8. the run ended cancelled ($state $error)");
is(sql(q{SELECT count(*) FROM rl_mlops.models WHERE agent = 'longrun'}), '0', '8. no model');
integrity_ok($node, '8. cancel with NULL');

#
# 9. A denormal price: its log return is infinite.
#
my $bar = q{(SELECT min(ts) + interval '600 minutes' FROM public.bars)};
sql(qq{
	CREATE TABLE public.denorm AS TABLE public.bars;
	UPDATE public.denorm SET price = 1e-310 WHERE symbol = 'SYM001' AND ts = $bar;
});
small_agent($node, 'denorm', 'public.denorm');
($rc, $out, $err) = $node->psql('postgres', "\\set VERBOSITY verbose\nSELECT rl_mlops.retrain('denorm', async => false)");
($run) = $out =~ /^(\d+)/;
($state, $error) = wait_run($node, $run);
my $why = defined $run ? $error : $err;
ok(defined $run ? $state eq 'failed' : $err =~ /ERROR:  22/,
	"9. training over a denormal price fails (" . ($run ? "$state: $error" : $err) . ')');
like($why, qr/SYM001/, '9. the error names the symbol');
like($why, qr/price|return/, '9. the error names the price or its return');
unlike($why, qr/\bnan\b|\binf\b|infinity/i, '9. no NaN or infinity in the error');
is(sql(q{SELECT count(*) FROM rl_mlops.models WHERE agent = 'denorm'}), '0', '9. no model');

sql(q{CREATE TABLE public.denorm_ok AS TABLE public.bars});
small_agent($node, 'denorm_ok', 'public.denorm_ok');
($rc, $out, $err) = $node->psql('postgres', q{SELECT rl_mlops.retrain('denorm_ok', async => false)});
like($err, qr/NOTICE:  run $out succeeded/, '9. agent denorm_ok trained on clean data and deployed');
sql(qq{UPDATE public.denorm_ok SET price = 1e-310 WHERE symbol = 'SYM001' AND ts = $bar});
my $range = q{(SELECT min(ts) FROM public.denorm_ok), (SELECT max(ts) FROM public.denorm_ok)};
for my $q (
	[ "SELECT * FROM rl_mlops.backtest_summary('denorm_ok', 'SYM001', $range)", 'backtest_summary' ],
	[ "SELECT * FROM rl_mlops.backtest('denorm_ok', 'SYM001', $range)", 'backtest' ],
	[ "SELECT * FROM rl_mlops.decide('denorm_ok', 'SYM001', $bar + interval '5 minutes', 0)", 'decide' ])
{
	my ($query, $name) = @$q;
	($rc, $out, $err) = $node->psql('postgres', "\\set VERBOSITY verbose\n$query");
	like($err, qr/ERROR:  22[0-9A-Z]{3}: /, "9. $name over the denormal bar: an error of class 22");
	unlike($out, qr/infinity|nan/i, "9. $name returns no infinite or NaN number");
}
integrity_ok($node, '9. denormal price');

#
# 10. A row at ts = 'infinity' is not the newest row of the data window.
#
sql(q{
	CREATE TABLE public.infts AS TABLE public.bars;
	INSERT INTO public.infts VALUES ('SYM001', 'infinity', 100);
});
small_agent($node, 'infts', 'public.infts');
($rc, $out, $err) = $node->psql('postgres', q{SELECT rl_mlops.retrain('infts', async => false)});
($run) = $out =~ /^(\d+)/;
($state, $error) = wait_run($node, $run);
like($state, qr/^(succeeded|rejected)$/, "10. training with a row at ts = infinity works on the finite rows ($state $error)")
  or diag $err;
unlike($error . $err, qr/0 rows|not enough/, '10. not "0 rows" or "not enough training data"');
integrity_ok($node, '10. infinite timestamp');

is(sql(q{SELECT pg_postmaster_start_time()}), $started, 'the postmaster never restarted');
unlike(slurp_file($node->logfile), qr/terminated by signal/, 'no process of the cluster died of a signal');

$node->stop;
done_testing();
