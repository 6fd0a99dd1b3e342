/*-------------------------------------------------------------------------
 *
 * run_train.c
 *	  Steps 1 and 2 of a training run: the agent's data, read as the role
 *	  that asked, then PPO with libtorch.
 *
 * The source is read in a transaction of its own, as a security-restricted
 * operation whose setting changes are undone (owner.c): code in a view or a
 * row-level security policy runs as the requester and cannot change what
 * the owner's statements (run_registry.c) resolve to.  Before training, the
 * run's peak memory is estimated and refused above
 * rl_mlops.max_training_memory.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "miscadmin.h"
#include "pgstat.h"

#include "guc.h"
#include "owner.h"
#include "trainer/net_io.h"
#include "trainer/run.h"
#include "trainer/trainer.h"

/* What libtorch itself takes in a worker, data aside (bench/train). */
#define RL_TORCH_BASE_MEMORY (200.0 * 1024 * 1024)

/*
 * Bytes a run will hold at its peak, estimated from the data read and the
 * network: the series (a return, its scaled float copy and the features
 * per row), 16 bytes per
 * training decision (action, log prob, value and return, reward and
 * advantage: no observation, the PPO update rebuilds them per minibatch)
 * and the update's shuffle (8 bytes per decision), per-episode buffers,
 * and the parameters with their gradients, Adam moments and two
 * serialised copies, on top of what libtorch itself takes.  Measured by
 * bench/train/memory.sh.
 */
static double
estimated_memory(const RunState *rs)
{
	const RlArch *a = &rs->agent->arch;
	double		params = (double) a->hidden * (a->obs_dim + 1) +
		(double) a->hidden * (a->hidden + 1) +
		(double) RL_N_ACTIONS * (a->hidden + 1) + (a->hidden + 1);
	double		rows = 0;
	double		decisions = (double) rs->data->train_decisions;
	double		episodes = decisions / Max(rs->agent->episode_length, 1) + rs->data->n_series;

	for (int i = 0; i < rs->data->n_series; i++)
		rows += rs->data->n_prices[i];
	return RL_TORCH_BASE_MEMORY +
		rows * (sizeof(double) + sizeof(float) + sizeof(float) * a->n_features) +
		decisions * (4 * sizeof(float) + sizeof(int64)) +
		episodes * (sizeof(float) * (a->obs_dim + RL_N_ACTIONS + 1) +
					sizeof(RlEpisode) + sizeof(int64)) +
		params * sizeof(float) * 6;
}

/* Refuse, before training, a run that would need more than the setting. */
static void
check_memory(const RunState *rs)
{
	double		need = estimated_memory(rs);
	Size		limit = rl_max_training_memory_bytes();

	if (need > (double) limit)
		ereport(ERROR,
				(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
				 errmsg("training run of agent \"%s\" would need about %.0f MB, more than rl_mlops.max_training_memory (%zu MB)",
						rs->agent_name, need / (1024.0 * 1024.0), limit / (1024 * 1024)),
				 errdetail("%d symbols, " INT64_FORMAT " training decisions of %d inputs each, hidden size %d.",
						   rs->data->n_series, rs->data->train_decisions,
						   rs->agent->arch.obs_dim, rs->agent->arch.hidden),
				 errhint("Shorten data_window, or raise rl_mlops.max_training_memory if the machine has the memory.")));
}

/* Should-stop test of the source reader: the worker got SIGTERM. */
static bool
stop_requested(void)
{
	return rl_trainer_stop_requested;
}

/* Step 1: the agent, the active model, the data. */
static void
prepare(RunState *rs, const RlRunRequest *req)
{
	RlRequesterPart requester;
	char		err[RL_ENV_ERRLEN];

	ereport(LOG, (errmsg("rl_mlops: Step 1: Preparing training data... (agent \"%s\", run " INT64_FORMAT ")",
						 rs->agent_name, rs->run_id)));
	rl_run_xact_begin();
	rl_run_read_agent(rs);
	rs->champion = rl_run_load_champion(rs->agent_name, &rs->agent->arch);
	rs->warm_start = rs->champion != NULL && !req->full;
	rs->epochs = req->epochs > 0 ? req->epochs :
		rs->warm_start ? rs->agent->incremental_epochs : rs->agent->initial_epochs;
	rl_run_xact_commit();

	rl_run_xact_begin();
	requester = rl_begin_as_requester(GetUserId());
	rs->data = rl_dataset_load(rs->agent, stop_requested);
	rl_end_as_requester(requester);
	rl_run_xact_commit();
	check_memory(rs);

	if (rs->warm_start)
		rs->sigma = rs->champion->ckpt->sigma;	/* the parent's scale */
	else if (rl_env_sigma(rs->data->train, rs->data->n_series, &rs->sigma, err) != RL_ENV_OK)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_EXCEPTION),
				 errmsg("cannot scale the training returns"),
				 errdetail("%s", err)));
	rl_run_report_data(rs);
	ereport(LOG,
			(errmsg("rl_mlops: Training data prepared: %d symbols, " INT64_FORMAT " training and " INT64_FORMAT " holdout decisions, sigma %.6g",
					rs->data->n_series, rs->data->train_decisions,
					rs->data->holdout_decisions, rs->sigma)));
}

/*
 * Steps 1 and 2: data, then PPO.  Returns the trained net; *initial_w gets
 * the weights it started from (the untrained or warm-start network).
 */
RlTorchNet *
rl_run_prepare_and_train(RunState *rs, const RlRunRequest *req, double *loss,
						 RlWeights *initial_w)
{
	const RlAgent *a;
	RlTrainConf tc;
	RlTorchNet *net;
	RlEpochResult last;
	char		err[RL_TORCH_ERRLEN];

	prepare(rs, req);
	a = rs->agent;
	ereport(LOG,
			(errmsg("rl_mlops: Step 2: Training model... (%s, %d epochs)",
					rs->warm_start ? psprintf("incremental from %s", rs->champion->version)
					: "from scratch", rs->epochs)));
	pgstat_report_activity(STATE_RUNNING, psprintf("rl_mlops run " INT64_FORMAT ": training",
												   rs->run_id));
	if (rl_torch_version(rs->torch_version, sizeof(rs->torch_version), err) != RL_TORCH_OK ||
		rl_torch_set_threads(a->threads, err) != RL_TORCH_OK ||
		rl_torch_net_create(&a->arch, (uint64) a->seed, (float) a->learning_rate, &net, err) != RL_TORCH_OK)
		ereport(ERROR,
				(errcode(ERRCODE_EXTERNAL_ROUTINE_EXCEPTION),
				 errmsg("libtorch could not build the network"),
				 errdetail("%s", err)));
	if (rs->warm_start)
	{
		rl_net_load(net, rs->champion->ckpt);
		/* a network saved without Adam's moments (a plain PyTorch state_dict) */
		rs->fresh_optimizer = !rl_checkpoint_has_optimizer(rs->champion->ckpt);
		if (rs->fresh_optimizer)
			ereport(LOG,
					(errmsg("rl_mlops: run " INT64_FORMAT ": version %s has no optimizer state; Adam starts from zero",
							rs->run_id, rs->champion->version)));
	}
	rl_net_weights(net, &a->arch, initial_w);

	memset(&tc, 0, sizeof(tc));
	tc.arch = a->arch;
	tc.epochs = rs->epochs;
	tc.episode_length = a->episode_length;
	tc.cost = a->cost;
	tc.gamma = a->gamma;
	tc.gae_lambda = a->gae_lambda;
	tc.seed = (uint64) a->seed;
	tc.ppo.lr = (float) a->learning_rate;
	tc.ppo.clip = (float) a->clip_range;
	tc.ppo.value_coef = (float) a->value_coef;
	tc.ppo.entropy_coef = (float) a->entropy_coef;
	tc.ppo.max_grad_norm = (float) a->max_grad_norm;
	tc.ppo.update_passes = a->update_passes;
	tc.ppo.minibatch = a->minibatch_size;
	last = rl_ppo_train(net, &tc, rs->data->train, rs->data->n_series, rs->sigma,
						rl_run_report_epoch, rs);
	*loss = last.loss;
	return net;
}
