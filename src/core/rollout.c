/*-------------------------------------------------------------------------
 *
 * rollout.c
 *	  Batched PPO rollout and GAE (see rollout.h).  Deterministic: the only
 *	  randomness is the seeded xoshiro256** stream, drawn once per
 *	  transition in a fixed order (step by step, episode-table order within
 *	  a step).
 *
 * src/core/rollout.c
 *
 *-------------------------------------------------------------------------
 */
#include <math.h>
#include <string.h>

#include "rollout.h"

/* splitmix64 spreads any seed (even 0) over the whole xoshiro state. */
void
rl_rng_seed(RlRng *rng, uint64_t seed)
{
	int			i;

	for (i = 0; i < 4; i++)
	{
		uint64_t	z;

		seed += UINT64_C(0x9E3779B97F4A7C15);
		z = seed;
		z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
		z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
		rng->s[i] = z ^ (z >> 31);
	}
}

/* Rotate left, as in the xoshiro reference code. */
static inline uint64_t
rotl(uint64_t x, int k)
{
	return (x << k) | (x >> (64 - k));
}

/* xoshiro256** 1.0 (Blackman and Vigna), small, fast and portable. */
uint64_t
rl_rng_next(RlRng *rng)
{
	uint64_t   *s = rng->s;
	uint64_t	result = rotl(s[1] * 5, 7) * 9;
	uint64_t	t = s[1] << 17;

	s[2] ^= s[0];
	s[3] ^= s[1];
	s[1] ^= s[2];
	s[0] ^= s[3];
	s[2] ^= t;
	s[3] = rotl(s[3], 45);
	return result;
}

/* The top 53 bits give every double in [0, 1) on the 2^-53 grid. */
double
rl_rng_uniform(RlRng *rng)
{
	return (double) (rl_rng_next(rng) >> 11) * (1.0 / 9007199254740992.0);
}

/* Inverse CDF, so one uniform draw makes one action. */
int
rl_sample_action(const float *probs, int n, double total, double u)
{
	double		target = u * total;
	double		cum = 0.0;
	int			last = 0;
	int			a;

	for (a = 0; a < n; a++)
	{
		if (probs[a] <= 0.0f)
			continue;
		cum += probs[a];
		last = a;
		if (target < cum)
			return a;
	}
	/* u * total rounded up to total: take the last possible action */
	return last;
}

/* The caller sizes the per-transition buffers with this. */
int64_t
rl_rollout_transitions(const RlEpisode *episodes, int64_t n_episodes)
{
	int64_t		n = 0;
	int64_t		e;

	for (e = 0; e < n_episodes; e++)
		n += episodes[e].len;
	return n;
}

/* One step's batch: observations, probabilities and values per episode. */
int64_t
rl_rollout_work_floats(int64_t n_episodes, int32_t obs_dim)
{
	return n_episodes * ((int64_t) obs_dim + RL_N_ACTIONS + 1);
}

/* Backwards recursion; double so long episodes do not lose precision. */
void
rl_gae(const float *rewards, const float *values, int64_t n, double gamma,
	   double lambda, float *advantages, float *returns)
{
	double		adv = 0.0;
	double		next_value = 0.0;	/* terminal: nothing after the last step */
	int64_t		k;

	for (k = n - 1; k >= 0; k--)
	{
		double		v = values[k];
		double		delta = (double) rewards[k] + gamma * next_value - v;

		adv = delta + gamma * lambda * adv;
		advantages[k] = (float) adv;
		returns[k] = (float) (adv + v);
		next_value = v;
	}
}

/* Refuse bad input before the policy is ever called. */
static int
check_spec(const RlRolloutSpec *spec, const RlRolloutBuffers *buf,
		   int32_t *max_len, char *err)
{
	int64_t		e;
	int64_t		need;
	int			rc;

	if (spec == NULL || buf == NULL)
		return rl_env_fail(err, RL_ENV_BAD_ARG,
						   "spec and buffers must not be NULL");
	if (spec->policy == NULL || spec->episodes == NULL ||
		(spec->series == NULL && spec->n_series > 0))
		return rl_env_fail(err, RL_ENV_BAD_ARG,
						   "policy, episodes and series must not be NULL");
	if (spec->n_episodes < 1)
		return rl_env_fail(err, RL_ENV_TOO_SHORT,
						   "no episodes: every series is shorter than window + 2 prices");
	if (spec->window < 1 || spec->n_features < 0 || spec->n_series < 0)
		return rl_env_fail(err, RL_ENV_BAD_ARG,
						   "window must be >= 1, n_features and n_series >= 0");
	rc = rl_env_check_sigma(spec->sigma, err);
	if (rc != RL_ENV_OK)
		return rc;
	if (!isfinite(spec->cost) || spec->cost < 0.0)
		return rl_env_fail(err, RL_ENV_BAD_ARG,
						   "cost must be finite and >= 0, got %g", spec->cost);
	if (!(spec->gamma >= 0.0 && spec->gamma <= 1.0) ||
		!(spec->lambda >= 0.0 && spec->lambda <= 1.0))
		return rl_env_fail(err, RL_ENV_BAD_ARG,
						   "gamma and lambda must be in [0, 1], got %g and %g",
						   spec->gamma, spec->lambda);

	*max_len = 0;
	for (e = 0; e < spec->n_episodes; e++)
	{
		const RlEpisode *ep = &spec->episodes[e];
		const RlSeries *s;

		if (ep->series < 0 || ep->series >= spec->n_series)
			return rl_env_fail(err, RL_ENV_BAD_ARG,
							   "episode %lld names series %d of %d",
							   (long long) e, (int) ep->series,
							   (int) spec->n_series);
		s = &spec->series[ep->series];
		if (s->returns == NULL || (spec->n_features > 0 && s->features == NULL))
			return rl_env_fail(err, RL_ENV_BAD_ARG,
							   "series %d has no returns or no features",
							   (int) ep->series);
		if (ep->len < 1 || ep->t0 < spec->window ||
			ep->t0 + ep->len - 1 > s->n - 2)
			return rl_env_fail(err, RL_ENV_BAD_ARG,
							   "episode %lld (t0 %lld, len %d) does not fit series %d of %lld prices with window %d",
							   (long long) e, (long long) ep->t0, (int) ep->len,
							   (int) ep->series, (long long) s->n,
							   (int) spec->window);
		if (ep->len > *max_len)
			*max_len = ep->len;
	}

	need = rl_rollout_transitions(spec->episodes, spec->n_episodes);
	if (buf->actions == NULL || buf->logp == NULL ||
		buf->values == NULL || buf->rewards == NULL ||
		buf->advantages == NULL || buf->returns == NULL || buf->work == NULL)
		return rl_env_fail(err, RL_ENV_BAD_ARG,
						   "every rollout buffer but obs must be provided");
	if (buf->capacity < need)
		return rl_env_fail(err, RL_ENV_NO_SPACE,
						   "rollout buffers hold %lld transitions, %lld are needed",
						   (long long) buf->capacity, (long long) need);
	return RL_ENV_OK;
}

/* Collect one epoch's experience with the current policy, batched per step. */
int
rl_rollout(const RlRolloutSpec *spec, RlRolloutBuffers *buf,
		   RlRolloutStats *stats, char *err)
{
	int32_t		max_len = 0;
	int64_t		obs_dim;
	float	   *step_obs;
	float	   *step_probs;
	float	   *step_values;
	RlRng		rng;
	double		reward_sum = 0.0;
	int64_t		counts[RL_N_ACTIONS] = {0};
	int64_t		n_trans;
	int32_t		k;
	int64_t		e;
	int64_t		off;
	int			rc;

	rc = check_spec(spec, buf, &max_len, err);
	if (rc != RL_ENV_OK)
		return rc;

	obs_dim = rl_arch_make(spec->window, spec->n_features, 0).obs_dim;
	step_obs = buf->work;
	step_probs = step_obs + spec->n_episodes * obs_dim;
	step_values = step_probs + spec->n_episodes * RL_N_ACTIONS;
	rl_rng_seed(&rng, spec->seed);

	for (k = 0; k < max_len; k++)
	{
		int64_t		i = 0;

		/* gather: one observation per episode still running */
		off = 0;
		for (e = 0; e < spec->n_episodes; e++)
		{
			const RlEpisode *ep = &spec->episodes[e];

			if (k < ep->len)
			{
				int32_t		prev = k == 0 ? 0 :
					rl_action_position(buf->actions[off + k - 1]);

				rc = rl_env_observation(&spec->series[ep->series],
										spec->window, spec->n_features,
										spec->sigma, ep->t0 + k, prev,
										step_obs + i * obs_dim, err);
				if (rc != RL_ENV_OK)
					return rc;
				i++;
			}
			off += ep->len;
		}

		if (spec->policy(spec->policy_arg, step_obs, i, step_probs,
						 step_values) != 0)
			return rl_env_fail(err, RL_ENV_ABORTED,
							   "policy callback failed at rollout step %d",
							   (int) k);

		/* scatter: sample, reward and record each episode's transition */
		i = 0;
		off = 0;
		for (e = 0; e < spec->n_episodes; e++)
		{
			const RlEpisode *ep = &spec->episodes[e];

			if (k < ep->len)
			{
				const float *p = step_probs + i * RL_N_ACTIONS;
				const RlSeries *s = &spec->series[ep->series];
				int64_t		j = off + k;
				int64_t		t = ep->t0 + k;
				double		total = 0.0;
				int32_t		prev;
				int32_t		pos;
				double		reward;
				int			a;

				for (a = 0; a < RL_N_ACTIONS; a++)
				{
					if (!isfinite(p[a]) || p[a] < 0.0f)
						return rl_env_fail(err, RL_ENV_BAD_POLICY,
										   "policy gave probability %g for action %d at step %d",
										   (double) p[a], a, (int) k);
					total += p[a];
				}
				if (fabs(total - 1.0) > 1e-3 || !isfinite(step_values[i]))
					return rl_env_fail(err, RL_ENV_BAD_POLICY,
									   "policy gave probabilities summing to %g and value %g at step %d",
									   total, (double) step_values[i], (int) k);

				a = rl_sample_action(p, RL_N_ACTIONS, total,
									 rl_rng_uniform(&rng));
				prev = k == 0 ? 0 : rl_action_position(buf->actions[j - 1]);
				pos = rl_action_position(a);
				reward = rl_env_reward(pos, prev, s->returns[t + 1],
									   spec->cost, spec->sigma);

				if (buf->obs != NULL)
					memcpy(buf->obs + j * obs_dim, step_obs + i * obs_dim,
						   (size_t) obs_dim * sizeof(float));
				buf->actions[j] = a;
				buf->logp[j] = (float) log((double) p[a]);
				buf->values[j] = step_values[i];
				buf->rewards[j] = (float) reward;
				reward_sum += reward;
				counts[a]++;
				i++;
			}
			off += ep->len;
		}
	}

	off = 0;
	for (e = 0; e < spec->n_episodes; e++)
	{
		int32_t		len = spec->episodes[e].len;

		rl_gae(buf->rewards + off, buf->values + off, len, spec->gamma,
			   spec->lambda, buf->advantages + off, buf->returns + off);
		off += len;
	}
	n_trans = off;

	if (stats != NULL)
	{
		stats->n_transitions = n_trans;
		stats->n_episodes = spec->n_episodes;
		stats->n_steps = max_len;
		stats->mean_reward = reward_sum / (double) n_trans;
		stats->mean_episode_return = reward_sum / (double) spec->n_episodes;
		memcpy(stats->action_counts, counts, sizeof(counts));
	}
	if (err != NULL)
		err[0] = '\0';
	return RL_ENV_OK;
}

/* Entries of the bucket index of a rollout of n transitions. */
int64_t
rl_rollout_bucket_count(int64_t n_transitions)
{
	return (n_transitions >> RL_ROLLOUT_BUCKET_SHIFT) + 1;
}

/*
 * Where each episode's transitions begin in the rollout buffers, and a
 * bucket index over them: buckets[b] is the episode of transition
 * b << RL_ROLLOUT_BUCKET_SHIFT, so finding a transition's episode is a
 * look-up and a step or two, not a binary search (which cost the PPO
 * update a tenth of its time).
 */
void
rl_rollout_offsets(const RlEpisode *episodes, int64_t n_episodes,
				   int64_t *offsets, int64_t *buckets)
{
	int64_t		off = 0;
	int64_t		e;
	int64_t		b = 0;

	for (e = 0; e < n_episodes; e++)
	{
		offsets[e] = off;
		off += episodes[e].len;
		/* every bucket that starts inside this episode */
		while ((b << RL_ROLLOUT_BUCKET_SHIFT) < off)
			buckets[b++] = e;
	}
	offsets[n_episodes] = off;
	/* the bucket of the end (transition off), if it starts a bucket */
	while (b < rl_rollout_bucket_count(off))
		buckets[b++] = n_episodes > 0 ? n_episodes - 1 : 0;
}

/*
 * Where transition j was decided: its episode's series, the bar t and the
 * position held coming into it (the episode's previous action's; flat at
 * an episode's first step).
 */
int
rl_rollout_locate(const RlRolloutSpec *spec, const int64_t *offsets,
				  const int64_t *buckets, const int32_t *actions, int64_t j,
				  int32_t *series, int64_t *t, int32_t *position, char *err)
{
	const RlEpisode *ep;
	int64_t		e;
	int64_t		k;

	if (j < 0 || j >= offsets[spec->n_episodes])
		return rl_env_fail(err, RL_ENV_BAD_ARG,
						   "transition %lld is outside the rollout's %lld",
						   (long long) j, (long long) offsets[spec->n_episodes]);
	/* the last episode that begins at or before j */
	e = buckets[j >> RL_ROLLOUT_BUCKET_SHIFT];
	while (offsets[e + 1] <= j)
		e++;
	ep = &spec->episodes[e];
	k = j - offsets[e];
	*series = ep->series;
	*t = ep->t0 + k;
	*position = k == 0 ? 0 : rl_action_position(actions[j - 1]);
	return RL_ENV_OK;
}

/*
 * The observation of transition j, rebuilt from the series: the one the
 * rollout gave the policy, so no observation need be kept per transition.
 */
int
rl_rollout_observation(const RlRolloutSpec *spec, const int64_t *offsets,
					   const int64_t *buckets, const int32_t *actions,
					   int64_t j, float *obs, char *err)
{
	int32_t		series;
	int64_t		t;
	int32_t		position;
	int			rc = rl_rollout_locate(spec, offsets, buckets, actions, j,
									   &series, &t, &position, err);

	if (rc != RL_ENV_OK)
		return rc;
	return rl_env_observation(&spec->series[series], spec->window,
							  spec->n_features, spec->sigma, t, position,
							  obs, err);
}

/*
 * Every return of a series divided by sigma, as the float an observation
 * holds (what rl_env_observation computes for each bar of its window):
 * rebuilding an observation is then a copy.  out[0] is 0 (no return).
 */
void
rl_rollout_scale_returns(const RlSeries *s, double sigma, float *out)
{
	int64_t		t;

	if (s->n > 0)
		out[0] = 0.0f;
	for (t = 1; t < s->n; t++)
		out[t] = (float) (s->returns[t] / sigma);
}

/*
 * The observation at bar t of series "series" holding "position", from the
 * scaled returns of rl_rollout_scale_returns(): bit for bit what
 * rl_env_observation gives (t must be a bar the rollout decided at).
 */
void
rl_rollout_scaled_observation(const RlRolloutSpec *spec,
							  const float *const *scaled, int32_t series,
							  int64_t t, int32_t position, float *obs)
{
	const RlSeries *s = &spec->series[series];
	int32_t		w = spec->window;
	int32_t		nf = spec->n_features;

	memcpy(obs, scaled[series] + (t - w + 1), (size_t) w * sizeof(float));
	obs[w] = (float) position;
	if (nf > 0)
		memcpy(obs + w + 1, s->features + t * nf, (size_t) nf * sizeof(float));
}
