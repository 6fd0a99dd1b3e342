/*-------------------------------------------------------------------------
 *
 * env.c
 *	  The trading environment of ARCHITECTURE.md "The trading environment" (see env.h for the
 *	  conventions).  Sums run in double; observations are float32 because
 *	  the network consumes them.
 *
 * src/core/env.c
 *
 *-------------------------------------------------------------------------
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>

#include "env.h"

/* One place formats errors, so every caller gets the same NULL handling. */
int
rl_env_fail(char *err, int code, const char *fmt,...)
{
	va_list		ap;

	if (err != NULL)
	{
		va_start(ap, fmt);
		vsnprintf(err, RL_ENV_ERRLEN, fmt, ap);
		va_end(ap);
	}
	return code;
}

/* Success clears the message so a stale one is never reported. */
static int
env_ok(char *err)
{
	if (err != NULL)
		err[0] = '\0';
	return RL_ENV_OK;
}

/* Prices become log returns; bad prices are named by index. */
int
rl_env_returns(const double *prices, int64_t n, double *returns, char *err)
{
	int64_t		t;

	if (prices == NULL || returns == NULL)
		return rl_env_fail(err, RL_ENV_BAD_ARG,
						   "prices and returns must not be NULL");
	if (n < 1)
		return rl_env_fail(err, RL_ENV_TOO_SHORT,
						   "need at least 1 price, got %lld", (long long) n);
	for (t = 0; t < n; t++)
	{
		if (!isfinite(prices[t]) || prices[t] <= 0.0)
			return rl_env_fail(err, RL_ENV_BAD_PRICE,
							   "price at index %lld is %g: prices must be finite and positive",
							   (long long) t, prices[t]);
	}
	returns[0] = 0.0;
	for (t = 1; t < n; t++)
	{
		/* positive finite prices can still overflow: 1e300 after 1e-310 */
		returns[t] = log(prices[t] / prices[t - 1]);
		if (!isfinite(returns[t]))
			return rl_env_fail(err, RL_ENV_BAD_PRICE,
							   "log return at index %lld, from price %g to %g, is not finite",
							   (long long) t, prices[t - 1], prices[t]);
	}
	return env_ok(err);
}

/* A sigma that is zero or NaN would poison every observation and reward. */
int
rl_env_check_sigma(double sigma, char *err)
{
	if (!isfinite(sigma) || sigma <= 0.0)
		return rl_env_fail(err, RL_ENV_BAD_SIGMA,
						   "return scale sigma is %g: it must be finite and positive",
						   sigma);
	return env_ok(err);
}

/*
 * Sample std of the pooled training returns, two passes (mean first) so
 * small returns around a drift keep their precision.
 */
int
rl_env_sigma(const RlSeries *series, int32_t n_series, double *sigma,
			 char *err)
{
	int64_t		m = 0;
	double		sum = 0.0;
	double		mean;
	double		ss = 0.0;
	int32_t		i;
	int64_t		t;

	if (series == NULL || sigma == NULL || n_series < 0)
		return rl_env_fail(err, RL_ENV_BAD_ARG,
						   "series and sigma must not be NULL");
	for (i = 0; i < n_series; i++)
	{
		if (series[i].n > 1 && series[i].returns == NULL)
			return rl_env_fail(err, RL_ENV_BAD_ARG,
							   "returns of series %d are NULL", (int) i);
		for (t = 1; t < series[i].n; t++)
			sum += series[i].returns[t];
		if (series[i].n > 1)
			m += series[i].n - 1;
	}
	if (m < 2)
		return rl_env_fail(err, RL_ENV_TOO_SHORT,
						   "need at least 2 returns (3 prices) to estimate sigma, got %lld",
						   (long long) m);
	mean = sum / (double) m;
	for (i = 0; i < n_series; i++)
	{
		for (t = 1; t < series[i].n; t++)
		{
			double		d = series[i].returns[t] - mean;

			ss += d * d;
		}
	}
	*sigma = sqrt(ss / (double) (m - 1));
	return rl_env_check_sigma(*sigma, err);
}

/* Decisions need W returns behind them and one return ahead. */
int64_t
rl_env_decisions(int64_t n_prices, int32_t window)
{
	int64_t		d = n_prices - (int64_t) window - 1;

	return d > 0 ? d : 0;
}

/* The network's input at t, the same for training, backtest and serving. */
int
rl_env_observation(const RlSeries *s, int32_t window, int32_t n_features,
				   double sigma, int64_t t, int32_t position, float *obs,
				   char *err)
{
	const double *r;
	int32_t		j;

	if (s == NULL || s->returns == NULL || obs == NULL)
		return rl_env_fail(err, RL_ENV_BAD_ARG,
						   "series, returns and obs must not be NULL");
	if (window < 1 || n_features < 0)
		return rl_env_fail(err, RL_ENV_BAD_ARG,
						   "window must be >= 1 and n_features >= 0, got %d and %d",
						   (int) window, (int) n_features);
	if (n_features > 0 && s->features == NULL)
		return rl_env_fail(err, RL_ENV_BAD_ARG,
						   "series has no features but n_features is %d",
						   (int) n_features);
	if (t < window || t >= s->n)
		return rl_env_fail(err, RL_ENV_TOO_SHORT,
						   "observation at t = %lld needs %d <= t <= %lld",
						   (long long) t, (int) window, (long long) (s->n - 1));
	if (position < -1 || position > 1)
		return rl_env_fail(err, RL_ENV_BAD_ARG,
						   "position must be -1, 0 or 1, got %d", (int) position);
	if (!isfinite(sigma) || sigma <= 0.0)
		return rl_env_check_sigma(sigma, err);

	r = s->returns + (t - window + 1);
	for (j = 0; j < window; j++)
		obs[j] = (float) (r[j] / sigma);
	obs[window] = (float) position;
	for (j = 0; j < n_features; j++)
		obs[window + 1 + j] = s->features[t * n_features + j];
	return env_ok(err);
}

/* Rewards are net log returns in units of sigma, so scale-free per agent. */
double
rl_env_reward(int32_t pos, int32_t prev_pos, double r_next, double cost,
			  double sigma)
{
	return rl_env_net_return(pos, prev_pos, r_next, cost) / sigma;
}

/* Shared argument checks of the two episode-table functions. */
static int
episode_args(const int64_t *n_prices, int32_t n_series, int32_t window,
			 int32_t episode_len, char *err)
{
	int32_t		i;

	if (n_prices == NULL && n_series > 0)
		return rl_env_fail(err, RL_ENV_BAD_ARG, "n_prices must not be NULL");
	if (n_series < 0 || window < 1 || episode_len < 1)
		return rl_env_fail(err, RL_ENV_BAD_ARG,
						   "n_series must be >= 0, window and episode_len >= 1, got %d, %d and %d",
						   (int) n_series, (int) window, (int) episode_len);
	for (i = 0; i < n_series; i++)
	{
		if (n_prices[i] < 0)
			return rl_env_fail(err, RL_ENV_BAD_ARG,
							   "series %d has a negative length", (int) i);
	}
	return RL_ENV_OK;
}

/* Lets the caller size the episode table and the rollout buffers. */
int
rl_env_count_episodes(const int64_t *n_prices, int32_t n_series,
					  int32_t window, int32_t episode_len,
					  int64_t *n_episodes, int64_t *n_decisions, char *err)
{
	int64_t		ne = 0;
	int64_t		nd = 0;
	int32_t		i;
	int			rc;

	rc = episode_args(n_prices, n_series, window, episode_len, err);
	if (rc != RL_ENV_OK)
		return rc;
	for (i = 0; i < n_series; i++)
	{
		int64_t		d = rl_env_decisions(n_prices[i], window);

		nd += d;
		ne += (d + episode_len - 1) / episode_len;
	}
	if (n_episodes != NULL)
		*n_episodes = ne;
	if (n_decisions != NULL)
		*n_decisions = nd;
	return env_ok(err);
}

/* Cut each series into fixed-length episodes, the unit that resets to flat. */
int
rl_env_episodes(const int64_t *n_prices, int32_t n_series, int32_t window,
				int32_t episode_len, RlEpisode *out, int64_t max_out,
				int64_t *n_out, char *err)
{
	int64_t		k = 0;
	int32_t		i;
	int			rc;

	rc = episode_args(n_prices, n_series, window, episode_len, err);
	if (rc != RL_ENV_OK)
		return rc;
	if (n_out == NULL || (out == NULL && max_out > 0))
		return rl_env_fail(err, RL_ENV_BAD_ARG,
						   "out and n_out must not be NULL");
	for (i = 0; i < n_series; i++)
	{
		int64_t		d = rl_env_decisions(n_prices[i], window);
		int64_t		start;

		/* the last chunk may be shorter than episode_len: still an episode */
		for (start = 0; start < d; start += episode_len)
		{
			int64_t		len = d - start;

			if (k >= max_out)
				return rl_env_fail(err, RL_ENV_NO_SPACE,
								   "episode table holds %lld episodes, more are needed",
								   (long long) max_out);
			out[k].series = i;
			out[k].t0 = (int64_t) window + start;
			out[k].len = (int32_t) (len < episode_len ? len : episode_len);
			k++;
		}
	}
	*n_out = k;
	return env_ok(err);
}
