# Helpers of the live-monitoring TAP tests (110_monitor, 120_challengers):
# a market whose later bars arrive one by one, a model that trades against
# what it learned, and monitor() called after every bar.
#
#   use RlMlopsLive;
#   market('ar', 0.25, 0.3, 4200);       # table ar, and ar_all with 4200 later bars
#   arrive('ar', 50);                    # 50 more bars arrive
#   my $hex = swapped_checkpoint('ar');  # the active model, short and long swapped
#   bars_until('ar', 'ar', 2000, q{jsonb_array_length(r -> 'actions') > 0});
#   my $v = copy_of_champion('ar');       # an imported, validated copy of the champion
package RlMlopsLive;

use strict;
use warnings;
use Exporter 'import';
use RlMlops;

our @EXPORT = qw(market arrive swapped_checkpoint bars_until copy_of_champion);

# Bars of one symbol: 1,500 before the current minute (to train on) and
# the rest after it, kept aside in ${table}_all to arrive one by one.
# Models trained on the first part, or imported now, go live on the second.
sub market
{
	my ($table, $phi, $seed, $future) = @_;
	sql(qq{
		CREATE TABLE ${table}_all AS
		SELECT * FROM rl_mlops.synthetic_bars(1, 1500 + $future, $phi, 0.01,
		    date_trunc('minute', now()) - interval '1500 minutes', '1 minute', $seed);
		CREATE TABLE $table AS SELECT * FROM ${table}_all WHERE ts < date_trunc('minute', now());
		CREATE INDEX ON $table (symbol, ts);
	});
}

# Let n more bars of a market arrive.
sub arrive
{
	my ($table, $n) = @_;
	sql(qq{INSERT INTO $table SELECT * FROM ${table}_all
	        WHERE ts > (SELECT max(ts) FROM $table) ORDER BY ts LIMIT $n});
}

# The active model's checkpoint (hex) with the short and long rows of its
# actor swapped: it trades against what it learned.
sub swapped_checkpoint
{
	my $agent = shift;
	my $hex = sql(qq{SELECT encode(rl_mlops.export_model('$agent'), 'hex')});
	my $bytes = pack('H*', $hex);
	my $hlen = unpack('Q<', substr($bytes, 0, 8));
	my $header = substr($bytes, 8, $hlen);
	for my $t ('actor.weight', 'actor.bias')
	{
		my ($shape, $o1, $o2) = $header =~ /"\Q$t\E":\{[^}]*"shape":\[([^\]]*)\][^}]*"data_offsets":\[(\d+),(\d+)\]/
		  or die "no $t in the header";
		my $row = ($o2 - $o1) / 3;
		my $base = 8 + $hlen + $o1;
		my $short = substr($bytes, $base, $row);
		substr($bytes, $base, $row) = substr($bytes, $base + 2 * $row, $row);
		substr($bytes, $base + 2 * $row, $row) = $short;
	}
	return unpack('H*', $bytes);
}

# An imported copy of the agent's active model, validated: a version to
# deploy over it or add as a challenger.
sub copy_of_champion
{
	my $agent = shift;
	my $v = sql(qq{SELECT rl_mlops.import_model('$agent', rl_mlops.export_model('$agent'))});
	sql(qq{SELECT rl_mlops.validate_model('$agent', '$v') IS NULL});
	return $v;
}

# A bar at a time, monitor() after every bar, until the SQL condition on
# its result r holds or max bars have arrived; returns the bars used.
sub bars_until
{
	my ($agent, $table, $max, $condition) = @_;
	return sql(qq{
		CREATE TEMP TABLE looks (n integer);
		DO \$\$
		DECLARE
		    r jsonb;
		BEGIN
		    FOR i IN 1 .. $max LOOP
		        INSERT INTO $table SELECT * FROM ${table}_all WHERE ts > (SELECT max(ts) FROM $table)
		         ORDER BY ts LIMIT 1;
		        r := rl_mlops.monitor('$agent');
		        INSERT INTO looks VALUES (i);
		        EXIT WHEN $condition;
		    END LOOP;
		END \$\$;
		SELECT max(n) FROM looks});
}

1;
