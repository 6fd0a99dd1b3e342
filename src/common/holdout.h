/*-------------------------------------------------------------------------
 *
 * holdout.h
 *	  Judging a version on its holdout (ARCHITECTURE.md "Training"): the
 *	  greedy backtest of its weights on every symbol's holdout tail, pooled
 *	  and per symbol, the JSON recorded in models.metrics, and the
 *	  deployment gate.  The training worker judges what it trained and
 *	  validate_model() what was imported, with the same code.
 *
 * Include postgres.h first.
 *
 * src/common/holdout.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef RL_HOLDOUT_H
#define RL_HOLDOUT_H

#include "lib/stringinfo.h"

#include "agent.h"
#include "backtest.h"
#include "dataset.h"
#include "forward.h"

extern RlBacktestSummary rl_holdout_backtest(const RlDataset *ds,
											 const RlWeights *w, double sigma,
											 double cost, int32 only_series);
extern void rl_holdout_append_summary(StringInfo js, const char *name,
									  const RlBacktestSummary *s);
extern void rl_holdout_append_ranges(StringInfo js, const RlDataset *ds,
									 const RlWeights *w, double sigma,
									 double cost);
extern bool rl_gate_passes(const RlAgent *agent,
						   const RlBacktestSummary *cand,
						   const RlBacktestSummary *champ, char **why);

#endif							/* RL_HOLDOUT_H */
