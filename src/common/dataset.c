/*-------------------------------------------------------------------------
 *
 * dataset.c
 *	  Step 1 of a training run: read the last data_window of the agent's
 *	  source relation with the privileges of the role that asked for the
 *	  run (the caller runs this as that role, see owner.c), per symbol in
 *	  time order, and split each series into training prices and a holdout
 *	  tail.
 *
 * The rows come from the one source reader (common/source.c): the same
 * checks, messages and SQLSTATEs as decide() and the backtests.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "utils/timestamp.h"

#include "source.h"
#include "dataset.h"

/*
 * Read the data window of the source and split it.  Runs inside a
 * transaction with an active snapshot, as the role that asked for the run.
 */
RlDataset *
rl_dataset_load(const RlAgent *agent, bool (*should_stop) (void))
{
	RlDataset  *ds = palloc0(sizeof(RlDataset));
	char	  **symbols;
	RlSourceRows **rows;
	int32		n = rl_source_read_window(&agent->source, agent->data_window,
										  &symbols, &rows, should_stop);
	int32		window = agent->arch.window;
	int64		total = 0;
	int64		n_gaps = 0;
	int64	   *gaps;
	TimestampTz newest = DT_NOBEGIN;

	ds->symbols = palloc(Max(n, 1) * sizeof(char *));
	ds->n_prices = palloc(Max(n, 1) * sizeof(int64));
	ds->n_train = palloc(Max(n, 1) * sizeof(int64));
	ds->holdout_from = palloc(Max(n, 1) * sizeof(TimestampTz));
	ds->holdout_to = palloc(Max(n, 1) * sizeof(TimestampTz));
	ds->series = palloc(Max(n, 1) * sizeof(RlSeries));
	ds->train = palloc(Max(n, 1) * sizeof(RlSeries));

	for (int32 i = 0; i < n; i++)
	{
		int64		len = rows[i]->n;
		int64		n_hold = (int64) floor(len * agent->holdout_fraction);
		int64		n_train = len - n_hold;
		int32		k = ds->n_series;

		total += len;
		newest = Max(newest, rows[i]->ts[len - 1]);
		/* too short to train on and to hold out at least one decision */
		if (n_train < window + 2 || n_hold < 1)
			continue;
		ds->symbols[k] = symbols[i];
		ds->n_prices[k] = len;
		ds->n_train[k] = n_train;
		ds->holdout_from[k] = rows[i]->ts[n_train - 1];
		ds->holdout_to[k] = rows[i]->ts[len - 1];
		ds->series[k] = rl_source_series(rows[i], symbols[i]);
		ds->train[k] = ds->series[k];
		ds->train[k].n = n_train;
		ds->train_decisions += rl_env_decisions(n_train, window);
		ds->holdout_decisions += n_hold;
		ds->first = k == 0 ? rows[i]->ts[0] : Min(ds->first, rows[i]->ts[0]);
		ds->last = k == 0 ? rows[i]->ts[len - 1] : Max(ds->last, rows[i]->ts[len - 1]);
		n_gaps += n_hold;
		ds->n_series++;
	}

	if (ds->n_series == 0)
		ereport(ERROR,
				(errcode(ERRCODE_NO_DATA_FOUND),
				 errmsg("not enough training data"),
				 errdetail("The last %s of the source hold " INT64_FORMAT " rows, counted back from its newest row (%s); every symbol needs at least %d prices for training plus a holdout tail of %g of its series.",
						   agent->data_window, total,
						   total > 0 ? timestamptz_to_str(newest) : "none",
						   window + 2, agent->holdout_fraction),
				 errhint("Add data, or lower window_size or holdout_fraction, or widen data_window; a row dated far in the future moves the window with it.")));

	/* The holdout bars' spacing: how backtest_summary() annualises them. */
	gaps = palloc_extended(n_gaps * sizeof(int64), MCXT_ALLOC_HUGE);
	n_gaps = 0;
	for (int32 i = 0, k = 0; i < n && k < ds->n_series; i++)
	{
		if (strcmp(symbols[i], ds->symbols[k]) != 0)
			continue;
		for (int64 t = ds->n_train[k] - 1; t < ds->n_prices[k] - 1; t++)
			gaps[n_gaps++] = rows[i]->ts[t + 1] - rows[i]->ts[t];
		k++;
	}
	ds->holdout_periods_per_year = rl_periods_per_year(gaps, n_gaps);
	pfree(gaps);

	/*
	 * Training and the backtests need only the returns (and features): give
	 * back the timestamps and prices, 16 bytes a row (issue 16).
	 */
	for (int32 i = 0; i < n; i++)
	{
		pfree(rows[i]->ts);
		pfree(rows[i]->prices);
		rows[i]->ts = NULL;
		rows[i]->prices = NULL;
	}
	return ds;
}
