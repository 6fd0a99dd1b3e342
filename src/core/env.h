/*-------------------------------------------------------------------------
 *
 * env.h
 *	  The trading environment of ARCHITECTURE.md "The trading environment": log returns, the return
 *	  scale sigma, observations, rewards and the episode table.  Shared by
 *	  the training rollout, the backtest and serving.
 *
 * Plain C99: no postgres.h, no allocation; the caller owns every buffer.
 * Functions that can fail return an RlEnvStatus and, on failure, write a
 * lower-case message of at most RL_ENV_ERRLEN bytes (terminator included)
 * into "err", which may be NULL (no message).  On success err is set to the
 * empty string.
 *
 * Conventions, for one symbol with prices p_0 .. p_{n-1}:
 *	- returns[t] = ln(p_t / p_{t-1}) for t >= 1; returns[0] is stored as 0
 *	  and never used.
 *	- a decision at t (W <= t <= n - 2) sees r_{t-W+1} .. r_t and the
 *	  position held coming into t, picks the position held from t to t + 1
 *	  and is rewarded with r_{t+1}.  The last price has no next return, so
 *	  it gets no decision (serving may still build its observation).
 *	- positions are -1 (short), 0 (flat), +1 (long); action a is position
 *	  a - 1.
 *
 * src/core/env.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef RL_ENV_H
#define RL_ENV_H

#include <stdint.h>

#include "rl_arch.h"

#define RL_ENV_ERRLEN 256

/* Defaults of ARCHITECTURE.md "The trading environment". */
#define RL_DEFAULT_WINDOW 32
#define RL_DEFAULT_EPISODE_LEN 256
#define RL_DEFAULT_COST 0.0005	/* 5 bp, in log-return units */

typedef enum RlEnvStatus
{
	RL_ENV_OK = 0,
	RL_ENV_BAD_ARG = 1,			/* NULL pointer or parameter out of range */
	RL_ENV_TOO_SHORT = 2,		/* not enough prices, returns or decisions */
	RL_ENV_BAD_PRICE = 3,		/* a price is non-finite or <= 0 */
	RL_ENV_BAD_SIGMA = 4,		/* sigma is non-finite or <= 0 */
	RL_ENV_NO_SPACE = 5,		/* a caller's buffer is too small */
	RL_ENV_BAD_POLICY = 6,		/* policy output non-finite or not a
								 * distribution */
	RL_ENV_ABORTED = 7			/* the policy callback asked to stop */
} RlEnvStatus;

/* One symbol's data as the environment reads it. */
typedef struct RlSeries
{
	int64_t		n;				/* number of prices */
	const double *returns;		/* n log returns, returns[0] unused */
	const float *features;		/* n * n_features, row-major; NULL when the
								 * agent has no features column */
} RlSeries;

/* One episode: decisions at t0 .. t0 + len - 1 of series "series". */
typedef struct RlEpisode
{
	int32_t		series;
	int64_t		t0;
	int32_t		len;
} RlEpisode;

/* Position held after taking action a (0, 1, 2 -> -1, 0, +1). */
static inline int32_t
rl_action_position(int32_t action)
{
	return action - 1;
}

/* Net log return of holding pos over (t, t+1] after moving from prev_pos. */
static inline double
rl_env_net_return(int32_t pos, int32_t prev_pos, double r_next, double cost)
{
	int32_t		dpos = pos - prev_pos;

	return (double) pos * r_next - cost * (double) (dpos < 0 ? -dpos : dpos);
}

/* Write a formatted message into err (if not NULL) and return code. */
extern int	rl_env_fail(char *err, int code, const char *fmt,...)
#ifdef __GNUC__
			__attribute__((format(printf, 3, 4)))
#endif
			;

/*
 * Log returns of n >= 1 prices into returns[0 .. n-1] (returns[0] = 0).
 * Every price must be finite and > 0; the message names the first bad
 * index.
 */
extern int	rl_env_returns(const double *prices, int64_t n, double *returns,
						   char *err);

/*
 * sigma = sample standard deviation (divisor m - 1) of the m training
 * returns r_1 .. r_{n-1} of all series pooled (one sigma per agent, stored
 * in the checkpoint).  Needs m >= 2; fails with RL_ENV_BAD_SIGMA if the
 * result is not finite and > 0 (constant prices, non-finite returns).
 */
extern int	rl_env_sigma(const RlSeries *series, int32_t n_series,
						 double *sigma, char *err);

/* RL_ENV_OK if sigma can scale returns (finite and > 0). */
extern int	rl_env_check_sigma(double sigma, char *err);

/*
 * Decisions a series of n prices yields with window W: t = W .. n - 2,
 * that is max(0, n - W - 1).
 */
extern int64_t rl_env_decisions(int64_t n_prices, int32_t window);

/*
 * The observation at t (window <= t <= n - 1), window + 1 + n_features
 * floats: r_{t-W+1} / sigma .. r_t / sigma, then position (the position
 * held coming into t, -1, 0 or +1), then the features of row t.
 */
extern int	rl_env_observation(const RlSeries *s, int32_t window,
							   int32_t n_features, double sigma, int64_t t,
							   int32_t position, float *obs, char *err);

/* Reward of holding pos over (t, t+1]: net log return / sigma. */
extern double rl_env_reward(int32_t pos, int32_t prev_pos, double r_next,
							double cost, double sigma);

/*
 * Count the episodes (and decisions, either output may be NULL) that
 * series of n_prices[0 .. n_series-1] prices produce with window W and
 * episode_len decisions per episode.
 */
extern int	rl_env_count_episodes(const int64_t *n_prices, int32_t n_series,
								  int32_t window, int32_t episode_len,
								  int64_t *n_episodes, int64_t *n_decisions,
								  char *err);

/*
 * Fill the episode table: per series in order, consecutive chunks of
 * episode_len decisions starting at t = W.  A trailing chunk shorter than
 * episode_len (at least one decision) is an episode of its own.  Series
 * shorter than W + 2 prices give none.  Fails with RL_ENV_NO_SPACE if more
 * than max_out episodes would be written.
 */
extern int	rl_env_episodes(const int64_t *n_prices, int32_t n_series,
							int32_t window, int32_t episode_len,
							RlEpisode *out, int64_t max_out, int64_t *n_out,
							char *err);

#endif							/* RL_ENV_H */
