/*-------------------------------------------------------------------------
 *
 * run_main.c
 *	  The training run worker: a run's four steps (ARCHITECTURE.md, "A
 *	  training run") inside a background worker connected as the role that
 *	  asked.
 *
 *	  1. Preparing training data, read as that role (run_train.c).
 *	  2. Training: PPO with libtorch, warm-started from the active model's
 *		 weights and Adam state unless full or there is none (run_train.c).
 *	  3. Validating: the registry's checks, libtorch against the C forward
 *		 pass, and holdout backtests of the candidate and the champion
 *		 (run_validate.c).
 *	  4. Deploying through the agent's gate, in one transaction with the
 *		 archive, the history, retention and the run's final state.
 *
 * Every step logs one line and records its progress (run_registry.c).  Any
 * error ends the run "failed" (or "cancelled" after SIGTERM) and leaves the
 * active model untouched.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "port/atomics.h"
#include "postmaster/bgworker.h"
#include "storage/dsm.h"
#include "storage/ipc.h"
#include "utils/guc.h"
#include "utils/memutils.h"

#include "trainer/net_io.h"
#include "trainer/run.h"
#include "trainer/trainer.h"

#define AGREEMENT_TOLERANCE 1e-5

/*
 * Step 3: register the candidate (as a new version) and validate it.
 * Returns its version; *valid says whether every check passed.
 */
static char *
register_and_validate(RunState *rs, RlTorchNet *net, double loss,
					  const RlBacktestSummary *initial, RlBacktestSummary *cand,
					  RlBacktestSummary *champ, bool *valid)
{
	const RlArch *arch = &rs->agent->arch;
	char	   *version;
	bytea	   *bytes;
	RlCheckpoint *parsed;
	RlWeights	w;
	double		diff;

	ereport(LOG, (errmsg("rl_mlops: Step 3: Validating new model...")));
	rl_run_set_state(rs->run_id, "validating");

	rl_run_xact_begin();
	version = rl_run_new_version(rs);

	/* The bytes serving will read: parse them back for the C forward pass. */
	bytes = rl_checkpoint_serialize(rl_net_checkpoint(net, arch, rs->sigma, version));
	parsed = rl_checkpoint_parse(VARDATA(bytes), VARSIZE(bytes) - VARHDRSZ,
								 VARSIZE(bytes) - VARHDRSZ, NULL);
	rl_checkpoint_check_arch(parsed, arch, true);
	rl_checkpoint_weights(parsed, &w);
	diff = rl_run_forward_agreement(rs, net, &w);
	*cand = rl_run_holdout_backtest(rs, &w, rs->sigma);
	if (rs->champion)
		*champ = rl_run_holdout_backtest(rs, &rs->champion->weights, rs->champion->ckpt->sigma);

	rl_run_register(rs, version, bytes, loss,
					rl_run_metrics(rs, &w, cand, initial, champ, diff));
	/* libtorch and the C forward pass must agree: one more recorded check */
	*valid = rl_run_record_check(rs->agent_name, version, "libtorch_agreement",
								 diff <= AGREEMENT_TOLERANCE,
								 psprintf("max |libtorch - C| over holdout observations %.3g (tolerance %g)",
										  diff, AGREEMENT_TOLERANCE));
	rl_run_xact_commit();

	if (*valid)
		ereport(LOG, (errmsg("rl_mlops: Model checkpoint_%s.safetensors validated successfully (holdout log return %.4f, Sharpe %.3f)",
							 version, cand->total_log_return, cand->sharpe)));
	return version;
}

/* End a run whose model is not deployed: 'rejected', with why. */
static void
reject(RunState *rs, const char *version, const char *why, bool record_gate)
{
	rl_run_xact_begin();
	/* the gate is the last check: record it, so retention removes it */
	if (record_gate)
		(void) rl_run_record_check(rs->agent_name, version, "deploy_gate", false, why);
	rl_run_finish(rs, "rejected", why, version);
	rl_run_xact_commit();
	ereport(LOG, (errmsg("rl_mlops: Model %s %s", version,
						 record_gate ? psprintf("not deployed: %s", why) : "failed validation")));
	ereport(LOG, (errmsg("rl_mlops: Keeping current model active")));
}

/* The whole run after rl_run_begin; errors propagate to the caller. */
static void
run_pipeline(RunState *rs, const RlRunRequest *req)
{
	RlTorchNet *net;
	RlWeights	initial_w;
	RlBacktestSummary initial;
	RlBacktestSummary cand;
	RlBacktestSummary champ;
	double		loss;
	char	   *version;
	char	   *why;
	bool		valid;

	ereport(LOG, (errmsg("rl_mlops: Starting retraining of agent \"%s\" (run " INT64_FORMAT ", %s)",
						 rs->agent_name, rs->run_id, req->trigger)));
	net = rl_run_prepare_and_train(rs, req, &loss, &initial_w);
	initial = rl_run_holdout_backtest(rs, &initial_w, rs->sigma);
	ereport(LOG, (errmsg("rl_mlops: Model trained: loss %.6f", loss)));

	version = register_and_validate(rs, net, loss, &initial, &cand, &champ, &valid);
	rl_torch_net_free(net);
	if (!valid)
	{
		reject(rs, version, psprintf("model version %s failed validation", version), false);
		return;
	}
	if (!rl_run_gate_passes(rs, &cand, rs->champion ? &champ : NULL, &why))
	{
		reject(rs, version, why, true);
		return;
	}
	if (rl_trainer_stop_requested)
		ereport(ERROR,
				(errcode(ERRCODE_QUERY_CANCELED),
				 errmsg("training run cancelled before deployment")));

	ereport(LOG, (errmsg("rl_mlops: Step 4: Deploying new model...")));
	rl_run_set_state(rs->run_id, "deploying");
	if (!rl_run_deploy(rs, version, psprintf("retrain run " INT64_FORMAT " (%s; %s)",
											 rs->run_id, req->trigger, why)))
	{
		ereport(LOG, (errmsg("rl_mlops: Retraining complete! New model %s is a challenger (deploy_mode challenger)",
							 version)));
		return;
	}
	ereport(LOG, (errmsg("rl_mlops: Deployed model version %s", version)));
	ereport(LOG, (errmsg("rl_mlops: Retraining complete! New model %s deployed", version)));
}

/* Record a failed or cancelled run after an error, outside any transaction. */
static void
record_failure(RunState *rs)
{
	ErrorData  *edata;
	bool		cancelled;
	char	   *message;

	MemoryContextSwitchTo(rl_run_cxt);
	edata = CopyErrorData();
	FlushErrorState();
	AbortOutOfAnyTransaction();
	MemoryContextSwitchTo(rl_run_cxt);

	cancelled = edata->sqlerrcode == ERRCODE_QUERY_CANCELED;
	message = edata->detail ? psprintf("%s: %s", edata->message, edata->detail)
		: edata->message;
	ereport(LOG, (errmsg("rl_mlops: Training %s: %s", cancelled ? "cancelled" : "failed", message)));
	ereport(LOG, (errmsg("rl_mlops: Keeping current model active")));
	rl_run_xact_begin();
	rl_run_finish(rs, cancelled ? "cancelled" : "failed", message, NULL);
	rl_run_xact_commit();
}

/* Background worker entry point of a training run (retrain()). */
void
rl_trainer_run_main(Datum main_arg)
{
	dsm_segment *seg;
	RlRunRequest *shared;
	RlRunRequest req;
	RunState	rs;
	bool		already;

	rl_trainer_start();

	/*
	 * Registry statements run as the extension owner: never resolve their
	 * names through the requester's search_path (ALTER ROLE ... SET).  They
	 * are schema-qualified as well; this is the second line of defence.
	 */
	SetConfigOption("search_path", "pg_catalog, pg_temp", PGC_USERSET, PGC_S_SESSION);
	rl_run_cxt = AllocSetContextCreate(TopMemoryContext, "rl_mlops run",
									   ALLOCSET_DEFAULT_SIZES);
	MemoryContextSwitchTo(rl_run_cxt);

	seg = dsm_attach(DatumGetUInt32(main_arg));
	if (seg == NULL)
		proc_exit(0);			/* the caller is gone: nothing was asked */
	shared = (RlRunRequest *) dsm_segment_address(seg);
	memcpy(&req, shared, sizeof(req));

	memset(&rs, 0, sizeof(rs));
	rs.agent_name = req.agent;
	rs.run_id = rl_run_begin(&req, &already);

	shared->run_id = rs.run_id;
	shared->already_running = already;
	memcpy(shared->message, req.message, sizeof(shared->message));
	pg_write_barrier();
	shared->answered = true;
	dsm_detach(seg);
	if (rs.run_id == 0 || already)
		proc_exit(0);

	PG_TRY();
	{
		run_pipeline(&rs, &req);
	}
	PG_CATCH();
	{
		record_failure(&rs);
	}
	PG_END_TRY();
	proc_exit(0);
}
