/*-------------------------------------------------------------------------
 *
 * rl_torch_selftest.c
 *	  Standalone test of the libtorch C wrapper (src/torch/rl_torch.h), no
 *	  PostgreSQL involved.  Prints TAP lines and exits non-zero on failure.
 *	  Timings are printed as "# " comments, never used as pass conditions.
 *
 * test/torch/rl_torch_selftest.c
 *
 *-------------------------------------------------------------------------
 */
#define _POSIX_C_SOURCE 199309L

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../../src/torch/rl_torch.h"
#include "../c/tap.h"

/* Abort the run when a prerequisite fails: later tests would be noise. */
static void
require(bool cond, const char *what, const char *err)
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

/* Monotonic time in seconds for the informational timings. */
static double
now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static const RlArch arch = {32, 0, 33, 64, RL_N_ACTIONS};

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

/* Create a net or bail out. */
static RlTorchNet *
make_net(uint64_t seed)
{
	RlTorchNet *net = NULL;
	char		err[RL_TORCH_ERRLEN];

	require(rl_torch_net_create(&arch, seed, 3e-4f, &net, err) == RL_TORCH_OK &&
			net != NULL, "create net", err);
	return net;
}

/* A snapshot of all named tensors of a net. */
typedef struct Snapshot
{
	int64_t		numel[RL_TORCH_N_TENSORS];
	float	   *data[RL_TORCH_N_TENSORS];
} Snapshot;

/* Read every tensor of a net into a freshly allocated snapshot. */
static Snapshot *
snapshot(const RlTorchNet *net)
{
	Snapshot   *s = calloc(1, sizeof(Snapshot));
	char		err[RL_TORCH_ERRLEN];

	for (int i = 0; i < RL_TORCH_N_TENSORS; i++)
	{
		const char *name;
		int32_t		ndim;
		int64_t		shape[2];

		require(rl_torch_tensor_info(net, i, &name, &ndim, shape, err) == RL_TORCH_OK,
				"tensor_info", err);
		s->numel[i] = shape[0] * shape[1];
		s->data[i] = malloc(sizeof(float) * s->numel[i]);
		require(rl_torch_tensor_get(net, name, s->data[i], s->numel[i], err) == RL_TORCH_OK,
				"tensor_get", err);
	}
	return s;
}

/* Write a snapshot into a net (all 25 tensors); returns false on error. */
static bool
restore(RlTorchNet *net, const Snapshot *s, char *err)
{
	for (int i = 0; i < RL_TORCH_N_TENSORS; i++)
	{
		const char *name;
		int32_t		ndim;
		int64_t		shape[2];

		if (rl_torch_tensor_info(net, i, &name, &ndim, shape, err) != RL_TORCH_OK ||
			rl_torch_tensor_set(net, name, s->data[i], s->numel[i], err) != RL_TORCH_OK)
			return false;
	}
	return true;
}

/* Compare snapshots bit for bit, over tensors [from, to). */
static bool
same_snapshot(const Snapshot *a, const Snapshot *b, int from, int to)
{
	for (int i = from; i < to; i++)
		if (a->numel[i] != b->numel[i] ||
			memcmp(a->data[i], b->data[i], sizeof(float) * a->numel[i]) != 0)
			return false;
	return true;
}

static void
free_snapshot(Snapshot *s)
{
	for (int i = 0; i < RL_TORCH_N_TENSORS; i++)
		free(s->data[i]);
	free(s);
}

/* A rollout-like batch: random obs, actions from the policy, learnable targets. */
typedef struct TestBatch
{
	RlTorchBatch b;
	float	   *obs;
	int32_t    *actions;
	float	   *old_logp;
	float	   *adv;
	float	   *ret;
} TestBatch;

static TestBatch *
make_batch(RlTorchNet *net, int64_t n)
{
	TestBatch  *t = calloc(1, sizeof(TestBatch));
	float	   *probs = malloc(sizeof(float) * n * RL_N_ACTIONS);
	char		err[RL_TORCH_ERRLEN];

	t->obs = malloc(sizeof(float) * n * arch.obs_dim);
	t->actions = malloc(sizeof(int32_t) * n);
	t->old_logp = malloc(sizeof(float) * n);
	t->adv = malloc(sizeof(float) * n);
	t->ret = malloc(sizeof(float) * n);
	for (int64_t i = 0; i < n * arch.obs_dim; i++)
		t->obs[i] = (float) (urand() * 2 - 1);
	require(rl_torch_forward(net, t->obs, n, probs, NULL, err) == RL_TORCH_OK,
			"forward for batch", err);
	for (int64_t i = 0; i < n; i++)
	{
		const float *o = t->obs + i * arch.obs_dim;
		double		u = urand(),
					acc = 0;
		int			a = RL_N_ACTIONS - 1;

		for (int k = 0; k < RL_N_ACTIONS; k++)
		{
			acc += probs[i * RL_N_ACTIONS + k];
			if (u < acc)
			{
				a = k;
				break;
			}
		}
		t->actions[i] = a;
		t->old_logp[i] = logf(probs[i * RL_N_ACTIONS + a]);
		/* "long" is good when o[0] > 0, "short" when o[0] < 0 */
		t->adv[i] = (float) ((a - 1) * o[0] + 0.1 * (urand() - 0.5));
		t->ret[i] = 0.5f * o[0] - 0.3f * o[1] + 0.2f;
	}
	free(probs);
	t->b.n = n;
	t->b.obs = t->obs;
	t->b.actions = t->actions;
	t->b.old_logp = t->old_logp;
	t->b.advantages = t->adv;
	t->b.returns = t->ret;
	return t;
}

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

/* Stop callback: stop once it has been asked more than *arg times. */
static bool
stop_after(void *arg)
{
	int		   *left = arg;

	return (*left)-- <= 0;
}

/* Plain C forward of one row from a snapshot, to check the weight layout. */
static void
c_forward(const Snapshot *s, const float *x, float *probs, float *value)
{
	float		h1[64],
				h2[64],
				logit[RL_N_ACTIONS],
				mx,
				sum = 0;
	const int	H = arch.hidden,
				D = arch.obs_dim;

	for (int j = 0; j < H; j++)
	{
		double		acc = s->data[1][j];

		for (int k = 0; k < D; k++)
			acc += (double) s->data[0][j * D + k] * x[k];
		h1[j] = (float) tanh(acc);
	}
	for (int j = 0; j < H; j++)
	{
		double		acc = s->data[3][j];

		for (int k = 0; k < H; k++)
			acc += (double) s->data[2][j * H + k] * h1[k];
		h2[j] = (float) tanh(acc);
	}
	for (int a = 0; a < RL_N_ACTIONS; a++)
	{
		double		acc = s->data[5][a];

		for (int k = 0; k < H; k++)
			acc += (double) s->data[4][a * H + k] * h2[k];
		logit[a] = (float) acc;
	}
	mx = logit[0];
	for (int a = 1; a < RL_N_ACTIONS; a++)
		mx = logit[a] > mx ? logit[a] : mx;
	for (int a = 0; a < RL_N_ACTIONS; a++)
		sum += (probs[a] = expf(logit[a] - mx));
	for (int a = 0; a < RL_N_ACTIONS; a++)
		probs[a] /= sum;
	{
		double		acc = s->data[7][0];

		for (int k = 0; k < H; k++)
			acc += (double) s->data[6][k] * h2[k];
		*value = (float) acc;
	}
}

/* Basic calls: version, threads. */
static void
test_basics(void)
{
	char		err[RL_TORCH_ERRLEN];
	char		ver[32];
	char		tiny[2];

	ok_detail(rl_torch_version(ver, sizeof(ver), err) == RL_TORCH_OK && ver[0] != '\0',
			  "version is reported", err);
	diag("libtorch version %s", ver);
	ok_detail(rl_torch_version(tiny, sizeof(tiny), err) == RL_TORCH_ERROR &&
			  strstr(err, "too small") != NULL, "version into a tiny buffer is an error", err);
	ok_detail(rl_torch_set_threads(1, err) == RL_TORCH_OK && rl_torch_get_threads() == 1,
			  "set_threads(1)", err);
	ok_detail(rl_torch_set_threads(2, err) == RL_TORCH_OK && rl_torch_get_threads() == 2,
			  "set_threads(2) after the inter-op pool is sized is fine", err);
	ok_detail(rl_torch_set_threads(0, err) == RL_TORCH_ERROR && err[0] != '\0',
			  "set_threads(0) is an error", err);
	rl_torch_set_threads(1, err);
}

/* Creation, invalid architectures and free. */
static void
test_create(void)
{
	char		err[RL_TORCH_ERRLEN];
	RlTorchNet *net = NULL;
	RlArch		bad;
	bool		all_refused = true;
	const RlArch bads[] = {
		{0, 0, 1, 64, 3},		/* window 0 */
		{-5, 0, -4, 64, 3},		/* negative */
		{32, 0, 34, 64, 3},		/* obs_dim mismatch */
		{32, 0, 33, 0, 3},		/* hidden 0 */
		{32, 0, 33, 64, 0},		/* no actions */
		{32, 0, 33, 2000000, 3},	/* absurd */
		{32, 0, 33, 100000, 3}, /* each dim fine, network too large */
		{32, -1, 32, 64, 3},	/* negative features */
	};

	ok_detail(rl_torch_net_create(&arch, 1, 3e-4f, &net, err) == RL_TORCH_OK && net != NULL &&
			  err[0] == '\0', "create a net", err);
	rl_torch_net_free(net);
	rl_torch_net_free(NULL);
	ok(true, "free a net and free(NULL)");

	for (size_t i = 0; i < sizeof(bads) / sizeof(bads[0]); i++)
	{
		net = (RlTorchNet *) &bad;	/* must be reset to NULL on error */
		if (rl_torch_net_create(&bads[i], 1, 3e-4f, &net, err) != RL_TORCH_ERROR ||
			net != NULL || err[0] == '\0')
		{
			all_refused = false;
			diag("  arch %zu not refused properly", i);
		}
		else
			diag("  arch %zu: %s", i, err);
	}
	ok(all_refused, "invalid architectures are refused with a message");
	ok_detail(rl_torch_net_create(NULL, 1, 3e-4f, &net, err) == RL_TORCH_ERROR &&
			  strstr(err, "null") != NULL, "NULL arch is refused", err);
	ok_detail(rl_torch_net_create(&arch, 1, NAN, &net, err) == RL_TORCH_ERROR &&
			  strstr(err, "learning rate") != NULL, "NaN learning rate is refused", err);
	ok_detail(rl_torch_net_create(&arch, 1, 3e-4f, NULL, err) == RL_TORCH_ERROR,
			  "NULL output pointer is refused", err);

	/* features widen the observation */
	{
		RlArch		f = {8, 4, 13, 16, 3};
		int64_t		shape[2];
		const char *name;
		int32_t		ndim;

		ok_detail(rl_torch_net_create(&f, 1, 1e-3f, &net, err) == RL_TORCH_OK &&
				  rl_torch_tensor_info(net, 0, &name, &ndim, shape, err) == RL_TORCH_OK &&
				  shape[0] == 16 && shape[1] == 13,
				  "an architecture with features has trunk.0.weight [16, 13]", err);
		rl_torch_net_free(net);
	}
}

/* Tensor naming, shapes and access. */
static void
test_tensors(void)
{
	char		err[RL_TORCH_ERRLEN];
	RlTorchNet *net = make_net(42);
	static const char *const expect[RL_TORCH_N_TENSORS] = {
		"trunk.0.weight", "trunk.0.bias", "trunk.2.weight", "trunk.2.bias",
		"actor.weight", "actor.bias", "critic.weight", "critic.bias",
		"optim.exp_avg.trunk.0.weight", "optim.exp_avg.trunk.0.bias",
		"optim.exp_avg.trunk.2.weight", "optim.exp_avg.trunk.2.bias",
		"optim.exp_avg.actor.weight", "optim.exp_avg.actor.bias",
		"optim.exp_avg.critic.weight", "optim.exp_avg.critic.bias",
		"optim.exp_avg_sq.trunk.0.weight", "optim.exp_avg_sq.trunk.0.bias",
		"optim.exp_avg_sq.trunk.2.weight", "optim.exp_avg_sq.trunk.2.bias",
		"optim.exp_avg_sq.actor.weight", "optim.exp_avg_sq.actor.bias",
		"optim.exp_avg_sq.critic.weight", "optim.exp_avg_sq.critic.bias",
		"optim.step",
	};
	static const int64_t shapes[RL_N_PARAMS][2] = {
		{64, 33}, {64, 1}, {64, 64}, {64, 1}, {3, 64}, {3, 1}, {1, 64}, {1, 1}
	};
	bool		names_ok = true;
	bool		zero_state = true;
	const char *name;
	int32_t		ndim;
	int64_t		shape[2];
	float		buf[4096];
	float		step = -1;

	ok(rl_torch_tensor_count(net) == 25, "25 named tensors");
	for (int i = 0; i < RL_TORCH_N_TENSORS; i++)
	{
		const int64_t *s = i == 24 ? (const int64_t[2]) {1, 1} : shapes[i % 8];
		int			nd = i == 24 ? 1 : (s[1] == 1 && i % 2 == 1 ? 1 : 2);

		if (rl_torch_tensor_info(net, i, &name, &ndim, shape, err) != RL_TORCH_OK ||
			strcmp(name, expect[i]) != 0 || ndim != nd ||
			shape[0] != s[0] || shape[1] != s[1])
		{
			names_ok = false;
			diag("  tensor %d: %s ndim %d shape [%lld, %lld]", i, name, ndim,
				 (long long) shape[0], (long long) shape[1]);
		}
		if (i >= 8 && i < 24)
		{
			if (rl_torch_tensor_get(net, name, buf, shape[0] * shape[1], err) != RL_TORCH_OK)
				zero_state = false;
			for (int64_t k = 0; k < shape[0] * shape[1]; k++)
				if (buf[k] != 0)
					zero_state = false;
		}
	}
	ok(names_ok, "tensor_info: state_dict names, order, ndim and shapes");
	ok_detail(rl_torch_tensor_info(net, 25, &name, &ndim, shape, err) == RL_TORCH_ERROR &&
			  strstr(err, "out of range") != NULL, "tensor_info(25) is an error", err);
	ok_detail(zero_state && rl_torch_tensor_get(net, "optim.step", &step, 1, err) == RL_TORCH_OK &&
			  step == 0, "Adam state reads as zeros and step 0 before the first step", err);

	/* PyTorch's default Linear init: |w| <= 1/sqrt(fan_in) */
	{
		bool		bounded = true;

		rl_torch_tensor_get(net, "trunk.0.weight", buf, 64 * 33, err);
		for (int k = 0; k < 64 * 33; k++)
			if (fabsf(buf[k]) > 1 / sqrtf(33) + 1e-6f)
				bounded = false;
		/* compare: torch.manual_seed(42); TradingActorCritic(33, 64, 3) */
		diag("trunk.0.weight[0..2] for seed 42: %.9g %.9g %.9g",
			 buf[0], buf[1], buf[2]);
		rl_torch_tensor_get(net, "trunk.2.bias", buf, 64, err);
		for (int k = 0; k < 64; k++)
			if (fabsf(buf[k]) > 1 / sqrtf(64) + 1e-6f)
				bounded = false;
		ok(bounded, "initial weights lie within PyTorch's default Linear bounds");
	}

	ok_detail(rl_torch_tensor_get(net, "trunk.0.weight", buf, 5, err) == RL_TORCH_ERROR &&
			  strstr(err, "expected 2112") != NULL && strstr(err, "got 5") != NULL,
			  "get with a wrong size is an error naming expected/actual", err);
	diag("  %s", err);
	ok_detail(rl_torch_tensor_set(net, "actor.bias", buf, 4, err) == RL_TORCH_ERROR &&
			  strstr(err, "expected 3") != NULL && strstr(err, "got 4") != NULL,
			  "set with a wrong size is an error naming expected/actual", err);
	ok_detail(rl_torch_tensor_set(net, "nope.weight", buf, 3, err) == RL_TORCH_ERROR &&
			  strstr(err, "unknown tensor") != NULL, "unknown tensor name is an error", err);
	ok_detail(rl_torch_tensor_get(net, NULL, buf, 3, err) == RL_TORCH_ERROR &&
			  rl_torch_tensor_set(net, "actor.bias", NULL, 3, err) == RL_TORCH_ERROR &&
			  rl_torch_tensor_get(NULL, "actor.bias", buf, 3, err) == RL_TORCH_ERROR,
			  "NULL name, buffer or net is an error", err);
	buf[0] = 1;
	buf[1] = NAN;
	buf[2] = 1;
	ok_detail(rl_torch_tensor_set(net, "actor.bias", buf, 3, err) == RL_TORCH_ERROR &&
			  strstr(err, "non-finite") != NULL, "set with NaN is an error", err);
	buf[1] = -1;
	ok_detail(rl_torch_tensor_set(net, "optim.exp_avg_sq.actor.bias", buf, 3, err) == RL_TORCH_ERROR &&
			  strstr(err, "negative") != NULL, "negative exp_avg_sq is an error", err);
	step = 1.5f;
	ok_detail(rl_torch_tensor_set(net, "optim.step", &step, 1, err) == RL_TORCH_ERROR,
			  "fractional optim.step is an error", err);

	/* round trip of all 25 tensors with fresh random values */
	{
		Snapshot   *s = snapshot(net);
		Snapshot   *back;

		for (int i = 0; i < RL_TORCH_N_TENSORS; i++)
			for (int64_t k = 0; k < s->numel[i]; k++)
				s->data[i][k] = i == 24 ? 17.0f :
					i >= 16 ? (float) urand() : (float) (urand() - 0.5);
		ok_detail(restore(net, s, err), "set all 25 tensors", err);
		back = snapshot(net);
		ok(same_snapshot(s, back, 0, RL_TORCH_N_TENSORS),
		   "get returns exactly what set wrote, for all 25 tensors");
		free_snapshot(back);
		free_snapshot(s);
	}
	rl_torch_net_free(net);
}

/* Forward pass and seeding. */
static void
test_forward(void)
{
	char		err[RL_TORCH_ERRLEN];
	RlTorchNet *a = make_net(7);
	RlTorchNet *b = make_net(7);
	RlTorchNet *c = make_net(8);
	Snapshot   *sa = snapshot(a),
			   *sb = snapshot(b),
			   *sc = snapshot(c);
	enum
	{
	N = 64};
	float		obs[N * 33],
				probs[N * 3],
				values[N];
	bool		good = true;
	double		maxdiff = 0;

	ok(same_snapshot(sa, sb, 0, RL_N_PARAMS), "same seed, same initial weights");
	ok(!same_snapshot(sa, sc, 0, 1) && !same_snapshot(sa, sc, 7, 8),
	   "different seed, different initial weights");

	for (int i = 0; i < N * 33; i++)
		obs[i] = (float) (urand() * 6 - 3);
	ok_detail(rl_torch_forward(a, obs, N, probs, values, err) == RL_TORCH_OK,
			  "forward a batch of 64", err);
	for (int i = 0; i < N; i++)
	{
		float		sum = 0,
					cp[3],
					cv;

		for (int k = 0; k < 3; k++)
		{
			sum += probs[i * 3 + k];
			if (!isfinite(probs[i * 3 + k]) || probs[i * 3 + k] < 0)
				good = false;
		}
		if (fabsf(sum - 1) > 1e-5f || !isfinite(values[i]))
			good = false;
		c_forward(sa, obs + i * 33, cp, &cv);
		for (int k = 0; k < 3; k++)
			maxdiff = fmax(maxdiff, fabs(cp[k] - probs[i * 3 + k]));
		maxdiff = fmax(maxdiff, fabs(cv - values[i]));
	}
	ok(good, "probabilities finite, non-negative, sum to 1; values finite");
	ok(maxdiff < 1e-5, "libtorch forward equals a plain C forward ([out, in] row-major)");
	diag("  max |libtorch - C| = %.3g", maxdiff);
	ok_detail(rl_torch_forward(a, obs, 1, NULL, values, err) == RL_TORCH_OK &&
			  rl_torch_forward(a, obs, 1, probs, NULL, err) == RL_TORCH_OK,
			  "either output may be NULL", err);

	obs[5] = NAN;
	ok_detail(rl_torch_forward(a, obs, N, probs, values, err) == RL_TORCH_ERROR &&
			  strstr(err, "non-finite") != NULL, "NaN observation is an error", err);
	diag("  %s", err);
	obs[5] = INFINITY;
	ok_detail(rl_torch_forward(a, obs, N, probs, values, err) == RL_TORCH_ERROR,
			  "infinite observation is an error", err);
	obs[5] = 0;
	ok_detail(rl_torch_forward(a, obs, 0, probs, values, err) == RL_TORCH_ERROR &&
			  rl_torch_forward(a, obs, -3, probs, values, err) == RL_TORCH_ERROR &&
			  rl_torch_forward(a, NULL, 1, probs, values, err) == RL_TORCH_ERROR &&
			  rl_torch_forward(NULL, obs, 1, probs, values, err) == RL_TORCH_ERROR,
			  "n <= 0, NULL obs, NULL net are errors", err);

	free_snapshot(sa);
	free_snapshot(sb);
	free_snapshot(sc);
	rl_torch_net_free(a);
	rl_torch_net_free(b);
	rl_torch_net_free(c);
}

/* PPO: learning, determinism, warm start, stop, validation. */
static void
test_ppo(void)
{
	char		err[RL_TORCH_ERRLEN];
	RlTorchNet *net = make_net(11);
	TestBatch  *tb = make_batch(net, 1024);
	RlTorchPPOConfig cfg = default_cfg(1);
	RlTorchUpdateStats st,
				first,
				last;
	bool		all_ok = true;

	for (int u = 0; u < 20; u++)
	{
		cfg.seed = 1000 + u;
		if (rl_torch_ppo_update(net, &cfg, &tb->b, NULL, NULL, &st, err) != RL_TORCH_OK)
			all_ok = false;
		if (u == 0)
			first = st;
		last = st;
	}
	ok_detail(all_ok && first.minibatches == 16 && last.minibatches == 16,
			  "20 ppo updates of 4 passes x 4 minibatches", err);
	ok(last.loss < first.loss, "loss after 20 updates < loss before");
	diag("  loss %.5f -> %.5f (value %.5f -> %.5f, policy %.5f -> %.5f, "
		 "entropy %.4f -> %.4f, kl %.2g)",
		 first.loss, last.loss, first.value_loss, last.value_loss,
		 first.policy_loss, last.policy_loss, first.entropy, last.entropy,
		 last.approx_kl);
	{
		float		step = 0;

		rl_torch_tensor_get(net, "optim.step", &step, 1, err);
		ok_detail(step == 320, "optim.step counts the Adam steps (320)", err);
	}

	/* determinism: same start, same batch, same seed => bit-identical */
	{
		RlTorchNet *a = make_net(5),
				   *b = make_net(5);
		RlTorchUpdateStats sa,
					sb;
		Snapshot   *xa,
				   *xb;

		cfg.seed = 77;
		rl_torch_ppo_update(a, &cfg, &tb->b, NULL, NULL, &sa, err);
		rl_torch_ppo_update(b, &cfg, &tb->b, NULL, NULL, &sb, err);
		xa = snapshot(a);
		xb = snapshot(b);
		ok(same_snapshot(xa, xb, 0, RL_TORCH_N_TENSORS) && sa.loss == sb.loss,
		   "same inputs and seed give bit-identical updates");
		free_snapshot(xa);
		free_snapshot(xb);
		rl_torch_net_free(a);
		rl_torch_net_free(b);
	}

	/* warm start: get -> set into a fresh net continues the optimizer */
	{
		RlTorchNet *orig = make_net(21);
		RlTorchNet *warm = make_net(999);
		RlTorchNet *cold = make_net(999);
		RlTorchUpdateStats so,
					sw,
					sc;
		Snapshot   *ckpt,
				   *xo,
				   *xw,
				   *xc;

		cfg.seed = 3;
		rl_torch_ppo_update(orig, &cfg, &tb->b, NULL, NULL, &so, err);
		ckpt = snapshot(orig);
		ok_detail(restore(warm, ckpt, err), "restore weights and optimizer state into a fresh net",
				  err);
		/* cold: weights only, Adam starts over */
		for (int i = 0; i < RL_N_PARAMS; i++)
		{
			const char *name;
			int32_t		ndim;
			int64_t		shape[2];

			rl_torch_tensor_info(cold, i, &name, &ndim, shape, err);
			rl_torch_tensor_set(cold, name, ckpt->data[i], ckpt->numel[i], err);
		}
		cfg.seed = 4;
		ok_detail(rl_torch_ppo_update(orig, &cfg, &tb->b, NULL, NULL, &so, err) == RL_TORCH_OK &&
				  rl_torch_ppo_update(warm, &cfg, &tb->b, NULL, NULL, &sw, err) == RL_TORCH_OK &&
				  rl_torch_ppo_update(cold, &cfg, &tb->b, NULL, NULL, &sc, err) == RL_TORCH_OK,
				  "next update on original, warm-started and cold-started nets", err);
		xo = snapshot(orig);
		xw = snapshot(warm);
		xc = snapshot(cold);
		ok(same_snapshot(xo, xw, 0, RL_TORCH_N_TENSORS) &&
		   memcmp(&so, &sw, sizeof(so)) == 0,
		   "warm start (weights + optimizer state) gives a bit-identical next update");
		ok(!same_snapshot(xo, xc, 0, RL_N_PARAMS),
		   "control: weights alone (fresh Adam) give a different next update");
		free_snapshot(ckpt);
		free_snapshot(xo);
		free_snapshot(xw);
		free_snapshot(xc);
		rl_torch_net_free(orig);
		rl_torch_net_free(warm);
		rl_torch_net_free(cold);
	}

	/* should_stop */
	{
		int			left = 1;

		ok_detail(rl_torch_ppo_update(net, &cfg, &tb->b, stop_after, &left, &st, err) ==
				  RL_TORCH_STOPPED && st.minibatches == 1 && strstr(err, "stopped") != NULL,
				  "should_stop returning true gives RL_TORCH_STOPPED after 1 minibatch", err);
		diag("  %s", err);
		left = 0;
		ok_detail(rl_torch_ppo_update(net, &cfg, &tb->b, stop_after, &left, &st, err) ==
				  RL_TORCH_STOPPED && st.minibatches == 0,
				  "should_stop true at once: no step taken", err);
		left = 1000;
		ok_detail(rl_torch_ppo_update(net, &cfg, &tb->b, stop_after, &left, NULL, err) ==
				  RL_TORCH_OK, "should_stop never true: update completes (stats may be NULL)",
				  err);
	}

	/* odd sizes: a minibatch of 1 row, and a batch smaller than a minibatch */
	{
		RlTorchBatch small = tb->b;

		small.n = 257;
		ok_detail(rl_torch_ppo_update(net, &cfg, &small, NULL, NULL, &st, err) == RL_TORCH_OK &&
				  st.minibatches == 8 && isfinite(st.loss),
				  "n = 257 gives 2 minibatches per pass (the last of 1 row)", err);
		small.n = 10;
		ok_detail(rl_torch_ppo_update(net, &cfg, &small, NULL, NULL, &st, err) == RL_TORCH_OK &&
				  st.minibatches == 4, "n smaller than a minibatch", err);
	}

	/* invalid input */
	{
		RlTorchBatch bad = tb->b;
		RlTorchPPOConfig badcfg = cfg;
		bool		refused = true;

		tb->actions[100] = 3;
		refused &= rl_torch_ppo_update(net, &cfg, &tb->b, NULL, NULL, &st, err) ==
			RL_TORCH_ERROR && strstr(err, "out of range") != NULL;
		diag("  %s", err);
		tb->actions[100] = -1;
		refused &= rl_torch_ppo_update(net, &cfg, &tb->b, NULL, NULL, &st, err) ==
			RL_TORCH_ERROR;
		tb->actions[100] = 0;
		tb->adv[3] = NAN;
		refused &= rl_torch_ppo_update(net, &cfg, &tb->b, NULL, NULL, &st, err) ==
			RL_TORCH_ERROR && strstr(err, "advantages") != NULL;
		tb->adv[3] = 0;
		tb->obs[40] = INFINITY;
		refused &= rl_torch_ppo_update(net, &cfg, &tb->b, NULL, NULL, &st, err) ==
			RL_TORCH_ERROR && strstr(err, "observations") != NULL;
		tb->obs[40] = 0;
		bad.n = 0;
		refused &= rl_torch_ppo_update(net, &cfg, &bad, NULL, NULL, &st, err) ==
			RL_TORCH_ERROR;
		bad = tb->b;
		bad.returns = NULL;
		refused &= rl_torch_ppo_update(net, &cfg, &bad, NULL, NULL, &st, err) ==
			RL_TORCH_ERROR;
		refused &= rl_torch_ppo_update(net, &cfg, NULL, NULL, NULL, &st, err) ==
			RL_TORCH_ERROR;
		refused &= rl_torch_ppo_update(net, NULL, &tb->b, NULL, NULL, &st, err) ==
			RL_TORCH_ERROR;
		badcfg.minibatch = 0;
		refused &= rl_torch_ppo_update(net, &badcfg, &tb->b, NULL, NULL, &st, err) ==
			RL_TORCH_ERROR && strstr(err, "minibatch") != NULL;
		badcfg = cfg;
		badcfg.lr = -1;
		refused &= rl_torch_ppo_update(net, &badcfg, &tb->b, NULL, NULL, &st, err) ==
			RL_TORCH_ERROR;
		badcfg = cfg;
		badcfg.update_passes = 0;
		refused &= rl_torch_ppo_update(net, &badcfg, &tb->b, NULL, NULL, &st, err) ==
			RL_TORCH_ERROR;
		ok(refused, "invalid batch or config is refused with a message");
	}

	/* finite inputs whose loss overflows: an error, not NaN weights */
	{
		RlTorchNet *victim = make_net(13);
		float		saved = tb->ret[0];
		Snapshot   *x;
		bool		finite = true;

		tb->ret[0] = 3e38f;
		ok_detail(rl_torch_ppo_update(victim, &cfg, &tb->b, NULL, NULL, &st, err) ==
				  RL_TORCH_ERROR && strstr(err, "not finite") != NULL,
				  "an overflowing loss is an error", err);
		diag("  %s", err);
		tb->ret[0] = saved;
		x = snapshot(victim);
		for (int i = 0; i < RL_TORCH_N_TENSORS; i++)
			for (int64_t k = 0; k < x->numel[i]; k++)
				finite &= isfinite(x->data[i][k]) != 0;
		ok(finite, "no non-finite value reached the weights or Adam state");
		free_snapshot(x);
		rl_torch_net_free(victim);
	}

	/* the update reads the caller's arrays without writing them */
	{
		TestBatch  *copy = make_batch(net, 300);
		float		obs0[300 * 33],
					adv0[300];

		memcpy(obs0, copy->obs, sizeof(obs0));
		memcpy(adv0, copy->adv, sizeof(adv0));
		rl_torch_ppo_update(net, &cfg, &copy->b, NULL, NULL, &st, err);
		ok(memcmp(obs0, copy->obs, sizeof(obs0)) == 0 &&
		   memcmp(adv0, copy->adv, sizeof(adv0)) == 0,
		   "ppo_update leaves the caller's batch arrays untouched");
		free_batch(copy);
	}

	free_batch(tb);
	rl_torch_net_free(net);
}

/* Informational timings; never a pass condition. */
static void
timings(void)
{
	char		err[RL_TORCH_ERRLEN];
	RlTorchNet *net = make_net(1);
	TestBatch  *tb = make_batch(net, 4096);
	RlTorchPPOConfig cfg = default_cfg(1);
	RlTorchUpdateStats st;
	float		probs[3],
				value;
	double		t0;
	int			reps = 20000;

	for (int threads = 1; threads <= 2; threads++)
	{
		rl_torch_set_threads(threads, err);
		for (int i = 0; i < 200; i++)
			rl_torch_forward(net, tb->obs, 1, probs, &value, err);
		t0 = now_s();
		for (int i = 0; i < reps; i++)
			rl_torch_forward(net, tb->obs + (i % 4096) * 33, 1, probs, &value, err);
		diag("timing (%d thread%s): forward batch 1: %.2f us/call", threads,
			 threads > 1 ? "s" : "", (now_s() - t0) / reps * 1e6);
		t0 = now_s();
		for (int i = 0; i < 20; i++)
			rl_torch_forward(net, tb->obs, 4096, NULL, NULL, err);
		diag("timing (%d thread%s): forward batch 4096: %.2f ms/call", threads,
			 threads > 1 ? "s" : "", (now_s() - t0) / 20 * 1e3);
		t0 = now_s();
		rl_torch_ppo_update(net, &cfg, &tb->b, NULL, NULL, &st, err);
		diag("timing (%d thread%s): ppo minibatch of 256: %.1f us (%lld minibatches)",
			 threads, threads > 1 ? "s" : "",
			 (now_s() - t0) / st.minibatches * 1e6, (long long) st.minibatches);
	}
	rl_torch_set_threads(1, err);
	free_batch(tb);
	rl_torch_net_free(net);
}

int
main(void)
{
	double		t0 = now_s();
	int			rc;

	setvbuf(stdout, NULL, _IOLBF, 0);
	test_basics();
	test_create();
	test_tensors();
	test_forward();
	test_ppo();
	timings();
	rc = done_testing();
	diag("%.1f s", now_s() - t0);
	return rc;
}
