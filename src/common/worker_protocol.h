/*-------------------------------------------------------------------------
 *
 * worker_protocol.h
 *	  What the calling backend and a trainer worker share: the arguments
 *	  passed in bgw_extra and the report a check worker writes back into a
 *	  dynamic shared memory segment.
 *
 *-------------------------------------------------------------------------
 */
#ifndef RL_TRAINER_SHM_H
#define RL_TRAINER_SHM_H

#include "postgres.h"

#include "agent.h"

#define RL_TRAINER_LIBRARY "rl_mlops_trainer"
#define RL_TRAINER_MSGLEN 512


/* Packed into BackgroundWorker.bgw_extra: who the worker connects as. */
typedef struct RlWorkerArgs
{
	Oid			database_id;
	Oid			session_role_id;	/* the login role: workers connect as it */
	Oid			role_id;		/* the current role (after SET ROLE) */
	int64		run_id;			/* training run, or 0 for a check */
} RlWorkerArgs;

/* check_trainer(): inputs set by the caller, results set by the worker. */
typedef struct RlCheckReport
{
	int32		ppo_updates;
	int32		threads;

	bool		done;			/* the worker wrote everything below */
	bool		ok;
	char		torch_version[64];
	int32		threads_used;
	double		loss_before;
	double		loss_after;
	double		max_forward_diff;	/* libtorch vs the C forward pass */
	double		elapsed_ms;
	char		message[RL_TRAINER_MSGLEN];
} RlCheckReport;

/*
 * retrain(): the request the caller writes, and the handshake the run
 * worker answers with once it has committed its run row (or found the run
 * that answers the request, rl_mlops._begin_run).
 */
typedef struct RlRunRequest
{
	char		agent[RL_AGENT_NAME_BYTES];
	char		trigger[16];	/* manual or schedule */
	int32		epochs;			/* 0: the agent's setting */
	bool		full;			/* train from scratch */
	int64		seen_run_id;	/* the agent's newest run when asked: a
								 * newer one answers the request */

	bool		answered;		/* the worker set the fields below */
	int64		run_id;
	bool		already_running;	/* run_id is another worker's run */
	char		message[RL_TRAINER_MSGLEN];	/* why no run was started */
} RlRunRequest;

/*
 * Tests only (rl_mlops.test_pause_before_deploy_commit): the advisory lock,
 * one-key form, a run waits for inside its deploy transaction.
 */
#define RL_TEST_PAUSE_LOCK 1380732236

#endif							/* RL_TRAINER_SHM_H */
