/*-------------------------------------------------------------------------
 *
 * run.h
 *	  A training run, the steps of ARCHITECTURE.md "A training run" inside
 *	  a worker connected as the role that asked:
 *
 *	  run_main.c      the worker's entry point and the run's four steps
 *	  run_registry.c  the run's transactions and every registry statement
 *					  (as the extension owner)
 *	  run_train.c     steps 1 and 2: the data (as the requester) and PPO
 *	  run_validate.c  step 3's checks: libtorch against the C forward pass,
 *					  holdout backtests, the metrics, the deployment gate
 *
 *-------------------------------------------------------------------------
 */
#ifndef RL_TRAINER_RUN_H
#define RL_TRAINER_RUN_H

#include "agent.h"
#include "backtest.h"
#include "checkpoint.h"
#include "torch/rl_torch.h"
#include "dataset.h"
#include "trainer/ppo.h"
#include "worker_protocol.h"

/* The active model when the run started, if any. */
typedef struct Champion
{
	char	   *version;
	RlCheckpoint *ckpt;
	RlWeights	weights;
} Champion;

/* State of the run shared by the steps. */
typedef struct RunState
{
	int64		run_id;
	const char *agent_name;
	RlAgent    *agent;			/* its settings, read once */
	Champion   *champion;		/* NULL if no model is active */
	RlDataset  *data;
	double		sigma;
	int32		epochs;
	bool		warm_start;
	bool		fresh_optimizer;	/* warm start without the parent's Adam
									 * state */
	char		torch_version[64];
} RunState;

/* The run's memory context: everything that lives across transactions. */
extern MemoryContext rl_run_cxt;

/* run_registry.c */
extern void rl_run_xact_begin(void);
extern void rl_run_xact_commit(void);
extern int64 rl_run_begin(RlRunRequest *req, bool *already);
extern void rl_run_set_state(int64 run_id, const char *state);
extern void rl_run_read_agent(RunState *rs);
extern Champion *rl_run_load_champion(const char *agent, const RlArch *arch);
extern void rl_run_report_data(const RunState *rs);
extern void rl_run_report_epoch(void *arg, const RlEpochResult *r);
extern char *rl_run_new_version(const RunState *rs);
extern void rl_run_register(const RunState *rs, const char *version,
							bytea *checkpoint, double loss, const char *metrics);
extern bool rl_run_record_check(const char *agent, const char *version,
								const char *check, bool ok, const char *message);
extern bool rl_run_deploy(const RunState *rs, const char *version, const char *reason);
extern void rl_run_finish(const RunState *rs, const char *state, const char *error,
						  const char *version);

/* run_train.c */
extern RlTorchNet *rl_run_prepare_and_train(RunState *rs, const RlRunRequest *req,
											double *loss, RlWeights *initial_w);

/* run_validate.c */
extern double rl_run_forward_agreement(const RunState *rs, RlTorchNet *net,
									   const RlWeights *w);
extern RlBacktestSummary rl_run_holdout_backtest(const RunState *rs, const RlWeights *w,
												 double sigma);
extern char *rl_run_metrics(const RunState *rs, const RlWeights *w,
							const RlBacktestSummary *cand,
							const RlBacktestSummary *initial,
							const RlBacktestSummary *champ, double diff);
extern double rl_run_peak_rss_mb(void);
extern bool rl_run_gate_passes(const RunState *rs, const RlBacktestSummary *cand,
							   const RlBacktestSummary *champ, char **why);

#endif							/* RL_TRAINER_RUN_H */
