/*-------------------------------------------------------------------------
 *
 * forward.c
 *	  Plain-C forward pass of the TradingActorCritic (ARCHITECTURE.md "Processes and libraries", "The trading environment"
 *	  and 8): serving and validation run it so that no backend has to load
 *	  libtorch.
 *
 * Float32 arithmetic throughout, like PyTorch on the CPU.  Dot products
 * use RL_LANES independent partial sums: the lanes are plain C (so the
 * result is the same whether or not the compiler vectorises them) and
 * they break the add-latency chain, which makes the loops fast at -O2
 * without -ffast-math.  The summation order differs from BLAS, so results
 * agree with PyTorch to rounding (about 1e-6), not bit for bit.
 *
 * src/core/forward.c
 *
 *-------------------------------------------------------------------------
 */
#include <math.h>
#include <stddef.h>

#include "forward.h"

/* Independent partial sums per dot product (dot() adds up exactly 8). */
#define RL_LANES 8

/*
 * Dot product of two float vectors of length n.  The block count is
 * computed up front: with -fwrapv (PGXS's default) gcc cannot otherwise
 * prove an "i + 8 <= n" loop well-behaved, and runs it 2.5x slower.
 */
static inline float
dot(const float *a, const float *b, int n)
{
	float		acc[RL_LANES] = {0};
	float		sum;
	unsigned int nblocks = (unsigned int) n / RL_LANES;
	unsigned int rest = (unsigned int) n % RL_LANES;
	unsigned int blk;
	unsigned int k;

	for (blk = 0; blk < nblocks; blk++, a += RL_LANES, b += RL_LANES)
		for (k = 0; k < RL_LANES; k++)
			acc[k] += a[k] * b[k];

	sum = ((acc[0] + acc[4]) + (acc[1] + acc[5])) +
		((acc[2] + acc[6]) + (acc[3] + acc[7]));

	for (k = 0; k < rest; k++)
		sum += a[k] * b[k];

	return sum;
}

/* y = W x + b for W [n_out, n_in] row-major, as nn.Linear computes it. */
static void
linear(const float *w, const float *b, const float *x, int n_in,
	   float *y, int n_out)
{
	int			j;

	for (j = 0; j < n_out; j++)
		y[j] = dot(w + (size_t) j * n_in, x, n_in) + b[j];
}

/*
 * In-place tanh, the trunk's activation, as 1 - 2 / (e^2x + 1): one expf
 * instead of libm's tanhf, which took most of a forward pass's time.  The
 * absolute error stays below 2e-7 (e^2x overflowing to infinity gives
 * exactly 1, underflowing to 0 exactly -1).
 */
static void
tanh_inplace(float *x, int n)
{
	int			j;

	for (j = 0; j < n; j++)
		x[j] = 1.0f - 2.0f / (expf(2.0f * x[j]) + 1.0f);
}

/* Softmax with the maximum subtracted first, so large logits cannot overflow. */
static void
softmax(const float *logits, float *probs, int n)
{
	float		max = logits[0];
	float		sum = 0.0f;
	int			j;

	for (j = 1; j < n; j++)
		if (logits[j] > max)
			max = logits[j];

	for (j = 0; j < n; j++)
	{
		probs[j] = expf(logits[j] - max);
		sum += probs[j];
	}

	for (j = 0; j < n; j++)
		probs[j] /= sum;
}

/* One observation through trunk, actor and critic; see forward.h. */
void
rl_forward(const RlWeights *w, const float *obs, float *probs, float *value,
		   float *scratch)
{
	const RlArch *a = &w->arch;
	float	   *h1 = scratch;
	float	   *h2 = scratch + a->hidden;
	float	   *logits = scratch + 2 * a->hidden;

	linear(w->trunk0_w, w->trunk0_b, obs, a->obs_dim, h1, a->hidden);
	tanh_inplace(h1, a->hidden);
	linear(w->trunk2_w, w->trunk2_b, h1, a->hidden, h2, a->hidden);
	tanh_inplace(h2, a->hidden);

	if (probs != NULL)
	{
		linear(w->actor_w, w->actor_b, h2, a->hidden, logits, a->n_actions);
		softmax(logits, probs, a->n_actions);
	}

	if (value != NULL)
		linear(w->critic_w, w->critic_b, h2, a->hidden, value, 1);
}

/* Greedy action for backtests and serving: first index of the maximum. */
int
rl_argmax(const float *probs, int n)
{
	int			best = 0;
	int			j;

	for (j = 1; j < n; j++)
		if (probs[j] > probs[best])
			best = j;

	return best;
}
