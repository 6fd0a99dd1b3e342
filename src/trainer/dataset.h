/*-------------------------------------------------------------------------
 *
 * dataset.h
 *	  Step 1 of a training run: the last data_window of an agent's source
 *	  relation, per symbol and in time order, split into training prices
 *	  and a holdout tail.
 *
 *-------------------------------------------------------------------------
 */
#ifndef RL_DATASET_H
#define RL_DATASET_H

#include "datatype/timestamp.h"

#include "env.h"

/* Where an agent's prices are (columns already checked by create_agent). */
typedef struct RlSourceConf
{
	const char *agent;			/* for messages */
	Oid			relid;
	char	   *symbol_column;
	char	   *time_column;
	char	   *price_column;
	char	   *features_column;	/* NULL: none */
	int32		n_features;
	char	   *data_window;	/* interval, as text */
	double		holdout_fraction;
	int32		window;
} RlSourceConf;

typedef struct RlDataset
{
	int32		n_series;
	char	  **symbols;
	int64	   *n_prices;		/* all prices of each series */
	int64	   *n_train;		/* leading prices used for training */
	RlSeries   *series;			/* returns (and features) of all prices */
	RlSeries   *train;			/* the same, cut to n_train prices */
	double		first_epoch;	/* time range read, seconds since 1970 */
	double		last_epoch;
	double		periods_per_year;	/* from the mean bar spacing */
	int64		train_decisions;
	int64		holdout_decisions;
	int64		infinite_rows;	/* rows at time +infinity, left out */
} RlDataset;

extern RlDataset *rl_dataset_load(const RlSourceConf *conf);

#endif							/* RL_DATASET_H */
