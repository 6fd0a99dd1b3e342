/*-------------------------------------------------------------------------
 *
 * backtest.h
 *	  Greedy (argmax) backtest of a model over decision indexes of one or
 *	  several series, with the C forward pass (ARCHITECTURE.md "A training run", "Serving"):
 *	  holdout validation metrics and the per-step rows of backtest().
 *
 * Plain C99: no postgres.h, no allocation; the caller owns every buffer.
 * Errors as in env.h (RlEnvStatus plus an RL_ENV_ERRLEN message buffer).
 *
 * Accounting: the position starts flat at t_from; the decision at t holds
 * pos_t over (t, t+1] and earns pos_t * r_{t+1} - cost * |pos_t - pos_{t-1}|
 * (a net log return).  The position left at t_to is not closed: no exit
 * cost is charged, as in training.
 *
 * src/core/backtest.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef RL_BACKTEST_H
#define RL_BACKTEST_H

#include <stdint.h>

#include "env.h"
#include "forward.h"

/* Floats of scratch space (obs, forward scratch, probabilities). */
#define RL_BACKTEST_WORK_FLOATS(arch) \
	((arch)->obs_dim + RL_FORWARD_SCRATCH(arch) + (arch)->n_actions)

/* One decision of the backtest. */
typedef struct RlBacktestStep
{
	int64_t		t;				/* decision index into the series */
	int32_t		position;		/* held over (t, t+1]: -1, 0, +1 */
	double		net_return;		/* pos * r_{t+1} - cost * |dpos| */
	double		reward;			/* net_return / sigma */
	double		equity;			/* exp(cumulative net log return), from 1 */
} RlBacktestStep;

/* Metrics of a backtest, for validation and the deploy gate. */
typedef struct RlBacktestSummary
{
	int64_t		n_steps;
	double		total_log_return;	/* sum of net log returns */
	double		sharpe;			/* mean / sample std of per-step net log
								 * returns * sqrt(periods_per_year); 0 when
								 * fewer than 2 steps or std is 0 (at most
								 * 1e-12 |mean|: rounding noise) */
	double		max_drawdown;	/* max of 1 - equity / running peak (peak
								 * starts at 1.0), in [0, 1) */
	double		turnover;		/* mean |position change| per step */
	double		buy_hold_log_return;	/* sum of r_{t+1} over the same
										 * steps */
} RlBacktestSummary;

/* A decision range of one series, for the portfolio variant. */
typedef struct RlBacktestRange
{
	int32_t		series;
	int64_t		t_from;
	int64_t		t_to;
} RlBacktestRange;

/*
 * Running totals of a sequence of decisions (a backtest's, or a version's
 * live ones): one definition of the metrics for both.  Zero-initialise.
 */
typedef struct RlPerfAcc
{
	int64_t		n;
	double		mean;			/* Welford mean of net log returns */
	double		m2;				/* Welford sum of squared deviations */
	double		total;			/* sum of net log returns */
	double		buy_hold;		/* sum of r_{t+1} */
	double		abs_dpos;		/* sum of |position change| */
	double		max_dd;			/* max of 1 - equity / running peak */
	double		cum;			/* log equity now (from 0) */
	double		peak;			/* log of the running peak equity */
	int64_t		hits;			/* decisions with a positive net return */
} RlPerfAcc;

extern void rl_perf_add(RlPerfAcc *acc, double net, double r_next, int32_t dpos);
extern void rl_perf_summary(const RlPerfAcc *acc, double periods_per_year,
							RlBacktestSummary *sum);

/*
 * Backtest decisions t_from .. t_to (window <= t_from <= t_to <= n - 2) of
 * one series; window and n_features come from w->arch.  steps (may be
 * NULL) receives t_to - t_from + 1 rows; summary may be NULL.  work holds
 * RL_BACKTEST_WORK_FLOATS(&w->arch) floats.
 */
extern int	rl_backtest(const RlWeights *w, const RlSeries *s, double sigma,
						double cost, int64_t t_from, int64_t t_to,
						double periods_per_year, float *work,
						RlBacktestStep *steps, RlBacktestSummary *summary,
						char *err);

/*
 * Backtest several series as an equal-weight portfolio of one unit per
 * symbol, each range starting flat: n_steps, total_log_return,
 * buy_hold_log_return and the |position change| behind turnover are
 * summed over the ranges (turnover = total |dpos| / total steps); Sharpe
 * is computed over the concatenation of all per-step net log returns
 * (an approximation that ignores that the symbols trade side by side);
 * max_drawdown is the worst drawdown of any single range.  A series may
 * appear in several ranges.
 */
extern int	rl_backtest_multi(const RlWeights *w, const RlSeries *series,
							  int32_t n_series, const RlBacktestRange *ranges,
							  int32_t n_ranges, double sigma, double cost,
							  double periods_per_year, float *work,
							  RlBacktestSummary *summary, char *err);

#endif							/* RL_BACKTEST_H */
