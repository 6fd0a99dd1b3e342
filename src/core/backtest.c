/*-------------------------------------------------------------------------
 *
 * backtest.c
 *	  Greedy backtest with the plain-C forward pass (see backtest.h).  All
 *	  accounting is in double; only the observation is float32.
 *
 * src/core/backtest.c
 *
 *-------------------------------------------------------------------------
 */
#include <math.h>
#include <stddef.h>

#include "backtest.h"

/* Running totals shared by the single-series and portfolio backtests. */
typedef RlPerfAcc BtAcc;

/*
 * Add one decision's outcome: a backtest and live monitoring keep the same
 * running totals, so their metrics are one definition.
 */
void
rl_perf_add(RlPerfAcc *acc, double net, double r_next, int32_t dpos)
{
	double		delta;
	double		dd;

	acc->cum += net;
	if (acc->cum > acc->peak)
		acc->peak = acc->cum;
	dd = 1.0 - exp(acc->cum - acc->peak);
	if (dd > acc->max_dd)
		acc->max_dd = dd;
	acc->n++;
	delta = net - acc->mean;
	acc->mean += delta / (double) acc->n;
	acc->m2 += delta * (net - acc->mean);
	acc->total += net;
	acc->buy_hold += r_next;
	acc->abs_dpos += dpos < 0 ? -dpos : dpos;
	if (net > 0)
		acc->hits++;
}

/* A bad architecture or missing tensor would crash rl_forward. */
static int
check_weights(const RlWeights *w, char *err)
{
	const RlArch *a;

	if (w == NULL)
		return rl_env_fail(err, RL_ENV_BAD_ARG, "weights must not be NULL");
	a = &w->arch;
	if (a->window < 1 || a->n_features < 0 || a->hidden < 1 ||
		a->obs_dim != a->window + 1 + a->n_features ||
		a->n_actions != RL_N_ACTIONS)
		return rl_env_fail(err, RL_ENV_BAD_ARG,
						   "bad architecture: window %d, n_features %d, obs_dim %d, hidden %d, n_actions %d",
						   (int) a->window, (int) a->n_features,
						   (int) a->obs_dim, (int) a->hidden,
						   (int) a->n_actions);
	if (w->trunk0_w == NULL || w->trunk0_b == NULL || w->trunk2_w == NULL ||
		w->trunk2_b == NULL || w->actor_w == NULL || w->actor_b == NULL ||
		w->critic_w == NULL || w->critic_b == NULL)
		return rl_env_fail(err, RL_ENV_BAD_ARG,
						   "every weight tensor must be provided");
	return RL_ENV_OK;
}

/* Arguments common to both entry points. */
static int
check_common(const RlWeights *w, double sigma, double cost,
			 double periods_per_year, const float *work, char *err)
{
	int			rc;

	rc = check_weights(w, err);
	if (rc != RL_ENV_OK)
		return rc;
	rc = rl_env_check_sigma(sigma, err);
	if (rc != RL_ENV_OK)
		return rc;
	if (!isfinite(cost) || cost < 0.0)
		return rl_env_fail(err, RL_ENV_BAD_ARG,
						   "cost must be finite and >= 0, got %g", cost);
	if (!isfinite(periods_per_year) || periods_per_year <= 0.0)
		return rl_env_fail(err, RL_ENV_BAD_ARG,
						   "periods_per_year must be finite and > 0, got %g",
						   periods_per_year);
	if (work == NULL)
		return rl_env_fail(err, RL_ENV_BAD_ARG, "work must not be NULL");
	return RL_ENV_OK;
}

/* Run one range through the model, adding its steps to acc. */
static int
backtest_range(const RlWeights *w, const RlSeries *s, double sigma,
			   double cost, int64_t t_from, int64_t t_to, float *work,
			   RlBacktestStep *steps, BtAcc *acc, char *err)
{
	const RlArch *arch = &w->arch;
	float	   *obs = work;
	float	   *scratch = obs + arch->obs_dim;
	float	   *probs = scratch + RL_FORWARD_SCRATCH(arch);
	int32_t		prev = 0;		/* every range starts flat */
	int64_t		t;

	if (s == NULL || s->returns == NULL)
		return rl_env_fail(err, RL_ENV_BAD_ARG,
						   "series and its returns must not be NULL");
	/* each range's equity starts at 1 */
	acc->cum = acc->peak = 0.0;
	if (t_from < arch->window || t_from > t_to || t_to > s->n - 2)
		return rl_env_fail(err, RL_ENV_TOO_SHORT,
						   "decision range [%lld, %lld] must satisfy %d <= t_from <= t_to <= %lld (series of %lld prices)",
						   (long long) t_from, (long long) t_to,
						   (int) arch->window, (long long) (s->n - 2),
						   (long long) s->n);

	for (t = t_from; t <= t_to; t++)
	{
		int			rc;
		int			a;
		int32_t		pos;
		double		r_next = s->returns[t + 1];
		double		net;

		rc = rl_env_observation(s, arch->window, arch->n_features, sigma, t,
								prev, obs, err);
		if (rc != RL_ENV_OK)
			return rc;
		rl_forward(w, obs, probs, NULL, scratch);
		a = rl_argmax(probs, arch->n_actions);
		if (a < 0 || a >= RL_N_ACTIONS || !isfinite(probs[a]))
			return rl_env_fail(err, RL_ENV_BAD_POLICY,
							   "forward pass gave no finite greedy action at t = %lld",
							   (long long) t);
		pos = rl_action_position(a);
		net = rl_env_net_return(pos, prev, r_next, cost);
		rl_perf_add(acc, net, r_next, pos - prev);

		if (steps != NULL)
		{
			RlBacktestStep *st = &steps[t - t_from];

			st->t = t;
			st->position = pos;
			st->net_return = net;
			st->reward = net / sigma;
			st->equity = exp(acc->cum);
		}
		prev = pos;
	}
	return RL_ENV_OK;
}

/* Turn the running totals into the reported metrics. */
void
rl_perf_summary(const RlPerfAcc *acc, double periods_per_year, RlBacktestSummary *sum)
{
	sum->n_steps = acc->n;
	sum->total_log_return = acc->total;
	sum->buy_hold_log_return = acc->buy_hold;
	sum->max_drawdown = acc->max_dd;
	sum->turnover = acc->n > 0 ? acc->abs_dpos / (double) acc->n : 0.0;
	sum->sharpe = 0.0;
	if (acc->n >= 2)
	{
		double		sd = sqrt(acc->m2 / (double) (acc->n - 1));

		/* a std that is only rounding noise of a constant series counts as 0 */
		if (sd > 1e-12 * fabs(acc->mean))
			sum->sharpe = acc->mean / sd * sqrt(periods_per_year);
	}
}

/* Holdout metrics and the per-step rows of one symbol. */
int
rl_backtest(const RlWeights *w, const RlSeries *s, double sigma, double cost,
			int64_t t_from, int64_t t_to, double periods_per_year,
			float *work, RlBacktestStep *steps, RlBacktestSummary *summary,
			char *err)
{
	BtAcc		acc = {0};
	int			rc;

	rc = check_common(w, sigma, cost, periods_per_year, work, err);
	if (rc != RL_ENV_OK)
		return rc;
	rc = backtest_range(w, s, sigma, cost, t_from, t_to, work, steps, &acc,
						err);
	if (rc != RL_ENV_OK)
		return rc;
	if (summary != NULL)
		rl_perf_summary(&acc, periods_per_year, summary);
	if (err != NULL)
		err[0] = '\0';
	return RL_ENV_OK;
}

/* Holdout metrics of an agent over all its symbols, for the deploy gate. */
int
rl_backtest_multi(const RlWeights *w, const RlSeries *series,
				  int32_t n_series, const RlBacktestRange *ranges,
				  int32_t n_ranges, double sigma, double cost,
				  double periods_per_year, float *work,
				  RlBacktestSummary *summary, char *err)
{
	BtAcc		acc = {0};
	int32_t		i;
	int			rc;

	rc = check_common(w, sigma, cost, periods_per_year, work, err);
	if (rc != RL_ENV_OK)
		return rc;
	if (ranges == NULL || n_ranges < 1 || series == NULL)
		return rl_env_fail(err, RL_ENV_BAD_ARG,
						   "need at least one range and the series");
	for (i = 0; i < n_ranges; i++)
	{
		if (ranges[i].series < 0 || ranges[i].series >= n_series)
			return rl_env_fail(err, RL_ENV_BAD_ARG,
							   "range %d names series %d of %d", (int) i,
							   (int) ranges[i].series, (int) n_series);
		rc = backtest_range(w, &series[ranges[i].series], sigma, cost,
							ranges[i].t_from, ranges[i].t_to, work, NULL,
							&acc, err);
		if (rc != RL_ENV_OK)
			return rc;
	}
	if (summary != NULL)
		rl_perf_summary(&acc, periods_per_year, summary);
	if (err != NULL)
		err[0] = '\0';
	return RL_ENV_OK;
}
