/*-------------------------------------------------------------------------
 *
 * checkpoint.c
 *	  Reading and writing safetensors checkpoints (ARCHITECTURE.md "The network and its checkpoint").
 *
 * A checkpoint is untrusted input: anyone who can write a large object or
 * call a function with a bytea can hand us one.  The parser therefore
 * bounds everything before it allocates or loops (buffer size, header
 * length, nesting depth, tensor and metadata counts, name lengths), uses
 * PostgreSQL's own JSON lexer, and checks every offset against the data
 * region.  Format problems raise ERRCODE_INVALID_BINARY_REPRESENTATION.
 *
 * src/common/checkpoint.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <ctype.h>
#include <math.h>

#include "common/cryptohash.h"
#include "common/jsonapi.h"
#include "common/sha2.h"
#include "lib/stringinfo.h"
#include "mb/pg_wchar.h"
#include "port/pg_bswap.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/memutils.h"

#include "checkpoint.h"

const char *const rl_checkpoint_param_names[RL_N_PARAMS] = {
	RL_FOR_EACH_PARAM(RL_PARAM_NAME)
};


/* Parameters, their exp_avg, their exp_avg_sq, then optim.step. */
#define N_KNOWN_TENSORS (3 * RL_N_PARAMS + 1)

/* Metadata keys with a meaning; every other key is kept as an extra. */
static const char *const known_meta_keys[] = {
	"format", "window", "n_features", "obs_dim", "hidden", "n_actions",
	"sigma", "version"
};

#define N_KNOWN_META lengthof(known_meta_keys)

/* Longest value we quote back in an error message, in bytes. */
#define MAX_QUOTED 64

/* Which field of a tensor's header entry the JSON parser is inside. */
typedef enum TensorField
{
	TF_NONE,
	TF_DTYPE,
	TF_SHAPE,
	TF_OFFSETS
} TensorField;

/*
 * Element types a checkpoint may store.  PyTorch users save F16, BF16 or
 * F64 as often as F32; everything is widened (or, for F64, rounded) to F32
 * on reading, which is what the network computes in.
 */
typedef enum RlDtype
{
	RL_DTYPE_F32 = 0,
	RL_DTYPE_F16,
	RL_DTYPE_BF16,
	RL_DTYPE_F64
} RlDtype;

static const struct
{
	const char *name;
	int			size;
}			rl_dtypes[] = {
	{"F32", 4}, {"F16", 2}, {"BF16", 2}, {"F64", 8}
};

/* A tensor's header entry as read, before it is validated. */
typedef struct HeaderTensor
{
	char	   *name;
	RlDtype		dtype;
	bool		has_dtype;
	bool		has_shape;
	bool		has_offsets;
	int32		ndim;
	int64		shape[2];
	int32		noffsets;
	uint64		offsets[2];
} HeaderTensor;

/* State of the JSON semantic actions while the header is parsed. */
typedef struct HeaderState
{
	int			depth;			/* objects and arrays currently open */
	bool		in_meta;		/* inside the value of __metadata__ */
	bool		seen_meta;
	HeaderTensor *cur;			/* tensor whose entry is open, if !in_meta */
	TensorField field;			/* field of *cur being read */
	int32		nmeta;
	char	   *meta_keys[RL_CHECKPOINT_MAX_META];
	char	   *meta_values[RL_CHECKPOINT_MAX_META];
	int32		ntensors;
	HeaderTensor tensors[RL_CHECKPOINT_MAX_TENSORS];
} HeaderState;

/* Quote at most MAX_QUOTED bytes of a hostile string in an error message. */
static const char *
clip(const char *s)
{
	int			len = strlen(s);

	if (len <= MAX_QUOTED)
		return s;
	return psprintf("%.*s...", pg_mbcliplen(s, len, MAX_QUOTED), s);
}

/* Every header problem reports the same way; detail says what is wrong. */
static void
pg_attribute_noreturn()
bad_header(const char *detail)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_BINARY_REPRESENTATION),
			 errmsg("invalid checkpoint header"),
			 errdetail_internal("%s", detail)));
}

/* A problem with one tensor's header entry or data names the tensor. */
static void
pg_attribute_noreturn()
bad_tensor(const char *name, const char *detail)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_BINARY_REPRESENTATION),
			 errmsg("invalid tensor \"%s\" in checkpoint", clip(name)),
			 errdetail_internal("%s", detail)));
}

/* A problem with __metadata__. */
static void
pg_attribute_noreturn()
bad_metadata(const char *detail)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_BINARY_REPRESENTATION),
			 errmsg("invalid checkpoint metadata"),
			 errdetail_internal("%s", detail)));
}

/* Name of the tensor field being read, for messages. */
static const char *
field_name(TensorField f)
{
	switch (f)
	{
		case TF_DTYPE:
			return "dtype";
		case TF_SHAPE:
			return "shape";
		case TF_OFFSETS:
			return "data_offsets";
		case TF_NONE:
			break;
	}
	return "?";
}

/* Report a JSON value of the wrong kind at the current position. */
static void
pg_attribute_noreturn()
wrong_kind(HeaderState *st, const char *found)
{
	if (st->depth == 0)
		bad_header(psprintf("The header is %s, not a JSON object.", found));
	if (st->depth == 1)
	{
		if (st->in_meta)
			bad_metadata(psprintf("__metadata__ is %s, not a JSON object.",
								  found));
		bad_tensor(st->cur->name,
				   psprintf("Its header entry is %s, not a JSON object.",
							found));
	}
	if (st->in_meta)
		bad_metadata(psprintf("The value of key \"%s\" is %s, not a string.",
							  st->meta_keys[st->nmeta - 1], found));
	if (st->depth == 2)
		bad_tensor(st->cur->name,
				   psprintf("Its field \"%s\" is %s, which is not allowed there.",
							field_name(st->field), found));
	bad_tensor(st->cur->name,
			   psprintf("Its field \"%s\" contains %s; only non-negative integers are allowed.",
						field_name(st->field), found));
}

/* Semantic action: an object opens; only the top level and entries may. */
static void
hdr_object_start(void *state)
{
	HeaderState *st = (HeaderState *) state;

	if (st->depth >= 2)
		wrong_kind(st, "an object");
	st->depth++;
}

/* Semantic action: an object closes; a tensor entry must be complete. */
static void
hdr_object_end(void *state)
{
	HeaderState *st = (HeaderState *) state;

	st->depth--;
	if (st->depth == 1 && !st->in_meta)
	{
		HeaderTensor *t = st->cur;

		if (!t->has_dtype || !t->has_shape || !t->has_offsets)
			bad_tensor(t->name,
					   psprintf("Its header entry lacks \"%s\".",
								!t->has_dtype ? "dtype" :
								!t->has_shape ? "shape" : "data_offsets"));
	}
}

/* Semantic action: an array opens; only shape and data_offsets are arrays. */
static void
hdr_array_start(void *state)
{
	HeaderState *st = (HeaderState *) state;

	if (st->depth != 2 || st->in_meta || st->field == TF_DTYPE)
		wrong_kind(st, "an array");
	st->depth++;
}

/* Semantic action: an array closes. */
static void
hdr_array_end(void *state)
{
	HeaderState *st = (HeaderState *) state;

	st->depth--;
}

/* Is name among the first n entries of names? */
static bool
name_in(const char *name, char *const *names, int n)
{
	int			i;

	for (i = 0; i < n; i++)
		if (strcmp(names[i], name) == 0)
			return true;
	return false;
}

/* Semantic action: a key; tensor names, metadata keys and fields are unique. */
static void
hdr_field_start(void *state, char *fname, bool isnull pg_attribute_unused())
{
	HeaderState *st = (HeaderState *) state;
	bool	   *seen;
	int			i;

	if (st->depth == 1)
	{
		if (strlen(fname) > RL_CHECKPOINT_MAX_NAME)
			bad_header(psprintf("A tensor name is longer than %d bytes.",
								RL_CHECKPOINT_MAX_NAME));
		if (strcmp(fname, "__metadata__") == 0)
		{
			if (st->seen_meta)
				bad_header("The header has more than one __metadata__ entry.");
			st->seen_meta = true;
			st->in_meta = true;
			return;
		}
		if (fname[0] == '\0')
			bad_header("A tensor name is empty.");
		for (i = 0; i < st->ntensors; i++)
			if (strcmp(st->tensors[i].name, fname) == 0)
				bad_tensor(fname, "The header names it more than once.");
		if (st->ntensors >= RL_CHECKPOINT_MAX_TENSORS)
			bad_header(psprintf("The header has more than %d tensors.",
								RL_CHECKPOINT_MAX_TENSORS));
		st->in_meta = false;
		st->field = TF_NONE;
		st->cur = &st->tensors[st->ntensors++];
		st->cur->name = fname;
		return;
	}

	/* depth 2: hdr_object_start refuses deeper objects */
	if (st->in_meta)
	{
		if (strlen(fname) > RL_CHECKPOINT_MAX_NAME)
			bad_metadata(psprintf("A key is longer than %d bytes.",
								  RL_CHECKPOINT_MAX_NAME));
		if (name_in(fname, st->meta_keys, st->nmeta))
			bad_metadata(psprintf("Key \"%s\" appears more than once.",
								  fname));
		if (st->nmeta >= RL_CHECKPOINT_MAX_META)
			bad_metadata(psprintf("It has more than %d keys.",
								  RL_CHECKPOINT_MAX_META));
		st->meta_keys[st->nmeta] = fname;
		st->meta_values[st->nmeta] = NULL;
		st->nmeta++;
		return;
	}

	if (strcmp(fname, "dtype") == 0)
		st->field = TF_DTYPE;
	else if (strcmp(fname, "shape") == 0)
		st->field = TF_SHAPE;
	else if (strcmp(fname, "data_offsets") == 0)
		st->field = TF_OFFSETS;
	else
		bad_tensor(st->cur->name,
				   psprintf("Its header entry has the unknown field \"%s\".",
							clip(fname)));
	seen = st->field == TF_DTYPE ? &st->cur->has_dtype :
		st->field == TF_SHAPE ? &st->cur->has_shape : &st->cur->has_offsets;
	if (*seen)
		bad_tensor(st->cur->name,
				   psprintf("Its field \"%s\" appears more than once.", fname));
	*seen = true;
}

/* Parse a JSON number token that must be an integer in [0, max]. */
static uint64
parse_count(HeaderState *st, const char *token, uint64 max)
{
	uint64		v = 0;
	const char *p;

	if (token[0] == '-')
		bad_tensor(st->cur->name,
				   psprintf("Its field \"%s\" contains the negative number %s.",
							field_name(st->field), clip(token)));
	for (p = token; *p; p++)
	{
		if (*p < '0' || *p > '9')
			bad_tensor(st->cur->name,
					   psprintf("Its field \"%s\" contains %s, which is not an integer.",
								field_name(st->field), clip(token)));
		if (v > (max - (*p - '0')) / 10)
			bad_tensor(st->cur->name,
					   psprintf("Its field \"%s\" contains %s, which is larger than " UINT64_FORMAT ".",
								field_name(st->field), clip(token), max));
		v = v * 10 + (*p - '0');
	}
	return v;
}

/* Semantic action: a scalar; strings in metadata, integers in arrays. */
static void
hdr_scalar(void *state, char *token, JsonTokenType tokentype)
{
	HeaderState *st = (HeaderState *) state;
	HeaderTensor *t = st->cur;
	const char *kind;

	switch (tokentype)
	{
		case JSON_TOKEN_STRING:
			kind = "a string";
			break;
		case JSON_TOKEN_NUMBER:
			kind = "a number";
			break;
		case JSON_TOKEN_NULL:
			kind = "null";
			break;
		default:
			kind = "a boolean";
			break;
	}

	if (st->depth == 2 && st->in_meta && tokentype == JSON_TOKEN_STRING)
	{
		st->meta_values[st->nmeta - 1] = token;
		return;
	}
	if (st->depth == 2 && !st->in_meta && st->field == TF_DTYPE &&
		tokentype == JSON_TOKEN_STRING)
	{
		for (int i = 0; i < lengthof(rl_dtypes); i++)
			if (strcmp(token, rl_dtypes[i].name) == 0)
			{
				t->dtype = (RlDtype) i;
				return;
			}
		bad_tensor(t->name,
				   psprintf("Its dtype is \"%s\"; only F32, F16, BF16 and F64 are supported.",
							clip(token)));
	}
	if (st->depth == 3 && tokentype == JSON_TOKEN_NUMBER)
	{
		if (st->field == TF_SHAPE)
		{
			if (t->ndim >= 2)
				bad_tensor(t->name, "Its shape has more than 2 dimensions.");
			t->shape[t->ndim++] = (int64) parse_count(st, token, PG_INT32_MAX);
		}
		else
		{
			if (t->noffsets >= 2)
				bad_tensor(t->name, "Its data_offsets has more than 2 entries.");
			t->offsets[t->noffsets++] = parse_count(st, token, PG_INT64_MAX);
		}
		return;
	}
	wrong_kind(st, kind);
}

/* Run PostgreSQL's JSON parser over the header with the actions above. */
static void
parse_header(const char *hdr, uint64 hlen, HeaderState *st)
{
	char	   *json;
	int			jlen;
	JsonLexContext *lex;
	JsonSemAction sem;
	JsonParseErrorType rc;

	if (!pg_verify_mbstr(PG_UTF8, hdr, (int) hlen, true))
		bad_header("The header is not valid UTF-8.");
	/* may raise "character has no equivalent" in a non-UTF-8 database */
	json = pg_any_to_server(hdr, (int) hlen, PG_UTF8);
	/* a converted copy is NUL-terminated; the original is not */
	jlen = (json == hdr) ? (int) hlen : (int) strlen(json);

	memset(&sem, 0, sizeof(sem));
	sem.semstate = st;
	sem.object_start = hdr_object_start;
	sem.object_end = hdr_object_end;
	sem.array_start = hdr_array_start;
	sem.array_end = hdr_array_end;
	sem.object_field_start = hdr_field_start;
	sem.scalar = hdr_scalar;

	lex = makeJsonLexContextCstringLen(json, jlen,
									   GetDatabaseEncoding(), true);
	rc = pg_parse_json(lex, &sem);
	if (rc != JSON_SUCCESS)
		bad_header(psprintf("The header is not valid JSON: %s",
							clip(json_errdetail(rc, lex))));
}

/* Value of a metadata key, or NULL. */
static const char *
meta_get(const HeaderState *st, const char *key)
{
	int			i;

	for (i = 0; i < st->nmeta; i++)
		if (strcmp(st->meta_keys[i], key) == 0)
			return st->meta_values[i];
	return NULL;
}

/* Value of a metadata key that must be present. */
static const char *
meta_require(const HeaderState *st, const char *key)
{
	const char *v = meta_get(st, key);

	if (v == NULL)
		bad_metadata(psprintf("Key \"%s\" is missing.", key));
	return v;
}

/* An architecture field: plain decimal digits, in [min, RL_CHECKPOINT_MAX_DIM]. */
static int32
meta_int(const HeaderState *st, const char *key, int32 min)
{
	const char *v = meta_require(st, key);
	const char *p;
	int32		n = 0;

	/* at most 9 digits, so n cannot overflow */
	for (p = v; *p >= '0' && *p <= '9' && p - v < 9; p++)
		n = n * 10 + (*p - '0');
	if (p == v || *p != '\0' || n < min || n > RL_CHECKPOINT_MAX_DIM)
		bad_metadata(psprintf("Key \"%s\" is \"%s\", not an integer between %d and %d.",
							  key, clip(v), min, RL_CHECKPOINT_MAX_DIM));
	return n;
}

/* Why an architecture is out of range or inconsistent, or NULL if it is fine. */
static char *
arch_fields_problem(const RlArch *a)
{
	const char *bad = NULL;

	if (a->window < 1 || a->window > RL_CHECKPOINT_MAX_DIM)
		bad = "window";
	else if (a->n_features < 0 || a->n_features > RL_CHECKPOINT_MAX_DIM)
		bad = "n_features";
	else if (a->hidden < 1 || a->hidden > RL_CHECKPOINT_MAX_DIM)
		bad = "hidden";
	else if (a->n_actions < 1 || a->n_actions > RL_CHECKPOINT_MAX_DIM)
		bad = "n_actions";
	else if (a->obs_dim != rl_arch_make(a->window, a->n_features, a->hidden).obs_dim)
		return psprintf("obs_dim is %d but window + 1 + n_features is %d.",
						a->obs_dim, rl_arch_make(a->window, a->n_features, a->hidden).obs_dim);
	if (bad != NULL)
		return psprintf("Architecture field \"%s\" is out of range.", bad);
	return NULL;
}

/* Order tensors by where their data begins. */
static int
cmp_by_begin(const void *a, const void *b)
{
	const HeaderTensor *ta = *(const HeaderTensor *const *) a;
	const HeaderTensor *tb = *(const HeaderTensor *const *) b;

	if (ta->offsets[0] != tb->offsets[0])
		return ta->offsets[0] < tb->offsets[0] ? -1 : 1;
	return 0;
}

/* An IEEE 754 half-precision value as a float (exact: every F16 is an F32). */
static float
half_to_float(uint16 h)
{
	uint32		sign = (uint32) (h & 0x8000) << 16;
	uint32		exponent = (h >> 10) & 0x1f;
	uint32		mantissa = h & 0x3ff;
	uint32		bits;
	float		f;

	if (exponent == 0)
	{
		/* zero or subnormal: mantissa * 2^-24 */
		f = ldexpf((float) mantissa, -24);
		return sign ? -f : f;
	}
	if (exponent == 31)
		bits = sign | 0x7f800000 | (mantissa << 13);	/* inf or NaN */
	else
		bits = sign | ((exponent + 112) << 23) | (mantissa << 13);
	memcpy(&f, &bits, sizeof(f));
	return f;
}

/*
 * Copy n little-endian elements of a dtype into host-order floats: F32 as
 * is, F16 and BF16 widened exactly, F64 rounded to nearest.
 */
static void
read_elements(float *dst, const char *src, int64 n, RlDtype dtype)
{
	const unsigned char *u = (const unsigned char *) src;
	int64		i;

	for (i = 0; i < n; i++)
	{
		switch (dtype)
		{
			case RL_DTYPE_F32:
				{
					const unsigned char *e = u + 4 * i;
					uint32		bits = e[0] | (e[1] << 8) | (e[2] << 16) |
						((uint32) e[3] << 24);

					memcpy(&dst[i], &bits, 4);
					break;
				}
			case RL_DTYPE_F16:
				dst[i] = half_to_float((uint16) (u[2 * i] | (u[2 * i + 1] << 8)));
				break;
			case RL_DTYPE_BF16:
				{
					uint32		bits = (uint32) (u[2 * i] | (u[2 * i + 1] << 8)) << 16;

					memcpy(&dst[i], &bits, 4);
					break;
				}
			case RL_DTYPE_F64:
				{
					uint64		bits = 0;
					double		d;

					for (int b = 7; b >= 0; b--)
						bits = (bits << 8) | u[8 * i + b];
					memcpy(&d, &bits, 8);
					dst[i] = (float) d;
					break;
				}
		}
	}
}

/* Copy n host-order floats out as little-endian float32. */
static void
copy_to_le(char *dst, const float *src, int64 n)
{
#ifdef WORDS_BIGENDIAN
	int64		i;

	for (i = 0; i < n; i++)
	{
		uint32		u;

		memcpy(&u, &src[i], 4);
		u = pg_bswap32(u);
		memcpy(dst + 4 * i, &u, 4);
	}
#else
	memcpy(dst, src, n * sizeof(float));
#endif
}

/* Remember that tensors of dtype were widened to F32 ("F16", "F16, F64"). */
static void
note_widened(RlCheckpoint *ckpt, const char *dtype)
{
	if (ckpt->widened_from == NULL)
		ckpt->widened_from = pstrdup(dtype);
	else if (strstr(ckpt->widened_from, dtype) == NULL)
		ckpt->widened_from = psprintf("%s, %s", ckpt->widened_from, dtype);
}

/*
 * Read __metadata__ into ckpt.  Our own files (format "rl_mlops/1") carry
 * the architecture and sigma.  A state_dict saved from PyTorch the usual
 * way (format "pt", or no metadata at all) carries neither: the
 * architecture is then the agent's (rl_checkpoint_check_arch compares the
 * tensor shapes with it) and sigma must come from the registry.
 */
static void
read_metadata(const HeaderState *st, const RlCheckpointKnown *known,
			  RlCheckpoint *ckpt)
{
	const char *v = st->seen_meta ? meta_get(st, "format") : NULL;
	char	   *end;

	if (v == NULL || strcmp(v, "pt") == 0)
	{
		ckpt->format = pstrdup(v ? v : "none");
		if (known == NULL || !isfinite(known->sigma) || known->sigma <= 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("checkpoint has no rl_mlops metadata, so sigma must be given"),
					 errdetail("%s  sigma, the standard deviation of the one-bar log returns the model was trained on, scales its observations.",
							   v ? "Its __metadata__ says format \"pt\", as safetensors.torch.save_file writes it." :
							   !st->seen_meta ? "It has no __metadata__." :
							   "Its __metadata__ has no \"format\" key."),
					 errhint("Pass it: SELECT rl_mlops.import_model('agent', checkpoint, sigma => 0.0012);")));
		ckpt->arch = known->arch;
		ckpt->sigma = known->sigma;
	}
	else if (strcmp(v, RL_CHECKPOINT_FORMAT) == 0)
	{
		ckpt->format = pstrdup(v);
		ckpt->arch.window = meta_int(st, "window", 1);
		ckpt->arch.n_features = meta_int(st, "n_features", 0);
		ckpt->arch.obs_dim = meta_int(st, "obs_dim", 1);
		ckpt->arch.hidden = meta_int(st, "hidden", 1);
		ckpt->arch.n_actions = meta_int(st, "n_actions", 1);
		if ((v = arch_fields_problem(&ckpt->arch)) != NULL)
			bad_metadata(v);

		v = meta_require(st, "sigma");
		ckpt->sigma = strtod(v, &end);
		if (v[0] == '\0' || isspace((unsigned char) v[0]) || *end != '\0' ||
			!isfinite(ckpt->sigma) || ckpt->sigma <= 0)
			bad_metadata(psprintf("Key \"sigma\" is \"%s\", not a positive finite number.",
								  clip(v)));
		/* a sigma the caller gives must be the one the file records */
		if (known != NULL && isfinite(known->sigma) &&
			fabs(known->sigma - ckpt->sigma) > 1e-9 * ckpt->sigma)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("sigma %.17g does not match the checkpoint's", known->sigma),
					 errdetail("The checkpoint's metadata records sigma %.17g.", ckpt->sigma),
					 errhint("Leave sigma out: a checkpoint with rl_mlops metadata carries its own.")));
		v = meta_get(st, "version");
		ckpt->version = v ? pstrdup(v) : NULL;
	}
	else
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_BINARY_REPRESENTATION),
				 errmsg("invalid checkpoint metadata"),
				 errdetail("The format is \"%s\"; this version of rl_mlops reads \"%s\", \"pt\" or none.",
						   clip(v), RL_CHECKPOINT_FORMAT)));

	/* keys with no meaning here are kept (and written back) as extras */
	ckpt->extra = palloc0(sizeof(RlMetaItem) * Max(st->nmeta, 1));
	for (int i = 0; i < st->nmeta; i++)
	{
		if (name_in(st->meta_keys[i], (char *const *) known_meta_keys,
					N_KNOWN_META))
			continue;
		ckpt->extra[ckpt->nextra].key = st->meta_keys[i];
		ckpt->extra[ckpt->nextra].value = st->meta_values[i];
		ckpt->nextra++;
	}
}

/*
 * Parse untrusted checkpoint bytes.  Checks the container completely
 * (bounds, JSON, dtypes, shapes, offsets, coverage, finiteness) but not the
 * architecture: see rl_checkpoint_check_arch.  known (may be NULL) is what
 * the registry knows of the model, for a plain PyTorch file that lacks our
 * metadata.
 */
RlCheckpoint *
rl_checkpoint_parse(const char *buf, Size len, Size max_size,
					const RlCheckpointKnown *known)
{
	uint64		hlen;
	uint64		data_len;
	const char *data;
	HeaderState *st;
	HeaderTensor **order;
	RlCheckpoint *ckpt;
	uint64		pos;
	int			i;

	if (len > max_size)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_BINARY_REPRESENTATION),
				 errmsg("checkpoint is too large"),
				 errdetail("The checkpoint has %zu bytes; the limit is %zu.",
						   len, max_size)));
	if (len < 8)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_BINARY_REPRESENTATION),
				 errmsg("checkpoint is too short"),
				 errdetail("A safetensors file has at least 8 bytes; this one has %zu.",
						   len)));

	/* unsigned throughout: a claimed length of 2^63 or 2^64-1 cannot wrap */
	hlen = 0;
	for (i = 7; i >= 0; i--)
		hlen = (hlen << 8) | (unsigned char) buf[i];
	if (hlen > (uint64) (len - 8))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_BINARY_REPRESENTATION),
				 errmsg("invalid checkpoint header length"),
				 errdetail("The header claims " UINT64_FORMAT " bytes but only %zu bytes follow the length.",
						   hlen, len - 8)));
	if (hlen > RL_CHECKPOINT_MAX_HEADER)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_BINARY_REPRESENTATION),
				 errmsg("invalid checkpoint header length"),
				 errdetail("The header has " UINT64_FORMAT " bytes; the limit is %d.",
						   hlen, RL_CHECKPOINT_MAX_HEADER)));
	data = buf + 8 + hlen;
	data_len = (uint64) (len - 8) - hlen;

	st = palloc0(sizeof(HeaderState));
	parse_header(buf + 8, hlen, st);

	ckpt = palloc0(sizeof(RlCheckpoint));
	read_metadata(st, known, ckpt);

	/* each tensor on its own */
	for (i = 0; i < st->ntensors; i++)
	{
		HeaderTensor *t = &st->tensors[i];
		uint64		numel;

		if (t->ndim != 1 && t->ndim != 2)
			bad_tensor(t->name,
					   psprintf("Its shape has %d dimensions; only 1 or 2 are supported.",
								t->ndim));
		if (t->shape[0] == 0 || (t->ndim == 2 && t->shape[1] == 0))
			bad_tensor(t->name, "Its shape has a dimension of size 0.");
		if (t->ndim == 1)
			t->shape[1] = 1;
		/* both dims are at most 2^31 - 1: no overflow in 64 bits */
		numel = (uint64) t->shape[0] * (uint64) t->shape[1];
		if (t->noffsets != 2)
			bad_tensor(t->name, "Its data_offsets is not a pair [begin, end].");
		if (t->offsets[0] > t->offsets[1])
			bad_tensor(t->name,
					   psprintf("Its data_offsets [" UINT64_FORMAT ", " UINT64_FORMAT "] end before they begin.",
								t->offsets[0], t->offsets[1]));
		if (t->offsets[1] > data_len)
			bad_tensor(t->name,
					   psprintf("Its data_offsets end at " UINT64_FORMAT ", beyond the " UINT64_FORMAT " data bytes.",
								t->offsets[1], data_len));
		if (t->offsets[1] - t->offsets[0] != numel * rl_dtypes[t->dtype].size)
			bad_tensor(t->name,
					   psprintf("Its data_offsets span " UINT64_FORMAT " bytes but its shape needs " UINT64_FORMAT " of %s.",
								t->offsets[1] - t->offsets[0],
								numel * rl_dtypes[t->dtype].size,
								rl_dtypes[t->dtype].name));
	}

	/* together the tensors must tile the data region exactly */
	order = palloc(sizeof(HeaderTensor *) * Max(st->ntensors, 1));
	for (i = 0; i < st->ntensors; i++)
		order[i] = &st->tensors[i];
	qsort(order, st->ntensors, sizeof(HeaderTensor *), cmp_by_begin);
	pos = 0;
	for (i = 0; i < st->ntensors; i++)
	{
		if (order[i]->offsets[0] < pos)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_BINARY_REPRESENTATION),
					 errmsg("invalid checkpoint data layout"),
					 errdetail("The data of tensors \"%s\" and \"%s\" overlap.",
							   order[i - 1]->name, order[i]->name)));
		if (order[i]->offsets[0] > pos)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_BINARY_REPRESENTATION),
					 errmsg("invalid checkpoint data layout"),
					 errdetail("Data bytes " UINT64_FORMAT " to " UINT64_FORMAT " belong to no tensor.",
							   pos, order[i]->offsets[0])));
		pos = order[i]->offsets[1];
	}
	if (pos != data_len)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_BINARY_REPRESENTATION),
				 errmsg("invalid checkpoint data layout"),
				 errdetail("The last " UINT64_FORMAT " data bytes belong to no tensor.",
						   data_len - pos)));

	/* copy out, refusing NaN and infinities */
	ckpt->ntensors = st->ntensors;
	ckpt->tensors = palloc0(sizeof(RlTensor) * Max(st->ntensors, 1));
	for (i = 0; i < st->ntensors; i++)
	{
		HeaderTensor *h = &st->tensors[i];
		RlTensor   *t = &ckpt->tensors[i];
		int64		numel;
		int64		j;

		t->name = h->name;
		t->ndim = h->ndim;
		t->shape[0] = h->shape[0];
		t->shape[1] = h->shape[1];
		numel = rl_tensor_numel(t);
		t->data = palloc(numel * sizeof(float));
		read_elements(t->data, data + h->offsets[0], numel, h->dtype);
		if (h->dtype != RL_DTYPE_F32)
			note_widened(ckpt, rl_dtypes[h->dtype].name);
		for (j = 0; j < numel; j++)
			if (!isfinite(t->data[j]))
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_BINARY_REPRESENTATION),
						 errmsg("non-finite value in checkpoint tensor \"%s\"",
								t->name),
						 errdetail("Element " INT64_FORMAT " is %s.", j,
								   isnan(t->data[j]) ? "NaN" : "infinite")));
	}

	pfree(order);
	pfree(st);
	return ckpt;
}

/* Append "key":"value" (JSON-escaped) to a header being built. */
static void
append_pair(StringInfo buf, const char *key, const char *value, bool first)
{
	if (!first)
		appendStringInfoChar(buf, ',');
	escape_json(buf, key);
	appendStringInfoChar(buf, ':');
	escape_json(buf, value);
}

/* Refuse, at write time, a tensor the parser would refuse at read time. */
static void
check_writable_tensor(const RlCheckpoint *ckpt, int i)
{
	const RlTensor *t = &ckpt->tensors[i];
	int			j;

	if (t->name == NULL || t->name[0] == '\0' ||
		strlen(t->name) > RL_CHECKPOINT_MAX_NAME ||
		strcmp(t->name, "__metadata__") == 0)
		elog(ERROR, "cannot write checkpoint tensor %d: bad name", i);
	for (j = 0; j < i; j++)
		if (strcmp(ckpt->tensors[j].name, t->name) == 0)
			elog(ERROR, "cannot write checkpoint: tensor \"%s\" appears twice",
				 t->name);
	if ((t->ndim != 1 && t->ndim != 2) ||
		t->shape[0] < 1 || t->shape[0] > PG_INT32_MAX ||
		(t->ndim == 2 && (t->shape[1] < 1 || t->shape[1] > PG_INT32_MAX)))
		elog(ERROR, "cannot write checkpoint: tensor \"%s\" has a bad shape",
			 t->name);
	if (t->data == NULL)
		elog(ERROR, "cannot write checkpoint: tensor \"%s\" has no data",
			 t->name);
}

/*
 * Write a checkpoint as safetensors bytes.  Deterministic (same struct, same
 * bytes): metadata keys in a fixed order then the extras in theirs, tensors
 * in array order and packed back to back, header padded with spaces to a
 * multiple of 8 so the data is aligned for memory-mapping readers.
 */
bytea *
rl_checkpoint_serialize(const RlCheckpoint *ckpt)
{
	StringInfoData hdr;
	char	   *utf8;
	Size		hlen;
	Size		padded;
	uint64		data_len = 0;
	Size		total;
	bytea	   *result;
	char	   *problem;
	char	   *p;
	int			i;

	if (ckpt->ntensors < 0 || ckpt->ntensors > RL_CHECKPOINT_MAX_TENSORS)
		elog(ERROR, "cannot write checkpoint with %d tensors", ckpt->ntensors);
	if (ckpt->nextra < 0 || ckpt->nextra > RL_CHECKPOINT_MAX_META - (int) N_KNOWN_META)
		elog(ERROR, "cannot write checkpoint with %d extra metadata keys",
			 ckpt->nextra);
	if ((problem = arch_fields_problem(&ckpt->arch)) != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_EXCEPTION),
				 errmsg("cannot write checkpoint with an invalid architecture"),
				 errdetail_internal("%s", problem)));
	if (!isfinite(ckpt->sigma) || ckpt->sigma <= 0)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_EXCEPTION),
				 errmsg("cannot write checkpoint with return normalisation %g",
						ckpt->sigma),
				 errdetail("sigma must be a positive finite number.")));

	initStringInfo(&hdr);
	appendStringInfoString(&hdr, "{\"__metadata__\":{");
	append_pair(&hdr, "format", RL_CHECKPOINT_FORMAT, true);
	append_pair(&hdr, "window", psprintf("%d", ckpt->arch.window), false);
	append_pair(&hdr, "n_features", psprintf("%d", ckpt->arch.n_features),
				false);
	append_pair(&hdr, "obs_dim", psprintf("%d", ckpt->arch.obs_dim), false);
	append_pair(&hdr, "hidden", psprintf("%d", ckpt->arch.hidden), false);
	append_pair(&hdr, "n_actions", psprintf("%d", ckpt->arch.n_actions),
				false);
	append_pair(&hdr, "sigma", psprintf("%.17g", ckpt->sigma), false);
	if (ckpt->version != NULL)
		append_pair(&hdr, "version", ckpt->version, false);
	for (i = 0; i < ckpt->nextra; i++)
	{
		const RlMetaItem *m = &ckpt->extra[i];
		int			j;

		if (m->key == NULL || m->value == NULL ||
			strlen(m->key) > RL_CHECKPOINT_MAX_NAME ||
			name_in(m->key, (char *const *) known_meta_keys, N_KNOWN_META))
			elog(ERROR, "cannot write checkpoint: bad extra metadata key");
		for (j = 0; j < i; j++)
			if (strcmp(ckpt->extra[j].key, m->key) == 0)
				elog(ERROR, "cannot write checkpoint: metadata key \"%s\" appears twice",
					 m->key);
		append_pair(&hdr, m->key, m->value, false);
	}
	appendStringInfoChar(&hdr, '}');

	for (i = 0; i < ckpt->ntensors; i++)
	{
		const RlTensor *t = &ckpt->tensors[i];
		uint64		nbytes;

		check_writable_tensor(ckpt, i);
		nbytes = (uint64) rl_tensor_numel(t) * sizeof(float);
		if (nbytes > MaxAllocSize)
			elog(ERROR, "cannot write checkpoint: tensor \"%s\" is too large",
				 t->name);
		appendStringInfoChar(&hdr, ',');
		escape_json(&hdr, t->name);
		appendStringInfoString(&hdr, ":{\"dtype\":\"F32\",\"shape\":[");
		if (t->ndim == 2)
			appendStringInfo(&hdr, INT64_FORMAT "," INT64_FORMAT,
							 t->shape[0], t->shape[1]);
		else
			appendStringInfo(&hdr, INT64_FORMAT, t->shape[0]);
		appendStringInfo(&hdr, "],\"data_offsets\":[" UINT64_FORMAT "," UINT64_FORMAT "]}",
						 data_len, data_len + nbytes);
		data_len += nbytes;
		if (data_len > MaxAllocSize)
			ereport(ERROR,
					(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
					 errmsg("checkpoint would exceed 1 GB")));
	}
	appendStringInfoChar(&hdr, '}');

	/* the header is UTF-8 whatever the database encoding */
	utf8 = pg_server_to_any(hdr.data, hdr.len, PG_UTF8);
	hlen = strlen(utf8);
	padded = TYPEALIGN(8, hlen);
	total = 8 + padded + data_len;
	if (total > MaxAllocSize - VARHDRSZ)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("checkpoint would exceed 1 GB")));

	result = palloc(VARHDRSZ + total);
	SET_VARSIZE(result, VARHDRSZ + total);
	p = VARDATA(result);
	for (i = 0; i < 8; i++)
		p[i] = (char) (((uint64) padded >> (8 * i)) & 0xff);
	p += 8;
	memcpy(p, utf8, hlen);
	memset(p + hlen, ' ', padded - hlen);
	p += padded;
	for (i = 0; i < ckpt->ntensors; i++)
	{
		const RlTensor *t = &ckpt->tensors[i];
		int64		numel = rl_tensor_numel(t);

		copy_to_le(p, t->data, numel);
		p += numel * sizeof(float);
	}
	return result;
}

/* Index of a tensor name among the N_KNOWN_TENSORS, or -1. */
static int
known_tensor_index(const char *name)
{
	int			base = 0;
	const char *param = name;
	int			i;

	if (strcmp(name, RL_OPTIM_STEP) == 0)
		return 3 * RL_N_PARAMS;
	if (strncmp(name, RL_OPTIM_EXP_AVG_SQ, strlen(RL_OPTIM_EXP_AVG_SQ)) == 0)
	{
		base = 2 * RL_N_PARAMS;
		param = name + strlen(RL_OPTIM_EXP_AVG_SQ);
	}
	else if (strncmp(name, RL_OPTIM_EXP_AVG, strlen(RL_OPTIM_EXP_AVG)) == 0)
	{
		base = RL_N_PARAMS;
		param = name + strlen(RL_OPTIM_EXP_AVG);
	}

	for (i = 0; i < RL_N_PARAMS; i++)
		if (strcmp(param, rl_checkpoint_param_names[i]) == 0)
			return base + i;
	return -1;
}

/* Name of known tensor idx, for messages. */
static char *
known_tensor_name(int idx)
{
	if (idx == 3 * RL_N_PARAMS)
		return pstrdup(RL_OPTIM_STEP);
	if (idx >= 2 * RL_N_PARAMS)
		return psprintf("%s%s", RL_OPTIM_EXP_AVG_SQ,
						rl_checkpoint_param_names[idx - 2 * RL_N_PARAMS]);
	if (idx >= RL_N_PARAMS)
		return psprintf("%s%s", RL_OPTIM_EXP_AVG,
						rl_checkpoint_param_names[idx - RL_N_PARAMS]);
	return pstrdup(rl_checkpoint_param_names[idx]);
}

/* Shape the architecture gives known tensor idx (Adam state = its param's). */
static void
known_tensor_shape(const RlArch *a, int idx, int32 *ndim, int64 shape[2])
{
	int			p = idx % RL_N_PARAMS;
	int			layer = p / 2;	/* trunk.0, trunk.2, actor, critic */
	bool		is_weight = (p % 2 == 0);

	if (idx == 3 * RL_N_PARAMS)
	{
		*ndim = 1;
		shape[0] = 1;
		shape[1] = 1;
		return;
	}
	*ndim = is_weight ? 2 : 1;
	shape[0] = layer == 2 ? a->n_actions : layer == 3 ? 1 : a->hidden;
	shape[1] = !is_weight ? 1 : layer == 0 ? a->obs_dim : a->hidden;
}

/* "[3, 64]" or "[64]", for messages. */
static char *
shape_str(int32 ndim, const int64 shape[2])
{
	if (ndim == 2)
		return psprintf("[" INT64_FORMAT ", " INT64_FORMAT "]",
						shape[0], shape[1]);
	return psprintf("[" INT64_FORMAT "]", shape[0]);
}

/* Compare one architecture field, naming it if it differs. */
static void
check_arch_field(const char *field, int32 found, int32 expected)
{
	if (found != expected)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_EXCEPTION),
				 errmsg("checkpoint architecture does not match the agent"),
				 errdetail("The agent expects %s = %d but the checkpoint has %d.",
						   field, expected, found)));
}

/*
 * The "structure matches" validation step: the metadata architecture is the
 * agent's, the 8 parameters are there with their shapes, Adam state is
 * complete or absent, nothing else is present.
 *
 * Errors use ERRCODE_DATA_EXCEPTION: the file itself is well formed (so
 * not ERRCODE_INVALID_BINARY_REPRESENTATION), it just does not fit the
 * agent's row in rl_mlops.agents; no narrower SQLSTATE says "incompatible
 * model", and class 22 lets callers treat every checkpoint problem as a
 * data exception.
 */
void
rl_checkpoint_check_arch(const RlCheckpoint *ckpt, const RlArch *expected,
						 bool require_optimizer)
{
	bool		found[N_KNOWN_TENSORS] = {0};
	int			nopt = 0;
	int			i;

	check_arch_field("window", ckpt->arch.window, expected->window);
	check_arch_field("n_features", ckpt->arch.n_features,
					 expected->n_features);
	check_arch_field("obs_dim", ckpt->arch.obs_dim, expected->obs_dim);
	check_arch_field("hidden", ckpt->arch.hidden, expected->hidden);
	check_arch_field("n_actions", ckpt->arch.n_actions, expected->n_actions);

	for (i = 0; i < ckpt->ntensors; i++)
	{
		const RlTensor *t = &ckpt->tensors[i];
		int			idx = known_tensor_index(t->name);
		int32		ndim;
		int64		shape[2];

		if (idx < 0)
			ereport(ERROR,
					(errcode(ERRCODE_DATA_EXCEPTION),
					 errmsg("unexpected tensor \"%s\" in checkpoint", t->name),
					 errdetail("A checkpoint holds the 8 parameters of TradingActorCritic and, optionally, their Adam state.")));
		if (found[idx])
			ereport(ERROR,
					(errcode(ERRCODE_DATA_EXCEPTION),
					 errmsg("duplicate tensor \"%s\" in checkpoint", t->name)));
		found[idx] = true;
		if (idx >= RL_N_PARAMS)
			nopt++;

		known_tensor_shape(expected, idx, &ndim, shape);
		if (t->ndim != ndim || t->shape[0] != shape[0] ||
			(ndim == 2 && t->shape[1] != shape[1]))
			ereport(ERROR,
					(errcode(ERRCODE_DATA_EXCEPTION),
					 errmsg("tensor \"%s\" has the wrong shape", t->name),
					 errdetail("The checkpoint has %s; the agent's architecture needs %s.",
							   shape_str(t->ndim, t->shape),
							   shape_str(ndim, shape))));
	}

	for (i = 0; i < RL_N_PARAMS; i++)
		if (!found[i])
			ereport(ERROR,
					(errcode(ERRCODE_DATA_EXCEPTION),
					 errmsg("checkpoint is missing tensor \"%s\"",
							rl_checkpoint_param_names[i])));

	if (nopt > 0 && nopt < N_KNOWN_TENSORS - RL_N_PARAMS)
	{
		for (i = RL_N_PARAMS; found[i]; i++)
			;
		ereport(ERROR,
				(errcode(ERRCODE_DATA_EXCEPTION),
				 errmsg("checkpoint has incomplete optimizer state"),
				 errdetail("Tensor \"%s\" is missing; optimizer state must be complete or absent.",
						   known_tensor_name(i))));
	}
	if (nopt == 0 && require_optimizer)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_EXCEPTION),
				 errmsg("checkpoint has no optimizer state"),
				 errdetail("Incremental training continues the Adam state (optim.* tensors) of the model it starts from.")));
}

/* Whether a checkpoint carries optimizer state (after check_arch: all of it). */
bool
rl_checkpoint_has_optimizer(const RlCheckpoint *ckpt)
{
	return rl_checkpoint_tensor(ckpt, RL_OPTIM_STEP) != NULL;
}

/* Find a tensor by name; at most 64 of them, so a linear scan will do. */
const RlTensor *
rl_checkpoint_tensor(const RlCheckpoint *ckpt, const char *name)
{
	int			i;

	for (i = 0; i < ckpt->ntensors; i++)
		if (strcmp(ckpt->tensors[i].name, name) == 0)
			return &ckpt->tensors[i];
	return NULL;
}

/* Data of a parameter that rl_checkpoint_check_arch has vouched for. */
static const float *
param_data(const RlCheckpoint *ckpt, int i)
{
	const RlTensor *t = rl_checkpoint_tensor(ckpt, rl_checkpoint_param_names[i]);

	if (t == NULL)
		elog(ERROR, "checkpoint tensor \"%s\" not found",
			 rl_checkpoint_param_names[i]);
	return t->data;
}

/* Point the C forward pass at a checked checkpoint's weights (no copy). */
void
rl_checkpoint_weights(const RlCheckpoint *ckpt, RlWeights *w)
{
	w->arch = ckpt->arch;
	w->trunk0_w = param_data(ckpt, 0);
	w->trunk0_b = param_data(ckpt, 1);
	w->trunk2_w = param_data(ckpt, 2);
	w->trunk2_b = param_data(ckpt, 3);
	w->actor_w = param_data(ckpt, 4);
	w->actor_b = param_data(ckpt, 5);
	w->critic_w = param_data(ckpt, 6);
	w->critic_b = param_data(ckpt, 7);
}

/* The models.sha256 column and the "file is readable" check need this. */
void
rl_sha256_hex(const char *buf, Size len, char out[65])
{
	pg_cryptohash_ctx *ctx;
	uint8		digest[PG_SHA256_DIGEST_LENGTH];

	ctx = pg_cryptohash_create(PG_SHA256);
	if (ctx == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory")));
	if (pg_cryptohash_init(ctx) < 0 ||
		pg_cryptohash_update(ctx, (const uint8 *) buf, len) < 0 ||
		pg_cryptohash_final(ctx, digest, sizeof(digest)) < 0)
	{
		char	   *msg = pstrdup(pg_cryptohash_error(ctx));

		pg_cryptohash_free(ctx);
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not compute SHA-256 of checkpoint: %s", msg)));
	}
	pg_cryptohash_free(ctx);
	hex_encode((const char *) digest, sizeof(digest), out);
	out[64] = '\0';
}
