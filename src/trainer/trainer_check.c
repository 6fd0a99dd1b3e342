/*-------------------------------------------------------------------------
 *
 * trainer_check.c
 *	  rl_mlops.check_trainer(): a trainer worker that builds the
 *	  actor-critic through the libtorch wrapper, runs a forward pass and
 *	  PPO updates on a small random batch, compares libtorch's forward pass
 *	  with the C one, and writes a report into the caller's shared memory.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "common/pg_prng.h"
#include "miscadmin.h"
#include "port/atomics.h"
#include "portability/instr_time.h"
#include "storage/dsm.h"
#include "storage/ipc.h"

#include "forward.h"
#include "torch/rl_torch.h"
#include "trainer/net_io.h"
#include "trainer/trainer.h"

#define CHECK_BATCH 512
#define CHECK_SEED 20261124

/* Largest difference between libtorch's outputs and the C forward pass. */
static double
forward_difference(const RlWeights *w, const float *obs, int64 n,
				   const float *probs, const float *values)
{
	const RlArch *arch = &w->arch;
	float	   *scratch = palloc(RL_FORWARD_SCRATCH(arch) * sizeof(float));
	float		p[RL_N_ACTIONS];
	float		v;
	double		maxdiff = 0;

	for (int64 i = 0; i < n; i++)
	{
		rl_forward(w, obs + i * arch->obs_dim, p, &v, scratch);
		for (int a = 0; a < arch->n_actions; a++)
			maxdiff = Max(maxdiff, fabs(p[a] - probs[i * arch->n_actions + a]));
		maxdiff = Max(maxdiff, fabs(v - values[i]));
	}
	return maxdiff;
}

/*
 * The check itself.  Returns false with report->message set when the
 * wrapper reports an error; a stop request ends the worker (FATAL) instead.
 */
static bool
run_check(RlCheckReport *report)
{
	RlArch		arch = {32, 0, 33, 64, RL_N_ACTIONS};
	RlTorchPPOConfig cfg = {3e-4f, 0.2f, 0.5f, 0.01f, 0.5f, 4, 256, CHECK_SEED};
	char	   *err = report->message;
	RlTorchNet *net = NULL;
	RlWeights	weights;
	RlTorchBatch batch;
	RlTorchUpdateStats stats;
	pg_prng_state rng;
	float	   *obs = palloc(CHECK_BATCH * arch.obs_dim * sizeof(float));
	float	   *probs = palloc(CHECK_BATCH * arch.n_actions * sizeof(float));
	float	   *values = palloc(CHECK_BATCH * sizeof(float));
	int32	   *actions = palloc(CHECK_BATCH * sizeof(int32));
	float	   *old_logp = palloc(CHECK_BATCH * sizeof(float));
	float	   *adv = palloc(CHECK_BATCH * sizeof(float));
	float	   *returns = palloc(CHECK_BATCH * sizeof(float));
	bool		ok = false;

	if (rl_torch_version(report->torch_version, sizeof(report->torch_version), err) != RL_TORCH_OK ||
		rl_torch_set_threads(report->threads, err) != RL_TORCH_OK ||
		rl_torch_net_create(&arch, CHECK_SEED, cfg.lr, &net, err) != RL_TORCH_OK)
		goto done;
	report->threads_used = rl_torch_get_threads();

	pg_prng_seed(&rng, CHECK_SEED);
	for (int i = 0; i < CHECK_BATCH * arch.obs_dim; i++)
		obs[i] = (float) (pg_prng_double(&rng) * 2.0 - 1.0);
	if (rl_torch_forward(net, obs, CHECK_BATCH, probs, values, err) != RL_TORCH_OK)
		goto done;
	rl_net_weights(net, &arch, &weights);
	report->max_forward_diff = forward_difference(&weights, obs, CHECK_BATCH,
												  probs, values);

	/* A random batch: uniform actions, noisy advantages and returns. */
	for (int i = 0; i < CHECK_BATCH; i++)
	{
		actions[i] = (int32) pg_prng_uint64_range(&rng, 0, arch.n_actions - 1);
		old_logp[i] = logf(probs[i * arch.n_actions + actions[i]]);
		adv[i] = (float) (pg_prng_double(&rng) * 2.0 - 1.0);
		returns[i] = (float) (pg_prng_double(&rng) * 2.0 - 1.0);
	}
	batch.n = CHECK_BATCH;
	batch.obs = obs;
	batch.actions = actions;
	batch.old_logp = old_logp;
	batch.advantages = adv;
	batch.returns = returns;

	if (rl_torch_ppo_loss(net, &cfg, &batch, &stats, err) != RL_TORCH_OK)
		goto done;
	report->loss_before = stats.loss;
	for (int i = 0; i < report->ppo_updates; i++)
	{
		RlTorchStatus st = rl_torch_ppo_update(net, &cfg, &batch,
											   rl_trainer_should_stop, NULL,
											   &stats, err);

		if (st == RL_TORCH_STOPPED || rl_trainer_stop_requested)
			ereport(FATAL,
					(errcode(ERRCODE_ADMIN_SHUTDOWN),
					 errmsg("terminating rl_mlops trainer check due to administrator command")));
		if (st != RL_TORCH_OK)
			goto done;
	}
	if (rl_torch_ppo_loss(net, &cfg, &batch, &stats, err) != RL_TORCH_OK)
		goto done;
	report->loss_after = stats.loss;
	ok = true;

done:
	rl_torch_net_free(net);
	return ok;
}

/* Background worker entry point for check_trainer(). */
void
rl_trainer_check_main(Datum main_arg)
{
	dsm_segment *seg;
	RlCheckReport *report;
	instr_time	start;
	instr_time	elapsed;

	rl_trainer_start();

	seg = dsm_attach(DatumGetUInt32(main_arg));
	if (seg == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("could not map the check_trainer report segment"),
				 errdetail("The calling session has already gone away.")));
	report = (RlCheckReport *) dsm_segment_address(seg);

	INSTR_TIME_SET_CURRENT(start);
	report->ok = run_check(report);
	INSTR_TIME_SET_CURRENT(elapsed);
	INSTR_TIME_SUBTRACT(elapsed, start);
	report->elapsed_ms = INSTR_TIME_GET_MILLISEC(elapsed);

	pg_write_barrier();
	report->done = true;
	dsm_detach(seg);
	proc_exit(0);
}
