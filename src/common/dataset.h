/*-------------------------------------------------------------------------
 *
 * dataset.h
 *	  Step 1 of a training run, and the data an imported version is judged
 *	  on (validate_model): the last data_window of an agent's source
 *	  relation, per symbol and in time order (the one source reader,
 *	  common/source.c), split into training prices and a holdout tail.
 *
 *-------------------------------------------------------------------------
 */
#ifndef RL_DATASET_H
#define RL_DATASET_H

#include "datatype/timestamp.h"

#include "agent.h"
#include "env.h"

typedef struct RlDataset
{
	int32		n_series;
	char	  **symbols;
	int64	   *n_prices;		/* all prices of each series */
	int64	   *n_train;		/* leading prices used for training */
	TimestampTz *holdout_from;	/* each series' bar of its first holdout
								 * decision (its last training price) */
	TimestampTz *holdout_to;	/* and its last bar */
	RlSeries   *series;			/* returns (and features) of all prices */
	RlSeries   *train;			/* the same, cut to n_train prices */
	TimestampTz first;			/* time range read */
	TimestampTz last;
	double		holdout_periods_per_year;	/* rl_periods_per_year of the
											 * holdout bars */
	int64		train_decisions;
	int64		holdout_decisions;
} RlDataset;

extern RlDataset *rl_dataset_load(const RlAgent *agent, bool (*should_stop) (void));

#endif							/* RL_DATASET_H */
