/*-------------------------------------------------------------------------
 *
 * source.c
 *	  One symbol's series from an agent's source relation, read through SPI
 *	  as the calling role (see source.h).
 *
 * The query text is built only from the relation's qualified name (looked
 * up from its oid), quote_identifier'd column names and pg_catalog's
 * operators; the symbol, the time bounds and the row limit are parameters.  The symbol parameter has
 * the type of the symbol column, so an index on (symbol, ts) is used.
 *
 * src/source.c
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
#include "utils/lsyscache.h"
#include "utils/timestamp.h"

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

/*
 * "SELECT ts, price[, features] FROM rel WHERE symbol = $1 AND ".  Every
 * operator is pg_catalog's, named explicitly: the query runs with the
 * caller's search_path, which must not be able to pick another "=".
 */
static void
append_select(StringInfo q, const SourceRead *rd)
{
	const RlSource *src = rd->src;

	appendStringInfo(q, "SELECT %s::pg_catalog.timestamptz, %s::pg_catalog.float8",
					 quote_identifier(src->time_column),
					 quote_identifier(src->price_column));
	if (src->features_column != NULL)
		appendStringInfo(q, ", %s::pg_catalog.float4[]",
						 quote_identifier(src->features_column));
	appendStringInfo(q, " FROM %s WHERE %s OPERATOR(pg_catalog.=) $1 AND ",
					 rd->relname,
					 quote_identifier(src->symbol_column));
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

	ts = DatumGetTimestampTz(SPI_getbinval(tup, desc, 1, &isnull));
	if (TIMESTAMP_NOT_FINITE(ts))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("symbol \"%s\" has a row at %s in relation %s",
						rd->symbol, ts_str(ts), rd->relname),
				 errdetail("Rows of a price series need finite timestamps.")));
	price = DatumGetFloat8(SPI_getbinval(tup, desc, 2, &isnull));
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
		Datum		f = SPI_getbinval(tup, desc, 3, &isnull);

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

	portal = SPI_cursor_open_with_args(NULL, query, nargs, argtypes, values,
									   NULL, true, 0);
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

/* Set up a read: empty rows in the caller's context, then connect SPI. */
static void
begin_read(SourceRead *rd, const RlSource *src, const char *symbol)
{
	int32		nf = src->n_features;

	rd->src = src;
	rd->symbol = symbol;
	rd->capacity = 64;
	rd->rows = palloc0(sizeof(RlSourceRows));
	rd->rows->ts = palloc(rd->capacity * sizeof(TimestampTz));
	rd->rows->prices = palloc(rd->capacity * sizeof(double));
	if (src->features_column != NULL && nf > 0)
		rd->rows->features = palloc(rd->capacity * nf * sizeof(float));
	rd->relname = rl_source_relation_lock(src->relid, src->agent);
	rl_source_column_check(src->relid, src->agent, src->symbol_column, RL_COLUMN_SYMBOL);
	rl_source_column_check(src->relid, src->agent, src->time_column, RL_COLUMN_TIME);
	rl_source_column_check(src->relid, src->agent, src->price_column, RL_COLUMN_PRICE);
	if (src->features_column != NULL)
		rl_source_column_check(src->relid, src->agent, src->features_column,
							   RL_COLUMN_FEATURES);
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

/* A time range plus the lookback its first decisions need: backtests. */
RlSourceRows *
rl_source_read_range(const RlSource *src, const char *symbol,
					 TimestampTz from, TimestampTz until, int64 lookback)
{
	SourceRead	rd;
	StringInfoData q;
	const char *tcol = quote_identifier(src->time_column);
	Oid			argtypes[3];
	Datum		values[3];

	begin_read(&rd, src, symbol);
	argtypes[0] = rd.symbol_type;
	values[0] = rd.symbol_value;
	argtypes[1] = TIMESTAMPTZOID;
	values[1] = TimestampTzGetDatum(from);

	if (lookback > 0)
	{
		initStringInfo(&q);
		append_select(&q, &rd);
		appendStringInfo(&q, "%s OPERATOR(pg_catalog.<) $2 ORDER BY %s DESC LIMIT $3",
						 tcol, tcol);
		argtypes[2] = INT8OID;
		values[2] = Int64GetDatum(lookback);
		fetch_rows(&rd, q.data, 3, argtypes, values, true);
	}
	rd.rows->n_before = rd.rows->n;

	initStringInfo(&q);
	append_select(&q, &rd);
	appendStringInfo(&q, "%s OPERATOR(pg_catalog.>=) $2 AND %s OPERATOR(pg_catalog.<=) $3 ORDER BY %s",
					 tcol, tcol, tcol);
	argtypes[2] = TIMESTAMPTZOID;
	values[2] = TimestampTzGetDatum(until);
	fetch_rows(&rd, q.data, 3, argtypes, values, false);
	if (rd.rows->n == rd.rows->n_before)
		no_rows(&rd, psprintf("between %s and %s", ts_str(from), ts_str(until)));
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

/* Sharpe's annualisation from the data itself, whatever the bar size. */
double
rl_source_periods_per_year(const TimestampTz *ts, int64 n)
{
	int64		m = n - 1;
	int64	   *gaps;
	double		median;

	Assert(n >= 2);
	gaps = palloc_extended(m * sizeof(int64), MCXT_ALLOC_HUGE);
	for (int64 i = 0; i < m; i++)
		gaps[i] = ts[i + 1] - ts[i];
	qsort(gaps, m, sizeof(int64), cmp_int64);
	median = (m % 2 == 1) ? (double) gaps[m / 2] :
		((double) gaps[m / 2 - 1] + (double) gaps[m / 2]) / 2.0;
	pfree(gaps);
	if (median <= 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("cannot annualise the Sharpe ratio: the median spacing of the bars is zero"),
				 errdetail("More than half of the rows share their timestamp with the row before.")));
	return (365.25 * USECS_PER_DAY) / median;
}
