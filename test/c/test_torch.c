/*-------------------------------------------------------------------------
 *
 * test_torch.c
 *	  Standalone TAP test of the PPO update of the libtorch shim
 *	  (src/torch/rl_torch.cpp): its hand-derived backward pass, gradient
 *	  clipping and Adam against the former autograd implementation kept in
 *	  torch_reference.cpp.  No PostgreSQL needed.
 *
 *	  test_torch [--bench | --tanh-sweep]
 *
 * Checks, on random and on "real-like" batches (observations from a
 * random-walk price window), for two architectures: the gradient of one
 * minibatch (sizes 1 to 1000) equals autograd's; parameters, Adam moments,
 * optim.step and the statistics after 80 steps (24 and 36 in the warm-start
 * cases) equal the reference's, with the gradient-norm clip active and
 * inactive, minibatch sizes 1, 64 and 256 and a ragged last minibatch; a
 * warm start from tensors set through rl_torch_tensor_set continues exactly;
 * the same seed gives bit-identical results; a loss or gradient norm that
 * overflows is the same error in both.
 *
 * "Equal" for floats: a relative error ||new - ref|| / ||ref|| (L2) of at
 * most 1e-6 for each whole vector (the gradient; the parameters; each Adam
 * moment), and of at most 1e-4 for each single tensor.  Bit-identical is
 * not expected: GEMMs, sums, exp, log and tanh round differently, and
 * libtorch's Adam fuses multiply-adds.  Per tensor the bound is looser
 * because a tensor whose value cancels to near zero (critic.bias, one
 * element, or actor.bias's gradient summed over rows) has a relative
 * error of rounding size over the terms that cancelled, not over itself.
 * For scale, test_noise_floor prints how far the reference drifts from
 * itself when started from weights one ulp apart.
 *
 * --bench also prints the median microseconds per 256-row update step of
 * both implementations on one thread, with the load average (informational
 * only; timings are never a pass condition).  --tanh-sweep checks the
 * update's tanh on every float up to 20 rather than a sample.
 *
 * test/c/test_torch.c
 *
 *-------------------------------------------------------------------------
 */
#define _POSIX_C_SOURCE 199309L

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "rl_torch.h"
#include "rl_torch_internal.h"
#include "torch_reference.h"
#include "tap.h"

#define TOL 1e-6			/* whole vectors */
#define TOL_TENSOR 1e-4		/* single tensors */

/* Abort the run when a prerequisite fails: later checks would be noise. */
static void
require(int cond, const char *what, const char *err)
{
	if (!cond)
		bail_out("%s: %s", what, err ? err : "");
}

/* Deterministic uniform numbers in [0, 1) for test data (xorshift64*). */
static uint64_t rng_state = 88172645463325252ULL;

static double
urand(void)
{
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return (double) ((rng_state * 2685821657736338717ULL) >> 11) / 9007199254740992.0;
}

/* A standard normal number (Box-Muller). */
static double
nrand(void)
{
	double		u = urand();

	if (u < 1e-300)
		u = 1e-300;
	return sqrt(-2 * log(u)) * cos(6.283185307179586 * urand());
}

/* Monotonic time in seconds. */
static double
now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* The 1-, 5- and 15-minute load averages as one string, for timings. */
static const char *
loadavg(void)
{
	static char buf[64];
	FILE	   *f = fopen("/proc/loadavg", "r");
	double		a = 0,
				b = 0,
				c = 0;

	if (f == NULL || fscanf(f, "%lf %lf %lf", &a, &b, &c) != 3)
		snprintf(buf, sizeof(buf), "unknown");
	else
		snprintf(buf, sizeof(buf), "%.2f %.2f %.2f", a, b, c);
	if (f != NULL)
		fclose(f);
	return buf;
}

/* The default architecture (window 32) and an odd one with features. */
static const RlArch arch_default = {32, 0, 33, 64, RL_N_ACTIONS};
static const RlArch arch_odd = {5, 4, 10, 17, RL_N_ACTIONS};

/* The default PPO settings of ARCHITECTURE.md "The trading environment". */
static RlTorchPPOConfig
default_cfg(uint64_t seed)
{
	RlTorchPPOConfig c;

	c.lr = 3e-4f;
	c.clip = 0.2f;
	c.value_coef = 0.5f;
	c.entropy_coef = 0.01f;
	c.max_grad_norm = 0.5f;
	c.update_passes = 4;
	c.minibatch = 256;
	c.seed = seed;
	return c;
}

/* A new net and a reference net, same architecture and initial weights. */
typedef struct Pair
{
	RlArch		arch;
	RlTorchNet *nw;
	RefTorchNet *rf;
} Pair;

/* Both nets from one seed; bail out if either cannot be built. */
static Pair
make_pair(const RlArch *arch, uint64_t seed)
{
	Pair		p;
	char		err[RL_TORCH_ERRLEN];

	p.arch = *arch;
	require(rl_torch_net_create(arch, seed, 3e-4f, &p.nw, err) == RL_TORCH_OK,
			"create net", err);
	require(ref_torch_net_create(arch, seed, 3e-4f, &p.rf, err) == RL_TORCH_OK,
			"create reference net", err);
	return p;
}

/* Release both nets of a pair. */
static void
free_pair(Pair *p)
{
	rl_torch_net_free(p->nw);
	ref_torch_net_free(p->rf);
}

/* All 25 named tensors of a net, read through the C API. */
typedef struct Snapshot
{
	const char *name[RL_TORCH_N_TENSORS];
	int64_t		numel[RL_TORCH_N_TENSORS];
	float	   *data[RL_TORCH_N_TENSORS];
	int64_t		n_grad;			/* elements over the 8 parameters */
} Snapshot;

/* Names and sizes from rl_torch_tensor_info, storage allocated. */
static Snapshot *
new_snapshot(const RlTorchNet *net)
{
	Snapshot   *s = calloc(1, sizeof(Snapshot));
	char		err[RL_TORCH_ERRLEN];

	for (int i = 0; i < RL_TORCH_N_TENSORS; i++)
	{
		int32_t		ndim;
		int64_t		shape[2];

		require(rl_torch_tensor_info(net, i, &s->name[i], &ndim, shape, err) ==
				RL_TORCH_OK, "tensor_info", err);
		s->numel[i] = shape[0] * shape[1];
		s->data[i] = calloc(s->numel[i], sizeof(float));
		if (i < RL_N_PARAMS)
			s->n_grad += s->numel[i];
	}
	return s;
}

/* Snapshot of the new net (rf NULL) or of the reference net. */
static Snapshot *
snapshot(const RlTorchNet *nw, const RefTorchNet *rf, const RlTorchNet *shape_of)
{
	Snapshot   *s = new_snapshot(shape_of);
	char		err[RL_TORCH_ERRLEN];

	for (int i = 0; i < RL_TORCH_N_TENSORS; i++)
	{
		RlTorchStatus rc = rf != NULL ?
			ref_torch_tensor_get(rf, s->name[i], s->data[i], s->numel[i], err) :
			rl_torch_tensor_get(nw, s->name[i], s->data[i], s->numel[i], err);

		require(rc == RL_TORCH_OK, "tensor_get", err);
	}
	return s;
}

/* Write every tensor of a snapshot into a new net or a reference net. */
static int
restore(RlTorchNet *nw, RefTorchNet *rf, const Snapshot *s, char *err)
{
	for (int i = 0; i < RL_TORCH_N_TENSORS; i++)
	{
		RlTorchStatus rc = rf != NULL ?
			ref_torch_tensor_set(rf, s->name[i], s->data[i], s->numel[i], err) :
			rl_torch_tensor_set(nw, s->name[i], s->data[i], s->numel[i], err);

		if (rc != RL_TORCH_OK)
			return 0;
	}
	return 1;
}

/* Release a snapshot and its tensors. */
static void
free_snapshot(Snapshot *s)
{
	for (int i = 0; i < RL_TORCH_N_TENSORS; i++)
		free(s->data[i]);
	free(s);
}

/* Relative errors of "new" against the reference. */
typedef struct Err
{
	double		vec;			/* largest ||new - ref|| / ||ref|| over vectors */
	double		tensor;			/* the same over single tensors */
	const char *tensor_name;	/* the tensor with the largest */
} Err;

/* ||a - b||^2 and ||b||^2 over n floats, in double. */
static void
sq_sums(const float *a, const float *b, int64_t n, double *diff, double *ref)
{
	*diff = 0;
	*ref = 0;
	for (int64_t i = 0; i < n; i++)
	{
		double		d = (double) a[i] - b[i];

		*diff += d * d;
		*ref += (double) b[i] * b[i];
	}
}

/* sqrt(diff / ref): 0 when equal, infinite when ref is zero or any NaN. */
static double
rel_l2(double diff, double ref)
{
	if (diff == 0)
		return 0;
	if (isnan(diff) || isnan(ref) || ref == 0)
		return INFINITY;
	return sqrt(diff / ref);
}

/*
 * Compare tensors a[i] with reference tensors b[i] (numel[i] floats, named
 * name[i]) for i in [0, count); each run of RL_N_PARAMS consecutive
 * tensors is one vector (all parameters, or all of one Adam moment).
 */
static Err
compare(float *const *a, float *const *b, const int64_t *numel,
		const char *const *name, int count)
{
	Err			e = {0, 0, ""};

	for (int g = 0; g < count; g += RL_N_PARAMS)
	{
		double		dv = 0,
					rv = 0,
					ev;

		for (int i = g; i < g + RL_N_PARAMS && i < count; i++)
		{
			double		d,
						r,
						ei;

			sq_sums(a[i], b[i], numel[i], &d, &r);
			dv += d;
			rv += r;
			ei = rel_l2(d, r);
			if (!(ei <= e.tensor))
			{
				e.tensor = ei;
				e.tensor_name = name[i];
			}
		}
		ev = rel_l2(dv, rv);
		if (!(ev <= e.vec))
			e.vec = ev;
	}
	return e;
}

/* Within the bounds of the header comment. */
static int
err_ok(const Err *e)
{
	return e->vec <= TOL && e->tensor <= TOL_TENSOR;
}

/* Compare the 24 float tensors of two snapshots (optim.step separately). */
static Err
snapshot_err(const Snapshot *a, const Snapshot *b)
{
	return compare(a->data, b->data, a->numel, a->name, 3 * RL_N_PARAMS);
}

/* Bit-for-bit equality of two snapshots. */
static int
same_snapshot(const Snapshot *a, const Snapshot *b)
{
	for (int i = 0; i < RL_TORCH_N_TENSORS; i++)
		if (memcmp(a->data[i], b->data[i], sizeof(float) * a->numel[i]) != 0)
			return 0;
	return 1;
}

/*
 * Statistics agree: each within TOL relative to max(|ref|, 1) (a loss near
 * zero has no meaningful relative error), minibatch counts equal.
 */
static double
stats_err(const RlTorchUpdateStats *a, const RlTorchUpdateStats *b)
{
	const double x[5] = {a->loss, a->policy_loss, a->value_loss, a->entropy, a->approx_kl};
	const double y[5] = {b->loss, b->policy_loss, b->value_loss, b->entropy, b->approx_kl};
	double		e = a->minibatches == b->minibatches ? 0 : INFINITY;

	for (int i = 0; i < 5; i++)
		e = fmax(e, fabs(x[i] - y[i]) / fmax(fabs(y[i]), 1.0));
	return e;
}

/* A batch with its own storage. */
typedef struct TestBatch
{
	RlTorchBatch b;
	float	   *obs;
	int32_t    *actions;
	float	   *old_logp;
	float	   *adv;
	float	   *ret;
} TestBatch;

/* Storage for n rows, the RlTorchBatch pointing into it. */
static TestBatch *
alloc_batch(const RlArch *arch, int64_t n)
{
	TestBatch  *t = calloc(1, sizeof(TestBatch));

	t->obs = malloc(sizeof(float) * n * arch->obs_dim);
	t->actions = malloc(sizeof(int32_t) * n);
	t->old_logp = malloc(sizeof(float) * n);
	t->adv = malloc(sizeof(float) * n);
	t->ret = malloc(sizeof(float) * n);
	t->b.n = n;
	t->b.obs = t->obs;
	t->b.actions = t->actions;
	t->b.old_logp = t->old_logp;
	t->b.advantages = t->adv;
	t->b.returns = t->ret;
	return t;
}

/* Release a batch and its arrays. */
static void
free_batch(TestBatch *t)
{
	free(t->obs);
	free(t->actions);
	free(t->old_logp);
	free(t->adv);
	free(t->ret);
	free(t);
}

/*
 * Actions drawn from the net's policy for t->obs; old_logp their log
 * probability plus N(0, noise) (noise > 0 puts ratios on both sides of
 * the clip range from the first step on).
 */
static void
sample_actions(RlTorchNet *net, const RlArch *arch, TestBatch *t, double noise)
{
	int64_t		n = t->b.n;
	float	   *probs = malloc(sizeof(float) * n * arch->n_actions);
	char		err[RL_TORCH_ERRLEN];

	require(rl_torch_forward(net, t->obs, n, probs, NULL, err) == RL_TORCH_OK,
			"forward for batch", err);
	for (int64_t i = 0; i < n; i++)
	{
		double		u = urand(),
					acc = 0;
		int			a = arch->n_actions - 1;

		for (int k = 0; k < arch->n_actions; k++)
		{
			acc += probs[i * arch->n_actions + k];
			if (u < acc)
			{
				a = k;
				break;
			}
		}
		t->actions[i] = a;
		t->old_logp[i] = (float) (log(fmax(probs[i * arch->n_actions + a], 1e-30)) +
								  noise * nrand());
	}
	free(probs);
}

/* Random observations, advantages and returns; noisy old_logp. */
static TestBatch *
random_batch(RlTorchNet *net, const RlArch *arch, int64_t n)
{
	TestBatch  *t = alloc_batch(arch, n);

	for (int64_t i = 0; i < n * arch->obs_dim; i++)
		t->obs[i] = (float) (2 * nrand());
	sample_actions(net, arch, t, 0.3);
	for (int64_t i = 0; i < n; i++)
	{
		t->adv[i] = (float) (nrand() * 3 + 0.5);
		t->ret[i] = (float) (nrand() + 0.2);
	}
	return t;
}

/*
 * A batch as the environment makes it: one random-walk price series
 * (log returns N(0, 1%)), each row the last "window" returns / sigma, the
 * position held (-1, 0, +1), features N(0, 1); actions from the policy
 * with exact old_logp (ratio 1 at the first step); the advantage the next
 * return earned by the action, the return a smoothed version of it.
 */
static TestBatch *
real_batch(RlTorchNet *net, const RlArch *arch, int64_t n)
{
	TestBatch  *t = alloc_batch(arch, n);
	const int	w = arch->window;
	const double sigma = 0.01;
	double	   *r = malloc(sizeof(double) * (n + w + 1));
	double		price = 100;
	int			pos = 0;

	for (int64_t i = 0; i < n + w + 1; i++)
	{
		double		next = price * exp(sigma * nrand() + 0.0002);

		r[i] = log(next / price);
		price = next;
	}
	for (int64_t i = 0; i < n; i++)
	{
		float	   *o = t->obs + i * arch->obs_dim;

		for (int k = 0; k < w; k++)
			o[k] = (float) (r[i + k] / sigma);
		o[w] = (float) pos;
		for (int k = 0; k < arch->n_features; k++)
			o[w + 1 + k] = (float) nrand();
		if (urand() < 0.1)
			pos = (int) (urand() * 3) - 1;
	}
	sample_actions(net, arch, t, 0.0);
	for (int64_t i = 0; i < n; i++)
	{
		double		earned = (t->actions[i] - 1) * r[i + w] / sigma;

		t->adv[i] = (float) earned;
		t->ret[i] = (float) (0.5 * earned + 0.1);
	}
	free(r);
	return t;
}

/*
 * Gradient of one minibatch: rl_torch_ppo_grad against autograd, for the
 * first "rows" rows of a batch; *serr gets the statistics' error.
 */
static Err
grad_err(Pair *p, const TestBatch *t, int64_t rows, const RlTorchPPOConfig *cfg,
		 double *serr)
{
	Snapshot   *s = new_snapshot(p->nw);
	float	   *g_new = malloc(sizeof(float) * s->n_grad);
	float	   *g_ref = malloc(sizeof(float) * s->n_grad);
	float	   *pa[RL_N_PARAMS],
			   *pb[RL_N_PARAMS];
	RlTorchBatch b = t->b;
	RlTorchUpdateStats st_new,
				st_ref;
	char		err[RL_TORCH_ERRLEN];
	int64_t		off = 0;
	Err			e;

	b.n = rows;
	require(rl_torch_ppo_grad(p->nw, cfg, &b, g_new, s->n_grad, &st_new, err) ==
			RL_TORCH_OK, "rl_torch_ppo_grad", err);
	require(ref_torch_ppo_grad(p->rf, cfg, &b, g_ref, s->n_grad, &st_ref, err) ==
			RL_TORCH_OK, "ref_torch_ppo_grad", err);
	for (int i = 0; i < RL_N_PARAMS; i++)
	{
		pa[i] = g_new + off;
		pb[i] = g_ref + off;
		off += s->numel[i];
	}
	e = compare(pa, pb, s->numel, s->name, RL_N_PARAMS);
	*serr = stats_err(&st_new, &st_ref);
	free(g_new);
	free(g_ref);
	free_snapshot(s);
	return e;
}

/* Keep the larger of two errors (a NaN counts as larger). */
static void
worse(Err *acc, const Err *e)
{
	if (!(e->vec <= acc->vec))
		acc->vec = e->vec;
	if (!(e->tensor <= acc->tensor))
	{
		acc->tensor = e->tensor;
		acc->tensor_name = e->tensor_name;
	}
}

/* Gradients against autograd on random and real-like minibatches. */
static void
test_gradients(const RlArch *arch, const char *label)
{
	static const int64_t sizes[] = {1, 2, 7, 64, 256, 1000};
	Pair		p = make_pair(arch, 3);
	TestBatch  *rnd = random_batch(p.nw, arch, 1000);
	TestBatch  *real = real_batch(p.nw, arch, 1000);
	RlTorchPPOConfig cfg = default_cfg(1);

	for (int kind = 0; kind < 2; kind++)
	{
		TestBatch  *t = kind == 0 ? rnd : real;
		Err			e = {0, 0, ""};
		double		se = 0;

		for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++)
		{
			double		si;
			Err			ei = grad_err(&p, t, sizes[i], &cfg, &si);

			worse(&e, &ei);
			se = fmax(se, si);
		}
		ok(err_ok(&e) && se <= TOL,
		   "%s, %s minibatches of 1..1000 rows: gradient and loss equal autograd's",
		   label, kind == 0 ? "random" : "real-like");
		diag("  gradient rel. error %.3g, worst tensor %.3g (%s), statistics %.3g",
			 e.vec, e.tensor, e.tensor_name, se);
	}

	/* a trained net (ratios away from 1) and large coefficients */
	{
		RlTorchUpdateStats st;
		char		err[RL_TORCH_ERRLEN];
		double		se;
		Err			e;
		RlTorchPPOConfig big = cfg;

		cfg.lr = 1e-2f;
		require(rl_torch_ppo_update(p.nw, &cfg, &rnd->b, NULL, NULL, &st, err) == RL_TORCH_OK,
				"update before gradient check", err);
		{
			Snapshot   *s = snapshot(p.nw, NULL, p.nw);

			require(restore(NULL, p.rf, s, err), "align reference", err);
			free_snapshot(s);
		}
		big.value_coef = 3.0f;
		big.entropy_coef = 0.5f;
		big.clip = 0.05f;
		e = grad_err(&p, real, 1000, &big, &se);
		ok(err_ok(&e) && se <= TOL,
		   "%s, after steps at lr 1e-2, clip 0.05, large coefficients: gradient equals autograd's",
		   label);
		diag("  gradient rel. error %.3g, worst tensor %.3g (%s), statistics %.3g",
			 e.vec, e.tensor, e.tensor_name, se);
	}
	free_batch(rnd);
	free_batch(real);
	free_pair(&p);
}

/*
 * Run "updates" PPO updates (seeds cfg.seed, cfg.seed + 1, ...) on both
 * nets of a pair; *se gets the largest error of a statistic.  Returns the
 * steps taken, -1 on an error.
 */
static int64_t
run_updates(RlTorchNet *nw, RefTorchNet *rf, const TestBatch *t,
			RlTorchPPOConfig cfg, int updates, double *se)
{
	char		err[RL_TORCH_ERRLEN];
	int64_t		steps = 0;
	uint64_t	seed0 = cfg.seed;

	*se = 0;
	for (int u = 0; u < updates; u++)
	{
		RlTorchUpdateStats sn,
					sr;

		cfg.seed = seed0 + u;
		if ((nw != NULL &&
			 rl_torch_ppo_update(nw, &cfg, &t->b, NULL, NULL, &sn, err) != RL_TORCH_OK) ||
			ref_torch_ppo_update(rf, &cfg, &t->b, NULL, NULL, &sr, err) != RL_TORCH_OK)
		{
			diag("  %s", err);
			return -1;
		}
		if (nw != NULL)
			*se = fmax(*se, stats_err(&sn, &sr));
		steps += sr.minibatches;
	}
	return steps;
}

/*
 * Run "updates" PPO updates on both nets and compare all 25 tensors and
 * the statistics of each update.
 */
static void
compare_updates(Pair *p, const TestBatch *t, RlTorchPPOConfig cfg,
				int updates, const char *what)
{
	double		se;
	int64_t		steps = run_updates(p->nw, p->rf, t, cfg, updates, &se);
	Snapshot   *a = snapshot(p->nw, NULL, p->nw);
	Snapshot   *b = snapshot(NULL, p->rf, p->nw);
	Err			e = snapshot_err(a, b);

	ok(steps > 0 && err_ok(&e) && se <= TOL && a->data[24][0] == b->data[24][0],
	   "%s: %lld steps, parameters, Adam moments and step equal the reference's",
	   what, (long long) steps);
	diag("  rel. error %.3g, worst tensor %.3g (%s), statistics %.3g, optim.step %g",
		 e.vec, e.tensor, e.tensor_name, se, a->data[24][0]);
	free_snapshot(a);
	free_snapshot(b);
}

/*
 * How far float rounding alone moves 80 steps: the reference against
 * itself started from weights one ulp apart, beside the new code against
 * the reference (informational; compare_updates checks the latter).
 */
static void
test_noise_floor(void)
{
	char		err[RL_TORCH_ERRLEN];
	Pair		p = make_pair(&arch_default, 17);
	RefTorchNet *nudged;
	TestBatch  *t = random_batch(p.nw, &arch_default, 1000);
	RlTorchPPOConfig cfg = default_cfg(700);
	Snapshot   *s = snapshot(p.nw, NULL, p.nw);
	Snapshot   *a,
			   *b,
			   *c;
	Err			e_new,
				e_ulp;
	double		se;

	require(ref_torch_net_create(&arch_default, 17, 3e-4f, &nudged, err) == RL_TORCH_OK,
			"create", err);
	for (int i = 0; i < RL_N_PARAMS; i++)
		for (int64_t k = 0; k < s->numel[i]; k++)
			s->data[i][k] = nextafterf(s->data[i][k], urand() < 0.5 ? -1.0f : 1.0f);
	require(restore(NULL, nudged, s, err), "restore", err);
	require(run_updates(p.nw, p.rf, t, cfg, 5, &se) == 80 &&
			run_updates(NULL, nudged, t, cfg, 5, &se) == 80, "updates", err);
	a = snapshot(p.nw, NULL, p.nw);
	b = snapshot(NULL, p.rf, p.nw);
	c = snapshot(NULL, nudged, p.nw);
	e_new = snapshot_err(a, b);
	e_ulp = snapshot_err(c, b);
	ok(err_ok(&e_new), "noise floor scenario: new code against the reference after 80 steps");
	diag("  new against reference:                 rel. error %.3g, worst tensor %.3g (%s)",
		 e_new.vec, e_new.tensor, e_new.tensor_name);
	diag("  reference against itself 1 ulp apart:  rel. error %.3g, worst tensor %.3g (%s)",
		 e_ulp.vec, e_ulp.tensor, e_ulp.tensor_name);
	free_snapshot(a);
	free_snapshot(b);
	free_snapshot(c);
	free_snapshot(s);
	ref_torch_net_free(nudged);
	free_batch(t);
	free_pair(&p);
}

/* Whole updates against the reference. */
static void
test_updates(void)
{
	/* random batch, 1000 rows = 3 x 256 + 232, default settings */
	{
		Pair		p = make_pair(&arch_default, 11);
		TestBatch  *t = random_batch(p.nw, &arch_default, 1000);
		RlTorchPPOConfig cfg = default_cfg(100);

		compare_updates(&p, t, cfg, 5, "random, minibatch 256 (ragged 232), clip 0.5");
		free_batch(t);
		free_pair(&p);
	}
	/* gradient-norm clip always active */
	{
		Pair		p = make_pair(&arch_default, 12);
		TestBatch  *t = random_batch(p.nw, &arch_default, 1000);
		RlTorchPPOConfig cfg = default_cfg(200);

		cfg.max_grad_norm = 0.01f;
		compare_updates(&p, t, cfg, 5, "random, max_grad_norm 0.01 (clip active)");
		free_batch(t);
		free_pair(&p);
	}
	/* gradient-norm clip never active, larger steps */
	{
		Pair		p = make_pair(&arch_default, 13);
		TestBatch  *t = random_batch(p.nw, &arch_default, 1000);
		RlTorchPPOConfig cfg = default_cfg(300);

		cfg.max_grad_norm = 1e30f;
		cfg.lr = 1e-3f;
		compare_updates(&p, t, cfg, 5, "random, max_grad_norm 1e30 (clip inactive), lr 1e-3");
		free_batch(t);
		free_pair(&p);
	}
	/* real-like, minibatch 64 over 600 rows (ragged 24), odd architecture too */
	for (int k = 0; k < 2; k++)
	{
		const RlArch *arch = k == 0 ? &arch_default : &arch_odd;
		Pair		p = make_pair(arch, 14);
		TestBatch  *t = real_batch(p.nw, arch, 600);
		RlTorchPPOConfig cfg = default_cfg(400);
		char		what[128];

		cfg.minibatch = 64;
		cfg.update_passes = 2;
		snprintf(what, sizeof(what), "real-like%s, minibatch 64 (ragged 24)",
				 k == 0 ? "" : " (window 5, 4 features, hidden 17)");
		compare_updates(&p, t, cfg, 4, what);
		free_batch(t);
		free_pair(&p);
	}
	/* minibatches of one row: advantages only centred (all zero) */
	{
		Pair		p = make_pair(&arch_default, 15);
		TestBatch  *t = real_batch(p.nw, &arch_default, 40);
		RlTorchPPOConfig cfg = default_cfg(500);

		cfg.minibatch = 1;
		cfg.update_passes = 2;
		compare_updates(&p, t, cfg, 1, "real-like, minibatch 1");
		free_batch(t);
		free_pair(&p);
	}
	/* a batch smaller than the minibatch, clip active */
	{
		Pair		p = make_pair(&arch_odd, 16);
		TestBatch  *t = random_batch(p.nw, &arch_odd, 100);
		RlTorchPPOConfig cfg = default_cfg(600);

		cfg.max_grad_norm = 0.01f;
		compare_updates(&p, t, cfg, 20, "random, 100 rows < minibatch 256, clip active");
		free_batch(t);
		free_pair(&p);
	}
}

/* An observation builder over a stored batch: copies rows, may fail or poison. */
typedef struct ObsSource
{
	const float *obs;
	int32_t		obs_dim;
	int			calls;
	int			fail_at;		/* -1: never */
	int			nan_at;			/* -1: never */
} ObsSource;

static int
obs_from_rows(void *arg, const int64_t *idx, int64_t m, float *out, char *err)
{
	ObsSource  *o = (ObsSource *) arg;

	if (o->calls++ == o->fail_at)
	{
		snprintf(err, RL_TORCH_ERRLEN, "row source gave up at call %d", o->calls);
		return 1;
	}
	for (int64_t i = 0; i < m; i++)
		memcpy(out + i * o->obs_dim, o->obs + idx[i] * o->obs_dim,
			   sizeof(float) * o->obs_dim);
	if (o->calls - 1 == o->nan_at)
		out[0] = NAN;
	return 0;
}

/*
 * Bounded memory (issue 16): observations built per minibatch by a
 * callback give the update bit for bit what stored ones give; a failing
 * or non-finite builder ends the update with an error.
 */
static void
test_obs_on_demand(void)
{
	RlTorchNet *a;
	RlTorchNet *b;
	char		err[RL_TORCH_ERRLEN];
	RlTorchUpdateStats sa;
	RlTorchUpdateStats sb;
	RlTorchPPOConfig cfg = default_cfg(700);
	TestBatch  *t;
	RlTorchBatch lazy;
	ObsSource	src = {NULL, arch_default.obs_dim, 0, -1, -1};
	Snapshot   *xa;
	Snapshot   *xb;
	int			same = 1;
	RlTorchStatus rc;

	require(rl_torch_net_create(&arch_default, 17, 3e-4f, &a, err) == RL_TORCH_OK, "create", err);
	require(rl_torch_net_create(&arch_default, 17, 3e-4f, &b, err) == RL_TORCH_OK, "create", err);
	t = random_batch(a, &arch_default, 1000);
	src.obs = t->obs;
	lazy = t->b;
	lazy.obs = NULL;
	lazy.obs_fn = obs_from_rows;
	lazy.obs_arg = &src;
	require(rl_torch_ppo_update(a, &cfg, &t->b, NULL, NULL, &sa, err) == RL_TORCH_OK, "update", err);
	rc = rl_torch_ppo_update(b, &cfg, &lazy, NULL, NULL, &sb, err);
	ok(rc == RL_TORCH_OK && sb.minibatches > 0 && src.calls == sb.minibatches,
	   "observations built per minibatch: the update runs, one call per minibatch (%d)", src.calls);
	xa = snapshot(a, NULL, a);
	xb = snapshot(b, NULL, b);
	for (int i = 0; i < RL_TORCH_N_TENSORS; i++)
		same = same && memcmp(xa->data[i], xb->data[i], sizeof(float) * xa->numel[i]) == 0;
	ok(same && sa.loss == sb.loss && sa.approx_kl == sb.approx_kl,
	   "... and gives bit for bit the parameters, Adam state and stats of stored observations");

	src.calls = 0;
	src.fail_at = 2;
	ok(rl_torch_ppo_update(b, &cfg, &lazy, NULL, NULL, &sb, err) == RL_TORCH_ERROR &&
	   strstr(err, "observations could not be built: row source gave up at call 3") != NULL,
	   "a builder that fails ends the update with its message (%s)", err);
	src.calls = 0;
	src.fail_at = -1;
	src.nan_at = 1;
	ok(rl_torch_ppo_update(b, &cfg, &lazy, NULL, NULL, &sb, err) == RL_TORCH_ERROR &&
	   strstr(err, "observations") != NULL,
	   "a builder that gives NaN is refused (%s)", err);
	lazy.obs_fn = NULL;
	ok(rl_torch_ppo_update(b, &cfg, &lazy, NULL, NULL, &sb, err) == RL_TORCH_ERROR,
	   "no observations and no builder: refused (%s)", err);
	free_snapshot(xa);
	free_snapshot(xb);
	free_batch(t);
	rl_torch_net_free(a);
	rl_torch_net_free(b);
}

/* Initial weights, forward pass and loss equal the reference's. */
static void
test_basics(void)
{
	char		err[RL_TORCH_ERRLEN];
	Pair		p = make_pair(&arch_default, 42);
	Snapshot   *a = snapshot(p.nw, NULL, p.nw);
	Snapshot   *b = snapshot(NULL, p.rf, p.nw);
	TestBatch  *t = real_batch(p.nw, &arch_default, 500);
	float	   *pn = malloc(sizeof(float) * 500 * 3),
			   *pr = malloc(sizeof(float) * 500 * 3),
				vn[500],
				vr[500];
	RlTorchPPOConfig cfg = default_cfg(1);
	RlTorchUpdateStats sn,
				sr;
	int64_t		total = 0;

	ok(same_snapshot(a, b),
	   "same seed: initial weights (and zero Adam state) equal the reference's bit for bit");
	for (int i = 0; i < RL_N_PARAMS; i++)
		total += a->numel[i];
	ok(a->n_grad == total && total == 64 * 33 + 64 + 64 * 64 + 64 + 3 * 64 + 3 + 64 + 1,
	   "8 parameters of %lld elements", (long long) total);
	require(rl_torch_forward(p.nw, t->obs, 500, pn, vn, err) == RL_TORCH_OK &&
			ref_torch_forward(p.rf, t->obs, 500, pr, vr, err) == RL_TORCH_OK,
			"forward", err);
	{
		float	   *fa[2] = {pn, vn},
				   *fb[2] = {pr, vr};
		const int64_t numel[2] = {500 * 3, 500};
		const char *const names[2] = {"probabilities", "values"};
		Err			e = compare(fa, fb, numel, names, 2);

		ok(e.vec <= TOL && e.tensor <= TOL,
		   "forward: probabilities and values equal the reference's");
		diag("  rel. error %.3g", e.tensor);
	}
	require(rl_torch_ppo_loss(p.nw, &cfg, &t->b, &sn, err) == RL_TORCH_OK &&
			ref_torch_ppo_loss(p.rf, &cfg, &t->b, &sr, err) == RL_TORCH_OK,
			"ppo_loss", err);
	ok(stats_err(&sn, &sr) <= TOL && sn.minibatches == 0,
	   "ppo_loss statistics equal the reference's");
	diag("  loss %.7f vs %.7f, entropy %.7f vs %.7f, approx_kl %.3g vs %.3g",
		 sn.loss, sr.loss, sn.entropy, sr.entropy, sn.approx_kl, sr.approx_kl);
	{
		float	   *g = malloc(sizeof(float) * total);
		RlTorchUpdateStats sg;

		ok(rl_torch_ppo_grad(p.nw, &cfg, &t->b, g, total - 1, &sg, err) == RL_TORCH_ERROR &&
		   strstr(err, "gradient buffer") != NULL,
		   "rl_torch_ppo_grad refuses a wrong gradient size");
		free(g);
	}
	free(pn);
	free(pr);
	free_batch(t);
	free_snapshot(a);
	free_snapshot(b);
	free_pair(&p);
}

/* Warm starts and determinism. */
static void
test_warm_start(void)
{
	char		err[RL_TORCH_ERRLEN];
	Pair		p = make_pair(&arch_default, 21);
	TestBatch  *t = random_batch(p.nw, &arch_default, 700);
	RlTorchPPOConfig cfg = default_cfg(7);
	RlTorchUpdateStats s1,
				s2,
				s3;
	RlTorchNet *warm;
	RefTorchNet *ref_warm;
	Snapshot   *ckpt,
			   *x1,
			   *x2,
			   *x3;
	Err			e;

	/* train a little, checkpoint, continue in a fresh net and a reference */
	require(rl_torch_ppo_update(p.nw, &cfg, &t->b, NULL, NULL, &s1, err) == RL_TORCH_OK,
			"update", err);
	ckpt = snapshot(p.nw, NULL, p.nw);
	require(rl_torch_net_create(&arch_default, 999, 1e-3f, &warm, err) == RL_TORCH_OK &&
			ref_torch_net_create(&arch_default, 999, 1e-3f, &ref_warm, err) == RL_TORCH_OK,
			"create", err);
	ok(restore(warm, NULL, ckpt, err) && restore(NULL, ref_warm, ckpt, err),
	   "restore parameters and Adam state (optim.step %g) into fresh nets",
	   ckpt->data[24][0]);
	cfg.seed = 8;
	require(rl_torch_ppo_update(p.nw, &cfg, &t->b, NULL, NULL, &s1, err) == RL_TORCH_OK &&
			rl_torch_ppo_update(warm, &cfg, &t->b, NULL, NULL, &s2, err) == RL_TORCH_OK &&
			ref_torch_ppo_update(ref_warm, &cfg, &t->b, NULL, NULL, &s3, err) == RL_TORCH_OK,
			"update after warm start", err);
	x1 = snapshot(p.nw, NULL, p.nw);
	x2 = snapshot(warm, NULL, p.nw);
	x3 = snapshot(NULL, ref_warm, p.nw);
	ok(same_snapshot(x1, x2) && memcmp(&s1, &s2, sizeof(s1)) == 0,
	   "warm start continues bit for bit (all 25 tensors and the statistics)");
	e = snapshot_err(x1, x3);
	ok(err_ok(&e) && stats_err(&s1, &s3) <= TOL,
	   "the reference warm-started from the same tensors agrees");
	diag("  rel. error %.3g, worst tensor %.3g (%s)", e.vec, e.tensor,
		 e.tensor_name);
	free_snapshot(x1);
	free_snapshot(x2);
	free_snapshot(x3);
	rl_torch_net_free(warm);
	ref_torch_net_free(ref_warm);

	/* arbitrary Adam state: random moments, step 17 */
	{
		Snapshot   *s = snapshot(p.nw, NULL, p.nw);
		Pair		q = make_pair(&arch_default, 5);

		for (int i = RL_N_PARAMS; i < 3 * RL_N_PARAMS; i++)
			for (int64_t k = 0; k < s->numel[i]; k++)
				s->data[i][k] = i < 2 * RL_N_PARAMS ? (float) (1e-3 * nrand()) :
					(float) (1e-6 * urand());
		s->data[24][0] = 17;
		ok(restore(q.nw, NULL, s, err) && restore(NULL, q.rf, s, err),
		   "set random Adam moments and optim.step 17 in both nets");
		compare_updates(&q, t, cfg, 3, "from random Adam state at step 17");
		free_snapshot(s);
		free_pair(&q);
	}

	/* a checkpoint without Adam state: moments read as zeros, Adam starts over */
	{
		Pair		q = make_pair(&arch_default, 6);

		for (int i = 0; i < RL_N_PARAMS; i++)
			require(rl_torch_tensor_set(q.nw, ckpt->name[i], ckpt->data[i],
										ckpt->numel[i], err) == RL_TORCH_OK &&
					ref_torch_tensor_set(q.rf, ckpt->name[i], ckpt->data[i],
										 ckpt->numel[i], err) == RL_TORCH_OK,
					"set weights", err);
		compare_updates(&q, t, cfg, 2, "weights only (cold Adam)");
		free_pair(&q);
	}

	/* determinism: the same seed twice */
	{
		RlTorchNet *a,
				   *b;
		RlTorchPPOConfig c = default_cfg(31);

		require(rl_torch_net_create(&arch_default, 77, 3e-4f, &a, err) == RL_TORCH_OK &&
				rl_torch_net_create(&arch_default, 77, 3e-4f, &b, err) == RL_TORCH_OK,
				"create", err);
		c.minibatch = 100;
		for (int u = 0; u < 3; u++)
		{
			c.seed = 31 + u;
			require(rl_torch_ppo_update(a, &c, &t->b, NULL, NULL, &s1, err) == RL_TORCH_OK &&
					rl_torch_ppo_update(b, &c, &t->b, NULL, NULL, &s2, err) == RL_TORCH_OK,
					"update", err);
		}
		x1 = snapshot(a, NULL, a);
		x2 = snapshot(b, NULL, b);
		ok(same_snapshot(x1, x2) && memcmp(&s1, &s2, sizeof(s1)) == 0,
		   "two runs with the same seed: bit-identical parameters, Adam state and statistics");
		c.seed = 1000;
		rl_torch_ppo_update(b, &c, &t->b, NULL, NULL, &s2, err);
		free_snapshot(x2);
		x2 = snapshot(b, NULL, b);
		ok(!same_snapshot(x1, x2), "control: another update changes them");
		free_snapshot(x1);
		free_snapshot(x2);
		rl_torch_net_free(a);
		rl_torch_net_free(b);
	}
	free_snapshot(ckpt);
	free_batch(t);
	free_pair(&p);
}

/* Non-finite loss and gradient norm are errors in both implementations. */
static void
test_non_finite(void)
{
	char		err[RL_TORCH_ERRLEN],
				ref_err[RL_TORCH_ERRLEN];
	Pair		p = make_pair(&arch_default, 41);
	TestBatch  *t = random_batch(p.nw, &arch_default, 300);
	RlTorchPPOConfig cfg = default_cfg(1);
	RlTorchUpdateStats sn,
				sr;
	RlTorchStatus rn,
				rr;

	t->ret[5] = 3e38f;
	rn = rl_torch_ppo_update(p.nw, &cfg, &t->b, NULL, NULL, &sn, err);
	rr = ref_torch_ppo_update(p.rf, &cfg, &t->b, NULL, NULL, &sr, ref_err);
	ok(rn == RL_TORCH_ERROR && rr == RL_TORCH_ERROR && strcmp(err, ref_err) == 0 &&
	   strstr(err, "ppo loss is not finite") != NULL,
	   "an overflowing loss: the same error as the reference");
	diag("  %s", err);

	/* one row: value loss 1e38 (finite), but its gradient's squared norm is not */
	t->ret[5] = 1e19f;
	t->b.obs = t->obs + 5 * arch_default.obs_dim;
	t->b.actions = t->actions + 5;
	t->b.old_logp = t->old_logp + 5;
	t->b.advantages = t->adv + 5;
	t->b.returns = t->ret + 5;
	t->b.n = 1;
	rn = rl_torch_ppo_update(p.nw, &cfg, &t->b, NULL, NULL, &sn, err);
	rr = ref_torch_ppo_update(p.rf, &cfg, &t->b, NULL, NULL, &sr, ref_err);
	ok(rn == RL_TORCH_ERROR && rr == RL_TORCH_ERROR && strcmp(err, ref_err) == 0 &&
	   strstr(err, "gradient norm is not finite") != NULL,
	   "an overflowing gradient norm: the same error as the reference");
	diag("  %s", err);
	if (rn != RL_TORCH_ERROR || rr != RL_TORCH_ERROR)
		diag("  status %d, reference %d: %s", (int) rn, (int) rr, ref_err);
	free_batch(t);
	free_pair(&p);
}

/*
 * The update's own tanh (rl_torch_tanh) against tanh in double precision:
 * within 2.1 ulp for floats of both signs up to 20 (beyond, both are
 * exactly +-1), every "stride"-th bit pattern (1: every float, --tanh-sweep,
 * about 40 s), and the special values.
 */
static void
test_tanh(uint32_t stride)
{
	enum
	{
	CHUNK = 1 << 20};
	static float x[2 * CHUNK],
				y[2 * CHUNK];
	const uint32_t last = 0x41a00000;	/* 20.0f */
	char		err[RL_TORCH_ERRLEN];
	double		worst = 0;
	float		worst_x = 0;
	long long	count = 0;
	uint32_t	bits = 0;
	int			special;

	while (bits <= last)
	{
		int			n = 0;

		for (; n < CHUNK && bits <= last; n++, bits += stride)
		{
			memcpy(&x[2 * n], &bits, sizeof(float));
			x[2 * n + 1] = -x[2 * n];
		}
		memcpy(y, x, sizeof(float) * 2 * n);
		require(rl_torch_tanh(y, 2 * n, err) == RL_TORCH_OK, "rl_torch_tanh", err);
		for (int i = 0; i < 2 * n; i++)
		{
			double		t = tanh((double) x[i]);
			float		tf = fabsf((float) t);
			double		ulp = tf == 0 ? 1.4e-45 : (double) nextafterf(tf, INFINITY) - tf;
			double		e = fabs(y[i] - t) / ulp;

			if (!(e <= worst))
			{
				worst = e;
				worst_x = x[i];
			}
		}
		count += 2 * n;
	}
	ok(worst <= 2.1, "the update's tanh is within 2.1 ulp of tanh (%lld floats in [-20, 20])",
	   count);
	diag("  largest error %.3f ulp, at %.9g", worst, worst_x);

	x[0] = INFINITY;
	x[1] = -INFINITY;
	x[2] = 1e30f;
	x[3] = -25.0f;
	x[4] = NAN;
	require(rl_torch_tanh(x, 5, err) == RL_TORCH_OK, "rl_torch_tanh", err);
	special = x[0] == 1 && x[1] == -1 && x[2] == 1 && x[3] == -1 && isnan(x[4]);
	ok(special, "the update's tanh: +-1 for large and infinite arguments, NaN for NaN");
}

/* Compare doubles for qsort. */
static int
cmp_double(const void *a, const void *b)
{
	double		x = *(const double *) a,
				y = *(const double *) b;

	return x < y ? -1 : x > y;
}

/*
 * Median microseconds per 256-row step, one thread: 4096 rows, one pass
 * (16 steps) per call, 40 timed calls after 3 warm-up calls; the update
 * with stored observations, with observations built per minibatch by a
 * callback (obs NULL, as the training worker calls it) and the autograd
 * reference.
 */
static void
bench(void)
{
	enum
	{
	CALLS = 40, IMPLS = 3};
	static const char *const label[IMPLS] = {
		"hand-derived, stored obs", "hand-derived, obs_fn", "autograd, stored obs"};
	char		err[RL_TORCH_ERRLEN];
	Pair		p = make_pair(&arch_default, 1);
	RlTorchNet *lazy_net;
	TestBatch  *t = real_batch(p.nw, &arch_default, 4096);
	RlTorchPPOConfig cfg = default_cfg(1);
	ObsSource	src = {t->obs, arch_default.obs_dim, 0, -1, -1};
	RlTorchBatch lazy = t->b;
	double		us[IMPLS][CALLS];

	require(rl_torch_set_threads(1, err) == RL_TORCH_OK, "threads", err);
	require(rl_torch_net_create(&arch_default, 1, 3e-4f, &lazy_net, err) == RL_TORCH_OK,
			"create", err);
	lazy.obs = NULL;
	lazy.obs_fn = obs_from_rows;
	lazy.obs_arg = &src;
	cfg.update_passes = 1;
	diag("bench: load average before %s", loadavg());
	/* interleaved, so that all see the same machine load */
	for (int c = -3; c < CALLS; c++)
		for (int impl = 0; impl < IMPLS; impl++)
		{
			RlTorchUpdateStats st;
			double		t0 = now_s();
			RlTorchStatus rc;

			cfg.seed = 1000 + c;
			rc = impl == 0 ?
				rl_torch_ppo_update(p.nw, &cfg, &t->b, NULL, NULL, &st, err) :
				impl == 1 ?
				rl_torch_ppo_update(lazy_net, &cfg, &lazy, NULL, NULL, &st, err) :
				ref_torch_ppo_update(p.rf, &cfg, &t->b, NULL, NULL, &st, err);
			require(rc == RL_TORCH_OK && st.minibatches == 16, "bench update", err);
			if (c >= 0)
				us[impl][c] = (now_s() - t0) / 16 * 1e6;
		}
	diag("bench: ppo step of 256 rows (33 -> 64 -> 64 -> 3 + 1), 1 thread, median of %d:",
		 CALLS);
	for (int impl = 0; impl < IMPLS; impl++)
	{
		qsort(us[impl], CALLS, sizeof(double), cmp_double);
		diag("bench:   %-25s %7.1f us/step (min %.1f, max %.1f)", label[impl],
			 (us[impl][CALLS / 2 - 1] + us[impl][CALLS / 2]) / 2, us[impl][0],
			 us[impl][CALLS - 1]);
	}
	diag("bench: load average after %s", loadavg());
	rl_torch_net_free(lazy_net);
	free_batch(t);
	free_pair(&p);
}

/* Every check, then the benchmark if asked for; the TAP plan last. */
int
main(int argc, char **argv)
{
	double		t0 = now_s();
	char		err[RL_TORCH_ERRLEN];
	int			rc;

	setvbuf(stdout, NULL, _IOLBF, 0);
	/* one thread: reproducible, and quiet on a shared machine */
	require(rl_torch_set_threads(1, err) == RL_TORCH_OK, "threads", err);
	test_basics();
	test_gradients(&arch_default, "window 32, hidden 64");
	test_gradients(&arch_odd, "window 5, 4 features, hidden 17");
	test_updates();
	test_obs_on_demand();
	test_noise_floor();
	test_warm_start();
	test_non_finite();
	test_tanh(argc > 1 && strcmp(argv[1], "--tanh-sweep") == 0 ? 1 : 127);
	if (argc > 1 && strcmp(argv[1], "--bench") == 0)
		bench();
	rc = done_testing();
	diag("%.1f s", now_s() - t0);
	return rc;
}
