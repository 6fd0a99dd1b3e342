/*-------------------------------------------------------------------------
 *
 * serve_act.c
 *	  act(), policy() and value(): the cached active model's forward pass
 *	  over an observation the caller built.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "catalog/pg_type.h"
#include "utils/array.h"
#include "utils/builtins.h"

#include "serve.h"

PG_FUNCTION_INFO_V1(rl_act);
PG_FUNCTION_INFO_V1(rl_policy);
PG_FUNCTION_INFO_V1(rl_value);

/*
 * The observation argument as floats, refused unless it is exactly what
 * the network takes: one dimension, obs_dim elements, no NULL, finite.
 */
static const float *
observation_arg(FunctionCallInfo fcinfo, const RlArch *arch)
{
	ArrayType  *arr = PG_GETARG_ARRAYTYPE_P(0);
	int			ndim = ARR_NDIM(arr);
	int			n = ndim == 0 ? 0 : ARR_DIMS(arr)[0];
	const float *v;

	if (ndim > 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("observation must be a one-dimensional array"),
				 errdetail("The array has %d dimensions.", ndim)));
	if (n != arch->obs_dim)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("observation has the wrong length"),
				 errdetail("expected %d, got %d", arch->obs_dim, n),
				 errhint("An observation is %d scaled returns, the current position and %d features.",
						 arch->window, arch->n_features)));
	if (ARR_HASNULL(arr))
	{
		bits8	   *bitmap = ARR_NULLBITMAP(arr);
		int			j = 0;

		while (j < n && (bitmap[j / 8] & (1 << (j % 8))) != 0)
			j++;
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("observation must not contain nulls"),
				 errdetail("Element %d is null.", j + 1)));
	}
	v = (const float *) ARR_DATA_PTR(arr);
	for (int j = 0; j < n; j++)
	{
		if (!isfinite(v[j]))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("observation must be finite"),
					 errdetail("Element %d is %g.", j + 1, (double) v[j])));
	}
	return v;
}

/* act(obs, agent): the greedy action 0, 1 or 2 (short, flat, long). */
Datum
rl_act(PG_FUNCTION_ARGS)
{
	ServeModel *m = rl_serve_model_for_call(fcinfo);
	const float *obs = observation_arg(fcinfo, &m->w.arch);
	float		probs[RL_N_ACTIONS];

	rl_forward(&m->w, obs, probs, NULL, m->work);
	PG_RETURN_INT32(rl_argmax(probs, RL_N_ACTIONS));
}

/* policy(obs, agent): the softmax probabilities of the three actions. */
Datum
rl_policy(PG_FUNCTION_ARGS)
{
	ServeModel *m = rl_serve_model_for_call(fcinfo);
	const float *obs = observation_arg(fcinfo, &m->w.arch);
	float		probs[RL_N_ACTIONS];
	Datum		elems[RL_N_ACTIONS];

	rl_forward(&m->w, obs, probs, NULL, m->work);
	for (int a = 0; a < RL_N_ACTIONS; a++)
		elems[a] = Float4GetDatum(probs[a]);
	PG_RETURN_ARRAYTYPE_P(construct_array(elems, RL_N_ACTIONS, FLOAT4OID,
										  sizeof(float4), true, TYPALIGN_INT));
}

/* value(obs, agent): the critic's estimate of the observation's value. */
Datum
rl_value(PG_FUNCTION_ARGS)
{
	ServeModel *m = rl_serve_model_for_call(fcinfo);
	const float *obs = observation_arg(fcinfo, &m->w.arch);
	float		value;

	rl_forward(&m->w, obs, NULL, &value, m->work);
	PG_RETURN_FLOAT4(value);
}

