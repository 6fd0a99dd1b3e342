/*-------------------------------------------------------------------------
 *
 * run_validate.c
 *	  Step 3's checks of a candidate that the registry cannot run itself:
 *	  libtorch's forward pass against the C one serving uses, holdout
 *	  backtests of the candidate, the untrained network and the champion,
 *	  the metrics recorded with the version, and the deployment gate.
 *
 * The holdout backtest is the one backtest_summary() runs: the same
 * environment (core/backtest.c) and the same annualisation
 * (rl_periods_per_year over the holdout bars), so the gate's holdout
 * Sharpe of a symbol equals backtest_summary(agent, symbol, holdout_from,
 * holdout_to, version) with the bounds recorded in the metrics.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "catalog/pg_type.h"
#include "lib/stringinfo.h"
#include "utils/datetime.h"
#include "utils/json.h"
#include "utils/timestamp.h"

#include "trainer/run.h"

#define AGREEMENT_OBSERVATIONS 1024

/* Greedy backtest of some weights on every symbol's holdout tail. */
RlBacktestSummary
rl_run_holdout_backtest(const RunState *rs, const RlWeights *w, double sigma)
{
	RlDataset  *ds = rs->data;
	RlBacktestRange *ranges = palloc(ds->n_series * sizeof(RlBacktestRange));
	float	   *work = palloc(RL_BACKTEST_WORK_FLOATS(&w->arch) * sizeof(float));
	RlBacktestSummary sum;
	char		err[RL_ENV_ERRLEN];

	for (int i = 0; i < ds->n_series; i++)
	{
		ranges[i].series = i;
		ranges[i].t_from = ds->n_train[i] - 1;
		ranges[i].t_to = ds->n_prices[i] - 2;
	}
	if (rl_backtest_multi(w, ds->series, ds->n_series, ranges, ds->n_series, sigma,
						  rs->agent->cost, ds->holdout_periods_per_year, work, &sum,
						  err) != RL_ENV_OK)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_EXCEPTION),
				 errmsg("holdout backtest failed"),
				 errdetail("%s", err)));
	return sum;
}

/*
 * Largest difference between libtorch's forward pass and the C one over
 * holdout observations: serving uses the C one, so they must agree.
 */
double
rl_run_forward_agreement(const RunState *rs, RlTorchNet *net, const RlWeights *w)
{
	RlDataset  *ds = rs->data;
	const RlArch *arch = &rs->agent->arch;
	int32		obs_dim = arch->obs_dim;
	float	   *obs = palloc(AGREEMENT_OBSERVATIONS * obs_dim * sizeof(float));
	float	   *probs = palloc(AGREEMENT_OBSERVATIONS * RL_N_ACTIONS * sizeof(float));
	float	   *values = palloc(AGREEMENT_OBSERVATIONS * sizeof(float));
	float	   *scratch = palloc(RL_FORWARD_SCRATCH(arch) * sizeof(float));
	char		err[RL_TORCH_ERRLEN];
	int64		n = 0;
	double		maxdiff = 0;

	for (int i = 0; i < ds->n_series && n < AGREEMENT_OBSERVATIONS; i++)
		for (int64 t = ds->n_train[i] - 1; t <= ds->n_prices[i] - 2 && n < AGREEMENT_OBSERVATIONS; t++)
		{
			if (rl_env_observation(&ds->series[i], arch->window, arch->n_features,
								   rs->sigma, t, (int32) (n % 3) - 1,
								   obs + n * obs_dim, err) != RL_ENV_OK)
				elog(ERROR, "could not build an observation: %s", err);
			n++;
		}
	if (rl_torch_forward(net, obs, n, probs, values, err) != RL_TORCH_OK)
		ereport(ERROR,
				(errcode(ERRCODE_EXTERNAL_ROUTINE_EXCEPTION),
				 errmsg("libtorch forward pass failed"),
				 errdetail("%s", err)));
	for (int64 i = 0; i < n; i++)
	{
		float		p[RL_N_ACTIONS];
		float		v;

		rl_forward(w, obs + i * obs_dim, p, &v, scratch);
		for (int a = 0; a < RL_N_ACTIONS; a++)
			maxdiff = Max(maxdiff, fabs(p[a] - probs[i * RL_N_ACTIONS + a]));
		maxdiff = Max(maxdiff, fabs(v - values[i]));
	}
	return maxdiff;
}

/* Append "name": {summary} to a JSON object under construction. */
static void
append_summary(StringInfo js, const char *name, const RlBacktestSummary *s)
{
	appendStringInfo(js, "\"%s\": {\"steps\": " INT64_FORMAT
					 ", \"total_log_return\": %.10g, \"sharpe\": %.10g"
					 ", \"max_drawdown\": %.10g, \"turnover\": %.10g"
					 ", \"buy_hold_log_return\": %.10g}",
					 name, (int64) s->n_steps, s->total_log_return, s->sharpe,
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
 * The metrics recorded with the version, as JSON: the holdout backtests,
 * each symbol's holdout bounds (for backtest_summary()), the scale, the
 * data and the library.
 */
char *
rl_run_metrics(const RunState *rs, const RlBacktestSummary *cand,
			   const RlBacktestSummary *initial, const RlBacktestSummary *champ,
			   double diff)
{
	RlDataset  *ds = rs->data;
	StringInfoData js;

	initStringInfo(&js);
	appendStringInfoChar(&js, '{');
	append_summary(&js, "holdout", cand);
	appendStringInfoString(&js, ", ");
	append_summary(&js, "initial", initial);
	if (rs->champion)
	{
		appendStringInfoString(&js, ", ");
		append_summary(&js, "champion", champ);
		appendStringInfoString(&js, ", \"champion_version\": ");
		escape_json(&js, rs->champion->version);
	}
	appendStringInfoString(&js, ", \"holdout_ranges\": {");
	for (int i = 0; i < ds->n_series; i++)
	{
		if (i > 0)
			appendStringInfoString(&js, ", ");
		escape_json(&js, ds->symbols[i]);
		appendStringInfoString(&js, ": {");
		append_time(&js, "from", ds->holdout_from[i]);
		appendStringInfoString(&js, ", ");
		append_time(&js, "to", ds->holdout_to[i]);
		appendStringInfoChar(&js, '}');
	}
	appendStringInfo(&js, "}, \"forward_max_diff\": %.6g, \"sigma\": %.17g"
					 ", \"periods_per_year\": %.6g, \"symbols\": %d"
					 ", \"train_decisions\": " INT64_FORMAT
					 ", \"holdout_decisions\": " INT64_FORMAT
					 ", \"warm_start\": %s, \"libtorch\": ",
					 diff, rs->sigma, ds->holdout_periods_per_year, ds->n_series,
					 ds->train_decisions, ds->holdout_decisions,
					 rs->warm_start ? "true" : "false");
	escape_json(&js, rs->torch_version);
	appendStringInfoChar(&js, '}');
	return js.data;
}

/* Does the candidate pass the agent's deployment gate? */
bool
rl_run_gate_passes(const RunState *rs, const RlBacktestSummary *cand,
				   const RlBacktestSummary *champ, char **why)
{
	const char *gate = rs->agent->deploy_gate;
	double		delta = rs->agent->gate_min_delta;

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
