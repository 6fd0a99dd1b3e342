/*-------------------------------------------------------------------------
 *
 * net_io.h
 *	  Moving a libtorch network's tensors to and from C: plain weights for
 *	  the C forward pass, and checkpoints (parameters plus Adam state).
 *
 *-------------------------------------------------------------------------
 */
#ifndef RL_NET_IO_H
#define RL_NET_IO_H

#include "checkpoint.h"
#include "forward.h"
#include "torch/rl_torch.h"

extern void rl_net_weights(RlTorchNet *net, const RlArch *arch, RlWeights *w);
extern RlCheckpoint *rl_net_checkpoint(RlTorchNet *net, const RlArch *arch,
									   double sigma, const char *version);
extern void rl_net_load(RlTorchNet *net, const RlCheckpoint *ckpt);

#endif							/* RL_NET_IO_H */
