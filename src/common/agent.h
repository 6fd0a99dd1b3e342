/*-------------------------------------------------------------------------
 *
 * agent.h
 *	  An agent's settings: its row of rl_mlops.agents, read once, the same
 *	  way, by serving, retrain() and the training worker.
 *
 * Include postgres.h first.
 *
 *-------------------------------------------------------------------------
 */
#ifndef RL_AGENT_H
#define RL_AGENT_H

#include "rl_arch.h"
#include "source.h"

/* Agent names are at most 63 characters (agents' CHECK), 4 bytes each. */
#define RL_AGENT_NAME_BYTES (63 * 4 + 1)

typedef struct RlAgent
{
	const char *name;
	RlSource	source;			/* where its prices are */
	RlArch		arch;			/* window, features, hidden size */
	char	   *data_window;	/* interval, as text */
	double		holdout_fraction;
	int32		initial_epochs;
	int32		incremental_epochs;
	int32		episode_length;
	double		cost;			/* transaction_cost */
	double		learning_rate;
	double		gamma;
	double		gae_lambda;
	double		clip_range;
	int32		update_passes;
	int32		minibatch_size;
	double		value_coef;
	double		entropy_coef;
	double		max_grad_norm;
	int64		seed;
	int32		threads;
	char	   *deploy_gate;
	double		gate_min_delta;
	/* live monitoring */
	int32		probation_days;
	bool		auto_rollback;
	double		monitor_alpha;
	int32		min_live_decisions;
	double		max_live_drawdown;
	char	   *stale_after;	/* interval, as text */
	char	   *rollback_cooldown;	/* interval, as text */
	int32		ledger_retention_days;
	bool		retrain_on_drift;
	/* challengers */
	bool		auto_promote;
} RlAgent;

extern RlAgent *rl_agent_read(const char *name);

#endif							/* RL_AGENT_H */
