/*-------------------------------------------------------------------------
 *
 * serve.h
 *	  Serving from SQL (ARCHITECTURE.md, "Serving"): act, policy and value
 *	  over an observation (serve_act.c), decide over the agent's source
 *	  (serve_decide.c) and backtests (serve_backtest.c), on models cached
 *	  per backend (serve_cache.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef RL_SERVE_H
#define RL_SERVE_H

#include "fmgr.h"

#include "agent.h"
#include "env.h"
#include "forward.h"
#include "source.h"

/* A parsed checkpoint, ready for rl_forward. */
typedef struct ServeModel
{
	char	   *version;
	Oid			checkpoint;
	char		sha256[65];
	double		sigma;
	RlWeights	w;
	float	   *work;			/* RL_BACKTEST_WORK_FLOATS(&w.arch) floats */
	bool		has_data_range; /* trained: the bars it was trained and
								 * validated on */
	TimestampTz data_from;
	TimestampTz data_to;
} ServeModel;

/* Challengers beside the champion, at most (add_challenger refuses more). */
#define RL_MAX_CHALLENGERS 8

/* Register the relcache callback that drops cached weights; from _PG_init. */
extern void rl_serve_init(void);

/* Models (serve_cache.c). */
extern ServeModel *rl_serve_active_model(const char *agent);
extern ServeModel *rl_serve_version(const char *agent, const char *version);
extern ServeModel *rl_serve_model_for_call(FunctionCallInfo fcinfo);
extern ServeModel *rl_serve_decider(const char *agent, const char *symbol);
extern double rl_serve_symbol_point(const char *symbol);

/* Inputs of decide and the backtests (serve_inputs.c). */
extern char *rl_serve_text_arg(FunctionCallInfo fcinfo, int argno, const char *name);
extern TimestampTz rl_serve_ts_arg(FunctionCallInfo fcinfo, int argno, const char *name);
extern void rl_serve_check_arch(const ServeModel *m, const RlAgent *ag);
extern void rl_serve_check_env(int rc, const char *err);

#endif							/* RL_SERVE_H */
