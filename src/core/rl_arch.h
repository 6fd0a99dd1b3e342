/*-------------------------------------------------------------------------
 *
 * rl_arch.h
 *	  The shape of the actor-critic network (DESIGN section 7), shared by
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

#endif							/* RL_ARCH_H */
