/*-------------------------------------------------------------------------
 *
 * rl_torch.h
 *	  Plain C API over libtorch for the training worker (ARCHITECTURE.md "Processes and libraries"
 *	  and 7): the TradingActorCritic network, its Adam optimizer, a batched
 *	  forward pass, tensor access by PyTorch name and the PPO update.
 *
 * Only rl_mlops_trainer.so links this; rl_mlops.so never does.  Nothing
 * here throws, allocates with palloc or reports with ereport: every entry
 * point returns a status and, on failure, writes a lower-case message of at
 * most RL_TORCH_ERRLEN bytes (terminator included) into the caller's "err"
 * buffer, which must be that large (NULL is allowed: no message).  On
 * success err is set to the empty string.  The C caller raises the error.
 *
 * A net is not thread-safe: use one net from one thread at a time.
 *
 * src/torch/rl_torch.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef RL_TORCH_H
#define RL_TORCH_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>

#include "../core/rl_arch.h"

#ifdef __cplusplus
extern "C"
{
#endif

#define RL_TORCH_ERRLEN 512

/* 8 parameters + 8 exp_avg + 8 exp_avg_sq + optim.step */
#define RL_TORCH_N_TENSORS (3 * RL_N_PARAMS + 1)

/* Largest accepted value of any RlArch dimension. */
#define RL_TORCH_MAX_DIM 1000000

typedef enum RlTorchStatus
{
	RL_TORCH_OK = 0,
	RL_TORCH_ERROR = 1,
	RL_TORCH_STOPPED = 2
} RlTorchStatus;

/* Opaque: the network's parameters plus its Adam optimizer. */
typedef struct RlTorchNet RlTorchNet;

typedef struct RlTorchPPOConfig
{
	float		lr;				/* Adam learning rate, 3e-4 */
	float		clip;			/* PPO ratio clip, 0.2 */
	float		value_coef;		/* 0.5 */
	float		entropy_coef;	/* 0.01 */
	float		max_grad_norm;	/* 0.5 */
	int32_t		update_passes;	/* 4 */
	int32_t		minibatch;		/* 256 */
	uint64_t	seed;			/* shuffling of minibatches; vary per epoch */
} RlTorchPPOConfig;

/*
 * Build the observations of batch rows idx[0 .. m - 1] into out (m *
 * obs_dim floats), for a batch that does not hold them (obs NULL): an
 * epoch then needs no observation per decision in memory.  It runs inside
 * C++ frames: it must not ereport or longjmp.  Return 0, or non-zero with
 * a message of at most RL_TORCH_ERRLEN bytes in err to end the update
 * with an error.
 */
typedef int (*RlTorchObsFn) (void *arg, const int64_t *idx, int64_t m,
							 float *out, char *err);

/*
 * One rollout, flattened; all arrays have length n (obs: n * obs_dim).
 * obs may be NULL for rl_torch_ppo_update when obs_fn builds them.
 */
typedef struct RlTorchBatch
{
	int64_t		n;
	const float *obs;
	const int32_t *actions;		/* 0 .. n_actions - 1 */
	const float *old_logp;		/* log prob of the action under the rollout
								 * policy */
	const float *advantages;	/* GAE advantages (normalised per minibatch
								 * inside the update) */
	const float *returns;		/* value targets */
	RlTorchObsFn obs_fn;		/* used only when obs is NULL */
	void	   *obs_arg;
} RlTorchBatch;

typedef struct RlTorchUpdateStats
{
	double		loss;			/* mean total loss over all minibatches of
								 * all passes */
	double		policy_loss;	/* means over the same minibatches */
	double		value_loss;
	double		entropy;
	double		approx_kl;		/* mean(old_logp - new_logp), before the step */
	int64_t		minibatches;	/* optimizer steps taken */
} RlTorchUpdateStats;

/*
 * Checked before every minibatch; return true to stop the update.  It runs
 * inside C++ frames: it must not ereport or otherwise longjmp (so no
 * CHECK_FOR_INTERRUPTS); test a flag set by a signal handler instead.
 */
typedef bool (*RlTorchShouldStop) (void *arg);

/* Report the libtorch version ("1.13.0") for logs and run records. */
extern RlTorchStatus rl_torch_version(char *buf, size_t buflen, char *err);

/*
 * Bound libtorch's intra-op threads to the agent's setting (n >= 1).  The
 * inter-op pool can be sized only once per process; later attempts are
 * silently ignored.
 */
extern RlTorchStatus rl_torch_set_threads(int32_t n, char *err);

/* Report the current intra-op thread count. */
extern int32_t rl_torch_get_threads(void);

/*
 * Build a fresh network and its Adam optimizer (learning rate lr).
 *
 * Initialisation is PyTorch's default nn.Linear init (weights
 * kaiming_uniform_(a = sqrt(5)), i.e. U(-1/sqrt(fan_in), 1/sqrt(fan_in)),
 * biases the same bound), drawn in module order from a private
 * torch::Generator (CPU mt19937) seeded with "seed"; the global torch RNG is
 * neither used nor changed.  Same seed, same initial weights; and they equal
 * torch.manual_seed(seed); TradingActorCritic(...) in Python.
 * arch->obs_dim must equal window + 1 + n_features.
 */
extern RlTorchStatus rl_torch_net_create(const RlArch *arch, uint64_t seed,
										 float lr, RlTorchNet **out,
										 char *err);

/* Release a net; NULL-safe, never throws. */
extern void rl_torch_net_free(RlTorchNet *net);

/*
 * Batched forward pass without autograd, for rollouts and validation:
 * obs is n * obs_dim, probs receives n * n_actions softmax probabilities
 * and values n state values (either output may be NULL if not wanted).
 * The net keeps a workspace sized for the largest n seen (n * (2 * hidden +
 * n_actions) floats) so repeated calls allocate nothing large.
 */
extern RlTorchStatus rl_torch_forward(RlTorchNet *net, const float *obs,
									  int64_t n, float *probs, float *values,
									  char *err);

/* Number of named tensors (always RL_TORCH_N_TENSORS), for checkpointing. */
extern int32_t rl_torch_tensor_count(const RlTorchNet *net);

/*
 * Describe tensor i (0 .. count - 1) for writing a checkpoint: the 8
 * parameters in state_dict order, then optim.exp_avg.<param> for each,
 * optim.exp_avg_sq.<param> for each, then optim.step.  *name points to
 * static storage.  ndim is 2 for weights ([out, in]), 1 for biases and
 * step; shape[1] is 1 when ndim is 1, so numel = shape[0] * shape[1].
 */
extern RlTorchStatus rl_torch_tensor_info(const RlTorchNet *net, int32_t i,
										  const char **name, int32_t *ndim,
										  int64_t shape[2], char *err);

/*
 * Copy a tensor out by name into out (n floats, n must equal its numel).
 * Adam state that does not exist yet (no step taken) reads as zeros and
 * optim.step as 0.
 */
extern RlTorchStatus rl_torch_tensor_get(const RlTorchNet *net,
										 const char *name, float *out,
										 int64_t n, char *err);

/*
 * Overwrite a tensor by name from in (n floats, n must equal its numel;
 * values must be finite, exp_avg_sq non-negative, optim.step a whole
 * number >= 0).  Setting any optim.* tensor creates the Adam state of all
 * parameters if missing, so a warm start continues the optimizer exactly.
 */
extern RlTorchStatus rl_torch_tensor_set(RlTorchNet *net, const char *name,
										 const float *in, int64_t n,
										 char *err);

/*
 * One PPO clipped-surrogate update: cfg->update_passes passes, each over a
 * fresh shuffle of the batch (deterministic from cfg->seed) in minibatches
 * of cfg->minibatch rows (the last one may be smaller).  Same net, batch,
 * cfg and one thread give bit-identical results.  should_stop (may be
 * NULL) is checked before every minibatch: if it returns true the update
 * ends with RL_TORCH_STOPPED, the steps taken so far kept and counted in
 * *stats.  stats may be NULL.  Inputs are all validated before the first
 * step; a non-finite loss or gradient norm found later ends with
 * RL_TORCH_ERROR before that minibatch's step (earlier steps stay applied:
 * discard the net).  A one-row minibatch has its advantage only centred
 * (no std to divide by).
 */
extern RlTorchStatus rl_torch_ppo_update(RlTorchNet *net,
										 const RlTorchPPOConfig *cfg,
										 const RlTorchBatch *batch,
										 RlTorchShouldStop should_stop,
										 void *stop_arg,
										 RlTorchUpdateStats *stats,
										 char *err);

/*
 * The PPO loss of the whole batch taken as one minibatch (advantages
 * normalised over the batch), without changing the net: for reporting a
 * loss before and after updates.  stats->minibatches is 0.
 */
extern RlTorchStatus rl_torch_ppo_loss(RlTorchNet *net,
									   const RlTorchPPOConfig *cfg,
									   const RlTorchBatch *batch,
									   RlTorchUpdateStats *stats,
									   char *err);

#ifdef __cplusplus
}
#endif

#endif							/* RL_TORCH_H */
