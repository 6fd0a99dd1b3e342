/*-------------------------------------------------------------------------
 *
 * ppo.h
 *	  Step 2 of a training run: PPO epochs over all training episodes
 *	  (ARCHITECTURE.md "The trading environment"), each a batched rollout followed by the update.
 *
 *-------------------------------------------------------------------------
 */
#ifndef RL_PPO_H
#define RL_PPO_H

#include "rollout.h"
#include "torch/rl_torch.h"

typedef struct RlTrainConf
{
	RlArch		arch;
	int32		epochs;
	int32		episode_length;
	double		cost;
	double		gamma;
	double		gae_lambda;
	RlTorchPPOConfig ppo;
	uint64		seed;
} RlTrainConf;

/* What one epoch did, handed to the progress callback. */
typedef struct RlEpochResult
{
	int32		epoch;
	double		loss;
	double		samples_per_second;
	double		mean_episode_return;
	double		entropy;
	int64		samples;
	double		update_us_per_step; /* the PPO update's wall time per
									 * minibatch step, in microseconds */
} RlEpochResult;

typedef void (*RlEpochCallback) (void *arg, const RlEpochResult *result);

extern RlEpochResult rl_ppo_train(RlTorchNet *net, const RlTrainConf *conf,
								  const RlSeries *train, int32 n_series,
								  double sigma, RlEpochCallback on_epoch,
								  void *arg);

#endif							/* RL_PPO_H */
