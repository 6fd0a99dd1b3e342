/*-------------------------------------------------------------------------
 *
 * guc.c
 *	  Server settings of rl_mlops.so.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "utils/guc.h"

#include "guc.h"

int			rl_max_checkpoint_size_kb = 1024 * 1024;

/* Register the settings; called from _PG_init. */
void
rl_define_gucs(void)
{
	DefineCustomIntVariable("rl_mlops.max_checkpoint_size",
							"Largest checkpoint the registry reads, imports or parses.",
							"Checkpoints are parsed in memory; this bounds that memory.",
							&rl_max_checkpoint_size_kb,
							1024 * 1024, 64, 4 * 1024 * 1024,
							PGC_SUSET, GUC_UNIT_KB,
							NULL, NULL, NULL);
	MarkGUCPrefixReserved("rl_mlops");
}
