# The dashboard (issue 14): one self-contained page, rendered by headless
# Chromium: every chart draws its data, nothing is fetched, an agent with
# no model, no runs and no live bars says so in words; not for PUBLIC.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;
use RlMlops;
use RlMlopsLive;

my $tmp = PostgreSQL::Test::Utils::tempdir;
my $node = new_cluster('dashboard');
sql(q{CREATE EXTENSION rl_mlops});

# an agent with a trained champion, the imported copy deployed over it
# (so the first stays in shadow), a challenger, and live bars
market('dash', 0.25, 0.3, 300);
small_agent($node, 'dash', 'dash', initial_epochs => 2, data_window => '2 days');
my ($rc, $run, $err) = $node->psql('postgres', q{SELECT rl_mlops.retrain('dash', async => false)});
like($err, qr/NOTICE:  run $run succeeded/, 'a trained champion');
my @copies = map { copy_of_champion('dash') } 1 .. 2;
sql(qq{SELECT rl_mlops.deploy_model('dash', '$copies[0]') IS NULL;
       SELECT rl_mlops.add_challenger('dash', '$copies[1]', 0) IS NULL});
arrive('dash', 200);
sql(q{SELECT rl_mlops.monitor('dash') IS NULL});
# and one with nothing: no model, no run, no bar evaluated
sql(q{SELECT rl_mlops.create_agent('bare <b>&"', 'dash') IS NULL});

my $html = sql(q{SELECT rl_mlops.dashboard()});
ok($html =~ /^<!DOCTYPE html>/, 'dashboard() returns an HTML page');
ok($html =~ /Chart\.js v3/, 'Chart.js is inlined');
ok($html !~ /<script[^>]+src=|<link[^>]|<img[^>]+src=|\burl\(|\@import/i,
	'no script, style sheet, image or font is loaded from elsewhere');
open(my $fh, '>', "$tmp/dashboard.html") or die;
print $fh $html;
close $fh;

# Chromium, headless, from the file: the DOM after the page's script ran,
# and a screenshot.
sub chromium
{
	my @args = @_;
	my ($out, $cerr) = ('', '');
	IPC::Run::run(
		[ 'env', "HOME=$tmp", 'chromium', '--headless=new', '--no-sandbox', '--disable-gpu',
		  '--no-first-run', "--user-data-dir=$tmp/profile", '--virtual-time-budget=10000',
		  @args, "file://$tmp/dashboard.html" ],
		'>', \$out, '2>', \$cerr, IPC::Run::timeout(120));
	return ($out, $cerr);
}
my ($dom, $cerr) = chromium('--dump-dom');
like($dom, qr/data-ready="true"/, 'the page\'s script ran to the end') or diag($cerr);
my ($expected) = $dom =~ /data-charts-expected="(\d+)"/;
my ($rendered) = $dom =~ /data-charts-rendered="(\d+)"/;
is($expected, 3, 'three charts for the agent with data (equity, versions, runs)');
is($rendered, $expected, 'every chart drew its data points');
like($dom, qr/<canvas id="equity-dash"[^>]*data-points="(\d{3,})"/, 'the equity chart has hundreds of points');
like($dom, qr/data-resources-fetched="0"/, 'nothing was fetched from the network');
like($dom, qr/Agent bare &lt;b&gt;&amp;"/, 'an agent name with markup is shown as text');
like($dom, qr/No model is active: nothing is paper-traded yet\./, 'no model: said in words');
like($dom, qr/No model version registered yet/, 'no version: said in words');
like($dom, qr/No training run yet: rl_mlops.retrain\(\) starts one\./, 'no run: said in words');
like($dom, qr/monitor\(\) has not run for this agent\./, 'no monitor() call: said in words');
like($dom, qr/<td>\Q$copies[1]\E<\/td><td>shadow<\/td>/, 'the challenger is in its table');
my (undef, $serr) = chromium('--window-size=1400,2600', "--screenshot=$tmp/dashboard.png");
ok(-s "$tmp/dashboard.png" > 20000, 'a screenshot of the page (' . (-s "$tmp/dashboard.png" // 0) . ' bytes)')
  or diag($serr);

# one agent only; errors; privileges
my $one = sql(q{SELECT rl_mlops.dashboard('dash')});
unlike($one, qr/bare <b>/, 'dashboard(agent) shows that agent only');
like(error_of(q{SELECT rl_mlops.dashboard('nobody')}), qr/agent "nobody" does not exist/, 'an unknown agent: an error');
sql(q{CREATE ROLE stranger LOGIN; GRANT USAGE ON SCHEMA rl_mlops TO stranger;
      CREATE ROLE viewer LOGIN; GRANT USAGE ON SCHEMA rl_mlops TO viewer;
      GRANT SELECT ON ALL TABLES IN SCHEMA rl_mlops TO viewer;
      GRANT EXECUTE ON FUNCTION rl_mlops.dashboard(text) TO viewer});
like(error_of(q{SELECT rl_mlops.dashboard()}, extra_params => [ '-U', 'stranger' ]),
	qr/permission denied for function dashboard/, 'dashboard() is not for PUBLIC');
my ($vrc, $vout, $verr) = $node->psql('postgres', q{SELECT length(rl_mlops.dashboard()) > 100000},
	extra_params => [ '-U', 'viewer' ]);
is($vout, 't', 'a reader role granted it gets the page') or diag($verr);

$node->stop;
done_testing();
