/*-------------------------------------------------------------------------
 *
 * holdout.c
 *	  A version's holdout backtest, its JSON and the deployment gate, for
 *	  trained and imported versions alike.
 *
 * src/common/holdout.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "utils/datetime.h"
#include "utils/json.h"

#include "holdout.h"

/*
 * Greedy backtest of some weights on every symbol's holdout tail (or only
 * series only_series when >= 0), annualised with the holdout bars' spacing.
 */
RlBacktestSummary
rl_holdout_backtest(const RlDataset *ds, const RlWeights *w, double sigma,
					double cost, int32 only_series)
{
	RlBacktestRange *ranges = palloc(Max(ds->n_series, 1) * sizeof(RlBacktestRange));
	float	   *work = palloc(RL_BACKTEST_WORK_FLOATS(&w->arch) * sizeof(float));
	RlBacktestSummary sum;
	char		err[RL_ENV_ERRLEN];
	int32		n = 0;

	for (int i = 0; i < ds->n_series; i++)
	{
		if (only_series >= 0 && i != only_series)
			continue;
		ranges[n].series = i;
		ranges[n].t_from = ds->n_train[i] - 1;
		ranges[n].t_to = ds->n_prices[i] - 2;
		n++;
	}
	if (rl_backtest_multi(w, ds->series, ds->n_series, ranges, n, sigma, cost,
						  ds->holdout_periods_per_year, work, &sum,
						  err) != RL_ENV_OK)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_EXCEPTION),
				 errmsg("holdout backtest failed"),
				 errdetail("%s", err)));
	pfree(ranges);
	pfree(work);
	return sum;
}

/* Append "name": {summary} to a JSON object under construction. */
void
rl_holdout_append_summary(StringInfo js, const char *name,
						  const RlBacktestSummary *s)
{
	escape_json(js, name);
	appendStringInfo(js, ": {\"steps\": " INT64_FORMAT
					 ", \"total_log_return\": %.10g, \"sharpe\": %.10g"
					 ", \"max_drawdown\": %.10g, \"turnover\": %.10g"
					 ", \"buy_hold_log_return\": %.10g}",
					 (int64) s->n_steps, s->total_log_return, s->sharpe,
					 s->max_drawdown, s->turnover, s->buy_hold_log_return);
}

/* Append "name": "timestamp" (UTC, ISO 8601) to a JSON object. */
static void
append_time(StringInfo js, const char *name, TimestampTz ts)
{
	char		buf[MAXDATELEN + 1];

	appendStringInfo(js, "\"%s\": ", name);
	escape_json(js, JsonEncodeDateTime(buf, TimestampTzGetDatum(ts), TIMESTAMPTZOID, NULL));
}

/*
 * Append "holdout_ranges" (each symbol's holdout bounds, which
 * backtest_summary() takes to repeat the backtest) and "holdout_by_symbol"
 * (each symbol's own backtest of w: a pooled Sharpe can hide one symbol
 * that loses).
 */
void
rl_holdout_append_ranges(StringInfo js, const RlDataset *ds,
						 const RlWeights *w, double sigma, double cost)
{
	appendStringInfoString(js, "\"holdout_ranges\": {");
	for (int i = 0; i < ds->n_series; i++)
	{
		if (i > 0)
			appendStringInfoString(js, ", ");
		escape_json(js, ds->symbols[i]);
		appendStringInfoString(js, ": {");
		append_time(js, "from", ds->holdout_from[i]);
		appendStringInfoString(js, ", ");
		append_time(js, "to", ds->holdout_to[i]);
		appendStringInfoChar(js, '}');
	}
	appendStringInfoString(js, "}, \"holdout_by_symbol\": {");
	for (int i = 0; i < ds->n_series; i++)
	{
		RlBacktestSummary s = rl_holdout_backtest(ds, w, sigma, cost, i);

		if (i > 0)
			appendStringInfoString(js, ", ");
		rl_holdout_append_summary(js, ds->symbols[i], &s);
	}
	appendStringInfoChar(js, '}');
}

/*
 * Does the candidate pass the agent's deployment gate against the active
 * model's backtest on the same bars (champ NULL: nothing to beat)?
 */
bool
rl_gate_passes(const RlAgent *agent, const RlBacktestSummary *cand,
			   const RlBacktestSummary *champ, char **why)
{
	const char *gate = agent->deploy_gate;
	double		delta = agent->gate_min_delta;

	if (strcmp(gate, "valid") == 0 || champ == NULL)
	{
		*why = psprintf("gate %s: passed", champ ? gate : "(no active model)");
		return true;
	}
	if (strcmp(gate, "not_worse") == 0 ? cand->sharpe >= champ->sharpe - delta
		: cand->sharpe > champ->sharpe + delta)
	{
		*why = psprintf("gate %s: holdout Sharpe %.4f against %.4f (min change %g)",
						gate, cand->sharpe, champ->sharpe, delta);
		return true;
	}
	*why = psprintf("gate %s: holdout Sharpe %.4f does not beat %.4f (min change %g)",
					gate, cand->sharpe, champ->sharpe, delta);
	return false;
}
