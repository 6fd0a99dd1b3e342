/*-------------------------------------------------------------------------
 *
 * source.c
 *	  The one reader of an agent's source relation (see source.h), through
 *	  SPI as the calling role: one symbol's latest rows (decide), a time
 *	  range (backtests), every symbol's data window (training).  The same
 *	  rows, order, checks and SQLSTATEs for all of them.
 *
 * The query text is built only from the relation's qualified name (looked
 * up from its oid under a lock), quote_identifier'd column names and
 * pg_catalog's functions and operators; the symbol, the time bounds, the
 * window and the row limit are parameters.  The symbol parameter has the
 * type of the symbol column, so an index on (symbol, ts) is used.  Rows
 * at time +-infinity have no place in a series and are never read.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "lib/stringinfo.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/timestamp.h"

#include "env.h"
#include "plan_cache.h"
#include "source.h"
#include "source_relation.h"

/* Rows fetched from the cursor at a time. */
#define SOURCE_BATCH 10000

/* What one read needs besides the rows it fills. */
typedef struct SourceRead
{
	const RlSource *src;
	const char *symbol;
	char	   *relname;		/* qualified and quoted */
	Oid			symbol_type;
	Datum		symbol_value;
	RlSourceRows *rows;
	int64		capacity;
	int			first_col;		/* of ts; the symbol, if read, is before */
} SourceRead;

/*
 * The symbol as a value of the symbol column's type (text, varchar, an
 * enum...), so that the comparison in the query needs no cast.
 */
static void
symbol_param(SourceRead *rd)
{
	AttrNumber	att = get_attnum(rd->src->relid, rd->src->symbol_column);
	Oid			typinput;
	Oid			typioparam;

	rd->symbol_type = get_atttype(rd->src->relid, att);
	getTypeInputInfo(rd->symbol_type, &typinput, &typioparam);
	rd->symbol_value = OidInputFunctionCall(typinput, (char *) rd->symbol,
											typioparam, -1);
}

/* "ts::timestamptz, price::float8[, features::float4[]]" */
static void
append_columns(StringInfo q, const RlSource *src)
{
	appendStringInfo(q, "%s::pg_catalog.timestamptz, %s::pg_catalog.float8",
					 quote_identifier(src->time_column),
					 quote_identifier(src->price_column));
	if (src->features_column != NULL)
		appendStringInfo(q, ", %s::pg_catalog.float4[]",
						 quote_identifier(src->features_column));
}

/*
 * "SELECT ts, price[, features] FROM rel WHERE symbol = $1 AND
 * isfinite(ts) AND ".  Every operator is pg_catalog's, named explicitly:
 * the query runs with the caller's search_path, which must not be able to
 * pick another "=".
 */
static void
append_select(StringInfo q, const SourceRead *rd)
{
	const RlSource *src = rd->src;

	appendStringInfoString(q, "SELECT ");
	append_columns(q, src);
	appendStringInfo(q, " FROM %s WHERE %s OPERATOR(pg_catalog.=) $1"
					 " AND pg_catalog.isfinite(%s) AND ",
					 rd->relname,
					 quote_identifier(src->symbol_column),
					 quote_identifier(src->time_column));
}

/*
 * Timestamps in messages, in the session's time zone; a copy, since one
 * message may show several.
 */
static const char *
ts_str(TimestampTz ts)
{
	return pstrdup(timestamptz_to_str(ts));
}

/* One row's features into out, refusing anything the network cannot use. */
static void
copy_features(const SourceRead *rd, Datum d, bool isnull, TimestampTz ts,
			  float *out)
{
	int32		nf = rd->src->n_features;
	ArrayType  *arr;
	int			n;
	float	   *v;

	if (isnull)
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("features of symbol \"%s\" at %s are null",
						rd->symbol, ts_str(ts)),
				 errdetail("Agent \"%s\" needs %d features in column %s of relation %s in every row.",
						   rd->src->agent, nf, rd->src->features_column,
						   rd->relname)));
	arr = DatumGetArrayTypeP(d);
	n = ArrayGetNItems(ARR_NDIM(arr), ARR_DIMS(arr));
	if (ARR_NDIM(arr) > 1 || n != nf)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("features of symbol \"%s\" at %s have the wrong shape",
						rd->symbol, ts_str(ts)),
				 errdetail("Expected a one-dimensional array of %d, got %d dimension(s) and %d element(s).",
						   nf, ARR_NDIM(arr), n)));
	if (ARR_HASNULL(arr))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("features of symbol \"%s\" at %s contain a null",
						rd->symbol, ts_str(ts))));
	v = (float *) ARR_DATA_PTR(arr);
	for (int j = 0; j < nf; j++)
	{
		if (!isfinite(v[j]))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("features of symbol \"%s\" at %s are not finite",
							rd->symbol, ts_str(ts)),
					 errdetail("Element %d is %g.", j + 1, (double) v[j])));
		out[j] = v[j];
	}
	if ((Pointer) arr != DatumGetPointer(d))
		pfree(arr);
}

/* Append one fetched row after checking its timestamp and price. */
static void
add_row(SourceRead *rd, HeapTuple tup, TupleDesc desc)
{
	RlSourceRows *rows = rd->rows;
	int32		nf = rd->src->n_features;
	bool		isnull;
	TimestampTz ts;
	double		price;

	if (rows->n == rd->capacity)
	{
		rd->capacity *= 2;
		rows->ts = repalloc_huge(rows->ts, rd->capacity * sizeof(TimestampTz));
		rows->prices = repalloc_huge(rows->prices,
									 rd->capacity * sizeof(double));
		if (rows->features != NULL)
			rows->features = repalloc_huge(rows->features,
										   rd->capacity * nf * sizeof(float));
	}

	ts = DatumGetTimestampTz(SPI_getbinval(tup, desc, rd->first_col, &isnull));
	if (TIMESTAMP_NOT_FINITE(ts))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("symbol \"%s\" has a row at %s in relation %s",
						rd->symbol, ts_str(ts), rd->relname),
				 errdetail("Rows of a price series need finite timestamps.")));
	price = DatumGetFloat8(SPI_getbinval(tup, desc, rd->first_col + 1, &isnull));
	if (isnull)
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("price of symbol \"%s\" at %s is null",
						rd->symbol, ts_str(ts)),
				 errdetail("Column %s of relation %s must hold a price in every row.",
						   rd->src->price_column, rd->relname)));
	if (!isfinite(price) || price <= 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("price of symbol \"%s\" at %s is not positive",
						rd->symbol, ts_str(ts)),
				 errdetail("The price is %g; log returns need finite prices greater than zero.",
						   price)));

	rows->ts[rows->n] = ts;
	rows->prices[rows->n] = price;
	if (rows->features != NULL)
	{
		Datum		f = SPI_getbinval(tup, desc, rd->first_col + 2, &isnull);

		copy_features(rd, f, isnull, ts, rows->features + rows->n * nf);
	}
	rows->n++;
}

/* Run one query through a cursor, appending its rows (reversed if asked). */
static void
fetch_rows(SourceRead *rd, const char *query, int nargs, Oid *argtypes,
		   Datum *values, bool reverse)
{
	int64		first = rd->rows->n;
	Portal		portal;

	portal = SPI_cursor_open(NULL, rl_cached_plan(query, nargs, argtypes),
							 values, NULL, true);
	for (;;)
	{
		SPI_cursor_fetch(portal, true, SOURCE_BATCH);
		if (SPI_processed == 0)
			break;
		for (uint64 i = 0; i < SPI_processed; i++)
			add_row(rd, SPI_tuptable->vals[i], SPI_tuptable->tupdesc);
		SPI_freetuptable(SPI_tuptable);
	}
	SPI_cursor_close(portal);

	if (reverse)
	{
		RlSourceRows *rows = rd->rows;
		int32		nf = rd->src->n_features;

		for (int64 i = first, j = rows->n - 1; i < j; i++, j--)
		{
			TimestampTz ts = rows->ts[i];
			double		p = rows->prices[i];

			rows->ts[i] = rows->ts[j];
			rows->ts[j] = ts;
			rows->prices[i] = rows->prices[j];
			rows->prices[j] = p;
			for (int k = 0; rows->features != NULL && k < nf; k++)
			{
				float		f = rows->features[i * nf + k];

				rows->features[i * nf + k] = rows->features[j * nf + k];
				rows->features[j * nf + k] = f;
			}
		}
	}
}

/* Empty rows of one symbol, in the current memory context. */
static void
new_rows(SourceRead *rd, const char *symbol)
{
	int32		nf = rd->src->n_features;

	rd->symbol = symbol;
	rd->capacity = 64;
	rd->rows = palloc0(sizeof(RlSourceRows));
	rd->rows->ts = palloc(rd->capacity * sizeof(TimestampTz));
	rd->rows->prices = palloc(rd->capacity * sizeof(double));
	if (rd->src->features_column != NULL && nf > 0)
		rd->rows->features = palloc(rd->capacity * nf * sizeof(float));
}

/*
 * Give back what doubling over-allocated for the symbol just read: a data
 * window of millions of rows would otherwise hold up to twice its size.
 */
static void
trim_rows(SourceRead *rd)
{
	RlSourceRows *rows = rd->rows;
	int64		n = Max(rows->n, 1);
	int32		nf = rd->src->n_features;

	if (rd->capacity == n)
		return;
	rows->ts = repalloc_huge(rows->ts, n * sizeof(TimestampTz));
	rows->prices = repalloc_huge(rows->prices, n * sizeof(double));
	if (rows->features != NULL)
		rows->features = repalloc_huge(rows->features, n * nf * sizeof(float));
	rd->capacity = n;
}

/*
 * Lock the relation and check every column it reads: a source dropped or
 * altered since the agent was created is a clear error.
 */
static void
open_source(SourceRead *rd, const RlSource *src)
{
	rd->src = src;
	rd->first_col = 1;
	rd->relname = rl_source_relation_lock(src->relid, src->agent);
	rl_source_column_check(src->relid, src->agent, src->symbol_column, RL_COLUMN_SYMBOL);
	rl_source_column_check(src->relid, src->agent, src->time_column, RL_COLUMN_TIME);
	rl_source_column_check(src->relid, src->agent, src->price_column, RL_COLUMN_PRICE);
	if (src->features_column != NULL)
		rl_source_column_check(src->relid, src->agent, src->features_column,
							   RL_COLUMN_FEATURES);
}

/* Set up a read of one symbol: empty rows, then connect SPI. */
static void
begin_read(SourceRead *rd, const RlSource *src, const char *symbol)
{
	open_source(rd, src);
	new_rows(rd, symbol);
	symbol_param(rd);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
}

/*
 * No row where rows were asked for: say whether the symbol is unknown or
 * only has no rows in that time range.
 */
static void
no_rows(SourceRead *rd, const char *when)
{
	StringInfoData q;
	Oid			argtypes[1] = {rd->symbol_type};
	Datum		values[1] = {rd->symbol_value};
	bool		known;

	initStringInfo(&q);
	appendStringInfo(&q, "SELECT 1 FROM %s WHERE %s OPERATOR(pg_catalog.=) $1 LIMIT 1",
					 rd->relname, quote_identifier(rd->src->symbol_column));
	if (SPI_execute_with_args(q.data, 1, argtypes, values, NULL, true, 1) !=
		SPI_OK_SELECT)
		elog(ERROR, "SPI_execute_with_args failed");
	known = SPI_processed > 0;
	if (!known)
		ereport(ERROR,
				(errcode(ERRCODE_NO_DATA_FOUND),
				 errmsg("symbol \"%s\" not found in relation %s",
						rd->symbol, rd->relname),
				 errdetail("Agent \"%s\" reads symbols from column %s.",
						   rd->src->agent, rd->src->symbol_column)));
	ereport(ERROR,
			(errcode(ERRCODE_NO_DATA_FOUND),
			 errmsg("symbol \"%s\" has no rows %s in relation %s",
					rd->symbol, when, rd->relname)));
}

/* Latest rows up to a time: what decide() needs. */
RlSourceRows *
rl_source_read_last(const RlSource *src, const char *symbol,
					TimestampTz until, int64 max_rows)
{
	SourceRead	rd;
	StringInfoData q;
	Oid			argtypes[3];
	Datum		values[3];

	begin_read(&rd, src, symbol);
	initStringInfo(&q);
	append_select(&q, &rd);
	appendStringInfo(&q, "%s OPERATOR(pg_catalog.<=) $2 ORDER BY %s DESC LIMIT $3",
					 quote_identifier(src->time_column),
					 quote_identifier(src->time_column));
	argtypes[0] = rd.symbol_type;
	values[0] = rd.symbol_value;
	argtypes[1] = TIMESTAMPTZOID;
	values[1] = TimestampTzGetDatum(until);
	argtypes[2] = INT8OID;
	values[2] = Int64GetDatum(max_rows);
	fetch_rows(&rd, q.data, 3, argtypes, values, true);
	if (rd.rows->n == 0)
		no_rows(&rd, psprintf("at or before %s", ts_str(until)));
	SPI_finish();
	return rd.rows;
}

/*
 * Read one symbol's rows from "pivot" on (ts >= pivot, or ts > pivot when
 * the pivot belongs to the lookback), up to "until" when bounded, after up
 * to "lookback" rows before them (counted in n_before).
 */
static void
read_around(SourceRead *rd, TimestampTz pivot, bool pivot_in_lookback,
			int64 lookback, bool bounded, TimestampTz until)
{
	StringInfoData q;
	const char *tcol = quote_identifier(rd->src->time_column);
	Oid			argtypes[3] = {rd->symbol_type, TIMESTAMPTZOID, INT8OID};
	Datum		values[3] = {rd->symbol_value, TimestampTzGetDatum(pivot), Int64GetDatum(lookback)};

	if (lookback > 0)
	{
		initStringInfo(&q);
		append_select(&q, rd);
		appendStringInfo(&q, "%s OPERATOR(pg_catalog.%s) $2 ORDER BY %s DESC LIMIT $3",
						 tcol, pivot_in_lookback ? "<=" : "<", tcol);
		fetch_rows(rd, q.data, 3, argtypes, values, true);
	}
	rd->rows->n_before = rd->rows->n;

	initStringInfo(&q);
	append_select(&q, rd);
	appendStringInfo(&q, "%s OPERATOR(pg_catalog.%s) $2", tcol, pivot_in_lookback ? ">" : ">=");
	if (bounded)
	{
		appendStringInfo(&q, " AND %s OPERATOR(pg_catalog.<=) $3", tcol);
		argtypes[2] = TIMESTAMPTZOID;
		values[2] = TimestampTzGetDatum(until);
	}
	appendStringInfo(&q, " ORDER BY %s", tcol);
	fetch_rows(rd, q.data, bounded ? 3 : 2, argtypes, values, false);
}

/* A time range plus the lookback its first decisions need: backtests. */
RlSourceRows *
rl_source_read_range(const RlSource *src, const char *symbol,
					 TimestampTz from, TimestampTz until, int64 lookback)
{
	SourceRead	rd;

	begin_read(&rd, src, symbol);
	read_around(&rd, from, false, lookback, true, until);
	if (rd.rows->n == rd.rows->n_before)
		no_rows(&rd, psprintf("between %s and %s", ts_str(from), ts_str(until)));
	SPI_finish();
	return rd.rows;
}

/*
 * The rows after a time, preceded by up to lookback rows at or before it
 * (counted in n_before): what live monitoring evaluates.  No new row is
 * not an error here.
 */
RlSourceRows *
rl_source_read_after(const RlSource *src, const char *symbol,
					 TimestampTz after, int64 lookback)
{
	SourceRead	rd;

	begin_read(&rd, src, symbol);
	read_around(&rd, after, true, lookback, false, 0);
	SPI_finish();
	return rd.rows;
}

/* qsort comparator of int64 gaps. */
static int
cmp_int64(const void *a, const void *b)
{
	int64		x = *(const int64 *) a;
	int64		y = *(const int64 *) b;

	return (x > y) - (x < y);
}

/*
 * Sharpe's annualisation from the data itself, whatever the bar size: 365.25
 * days divided by the median of the gaps between consecutive bars evaluated
 * (sorted in place).  The one definition, for the deploy gate's holdout and
 * for backtest_summary().
 */
double
rl_periods_per_year(int64 *gaps, int64 m)
{
	double		median;

	Assert(m >= 1);
	qsort(gaps, m, sizeof(int64), cmp_int64);
	median = (m % 2 == 1) ? (double) gaps[m / 2] :
		((double) gaps[m / 2 - 1] + (double) gaps[m / 2]) / 2.0;
	if (median <= 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("cannot annualise the Sharpe ratio: the median spacing of the bars is zero"),
				 errdetail("More than half of the rows share their timestamp with the row before.")));
	return (365.25 * USECS_PER_DAY) / median;
}

/* rl_periods_per_year of n >= 2 consecutive bars of one symbol. */
double
rl_source_periods_per_year(const TimestampTz *ts, int64 n)
{
	int64		m = n - 1;
	int64	   *gaps;
	double		ppy;

	Assert(n >= 2);
	gaps = palloc_extended(m * sizeof(int64), MCXT_ALLOC_HUGE);
	for (int64 i = 0; i < m; i++)
		gaps[i] = ts[i + 1] - ts[i];
	ppy = rl_periods_per_year(gaps, m);
	pfree(gaps);
	return ppy;
}

/*
 * The series the environment reads (log returns and features) of one
 * symbol's rows.  Positive finite prices can still give an infinite log
 * return (1e-310 after 100): refused here, naming the bar, for training
 * and serving alike.
 */
RlSeries
rl_source_series(const RlSourceRows *rows, const char *symbol)
{
	RlSeries	s;
	double	   *returns = palloc_extended(Max(rows->n, 1) * sizeof(double),
										  MCXT_ALLOC_HUGE);
	char		err[RL_ENV_ERRLEN];

	if (rows->n > 0 && rl_env_returns(rows->prices, rows->n, returns, err) != RL_ENV_OK)
	{
		int64		t = 1;

		while (t < rows->n - 1 && isfinite(returns[t]))
			t++;
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("price of symbol \"%s\" at %s gives a log return that is not finite",
						symbol, ts_str(rows->ts[t])),
				 errdetail("%s.", err)));
	}
	s.n = rows->n;
	s.returns = returns;
	s.features = rows->features;
	return s;
}

/*
 * Every symbol's rows of the last data_window (an interval, as text),
 * counted back from the newest row: symbols in order, each oldest first.
 * Returns the number of symbols; *symbols and *series are set.
 */
int32
rl_source_read_window(const RlSource *src, const char *data_window,
					  char ***symbols, RlSourceRows ***series,
					  bool (*should_stop) (void))
{
	SourceRead	rd;
	StringInfoData q;
	const char *ts = quote_identifier(src->time_column);
	Oid			argtypes[1] = {TEXTOID};
	Datum		values[1] = {CStringGetTextDatum(data_window)};
	MemoryContext cxt = CurrentMemoryContext;
	Portal		portal;
	int32		n = 0;
	int32		cap = 16;
	int			guc_level;

	open_source(&rd, src);
	rd.first_col = 2;
	rd.rows = NULL;
	*symbols = palloc(cap * sizeof(char *));
	*series = palloc(cap * sizeof(RlSourceRows *));

	initStringInfo(&q);
	appendStringInfo(&q, "SELECT %s::pg_catalog.text, ", quote_identifier(src->symbol_column));
	append_columns(&q, src);
	appendStringInfo(&q,
					 " FROM %s WHERE pg_catalog.isfinite(%s) AND %s OPERATOR(pg_catalog.>)"
					 " ((SELECT pg_catalog.max(%s) FROM %s WHERE pg_catalog.isfinite(%s))"
					 "  OPERATOR(pg_catalog.-) $1::pg_catalog.interval)"
					 " ORDER BY 1, 2",
					 rd.relname, ts, ts, ts, rd.relname, ts);

	/*
	 * No JIT for this one scan: its cost over millions of rows would
	 * compile the query, which maps LLVM (50 MB of the worker's memory) and
	 * takes longer than the compiled code saves.
	 */
	guc_level = NewGUCNestLevel();
	(void) set_config_option("jit", "off", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	portal = SPI_cursor_open_with_args(NULL, q.data, 1, argtypes, values, NULL, true, 0);
	for (;;)
	{
		SPI_cursor_fetch(portal, true, SOURCE_BATCH);
		if (SPI_processed == 0)
			break;
		for (uint64 i = 0; i < SPI_processed; i++)
		{
			HeapTuple	tup = SPI_tuptable->vals[i];
			bool		isnull;
			Datum		sym = SPI_getbinval(tup, SPI_tuptable->tupdesc, 1, &isnull);
			text	   *name;
			MemoryContext old;

			if (isnull)
				ereport(ERROR,
						(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
						 errmsg("symbol of a row of relation %s is null", rd.relname),
						 errdetail("Column %s of relation %s must name a symbol in every row.",
								   src->symbol_column, rd.relname)));
			name = DatumGetTextPP(sym);

			old = MemoryContextSwitchTo(cxt);
			if (rd.rows == NULL || VARSIZE_ANY_EXHDR(name) != strlen(rd.symbol) ||
				memcmp(VARDATA_ANY(name), rd.symbol, VARSIZE_ANY_EXHDR(name)) != 0)
			{
				if (n == cap)
				{
					cap *= 2;
					*symbols = repalloc(*symbols, cap * sizeof(char *));
					*series = repalloc(*series, cap * sizeof(RlSourceRows *));
				}
				if (rd.rows != NULL)
					trim_rows(&rd);
				new_rows(&rd, text_to_cstring(name));
				(*symbols)[n] = (char *) rd.symbol;
				(*series)[n] = rd.rows;
				n++;
			}
			add_row(&rd, tup, SPI_tuptable->tupdesc);
			MemoryContextSwitchTo(old);
		}
		SPI_freetuptable(SPI_tuptable);
		if (should_stop != NULL && should_stop())
			ereport(ERROR,
					(errcode(ERRCODE_QUERY_CANCELED),
					 errmsg("training run cancelled while reading data")));
	}
	SPI_cursor_close(portal);
	SPI_finish();
	AtEOXact_GUC(true, guc_level);
	if (rd.rows != NULL)
	{
		MemoryContext old = MemoryContextSwitchTo(cxt);

		trim_rows(&rd);
		MemoryContextSwitchTo(old);
	}
	return n;
}
