/*-------------------------------------------------------------------------
 *
 * forward.h
 *	  Plain-C forward pass of the actor-critic over weights already in
 *	  memory.  Serving and validation use it so that no backend ever has
 *	  to load libtorch (ARCHITECTURE.md "Processes and libraries").
 *
 * Plain C: no postgres.h, no allocation; the caller owns every buffer.
 *
 *-------------------------------------------------------------------------
 */
#ifndef RL_FORWARD_H
#define RL_FORWARD_H

#include "rl_arch.h"

/* Pointers into float32 tensors laid out as in PyTorch (weights [out, in]). */
typedef struct RlWeights
{
	RlArch		arch;
	const float *trunk0_w;		/* [hidden, obs_dim] */
	const float *trunk0_b;		/* [hidden] */
	const float *trunk2_w;		/* [hidden, hidden] */
	const float *trunk2_b;		/* [hidden] */
	const float *actor_w;		/* [n_actions, hidden] */
	const float *actor_b;		/* [n_actions] */
	const float *critic_w;		/* [1, hidden] */
	const float *critic_b;		/* [1] */
} RlWeights;

/* Floats of scratch space rl_forward needs for an architecture. */
#define RL_FORWARD_SCRATCH(arch) (2 * (arch)->hidden + (arch)->n_actions)

/*
 * One observation in, softmax probabilities (n_actions) and the critic's
 * value out.  Either output may be NULL.  scratch holds
 * RL_FORWARD_SCRATCH(arch) floats.
 */
extern void rl_forward(const RlWeights *w, const float *obs,
					   float *probs, float *value, float *scratch);

/* Greedy action: index of the largest probability (lowest index on ties). */
extern int	rl_argmax(const float *probs, int n);

#endif							/* RL_FORWARD_H */
