/*-------------------------------------------------------------------------
 *
 * rl_arch.h
 *	  The shape of the actor-critic network (ARCHITECTURE.md, "The
 *	  network and its checkpoint"), shared by
 *	  the checkpoint parser, the C forward pass, the trading environment
 *	  and the training worker.
 *
 * This header is plain C (no postgres.h needed) so that the libtorch
 * wrapper's C API can use it too.
 *
 *-------------------------------------------------------------------------
 */
#ifndef RL_ARCH_H
#define RL_ARCH_H

#include <stdint.h>

/* Actions are positions: 0 = short (-1), 1 = flat (0), 2 = long (+1). */
#define RL_N_ACTIONS 3

/*
 * TradingActorCritic:
 *	trunk.0 = Linear(obs_dim, hidden), tanh,
 *	trunk.2 = Linear(hidden, hidden), tanh,
 *	actor   = Linear(hidden, n_actions) (softmax policy),
 *	critic  = Linear(hidden, 1).
 * obs_dim = window + 1 (current position) + n_features.
 */
typedef struct RlArch
{
	int32_t		window;			/* W returns in the observation */
	int32_t		n_features;		/* extra per-row features, 0 if none */
	int32_t		obs_dim;		/* window + 1 + n_features */
	int32_t		hidden;			/* width of both trunk layers */
	int32_t		n_actions;		/* always RL_N_ACTIONS */
} RlArch;

/* Number of parameter tensors of the network, in PyTorch state_dict order. */
#define RL_N_PARAMS 8

/*
 * The parameter tensors' names, in PyTorch state_dict order: the one list
 * the checkpoint format, the C forward pass and the libtorch shim share.
 * X is applied to each name.
 */
#define RL_FOR_EACH_PARAM(X) \
	X("trunk.0.weight") X("trunk.0.bias") \
	X("trunk.2.weight") X("trunk.2.bias") \
	X("actor.weight") X("actor.bias") \
	X("critic.weight") X("critic.bias")

/* Adam's state in a checkpoint: per parameter, then the step counter. */
#define RL_OPTIM_EXP_AVG "optim.exp_avg."
#define RL_OPTIM_EXP_AVG_SQ "optim.exp_avg_sq."
#define RL_OPTIM_STEP "optim.step"

#define RL_PARAM_NAME(name) name,
#define RL_EXP_AVG_NAME(name) RL_OPTIM_EXP_AVG name,
#define RL_EXP_AVG_SQ_NAME(name) RL_OPTIM_EXP_AVG_SQ name,

/* Every tensor of a checkpoint with optimizer state, in file order. */
#define RL_TENSOR_NAMES \
	RL_FOR_EACH_PARAM(RL_PARAM_NAME) \
	RL_FOR_EACH_PARAM(RL_EXP_AVG_NAME) \
	RL_FOR_EACH_PARAM(RL_EXP_AVG_SQ_NAME) \
	RL_OPTIM_STEP

/* The network's shape for an agent's window, features and hidden size. */
static inline RlArch
rl_arch_make(int32_t window, int32_t n_features, int32_t hidden)
{
	RlArch		arch;

	arch.window = window;
	arch.n_features = n_features;
	arch.obs_dim = window + 1 + n_features;	/* returns, position, features */
	arch.hidden = hidden;
	arch.n_actions = RL_N_ACTIONS;
	return arch;
}

#endif							/* RL_ARCH_H */
