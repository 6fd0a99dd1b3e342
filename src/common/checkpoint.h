/*-------------------------------------------------------------------------
 *
 * checkpoint.h
 *	  The safetensors checkpoint format (ARCHITECTURE.md "The network and its checkpoint"): a strict parser
 *	  for untrusted bytes, a deterministic writer, the architecture check
 *	  and the sha256 of a checkpoint.
 *
 * Layout: 8-byte little-endian header length N, N bytes of UTF-8 JSON
 * header, then the raw little-endian float32 data of every tensor.  The
 * header maps tensor names to {"dtype": "F32", "shape": [...],
 * "data_offsets": [begin, end]} and holds "__metadata__", a map of strings:
 * format, window, n_features, obs_dim, hidden, n_actions, sigma and
 * (optionally) version, plus any extra keys.  The reader also takes what
 * PyTorch users save: F16, BF16 and F64 tensors (widened to F32), and
 * metadata {"format": "pt"} or none, the architecture and sigma then
 * coming from the registry (RlCheckpointKnown).
 *
 * Include postgres.h first.
 *
 * src/common/checkpoint.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef RL_CHECKPOINT_H
#define RL_CHECKPOINT_H

#include "forward.h"
#include "rl_arch.h"

/* Value of __metadata__.format this code reads and writes. */
#define RL_CHECKPOINT_FORMAT "rl_mlops/1"

/* Hard limits of the parser. */
#define RL_CHECKPOINT_MAX_TENSORS 64
#define RL_CHECKPOINT_MAX_HEADER (100 * 1024 * 1024)	/* bytes of JSON */
#define RL_CHECKPOINT_MAX_META 64	/* __metadata__ entries */
#define RL_CHECKPOINT_MAX_NAME 256	/* bytes in a tensor or metadata key */
#define RL_CHECKPOINT_MAX_DIM 1000000	/* any architecture field */

/* Parameter tensor names, in PyTorch state_dict order. */
extern const char *const rl_checkpoint_param_names[RL_N_PARAMS];

/*
 * One float32 tensor.  ndim is 1 or 2; when ndim is 1, shape[1] is 1, so
 * the element count is always shape[0] * shape[1].  data is a palloc'd
 * (so suitably aligned) copy in host byte order.
 */
typedef struct RlTensor
{
	char	   *name;
	int32		ndim;
	int64		shape[2];
	float	   *data;
} RlTensor;

/* A __metadata__ entry that is none of the keys this code knows. */
typedef struct RlMetaItem
{
	char	   *key;
	char	   *value;
} RlMetaItem;

/*
 * What the registry knows of a model whose file may lack it: the agent's
 * architecture and the model row's sigma (NaN when not known, as for an
 * import without sigma).
 */
typedef struct RlCheckpointKnown
{
	RlArch		arch;
	double		sigma;
} RlCheckpointKnown;

typedef struct RlCheckpoint
{
	RlArch		arch;			/* from __metadata__, or known->arch */
	double		sigma;			/* return normalisation, > 0 */
	char	   *version;		/* may be NULL */
	char	   *format;			/* as read: "rl_mlops/1", "pt" or "none";
								 * the writer always writes
								 * RL_CHECKPOINT_FORMAT */
	char	   *widened_from;	/* dtypes widened to F32 ("F16"), or NULL */
	int32		nextra;			/* other __metadata__ keys, in file order */
	RlMetaItem *extra;
	int32		ntensors;
	RlTensor   *tensors;		/* in file (header) order */
} RlCheckpoint;

/* Number of elements of a tensor. */
static inline int64
rl_tensor_numel(const RlTensor *t)
{
	return t->shape[0] * (t->ndim == 2 ? t->shape[1] : 1);
}

extern bytea *rl_checkpoint_serialize(const RlCheckpoint *ckpt);
extern RlCheckpoint *rl_checkpoint_parse(const char *buf, Size len,
										 Size max_size,
										 const RlCheckpointKnown *known);
extern void rl_checkpoint_check_arch(const RlCheckpoint *ckpt,
									 const RlArch *expected,
									 bool require_optimizer);
extern bool rl_checkpoint_has_optimizer(const RlCheckpoint *ckpt);
extern void rl_checkpoint_weights(const RlCheckpoint *ckpt, RlWeights *w);
extern const RlTensor *rl_checkpoint_tensor(const RlCheckpoint *ckpt,
											const char *name);
extern void rl_sha256_hex(const char *buf, Size len, char out[65]);

#endif							/* RL_CHECKPOINT_H */
