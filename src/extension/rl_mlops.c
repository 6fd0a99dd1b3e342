/*-------------------------------------------------------------------------
 *
 * rl_mlops.c
 *	  Module entry of rl_mlops.so, the library every backend that calls the
 *	  SQL API loads.  It never links libtorch: training lives in the
 *	  separate rl_mlops_trainer library, loaded only by training workers.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"

#include "guc.h"
#include "serve.h"

PG_MODULE_MAGIC;

void		_PG_init(void);

/* Define settings when a backend first loads the library. */
void
_PG_init(void)
{
	rl_define_gucs();
	rl_serve_init();
}
