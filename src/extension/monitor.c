/*-------------------------------------------------------------------------
 *
 * monitor.c
 *	  rl_mlops.monitor(agent): paper-trade the champion and the versions in
 *	  shadow on the bars not evaluated yet, keep the ledger and the running
 *	  aggregates, and roll back on evidence (ARCHITECTURE.md, "Live
 *	  monitoring").
 *
 * For each version and symbol the greedy decision at bar t (an observation
 * built from data up to t, the position held coming in) earns the net log
 * return to bar t+1, so a bar's row exists only once the next bar does; a
 * version starts flat at its first live bar and its position carries over
 * between calls.  A call reads O(new bars + window) rows per symbol.
 *
 * The champion and the version it replaced are compared on the bars both
 * traded with the paired always-valid test of core/sequential.c: a look
 * after every bar is allowed.  Only that evidence, after
 * min_live_decisions, with auto_rollback on and outside rollback_cooldown,
 * rolls back; stale data, a deep drawdown or a symbol with bad data raise
 * alerts and never act.
 *
 * The source is read as the caller in a security-restricted part whose
 * setting changes are undone (owner.c); the registry is written as the
 * owner with schema-qualified statements.  The agent's row lock is held for
 * the call: two calls at once never write a bar twice.  One transaction:
 * a crash leaves the ledger and the aggregates as they were.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "access/xact.h"
#include "access/xlog.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/resowner.h"
#include "utils/timestamp.h"

#include "backtest.h"
#include "owner.h"
#include "plan_cache.h"
#include "sequential.h"
#include "source_relation.h"
#include "serve.h"

PG_FUNCTION_INFO_V1(rl_monitor);

/* One version monitor() paper-trades. */
typedef struct LiveVersion
{
	char	   *version;
	bool		champion;
	const char *role;			/* champion, shadow or challenger */
	TimestampTz first_bar_after;	/* live from the first bar after this */
	char	   *predecessor;	/* champion only: the version it replaced */
	int64		deployment_id;	/* champion only: the deployment doing so */
	ServeModel *model;
	int64		decisions;		/* made in this call */
	int64		late_bars;		/* found in this call */
	RlPerfAcc	perf;			/* running totals (from live_metrics) */
	bool		has_metrics;
	TimestampTz since;
	TimestampTz last_bar;
	int64		market_n;		/* the market's r_{t+1} on the bars traded */
	double		market_mean;
	double		market_m2;		/* central moment sums (Welford, Terriberry) */
	double		market_m3;
	double		market_m4;
	int64		train_decisions;	/* of its training data, 0 if unknown */
	bool		drifted;		/* the drift test is significant now */
	double		drift_p;
	double		drift_stat;
	RlSeqState *challenger_test;	/* challengers: minus the champion */
	RlSeqResult challenger_result;
	double		p_value_holm;
	int32		family_size;
	bool		beats_champion;
	int64		gaps_n;			/* this call's bar gaps, for annualising */
	int64	   *gaps;
	int64		gaps_cap;
} LiveVersion;

/* One version's decisions on one symbol in this call. */
typedef struct Decisions
{
	int64		n;
	TimestampTz *ts;
	int32	   *position;
	double	   *net;
} Decisions;

/*
 * Run a registry statement as the owner; rows processed.  Its plan is kept
 * for the backend: most run for every symbol of every call.
 */
static uint64
owner_sql(const char *sql, int nargs, Oid *types, Datum *values, const char *nulls)
{
	RlSavedUser saved = rl_become_owner();
	int			rc = SPI_execute_plan(rl_cached_plan(sql, nargs, types), values, nulls,
									  false, 0);

	rl_restore_user(saved);
	if (rc < 0)
		elog(ERROR, "rl_mlops: registry statement failed (%s): %s",
			 SPI_result_code_string(rc), sql);
	return SPI_processed;
}

/* Text column of the first (or row-th) result row, copied, or NULL. */
static char *
result_text(uint64 row, int col, MemoryContext cxt)
{
	char	   *v = SPI_getvalue(SPI_tuptable->vals[row], SPI_tuptable->tupdesc, col);

	return v ? MemoryContextStrdup(cxt, v) : NULL;
}

/* The versions to evaluate (rl_mlops._live_versions), champion first. */
static LiveVersion *
live_versions(const char *agent, int *n, MemoryContext cxt)
{
	Oid			types[1] = {TEXTOID};
	Datum		values[1] = {CStringGetTextDatum(agent)};
	LiveVersion *v;
	bool		isnull;

	*n = (int) owner_sql("SELECT version, role, first_bar_after, predecessor, deployment_id"
						 "  FROM rl_mlops._live_versions($1)"
						 " ORDER BY role OPERATOR(pg_catalog.=) 'champion' DESC, version",
						 1, types, values, NULL);
	v = MemoryContextAllocZero(cxt, Max(*n, 1) * sizeof(LiveVersion));
	for (int i = 0; i < *n; i++)
	{
		v[i].version = result_text(i, 1, cxt);
		v[i].role = result_text(i, 2, cxt);
		v[i].champion = strcmp(v[i].role, "champion") == 0;
		v[i].first_bar_after = DatumGetTimestampTz(SPI_getbinval(SPI_tuptable->vals[i],
																 SPI_tuptable->tupdesc, 3, &isnull));
		v[i].predecessor = result_text(i, 4, cxt);
		v[i].deployment_id = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[i],
														 SPI_tuptable->tupdesc, 5, &isnull));
	}
	return v;
}

/* Load a version's running totals from live_metrics, if it has any. */
static void
load_metrics(const char *agent, LiveVersion *v)
{
	Oid			types[2] = {TEXTOID, TEXTOID};
	Datum		values[2] = {CStringGetTextDatum(agent), CStringGetTextDatum(v->version)};
	HeapTuple	t;
	TupleDesc	d;
	bool		isnull;

	if (owner_sql("SELECT (metrics OPERATOR(pg_catalog.->>) 'train_decisions')::pg_catalog.int8"
				  "  FROM rl_mlops.models"
				  " WHERE agent OPERATOR(pg_catalog.=) $1 AND version OPERATOR(pg_catalog.=) $2",
				  2, types, values, NULL) == 1)
	{
		Datum		n = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);

		v->train_decisions = isnull ? 0 : DatumGetInt64(n);
	}
	if (owner_sql("SELECT decisions, mean_return, m2_return, total_return, buy_hold_return,"
				  "       abs_position_changes, max_drawdown, equity, peak_equity, hits, since, last_bar,"
				  "       market_decisions, market_mean, market_m2, market_m3, market_m4"
				  "  FROM rl_mlops.live_metrics"
				  " WHERE agent OPERATOR(pg_catalog.=) $1 AND version OPERATOR(pg_catalog.=) $2",
				  2, types, values, NULL) == 0)
		return;
	t = SPI_tuptable->vals[0];
	d = SPI_tuptable->tupdesc;
	v->has_metrics = true;
	v->perf.n = DatumGetInt64(SPI_getbinval(t, d, 1, &isnull));
	v->perf.mean = DatumGetFloat8(SPI_getbinval(t, d, 2, &isnull));
	v->perf.m2 = DatumGetFloat8(SPI_getbinval(t, d, 3, &isnull));
	v->perf.total = DatumGetFloat8(SPI_getbinval(t, d, 4, &isnull));
	v->perf.buy_hold = DatumGetFloat8(SPI_getbinval(t, d, 5, &isnull));
	v->perf.abs_dpos = DatumGetFloat8(SPI_getbinval(t, d, 6, &isnull));
	v->perf.max_dd = DatumGetFloat8(SPI_getbinval(t, d, 7, &isnull));
	v->perf.cum = DatumGetFloat8(SPI_getbinval(t, d, 8, &isnull));
	v->perf.peak = DatumGetFloat8(SPI_getbinval(t, d, 9, &isnull));
	v->perf.hits = DatumGetInt64(SPI_getbinval(t, d, 10, &isnull));
	v->since = DatumGetTimestampTz(SPI_getbinval(t, d, 11, &isnull));
	if (isnull)
		v->since = DT_NOBEGIN;
	v->last_bar = DatumGetTimestampTz(SPI_getbinval(t, d, 12, &isnull));
	if (isnull)
		v->last_bar = DT_NOBEGIN;
	v->market_n = DatumGetInt64(SPI_getbinval(t, d, 13, &isnull));
	v->market_mean = DatumGetFloat8(SPI_getbinval(t, d, 14, &isnull));
	v->market_m2 = DatumGetFloat8(SPI_getbinval(t, d, 15, &isnull));
	v->market_m3 = DatumGetFloat8(SPI_getbinval(t, d, 16, &isnull));
	v->market_m4 = DatumGetFloat8(SPI_getbinval(t, d, 17, &isnull));
}

/*
 * The symbols to evaluate: those already paper-traded, and those of the
 * champion's training data (its holdout ranges), or every symbol of the
 * source for a version that has neither (an imported champion).
 */
static char **
live_symbols(const RlAgent *ag, const LiveVersion *champ, int *n, MemoryContext cxt)
{
	Oid			types[2] = {TEXTOID, TEXTOID};
	Datum		values[2] = {CStringGetTextDatum(ag->name), CStringGetTextDatum(champ->version)};
	char	  **syms;

	*n = (int) owner_sql("SELECT symbol FROM rl_mlops.live_positions WHERE agent OPERATOR(pg_catalog.=) $1"
						 " UNION "
						 "SELECT pg_catalog.jsonb_object_keys(metrics OPERATOR(pg_catalog.->) 'holdout_ranges')"
						 "  FROM rl_mlops.models"
						 " WHERE agent OPERATOR(pg_catalog.=) $1 AND version OPERATOR(pg_catalog.=) $2"
						 " ORDER BY 1",
						 2, types, values, NULL);
	if (*n == 0)
	{
		RlRequesterPart part = rl_begin_as_requester(GetUserId());
		char	   *q = psprintf("SELECT DISTINCT %s::pg_catalog.text FROM %s ORDER BY 1",
								 quote_identifier(ag->source.symbol_column),
								 rl_source_relation_lock(ag->source.relid, ag->name));

		if (SPI_execute(q, true, 0) != SPI_OK_SELECT)
			elog(ERROR, "could not list the symbols of the source");
		*n = (int) SPI_processed;
		rl_end_as_requester(part);
	}
	syms = MemoryContextAlloc(cxt, Max(*n, 1) * sizeof(char *));
	for (int i = 0; i < *n; i++)
		syms[i] = result_text(i, 1, cxt);
	return syms;
}

/* Append a JSON string element to a list under construction. */
static void
append_item(StringInfo list, const char *text)
{
	if (list->len > 0)
		appendStringInfoString(list, ", ");
	escape_json(list, text);
}

/* A float8[], int4[], int8[] or timestamptz[] argument from a C array. */
static Datum
array_of(const void *data, int64 n, Oid elemtype)
{
	Datum	   *elems = palloc(Max(n, 1) * sizeof(Datum));
	int16		len;
	bool		byval;
	char		align;

	for (int64 i = 0; i < n; i++)
		elems[i] = elemtype == FLOAT8OID ? Float8GetDatum(((const double *) data)[i]) :
			elemtype == INT4OID ? Int32GetDatum(((const int32 *) data)[i]) :
			elemtype == INT8OID ? Int64GetDatum(((const int64 *) data)[i]) :
			TimestampTzGetDatum(((const TimestampTz *) data)[i]);
	get_typlenbyvalalign(elemtype, &len, &byval, &align);
	return PointerGetDatum(construct_array(elems, (int) n, elemtype, len, byval, align));
}

/*
 * One more market return on the bars a version traded: running mean and
 * central moment sums up to the fourth (Terriberry's one-pass update), for
 * the drift test's variance and kurtosis.
 */
static void
add_market_return(LiveVersion *v, double x)
{
	double		n1 = (double) v->market_n;
	double		n = n1 + 1;
	double		delta = x - v->market_mean;
	double		delta_n = delta / n;
	double		delta_n2 = delta_n * delta_n;
	double		term1 = delta * delta_n * n1;

	v->market_n++;
	v->market_mean += delta_n;
	v->market_m4 += term1 * delta_n2 * (n * n - 3 * n + 3) + 6 * delta_n2 * v->market_m2 -
		4 * delta_n * v->market_m3;
	v->market_m3 += term1 * delta_n * (n - 2) - 3 * delta_n * v->market_m2;
	v->market_m2 += term1;
}

/* Where one version stands on one symbol. */
typedef struct Pair
{
	bool		known;			/* it has a live_positions row */
	TimestampTz first_bar;		/* its first decision (known pairs) */
	TimestampTz after;			/* its last evaluated bar, or the version's
								 * first_bar_after */
	int32		position;		/* held coming into the next bar */
	TimestampTz *recent;		/* the last bars it passed, ascending */
	int			n_recent;
	int64		late;			/* late bars found in this call */
	bool		changed;		/* its row is written at the end of the call */
} Pair;

/*
 * Rows a call writes at its end, one statement for each table: ledger rows
 * (with position, net and buy_hold) or late bars (pair: symbol * n_versions
 * + version).
 */
typedef struct Batch
{
	int64		n;
	int64		cap;
	int32	   *pair;
	TimestampTz *ts;
	int32	   *position;
	double	   *net;
	double	   *buy_hold;
} Batch;

/* Room for one more row (ledger: with the columns of a ledger row). */
static void
batch_reserve(Batch *b, bool ledger)
{
	if (b->n < b->cap)
		return;
	b->cap = Max(256, 2 * b->cap);
	b->pair = b->pair ? repalloc(b->pair, b->cap * sizeof(int32)) : palloc(b->cap * sizeof(int32));
	b->ts = b->ts ? repalloc(b->ts, b->cap * sizeof(TimestampTz)) : palloc(b->cap * sizeof(TimestampTz));
	if (!ledger)
		return;
	b->position = b->position ? repalloc(b->position, b->cap * sizeof(int32)) : palloc(b->cap * sizeof(int32));
	b->net = b->net ? repalloc(b->net, b->cap * sizeof(double)) : palloc(b->cap * sizeof(double));
	b->buy_hold = b->buy_hold ? repalloc(b->buy_hold, b->cap * sizeof(double)) : palloc(b->cap * sizeof(double));
}

/* Symbols in C order: the positions are matched to them by bsearch. */
static int
cmp_symbol(const void *a, const void *b)
{
	return strcmp(*(char *const *) a, *(char *const *) b);
}

/*
 * Every version's position on every symbol, in one read of live_positions.
 * A pair without a row starts flat after its version's first_bar_after.
 */
static Pair *
load_positions(const char *agent, const LiveVersion *v, int n_versions,
			   char **symbols, int n_symbols, MemoryContext cxt)
{
	Oid			types[1] = {TEXTOID};
	Datum		values[1] = {CStringGetTextDatum(agent)};
	Pair	   *pairs = MemoryContextAllocZero(cxt, Max(1, n_symbols * n_versions) * sizeof(Pair));
	uint64		n;

	for (int k = 0; k < n_symbols; k++)
		for (int i = 0; i < n_versions; i++)
			pairs[k * n_versions + i].after = v[i].first_bar_after;
	n = owner_sql("SELECT version, symbol, first_bar, last_bar, position, recent_bars"
				  "  FROM rl_mlops.live_positions"
				  " WHERE agent OPERATOR(pg_catalog.=) $1 AND last_bar IS NOT NULL",
				  1, types, values, NULL);
	for (uint64 r = 0; r < n; r++)
	{
		HeapTuple	t = SPI_tuptable->vals[r];
		TupleDesc	d = SPI_tuptable->tupdesc;
		char	   *version = SPI_getvalue(t, d, 1);
		char	   *symbol = SPI_getvalue(t, d, 2);
		char	  **found = bsearch(&symbol, symbols, n_symbols, sizeof(char *), cmp_symbol);
		bool		isnull;

		for (int i = 0; found != NULL && i < n_versions; i++)
		{
			Pair	   *p = &pairs[(found - symbols) * n_versions + i];
			ArrayType  *recent;

			if (strcmp(v[i].version, version) != 0)
				continue;
			p->known = true;
			p->first_bar = DatumGetTimestampTz(SPI_getbinval(t, d, 3, &isnull));
			p->after = DatumGetTimestampTz(SPI_getbinval(t, d, 4, &isnull));
			p->position = DatumGetInt32(SPI_getbinval(t, d, 5, &isnull));
			recent = DatumGetArrayTypeP(SPI_getbinval(t, d, 6, &isnull));
			p->n_recent = ArrayGetNItems(ARR_NDIM(recent), ARR_DIMS(recent));
			p->recent = MemoryContextAlloc(cxt, Max(1, p->n_recent) * sizeof(TimestampTz));
			if (p->n_recent > 0)
				memcpy(p->recent, ARR_DATA_PTR(recent), p->n_recent * sizeof(TimestampTz));
		}
	}
	return pairs;
}

/*
 * Bars that arrived late for one pair: rows of the lookback at or before
 * its last bar, from the oldest of its recent bars on, that are not among
 * them (it passed them before they existed).  They go to the late batch,
 * once: they join the recent bars, and are never evaluated.  Older rows
 * are not looked at: that is the lookback the call reads anyway.
 */
static void
find_late_bars(Pair *p, int32 pair, const RlSourceRows *rows, int64 seen, Batch *late)
{
	int			k = 0;

	if (p->n_recent == 0)
		return;
	for (int64 t = 0; t < seen; t++)
	{
		if (rows->ts[t] < p->recent[0] || rows->ts[t] < p->first_bar)
			continue;
		while (k < p->n_recent && p->recent[k] < rows->ts[t])
			k++;
		if (k < p->n_recent && p->recent[k] == rows->ts[t])
			continue;
		batch_reserve(late, false);
		late->pair[late->n] = pair;
		late->ts[late->n++] = rows->ts[t];
		p->late++;
		p->changed = true;
	}
}

/*
 * A pair's recent bars after this call: its old ones, the late bars just
 * found (all three ascending, the decisions after the others), and its new
 * decisions; the last window of them.
 */
static void
update_recent(Pair *p, const TimestampTz *late, int64 n_late, const Decisions *d, int32 window)
{
	int64		n = p->n_recent + n_late + d->n;
	TimestampTz *all = palloc(Max(1, n) * sizeof(TimestampTz));
	int64		i = 0,
				j = 0,
				m = 0;

	while (i < p->n_recent || j < n_late)
		all[m++] = (j >= n_late || (i < p->n_recent && p->recent[i] < late[j]))
			? p->recent[i++] : late[j++];
	for (int64 t = 0; t < d->n; t++)
		all[m++] = d->ts[t];
	p->n_recent = (int) Min(m, window);
	p->recent = all + (m - p->n_recent);
}

/*
 * Paper-trade every version on one symbol's new bars from one read of the
 * source (as the caller) starting a lookback before the earliest version's
 * last bar.  Appends the decisions to the ledger batch and the late bars
 * to theirs; dec[i] gets version i's decisions.
 */
static void
trade_symbol(const RlAgent *ag, LiveVersion *v, int n_versions, Pair *pairs,
			 int symbol_index, const char *symbol, Decisions *dec,
			 Batch *ledger, Batch *late)
{
	TimestampTz from = pairs[0].after;
	RlRequesterPart part;
	RlSourceRows *rows;
	RlSeries	s;
	int32		w = ag->arch.window;
	char		err[RL_ENV_ERRLEN];

	for (int i = 1; i < n_versions; i++)
		from = Min(from, pairs[i].after);
	part = rl_begin_as_requester(GetUserId());
	rows = rl_source_read_after(&ag->source, symbol, from, w);
	rl_end_as_requester(part);
	if (rows->n < 2)
		return;
	s = rl_source_series(rows, symbol);

	for (int i = 0; i < n_versions; i++)
	{
		Pair	   *p = &pairs[i];
		Decisions  *d = &dec[i];
		int32		pos = p->position;
		float	   *obs = v[i].model->work;
		float	   *probs = obs + v[i].model->w.arch.obs_dim + RL_FORWARD_SCRATCH(&v[i].model->w.arch);
		int64		seen = 0;	/* rows at or before p->after */
		int64		late_from = late->n;
		int64		first;

		while (seen < rows->n && rows->ts[seen] <= p->after)
			seen++;
		if (p->known)
			find_late_bars(p, symbol_index * n_versions + i, rows, seen, late);
		first = Max(seen, w);
		d->ts = palloc(rows->n * sizeof(TimestampTz));
		d->position = palloc(rows->n * sizeof(int32));
		d->net = palloc(rows->n * sizeof(double));
		for (int64 t = first; t <= rows->n - 2; t++)
		{
			int32		next;
			double		r_next = s.returns[t + 1];

			rl_serve_check_env(rl_env_observation(&s, w, ag->arch.n_features, v[i].model->sigma,
												  t, pos, obs, err), err);
			rl_forward(&v[i].model->w, obs, probs, NULL, obs + v[i].model->w.arch.obs_dim);
			next = rl_action_position(rl_argmax(probs, RL_N_ACTIONS));
			d->ts[d->n] = rows->ts[t];
			d->position[d->n] = next;
			d->net[d->n] = rl_env_net_return(next, pos, r_next, ag->cost);
			rl_perf_add(&v[i].perf, d->net[d->n], r_next, next - pos);
			add_market_return(&v[i], r_next);
			if (v[i].gaps_n == v[i].gaps_cap)
			{
				v[i].gaps_cap = Max(64, 2 * v[i].gaps_cap);
				v[i].gaps = v[i].gaps ? repalloc(v[i].gaps, v[i].gaps_cap * sizeof(int64))
					: palloc(v[i].gaps_cap * sizeof(int64));
			}
			v[i].gaps[v[i].gaps_n++] = rows->ts[t + 1] - rows->ts[t];

			batch_reserve(ledger, true);
			ledger->pair[ledger->n] = symbol_index * n_versions + i;
			ledger->ts[ledger->n] = rows->ts[t];
			ledger->position[ledger->n] = next;
			ledger->net[ledger->n] = d->net[d->n];
			ledger->buy_hold[ledger->n++] = r_next;
			pos = next;
			d->n++;
		}
		v[i].late_bars += late->n - late_from;
		if (d->n == 0 && late->n == late_from)
			continue;
		update_recent(p, late->ts + late_from, late->n - late_from, d, w);
		p->changed = true;
		if (d->n == 0)
			continue;
		if (v[i].since == 0 || v[i].since == DT_NOBEGIN || d->ts[0] < v[i].since)
			v[i].since = d->ts[0];
		if (v[i].last_bar == 0 || v[i].last_bar == DT_NOBEGIN || d->ts[d->n - 1] > v[i].last_bar)
			v[i].last_bar = d->ts[d->n - 1];
		v[i].decisions += d->n;
		if (!p->known)
			p->first_bar = d->ts[0];
		p->after = d->ts[d->n - 1];
		p->position = pos;
	}
}

/*
 * Paper-trade every version on one symbol in a subtransaction: a symbol
 * with bad data (a NULL or non-positive price...) is left as it was, its
 * error reported, and the other symbols go on.
 */
static void
trade_symbol_or_report(const RlAgent *ag, LiveVersion *v, int n_versions, Pair *pairs,
					   int symbol_index, const char *symbol, Decisions *dec,
					   Batch *ledger, Batch *late, StringInfo errors)
{
	MemoryContext oldcxt = CurrentMemoryContext;
	ResourceOwner oldowner = CurrentResourceOwner;
	LiveVersion *saved = palloc(n_versions * sizeof(LiveVersion));
	Pair	   *saved_pairs = palloc(n_versions * sizeof(Pair));
	int64		ledger_n = ledger->n;
	int64		late_n = late->n;

	memcpy(saved, v, n_versions * sizeof(LiveVersion));
	memcpy(saved_pairs, pairs, n_versions * sizeof(Pair));
	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(oldcxt);
	PG_TRY();
	{
		trade_symbol(ag, v, n_versions, pairs, symbol_index, symbol, dec, ledger, late);
		ReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(oldcxt);
		CurrentResourceOwner = oldowner;
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(oldcxt);
		edata = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(oldcxt);
		CurrentResourceOwner = oldowner;
		for (int i = 0; i < n_versions; i++)
		{
			/* everything as before this symbol (the gaps array is shared) */
			int64		gaps_n = Min(v[i].gaps_n, saved[i].gaps_n);

			saved[i].gaps = v[i].gaps;
			saved[i].gaps_cap = v[i].gaps_cap;
			v[i] = saved[i];
			v[i].gaps_n = gaps_n;
			dec[i].n = 0;
		}
		memcpy(pairs, saved_pairs, n_versions * sizeof(Pair));
		ledger->n = ledger_n;
		late->n = late_n;
		append_item(errors, psprintf("symbol %s: %s", symbol, edata->message));
	}
	PG_END_TRY();
}

/* A text[] of the version or the symbol of each row of a batch. */
static Datum
names_of(const Batch *b, char **names, int n_versions, bool versions)
{
	Datum	   *elems = palloc(Max(b->n, 1) * sizeof(Datum));

	for (int64 r = 0; r < b->n; r++)
		elems[r] = CStringGetTextDatum(names[versions ? b->pair[r] % n_versions
											  : b->pair[r] / n_versions]);
	return PointerGetDatum(construct_array(elems, (int) b->n, TEXTOID, -1, false, TYPALIGN_INT));
}

/*
 * Write what the call found, one statement per table: the ledger rows, the
 * late bars, and the positions that changed (their recent bars as slices
 * of one array).
 */
static void
write_batches(const char *agent, const LiveVersion *v, int n_versions, char **symbols,
			  int n_symbols, const Pair *pairs, const Batch *ledger, const Batch *late)
{
	char	  **version_names = palloc(n_versions * sizeof(char *));
	char	  **roles = palloc(n_versions * sizeof(char *));
	Datum		agent_datum = CStringGetTextDatum(agent);

	for (int i = 0; i < n_versions; i++)
	{
		version_names[i] = v[i].version;
		roles[i] = (char *) v[i].role;
	}
	if (ledger->n > 0)
	{
		Oid			types[8] = {TEXTOID, TEXTARRAYOID, TEXTARRAYOID, TEXTARRAYOID,
		TIMESTAMPTZARRAYOID, INT4ARRAYOID, FLOAT8ARRAYOID, FLOAT8ARRAYOID};
		Datum		values[8] = {agent_datum,
			names_of(ledger, version_names, n_versions, true),
			names_of(ledger, roles, n_versions, true),
			names_of(ledger, symbols, n_versions, false),
			array_of(ledger->ts, ledger->n, TIMESTAMPTZOID),
			array_of(ledger->position, ledger->n, INT4OID),
			array_of(ledger->net, ledger->n, FLOAT8OID),
		array_of(ledger->buy_hold, ledger->n, FLOAT8OID)};

		owner_sql("INSERT INTO rl_mlops.live_ledger (agent, version, role, symbol, ts, position,"
				  "                                  net_return, buy_hold_return)"
				  " SELECT $1, u.version, u.role, u.symbol, u.ts, u.pos, u.net, u.bh"
				  "   FROM ROWS FROM (pg_catalog.unnest($2), pg_catalog.unnest($3), pg_catalog.unnest($4),"
				  "                   pg_catalog.unnest($5), pg_catalog.unnest($6), pg_catalog.unnest($7),"
				  "                   pg_catalog.unnest($8)) AS u(version, role, symbol, ts, pos, net, bh)",
				  8, types, values, NULL);
	}
	if (late->n > 0)
	{
		Oid			types[4] = {TEXTOID, TEXTARRAYOID, TEXTARRAYOID, TIMESTAMPTZARRAYOID};
		Datum		values[4] = {agent_datum,
			names_of(late, version_names, n_versions, true),
			names_of(late, symbols, n_versions, false),
		array_of(late->ts, late->n, TIMESTAMPTZOID)};

		owner_sql("INSERT INTO rl_mlops.live_late_bars (agent, version, symbol, ts)"
				  " SELECT $1, u.version, u.symbol, u.ts"
				  "   FROM ROWS FROM (pg_catalog.unnest($2), pg_catalog.unnest($3), pg_catalog.unnest($4))"
				  "        AS u(version, symbol, ts)", 4, types, values, NULL);
	}
	{
		Batch		changed = {0};
		Batch		recent = {0};
		int32	   *lo;
		int32	   *hi;
		int64	   *late_n;
		TimestampTz *first_bar;
		TimestampTz *last_bar;
		int32	   *position;
		int64		n = 0;
		Oid			types[10] = {TEXTOID, TEXTARRAYOID, TEXTARRAYOID, TIMESTAMPTZARRAYOID,
			TIMESTAMPTZARRAYOID, INT4ARRAYOID, INT8ARRAYOID, TIMESTAMPTZARRAYOID,
		INT4ARRAYOID, INT4ARRAYOID};
		Datum		values[10];

		for (int64 k = 0; k < (int64) n_symbols * n_versions; k++)
			n += pairs[k].changed;
		if (n == 0)
			return;
		lo = palloc(n * sizeof(int32));
		hi = palloc(n * sizeof(int32));
		late_n = palloc(n * sizeof(int64));
		first_bar = palloc(n * sizeof(TimestampTz));
		last_bar = palloc(n * sizeof(TimestampTz));
		position = palloc(n * sizeof(int32));
		for (int64 k = 0; k < (int64) n_symbols * n_versions; k++)
		{
			const Pair *p = &pairs[k];

			if (!p->changed)
				continue;
			batch_reserve(&changed, false);
			changed.pair[changed.n] = (int32) k;
			first_bar[changed.n] = p->first_bar;
			last_bar[changed.n] = p->after;
			position[changed.n] = p->position;
			late_n[changed.n] = p->late;
			lo[changed.n] = (int32) recent.n + 1;
			for (int r = 0; r < p->n_recent; r++)
			{
				batch_reserve(&recent, false);
				recent.ts[recent.n++] = p->recent[r];
			}
			hi[changed.n++] = (int32) recent.n;
		}
		values[0] = agent_datum;
		values[1] = names_of(&changed, version_names, n_versions, true);
		values[2] = names_of(&changed, symbols, n_versions, false);
		values[3] = array_of(first_bar, n, TIMESTAMPTZOID);
		values[4] = array_of(last_bar, n, TIMESTAMPTZOID);
		values[5] = array_of(position, n, INT4OID);
		values[6] = array_of(late_n, n, INT8OID);
		values[7] = array_of(recent.ts, recent.n, TIMESTAMPTZOID);
		values[8] = array_of(lo, n, INT4OID);
		values[9] = array_of(hi, n, INT4OID);
		owner_sql("INSERT INTO rl_mlops.live_positions AS p (agent, version, symbol, first_bar,"
				  "                                        last_bar, position, late_bars, recent_bars)"
				  " SELECT $1, u.version, u.symbol, u.first_bar, u.last_bar, u.pos, u.late,"
				  "        $8[u.lo:u.hi]"
				  "   FROM ROWS FROM (pg_catalog.unnest($2), pg_catalog.unnest($3), pg_catalog.unnest($4),"
				  "                   pg_catalog.unnest($5), pg_catalog.unnest($6), pg_catalog.unnest($7),"
				  "                   pg_catalog.unnest($9), pg_catalog.unnest($10))"
				  "        AS u(version, symbol, first_bar, last_bar, pos, late, lo, hi)"
				  " ON CONFLICT (agent, version, symbol)"
				  " DO UPDATE SET last_bar = EXCLUDED.last_bar, position = EXCLUDED.position,"
				  "               late_bars = p.late_bars OPERATOR(pg_catalog.+) EXCLUDED.late_bars,"
				  "               recent_bars = EXCLUDED.recent_bars",
				  10, types, values, NULL);
	}
}

/*
 * Drift of the market since training: the live bars' log-return variance
 * against the training returns' (the checkpoint's sigma).  Two-sample test
 * of the log variance ratio, normal approximation: var(log s^2) is about
 * (kappa - 1) / (n - 1) for returns of kurtosis kappa (2 / (n - 1) for
 * normal ones; fat tails make it several times larger), kappa taken from
 * the live returns for both samples (the training count unknown for an
 * imported model: its sigma taken as exact).  Volatility clustering is not
 * corrected for: with it the test still rejects too often (README).
 * Returns the p-value; *stat gets log(s^2 / sigma^2).
 */
static double
drift_test(const LiveVersion *v, double *stat)
{
	double		var = v->market_m2 / (double) (v->market_n - 1);
	double		kurtosis = v->market_m2 > 0 ?
		(double) v->market_n * v->market_m4 / (v->market_m2 * v->market_m2) : 3.0;
	double		k1 = Max(kurtosis - 1.0, 0.0);
	double		se2 = k1 / (double) (v->market_n - 1) +
		(v->train_decisions > 1 ? k1 / (double) (v->train_decisions - 1) : 0.0);
	double		sigma = v->model->sigma;

	if (var <= 0 || sigma <= 0 || se2 <= 0)
	{
		*stat = 0;
		return 1.0;
	}
	*stat = log(var / (sigma * sigma));
	return erfc(fabs(*stat) / sqrt(2.0 * se2));
}

/* Write a version's running totals back, with the metrics derived from them. */
static void
save_metrics(const RlAgent *ag, LiveVersion *v)
{
	Oid			types[22] = {TEXTOID, TEXTOID, INT8OID, FLOAT8OID, FLOAT8OID, FLOAT8OID,
		FLOAT8OID, FLOAT8OID, FLOAT8OID, FLOAT8OID, FLOAT8OID, INT8OID,
		TIMESTAMPTZOID, TIMESTAMPTZOID, FLOAT8OID, INT8OID, FLOAT8OID, FLOAT8OID,
	FLOAT8OID, FLOAT8OID, FLOAT8OID, FLOAT8OID};
	Datum		values[22];
	char		nulls[22];
	RlBacktestSummary sum;
	double		ppy = 0;
	double		drift_stat = 0;
	double		drift_p = 1;

	memset(nulls, ' ', sizeof(nulls));
	if (v->gaps_n > 0)
		ppy = rl_periods_per_year(v->gaps, v->gaps_n);
	rl_perf_summary(&v->perf, ppy > 0 ? ppy : 1.0, &sum);
	values[0] = CStringGetTextDatum(ag->name);
	values[1] = CStringGetTextDatum(v->version);
	values[2] = Int64GetDatum(v->perf.n);
	values[3] = Float8GetDatum(v->perf.mean);
	values[4] = Float8GetDatum(v->perf.m2);
	values[5] = Float8GetDatum(v->perf.total);
	values[6] = Float8GetDatum(v->perf.buy_hold);
	values[7] = Float8GetDatum(v->perf.abs_dpos);
	values[8] = Float8GetDatum(v->perf.max_dd);
	values[9] = Float8GetDatum(v->perf.cum);
	values[10] = Float8GetDatum(v->perf.peak);
	values[11] = Int64GetDatum(v->perf.hits);
	values[12] = TimestampTzGetDatum(v->since);
	values[13] = TimestampTzGetDatum(v->last_bar);
	values[14] = Float8GetDatum(sum.sharpe);
	if (v->since == 0 || v->since == DT_NOBEGIN)
		nulls[12] = 'n';
	if (v->last_bar == 0 || v->last_bar == DT_NOBEGIN)
		nulls[13] = 'n';
	if (ppy <= 0)
		nulls[14] = 'n';
	values[15] = Int64GetDatum(v->market_n);
	values[16] = Float8GetDatum(v->market_mean);
	values[17] = Float8GetDatum(v->market_m2);
	if (v->market_n >= 2)
		drift_p = drift_test(v, &drift_stat);
	else
		nulls[18] = nulls[19] = 'n';
	values[18] = Float8GetDatum(drift_stat);
	values[19] = Float8GetDatum(drift_p);
	values[20] = Float8GetDatum(v->market_m3);
	values[21] = Float8GetDatum(v->market_m4);
	v->drifted = v->market_n >= ag->min_live_decisions && drift_p < ag->monitor_alpha;
	v->drift_p = drift_p;
	v->drift_stat = drift_stat;
	owner_sql("INSERT INTO rl_mlops.live_metrics AS m (agent, version, decisions, mean_return,"
			  "       m2_return, total_return, buy_hold_return, abs_position_changes, max_drawdown,"
			  "       equity, peak_equity, hits, since, last_bar, sharpe, market_decisions,"
			  "       market_mean, market_m2, drift_statistic, drift_p_value, drift_detected_at,"
			  "       market_m3, market_m4)"
			  " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15,"
			  "         $16, $17, $18, $19, $20,"
			  "         NULL, $21, $22)"
			  " ON CONFLICT (agent, version) DO UPDATE SET"
			  "   decisions = EXCLUDED.decisions, mean_return = EXCLUDED.mean_return,"
			  "   m2_return = EXCLUDED.m2_return, total_return = EXCLUDED.total_return,"
			  "   buy_hold_return = EXCLUDED.buy_hold_return,"
			  "   abs_position_changes = EXCLUDED.abs_position_changes,"
			  "   max_drawdown = EXCLUDED.max_drawdown, equity = EXCLUDED.equity,"
			  "   peak_equity = EXCLUDED.peak_equity, hits = EXCLUDED.hits,"
			  "   since = EXCLUDED.since, last_bar = EXCLUDED.last_bar,"
			  "   sharpe = COALESCE(EXCLUDED.sharpe, m.sharpe),"
			  "   market_decisions = EXCLUDED.market_decisions, market_mean = EXCLUDED.market_mean,"
			  "   market_m2 = EXCLUDED.market_m2, market_m3 = EXCLUDED.market_m3,"
			  "   market_m4 = EXCLUDED.market_m4, drift_statistic = EXCLUDED.drift_statistic,"
			  "   drift_p_value = EXCLUDED.drift_p_value",
			  22, types, values, nulls);
	if (v->drifted)
	{
		Oid			t2[2] = {TEXTOID, TEXTOID};

		owner_sql("UPDATE rl_mlops.live_metrics SET drift_detected_at = pg_catalog.now()"
				  " WHERE agent OPERATOR(pg_catalog.=) $1 AND version OPERATOR(pg_catalog.=) $2",
				  2, t2, values, NULL);
	}
}

/*
 * Paired differences (a's net return minus b's) on the bars both traded:
 * the champion minus its predecessor, or a challenger minus the champion.
 */
static void
add_pairs(RlSeqState *st, const Decisions *champ, const Decisions *pred,
		  const char *what)
{
	int64		i = 0;
	int64		j = 0;
	char		err[RL_SEQ_ERRLEN];

	while (i < champ->n && j < pred->n)
	{
		if (champ->ts[i] < pred->ts[j])
			i++;
		else if (champ->ts[i] > pred->ts[j])
			j++;
		else
		{
			if (rl_seq_add_pair(st, champ->net[i], pred->net[j], err) != RL_SEQ_OK)
				ereport(ERROR,
						(errcode(ERRCODE_DATA_EXCEPTION),
						 errmsg("cannot compare %s", what),
						 errdetail("%s", err)));
			i++;
			j++;
		}
	}
}

/* Deploy a version on monitor()'s evidence: the action, why, the details. */
static void
deploy_on_evidence(const RlAgent *ag, const char *version, const char *action,
				   const char *reason, const char *details)
{
	Oid			types[5] = {TEXTOID, TEXTOID, TEXTOID, TEXTOID, JSONBOID};
	Datum		values[5];

	values[0] = CStringGetTextDatum(ag->name);
	values[1] = CStringGetTextDatum(version);
	values[2] = CStringGetTextDatum(action);
	values[3] = CStringGetTextDatum(reason);
	values[4] = DirectFunctionCall1(jsonb_in, CStringGetDatum(details));
	owner_sql("SELECT rl_mlops._deploy_on_evidence($1, $2, $3, $4, $5)", 5, types, values, NULL);
}

/*
 * A paired test's state from its stored float8[] (live_comparisons or
 * agent_challengers), or the "corrupt" error naming both versions.
 */
static void
seq_state_from(Datum array, RlSeqState *st, const char *what, const char *version,
			   const char *other)
{
	ArrayType  *arr = DatumGetArrayTypeP(array);
	char		err[RL_SEQ_ERRLEN] = "";

	if (ArrayGetNItems(ARR_NDIM(arr), ARR_DIMS(arr)) == RL_SEQ_STATE_LEN &&
		!ARR_HASNULL(arr) &&
		rl_seq_deserialize((const double *) ARR_DATA_PTR(arr), st, err) == RL_SEQ_OK)
		return;
	ereport(ERROR,
			(errcode(ERRCODE_DATA_CORRUPTED),
			 errmsg("the comparison of %s \"%s\" with \"%s\" is corrupt", what, version, other),
			 errdetail("%s", err[0] ? err : "The stored state does not have the expected length.")));
}

/* The comparison's state, read or new. */
static void
load_comparison(const RlAgent *ag, const LiveVersion *champ, RlSeqState *st)
{
	Oid			types4[4] = {TEXTOID, TEXTOID, TEXTOID, INT8OID};
	Datum		values4[4] = {CStringGetTextDatum(ag->name), CStringGetTextDatum(champ->version),
		CStringGetTextDatum(champ->predecessor), Int64GetDatum(champ->deployment_id)};
	char		err[RL_SEQ_ERRLEN];

	/* a new deployment of the same pair is a new probation: a new test */
	if (owner_sql("SELECT state FROM rl_mlops.live_comparisons"
				  " WHERE agent OPERATOR(pg_catalog.=) $1 AND champion OPERATOR(pg_catalog.=) $2"
				  "   AND predecessor OPERATOR(pg_catalog.=) $3"
				  "   AND deployment_id OPERATOR(pg_catalog.=) $4", 4, types4, values4, NULL) == 1)
	{
		bool		isnull;

		seq_state_from(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull),
					   st, "version", champ->version, champ->predecessor);
		return;
	}
	if (rl_seq_init(st, RL_SEQ_DEFAULT_TAU2, ag->min_live_decisions, err) != RL_SEQ_OK)
		elog(ERROR, "%s", err);
}

/* Store the comparison's state and result. */
static void
save_comparison(const RlAgent *ag, const LiveVersion *champ, const RlSeqState *st,
				const RlSeqResult *r)
{
	double		buf[RL_SEQ_STATE_LEN];
	Oid			types_p[10] = {TEXTOID, TEXTOID, TEXTOID, FLOAT8ARRAYOID, INT8OID, FLOAT8OID,
	FLOAT8OID, FLOAT8OID, FLOAT8OID, INT8OID};
	Datum		values[10];
	char		nulls[11] = "          ";

	rl_seq_serialize(st, buf);
	values[0] = CStringGetTextDatum(ag->name);
	values[1] = CStringGetTextDatum(champ->version);
	values[2] = CStringGetTextDatum(champ->predecessor);
	values[3] = array_of(buf, RL_SEQ_STATE_LEN, FLOAT8OID);
	values[4] = Int64GetDatum(r->n);
	values[5] = Float8GetDatum(r->mean);
	values[6] = Float8GetDatum(r->log_lambda);
	values[7] = Float8GetDatum(r->log_threshold);
	values[8] = Float8GetDatum(r->p_value_side);
	values[9] = Int64GetDatum(champ->deployment_id);
	owner_sql("INSERT INTO rl_mlops.live_comparisons AS c (agent, champion, predecessor, state,"
			  "       decisions, mean_difference, log_lambda, log_threshold, p_value, deployment_id)"
			  " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
			  " ON CONFLICT (agent, champion, predecessor) DO UPDATE SET"
			  "   state = EXCLUDED.state, decisions = EXCLUDED.decisions,"
			  "   mean_difference = EXCLUDED.mean_difference, log_lambda = EXCLUDED.log_lambda,"
			  "   log_threshold = EXCLUDED.log_threshold, p_value = EXCLUDED.p_value,"
			  "   deployment_id = EXCLUDED.deployment_id,"
			  "   started_at = CASE WHEN c.deployment_id OPERATOR(pg_catalog.=) EXCLUDED.deployment_id"
			  "                     THEN c.started_at ELSE pg_catalog.now() END",
			  10, types_p, values, nulls);
}

/*
 * A challenger's paired test against the champion: read, or new when it
 * was last compared with another champion (a new champion starts a new
 * family of comparisons).
 */
static void
load_challenger_test(const RlAgent *ag, const LiveVersion *champ, LiveVersion *c,
					 MemoryContext cxt)
{
	Oid			types[2] = {TEXTOID, TEXTOID};
	Datum		values[2] = {CStringGetTextDatum(ag->name), CStringGetTextDatum(c->version)};
	char		err[RL_SEQ_ERRLEN];

	c->challenger_test = MemoryContextAlloc(cxt, sizeof(RlSeqState));
	if (owner_sql("SELECT champion, state FROM rl_mlops.agent_challengers"
				  " WHERE agent OPERATOR(pg_catalog.=) $1 AND version OPERATOR(pg_catalog.=) $2"
				  "   AND champion IS NOT NULL AND state IS NOT NULL",
				  2, types, values, NULL) == 1 &&
		strcmp(SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1), champ->version) == 0)
	{
		bool		isnull;

		seq_state_from(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull),
					   c->challenger_test, "challenger", c->version, champ->version);
		return;
	}
	if (rl_seq_init(c->challenger_test, RL_SEQ_DEFAULT_TAU2, ag->min_live_decisions, err) != RL_SEQ_OK)
		elog(ERROR, "%s", err);
}

/*
 * How many challengers the Holm correction counts: those present, and
 * those removed after being compared with this champion (a challenger
 * removed for losing must not shrink the family of the ones left).
 */
static int32
challenger_family(const RlAgent *ag, const LiveVersion *champ)
{
	Oid			types[2] = {TEXTOID, TEXTOID};
	Datum		values[2] = {CStringGetTextDatum(ag->name), CStringGetTextDatum(champ->version)};
	bool		isnull;

	owner_sql("SELECT pg_catalog.count(*)::pg_catalog.int4 FROM rl_mlops.agent_challengers"
			  " WHERE agent OPERATOR(pg_catalog.=) $1"
			  "   AND (removed_at IS NULL OR (champion OPERATOR(pg_catalog.=) $2"
			  "                               AND decisions OPERATOR(pg_catalog.>) 0))",
			  2, types, values, NULL);
	return DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
}

/*
 * Test every challenger against the champion (one-sided: the challenger
 * earns more), Holm-corrected over the family at monitor_alpha, and store
 * each one's state and result.  Returns the index in v of the challenger
 * to promote (the smallest adjusted p-value, then the largest mean
 * difference), or -1.
 */
static int
test_challengers(const RlAgent *ag, LiveVersion *v, int n_versions)
{
	int32		k = challenger_family(ag, &v[0]);
	int			n = 0;
	int		   *index;
	double	   *p;
	double	   *p_adj;
	bool	   *reject;
	int32		n_reject;
	int			best = -1;
	char		err[RL_SEQ_ERRLEN];

	for (int i = 0; i < n_versions; i++)
		n += v[i].challenger_test != NULL;
	if (n == 0)
		return -1;
	k = Max(k, n);
	index = palloc(n * sizeof(int));
	p = palloc(k * sizeof(double));
	p_adj = palloc(k * sizeof(double));
	reject = palloc(k * sizeof(bool));
	for (int i = 0, j = 0; i < n_versions; i++)
	{
		if (v[i].challenger_test == NULL)
			continue;
		if (rl_seq_test(v[i].challenger_test, ag->monitor_alpha, 1, &v[i].challenger_result, err) != RL_SEQ_OK)
			elog(ERROR, "%s", err);
		index[j] = i;
		p[j++] = v[i].challenger_result.p_value_side;
	}
	/* the removed ones of the family: counted, never rejected */
	for (int j = n; j < k; j++)
		p[j] = 1.0;
	if (rl_seq_holm(p, k, ag->monitor_alpha, p_adj, reject, &n_reject, err) != RL_SEQ_OK)
		elog(ERROR, "%s", err);
	for (int j = 0; j < n; j++)
	{
		LiveVersion *c = &v[index[j]];
		const RlSeqResult *r = &c->challenger_result;
		double		buf[RL_SEQ_STATE_LEN];
		Oid			types[12] = {TEXTOID, TEXTOID, TEXTOID, FLOAT8ARRAYOID, INT8OID, FLOAT8OID,
			FLOAT8OID, FLOAT8OID, FLOAT8OID, FLOAT8OID, INT4OID, BOOLOID};
		Datum		values[12];

		c->p_value_holm = p_adj[j];
		c->family_size = k;
		c->beats_champion = reject[j];
		if (reject[j] && (best < 0 || p_adj[j] < v[best].p_value_holm ||
						  (p_adj[j] == v[best].p_value_holm && r->mean > v[best].challenger_result.mean)))
			best = index[j];
		rl_seq_serialize(c->challenger_test, buf);
		values[0] = CStringGetTextDatum(ag->name);
		values[1] = CStringGetTextDatum(c->version);
		values[2] = CStringGetTextDatum(v[0].version);
		values[3] = array_of(buf, RL_SEQ_STATE_LEN, FLOAT8OID);
		values[4] = Int64GetDatum(r->n);
		values[5] = Float8GetDatum(r->mean);
		values[6] = Float8GetDatum(r->log_lambda);
		values[7] = Float8GetDatum(r->log_threshold);
		values[8] = Float8GetDatum(r->p_value_side);
		values[9] = Float8GetDatum(p_adj[j]);
		values[10] = Int32GetDatum(k);
		values[11] = BoolGetDatum(reject[j]);
		owner_sql("UPDATE rl_mlops.agent_challengers SET champion = $3, state = $4, decisions = $5,"
				  "       mean_difference = $6, log_lambda = $7, log_threshold = $8, p_value = $9,"
				  "       p_value_holm = $10, family_size = $11, beats_champion = $12"
				  " WHERE agent OPERATOR(pg_catalog.=) $1 AND version OPERATOR(pg_catalog.=) $2",
				  12, types, values, NULL);
	}
	return best;
}

/* Deploy a challenger that beats the champion, recording the evidence. */
static void
promote(const RlAgent *ag, const LiveVersion *champ, const LiveVersion *c)
{
	const RlSeqResult *r = &c->challenger_result;
	StringInfoData js;
	char	   *reason;

	initStringInfo(&js);
	appendStringInfo(&js, "{\"rule\": \"paired always-valid test (mSPRT, tau2 %g), Holm over %d challenger(s): the challenger earns more per bar\","
					 " \"statistic\": %.10g, \"threshold\": %.10g, \"p_value\": %.10g, \"p_value_holm\": %.10g,"
					 " \"alpha\": %g, \"decisions\": " INT64_FORMAT ", \"mean_difference\": %.10g,"
					 " \"challenger\": {\"version\": ",
					 RL_SEQ_DEFAULT_TAU2, c->family_size, r->log_lambda, r->log_threshold, r->p_value_side,
					 c->p_value_holm, ag->monitor_alpha, (int64) r->n, r->mean);
	escape_json(&js, c->version);
	appendStringInfo(&js, ", \"live_return\": %.10g, \"decisions\": " INT64_FORMAT "}, \"champion\": {\"version\": ",
					 c->perf.total, (int64) c->perf.n);
	escape_json(&js, champ->version);
	appendStringInfo(&js, ", \"live_return\": %.10g, \"decisions\": " INT64_FORMAT "}}",
					 champ->perf.total, (int64) champ->perf.n);
	reason = psprintf("monitor(): challenger %s earns more than %s on " INT64_FORMAT " paired bars (Holm-adjusted p %.3g <= %g)",
					  c->version, champ->version, (int64) r->n, c->p_value_holm, ag->monitor_alpha);
	deploy_on_evidence(ag, c->version, "promote", reason, js.data);
	ereport(LOG, (errmsg("rl_mlops: %s: promoted version %s of agent %s", reason, c->version, ag->name)));
}

/* Is an automatic rollback of the agent within its cooldown? */
static bool
in_cooldown(const RlAgent *ag)
{
	Oid			types[1] = {TEXTOID};
	Datum		values[1] = {CStringGetTextDatum(ag->name)};

	return owner_sql("SELECT 1 FROM rl_mlops.deployments d JOIN rl_mlops.agents a ON a.name OPERATOR(pg_catalog.=) d.agent"
					 " WHERE d.agent OPERATOR(pg_catalog.=) $1"
					 "   AND d.action OPERATOR(pg_catalog.=) 'auto_rollback'"
					 "   AND d.deployed_at OPERATOR(pg_catalog.>) (pg_catalog.now() OPERATOR(pg_catalog.-) a.rollback_cooldown)"
					 " LIMIT 1", 1, types, values, NULL) > 0;
}

/* Roll back to the predecessor, recording the evidence. */
static void
auto_rollback(const RlAgent *ag, const LiveVersion *champ, const LiveVersion *pred,
			  const RlSeqResult *r)
{
	StringInfoData js;
	char	   *reason;

	initStringInfo(&js);
	appendStringInfo(&js, "{\"rule\": \"paired always-valid test (mSPRT, tau2 %g): the predecessor earns more per bar\","
					 " \"statistic\": %.10g, \"threshold\": %.10g, \"p_value\": %.10g,"
					 " \"alpha\": %g, \"decisions\": " INT64_FORMAT ", \"mean_difference\": %.10g,"
					 " \"champion\": {\"version\": ",
					 RL_SEQ_DEFAULT_TAU2, r->log_lambda, r->log_threshold, r->p_value_side,
					 ag->monitor_alpha, (int64) r->n, r->mean);
	escape_json(&js, champ->version);
	appendStringInfo(&js, ", \"live_return\": %.10g, \"decisions\": " INT64_FORMAT "}, \"predecessor\": {\"version\": ",
					 champ->perf.total, (int64) champ->perf.n);
	escape_json(&js, pred->version);
	appendStringInfo(&js, ", \"live_return\": %.10g, \"decisions\": " INT64_FORMAT "}}",
					 pred->perf.total, (int64) pred->perf.n);
	reason = psprintf("monitor(): version %s earns less than %s on " INT64_FORMAT " paired bars (log Lambda %.3f >= %.3f)",
					  champ->version, pred->version, (int64) r->n, r->log_lambda, r->log_threshold);
	deploy_on_evidence(ag, pred->version, "auto_rollback", reason, js.data);
	ereport(LOG, (errmsg("rl_mlops: %s: rolled back agent %s to %s", reason, ag->name, pred->version)));
}


/*
 * monitor(agent): see the header.  Returns {"agent", "versions": [...],
 * "comparison", "actions", "alerts", "errors"}.
 */
Datum
rl_monitor(PG_FUNCTION_ARGS)
{
	char	   *name;
	RlAgent    *ag;
	LiveVersion *v;
	int			n_versions;
	char	  **symbols;
	int			n_symbols = 0;
	MemoryContext cxt = CurrentMemoryContext;
	StringInfoData out;
	StringInfoData alerts;
	StringInfoData errors;
	StringInfoData actions;
	LiveVersion *pred = NULL;
	RlSeqState st;
	RlSeqResult r;
	bool		compare;
	bool		rolled_back = false;
	TimestampTz newest = DT_NOBEGIN;
	Pair	   *pairs;
	Batch		ledger = {0};
	Batch		late = {0};

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("agent must not be null")));
	if (RecoveryInProgress())
		ereport(ERROR,
				(errcode(ERRCODE_READ_ONLY_SQL_TRANSACTION),
				 errmsg("monitor() cannot run on a hot standby"),
				 errdetail("Monitoring writes the ledger and may roll back; serving on a standby is unaffected."),
				 errhint("Call rl_mlops.monitor() on the primary.")));
	name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	ag = rl_agent_read(name);

	initStringInfo(&alerts);
	initStringInfo(&errors);
	initStringInfo(&actions);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	{
		Oid			types[1] = {TEXTOID};
		Datum		values[1] = {CStringGetTextDatum(name)};

		/* one call at a time per agent, and no deploy in between */
		owner_sql("SELECT rl_mlops._lock_agent($1)", 1, types, values, NULL);
	}
	v = live_versions(name, &n_versions, cxt);
	if (n_versions == 0 || !v[0].champion)
	{
		append_item(&alerts, "no model active: nothing to monitor");
		n_versions = 0;
	}
	for (int i = 0; i < n_versions; i++)
	{
		v[i].model = rl_serve_version(name, v[i].version);
		rl_serve_check_arch(v[i].model, ag);
		load_metrics(name, &v[i]);
		if (v[0].predecessor != NULL && strcmp(v[i].version, v[0].predecessor) == 0)
			pred = &v[i];
		if (strcmp(v[i].role, "challenger") == 0)
			load_challenger_test(ag, &v[0], &v[i], cxt);
	}
	symbols = n_versions > 0 ? live_symbols(ag, &v[0], &n_symbols, cxt) : NULL;
	if (n_versions == 0)
		n_symbols = 0;
	qsort(symbols, n_symbols, sizeof(char *), cmp_symbol);
	pairs = load_positions(name, v, n_versions, symbols, n_symbols, cxt);

	compare = pred != NULL;
	if (compare)
		load_comparison(ag, &v[0], &st);

	for (int k = 0; k < n_symbols; k++)
	{
		Decisions  *dec = palloc0(n_versions * sizeof(Decisions));

		trade_symbol_or_report(ag, v, n_versions, &pairs[k * n_versions], k, symbols[k],
							   dec, &ledger, &late, &errors);
		for (int i = 0; i < n_versions; i++)
			if (dec[i].n > 0)
				newest = Max(newest, dec[i].ts[dec[i].n - 1]);
		if (compare && dec[0].n > 0)
			add_pairs(&st, &dec[0], &dec[pred - v], "the champion with its predecessor");
		for (int i = 1; i < n_versions; i++)
			if (v[i].challenger_test != NULL && dec[i].n > 0 && dec[0].n > 0)
				add_pairs(v[i].challenger_test, &dec[i], &dec[0],
						  psprintf("challenger %s with the champion", v[i].version));
	}
	write_batches(name, v, n_versions, symbols, n_symbols, pairs, &ledger, &late);

	for (int i = 0; i < n_versions; i++)
		if (v[i].decisions > 0)
			save_metrics(ag, &v[i]);

	if (compare)
	{
		char		err[RL_SEQ_ERRLEN];

		if (rl_seq_test(&st, ag->monitor_alpha, -1, &r, err) != RL_SEQ_OK)
			elog(ERROR, "%s", err);
		save_comparison(ag, &v[0], &st, &r);
		if (r.decision == RL_SEQ_REJECT)
		{
			if (!ag->auto_rollback)
				append_item(&alerts, psprintf("version %s earns less than its predecessor %s (auto_rollback is off)",
											  v[0].version, pred->version));
			else if (in_cooldown(ag))
				append_item(&alerts, psprintf("version %s earns less than its predecessor %s (in rollback_cooldown)",
											  v[0].version, pred->version));
			else
			{
				auto_rollback(ag, &v[0], pred, &r);
				rolled_back = true;
				append_item(&actions, psprintf("auto_rollback from %s to %s", v[0].version, pred->version));
			}
		}
	}
	if (n_versions > 0)
	{
		int			best = test_challengers(ag, v, n_versions);

		for (int i = 1; i < n_versions; i++)
		{
			if (!v[i].beats_champion)
				continue;
			if (i == best && rolled_back)
				append_item(&alerts, psprintf("challenger %s beats the champion %s (Holm-adjusted p %.3g): not promoted in the call that rolled back",
											  v[i].version, v[0].version, v[i].p_value_holm));
			else if (i == best && ag->auto_promote && in_cooldown(ag))
				append_item(&alerts, psprintf("challenger %s beats the champion %s (Holm-adjusted p %.3g; in rollback_cooldown)",
											  v[i].version, v[0].version, v[i].p_value_holm));
			else if (i == best && ag->auto_promote)
			{
				promote(ag, &v[0], &v[i]);
				append_item(&actions, psprintf("promote %s over %s", v[i].version, v[0].version));
			}
			else
				append_item(&alerts, psprintf("challenger %s beats the champion %s (Holm-adjusted p %.3g, statistic %.3f >= %.3f)%s",
											  v[i].version, v[0].version, v[i].p_value_holm,
											  v[i].challenger_result.log_lambda, v[i].challenger_result.log_threshold,
											  ag->auto_promote ? "" : ": auto_promote is off, deploy it with rl_mlops.deploy_model()"));
		}
	}
	if (n_versions > 0)
	{
		if (v[0].late_bars > 0)
			append_item(&alerts, psprintf(INT64_FORMAT " bar(s) arrived at or before the last evaluated bar of their symbol: counted, not evaluated",
										  v[0].late_bars));
		if (v[0].drifted)
			append_item(&alerts, psprintf("drift: the live volatility of the market is %.3g times the training sigma (p %.3g)%s",
										  exp(v[0].drift_stat / 2.0), v[0].drift_p,
										  ag->retrain_on_drift ? "; retrain_if_due() retrains early" : ""));
		if (v[0].perf.max_dd > ag->max_live_drawdown)
			append_item(&alerts, psprintf("live drawdown of %s is %.4f, beyond max_live_drawdown %g",
										  v[0].version, v[0].perf.max_dd, ag->max_live_drawdown));
		if (v[0].last_bar != 0 && v[0].last_bar != DT_NOBEGIN)
		{
			TimestampTz last = Max(v[0].last_bar, newest);
			Interval   *stale = DatumGetIntervalP(DirectFunctionCall3(interval_in,
																	  CStringGetDatum(ag->stale_after),
																	  ObjectIdGetDatum(InvalidOid),
																	  Int32GetDatum(-1)));
			TimestampTz limit = DatumGetTimestampTz(DirectFunctionCall2(timestamptz_mi_interval,
																		TimestampTzGetDatum(GetCurrentTransactionStartTimestamp()),
																		IntervalPGetDatum(stale)));

			if (last < limit)
				append_item(&alerts, psprintf("no new bar since %s (stale_after %s)",
											  timestamptz_to_str(last), ag->stale_after));
		}
	}

	/* the result outlives SPI's memory */
	{
		MemoryContext spi_cxt = MemoryContextSwitchTo(cxt);

		initStringInfo(&out);
		MemoryContextSwitchTo(spi_cxt);
	}
	appendStringInfoString(&out, "{\"agent\": ");
	escape_json(&out, name);
	appendStringInfoString(&out, ", \"versions\": [");
	for (int i = 0; i < n_versions; i++)
	{
		if (i > 0)
			appendStringInfoString(&out, ", ");
		appendStringInfoString(&out, "{\"version\": ");
		escape_json(&out, v[i].version);
		appendStringInfo(&out, ", \"role\": \"%s\", \"decisions\": " INT64_FORMAT
						 ", \"late_bars\": " INT64_FORMAT
						 ", \"live_decisions\": " INT64_FORMAT ", \"live_return\": %.10g}",
						 v[i].role, v[i].decisions,
						 v[i].late_bars, (int64) v[i].perf.n, v[i].perf.total);
	}
	appendStringInfoString(&out, "]");
	if (compare)
	{
		appendStringInfoString(&out, ", \"comparison\": {\"predecessor\": ");
		escape_json(&out, pred->version);
		appendStringInfo(&out, ", \"decisions\": " INT64_FORMAT ", \"mean_difference\": %.10g"
						 ", \"statistic\": %.10g, \"threshold\": %.10g, \"p_value\": %.10g}",
						 (int64) r.n, r.mean, r.log_lambda, r.log_threshold, r.p_value_side);
	}
	appendStringInfo(&out, ", \"actions\": [%s], \"alerts\": [%s], \"errors\": [%s]}",
					 actions.data, alerts.data, errors.data);
	{
		Oid			types[2] = {TEXTOID, JSONBOID};
		Datum		values[2];

		values[0] = CStringGetTextDatum(name);
		values[1] = DirectFunctionCall1(jsonb_in, CStringGetDatum(out.data));
		owner_sql("INSERT INTO rl_mlops.monitor_calls (agent, result) VALUES ($1, $2)",
				  2, types, values, NULL);
		/* ledger retention, in bar time: the aggregates keep their totals */
		if (newest != DT_NOBEGIN)
		{
			Oid			t2[2] = {TEXTOID, TIMESTAMPTZOID};
			Datum		v2[2] = {values[0], TimestampTzGetDatum(newest)};

			owner_sql("DELETE FROM rl_mlops.live_late_bars l USING rl_mlops.agents a"
					  " WHERE a.name OPERATOR(pg_catalog.=) $1 AND l.agent OPERATOR(pg_catalog.=) $1"
					  "   AND l.ts OPERATOR(pg_catalog.<) ($2 OPERATOR(pg_catalog.-)"
					  "       pg_catalog.make_interval(days => a.ledger_retention_days))",
					  2, t2, v2, NULL);
			owner_sql("DELETE FROM rl_mlops.live_ledger l USING rl_mlops.agents a"
					  " WHERE a.name OPERATOR(pg_catalog.=) $1 AND l.agent OPERATOR(pg_catalog.=) $1"
					  "   AND l.ts OPERATOR(pg_catalog.<) ($2 OPERATOR(pg_catalog.-)"
					  "       pg_catalog.make_interval(days => a.ledger_retention_days))",
					  2, t2, v2, NULL);
		}
	}
	SPI_finish();
	PG_RETURN_DATUM(DirectFunctionCall1(jsonb_in, CStringGetDatum(out.data)));
}
