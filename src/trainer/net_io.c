/*-------------------------------------------------------------------------
 *
 * net_io.c
 *	  Moving a libtorch network's tensors to and from C: plain weights for
 *	  the C forward pass, and checkpoints (parameters plus Adam state), so
 *	  that a warm start continues both the weights and the optimizer.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "trainer/net_io.h"

/* Raise a wrapper error as a PostgreSQL error. */
static void
torch_error(const char *what, const char *err)
{
	ereport(ERROR,
			(errcode(ERRCODE_EXTERNAL_ROUTINE_EXCEPTION),
			 errmsg("libtorch could not %s", what),
			 errdetail("%s", err)));
}

/* Copy the eight parameters out of libtorch for the C forward pass. */
void
rl_net_weights(RlTorchNet *net, const RlArch *arch, RlWeights *w)
{
	const float *p[RL_N_PARAMS];
	char		err[RL_TORCH_ERRLEN];

	for (int i = 0; i < RL_N_PARAMS; i++)
	{
		const char *name;
		int32		ndim;
		int64		shape[2];
		float	   *buf;

		if (rl_torch_tensor_info(net, i, &name, &ndim, shape, err) != RL_TORCH_OK)
			torch_error("describe a parameter", err);
		buf = palloc(shape[0] * shape[1] * sizeof(float));
		if (rl_torch_tensor_get(net, name, buf, shape[0] * shape[1], err) != RL_TORCH_OK)
			torch_error("read a parameter", err);
		p[i] = buf;
	}
	w->arch = *arch;
	w->trunk0_w = p[0];
	w->trunk0_b = p[1];
	w->trunk2_w = p[2];
	w->trunk2_b = p[3];
	w->actor_w = p[4];
	w->actor_b = p[5];
	w->critic_w = p[6];
	w->critic_b = p[7];
}

/* Every tensor of the net (parameters and Adam state) as a checkpoint. */
RlCheckpoint *
rl_net_checkpoint(RlTorchNet *net, const RlArch *arch, double sigma,
				  const char *version)
{
	RlCheckpoint *ckpt = palloc0(sizeof(RlCheckpoint));
	char		err[RL_TORCH_ERRLEN];

	ckpt->arch = *arch;
	ckpt->sigma = sigma;
	ckpt->version = version ? pstrdup(version) : NULL;
	ckpt->ntensors = rl_torch_tensor_count(net);
	ckpt->tensors = palloc0(ckpt->ntensors * sizeof(RlTensor));
	for (int i = 0; i < ckpt->ntensors; i++)
	{
		RlTensor   *t = &ckpt->tensors[i];
		const char *name;

		if (rl_torch_tensor_info(net, i, &name, &t->ndim, t->shape, err) != RL_TORCH_OK)
			torch_error("describe a tensor", err);
		t->name = pstrdup(name);
		t->data = palloc(rl_tensor_numel(t) * sizeof(float));
		if (rl_torch_tensor_get(net, name, t->data, rl_tensor_numel(t), err) != RL_TORCH_OK)
			torch_error("read a tensor", err);
	}
	return ckpt;
}

/* Load a checkpoint's tensors (whatever it has of the 25) into the net. */
void
rl_net_load(RlTorchNet *net, const RlCheckpoint *ckpt)
{
	char		err[RL_TORCH_ERRLEN];

	for (int i = 0; i < ckpt->ntensors; i++)
	{
		const RlTensor *t = &ckpt->tensors[i];

		if (rl_torch_tensor_set(net, t->name, t->data, rl_tensor_numel(t), err) != RL_TORCH_OK)
			torch_error("load the warm-start checkpoint", err);
	}
}
