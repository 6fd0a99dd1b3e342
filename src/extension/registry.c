/*-------------------------------------------------------------------------
 *
 * registry.c
 *	  The C half of the model registry: storing a checkpoint as a large
 *	  object after the strict parser accepted it, reading it back with its
 *	  sha256 verified, and the validation checks of ARCHITECTURE.md "A training run".
 *
 * The SQL half (sql/rl_mlops--*.sql) owns the rows, states and history;
 * these internal functions (names starting with an underscore, not
 * granted to PUBLIC) only touch bytes.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "access/htup_details.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "common/pg_prng.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "lib/stringinfo.h"
#include "utils/builtins.h"
#include "utils/float.h"
#include "utils/inval.h"
#include "utils/json.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/resowner.h"

#include "checkpoint.h"
#include "guc.h"
#include "lo.h"

PG_FUNCTION_INFO_V1(rl_store_checkpoint);
PG_FUNCTION_INFO_V1(rl_read_checkpoint);
PG_FUNCTION_INFO_V1(rl_network_checkpoint);
PG_FUNCTION_INFO_V1(rl_validate_checkpoint);
PG_FUNCTION_INFO_V1(rl_invalidate_serving);
PG_FUNCTION_INFO_V1(rl_caller);

/* Probe observations of the forward-pass check. */
#define PROBE_OBSERVATIONS 64
#define PROBE_SEED 7

/* The agent's architecture and a sigma (NULL: unknown) from SQL arguments. */
static RlCheckpointKnown
known_from_args(FunctionCallInfo fcinfo, int first)
{
	RlCheckpointKnown known;

	for (int i = first; i < first + 3; i++)
		if (PG_ARGISNULL(i))
			elog(ERROR, "architecture arguments must not be null");
	known.arch = rl_arch_make(PG_GETARG_INT32(first), PG_GETARG_INT32(first + 1),
							  PG_GETARG_INT32(first + 2));
	/* the 0.1.0 SQL declarations, until the upgrade, have no sigma */
	known.sigma = PG_NARGS() <= first + 3 || PG_ARGISNULL(first + 3) ?
		get_float8_nan() : PG_GETARG_FLOAT8(first + 3);
	return known;
}

/*
 * _store_checkpoint(bytes, window, n_features, hidden, sigma): parse
 * strictly, check the architecture, then write the large object, exactly
 * the bytes given.  Returns what the file says (or lacks): sigma, its
 * format and the dtypes widened.  Nothing is written when the bytes are
 * refused.
 */
Datum
rl_store_checkpoint(PG_FUNCTION_ARGS)
{
	bytea	   *data;
	RlCheckpointKnown known = known_from_args(fcinfo, 1);
	const char *buf;
	Size		len;
	RlCheckpoint *ckpt;
	char		sha[65];
	TupleDesc	tupdesc;
	Datum		values[6];
	bool		nulls[6] = {0};

	if (PG_ARGISNULL(0))
		elog(ERROR, "checkpoint must not be null");
	data = PG_GETARG_BYTEA_PP(0);
	buf = VARDATA_ANY(data);
	len = VARSIZE_ANY_EXHDR(data);
	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");

	if (PG_NARGS() > 4 && !PG_ARGISNULL(4) &&
		(!isfinite(known.sigma) || known.sigma <= 0))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("sigma must be a positive finite number"),
				 errdetail("sigma is %g.", known.sigma)));
	ckpt = rl_checkpoint_parse(buf, len, RL_MAX_CHECKPOINT_BYTES, &known);
	rl_checkpoint_check_arch(ckpt, &known.arch, false);
	rl_sha256_hex(buf, len, sha);

	values[0] = ObjectIdGetDatum(rl_lo_write(buf, len));
	values[1] = CStringGetTextDatum(sha);
	values[2] = Int64GetDatum((int64) len);
	values[3] = Float8GetDatum(ckpt->sigma);
	values[4] = CStringGetTextDatum(ckpt->format);
	if (ckpt->widened_from != NULL)
		values[5] = CStringGetTextDatum(ckpt->widened_from);
	else
		nulls[5] = true;
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(tupdesc),
													  values, nulls)));
}

/* _read_checkpoint(oid, sha256): the checkpoint's bytes, verified. */
Datum
rl_read_checkpoint(PG_FUNCTION_ARGS)
{
	Oid			loid = PG_GETARG_OID(0);
	char	   *sha256 = text_to_cstring(PG_GETARG_TEXT_PP(1));
	Size		len;
	char	   *buf = rl_lo_read_verified(loid, sha256, &len);
	bytea	   *result;

	if (len > MaxAllocSize - VARHDRSZ)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("checkpoint large object %u is too large for a bytea", loid),
				 errhint("Use lo_export or \\lo_export on the checkpoint oid instead.")));
	result = palloc(len + VARHDRSZ);
	SET_VARSIZE(result, len + VARHDRSZ);
	memcpy(VARDATA(result), buf, len);
	PG_RETURN_BYTEA_P(result);
}

/*
 * _network_checkpoint(bytes, window, n_features, hidden, sigma, version):
 * the network alone, as an rl_mlops/1 checkpoint (F32, our metadata with
 * the registry's version, no optimizer state): what export_model(...,
 * optimizer => false) returns.
 */
Datum
rl_network_checkpoint(PG_FUNCTION_ARGS)
{
	bytea	   *data;
	RlCheckpointKnown known = known_from_args(fcinfo, 1);
	RlCheckpoint *ckpt;
	RlCheckpoint net;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(5))
		elog(ERROR, "checkpoint and version must not be null");
	data = PG_GETARG_BYTEA_PP(0);
	ckpt = rl_checkpoint_parse(VARDATA_ANY(data), VARSIZE_ANY_EXHDR(data),
							   RL_MAX_CHECKPOINT_BYTES, &known);
	rl_checkpoint_check_arch(ckpt, &known.arch, false);

	net = *ckpt;
	net.version = text_to_cstring(PG_GETARG_TEXT_PP(5));
	net.ntensors = RL_N_PARAMS;
	net.tensors = palloc(RL_N_PARAMS * sizeof(RlTensor));
	for (int i = 0; i < RL_N_PARAMS; i++)
		net.tensors[i] = *rl_checkpoint_tensor(ckpt, rl_checkpoint_param_names[i]);
	PG_RETURN_BYTEA_P(rl_checkpoint_serialize(&net));
}

/* State shared by the validation steps. */
typedef struct ValidateState
{
	Oid			loid;
	const char *sha256;
	RlArch		arch;
	RlCheckpointKnown known;
	char	   *buf;
	Size		len;
	RlCheckpoint *ckpt;
	char	   *message;		/* the step's success message */
} ValidateState;

/* Readable: the large object exists and matches the recorded sha256. */
static void
step_readable(ValidateState *st)
{
	st->buf = rl_lo_read_verified(st->loid, st->sha256, &st->len);
	st->message = psprintf("large object %u read, %zu bytes, sha256 matches",
						   st->loid, st->len);
}

/* Loads: the strict safetensors parser accepts it. */
static void
step_loads(ValidateState *st)
{
	st->ckpt = rl_checkpoint_parse(st->buf, st->len, RL_MAX_CHECKPOINT_BYTES,
								   &st->known);
	st->message = psprintf("safetensors parsed, %d tensors, sigma %g%s%s%s",
						   st->ckpt->ntensors, st->ckpt->sigma,
						   strcmp(st->ckpt->format, RL_CHECKPOINT_FORMAT) == 0 ? "" :
						   psprintf(" (from the registry: the file's format is %s)",
									st->ckpt->format),
						   st->ckpt->widened_from ? ", widened to F32 from " : "",
						   st->ckpt->widened_from ? st->ckpt->widened_from : "");
}

/* Architecture: the tensors are exactly the agent's network. */
static void
step_architecture(ValidateState *st)
{
	rl_checkpoint_check_arch(st->ckpt, &st->arch, false);
	st->message = psprintf("matches obs_dim %d, hidden %d, %d actions%s",
						   st->arch.obs_dim, st->arch.hidden, st->arch.n_actions,
						   rl_checkpoint_has_optimizer(st->ckpt) ?
						   ", with optimizer state" : "");
}

/*
 * Forward pass: on fixed pseudo-random observations the outputs are finite
 * and the probabilities sum to one.
 */
static void
step_forward(ValidateState *st)
{
	RlWeights	w;
	pg_prng_state rng;
	float	   *obs = palloc(st->arch.obs_dim * sizeof(float));
	float	   *scratch = palloc(RL_FORWARD_SCRATCH(&st->arch) * sizeof(float));
	float		probs[RL_N_ACTIONS];
	float		value;

	rl_checkpoint_weights(st->ckpt, &w);
	pg_prng_seed(&rng, PROBE_SEED);
	for (int i = 0; i < PROBE_OBSERVATIONS; i++)
	{
		double		sum = 0;

		for (int j = 0; j < st->arch.obs_dim; j++)
			obs[j] = (float) (pg_prng_double(&rng) * 6.0 - 3.0);
		obs[st->arch.window] = (float) (i % 3) - 1.0f;	/* the position */
		rl_forward(&w, obs, probs, &value, scratch);
		for (int a = 0; a < RL_N_ACTIONS; a++)
		{
			if (!isfinite(probs[a]) || probs[a] < 0)
				ereport(ERROR,
						(errcode(ERRCODE_DATA_EXCEPTION),
						 errmsg("forward pass gives an invalid probability")));
			sum += probs[a];
		}
		if (!isfinite(value))
			ereport(ERROR,
					(errcode(ERRCODE_DATA_EXCEPTION),
					 errmsg("forward pass gives a non-finite value")));
		if (fabs(sum - 1.0) > 1e-4)
			ereport(ERROR,
					(errcode(ERRCODE_DATA_EXCEPTION),
					 errmsg("forward pass probabilities sum to %g, not 1", sum)));
	}
	st->message = psprintf("%d probe observations: finite outputs, probabilities sum to 1",
						   PROBE_OBSERVATIONS);
}

/*
 * Run one step in a subtransaction so that its error becomes a message
 * (the "ok": false of that check) instead of aborting validation.
 */
static bool
run_step(void (*step) (ValidateState *), ValidateState *st, char **message)
{
	MemoryContext cxt = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;
	bool		ok;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(cxt);
	PG_TRY();
	{
		step(st);
		ReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(cxt);
		CurrentResourceOwner = owner;
		*message = st->message;
		ok = true;
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(cxt);
		CurrentResourceOwner = owner;
		*message = edata->detail ?
			psprintf("%s: %s", edata->message, edata->detail) : edata->message;
		ok = false;
	}
	PG_END_TRY();
	return ok;
}

/*
 * _validate_checkpoint(oid, sha256, window, n_features, hidden, sigma): the
 * validation checks, each recorded as {"ok", "message"}; a step that cannot
 * run because an earlier one failed is recorded as skipped.
 */
Datum
rl_validate_checkpoint(PG_FUNCTION_ARGS)
{
	static const struct
	{
		const char *name;
		void		(*step) (ValidateState *);
	}			steps[] = {
		{"readable", step_readable},
		{"loads", step_loads},
		{"architecture", step_architecture},
		{"forward_pass", step_forward},
	};
	ValidateState st = {0};
	StringInfoData json;
	bool		all_ok = true;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		elog(ERROR, "checkpoint oid and sha256 must not be null");
	st.loid = PG_GETARG_OID(0);
	st.sha256 = text_to_cstring(PG_GETARG_TEXT_PP(1));
	st.known = known_from_args(fcinfo, 2);
	st.arch = st.known.arch;

	initStringInfo(&json);
	appendStringInfoString(&json, "{\"checks\": {");
	for (int i = 0; i < lengthof(steps); i++)
	{
		char	   *message;
		bool		ok;

		if (all_ok)
			ok = run_step(steps[i].step, &st, &message);
		else
		{
			ok = false;
			message = "skipped: an earlier check failed";
		}
		all_ok = all_ok && ok;
		appendStringInfo(&json, "%s\"%s\": {\"ok\": %s, \"message\": ",
						 i > 0 ? ", " : "", steps[i].name, ok ? "true" : "false");
		escape_json(&json, message);
		appendStringInfoChar(&json, '}');
	}
	appendStringInfo(&json, "}, \"ok\": %s}", all_ok ? "true" : "false");

	PG_RETURN_DATUM(DirectFunctionCall1(jsonb_in, CStringGetDatum(json.data)));
}

/*
 * _invalidate_serving(): queue a relcache invalidation of rl_mlops.models.
 * It is sent at commit (and replayed on hot standbys), which is when
 * serving backends must drop their cached weights; never before.
 */
Datum
rl_invalidate_serving(PG_FUNCTION_ARGS)
{
	Oid			nsp = get_namespace_oid("rl_mlops", false);
	Oid			relid = get_relname_relid("models", nsp);

	if (!OidIsValid(relid))
		elog(ERROR, "relation rl_mlops.models does not exist");
	CacheInvalidateRelcacheByRelid(relid);
	PG_RETURN_VOID();
}

/*
 * _caller(): the role the session acts as (after SET ROLE), which SECURITY
 * DEFINER functions cannot see as current_user: the registry records it.
 */
Datum
rl_caller(PG_FUNCTION_ARGS)
{
	PG_RETURN_DATUM(DirectFunctionCall1(namein,
										CStringGetDatum(GetUserNameFromId(GetOuterUserId(), false))));
}
