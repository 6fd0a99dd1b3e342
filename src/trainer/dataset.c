/*-------------------------------------------------------------------------
 *
 * dataset.c
 *	  Step 1 of a training run: read the last data_window of the agent's
 *	  source relation, with the privileges of the role that asked for the
 *	  run, per symbol in time order, and split each series into training
 *	  prices and a holdout tail.
 *
 * The relation comes from its regclass and every column name goes through
 * quote_identifier: nothing a user typed is pasted into SQL.  Rows arrive
 * through a cursor in batches, so the memory used is that of the arrays
 * kept, not of a result set.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/timestamp.h"

#include "source_relation.h"
#include "trainer/dataset.h"
#include "trainer/trainer.h"

#define FETCH_ROWS 10000

/* Growing arrays of the series being read. */
typedef struct SeriesBuilder
{
	char	   *symbol;
	int64		n;
	int64		cap;
	double	   *prices;
	double	   *times;
	float	   *features;
} SeriesBuilder;

/*
 * The SELECT that reads the data window, built from catalog names only,
 * every function and operator pg_catalog's.  The window counts back from
 * the newest finite time; rows at +infinity still arrive (they are after
 * it) and are counted and left out by append_row.  Locks the relation and
 * checks its columns first: a source dropped or altered since the run was
 * asked for is a clear error.
 */
static char *
build_query(const RlSourceConf *conf)
{
	StringInfoData q;
	const char *rel = rl_source_relation_lock(conf->relid, conf->agent);
	const char *sym = quote_identifier(conf->symbol_column);
	const char *ts = quote_identifier(conf->time_column);
	const char *price = quote_identifier(conf->price_column);

	rl_source_column_check(conf->relid, conf->agent, conf->symbol_column, RL_COLUMN_SYMBOL);
	rl_source_column_check(conf->relid, conf->agent, conf->time_column, RL_COLUMN_TIME);
	rl_source_column_check(conf->relid, conf->agent, conf->price_column, RL_COLUMN_PRICE);
	initStringInfo(&q);
	appendStringInfo(&q, "SELECT %s::pg_catalog.text, EXTRACT(epoch FROM %s)::pg_catalog.float8,"
					 " %s::pg_catalog.float8", sym, ts, price);
	if (conf->features_column)
	{
		rl_source_column_check(conf->relid, conf->agent, conf->features_column,
							   RL_COLUMN_FEATURES);
		appendStringInfo(&q, ", %s::pg_catalog.float4[]", quote_identifier(conf->features_column));
	}
	appendStringInfo(&q,
					 " FROM %s WHERE %s OPERATOR(pg_catalog.>)"
					 " ((SELECT pg_catalog.max(%s) FROM %s WHERE pg_catalog.isfinite(%s))"
					 "  OPERATOR(pg_catalog.-) $1::pg_catalog.interval)"
					 " ORDER BY 1, 2",
					 rel, ts, ts, rel, ts);
	return q.data;
}

/*
 * Append one row to the builder, refusing NULLs and bad feature arrays;
 * false for a row at time +infinity, which has no place in a series.
 */
static bool
append_row(SeriesBuilder *b, HeapTuple tup, TupleDesc desc, int32 n_features)
{
	bool		isnull;
	Datum		t = SPI_getbinval(tup, desc, 2, &isnull);
	Datum		p;

	if (isnull)
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("source has a NULL time for symbol \"%s\"", b->symbol)));
	if (!isfinite(DatumGetFloat8(t)))
		return false;
	p = SPI_getbinval(tup, desc, 3, &isnull);
	if (isnull)
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("source has a NULL price for symbol \"%s\"", b->symbol),
				 errdetail("Row %ld of the symbol in time order.", (long) b->n + 1)));
	if (b->n == b->cap)
	{
		b->cap = b->cap ? b->cap * 2 : 1024;
		b->prices = b->prices ? repalloc_huge(b->prices, b->cap * sizeof(double))
			: palloc_extended(b->cap * sizeof(double), MCXT_ALLOC_HUGE);
		b->times = b->times ? repalloc_huge(b->times, b->cap * sizeof(double))
			: palloc_extended(b->cap * sizeof(double), MCXT_ALLOC_HUGE);
		if (n_features > 0)
			b->features = b->features ?
				repalloc_huge(b->features, b->cap * n_features * sizeof(float)) :
				palloc_extended(b->cap * n_features * sizeof(float), MCXT_ALLOC_HUGE);
	}
	b->times[b->n] = DatumGetFloat8(t);
	b->prices[b->n] = DatumGetFloat8(p);
	if (n_features > 0)
	{
		Datum		f = SPI_getbinval(tup, desc, 4, &isnull);
		ArrayType  *arr;
		float	   *vals;

		if (isnull)
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("source has NULL features for symbol \"%s\"", b->symbol)));
		arr = DatumGetArrayTypeP(f);
		if (ARR_NDIM(arr) != 1 || ARR_DIMS(arr)[0] != n_features || ARR_HASNULL(arr))
			ereport(ERROR,
					(errcode(ERRCODE_ARRAY_SUBSCRIPT_ERROR),
					 errmsg("features of symbol \"%s\" must be arrays of %d non-NULL values",
							b->symbol, n_features)));
		vals = (float *) ARR_DATA_PTR(arr);
		for (int i = 0; i < n_features; i++)
		{
			if (!isfinite(vals[i]))
				ereport(ERROR,
						(errcode(ERRCODE_DATA_EXCEPTION),
						 errmsg("features of symbol \"%s\" contain a non-finite value",
								b->symbol)));
			b->features[b->n * n_features + i] = vals[i];
		}
		if ((Pointer) arr != DatumGetPointer(f))
			pfree(arr);
	}
	b->n++;
	return true;
}

/* Turn a finished builder into a series of the dataset, or drop it. */
static void
finish_series(RlDataset *ds, SeriesBuilder *b, const RlSourceConf *conf,
			  double *spacing_sum, int64 *spacing_n)
{
	int64		n = b->n;
	int64		n_hold = (int64) floor(n * conf->holdout_fraction);
	int64		n_train = n - n_hold;
	int32		i = ds->n_series;
	double	   *returns;
	char		err[RL_ENV_ERRLEN];

	/* Too short to train on and to hold out at least one decision. */
	if (n_train < conf->window + 2 || n_hold < 1)
		return;

	returns = palloc_extended(n * sizeof(double), MCXT_ALLOC_HUGE);
	if (rl_env_returns(b->prices, n, returns, err) != RL_ENV_OK)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_EXCEPTION),
				 errmsg("invalid price for symbol \"%s\"", b->symbol),
				 errdetail("%s.", err)));

	ds->symbols[i] = b->symbol;
	ds->n_prices[i] = n;
	ds->n_train[i] = n_train;
	ds->series[i].n = n;
	ds->series[i].returns = returns;
	ds->series[i].features = b->features;
	ds->train[i] = ds->series[i];
	ds->train[i].n = n_train;
	ds->train_decisions += rl_env_decisions(n_train, conf->window);
	ds->holdout_decisions += n_hold;
	ds->first_epoch = ds->n_series == 0 ? b->times[0] : Min(ds->first_epoch, b->times[0]);
	ds->last_epoch = ds->n_series == 0 ? b->times[n - 1] : Max(ds->last_epoch, b->times[n - 1]);
	*spacing_sum += b->times[n - 1] - b->times[0];
	*spacing_n += n - 1;
	ds->n_series++;
}

/*
 * Read the data window of the source and split it.  Runs inside a
 * transaction with SPI connected, as the role that asked for the run.
 */
RlDataset *
rl_dataset_load(const RlSourceConf *conf)
{
	MemoryContext cxt = CurrentMemoryContext;
	RlDataset  *ds = palloc0(sizeof(RlDataset));
	Oid			types[1] = {TEXTOID};
	Datum		values[1] = {CStringGetTextDatum(conf->data_window)};
	SPIPlanPtr	plan;
	Portal		portal;
	SeriesBuilder b = {0};
	int32		cap = 16;
	double		spacing_sum = 0;
	int64		spacing_n = 0;
	int64		rows = 0;
	double		newest = -INFINITY;	/* the window's end */

	ds->symbols = palloc(cap * sizeof(char *));
	ds->n_prices = palloc(cap * sizeof(int64));
	ds->n_train = palloc(cap * sizeof(int64));
	ds->series = palloc(cap * sizeof(RlSeries));
	ds->train = palloc(cap * sizeof(RlSeries));

	plan = SPI_prepare(build_query(conf), 1, types);
	if (plan == NULL)
		elog(ERROR, "could not prepare the data query: %s",
			 SPI_result_code_string(SPI_result));
	portal = SPI_cursor_open(NULL, plan, values, NULL, true);
	MemoryContextSwitchTo(cxt);	/* SPI leaves its own context current */

	for (;;)
	{
		SPI_cursor_fetch(portal, true, FETCH_ROWS);
		MemoryContextSwitchTo(cxt);
		if (SPI_processed == 0)
			break;
		for (uint64 r = 0; r < SPI_processed; r++)
		{
			HeapTuple	tup = SPI_tuptable->vals[r];
			char	   *symbol = SPI_getvalue(tup, SPI_tuptable->tupdesc, 1);

			if (symbol == NULL)
				ereport(ERROR,
						(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
						 errmsg("source has a NULL symbol")));
			if (b.symbol == NULL || strcmp(symbol, b.symbol) != 0)
			{
				if (b.symbol != NULL)
					finish_series(ds, &b, conf, &spacing_sum, &spacing_n);
				if (ds->n_series == cap)
				{
					cap *= 2;
					ds->symbols = repalloc(ds->symbols, cap * sizeof(char *));
					ds->n_prices = repalloc(ds->n_prices, cap * sizeof(int64));
					ds->n_train = repalloc(ds->n_train, cap * sizeof(int64));
					ds->series = repalloc(ds->series, cap * sizeof(RlSeries));
					ds->train = repalloc(ds->train, cap * sizeof(RlSeries));
				}
				memset(&b, 0, sizeof(b));
				b.symbol = pstrdup(symbol);
			}
			else
				pfree(symbol);
			if (append_row(&b, tup, SPI_tuptable->tupdesc, conf->n_features))
			{
				newest = Max(newest, b.times[b.n - 1]);
				rows++;
			}
			else
				ds->infinite_rows++;
		}
		SPI_freetuptable(SPI_tuptable);
		MemoryContextSwitchTo(cxt);
		if (rl_trainer_stop_requested)
			ereport(ERROR,
					(errcode(ERRCODE_QUERY_CANCELED),
					 errmsg("training run cancelled while reading data")));
	}
	if (b.symbol != NULL)
		finish_series(ds, &b, conf, &spacing_sum, &spacing_n);
	SPI_cursor_close(portal);
	MemoryContextSwitchTo(cxt);

	if (ds->n_series == 0)
		ereport(ERROR,
				(errcode(ERRCODE_NO_DATA_FOUND),
				 errmsg("not enough training data"),
				 errdetail("The last %s of the source hold %ld rows, counted back from its newest row (%s); every symbol needs at least %d prices for training plus a holdout tail of %g of its series.",
						   conf->data_window, (long) rows,
						   rows > 0 ? timestamptz_to_str(time_t_to_timestamptz((pg_time_t) newest)) : "none",
						   conf->window + 2, conf->holdout_fraction),
				 errhint("Add data, or lower window_size or holdout_fraction, or widen data_window; a row dated far in the future moves the window with it.")));
	ds->periods_per_year = spacing_n > 0 && spacing_sum > 0 ?
		365.25 * 86400.0 / (spacing_sum / spacing_n) : 252.0;
	return ds;
}
