/*-------------------------------------------------------------------------
 *
 * imported_holdout.c
 *	  _judge_imported(agent, version, champion): what validate_model()
 *	  adds for a version made elsewhere, so that it is judged like a
 *	  trained one (ARCHITECTURE.md "Training"): the holdout backtest on the
 *	  agent's own data window, split as training splits it, the active
 *	  model's backtest on the same bars, and the agent's deployment gate.
 *
 * The source is the user's relation: it is read as the role that called
 * validate_model() (the session's role, not the owner validate_model runs
 * as), with the same restrictions as every other read of it.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/jsonb.h"

#include "agent.h"
#include "dataset.h"
#include "holdout.h"
#include "owner.h"
#include "serve.h"

PG_FUNCTION_INFO_V1(rl_judge_imported);

/* The data window, read with the requester's rights. */
static RlDataset *
load_as_requester(const RlAgent *agent)
{
	RlRequesterPart part = rl_begin_as_requester(GetOuterUserId());
	RlDataset  *ds = rl_dataset_load(agent, NULL);

	rl_end_as_requester(part);
	return ds;
}

/*
 * Returns the metrics to merge into models.metrics (holdout, champion,
 * holdout_ranges, holdout_by_symbol, ...) and "deploy_gate": {"ok",
 * "message"}.  champion NULL: no active model to compare with.
 */
Datum
rl_judge_imported(PG_FUNCTION_ARGS)
{
	char	   *agent_name;
	char	   *version;
	char	   *champion = PG_ARGISNULL(2) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(2));
	RlAgent    *agent;
	RlDataset  *ds;
	const ServeModel *cand;
	RlBacktestSummary cand_sum;
	RlBacktestSummary champ_sum;
	bool		passes;
	char	   *why;
	StringInfoData js;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		elog(ERROR, "agent and version must not be null");
	agent_name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	version = text_to_cstring(PG_GETARG_TEXT_PP(1));
	agent = rl_agent_read(agent_name);
	ds = load_as_requester(agent);

	cand = rl_serve_version(agent_name, version);
	rl_serve_check_arch(cand, agent);
	cand_sum = rl_holdout_backtest(ds, &cand->w, cand->sigma, agent->cost, -1);

	initStringInfo(&js);
	appendStringInfoChar(&js, '{');
	rl_holdout_append_summary(&js, "holdout", &cand_sum);
	if (champion != NULL)
	{
		const ServeModel *champ = rl_serve_version(agent_name, champion);

		rl_serve_check_arch(champ, agent);
		champ_sum = rl_holdout_backtest(ds, &champ->w, champ->sigma, agent->cost, -1);
		appendStringInfoString(&js, ", ");
		rl_holdout_append_summary(&js, "champion", &champ_sum);
		appendStringInfoString(&js, ", \"champion_version\": ");
		escape_json(&js, champion);
	}
	appendStringInfoString(&js, ", ");
	rl_holdout_append_ranges(&js, ds, &cand->w, cand->sigma, agent->cost);
	passes = rl_gate_passes(agent, &cand_sum, champion ? &champ_sum : NULL, &why);
	appendStringInfo(&js, ", \"sigma\": %.17g, \"periods_per_year\": %.6g"
					 ", \"symbols\": %d, \"holdout_decisions\": " INT64_FORMAT
					 ", \"deploy_gate\": {\"ok\": %s, \"message\": ",
					 cand->sigma, ds->holdout_periods_per_year, ds->n_series,
					 ds->holdout_decisions, passes ? "true" : "false");
	escape_json(&js, why);
	appendStringInfoString(&js, "}}");
	PG_RETURN_DATUM(DirectFunctionCall1(jsonb_in, CStringGetDatum(js.data)));
}
