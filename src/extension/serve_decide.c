/*-------------------------------------------------------------------------
 *
 * serve_decide.c
 *	  decide(): the position to hold from a symbol's last bar, from an
 *	  observation built from the source as in training.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "funcapi.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

#include "backtest.h"
#include "serve.h"

PG_FUNCTION_INFO_V1(rl_decide);

/*
 * The position reached by the greedy policy over decisions first .. t - 1,
 * starting flat at first, as an episode does in training and backtests.
 */
static int32
replay_position(const ServeModel *m, const RlAgent *ag, const RlSeries *s,
				int64 first, int64 t)
{
	RlBacktestStep *steps;
	char		err[RL_ENV_ERRLEN];

	if (first > t - 1)
		return 0;
	steps = palloc((t - first) * sizeof(RlBacktestStep));
	rl_serve_check_env(rl_backtest(&m->w, s, m->sigma, ag->cost, first, t - 1, 1.0,
						  m->work, steps, NULL, err), err);
	return steps[t - 1 - first].position;
}

/*
 * decide(agent, symbol, at, position): the position to hold from the last
 * bar at or before "at", from an observation built as in training.  With
 * position NULL the position held coming in is the one the greedy policy
 * reaches over the preceding episode_length bars, starting flat.
 */
Datum
rl_decide(PG_FUNCTION_ARGS)
{
	char	   *agent = rl_serve_text_arg(fcinfo, 0, "agent");
	char	   *symbol = rl_serve_text_arg(fcinfo, 1, "symbol");
	TimestampTz at = rl_serve_ts_arg(fcinfo, 2, "at");
	bool		replay = PG_ARGISNULL(3);
	int32		position = replay ? 0 : PG_GETARG_INT32(3);
	RlAgent *ag;
	RlSourceRows *rows;
	RlSeries	s;
	ServeModel *m;
	int32		w;
	int64		t;
	float	   *obs;
	float	   *probs;
	int			action;
	char		err[RL_ENV_ERRLEN];
	TupleDesc	tupdesc;
	Datum		values[6];
	bool		nulls[6] = {0};
	Datum		elems[RL_N_ACTIONS];

	if (position < -1 || position > 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("position must be -1, 0 or 1"),
				 errdetail("Got %d.", position)));
	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");

	/* the source first: reading it cannot then invalidate the model we use */
	ag = rl_agent_read(agent);
	w = ag->arch.window;
	rows = rl_source_read_last(&ag->source, symbol, at,
							   w + 1 + (replay ? (int64) ag->episode_length : 0));
	if (rows->n < w + 1)
		ereport(ERROR,
				(errcode(ERRCODE_NO_DATA_FOUND),
				 errmsg("not enough history of symbol \"%s\" at %s",
						symbol, timestamptz_to_str(at)),
				 errdetail("An observation needs %d prices (window %d plus one); the source has " INT64_FORMAT " up to that time.",
						   w + 1, w, rows->n)));
	s = rl_source_series(rows, symbol);
	t = rows->n - 1;
	m = rl_serve_decider(agent, symbol);
	rl_serve_check_arch(m, ag);

	if (replay)
		position = replay_position(m, ag, &s,
								   Max(w, t - ag->episode_length), t);
	obs = m->work;
	probs = m->work + m->w.arch.obs_dim + RL_FORWARD_SCRATCH(&m->w.arch);
	rl_serve_check_env(rl_env_observation(&s, w, ag->arch.n_features, m->sigma, t,
								 position, obs, err), err);
	rl_forward(&m->w, obs, probs, NULL, m->work + m->w.arch.obs_dim);
	action = rl_argmax(probs, RL_N_ACTIONS);

	for (int a = 0; a < RL_N_ACTIONS; a++)
		elems[a] = Float4GetDatum(probs[a]);
	values[0] = Int32GetDatum(rl_action_position(action));
	values[1] = Int32GetDatum(action);
	values[2] = PointerGetDatum(construct_array(elems, RL_N_ACTIONS, FLOAT4OID,
												sizeof(float4), true,
												TYPALIGN_INT));
	values[3] = TimestampTzGetDatum(rows->ts[t]);
	values[4] = Float8GetDatum(rows->prices[t]);
	values[5] = CStringGetTextDatum(m->version);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(tupdesc),
													  values, nulls)));
}

