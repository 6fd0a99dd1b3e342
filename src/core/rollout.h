/*-------------------------------------------------------------------------
 *
 * rollout.h
 *	  One PPO rollout over all training episodes (ARCHITECTURE.md "The trading environment"): every
 *	  episode steps together as one batch, so the policy (libtorch in the
 *	  training worker) is called once per step, not once per decision.
 *	  Actions are sampled with a self-contained PRNG, then GAE turns the
 *	  rewards and values into advantages and value targets.
 *
 * Plain C99: no postgres.h, no allocation; the caller owns every buffer.
 * Errors as in env.h (RlEnvStatus plus an RL_ENV_ERRLEN message buffer).
 *
 * src/core/rollout.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef RL_ROLLOUT_H
#define RL_ROLLOUT_H

#include <stdint.h>

#include "env.h"

#define RL_DEFAULT_GAMMA 0.99
#define RL_DEFAULT_GAE_LAMBDA 0.95

/*
 * Evaluate the policy on a batch: obs is n * obs_dim floats; write
 * n * RL_N_ACTIONS probabilities and n values.  Return 0 on success,
 * non-zero to abort the rollout (an error, or a cancel request: the
 * rollout then ends with RL_ENV_ABORTED; keep your own message in arg).
 */
typedef int (*RlPolicyFn) (void *arg, const float *obs, int64_t n,
						   float *probs, float *values);

/* xoshiro256** state, seeded through splitmix64. */
typedef struct RlRng
{
	uint64_t	s[4];
} RlRng;

/* What to roll out. */
typedef struct RlRolloutSpec
{
	const RlSeries *series;		/* n_series symbols */
	int32_t		n_series;
	int32_t		window;			/* W */
	int32_t		n_features;		/* 0 if none; obs_dim = W + 1 + n_features */
	double		sigma;			/* return scale, finite and > 0 */
	double		cost;			/* per unit of |position change|, >= 0 */
	double		gamma;			/* discount, RL_DEFAULT_GAMMA */
	double		lambda;			/* GAE lambda, RL_DEFAULT_GAE_LAMBDA */
	const RlEpisode *episodes;	/* from rl_env_episodes() */
	int64_t		n_episodes;
	uint64_t	seed;			/* action sampling; same seed, same actions */
	RlPolicyFn	policy;
	void	   *policy_arg;
} RlRolloutSpec;

/*
 * Caller-owned outputs, one entry per transition (capacity entries each,
 * obs capacity * obs_dim).  Transitions are stored episode by episode in
 * the order of the episode table, each episode's steps consecutive.  obs
 * may be NULL: rl_rollout_observation() rebuilds any of them.  advantages
 * may be rewards and returns may be values (GAE works in place), so a
 * transition needs 16 bytes.
 */
typedef struct RlRolloutBuffers
{
	int64_t		capacity;		/* >= rl_rollout_transitions() */
	float	   *obs;
	int32_t    *actions;		/* 0 .. RL_N_ACTIONS - 1 */
	float	   *logp;			/* log prob of the chosen action */
	float	   *values;			/* critic value of the observation */
	float	   *rewards;
	float	   *advantages;		/* GAE */
	float	   *returns;		/* advantages + values: value targets */
	float	   *work;			/* rl_rollout_work_floats() floats */
} RlRolloutBuffers;

/* For logging an epoch. */
typedef struct RlRolloutStats
{
	int64_t		n_transitions;
	int64_t		n_episodes;
	int32_t		n_steps;		/* policy calls (longest episode) */
	double		mean_reward;	/* per transition */
	double		mean_episode_return;	/* undiscounted sum of rewards */
	int64_t		action_counts[RL_N_ACTIONS];
} RlRolloutStats;

/* Seed the generator (splitmix64 expands the seed into the state). */
extern void rl_rng_seed(RlRng *rng, uint64_t seed);

/* Next 64 random bits (xoshiro256**). */
extern uint64_t rl_rng_next(RlRng *rng);

/* Uniform double in [0, 1) with 53 random bits. */
extern double rl_rng_uniform(RlRng *rng);

/*
 * Inverse-CDF draw from n probabilities summing to "total" (> 0) with a
 * uniform u in [0, 1): the first a whose cumulative sum exceeds u * total;
 * never an action of probability 0.
 */
extern int	rl_sample_action(const float *probs, int n, double total,
							 double u);

/* Number of transitions (decisions) the episodes produce. */
extern int64_t rl_rollout_transitions(const RlEpisode *episodes,
									  int64_t n_episodes);

/* Floats of scratch space (buffers->work) a rollout needs. */
extern int64_t rl_rollout_work_floats(int64_t n_episodes, int32_t obs_dim);

/*
 * GAE over one episode of n steps: delta_k = r_k + gamma v_{k+1} - v_k,
 * A_k = delta_k + gamma lambda A_{k+1}, returns_k = A_k + v_k.  The value
 * after the last step is taken as 0: an episode end is treated as terminal
 * (positions reset to flat at the next episode, and there is no next
 * observation stored to bootstrap from), so no value leaks across episode
 * boundaries.  Accumulates in double.
 */
extern void rl_gae(const float *rewards, const float *values, int64_t n,
				   double gamma, double lambda, float *advantages,
				   float *returns);

/*
 * Run one rollout: for step k = 0, 1, ..., every episode with len > k adds
 * its observation at t0 + k to one batch, the policy evaluates the batch,
 * actions are sampled in episode-table order, rewards recorded; then GAE
 * per episode.  Each episode starts flat.  stats may be NULL.  On failure
 * the buffers hold partial results.
 */
extern int	rl_rollout(const RlRolloutSpec *spec, RlRolloutBuffers *buf,
					   RlRolloutStats *stats, char *err);

/* Transitions per bucket of the index that finds a transition's episode. */
#define RL_ROLLOUT_BUCKET_SHIFT 6

/* Entries of that index for n transitions. */
extern int64_t rl_rollout_bucket_count(int64_t n_transitions);

/*
 * offsets[e] = first transition of episode e, offsets[n_episodes] = all
 * (n_episodes + 1 entries); buckets (rl_rollout_bucket_count(all)
 * entries) = the episode of every RL_ROLLOUT_BUCKET_SHIFT-th transition.
 */
extern void rl_rollout_offsets(const RlEpisode *episodes, int64_t n_episodes,
							   int64_t *offsets, int64_t *buckets);

/*
 * Where transition j was decided (series index, bar t, position held
 * coming in), with the index from rl_rollout_offsets().
 */
extern int	rl_rollout_locate(const RlRolloutSpec *spec, const int64_t *offsets,
							  const int64_t *buckets, const int32_t *actions,
							  int64_t j, int32_t *series, int64_t *t,
							  int32_t *position, char *err);

/*
 * Rebuild transition j's observation (obs_dim floats) from the series and
 * the rollout's actions, with the index from rl_rollout_offsets().
 */
extern int	rl_rollout_observation(const RlRolloutSpec *spec,
								   const int64_t *offsets,
								   const int64_t *buckets,
								   const int32_t *actions, int64_t j,
								   float *obs, char *err);

/*
 * The returns of a series divided by sigma, as observations hold them
 * (s->n floats), and an observation copied out of them: the PPO update's
 * fast way to rebuild observations, equal to rl_env_observation's.
 */
extern void rl_rollout_scale_returns(const RlSeries *s, double sigma,
									 float *out);
extern void rl_rollout_scaled_observation(const RlRolloutSpec *spec,
										  const float *const *scaled,
										  int32_t series, int64_t t,
										  int32_t position, float *obs);

#endif							/* RL_ROLLOUT_H */
