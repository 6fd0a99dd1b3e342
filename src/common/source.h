/*-------------------------------------------------------------------------
 *
 * source.h
 *	  The one reader of an agent's source relation (ARCHITECTURE.md, "The
 *	  data path"): timestamps, prices and optional features, in time order,
 *	  with the privileges of the calling role, for serving and training.
 *
 * The relation is an oid (the agent's regclass) and every column name
 * goes through quote_identifier; the symbol and the time bounds are query
 * parameters.  Nothing a user typed is pasted into SQL.
 *
 * Include postgres.h first.
 *
 *-------------------------------------------------------------------------
 */
#ifndef RL_SOURCE_H
#define RL_SOURCE_H

#include "datatype/timestamp.h"

#include "env.h"

/* Where an agent's prices are: columns of its rl_mlops.agents row. */
typedef struct RlSource
{
	const char *agent;			/* for messages */
	Oid			relid;			/* table or view */
	const char *symbol_column;
	const char *time_column;
	const char *price_column;
	const char *features_column;	/* NULL when the agent has none */
	int32		n_features;
} RlSource;

/* One symbol's rows, oldest first, in the caller's memory context. */
typedef struct RlSourceRows
{
	int64		n;
	int64		n_before;		/* leading rows older than the range asked
								 * for (the lookback) */
	TimestampTz *ts;
	double	   *prices;			/* finite and > 0 */
	float	   *features;		/* n * n_features, NULL without features */
} RlSourceRows;

/* The last max_rows rows with ts <= until (fewer if there are not so many). */
extern RlSourceRows *rl_source_read_last(const RlSource *src,
										 const char *symbol,
										 TimestampTz until, int64 max_rows);

/*
 * The rows with from <= ts <= until, preceded by up to lookback rows with
 * ts < from (counted in n_before).
 */
extern RlSourceRows *rl_source_read_range(const RlSource *src,
										  const char *symbol,
										  TimestampTz from, TimestampTz until,
										  int64 lookback);

/*
 * The rows with ts > after, preceded by up to lookback rows with
 * ts <= after (counted in n_before); no new row is no error.
 */
extern RlSourceRows *rl_source_read_after(const RlSource *src,
										  const char *symbol,
										  TimestampTz after, int64 lookback);

/*
 * Every symbol's rows of the last data_window (counted back from the newest
 * row), symbols in order; should_stop (or NULL) is asked between batches.
 */
extern int32 rl_source_read_window(const RlSource *src, const char *data_window,
								   char ***symbols, RlSourceRows ***series,
								   bool (*should_stop) (void));

/* The environment's series (log returns, features) of one symbol's rows. */
extern RlSeries rl_source_series(const RlSourceRows *rows, const char *symbol);

/*
 * Bars per year: 365.25 days divided by the median gap between the bars
 * evaluated (gaps in microseconds, sorted in place), or of n >= 2
 * consecutive timestamps.
 */
extern double rl_periods_per_year(int64 *gaps, int64 m);
extern double rl_source_periods_per_year(const TimestampTz *ts, int64 n);

#endif							/* RL_SOURCE_H */
