/*-------------------------------------------------------------------------
 *
 * serve_inputs.c
 *	  What decide() and the backtests check before they compute: their
 *	  arguments, the model against the agent, the source rows as a series.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "utils/builtins.h"
#include "utils/timestamp.h"

#include "serve.h"

/*
 * decide() and the backtests build observations from the agent's settings:
 * the model must have been trained for them (validation made sure of it).
 */
void
rl_serve_check_arch(const ServeModel *m, const RlAgent *ag)
{
	const RlArch *a = &m->w.arch;

	if (a->window != ag->arch.window || a->n_features != ag->arch.n_features ||
		a->hidden != ag->arch.hidden)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_EXCEPTION),
				 errmsg("model version \"%s\" does not match the architecture of agent \"%s\"",
						m->version, ag->name),
				 errdetail("The model has window %d, %d features and hidden size %d; the agent has %d, %d and %d.",
						   a->window, a->n_features, a->hidden, ag->arch.window,
						   ag->arch.n_features, ag->arch.hidden)));
}

/* Environment failures that our own checks should have ruled out. */
void
rl_serve_check_env(int rc, const char *err)
{
	if (rc != RL_ENV_OK)
		ereport(ERROR,
				(errcode(rc == RL_ENV_TOO_SHORT ? ERRCODE_NO_DATA_FOUND :
						 ERRCODE_DATA_EXCEPTION),
				 errmsg("%s", err)));
}

/* A text argument that must not be NULL in a non-strict function. */
char *
rl_serve_text_arg(FunctionCallInfo fcinfo, int argno, const char *name)
{
	if (PG_ARGISNULL(argno))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("%s must not be null", name)));
	return text_to_cstring(PG_GETARG_TEXT_PP(argno));
}

/* A timestamptz argument that must not be NULL in a non-strict function. */
TimestampTz
rl_serve_ts_arg(FunctionCallInfo fcinfo, int argno, const char *name)
{
	if (PG_ARGISNULL(argno))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("%s must not be null", name)));
	return PG_GETARG_TIMESTAMPTZ(argno);
}

