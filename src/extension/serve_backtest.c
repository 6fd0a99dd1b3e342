/*-------------------------------------------------------------------------
 *
 * serve_backtest.c
 *	  backtest() and backtest_summary(): a greedy backtest of the active or
 *	  a named version over a time range of one symbol.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "funcapi.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"
#include "utils/tuplestore.h"

#include "backtest.h"
#include "serve.h"

PG_FUNCTION_INFO_V1(rl_backtest_rows);
PG_FUNCTION_INFO_V1(rl_backtest_summary);

/* A finished backtest, for the per-step rows or the summary. */
typedef struct BacktestResult
{
	const ServeModel *model;
	const RlSourceRows *rows;
	int64		t_from;
	int64		t_to;
	double		periods_per_year;
	RlBacktestStep *steps;
	RlBacktestSummary summary;
} BacktestResult;

/*
 * Backtest of backtest(agent, symbol, from, to, version): decisions at
 * every bar in [from, to] that has a full window behind it and a next bar
 * within the range, starting flat.
 */
static void
run_backtest(FunctionCallInfo fcinfo, BacktestResult *res)
{
	char	   *agent = rl_serve_text_arg(fcinfo, 0, "agent");
	char	   *symbol = rl_serve_text_arg(fcinfo, 1, "symbol");
	TimestampTz from = rl_serve_ts_arg(fcinfo, 2, "from");
	TimestampTz to = rl_serve_ts_arg(fcinfo, 3, "to");
	char	   *version = PG_ARGISNULL(4) ? NULL :
		text_to_cstring(PG_GETARG_TEXT_PP(4));
	RlAgent *ag;
	RlSourceRows *rows;
	RlSeries	s;
	int32		w;
	char		err[RL_ENV_ERRLEN];

	if (from > to)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("backtest range is empty"),
				 errdetail("\"from\" (%s) is after \"to\" (%s).",
						   pstrdup(timestamptz_to_str(from)),
						   pstrdup(timestamptz_to_str(to)))));

	ag = rl_agent_read(agent);
	w = ag->arch.window;
	rows = rl_source_read_range(&ag->source, symbol, from, to, w);
	res->rows = rows;
	res->t_from = Max(rows->n_before, w);
	res->t_to = rows->n - 2;
	if (res->t_to < res->t_from)
		ereport(ERROR,
				(errcode(ERRCODE_NO_DATA_FOUND),
				 errmsg("not enough history for a backtest of symbol \"%s\"",
						symbol),
				 errdetail("A decision needs %d earlier prices and a later price in the range; the source has " INT64_FORMAT " rows in the range and " INT64_FORMAT " before it.",
						   w, rows->n - rows->n_before, rows->n_before)));
	s = rl_source_series(rows, symbol);
	res->model = version != NULL ? rl_serve_version(agent, version) :
		rl_serve_active_model(agent);
	rl_serve_check_arch(res->model, ag);
	res->periods_per_year =
		rl_source_periods_per_year(rows->ts + res->t_from,
								   res->t_to - res->t_from + 2);
	res->steps = palloc_extended((res->t_to - res->t_from + 1) *
								 sizeof(RlBacktestStep), MCXT_ALLOC_HUGE);
	rl_serve_check_env(rl_backtest(&res->model->w, &s, res->model->sigma, ag->cost,
						  res->t_from, res->t_to, res->periods_per_year,
						  res->model->work, res->steps, &res->summary, err),
			  err);
}

/*
 * backtest(...): one row per decision: the bar's time and price, the
 * position held until the next bar, the reward earned over it and the
 * equity after it (from 1.0).
 */
Datum
rl_backtest_rows(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	BacktestResult res;

	run_backtest(fcinfo, &res);
	InitMaterializedSRF(fcinfo, 0);
	for (int64 i = 0; i <= res.t_to - res.t_from; i++)
	{
		const RlBacktestStep *st = &res.steps[i];
		Datum		values[5];
		bool		nulls[5] = {0};

		values[0] = TimestampTzGetDatum(res.rows->ts[st->t]);
		values[1] = Float8GetDatum(res.rows->prices[st->t]);
		values[2] = Int32GetDatum(st->position);
		values[3] = Float8GetDatum(st->reward);
		values[4] = Float8GetDatum(st->equity);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values,
							 nulls);
	}
	return (Datum) 0;
}

/*
 * backtest_summary(...): the metrics of the same backtest in one row, and
 * how far to trust them: the Sharpe ratio's standard error (Lo 2002, iid
 * returns: sqrt(ppy / n * (1 + SR_bar^2 / 2)), SR_bar the per-bar ratio),
 * low_sample below RL_LOW_SAMPLE_STEPS decisions, and in_sample when the
 * range overlaps the bars the version was trained and validated on.
 */
#define RL_LOW_SAMPLE_STEPS 250

Datum
rl_backtest_summary(PG_FUNCTION_ARGS)
{
	BacktestResult res;
	TupleDesc	tupdesc;
	Datum		values[11];
	bool		nulls[11] = {0};
	TimestampTz from = PG_GETARG_TIMESTAMPTZ(2);
	TimestampTz to = PG_GETARG_TIMESTAMPTZ(3);

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	run_backtest(fcinfo, &res);
	values[0] = CStringGetTextDatum(res.model->version);
	values[1] = Int64GetDatum(res.summary.n_steps);
	values[2] = Float8GetDatum(res.summary.total_log_return);
	values[3] = Float8GetDatum(res.summary.sharpe);
	values[4] = Float8GetDatum(res.summary.max_drawdown);
	values[5] = Float8GetDatum(res.summary.turnover);
	values[6] = Float8GetDatum(res.summary.buy_hold_log_return);
	values[7] = Float8GetDatum(res.periods_per_year);
	if (res.summary.n_steps > 1 && res.periods_per_year > 0)
		values[8] = Float8GetDatum(sqrt(res.periods_per_year / (double) res.summary.n_steps *
										(1.0 + res.summary.sharpe * res.summary.sharpe /
										 (2.0 * res.periods_per_year))));
	else
		nulls[8] = true;
	values[9] = BoolGetDatum(res.summary.n_steps < RL_LOW_SAMPLE_STEPS);
	values[10] = BoolGetDatum(res.model->has_data_range &&
							  from <= res.model->data_to && to >= res.model->data_from);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(tupdesc),
													  values, nulls)));
}

