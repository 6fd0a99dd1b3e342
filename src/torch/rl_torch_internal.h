/*-------------------------------------------------------------------------
 *
 * rl_torch_internal.h
 *	  Test-only entry points of the libtorch shim.  NOT part of the API of
 *	  rl_torch.h: the training worker never calls these, and they may
 *	  change without notice.  test/c/test_torch.c uses them to compare the
 *	  hand-derived PPO gradient with autograd's and to check the update's
 *	  tanh.
 *
 * src/torch/rl_torch_internal.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef RL_TORCH_INTERNAL_H
#define RL_TORCH_INTERNAL_H

#include "rl_torch.h"

#ifdef __cplusplus
extern "C"
{
#endif

/*
 * TEST ONLY.  The PPO loss of the whole batch taken as one minibatch (as
 * rl_torch_ppo_loss) and its gradient before clipping, without changing
 * the parameters or the Adam state: grad receives the gradients of the 8
 * parameters in state_dict order, concatenated (n must be their total
 * element count).
 */
extern RlTorchStatus rl_torch_ppo_grad(RlTorchNet *net,
									   const RlTorchPPOConfig *cfg,
									   const RlTorchBatch *batch,
									   float *grad, int64_t n,
									   RlTorchUpdateStats *stats,
									   char *err);

/*
 * TEST ONLY.  x[i] = tanh(x[i]) for n floats by the PPO update's own tanh
 * (it replaces libtorch's there: faster, within 1.3 ulp; the test keeps
 * its former bound of 2.1).
 */
extern RlTorchStatus rl_torch_tanh(float *x, int64_t n, char *err);

#ifdef __cplusplus
}
#endif

#endif							/* RL_TORCH_INTERNAL_H */
