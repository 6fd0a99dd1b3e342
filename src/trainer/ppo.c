/*-------------------------------------------------------------------------
 *
 * ppo.c
 *	  Step 2 of a training run: PPO epochs.  One epoch is one rollout over
 *	  all training episodes with the current policy (libtorch's batched
 *	  forward pass, one call per step for all episodes together), then the
 *	  update passes.  A stop request (SIGTERM) is noticed between rollout
 *	  steps and between minibatches and ends the run as cancelled.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "miscadmin.h"
#include "portability/instr_time.h"

#include "trainer/ppo.h"
#include "trainer/trainer.h"

/* Policy callback of the rollout: the net's batched forward pass. */
typedef struct PolicyArg
{
	RlTorchNet *net;
	char		err[RL_TORCH_ERRLEN];
} PolicyArg;

static int
torch_policy(void *arg, const float *obs, int64_t n, float *probs, float *values)
{
	PolicyArg  *p = (PolicyArg *) arg;

	if (rl_trainer_stop_requested)
	{
		strlcpy(p->err, "stop requested", sizeof(p->err));
		return 1;
	}
	return rl_torch_forward(p->net, obs, n, probs, values, p->err) == RL_TORCH_OK ? 0 : 1;
}

/* What build_obs needs to rebuild a transition's observation. */
typedef struct ObsArg
{
	const RlRolloutSpec *spec;
	const int64 *offsets;
	const int64 *buckets;
	const int32 *actions;
	int32		obs_dim;
	const float *const *scaled; /* each series' returns / sigma */
	/* where each row of the minibatch was decided (capacity entries) */
	int64		capacity;
	int32	   *series;
	int64	   *t;
	int32	   *position;
} ObsArg;

/*
 * The PPO update's observations, rebuilt for each minibatch from the
 * series and the rollout's actions: an epoch keeps 16 bytes per decision
 * instead of an observation (obs_dim floats) per decision (issue 16).
 * Each observation is a copy out of the returns scaled once per run (4
 * bytes per row).  The rows are random places in the series: locate them
 * all first and prefetch their windows, so the copies do not wait on
 * memory one by one.
 */
static int
build_obs(void *arg, const int64_t *idx, int64_t m, float *out, char *err)
{
	ObsArg	   *o = (ObsArg *) arg;
	const RlRolloutSpec *spec = o->spec;
	char		eerr[RL_ENV_ERRLEN];

	if (m > o->capacity)
	{
		snprintf(err, RL_TORCH_ERRLEN, "minibatch of %lld rows, room for %lld",
				 (long long) m, (long long) o->capacity);
		return 1;
	}
	for (int64_t i = 0; i < m; i++)
	{
		const float *r;

		if (rl_rollout_locate(spec, o->offsets, o->buckets, o->actions, idx[i], &o->series[i],
							  &o->t[i], &o->position[i], eerr) != RL_ENV_OK)
			goto fail;
		r = o->scaled[o->series[i]] + o->t[i] - spec->window + 1;
		for (int32 k = 0; k < spec->window; k += 16)
			__builtin_prefetch(r + k);
	}
	for (int64_t i = 0; i < m; i++)
		rl_rollout_scaled_observation(spec, o->scaled, o->series[i], o->t[i],
									  o->position[i], out + i * o->obs_dim);
	return 0;

fail:
	strlcpy(err, eerr, RL_TORCH_ERRLEN);
	return 1;
}

/* Raise the error for a stop request, which the run records as cancelled. */
static void
raise_if_cancelled(void)
{
	if (rl_trainer_stop_requested)
		ereport(ERROR,
				(errcode(ERRCODE_QUERY_CANCELED),
				 errmsg("training run cancelled")));
}

/*
 * Train "net" for conf->epochs epochs on the training series; call
 * on_epoch after each.  Returns the last epoch's result.
 */
RlEpochResult
rl_ppo_train(RlTorchNet *net, const RlTrainConf *conf, const RlSeries *train,
			 int32 n_series, double sigma, RlEpochCallback on_epoch, void *arg)
{
	int64	   *n_prices = palloc(n_series * sizeof(int64));
	int64		n_episodes;
	int64		n_decisions;
	RlEpisode  *episodes;
	RlRolloutBuffers buf;
	RlRolloutSpec spec;
	PolicyArg	policy = {net, ""};
	int64	   *offsets;
	int64	   *buckets;
	ObsArg		obs_arg;
	char		err[RL_ENV_ERRLEN];
	char		terr[RL_TORCH_ERRLEN];
	int32		obs_dim = conf->arch.obs_dim;
	RlEpochResult result = {0};

	for (int i = 0; i < n_series; i++)
		n_prices[i] = train[i].n;
	if (rl_env_count_episodes(n_prices, n_series, conf->arch.window,
							  conf->episode_length, &n_episodes, &n_decisions,
							  err) != RL_ENV_OK)
		elog(ERROR, "could not count episodes: %s", err);
	episodes = palloc_extended(Max(n_episodes, 1) * sizeof(RlEpisode), MCXT_ALLOC_HUGE);
	if (rl_env_episodes(n_prices, n_series, conf->arch.window, conf->episode_length,
						episodes, n_episodes, &n_episodes, err) != RL_ENV_OK)
		elog(ERROR, "could not build episodes: %s", err);

	/*
	 * 16 bytes per decision: no observations (build_obs rebuilds them), GAE
	 * in place (advantages over rewards, returns over values).
	 */
	buf.capacity = n_decisions;
	buf.obs = NULL;
	buf.actions = palloc_extended(n_decisions * sizeof(int32), MCXT_ALLOC_HUGE);
	buf.logp = palloc_extended(n_decisions * sizeof(float), MCXT_ALLOC_HUGE);
	buf.values = palloc_extended(n_decisions * sizeof(float), MCXT_ALLOC_HUGE);
	buf.rewards = palloc_extended(n_decisions * sizeof(float), MCXT_ALLOC_HUGE);
	buf.advantages = buf.rewards;
	buf.returns = buf.values;
	offsets = palloc_extended((n_episodes + 1) * sizeof(int64), MCXT_ALLOC_HUGE);
	buckets = palloc_extended(rl_rollout_bucket_count(n_decisions) * sizeof(int64),
							  MCXT_ALLOC_HUGE);
	rl_rollout_offsets(episodes, n_episodes, offsets, buckets);
	{
		float	  **scaled = palloc(Max(n_series, 1) * sizeof(float *));

		for (int i = 0; i < n_series; i++)
		{
			scaled[i] = palloc_extended(Max(train[i].n, 1) * sizeof(float), MCXT_ALLOC_HUGE);
			rl_rollout_scale_returns(&train[i], sigma, scaled[i]);
		}
		obs_arg.scaled = (const float *const *) scaled;
	}
	obs_arg.capacity = conf->ppo.minibatch;
	obs_arg.series = palloc(conf->ppo.minibatch * sizeof(int32));
	obs_arg.t = palloc(conf->ppo.minibatch * sizeof(int64));
	obs_arg.position = palloc(conf->ppo.minibatch * sizeof(int32));
	buf.work = palloc_extended(rl_rollout_work_floats(n_episodes, obs_dim) * sizeof(float),
							   MCXT_ALLOC_HUGE);

	memset(&spec, 0, sizeof(spec));
	spec.series = train;
	spec.n_series = n_series;
	spec.window = conf->arch.window;
	spec.n_features = conf->arch.n_features;
	spec.sigma = sigma;
	spec.cost = conf->cost;
	spec.gamma = conf->gamma;
	spec.lambda = conf->gae_lambda;
	spec.episodes = episodes;
	spec.n_episodes = n_episodes;
	spec.policy = torch_policy;
	spec.policy_arg = &policy;

	for (int32 epoch = 1; epoch <= conf->epochs; epoch++)
	{
		RlRolloutStats rstats;
		RlTorchUpdateStats ustats;
		RlTorchBatch batch;
		RlTorchPPOConfig ppo = conf->ppo;
		RlTorchStatus st;
		instr_time	start;
		instr_time	elapsed;
		instr_time	update_start;
		instr_time	update_time;

		INSTR_TIME_SET_CURRENT(start);
		spec.seed = conf->seed * 1000003 + epoch;
		if (rl_rollout(&spec, &buf, &rstats, err) != RL_ENV_OK)
		{
			raise_if_cancelled();
			ereport(ERROR,
					(errcode(ERRCODE_EXTERNAL_ROUTINE_EXCEPTION),
					 errmsg("rollout of epoch %d failed", epoch),
					 errdetail("%s%s%s", err, policy.err[0] ? ": " : "", policy.err)));
		}

		memset(&batch, 0, sizeof(batch));
		batch.n = n_decisions;
		batch.obs = NULL;
		batch.obs_fn = build_obs;
		batch.obs_arg = &obs_arg;
		obs_arg.spec = &spec;
		obs_arg.offsets = offsets;
		obs_arg.buckets = buckets;
		obs_arg.actions = buf.actions;
		obs_arg.obs_dim = obs_dim;
		batch.actions = buf.actions;
		batch.old_logp = buf.logp;
		batch.advantages = buf.advantages;
		batch.returns = buf.returns;
		ppo.seed = conf->seed * 7919 + epoch;
		INSTR_TIME_SET_CURRENT(update_start);
		st = rl_torch_ppo_update(net, &ppo, &batch, rl_trainer_should_stop, NULL,
								 &ustats, terr);
		INSTR_TIME_SET_CURRENT(update_time);
		INSTR_TIME_SUBTRACT(update_time, update_start);
		raise_if_cancelled();
		if (st != RL_TORCH_OK)
			ereport(ERROR,
					(errcode(ERRCODE_EXTERNAL_ROUTINE_EXCEPTION),
					 errmsg("ppo update of epoch %d failed", epoch),
					 errdetail("%s", terr)));

		INSTR_TIME_SET_CURRENT(elapsed);
		INSTR_TIME_SUBTRACT(elapsed, start);
		result.epoch = epoch;
		result.loss = ustats.loss;
		result.entropy = ustats.entropy;
		result.mean_episode_return = rstats.mean_episode_return;
		result.samples = n_decisions;
		result.samples_per_second = n_decisions / Max(INSTR_TIME_GET_DOUBLE(elapsed), 1e-9);
		result.update_us_per_step = INSTR_TIME_GET_MICROSEC(update_time) /
			(double) Max(ustats.minibatches, 1);
		if (on_epoch)
			on_epoch(arg, &result);
	}
	return result;
}
