/*-------------------------------------------------------------------------
 *
 * torch_reference.h
 *	  The former autograd implementation of the libtorch shim, kept as the
 *	  reference that test_torch.c checks src/torch/rl_torch.cpp against.
 *	  Same contracts as the rl_torch_* functions of the same names
 *	  (src/torch/rl_torch.h); test code only, never linked into the
 *	  extension.
 *
 * test/c/torch_reference.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef TORCH_REFERENCE_H
#define TORCH_REFERENCE_H

#include "rl_torch.h"

#ifdef __cplusplus
extern "C"
{
#endif

/* Opaque: parameters with autograd plus a torch::optim::Adam. */
typedef struct RefTorchNet RefTorchNet;

extern RlTorchStatus ref_torch_net_create(const RlArch *arch, uint64_t seed,
										  float lr, RefTorchNet **out,
										  char *err);
extern void ref_torch_net_free(RefTorchNet *net);
extern RlTorchStatus ref_torch_forward(RefTorchNet *net, const float *obs,
									   int64_t n, float *probs,
									   float *values, char *err);
extern RlTorchStatus ref_torch_tensor_get(const RefTorchNet *net,
										  const char *name, float *out,
										  int64_t n, char *err);
extern RlTorchStatus ref_torch_tensor_set(RefTorchNet *net, const char *name,
										  const float *in, int64_t n,
										  char *err);
extern RlTorchStatus ref_torch_ppo_update(RefTorchNet *net,
										  const RlTorchPPOConfig *cfg,
										  const RlTorchBatch *batch,
										  RlTorchShouldStop should_stop,
										  void *stop_arg,
										  RlTorchUpdateStats *stats,
										  char *err);
extern RlTorchStatus ref_torch_ppo_loss(RefTorchNet *net,
										const RlTorchPPOConfig *cfg,
										const RlTorchBatch *batch,
										RlTorchUpdateStats *stats,
										char *err);

/*
 * autograd's gradient of the whole batch's PPO loss (one minibatch), before
 * clipping, in state_dict order as rl_torch_ppo_grad writes it; no step.
 */
extern RlTorchStatus ref_torch_ppo_grad(RefTorchNet *net,
										const RlTorchPPOConfig *cfg,
										const RlTorchBatch *batch,
										float *grad, int64_t n,
										RlTorchUpdateStats *stats,
										char *err);

#ifdef __cplusplus
}
#endif

#endif							/* TORCH_REFERENCE_H */
