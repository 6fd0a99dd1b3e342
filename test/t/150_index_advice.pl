# create_agent() says when the source lacks the index decide() and
# monitor() need (issue 15, "Index advice"): a NOTICE with the CREATE
# INDEX statement; nothing when a b-tree leads with (symbol, time); for a
# view, that the table it reads needs one.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use RlMlops;

my $node = new_cluster('index_advice');
sql(q{CREATE EXTENSION rl_mlops;
      CREATE SCHEMA "Mkt";
      CREATE TABLE "Mkt"."Bars" ("Sym" text, "At" timestamptz, px float8);
      CREATE TABLE plain (symbol text, ts timestamptz, price float8);
      CREATE VIEW plain_v AS SELECT * FROM plain});

sub notices_of
{
	my ($q) = @_;
	my ($rc, $out, $err) = $node->psql('postgres', $q);
	die "failed: $err" if $rc != 0;
	return $err;
}

my $err = notices_of(q{SELECT rl_mlops.create_agent('a', '"Mkt"."Bars"', symbol_column => 'Sym',
                                                    time_column => 'At', price_column => 'px') IS NULL});
like($err, qr/NOTICE:  source "Mkt"."Bars" has no index leading with \(Sym, At\)/, 'no index: a NOTICE');
like($err, qr/HINT:  CREATE INDEX ON "Mkt"."Bars" \("Sym", "At"\);/, '... whose hint is the statement, quoted');
sql(q{CREATE INDEX ON "Mkt"."Bars" ("At", "Sym")});
$err = notices_of(q{SELECT rl_mlops.create_agent('b', '"Mkt"."Bars"', symbol_column => 'Sym',
                                                 time_column => 'At', price_column => 'px') IS NULL});
like($err, qr/has no index leading with/, 'an index in the other order does not count');
sql(q{CREATE INDEX ON "Mkt"."Bars" USING hash ("Sym")});
sql(q{CREATE INDEX ON "Mkt"."Bars" ("Sym", "At") WHERE px > 0});
$err = notices_of(q{SELECT rl_mlops.create_agent('c', '"Mkt"."Bars"', symbol_column => 'Sym',
                                                 time_column => 'At', price_column => 'px') IS NULL});
like($err, qr/has no index leading with/, 'nor a hash index or a partial one');
sql(q{CREATE INDEX ON "Mkt"."Bars" ("Sym", "At", px)});
$err = notices_of(q{SELECT rl_mlops.create_agent('d', '"Mkt"."Bars"', symbol_column => 'Sym',
                                                 time_column => 'At', price_column => 'px') IS NULL});
is($err, '', 'a b-tree leading with (symbol, time): no NOTICE');
$err = notices_of(q{SELECT rl_mlops.create_agent('e', 'plain_v') IS NULL});
like($err, qr/NOTICE:  source public.plain_v is a view: decide\(\) and monitor\(\) are fast only if the table it reads has an index/,
	'a view: the table it reads needs the index');
is(sql(q{SELECT count(*) FROM rl_mlops.agents}), '5', 'the NOTICE never stops create_agent');

$node->stop;
done_testing();
