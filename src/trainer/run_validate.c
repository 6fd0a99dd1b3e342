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
#include <sys/resource.h>

#include "catalog/pg_type.h"
#include "lib/stringinfo.h"
#include "utils/datetime.h"
#include "utils/json.h"
#include "utils/timestamp.h"

#include "holdout.h"
#include "trainer/run.h"

#define AGREEMENT_OBSERVATIONS 1024

/* Greedy backtest of some weights on every symbol's holdout tail. */
RlBacktestSummary
rl_run_holdout_backtest(const RunState *rs, const RlWeights *w, double sigma)
{
	return rl_holdout_backtest(rs->data, w, sigma, rs->agent->cost, -1);
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

/*
 * The metrics recorded with the version, as JSON: the holdout backtests,
 * each symbol's holdout bounds (for backtest_summary()) and its own
 * backtest, the scale, the data and the library.
 */
char *
rl_run_metrics(const RunState *rs, const RlWeights *w,
			   const RlBacktestSummary *cand, const RlBacktestSummary *initial,
			   const RlBacktestSummary *champ, double diff)
{
	RlDataset  *ds = rs->data;
	StringInfoData js;

	initStringInfo(&js);
	appendStringInfoChar(&js, '{');
	rl_holdout_append_summary(&js, "holdout", cand);
	appendStringInfoString(&js, ", ");
	rl_holdout_append_summary(&js, "initial", initial);
	if (rs->champion)
	{
		appendStringInfoString(&js, ", ");
		rl_holdout_append_summary(&js, "champion", champ);
		appendStringInfoString(&js, ", \"champion_version\": ");
		escape_json(&js, rs->champion->version);
	}
	appendStringInfoString(&js, ", ");
	rl_holdout_append_ranges(&js, ds, w, rs->sigma, rs->agent->cost);
	appendStringInfo(&js, ", \"forward_max_diff\": %.6g, \"sigma\": %.17g"
					 ", \"periods_per_year\": %.6g, \"symbols\": %d"
					 ", \"train_decisions\": " INT64_FORMAT
					 ", \"holdout_decisions\": " INT64_FORMAT
					 ", \"warm_start\": %s, \"fresh_optimizer\": %s"
					 ", \"worker_peak_rss_mb\": %.1f, \"libtorch\": ",
					 diff, rs->sigma, ds->holdout_periods_per_year, ds->n_series,
					 ds->train_decisions, ds->holdout_decisions,
					 rs->warm_start ? "true" : "false",
					 rs->fresh_optimizer ? "true" : "false", rl_run_peak_rss_mb());
	escape_json(&js, rs->torch_version);
	appendStringInfoChar(&js, '}');
	return js.data;
}

/*
 * The worker's peak resident memory so far, in MB (ru_maxrss, which Linux
 * reports in KB): the worker is a process of its own, so this is the run's.
 */
double
rl_run_peak_rss_mb(void)
{
	struct rusage ru;

	if (getrusage(RUSAGE_SELF, &ru) != 0)
		return -1;
	return ru.ru_maxrss / 1024.0;
}

/* Does the candidate pass the agent's deployment gate? */
bool
rl_run_gate_passes(const RunState *rs, const RlBacktestSummary *cand,
				   const RlBacktestSummary *champ, char **why)
{
	return rl_gate_passes(rs->agent, cand, champ, why);
}
