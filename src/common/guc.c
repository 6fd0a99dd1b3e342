/*-------------------------------------------------------------------------
 *
 * guc.c
 *	  Server settings of rl_mlops (see guc.h).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <limits.h>
#include <unistd.h>

#include "utils/builtins.h"
#include "utils/guc.h"

#include "guc.h"
#include "worker_protocol.h"

static int	max_checkpoint_size_kb;
static int	max_training_memory_mb;
static bool test_pause_before_deploy_commit;

/*
 * A quarter of the machine's memory: several agents may train at once,
 * each in its own worker, beside the server's own memory.
 */
static int
default_training_memory_mb(void)
{
	long		pages = sysconf(_SC_PHYS_PAGES);
	long		page_size = sysconf(_SC_PAGESIZE);
	double		mb;

	if (pages <= 0 || page_size <= 0)
		return 4096;
	mb = (double) pages * page_size / (4.0 * 1024 * 1024);
	return (int) Max(Min(mb, (double) INT_MAX), 256);
}

/* Register the settings; called from rl_mlops.so's _PG_init. */
void
rl_define_gucs(void)
{
	DefineCustomIntVariable("rl_mlops.max_checkpoint_size",
							"Largest checkpoint the registry reads, imports or parses.",
							"Checkpoints are parsed in memory; this bounds that memory.",
							&max_checkpoint_size_kb,
							1024 * 1024, 64, 4 * 1024 * 1024,
							PGC_SUSET, GUC_UNIT_KB,
							NULL, NULL, NULL);

	DefineCustomIntVariable("rl_mlops.max_training_memory",
							"Largest memory a training run may need, as estimated before it trains.",
							"A run whose data and network would need more fails before training starts. "
							"The default is a quarter of the machine's memory.",
							&max_training_memory_mb,
							default_training_memory_mb(), 64, INT_MAX,
							PGC_SUSET, GUC_UNIT_MB,
							NULL, NULL, NULL);

	/*
	 * Tests only: the crash tests kill a training worker while its deploy
	 * transaction is open.
	 */
	DefineCustomBoolVariable("rl_mlops.test_pause_before_deploy_commit",
							 "Tests only: training runs wait before committing their deployment.",
							 "When on, a training worker that has deployed its model, but not yet committed, "
							 "waits for advisory lock " CppAsString2(RL_TEST_PAUSE_LOCK) " (the one-key form); "
							 "a session holding that lock holds the deployment open.",
							 &test_pause_before_deploy_commit,
							 false,
							 PGC_SUSET, GUC_NOT_IN_SAMPLE,
							 NULL, NULL, NULL);
	MarkGUCPrefixReserved("rl_mlops");
}

/* An integer setting's value in its base unit, read by name. */
static int64
setting_int(const char *name)
{
	return pg_strtoint64(GetConfigOption(name, false, false));
}

/* rl_mlops.max_checkpoint_size in bytes. */
Size
rl_max_checkpoint_bytes(void)
{
	return (Size) setting_int("rl_mlops.max_checkpoint_size") * 1024;
}

/* rl_mlops.max_training_memory in bytes. */
Size
rl_max_training_memory_bytes(void)
{
	return (Size) setting_int("rl_mlops.max_training_memory") * 1024 * 1024;
}
