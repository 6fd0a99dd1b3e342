/*-------------------------------------------------------------------------
 *
 * worker_alive.c
 *	  rl_mlops._worker_alive(pid, started_at): is the process that runs a
 *	  training run still there?
 *
 * A run row records its worker's PID and process start time; together
 * they name one process, whatever PIDs the system reuses later.  Only the
 * registry writes them, so no other role can make a dead run look alive
 * or a live one dead (the advisory lock used before could be taken by any
 * role).  Read from the backend status array, which every backend sees in
 * full from C whatever the viewer's privileges.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "storage/procarray.h"
#include "utils/backend_status.h"
#include "utils/timestamp.h"

PG_FUNCTION_INFO_V1(rl_worker_alive);

/* Is (pid, started_at) a live backend or background worker? */
Datum
rl_worker_alive(PG_FUNCTION_ARGS)
{
	int32		pid;
	TimestampTz started_at;
	int			n;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		PG_RETURN_BOOL(false);
	pid = PG_GETARG_INT32(0);
	started_at = PG_GETARG_TIMESTAMPTZ(1);
	/* the process array is read now; the status array once a transaction */
	if (BackendPidGetProc(pid) == NULL)
		PG_RETURN_BOOL(false);
	n = pgstat_fetch_stat_numbackends();
	for (int i = 1; i <= n; i++)
	{
		LocalPgBackendStatus *local = pgstat_fetch_stat_local_beentry(i);

		if (local != NULL && local->backendStatus.st_procpid == pid)
			PG_RETURN_BOOL(local->backendStatus.st_proc_start_timestamp == started_at);
	}
	PG_RETURN_BOOL(false);
}
