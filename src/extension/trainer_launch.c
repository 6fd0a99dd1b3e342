/*-------------------------------------------------------------------------
 *
 * trainer_launch.c
 *	  Starting trainer workers from a backend.
 *
 * A trainer is a dynamic background worker whose code lives in
 * rl_mlops_trainer.so, the only library that links libtorch.  The calling
 * backend never loads that library: it registers the worker and waits on
 * its handle, so libtorch (and OpenMP) is initialised only in the worker.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <sys/stat.h>

#include "access/htup_details.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "port/atomics.h"
#include "postmaster/bgworker.h"
#include "storage/dsm.h"
#include "utils/builtins.h"

#include "trainer_launch.h"
#include "worker_protocol.h"

PG_FUNCTION_INFO_V1(rl_check_trainer);

/* Fail early, with a useful message, when the trainer library is absent. */
static void
require_trainer_library(void)
{
	char		path[MAXPGPATH];
	struct stat st;

	snprintf(path, sizeof(path), "%s/%s%s", pkglib_path,
			 RL_TRAINER_LIBRARY, DLSUFFIX);
	if (stat(path, &st) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_FILE),
				 errmsg("rl_mlops trainer library is missing"),
				 errdetail("File \"%s\" does not exist.", path),
				 errhint("Install rl_mlops with \"make install\"; the trainer library is built only where libtorch is available.")));
}

/*
 * Register a trainer worker running "function" of rl_mlops_trainer.so as
 * the current user in the current database, and wait until it started.
 * Raises a clear error when no worker slot is free.
 */
BackgroundWorkerHandle *
rl_launch_trainer(const char *function, const char *type,
				  int64 run_id, Datum main_arg, pid_t *pid)
{
	BackgroundWorker worker;
	BackgroundWorkerHandle *handle;
	RlWorkerArgs args;
	BgwHandleStatus status;

	require_trainer_library();

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS |
		BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_ConsistentState;
	worker.bgw_restart_time = BGW_NEVER_RESTART;
	strlcpy(worker.bgw_library_name, RL_TRAINER_LIBRARY, BGW_MAXLEN);
	strlcpy(worker.bgw_function_name, function, BGW_MAXLEN);
	strlcpy(worker.bgw_type, type, BGW_MAXLEN);
	snprintf(worker.bgw_name, BGW_MAXLEN, "%s for PID %d", type, MyProcPid);
	worker.bgw_main_arg = main_arg;
	worker.bgw_notify_pid = MyProcPid;

	args.database_id = MyDatabaseId;
	args.session_role_id = GetSessionUserId();
	args.role_id = GetUserId();
	args.run_id = run_id;
	StaticAssertStmt(sizeof(args) <= BGW_EXTRALEN, "worker args too large");
	memcpy(worker.bgw_extra, &args, sizeof(args));

	if (!RegisterDynamicBackgroundWorker(&worker, &handle))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_RESOURCES),
				 errmsg("could not start an rl_mlops trainer worker"),
				 errdetail("All background worker slots are in use."),
				 errhint("Raise \"max_worker_processes\" (a restart is needed) or wait for running workers to finish.")));

	status = WaitForBackgroundWorkerStartup(handle, pid);
	if (status == BGWH_POSTMASTER_DIED)
		ereport(ERROR,
				(errcode(ERRCODE_ADMIN_SHUTDOWN),
				 errmsg("postmaster died while starting an rl_mlops trainer worker")));
	if (status != BGWH_STARTED)
		*pid = 0;				/* it already exited: the caller's report
								 * tells why */
	return handle;
}

/* Wait for a worker to exit; terminate it if the caller is interrupted. */
void
rl_wait_trainer(BackgroundWorkerHandle *handle)
{
	PG_TRY();
	{
		if (WaitForBackgroundWorkerShutdown(handle) == BGWH_POSTMASTER_DIED)
			ereport(ERROR,
					(errcode(ERRCODE_ADMIN_SHUTDOWN),
					 errmsg("postmaster died while waiting for an rl_mlops trainer worker")));
	}
	PG_CATCH();
	{
		TerminateBackgroundWorker(handle);
		PG_RE_THROW();
	}
	PG_END_TRY();
}

/*
 * check_trainer(ppo_updates, threads): prove the libtorch path end to end
 * in a real trainer worker and report what it saw.
 */
Datum
rl_check_trainer(PG_FUNCTION_ARGS)
{
	int32		ppo_updates = PG_GETARG_INT32(0);
	int32		threads = PG_GETARG_INT32(1);
	dsm_segment *seg;
	RlCheckReport *report;
	BackgroundWorkerHandle *handle;
	pid_t		pid;
	TupleDesc	tupdesc;
	Datum		values[7];
	bool		nulls[7] = {0};

	if (ppo_updates < 1 || ppo_updates > 1000000)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("ppo_updates must be between 1 and 1000000")));
	if (threads < 1 || threads > 64)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("threads must be between 1 and 64")));
	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");

	seg = dsm_create(sizeof(RlCheckReport), 0);
	report = (RlCheckReport *) dsm_segment_address(seg);
	memset(report, 0, sizeof(*report));
	report->ppo_updates = ppo_updates;
	report->threads = threads;

	handle = rl_launch_trainer("rl_trainer_check_main", "rl_mlops trainer check",
							   0, UInt32GetDatum(dsm_segment_handle(seg)), &pid);
	rl_wait_trainer(handle);
	pg_read_barrier();

	if (!report->done)
		ereport(ERROR,
				(errcode(ERRCODE_EXTERNAL_ROUTINE_EXCEPTION),
				 errmsg("rl_mlops trainer worker exited before reporting a result"),
				 errdetail("The worker was terminated, or it could not load library \"%s\".",
						   RL_TRAINER_LIBRARY),
				 errhint("The server log has the worker's own messages.")));
	if (!report->ok)
		ereport(ERROR,
				(errcode(ERRCODE_EXTERNAL_ROUTINE_EXCEPTION),
				 errmsg("rl_mlops trainer check failed"),
				 errdetail("%s", report->message)));

	values[0] = BoolGetDatum(report->ok);
	values[1] = CStringGetTextDatum(report->torch_version);
	values[2] = Int32GetDatum(report->threads_used);
	values[3] = Float8GetDatum(report->loss_before);
	values[4] = Float8GetDatum(report->loss_after);
	values[5] = Float8GetDatum(report->max_forward_diff);
	values[6] = Float8GetDatum(report->elapsed_ms);
	dsm_detach(seg);

	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(tupdesc),
													  values, nulls)));
}
