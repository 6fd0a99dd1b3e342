# Weekly retraining with a real pg_cron: the cron job itself starts a run
# (trigger 'schedule') that trains, validates and deploys, as the role that
# scheduled it; status() and scheduler_status show it; the next tick does
# nothing because the agent is not due.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use RlMlops;

my $node = new_cluster('scheduler', cron => 1);

$node->safe_psql('postgres', q{
	CREATE EXTENSION pg_cron;
	CREATE EXTENSION rl_mlops;
	CREATE TABLE public.bars AS
	  SELECT * FROM rl_mlops.synthetic_bars(symbols => 2, bars => 1500);
});
small_agent($node, 'weekly', 'public.bars', initial_epochs => 3);
$node->safe_psql('postgres', q{
	CREATE ROLE trader LOGIN;
	GRANT USAGE ON SCHEMA rl_mlops, cron TO trader;
	GRANT SELECT ON public.bars TO trader;
	GRANT EXECUTE ON FUNCTION rl_mlops.schedule_retraining(text, integer, text),
	                          rl_mlops.set_scheduler(text, boolean, integer),
	                          rl_mlops.cron_job(text, text),
	                          rl_mlops.retrain_if_due(text),
	                          rl_mlops.retrain(text, boolean, integer, boolean)
	   TO trader;
	GRANT SELECT ON ALL TABLES IN SCHEMA rl_mlops TO trader;
});

# The trader schedules a check every minute (pg_cron 1.4 has minutes).
$node->safe_psql('postgres', q{
	SET ROLE trader;
	SELECT rl_mlops.schedule_retraining('weekly', interval_days => 7,
	                                    check_schedule => '* * * * *');
});
is($node->safe_psql('postgres',
	q{SELECT username FROM cron.job WHERE jobname = 'rl_mlops_retrain_weekly'}),
	'trader', 'the pg_cron job belongs to the role that scheduled it');

# Wait (bounded) for the cron tick to start a run and for it to end.
ok($node->poll_query_until('postgres', q{
	SELECT EXISTS (SELECT 1 FROM rl_mlops.runs WHERE agent = 'weekly'
	                AND trigger = 'schedule' AND state = 'succeeded')}),
	'a pg_cron tick started a run that succeeded');

is($node->safe_psql('postgres', q{
	SELECT requested_by || '|' || trigger || '|' || produced_version
	       = 'trader|schedule|' || (SELECT version FROM rl_mlops.models
	                                 WHERE agent = 'weekly' AND state = 'active')
	  FROM rl_mlops.runs WHERE agent = 'weekly'}),
	't', 'the run ran as trader and its model is the active one');

my $sched = $node->safe_psql('postgres', q{
	SELECT (s ->> 'model_loaded') || '|' || (s #>> '{scheduler,enabled}') || '|' ||
	       (s #>> '{scheduler,is_training}') || '|' || (s #>> '{scheduler,interval_days}') || '|' ||
	       ((s #>> '{scheduler,next_retrain_time}')::timestamptz
	         = (s #>> '{scheduler,last_retrain_time}')::timestamptz + interval '7 days') || '|' ||
	       ((s #>> '{scheduler,cron_job,schedule}'))
	  FROM (SELECT rl_mlops.status('weekly') -> 'status' AS s) x});
is($sched, 'true|true|false|7|true|* * * * *',
	'status() shows the model, the scheduler and its pg_cron job');

# The next tick finds the agent not due: still one run.
$node->safe_psql('postgres', q{
	SELECT pg_sleep(61 - extract(second FROM clock_timestamp())::int % 60)});
ok($node->poll_query_until('postgres', q{
	SELECT count(*) >= 2 FROM cron.job_run_details d JOIN cron.job j USING (jobid)
	 WHERE j.jobname = 'rl_mlops_retrain_weekly' AND d.status = 'succeeded'}),
	'a second tick ran');
is($node->safe_psql('postgres', q{SELECT count(*) FROM rl_mlops.runs WHERE agent = 'weekly'}),
	'1', 'a tick before the agent is due starts nothing');

# Catch-up after downtime: the last retrain 30 days ago is due at once.
$node->safe_psql('postgres', q{
	UPDATE rl_mlops.agents SET last_retrain_time = now() - interval '30 days'
	 WHERE name = 'weekly'});
ok($node->poll_query_until('postgres', q{
	SELECT count(*) = 2 AND bool_and(state = 'succeeded') FROM rl_mlops.runs
	 WHERE agent = 'weekly'}),
	'an overdue agent is retrained at the next tick, once');

$node->stop;
done_testing();
