/*-------------------------------------------------------------------------
 *
 * dashboard_assets.c
 *	  The files the dashboard inlines: Chart.js, copied by make install from
 *	  Debian's libjs-chart.js beside the extension's SQL files, so that the
 *	  page opens from a file and fetches nothing.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <sys/stat.h>

#include "fmgr.h"
#include "miscadmin.h"
#include "storage/fd.h"
#include "utils/builtins.h"

PG_FUNCTION_INFO_V1(rl_chart_js);

/* The installed copy of Chart.js (Debian's libjs-chart.js). */
#define RL_CHART_JS "rl_mlops_chart.min.js"

/*
 * _chart_js(): the text of Chart.js as installed with the extension; the
 * dashboard inlines it.  A missing file says how to get it.
 */
Datum
rl_chart_js(PG_FUNCTION_ARGS)
{
	char		sharepath[MAXPGPATH];
	char		path[MAXPGPATH];
	FILE	   *f;
	struct stat st;
	text	   *result;
	size_t		got;

	get_share_path(my_exec_path, sharepath);
	snprintf(path, sizeof(path), "%s/extension/%s", sharepath, RL_CHART_JS);
	f = AllocateFile(path, PG_BINARY_R);
	if (f == NULL || fstat(fileno(f), &st) != 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not read Chart.js from \"%s\": %m", path),
				 errhint("make install copies it there from Debian's libjs-chart.js (make deps installs that).")));
	if (st.st_size > 16 * 1024 * 1024)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("\"%s\" is larger than 16 MB", path)));
	result = (text *) palloc(VARHDRSZ + st.st_size);
	got = fread(VARDATA(result), 1, st.st_size, f);
	if (got != (size_t) st.st_size || ferror(f))
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not read \"%s\": %m", path)));
	FreeFile(f);
	SET_VARSIZE(result, VARHDRSZ + st.st_size);
	PG_RETURN_TEXT_P(result);
}
