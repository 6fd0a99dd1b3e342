/*-------------------------------------------------------------------------
 *
 * rl_torch.cpp
 *	  libtorch implementation of the plain C API in rl_torch.h: the
 *	  TradingActorCritic network (ARCHITECTURE.md "The trading environment"), its Adam optimizer and
 *	  the PPO update, for the training worker only.
 *
 * The network is eight raw parameter tensors rather than torch::nn modules:
 * the forward pass is addmm calls, which is exactly what PyTorch's F.linear
 * does for 2-D input, and there is no module dispatch overhead.
 *
 * There is no autograd either.  The PPO update is a hand-derived forward
 * pass, loss and backward pass (ppo_terms), PyTorch's gradient-norm clip
 * and Adam (clip_and_adam), all on preallocated buffers: the GEMMs straight
 * through the BLAS libtorch uses (sgemm_), everything else as plain loops,
 * the elementwise ones fused (bias, tanh; tanh backward, bias gradient),
 * the per-row loss run across rows with its own exp and log (ppo_rows), all
 * compiled for AVX-512 and AVX2 as well, chosen at run time.  A step calls
 * no ATen op: at this size dispatch and tensor bookkeeping cost as much as
 * the elementwise work.  At the default size (256 x 33 -> 64 -> 64 -> 3 + 1) autograd
 * and torch::optim::Adam spent most of a step building the graph and
 * dispatching per-tensor ops.  test/c/test_torch.c checks gradients and
 * whole updates against the former autograd code (test/c/torch_reference.cpp).
 *
 * Parameters, gradients and the two Adam moments are four flat float
 * buffers of one layout; the eight named tensors of each are views into
 * them, so clipping and Adam are single loops.  The layout stacks
 * actor.weight over critic.weight and actor.bias before critic.bias: both
 * heads are one [n_actions + 1, hidden] matrix, one GEMM each way.
 *
 * Never include postgres.h here, never palloc or ereport: every extern "C"
 * entry point runs its body through guarded(), which turns any C++
 * exception into RL_TORCH_ERROR plus a message in the caller's buffer.
 *
 * src/torch/rl_torch.cpp
 *
 *-------------------------------------------------------------------------
 */
#include "rl_torch.h"
#include "rl_torch_internal.h"

#include <algorithm>
#include <cfloat>
#include <climits>
#include <cmath>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <memory>
#include <new>
#include <stdexcept>
#include <string>
#include <vector>

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Parallel.h>
#include <c10/core/InferenceMode.h>
#include <torch/version.h>

/*
 * The BLAS that libtorch itself calls for float GEMMs (libblas.so.3, a
 * dependency of libtorch_cpu; linked explicitly, see the Makefile).
 */
extern "C" void sgemm_(const char *transa, const char *transb, const int *m,
					   const int *n, const int *k, const float *alpha,
					   const float *a, const int *lda, const float *b,
					   const int *ldb, const float *beta, float *c,
					   const int *ldc);

/*
 * Vector code is compiled for AVX-512 and AVX2 besides the baseline and
 * picked at load time from the CPU (no -march in the build).  The build
 * has -ffp-contract=off, so the clones round exactly as the baseline does
 * and results do not depend on which one runs.
 */
#define RL_VECTOR_CLONES \
	__attribute__((target_clones("avx512f", "avx2", "default")))

namespace
{

/* Parameter names in PyTorch state_dict order, then the optimizer state. */
const char *const tensor_names[RL_TORCH_N_TENSORS] = {RL_TENSOR_NAMES};

const int STEP_INDEX = 3 * RL_N_PARAMS;

/* Largest network we agree to build (elements over all parameters). */
const int64_t MAX_PARAM_ELEMS = INT64_C(1) << 28;

/* A validation failure: its message goes to the caller verbatim. */
struct RlFail : std::runtime_error
{
	explicit RlFail(const std::string &m) : std::runtime_error(m) {}
};

/* Format a message into the caller's buffer, if it gave one. */
void
put_err(char *err, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

void
put_err(char *err, const char *fmt, ...)
{
	va_list		ap;

	if (err == nullptr)
		return;
	va_start(ap, fmt);
	vsnprintf(err, RL_TORCH_ERRLEN, fmt, ap);
	va_end(ap);
	/* libtorch messages span lines; keep ours on one */
	for (char *c = err; *c; c++)
		if (*c == '\n' || *c == '\r')
			*c = ' ';
}

/* Throw an RlFail with a printf-style message (validation errors). */
[[noreturn]] void
fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

[[noreturn]] void
fail(const char *fmt, ...)
{
	char		buf[RL_TORCH_ERRLEN];
	va_list		ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	throw RlFail(buf);
}

/* Run an entry point's body so that no exception ever crosses the C API. */
template <typename F>
RlTorchStatus
guarded(char *err, F &&body) noexcept
{
	try
	{
		if (err != nullptr)
			err[0] = '\0';
		return body();
	}
	catch (const RlFail &e)
	{
		put_err(err, "%s", e.what());
	}
	catch (const c10::Error &e)
	{
		put_err(err, "libtorch error: %s", e.what_without_backtrace());
	}
	catch (const std::bad_alloc &)
	{
		put_err(err, "out of memory in libtorch wrapper");
	}
	catch (const std::exception &e)
	{
		put_err(err, "c++ exception in libtorch wrapper: %s", e.what());
	}
	catch (...)
	{
		put_err(err, "unknown c++ exception in libtorch wrapper");
	}
	return RL_TORCH_ERROR;
}

/*
 * Whether v[0 .. n - 1] holds a NaN or an infinity (all exponent bits
 * set), the test OR-ed over the array without a branch so that the loop
 * vectorises: a batch's observations are checked on every update call.
 */
RL_VECTOR_CLONES bool
any_non_finite(const float *v, int64_t n)
{
	uint32_t	bad = 0;

	for (int64_t i = 0; i < n; i++)
	{
		uint32_t	bits;

		memcpy(&bits, v + i, sizeof(bits));
		bad |= (uint32_t) ((bits & 0x7f800000u) == 0x7f800000u);
	}
	return bad != 0;
}

/* Reject NaN and infinities before they reach the network. */
void
check_finite(const float *v, int64_t n, const char *what)
{
	if (!any_non_finite(v, n))
		return;
	for (int64_t i = 0; i < n; i++)
		if (!std::isfinite(v[i]))
			fail("%s contains a non-finite value at index %lld",
				 what, (long long) i);
}

}								/* namespace */

namespace
{

/*
 * Adam's hyper-parameters: PyTorch's defaults, which torch::optim::Adam
 * used here before (no weight decay, no amsgrad).
 */
const double ADAM_BETA1 = 0.9;
const double ADAM_BETA2 = 0.999;
const double ADAM_EPS = 1e-8;

/* The parameters' indices in state_dict order. */
enum
{
	P_W1,						/* trunk.0.weight [hidden, obs_dim] */
	P_B1,						/* trunk.0.bias [hidden] */
	P_W2,						/* trunk.2.weight [hidden, hidden] */
	P_B2,						/* trunk.2.bias [hidden] */
	P_WA,						/* actor.weight [n_actions, hidden] */
	P_BA,						/* actor.bias [n_actions] */
	P_WC,						/* critic.weight [1, hidden] */
	P_BC						/* critic.bias [1] */
};

}								/* namespace */

/*
 * Work buffers of the PPO loss and gradient for up to "rows" minibatch
 * rows.  The update keeps one in the net so that a step allocates nothing;
 * h1 and h2 are the forward activations the backward pass reuses.  Plain
 * arrays: a step calls no ATen op at all (at this size dispatch and tensor
 * bookkeeping cost as much as the elementwise work).
 */
struct RlPpoWork
{
	int64_t		rows = 0;
	bool		gather = false;	/* has x */
	bool		backward = false;	/* has dhead, d1, d2 */
	std::vector<float> x;		/* [rows, obs_dim] the minibatch's observations */
	std::vector<float> h1;		/* [rows, hidden] tanh of the first layer */
	std::vector<float> h2;		/* [rows, hidden] tanh of the second layer */
	std::vector<float> head;	/* [rows, n_actions + 1] logits, then value */
	std::vector<float> dhead;	/* [rows, n_actions + 1] dloss/dhead */
	std::vector<float> d2;		/* [rows, hidden] dloss/dh2, then dloss/dz2 */
	std::vector<float> d1;		/* [rows, hidden] dloss/dh1, then dloss/dz1 */
	std::vector<double> colsum;	/* [max(hidden, n_actions + 1)] bias sums */
	std::vector<float> adv;		/* [rows] normalised advantages */
	std::vector<float> rowf;	/* the loss's per-row columns (PpoCols) */
	std::vector<int32_t> act;	/* [rows] the minibatch's actions */
};

/*
 * The network's parameters, gradients and Adam state.  flat_* hold every
 * element; param[i], grad[i], exp_avg[i] and exp_avg_sq[i] are views of
 * parameter i (state_dict order), head_* the stacked actor and critic.
 * All are plain tensors (no autograd, not inference tensors), so they
 * outlive any InferenceMode scope.
 */
struct RlTorchNet
{
	RlArch		arch;
	int64_t		numel;			/* elements over all parameters */
	at::Tensor	flat_param;
	at::Tensor	flat_grad;
	at::Tensor	flat_exp_avg;
	at::Tensor	flat_exp_avg_sq;
	at::Tensor	param[RL_N_PARAMS];
	at::Tensor	grad[RL_N_PARAMS];
	at::Tensor	exp_avg[RL_N_PARAMS];
	at::Tensor	exp_avg_sq[RL_N_PARAMS];
	at::Tensor	head_w;			/* [n_actions + 1, hidden]: actor, critic */
	at::Tensor	head_b;			/* [n_actions + 1] */
	at::Tensor	head_gw;		/* their gradients */
	at::Tensor	head_gb;
	int64_t		step;			/* Adam steps taken (optim.step) */
	double		lr;				/* Adam learning rate */
	at::Tensor	ws_h1;			/* forward workspace, grown to the largest n */
	at::Tensor	ws_h2;
	at::Tensor	ws_logits;
	RlPpoWork	work;			/* PPO update workspace, grown likewise */
};

namespace
{

/* Index of a tensor name in tensor_names, or fail. */
int
tensor_index(const char *name)
{
	if (name == nullptr)
		fail("tensor name must not be null");
	for (int i = 0; i < RL_TORCH_N_TENSORS; i++)
		if (strcmp(name, tensor_names[i]) == 0)
			return i;
	fail("unknown tensor name \"%.100s\"", name);
}

/* Element count of tensor index i for this net's architecture. */
int64_t
tensor_numel(const RlTorchNet *net, int i)
{
	if (i == STEP_INDEX)
		return 1;
	return net->param[i % RL_N_PARAMS].numel();
}

/* Check a get/set buffer against the tensor it names. */
void
check_size(const RlTorchNet *net, int idx, const void *buf, int64_t n)
{
	int64_t		expected = tensor_numel(net, idx);

	if (buf == nullptr)
		fail("buffer for tensor \"%s\" must not be null", tensor_names[idx]);
	if (n != expected)
		fail("size mismatch for tensor \"%s\": expected %lld elements, got %lld",
			 tensor_names[idx], (long long) expected, (long long) n);
}

/* Validate an architecture before allocating anything for it. */
void
check_arch(const RlArch *a)
{
	if (a == nullptr)
		fail("architecture must not be null");
	if (a->window <= 0 || a->window > RL_TORCH_MAX_DIM)
		fail("invalid window %d: must be between 1 and %d",
			 (int) a->window, RL_TORCH_MAX_DIM);
	if (a->n_features < 0 || a->n_features > RL_TORCH_MAX_DIM)
		fail("invalid n_features %d: must be between 0 and %d",
			 (int) a->n_features, RL_TORCH_MAX_DIM);
	if (a->obs_dim <= 0 || a->obs_dim > RL_TORCH_MAX_DIM)
		fail("invalid obs_dim %d: must be between 1 and %d",
			 (int) a->obs_dim, RL_TORCH_MAX_DIM);
	if ((int64_t) a->obs_dim != (int64_t) a->window + 1 + a->n_features)
		fail("invalid obs_dim %d: must be window + 1 + n_features = %lld",
			 (int) a->obs_dim,
			 (long long) ((int64_t) a->window + 1 + a->n_features));
	if (a->hidden <= 0 || a->hidden > RL_TORCH_MAX_DIM)
		fail("invalid hidden %d: must be between 1 and %d",
			 (int) a->hidden, RL_TORCH_MAX_DIM);
	if (a->n_actions <= 0 || a->n_actions > RL_TORCH_MAX_DIM)
		fail("invalid n_actions %d: must be between 1 and %d",
			 (int) a->n_actions, RL_TORCH_MAX_DIM);

	int64_t		h = a->hidden;
	int64_t		elems = h * a->obs_dim + h + h * h + h +
		(int64_t) a->n_actions * h + a->n_actions + h + 1;

	if (elems > MAX_PARAM_ELEMS)
		fail("network too large: %lld parameters, at most %lld allowed",
			 (long long) elems, (long long) MAX_PARAM_ELEMS);
}

/* Validate the observation buffer of n rows for this net. */
void
check_obs(const RlTorchNet *net, const float *obs, int64_t n)
{
	if (obs == nullptr)
		fail("observations must not be null");
	if (n <= 0)
		fail("invalid batch size %lld: must be positive", (long long) n);
	if (n > INT64_MAX / 4 / net->arch.obs_dim ||
		n > INT64_MAX / 4 / net->arch.n_actions)
		fail("batch size %lld is too large", (long long) n);
	check_finite(obs, n * net->arch.obs_dim, "observations");
}

/* Validate PPO hyper-parameters. */
void
check_cfg(const RlTorchPPOConfig *c)
{
	if (c == nullptr)
		fail("ppo config must not be null");
	if (!std::isfinite(c->lr) || c->lr <= 0)
		fail("invalid learning rate %g: must be positive", (double) c->lr);
	if (!std::isfinite(c->clip) || c->clip <= 0 || c->clip >= 1)
		fail("invalid clip %g: must be in (0, 1)", (double) c->clip);
	if (!std::isfinite(c->value_coef) || c->value_coef < 0)
		fail("invalid value_coef %g: must be >= 0", (double) c->value_coef);
	if (!std::isfinite(c->entropy_coef) || c->entropy_coef < 0)
		fail("invalid entropy_coef %g: must be >= 0", (double) c->entropy_coef);
	if (!std::isfinite(c->max_grad_norm) || c->max_grad_norm <= 0)
		fail("invalid max_grad_norm %g: must be positive",
			 (double) c->max_grad_norm);
	if (c->update_passes <= 0 || c->update_passes > RL_TORCH_MAX_DIM)
		fail("invalid update_passes %d: must be between 1 and %d",
			 (int) c->update_passes, RL_TORCH_MAX_DIM);
	if (c->minibatch <= 0)
		fail("invalid minibatch %d: must be positive", (int) c->minibatch);
}

/* Wrap a caller's read-only float array as a tensor without copying. */
at::Tensor
wrap(const float *v, at::IntArrayRef shape)
{
	return at::from_blob(const_cast<float *>(v), shape, at::kFloat);
}

/* Validate a PPO batch against the net. */
void
check_batch(const RlTorchNet *net, const RlTorchBatch *batch)
{
	if (batch == nullptr)
		fail("batch must not be null");
	if (batch->actions == nullptr || batch->old_logp == nullptr ||
		batch->advantages == nullptr || batch->returns == nullptr)
		fail("batch arrays must not be null");

	const int64_t n = batch->n;

	if (batch->obs != nullptr || batch->obs_fn == nullptr)
		check_obs(net, batch->obs, n);
	else if (n <= 0 || n > INT64_MAX / 4 / net->arch.obs_dim)
		fail("invalid batch size %lld", (long long) n);
	for (int64_t i = 0; i < n; i++)
		if (batch->actions[i] < 0 || batch->actions[i] >= net->arch.n_actions)
			fail("action %d at index %lld out of range 0..%d",
				 (int) batch->actions[i], (long long) i,
				 (int) net->arch.n_actions - 1);
	check_finite(batch->old_logp, n, "old_logp");
	check_finite(batch->advantages, n, "advantages");
	check_finite(batch->returns, n, "returns");
}

/*
 * Allocate the four flat buffers and carve the named views out of them,
 * so that the eight tensors of each kind are one contiguous array.  Flat
 * layout: W1, b1, W2, b2, [actor.weight; critic.weight], [actor.bias;
 * critic.bias].
 */
void
make_buffers(RlTorchNet *net)
{
	const int64_t d = net->arch.obs_dim;
	const int64_t h = net->arch.hidden;
	const int64_t a = net->arch.n_actions;
	const int64_t k = a + 1;
	const int64_t hw = h * d + h + h * h + h;	/* head weight offset */
	const int64_t hb = hw + k * h;	/* head bias offset */
	const int64_t off[RL_N_PARAMS] = {0, h * d, h * d + h, h * d + h + h * h,
	hw, hb, hw + a * h, hb + a};
	const std::vector<int64_t> shape[RL_N_PARAMS] = {{h, d}, {h}, {h, h}, {h},
	{a, h}, {a}, {1, h}, {1}};
	at::Tensor *views[4] = {net->param, net->grad, net->exp_avg, net->exp_avg_sq};
	at::Tensor *flat[4] = {&net->flat_param, &net->flat_grad,
	&net->flat_exp_avg, &net->flat_exp_avg_sq};

	net->numel = hb + k;
	for (int f = 0; f < 4; f++)
	{
		*flat[f] = at::zeros({net->numel}, at::kFloat);
		for (int i = 0; i < RL_N_PARAMS; i++)
		{
			int64_t		numel = 1;

			for (int64_t s : shape[i])
				numel *= s;
			views[f][i] = flat[f]->narrow(0, off[i], numel).view(shape[i]);
		}
	}
	net->head_w = net->flat_param.narrow(0, hw, k * h).view({k, h});
	net->head_b = net->flat_param.narrow(0, hb, k);
	net->head_gw = net->flat_grad.narrow(0, hw, k * h).view({k, h});
	net->head_gb = net->flat_grad.narrow(0, hb, k);
}

/*
 * The per-row loss works on columns (structure of arrays: one array per
 * quantity, indexed by row) so that its loops run across rows in vector
 * registers; per action j, a quantity's column is at j * rows.
 */
struct PpoCols
{
	float	   *z;				/* [n_actions + 1][rows] logits and value, biased */
	float	   *lp;				/* [n_actions][rows] log-probabilities */
	float	   *pr;				/* [n_actions][rows] probabilities */
	float	   *g;				/* [n_actions + 1][rows] G(z), G(value) */
	float	   *mx;				/* [rows] largest logit */
	float	   *se;				/* [rows] sum of exp(z - mx) */
	float	   *lse;			/* [rows] mx + log(se) */
	float	   *pl;				/* [rows] sum of p l */
	float	   *logp;			/* [rows] l of the action taken */
	float	   *old;			/* [rows] old_logp */
	float	   *ret;			/* [rows] returns */
	float	   *pol;			/* [rows] min(r A, clamp(r) A) */
	float	   *diff;			/* [rows] value - return */
	float	   *kl;				/* [rows] old - logp */
	float	   *glogp;			/* [rows] G(logp) */
	float	   *gsum;			/* [rows] sum of G(l) */
};

/* Floats per row that PpoCols takes. */
int64_t
ppo_cols_per_row(const RlArch *a)
{
	return 2 * ((int64_t) a->n_actions + 1) + 2 * (int64_t) a->n_actions + 12;
}

/* PpoCols carved from buf (rows * ppo_cols_per_row floats). */
PpoCols
ppo_cols(float *buf, const RlArch *a, int64_t rows)
{
	const int64_t na = a->n_actions;
	PpoCols		c;

	c.z = buf;
	c.lp = c.z + (na + 1) * rows;
	c.pr = c.lp + na * rows;
	c.g = c.pr + na * rows;
	c.mx = c.g + (na + 1) * rows;
	c.se = c.mx + rows;
	c.lse = c.se + rows;
	c.pl = c.lse + rows;
	c.logp = c.pl + rows;
	c.old = c.logp + rows;
	c.ret = c.old + rows;
	c.pol = c.ret + rows;
	c.diff = c.pol + rows;
	c.kl = c.diff + rows;
	c.glogp = c.kl + rows;
	c.gsum = c.glogp + rows;
	return c;
}

/*
 * Size a PPO work area for "rows" rows, keeping larger buffers: gather
 * wants x (rows picked by index), backward the gradient buffers.
 */
void
ensure_work(RlPpoWork *w, const RlArch *a, int64_t rows, bool gather,
			bool backward)
{
	if (w->rows >= rows && (w->gather || !gather) && (w->backward || !backward))
		return;
	rows = std::max(rows, w->rows);
	gather = gather || w->gather;
	backward = backward || w->backward;
	/* drop the old buffers first: never hold both sizes at once */
	*w = RlPpoWork();

	const int64_t h = a->hidden;
	const int64_t k = (int64_t) a->n_actions + 1;

	if (gather)
		w->x.resize(rows * a->obs_dim);
	w->h1.resize(rows * h);
	w->h2.resize(rows * h);
	w->head.resize(rows * k);
	if (backward)
	{
		w->dhead.resize(rows * k);
		w->d2.resize(rows * h);
		w->d1.resize(rows * h);
	}
	w->colsum.resize(std::max(h, k));
	w->adv.resize(rows);
	w->rowf.resize(rows * ppo_cols_per_row(a));
	w->act.resize(rows);
	w->rows = rows;
	w->gather = gather;
	w->backward = backward;
}

/*
 * C = op(A) op(B) + beta C for row-major float matrices through the BLAS
 * libtorch links (the sgemm_ that at::mm calls, so the same kernels),
 * without ATen's dispatch and tensor bookkeeping, a few microseconds per
 * call at this size.  Row-major C is column-major C', hence B before A.
 */
void
gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k,
	 const float *a, int64_t lda, const float *b, int64_t ldb,
	 float beta, float *c, int64_t ldc)
{
	if (m > INT_MAX || n > INT_MAX || k > INT_MAX || lda > INT_MAX ||
		ldb > INT_MAX || ldc > INT_MAX)
		fail("matrix of %lld x %lld is too large", (long long) m,
			 (long long) std::max(n, k));

	const char	ta = trans_a ? 'T' : 'N';
	const char	tb = trans_b ? 'T' : 'N';
	const int	im = (int) m,
				in = (int) n,
				ik = (int) k,
				ilda = (int) lda,
				ildb = (int) ldb,
				ildc = (int) ldc;
	const float one = 1.0f;

	sgemm_(&tb, &ta, &in, &im, &ik, &one, b, &ildb, a, &ilda, &beta, c, &ildc);
}

/*
 * exp(r) for |r| <= ln 2 / 2 (after range reduction): 1 + r + r^2 P(r),
 * P a near-minimax polynomial of degree 4 (Chebyshev fit, error below
 * 2^-26 relative); in float, with the rounding about 1 ulp.
 */
inline __attribute__((always_inline)) float
exp_reduced(float r)
{
	float		p = 0.00139261759f;

	p = p * r + 0.00836317334f;
	p = p * r + 0.0416665561f;
	p = p * r + 0.166665778f;
	p = p * r + 0.5f;
	return (p * (r * r) + r) + 1.0f;
}

/*
 * 2^n as a float, for a t = a / ln 2 + 1.5 2^23 whose low bits hold n =
 * round(a / ln 2), n + 127 in 1 .. 254: n + 127 shifted into the exponent
 * field (t's own exponent bits shift out), no conversion, so that loops of
 * it vectorise.
 */
inline __attribute__((always_inline)) float
pow2_from_shifted(float t)
{
	uint32_t	bits;
	float		scale;

	memcpy(&bits, &t, sizeof(bits));
	bits = (bits + 127) << 23;
	memcpy(&scale, &bits, sizeof(scale));
	return scale;
}

/* Range reduction of exp: 1.5 2^23 (rounds to integers), ln 2 in two parts */
const float EXP_SHIFTER = 0x1.8p23f;
const float LOG2E = 1.44269502f;
const float LN2_HI = 0.693359375f;	/* 9 bits: n LN2_HI is exact */
const float LN2_LO = -0.000212194442f;

/*
 * exp(x) in float within about 1 ulp, vectorisable (no libm call): exp(x) =
 * 2^n exp(r), n = round(x / ln 2), r = x - n ln 2 in two parts (Cody and
 * Waite), 2^n applied in two halves so that results down to the subnormal
 * range round once.  Beyond 88.8 it is +inf, below -104 zero; NaN stays
 * NaN (the clamps' comparisons are false for it).
 */
inline __attribute__((always_inline)) float
exp_float(float x)
{
	x = x > 88.8f ? 88.8f : x;
	x = x < -104.0f ? -104.0f : x;

	const float t = x * LOG2E + EXP_SHIFTER;
	const float n = t - EXP_SHIFTER;
	const float r = (x - n * LN2_HI) - n * LN2_LO;
	uint32_t	tb;

	/* n in -150 .. 128: halves n1 = floor(n / 2) and n - n1, each normal */
	memcpy(&tb, &t, sizeof(tb));

	const int32_t ni = (int32_t) (tb - 0x4b400000u);
	const int32_t n1 = ni >> 1;
	const int32_t n2 = ni - n1;
	uint32_t	b1 = (uint32_t) (n1 + 127) << 23;
	uint32_t	b2 = (uint32_t) (n2 + 127) << 23;
	float		s1,
				s2;

	memcpy(&s1, &b1, sizeof(s1));
	memcpy(&s2, &b2, sizeof(s2));
	return (exp_reduced(r) * s1) * s2;
}

/*
 * log(x) in float within about 1 ulp for the x > 0 this file needs it for
 * (a softmax's sum of exponentials, at least 1) and NaN; zero, subnormals
 * and infinities are not handled.  x = 2^e m with m in [sqrt(1/2),
 * sqrt(2)), log x = e ln 2 + log1p(f), f = m - 1 (exact), log1p(f) = f +
 * f^2 P(f), P of degree 8 (Chebyshev fit, error below 2^-25 relative).
 * Vectorisable: no libm call.
 */
inline __attribute__((always_inline)) float
log_float(float x)
{
	uint32_t	bits;
	float		m;

	memcpy(&bits, &x, sizeof(bits));

	int32_t		e = (int32_t) (bits >> 23) - 127;
	uint32_t	mb = (bits & 0x007fffffu) | 0x3f800000u;

	memcpy(&m, &mb, sizeof(m));
	e = m > 1.41421354f ? e + 1 : e;
	m = m > 1.41421354f ? m * 0.5f : m;

	const float f = m - 1.0f;
	const float ef = (float) e;
	float		p = -0.076736415f;

	p = p * f + 0.127226728f;
	p = p * f + -0.131275557f;
	p = p * f + 0.14204856f;
	p = p * f + -0.166266456f;
	p = p * f + 0.200012345f;
	p = p * f + -0.250007812f;
	p = p * f + 0.3333333f;
	p = p * f + -0.499999976f;

	const float y = (f + (f * f) * p + ef * LN2_LO) + ef * LN2_HI;

	return x == x ? y : x;
}

/*
 * tanh of one float within 1.3 ulp (test_torch sweeps every float up to
 * 20), in float and vectorisable.  libtorch's tanh (Sleef, within 1 ulp)
 * took about 2 ns an element here; inlined into the vector loops below
 * this takes a fraction of it:
 *	 |x| >= 0.75: tanh |x| = 1 - 2e / (1 + e), e = exp(-2|x|) (by
 *	   exp_reduced, the 2^n scale at once: -2|x| is clamped to -80, where
 *	   the result is exactly 1), the sign copied from x;
 *	 |x| < 0.75: x + x^3 P(x^2), P a near-minimax polynomial of degree 6
 *	   (Chebyshev fit, error below 2^-31 of tanh x).
 * At 0.75, 2e / (1 + e) is 0.37 of the result, so its rounding costs at
 * most about 1.3 ulp of it, less further out (the old double version was
 * within 0.6 ulp; the test's bound is 2.1).  NaN stays NaN.  Both branches
 * are computed and one selected, so a loop of it vectorises.  The backward
 * pass needs only h: d tanh(z)/dz = 1 - h^2.
 */
inline __attribute__((always_inline)) float
tanh1(float x)
{
	const float s = x * x;
	float		p = -0.00069653301f;

	p = p * s + 0.00308992644f;
	p = p * s + -0.00868471712f;
	p = p * s + 0.0218357816f;
	p = p * s + -0.0539651662f;
	p = p * s + 0.133333221f;
	p = p * s + -0.333333343f;

	const float small = x + x * (s * p);
	float		a = -2.0f * std::fabs(x);

	a = a < -80.0f ? -80.0f : a;	/* NaN stays NaN */

	const float t = a * LOG2E + EXP_SHIFTER;
	const float n = t - EXP_SHIFTER;
	const float r = (a - n * LN2_HI) - n * LN2_LO;
	const float e = exp_reduced(r) * pow2_from_shifted(t);
	const float large = std::copysign(1.0f - (e + e) / (1.0f + e), x);

	return s < 0.5625f ? small : large;
}

/* x[i] = tanh(x[i]) over an array (the test entry rl_torch_tanh). */
RL_VECTOR_CLONES void
tanh_array(float *__restrict x, int64_t n)
{
	for (int64_t i = 0; i < n; i++)
		x[i] = tanh1(x[i]);
}

/*
 * A layer's activation in one pass over its GEMM output: h = tanh(h +
 * bias) row by row (the bias added after the product, as addmm's beta = 1
 * adds it).
 */
RL_VECTOR_CLONES void
tanh_bias_rows(float *__restrict h, const float *__restrict bias,
			   int64_t rows, int64_t cols)
{
	for (int64_t r = 0; r < rows; r++)
	{
		float	   *__restrict hr = h + r * cols;

		for (int64_t j = 0; j < cols; j++)
			hr[j] = tanh1(hr[j] + bias[j]);
	}
}

/*
 * Back through a tanh layer in one pass: d = d (1 - h^2) (as ATen's
 * tanh_backward rounds it) and gb = the column sums of the new d, the
 * layer's bias gradient, summed in double in acc (cols of them).
 */
RL_VECTOR_CLONES void
tanh_grad_rows(float *__restrict d, const float *__restrict h,
			   int64_t rows, int64_t cols, double *__restrict acc,
			   float *__restrict gb)
{
	for (int64_t j = 0; j < cols; j++)
		acc[j] = 0;
	for (int64_t r = 0; r < rows; r++)
	{
		float	   *__restrict dr = d + r * cols;
		const float *__restrict hr = h + r * cols;

		for (int64_t j = 0; j < cols; j++)
		{
			const float g = dr[j] * (1.0f - hr[j] * hr[j]);

			dr[j] = g;
			acc[j] += g;
		}
	}
	for (int64_t j = 0; j < cols; j++)
		gb[j] = (float) acc[j];
}

/*
 * The per-row part of the PPO loss and, if backward, of its gradient, on
 * columns (c.z, c.old, c.ret, act and adv filled in): every loop runs
 * across rows, with exp_float and log_float instead of libm calls, so that
 * it vectorises; per row, the operations are those of ppo_terms' formulas
 * in the order autograd takes them.  Fills c.pol, c.diff, c.pl and c.kl
 * for the caller's sums and, if backward, G(z) and G(value) in c.g.  The
 * columns never overlap; "ivdep" says so, since GCC ignores restrict on
 * local pointers and gives up on loops that would need more than ten
 * run-time overlap checks.
 */
RL_VECTOR_CLONES void
ppo_rows(const PpoCols &c, const int32_t *__restrict act,
		 const float *__restrict adv, int64_t rows, int64_t na, float lo,
		 float hi, float g_pol, float g_ent, float g_val, bool backward)
{
	float	   *__restrict mx = c.mx;
	float	   *__restrict se = c.se;
	float	   *__restrict lse = c.lse;
	float	   *__restrict pl = c.pl;
	float	   *__restrict logp = c.logp;

	/* log_softmax as ATen computes it: z - (max + log(sum exp(z - max))) */
#pragma GCC ivdep
	for (int64_t r = 0; r < rows; r++)
	{
		mx[r] = c.z[r];
		se[r] = 0;
		pl[r] = 0;
		logp[r] = 0;
	}
	for (int64_t j = 1; j < na; j++)
	{
		const float *__restrict z = c.z + j * rows;

#pragma GCC ivdep
		for (int64_t r = 0; r < rows; r++)
			mx[r] = std::max(mx[r], z[r]);
	}
	for (int64_t j = 0; j < na; j++)
	{
		const float *__restrict z = c.z + j * rows;

#pragma GCC ivdep
		for (int64_t r = 0; r < rows; r++)
			se[r] += exp_float(z[r] - mx[r]);
	}
#pragma GCC ivdep
	for (int64_t r = 0; r < rows; r++)
		lse[r] = mx[r] + log_float(se[r]);
	for (int64_t j = 0; j < na; j++)
	{
		const float *__restrict z = c.z + j * rows;
		float	   *__restrict lp = c.lp + j * rows;
		float	   *__restrict pr = c.pr + j * rows;

#pragma GCC ivdep
		for (int64_t r = 0; r < rows; r++)
		{
			const float l = z[r] - lse[r];
			const float p = exp_float(l);

			lp[r] = l;
			pr[r] = p;
			pl[r] += p * l;
			logp[r] = act[r] == j ? l : logp[r];
		}
	}

	/* ratio, the clipped surrogate, the value error and G(logp) */
	const float *__restrict zv = c.z + na * rows;
	const float *__restrict old = c.old;
	const float *__restrict ret = c.ret;
	float	   *__restrict pol = c.pol;
	float	   *__restrict diff = c.diff;
	float	   *__restrict kl = c.kl;
	float	   *__restrict glogp = c.glogp;

#pragma GCC ivdep
	for (int64_t r = 0; r < rows; r++)
	{
		const float rt = exp_float(logp[r] - old[r]);
		const float an = adv[r];
		const float s1 = rt * an;
		const float s2 = std::min(std::max(rt, lo), hi) * an;
		const bool	inside = rt >= lo && rt <= hi;
		const float half = g_pol * 0.5f * an;
		const float g_in = inside ? g_pol * an : 0.0f;
		const float g_tie = inside ? half + half : half;
		const float g_ratio = s1 < s2 ? g_pol * an : s1 > s2 ? g_in : g_tie;

		pol[r] = std::min(s1, s2);
		diff[r] = zv[r] - ret[r];
		kl[r] = old[r] - logp[r];
		glogp[r] = g_ratio * rt;
	}
	if (!backward)
		return;

	/* G(l), then through log_softmax to G(z); G(value) */
	float	   *__restrict gsum = c.gsum;

#pragma GCC ivdep
	for (int64_t r = 0; r < rows; r++)
		gsum[r] = 0;
	for (int64_t j = 0; j < na; j++)
	{
		const float *__restrict lp = c.lp + j * rows;
		const float *__restrict pr = c.pr + j * rows;
		float	   *__restrict g = c.g + j * rows;

#pragma GCC ivdep
		for (int64_t r = 0; r < rows; r++)
		{
			float		gl = g_ent * pr[r] + g_ent * lp[r] * pr[r];

			gl = act[r] == j ? gl + glogp[r] : gl;
			g[r] = gl;
			gsum[r] += gl;
		}
	}
	for (int64_t j = 0; j < na; j++)
	{
		const float *__restrict pr = c.pr + j * rows;
		float	   *__restrict g = c.g + j * rows;

#pragma GCC ivdep
		for (int64_t r = 0; r < rows; r++)
			g[r] -= pr[r] * gsum[r];
	}

	float	   *__restrict gv = c.g + na * rows;

#pragma GCC ivdep
	for (int64_t r = 0; r < rows; r++)
		gv[r] = g_val * (2.0f * diff[r]);
}

/* The PPO loss of one minibatch and its parts, as the float scalars they were. */
struct PpoTerms
{
	float		loss;
	float		policy_loss;
	float		value_loss;
	float		entropy;
	float		approx_kl;		/* mean(old_logp - logp) */
};

/*
 * The PPO loss of one minibatch and, if backward, its gradient with
 * respect to every parameter, written to net->grad (all of flat_grad).
 * The minibatch is the batch rows idx[0 .. rows - 1], or rows 0 .. rows - 1
 * when idx is NULL; w must be sized for it (gather if idx is given).
 *
 * Forward, for the rows x of the minibatch (m of them):
 *	 h1 = tanh(x W1' + b1), h2 = tanh(h1 W2' + b2),
 *	 z = h2 Wa' + ba (logits), v = h2 Wc' + bc (value),
 *	 l = log_softmax(z), p = exp(l), logp = l[action],
 *	 r = exp(logp - old_logp), A = advantages normalised over the rows,
 *	 policy_loss = -mean(min(r A, clamp(r, 1 - c, 1 + c) A)),
 *	 value_loss = mean((v - ret)^2), entropy = mean(-sum_k p l),
 *	 loss = policy_loss + value_coef value_loss - entropy_coef entropy.
 *
 * Backward, per row (G = d loss / d that quantity):
 *	 G(r) = -A/m where the min takes r A (r A < clamp(r) A), or where it
 *		 takes clamp(r) A with r inside [1 - c, 1 + c]; 0 where it takes the
 *		 clamped term outside; on a tie (r A = clamp(r) A) autograd's min()
 *		 sends half the gradient to each side, and so does this;
 *	 G(logp) = G(r) r;
 *	 G(l_k) = [k = action] G(logp) + (entropy_coef/m) p_k (1 + l_k)
 *		 (entropy = -mean sum p l with p = exp(l), d(p l)/dl = p + p l);
 *	 G(z_k) = G(l_k) - p_k sum_j G(l_j) (log_softmax);
 *	 G(v) = (value_coef/m) 2 (v - ret).
 * Then the layers: for y = u W' + b with G(y) known, G(W) = G(y)' u,
 * G(b) = column sums of G(y), G(u) = G(y) W; through tanh,
 * G(z) = G(h) (1 - h^2).  The float operations follow autograd's order
 * where it is cheap to, so both agree to rounding (test/c/test_torch.c).
 */
PpoTerms
ppo_terms(RlTorchNet *net, const RlTorchPPOConfig *cfg,
		  const RlTorchBatch *b, const int64_t *idx, int64_t rows,
		  RlPpoWork *w, bool backward)
{
	const RlArch *a = &net->arch;
	const int64_t d = a->obs_dim;
	const int64_t na = a->n_actions;
	const int64_t k = na + 1;
	const int64_t h = a->hidden;
	const float *x;

	if (idx != nullptr && b->obs == nullptr)
	{
		/* built on demand (bounded memory), checked as a stored batch is */
		float	   *xd = w->x.data();
		char		msg[RL_TORCH_ERRLEN] = "";

		if (b->obs_fn(b->obs_arg, idx, rows, xd, msg) != 0)
			fail("observations could not be built: %s", msg);
		check_finite(xd, rows * d, "observations");
		x = xd;
	}
	else if (idx != nullptr)
	{
		float	   *xd = w->x.data();

		for (int64_t r = 0; r < rows; r++)
			memcpy(xd + r * d, b->obs + idx[r] * d, sizeof(float) * d);
		x = xd;
	}
	else
	{
		if (b->obs == nullptr)
			fail("this computation needs the batch's observations");
		x = b->obs;
	}

	const float *w1 = net->param[P_W1].data_ptr<float>();
	const float *w2 = net->param[P_W2].data_ptr<float>();
	const float *hw = net->head_w.data_ptr<float>();
	const float *hb = net->head_b.data_ptr<float>();
	float	   *h1 = w->h1.data();
	float	   *h2 = w->h2.data();
	float	   *head = w->head.data();

	gemm(false, true, rows, h, d, x, d, w1, d, 0.0f, h1, h);
	tanh_bias_rows(h1, net->param[P_B1].data_ptr<float>(), rows, h);
	gemm(false, true, rows, h, h, h1, h, w2, h, 0.0f, h2, h);
	tanh_bias_rows(h2, net->param[P_B2].data_ptr<float>(), rows, h);
	gemm(false, true, rows, k, h, h2, h, hw, h, 0.0f, head, k);

	/*
	 * Advantages normalised over the minibatch: (A - mean) / (std + 1e-8),
	 * std unbiased; a single row has no spread and is only centred.
	 */
	float	   *adv = w->adv.data();
	double		sum = 0;

	for (int64_t r = 0; r < rows; r++)
		sum += b->advantages[idx ? idx[r] : r];

	const double mean_d = sum / rows;
	const float mean = (float) mean_d;

	if (rows > 1)
	{
		double		ss = 0;

		for (int64_t r = 0; r < rows; r++)
		{
			double		dev = b->advantages[idx ? idx[r] : r] - mean_d;

			ss += dev * dev;
		}

		const float denom = (float) std::sqrt(ss / (rows - 1)) + 1e-8f;

		for (int64_t r = 0; r < rows; r++)
			adv[r] = (b->advantages[idx ? idx[r] : r] - mean) / denom;
	}
	else
		adv[0] = b->advantages[idx ? idx[0] : 0] - mean;

	/* the rows: loss terms and G(head), on columns (PpoCols) */
	const PpoCols c = ppo_cols(w->rowf.data(), a, rows);
	int32_t    *act = w->act.data();

	for (int64_t r = 0; r < rows; r++)
	{
		const int64_t i = idx ? idx[r] : r;

		/* the bias after the product, as addmm's beta = 1 adds it */
		for (int64_t j = 0; j < k; j++)
			c.z[j * rows + r] = head[r * k + j] + hb[j];
		c.old[r] = b->old_logp[i];
		c.ret[r] = b->returns[i];
		act[r] = b->actions[i];
	}
	ppo_rows(c, act, adv, rows, na, (float) (1.0 - cfg->clip),
			 (float) (1.0 + cfg->clip), -1.0f / (float) rows,
			 cfg->entropy_coef / (float) rows, cfg->value_coef / (float) rows,
			 backward);

	double		s_pol = 0,
				s_val = 0,
				s_ent = 0,
				s_kl = 0;

	for (int64_t r = 0; r < rows; r++)
	{
		s_pol += c.pol[r];
		s_val += (double) c.diff[r] * c.diff[r];
		s_ent -= c.pl[r];
		s_kl += c.kl[r];
	}

	PpoTerms	t;

	t.policy_loss = (float) (-(s_pol / rows));
	t.value_loss = (float) (s_val / rows);
	t.entropy = (float) (s_ent / rows);
	t.approx_kl = (float) (s_kl / rows);
	t.loss = t.policy_loss + cfg->value_coef * t.value_loss -
		cfg->entropy_coef * t.entropy;
	if (!backward)
		return t;

	/* G(head) back in rows for the GEMMs; its column sums, the heads' bias gradient */
	float	   *dh = w->dhead.data();
	float	   *gb = net->head_gb.data_ptr<float>();

	for (int64_t j = 0; j < k; j++)
	{
		const float *g = c.g + j * rows;
		double		s = 0;

		for (int64_t r = 0; r < rows; r++)
		{
			dh[r * k + j] = g[r];
			s += g[r];
		}
		gb[j] = (float) s;
	}

	/* the heads, then back through the trunk */
	float	   *d2 = w->d2.data();
	float	   *d1 = w->d1.data();

	gemm(true, false, k, h, rows, dh, k, h2, h, 0.0f,
		 net->head_gw.data_ptr<float>(), h);
	gemm(false, false, rows, h, k, dh, k, hw, h, 0.0f, d2, h);
	tanh_grad_rows(d2, h2, rows, h, w->colsum.data(),
				   net->grad[P_B2].data_ptr<float>());
	gemm(true, false, h, h, rows, d2, h, h1, h, 0.0f,
		 net->grad[P_W2].data_ptr<float>(), h);
	gemm(false, false, rows, h, h, d2, h, w2, h, 0.0f, d1, h);
	tanh_grad_rows(d1, h1, rows, h, w->colsum.data(),
				   net->grad[P_B1].data_ptr<float>());
	gemm(true, false, h, d, rows, d1, h, x, d, 0.0f,
		 net->grad[P_W1].data_ptr<float>(), d);
	return t;
}

/*
 * Clip the gradient's global L2 norm to max_norm and take one Adam step,
 * as torch::nn::utils::clip_grad_norm_ and torch::optim::Adam did: false,
 * with nothing changed, if the norm is not finite.
 *
 * Clip: norm = ||g||, coef = max_norm / (norm + 1e-6), g *= coef if
 * coef < 1.  The sum of squares is taken in double; as with libtorch's
 * float norm, one beyond FLT_MAX counts as not finite.
 *
 * Adam, with t the step count after the increment:
 *	 m = beta1 m + (1 - beta1) g, v = beta2 v + (1 - beta2) g^2,
 *	 p -= lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps),
 * in float with the scalar factors rounded as libtorch's ops round them.
 */
RL_VECTOR_CLONES bool
clip_and_adam(RlTorchNet *net, float max_norm)
{
	const int64_t n = net->numel;
	const float *g = net->flat_grad.data_ptr<float>();
	double		acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
	int64_t		i = 0;

	/* eight independent sums, so the loop is not one long dependency chain */
	for (; i + 8 <= n; i += 8)
		for (int j = 0; j < 8; j++)
			acc[j] += (double) g[i + j] * g[i + j];
	for (; i < n; i++)
		acc[0] += (double) g[i] * g[i];

	const double sumsq = ((acc[0] + acc[1]) + (acc[2] + acc[3])) +
		((acc[4] + acc[5]) + (acc[6] + acc[7]));

	if (!(sumsq <= (double) FLT_MAX))
		return false;

	const float norm = (float) std::sqrt(sumsq);
	const float coef = max_norm / (norm + 1e-6f);
	const float scale = coef < 1.0f ? coef : 1.0f;

	net->step++;

	const double bc1 = 1 - std::pow(ADAM_BETA1, (double) net->step);
	const double bc2 = 1 - std::pow(ADAM_BETA2, (double) net->step);
	const float b1 = (float) ADAM_BETA1;
	const float c1 = (float) (1 - ADAM_BETA1);
	const float b2 = (float) ADAM_BETA2;
	const float c2 = (float) (1 - ADAM_BETA2);
	const float bc2_sqrt = (float) std::sqrt(bc2);
	const float eps = (float) ADAM_EPS;
	const float neg_step = (float) -(net->lr / bc1);
	float	   *__restrict p = net->flat_param.data_ptr<float>();
	float	   *__restrict m = net->flat_exp_avg.data_ptr<float>();
	float	   *__restrict v = net->flat_exp_avg_sq.data_ptr<float>();
	const float *__restrict gr = g;

	for (i = 0; i < n; i++)
	{
		const float gi = gr[i] * scale;
		const float mi = m[i] * b1 + c1 * gi;
		const float vi = v[i] * b2 + c2 * gi * gi;

		m[i] = mi;
		v[i] = vi;
		p[i] = p[i] + neg_step * mi / (std::sqrt(vi) / bc2_sqrt + eps);
	}
	return true;
}

/* Fill an RlTorchUpdateStats from one minibatch's terms (no step). */
void
put_terms(RlTorchUpdateStats *stats, const PpoTerms &t)
{
	stats->loss = t.loss;
	stats->policy_loss = t.policy_loss;
	stats->value_loss = t.value_loss;
	stats->entropy = t.entropy;
	stats->approx_kl = t.approx_kl;
	stats->minibatches = 0;
}

}								/* namespace */

/* Report the libtorch version for logs and run records. */
extern "C" RlTorchStatus
rl_torch_version(char *buf, size_t buflen, char *err)
{
	return guarded(err, [&]() {
		if (buf == nullptr)
			fail("version buffer must not be null");
		if (buflen < sizeof(TORCH_VERSION))
			fail("version buffer too small: need %zu bytes, got %zu",
				 sizeof(TORCH_VERSION), buflen);
		memcpy(buf, TORCH_VERSION, sizeof(TORCH_VERSION));
		return RL_TORCH_OK;
	});
}

/* Bound libtorch's threads to the agent's setting. */
extern "C" RlTorchStatus
rl_torch_set_threads(int32_t n, char *err)
{
	return guarded(err, [&]() {
		if (n <= 0 || n > 1024)
			fail("invalid thread count %d: must be between 1 and 1024", (int) n);
		at::set_num_threads(n);
		try
		{
			at::set_num_interop_threads(n);
		}
		catch (const c10::Error &)
		{
			/* the inter-op pool can be sized only once per process */
		}
		return RL_TORCH_OK;
	});
}

/* Report the current intra-op thread count. */
extern "C" int32_t
rl_torch_get_threads(void)
{
	try
	{
		return (int32_t) at::get_num_threads();
	}
	catch (...)
	{
		return -1;
	}
}

/* Build a fresh, deterministically initialised network and its optimizer. */
extern "C" RlTorchStatus
rl_torch_net_create(const RlArch *arch, uint64_t seed, float lr,
					RlTorchNet **out, char *err)
{
	return guarded(err, [&]() {
		if (out == nullptr)
			fail("output pointer must not be null");
		*out = nullptr;
		check_arch(arch);
		if (!std::isfinite(lr) || lr <= 0)
			fail("invalid learning rate %g: must be positive", (double) lr);

		auto		net = std::make_unique<RlTorchNet>();
		const int64_t in[4] = {arch->obs_dim, arch->hidden, arch->hidden, arch->hidden};
		at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(seed);

		net->arch = *arch;
		net->step = 0;
		net->lr = lr;
		make_buffers(net.get());
		/* torch.nn.Linear.reset_parameters, in module construction order */
		for (int l = 0; l < 4; l++)
		{
			const double a = std::sqrt(5.0);
			const double gain = std::sqrt(2.0 / (1 + a * a));
			const double wbound = std::sqrt(3.0) * (gain / std::sqrt((double) in[l]));
			const double bbound = 1 / std::sqrt((double) in[l]);

			net->param[2 * l].uniform_(-wbound, wbound, gen);
			net->param[2 * l + 1].uniform_(-bbound, bbound, gen);
		}
		*out = net.release();
		return RL_TORCH_OK;
	});
}

/* Release a net; NULL-safe, never throws. */
extern "C" void
rl_torch_net_free(RlTorchNet *net)
{
	try
	{
		delete net;
	}
	catch (...)
	{
		/* nothing sensible to do: destructors should not throw anyway */
	}
}

/*
 * Batched forward pass without autograd, for rollouts and validation.
 *
 * Every intermediate goes into workspace tensors kept in the net and the
 * results straight into the caller's arrays: fresh large tensors cost page
 * faults on every call (7x slower at n = 4096 on this machine).
 */
extern "C" RlTorchStatus
rl_torch_forward(RlTorchNet *net, const float *obs, int64_t n,
				 float *probs, float *values, char *err)
{
	return guarded(err, [&]() {
		if (net == nullptr)
			fail("net must not be null");
		check_obs(net, obs, n);

		const RlArch *a = &net->arch;
		const at::Tensor *p = net->param;

		/* normal (not inference) tensors, so they outlive any mode */
		if (!net->ws_h1.defined() || net->ws_h1.size(0) < n)
		{
			net->ws_h1 = at::Tensor();
			net->ws_h2 = at::Tensor();
			net->ws_logits = at::Tensor();
			net->ws_h1 = at::empty({n, a->hidden}, at::kFloat);
			net->ws_h2 = at::empty({n, a->hidden}, at::kFloat);
			net->ws_logits = at::empty({n, a->n_actions}, at::kFloat);
		}

		c10::InferenceMode guard;
		at::Tensor	h1 = net->ws_h1.narrow(0, 0, n);
		at::Tensor	h2 = net->ws_h2.narrow(0, 0, n);

		at::addmm_out(h1, p[P_B1], wrap(obs, {n, a->obs_dim}), p[P_W1].t()).tanh_();
		at::addmm_out(h2, p[P_B2], h1, p[P_W2].t()).tanh_();
		if (probs != nullptr)
		{
			at::Tensor	logits = net->ws_logits.narrow(0, 0, n);
			at::Tensor	out = at::from_blob(probs, {n, a->n_actions}, at::kFloat);

			at::addmm_out(logits, p[P_BA], h2, p[P_WA].t());
			at::softmax_out(out, logits, 1);
		}
		if (values != nullptr)
		{
			at::Tensor	out = at::from_blob(values, {n, 1}, at::kFloat);

			at::addmm_out(out, p[P_BC], h2, p[P_WC].t());
		}
		return RL_TORCH_OK;
	});
}

/* Number of named tensors, for checkpointing. */
extern "C" int32_t
rl_torch_tensor_count(const RlTorchNet *net)
{
	(void) net;
	return RL_TORCH_N_TENSORS;
}

/* Describe tensor i for writing a checkpoint header. */
extern "C" RlTorchStatus
rl_torch_tensor_info(const RlTorchNet *net, int32_t i, const char **name,
					 int32_t *ndim, int64_t shape[2], char *err)
{
	return guarded(err, [&]() {
		if (net == nullptr || name == nullptr || ndim == nullptr || shape == nullptr)
			fail("tensor_info arguments must not be null");
		if (i < 0 || i >= RL_TORCH_N_TENSORS)
			fail("tensor index %d out of range 0..%d", (int) i,
				 RL_TORCH_N_TENSORS - 1);
		*name = tensor_names[i];
		if (i == STEP_INDEX)
		{
			*ndim = 1;
			shape[0] = 1;
			shape[1] = 1;
			return RL_TORCH_OK;
		}

		const at::Tensor &p = net->param[i % RL_N_PARAMS];

		*ndim = (int32_t) p.dim();
		shape[0] = p.size(0);
		shape[1] = p.dim() == 2 ? p.size(1) : 1;
		return RL_TORCH_OK;
	});
}

/*
 * The view behind tensor index idx (a parameter or an Adam moment; not
 * optim.step).  Adam's moments always exist, zero until the first step:
 * exactly what the API promises for state that does not exist yet.
 */
static const at::Tensor &
named_view(const RlTorchNet *net, int idx)
{
	int			pi = idx % RL_N_PARAMS;

	if (idx < RL_N_PARAMS)
		return net->param[pi];
	return idx < 2 * RL_N_PARAMS ? net->exp_avg[pi] : net->exp_avg_sq[pi];
}

/* Copy a tensor out by name, for writing a checkpoint. */
extern "C" RlTorchStatus
rl_torch_tensor_get(const RlTorchNet *net, const char *name, float *out,
					int64_t n, char *err)
{
	return guarded(err, [&]() {
		if (net == nullptr)
			fail("net must not be null");

		int			idx = tensor_index(name);

		check_size(net, idx, out, n);
		if (idx == STEP_INDEX)
		{
			out[0] = (float) net->step;
			return RL_TORCH_OK;
		}
		memcpy(out, named_view(net, idx).data_ptr<float>(), sizeof(float) * n);
		return RL_TORCH_OK;
	});
}

/* Overwrite a tensor by name, for a warm start from a checkpoint. */
extern "C" RlTorchStatus
rl_torch_tensor_set(RlTorchNet *net, const char *name, const float *in,
					int64_t n, char *err)
{
	return guarded(err, [&]() {
		if (net == nullptr)
			fail("net must not be null");

		int			idx = tensor_index(name);

		check_size(net, idx, in, n);
		check_finite(in, n, tensor_names[idx]);

		if (idx == STEP_INDEX)
		{
			if (in[0] < 0 || in[0] > 16777216.0f || in[0] != std::floor(in[0]))
				fail("invalid optim.step %g: must be a whole number between 0 and 16777216",
					 (double) in[0]);
			net->step = (int64_t) in[0];
			return RL_TORCH_OK;
		}
		if (idx >= 2 * RL_N_PARAMS)
			for (int64_t k = 0; k < n; k++)
				if (in[k] < 0)
					fail("%s contains a negative value at index %lld",
						 tensor_names[idx], (long long) k);
		memcpy(named_view(net, idx).data_ptr<float>(), in, sizeof(float) * n);
		return RL_TORCH_OK;
	});
}

/* One PPO clipped-surrogate update over a rollout. */
extern "C" RlTorchStatus
rl_torch_ppo_update(RlTorchNet *net, const RlTorchPPOConfig *cfg,
					const RlTorchBatch *batch, RlTorchShouldStop should_stop,
					void *stop_arg, RlTorchUpdateStats *stats, char *err)
{
	RlTorchUpdateStats dummy;

	if (stats == nullptr)
		stats = &dummy;
	memset(stats, 0, sizeof(*stats));

	return guarded(err, [&]() {
		if (net == nullptr)
			fail("net must not be null");
		check_cfg(cfg);
		check_batch(net, batch);

		const int64_t n = batch->n;
		const int64_t mb = cfg->minibatch;

		ensure_work(&net->work, &net->arch, std::min(mb, n), true, true);
		net->lr = cfg->lr;

		/* only randperm below makes tensors */
		c10::InferenceMode guard;
		at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(cfg->seed);
		double		sum[5] = {0, 0, 0, 0, 0};
		int64_t		count = 0;
		RlTorchStatus result = RL_TORCH_OK;

		for (int pass = 0; pass < cfg->update_passes && result == RL_TORCH_OK; pass++)
		{
			at::Tensor	perm = at::randperm(n, gen, at::TensorOptions(at::kLong));
			const int64_t *order = perm.data_ptr<int64_t>();

			for (int64_t start = 0; start < n; start += mb)
			{
				if (should_stop != nullptr && should_stop(stop_arg))
				{
					put_err(err, "ppo update stopped on request after %lld minibatches",
							(long long) count);
					result = RL_TORCH_STOPPED;
					break;
				}

				PpoTerms	t = ppo_terms(net, cfg, batch, order + start,
										  std::min(mb, n - start), &net->work,
										  true);

				if (!std::isfinite(t.loss))
					fail("ppo loss is not finite after %lld minibatches",
						 (long long) count);
				if (!clip_and_adam(net, cfg->max_grad_norm))
					fail("ppo gradient norm is not finite after %lld minibatches",
						 (long long) count);

				sum[0] += t.loss;
				sum[1] += t.policy_loss;
				sum[2] += t.value_loss;
				sum[3] += t.entropy;
				sum[4] += t.approx_kl;
				count++;
			}
		}

		if (count > 0)
		{
			stats->loss = sum[0] / count;
			stats->policy_loss = sum[1] / count;
			stats->value_loss = sum[2] / count;
			stats->entropy = sum[3] / count;
			stats->approx_kl = sum[4] / count;
		}
		stats->minibatches = count;
		return result;
	});
}

/* The PPO loss of a whole batch (one minibatch), without a step. */
extern "C" RlTorchStatus
rl_torch_ppo_loss(RlTorchNet *net, const RlTorchPPOConfig *cfg,
				  const RlTorchBatch *batch, RlTorchUpdateStats *stats,
				  char *err)
{
	RlTorchUpdateStats dummy;

	if (stats == nullptr)
		stats = &dummy;
	memset(stats, 0, sizeof(*stats));

	return guarded(err, [&]() {
		if (net == nullptr)
			fail("net must not be null");
		check_cfg(cfg);
		check_batch(net, batch);

		RlPpoWork	w;

		ensure_work(&w, &net->arch, batch->n, false, false);

		c10::InferenceMode guard;

		put_terms(stats, ppo_terms(net, cfg, batch, nullptr, batch->n, &w, false));
		return RL_TORCH_OK;
	});
}

/*
 * Test only (rl_torch_internal.h): the loss of a whole batch as one
 * minibatch and its gradient before clipping, without a step.
 */
extern "C" RlTorchStatus
rl_torch_ppo_grad(RlTorchNet *net, const RlTorchPPOConfig *cfg,
				  const RlTorchBatch *batch, float *grad, int64_t n,
				  RlTorchUpdateStats *stats, char *err)
{
	RlTorchUpdateStats dummy;

	if (stats == nullptr)
		stats = &dummy;
	memset(stats, 0, sizeof(*stats));

	return guarded(err, [&]() {
		if (net == nullptr)
			fail("net must not be null");
		check_cfg(cfg);
		check_batch(net, batch);
		if (grad == nullptr || n != net->numel)
			fail("gradient buffer must hold %lld floats", (long long) net->numel);

		RlPpoWork	w;

		ensure_work(&w, &net->arch, batch->n, false, true);

		c10::InferenceMode guard;

		put_terms(stats, ppo_terms(net, cfg, batch, nullptr, batch->n, &w, true));
		for (int i = 0; i < RL_N_PARAMS; i++)
		{
			int64_t		numel = net->grad[i].numel();

			memcpy(grad, net->grad[i].data_ptr<float>(), sizeof(float) * numel);
			grad += numel;
		}
		return RL_TORCH_OK;
	});
}

/* Test only (rl_torch_internal.h): the update's tanh over an array. */
extern "C" RlTorchStatus
rl_torch_tanh(float *x, int64_t n, char *err)
{
	return guarded(err, [&]() {
		if (x == nullptr || n <= 0)
			fail("tanh needs a non-empty array");

		tanh_array(x, n);
		return RL_TORCH_OK;
	});
}
