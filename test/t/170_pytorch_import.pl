# A PyTorch state_dict saved the standard way imports (issue 15, part 1
# and 2): safetensors.torch.save_file's layout with metadata {"format":
# "pt"} or none, F16, BF16 and F64 widened to F32; sigma from the caller;
# the bytes kept as given; policy() equal to PyTorch's forward; the network
# exported alone; a warm start from it trains, Adam from zero; an imported
# version judged on the agent's holdout and gate like a trained one.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use RlMlops;

my $src = $ENV{RL_MLOPS_SRC} // '.';
my $tmp = PostgreSQL::Test::Utils::tempdir;
my $py = "$src/test/python/interop.py";

# The same network (seed 1) as PyTorch saves it, in every dtype; seed 2 as
# a different one.
for my $dtype (qw(F32 F16 BF16 F64))
{
	system_or_bail('/usr/bin/python3', $py, 'save', "$tmp/pt_$dtype.safetensors", '--dtype', $dtype);
}
system_or_bail('/usr/bin/python3', $py, 'save', "$tmp/none.safetensors", '--format', 'none');
system_or_bail('/usr/bin/python3', $py, 'save', "$tmp/other.safetensors", '--seed', '2');
sub file { return "pg_read_binary_file('$tmp/$_[0].safetensors')" }

# An observation of exactly representable floats: 32 returns and a position.
my @obs = map { ((($_ * 37) % 33) / 8.0) - 2.0 } 1 .. 32;
push @obs, 1;
my $obs_sql = "'{" . join(',', @obs) . "}'::real[]";
my $out = `/usr/bin/python3 $py forward $tmp/pt_F32.safetensors '[[@{[join(',', @obs)]}]]'`;
die "interop.py forward failed" if $? != 0;
$out =~ /"probs":\s*\[\[([^\]]+)\]\]/ or die "unexpected output: $out";
my @torch = split /\s*,\s*/, $1;

# Largest absolute difference between psql's real[] and PyTorch's probabilities.
sub max_diff
{
	(my $text = shift) =~ s/[{}]//g;
	my @p = split /,/, $text;
	my $d = 0;
	for my $i (0 .. $#torch)
	{
		my $e = abs($p[$i] - $torch[$i]);
		$d = $e if $e > $d;
	}
	return $d;
}

my $node = new_cluster('pytorch_import');
sql(q{CREATE EXTENSION rl_mlops});
create_bars($node, 'bars', seed => 0.4);
small_agent($node, 'p', 'bars', incremental_epochs => 1);

# without sigma: the error names it, the hint shows the call
my $err = error_of(qq{\\set VERBOSITY verbose\nSELECT rl_mlops.import_model('p', @{[file('pt_F32')]})});
like($err, qr/ERROR:  22023: checkpoint has no rl_mlops metadata, so sigma must be given\nDETAIL:  Its __metadata__ says format "pt", as safetensors.torch.save_file writes it\.  sigma, the standard deviation/,
	'format "pt" without sigma: 22023 naming sigma');
like($err, qr/HINT:  Pass it: SELECT rl_mlops.import_model\('agent', checkpoint, sigma => 0.0012\);/, '... and a hint with the call');
like(error_of(qq{SELECT rl_mlops.import_model('p', @{[file('none')]})}), qr/DETAIL:  It has no __metadata__\./,
	'no metadata at all: the same error says so');
like(error_of(qq{SELECT rl_mlops.import_model('p', @{[file('pt_F32')]}, sigma => -1)}),
	qr/ERROR:  sigma must be a positive finite number/, 'a negative sigma is refused');
like(error_of(qq{SELECT rl_mlops.import_model('p', @{[file('pt_F32')]}, sigma => 'NaN')}),
	qr/ERROR:  sigma must be a positive finite number/, 'so is NaN');
is(sql(q{SELECT count(*) FROM rl_mlops.models}), '0', 'nothing registered by the refusals');

# a plain file with sigma imports; the bytes are kept as given
my %v;
for my $f (qw(pt_F32 pt_F16 pt_BF16 pt_F64 none))
{
	$v{$f} = sql(qq{SELECT rl_mlops.import_model('p', @{[file($f)]}, sigma => 0.01)});
}
is(sql(qq{SELECT rl_mlops.export_model('p', '$v{pt_F16}') = @{[file('pt_F16')]}}), 't',
	'export_model returns the F16 file byte for byte');
is(sql(qq{SELECT sha256 = encode(sha256(@{[file('pt_F16')]}), 'hex') FROM rl_mlops.models WHERE version = '$v{pt_F16}'}), 't',
	'... and its sha256 is the file\'s');
is(sql(qq{SELECT string_agg(concat_ws(' ', file_format, coalesce(widened_from, '-'), sigma), ', ' ORDER BY created_at, version)
            FROM rl_mlops.models_overview WHERE agent = 'p'}),
	'pt - 0.01, pt F16 0.01, pt BF16 0.01, pt F64 0.01, none - 0.01',
	'models_overview shows what the file lacked: its format, the dtype widened, sigma from the call');
is(sql(qq{SELECT m ->> 'file_format' || ' ' || (m ->> 'sigma') FROM jsonb_array_elements(rl_mlops.metadata('p') -> 'models') m
           WHERE m ->> 'version' = '$v{none}'}), 'none 0.01', 'metadata() too');

# validation records the widening and runs the holdout on the agent's data
my $val = sql(qq{SELECT rl_mlops.validate_model('p', '$v{pt_F16}')});
like($val, qr/"loads": \{"ok": true, "message": "safetensors parsed, 8 tensors, sigma 0.01 \(from the registry: the file's format is pt\), widened to F32 from F16"\}/,
	'validation says the file is plain and was widened from F16');
like($val, qr/"holdout_backtest": \{"ok": true, "message": "\d+ decisions on 2 symbols of the agent's data: net log return -?[0-9.]+, Sharpe -?[0-9.]+"\}/,
	'an imported version gets a holdout backtest on the agent\'s data');
like($val, qr/"deploy_gate": \{"ok": true, "message": "gate \(no active model\): passed"\}/, '... and the gate');
is(sql(qq{SELECT concat_ws(' ', metrics #>> '{holdout,steps}' IS NOT NULL, jsonb_typeof(metrics -> 'holdout_ranges'),
                  (SELECT count(*) FROM jsonb_object_keys(metrics -> 'holdout_by_symbol')))
            FROM rl_mlops.models WHERE version = '$v{pt_F16}'}), 't object 2',
	'its metrics: pooled holdout, the ranges and one backtest per symbol');
is(sql(qq{SELECT sum((e.value ->> 'steps')::int) = (m.metrics #>> '{holdout,steps}')::int
            FROM rl_mlops.models m, jsonb_each(m.metrics -> 'holdout_by_symbol') e
           WHERE m.version = '$v{pt_F16}' GROUP BY m.metrics}), 't', 'per-symbol decisions add up to the pooled count');
is(sql(qq{SELECT CASE WHEN abs((metrics #>> '{holdout_by_symbol,SYM001,sharpe}')::float8 - s.sharpe) < 1e-9 * (1 + abs(s.sharpe))
                  THEN 't' ELSE (metrics #>> '{holdout_by_symbol,SYM001,sharpe}') || ' vs ' || s.sharpe END
            FROM rl_mlops.models m,
                 LATERAL rl_mlops.backtest_summary('p', 'SYM001', (m.metrics #>> '{holdout_ranges,SYM001,from}')::timestamptz,
                                                   (m.metrics #>> '{holdout_ranges,SYM001,to}')::timestamptz, m.version) s
           WHERE m.version = '$v{pt_F16}'}), 't',
	'one symbol\'s holdout Sharpe is backtest_summary()\'s over its holdout range');

# served as PyTorch computes it
for my $f (qw(pt_F32 pt_F64 none pt_F16 pt_BF16))
{
	sql(qq{SELECT rl_mlops.validate_model('p', '$v{$f}') IS NULL});
	sql(qq{SELECT rl_mlops.deploy_model('p', '$v{$f}') IS NULL});
	my $d = max_diff(sql(qq{SELECT rl_mlops.policy($obs_sql, 'p')}));
	my $tol = $f eq 'pt_F16' ? 1e-3 : $f eq 'pt_BF16' ? 1e-2 : 1e-5;
	cmp_ok($d, '<', $tol, "$f: policy() equals PyTorch's forward of the F32 network within $tol (got $d)");
}

# the network alone
my $net = sql(qq{SELECT encode(rl_mlops.export_model('p', '$v{pt_F32}', optimizer => false), 'base64')});
sql(qq{CREATE TABLE net AS SELECT rl_mlops.export_model('p', '$v{pt_F32}', optimizer => false) AS b});
like(sql(q{SELECT convert_from(substring(b from 9 for get_byte(b, 0) + 256 * get_byte(b, 1)), 'UTF8') FROM net}),
	qr/^\{"__metadata__":\{"format":"rl_mlops\/1","window":"32","n_features":"0","obs_dim":"33","hidden":"64","n_actions":"3","sigma":"0.01","version":"\Q$v{pt_F32}\E"\}/,
	'export_model(optimizer => false): an rl_mlops/1 file with the registry\'s sigma and version');
is(sql(q{SELECT position('optim.' in convert_from(substring(b from 9 for get_byte(b, 0) + 256 * get_byte(b, 1)), 'UTF8')) FROM net}), '0', '... and no optimizer state');
like(error_of(q{SELECT rl_mlops.import_model('p', b, sigma => 0.02) FROM net}),
	qr/ERROR:  sigma 0.02 does not match the checkpoint's\nDETAIL:  The checkpoint's metadata records sigma 0.01/,
	'a sigma that contradicts the file\'s own is refused');
my $back = sql(q{SELECT rl_mlops.import_model('p', b) FROM net});
sql(qq{SELECT rl_mlops.validate_model('p', '$back') IS NULL; SELECT rl_mlops.deploy_model('p', '$back') IS NULL});
cmp_ok(max_diff(sql(qq{SELECT rl_mlops.policy($obs_sql, 'p')})), '<', 1e-5, 'imported back, it serves the same policy');

# a warm start from a plain state_dict trains, Adam from zero
sql(qq{SELECT rl_mlops.deploy_model('p', '$v{pt_F16}') IS NULL});
my ($rc, $run, $rerr) = $node->psql('postgres', q{SELECT rl_mlops.retrain('p', async => false)});
like($rerr, qr/NOTICE:  run $run succeeded/, 'an incremental run from the F16 import succeeds');
is(sql(qq{SELECT concat_ws(' ', m.parent_version, m.metrics ->> 'warm_start', m.metrics ->> 'fresh_optimizer', m.file_format)
            FROM rl_mlops.models m JOIN rl_mlops.runs r ON r.produced_version = m.version WHERE r.id = $run}),
	"$v{pt_F16} true true rl_mlops/1", 'its model: a child of the import, warm-started with a fresh optimizer');
like(slurp_file($node->logfile), qr/run $run: version \Q$v{pt_F16}\E has no optimizer state; Adam starts from zero/,
	'the worker says so');

# an imported version is judged by the agent's gate against the active one
my $active = active_version($node, 'p');
sql(q{SELECT rl_mlops.configure('p', deploy_gate => 'better', gate_min_delta => 100) IS NULL});
my $other = sql(qq{SELECT rl_mlops.import_model('p', @{[file('other')]}, sigma => 0.01)});
($rc, $out, $err) = $node->psql('postgres', qq{SELECT rl_mlops.validate_model('p', '$other')});
like($out, qr/"deploy_gate": \{"ok": false, "message": "gate better: holdout Sharpe -?[0-9.]+ does not beat -?[0-9.]+ \(min change 100\)"\}/,
	'gate better by 100: the import fails it');
like($out, qr/\(active \Q$active\E on the same bars: /, '... compared with the active version on the same bars');
is(sql(qq{SELECT state || ' ' || (metrics ->> 'champion_version') FROM rl_mlops.models WHERE version = '$other'}),
	"rejected $active", 'so it is rejected, the comparison recorded');
like($err, qr/WARNING:  model version "$other" of agent "p" failed validation\nDETAIL:  deploy_gate: gate better/, 'with a WARNING');

# data the caller cannot read: the backtest is not run; only a comparing gate needs it
sql(q{CREATE ROLE importer LOGIN; GRANT USAGE ON SCHEMA rl_mlops TO importer;
      GRANT EXECUTE ON FUNCTION rl_mlops.import_model(text, bytea, integer, double precision, jsonb, text, double precision),
                                rl_mlops.validate_model(text, text) TO importer});
my $third = sql(qq{SELECT rl_mlops.import_model('p', @{[file('pt_F32')]}, sigma => 0.01)});
$val = $node->safe_psql('postgres', qq{SELECT rl_mlops.validate_model('p', '$third')}, extra_params => [ '-U', 'importer' ]);
like($val, qr/"holdout_backtest": \{"ok": false, "message": "not run: permission denied for table bars"\}/,
	'validated by a role that cannot read the source: the backtest is not run as the owner, and the comparing gate fails');
sql(q{SELECT rl_mlops.configure('p', deploy_gate => 'valid') IS NULL});
$val = $node->safe_psql('postgres', qq{SELECT rl_mlops.validate_model('p', '$third')}, extra_params => [ '-U', 'importer' ]);
like($val, qr/^\{"ok": true, .*"holdout_backtest": \{"ok": true, "message": "not run: permission denied for table bars"\}/,
	'with the gate valid it informs only');
integrity_ok($node, 'pytorch import');

$node->stop;
done_testing();
