/*-------------------------------------------------------------------------
 *
 * test_forward.c
 *	  Standalone TAP-style test of src/core/forward.c (no PostgreSQL needed).
 *
 *	  test_forward [REFERENCE...] [--bench]
 *
 * Without arguments: hand-computed networks, softmax stability, argmax
 * ties, NULL outputs and a float64 re-implementation.  Each REFERENCE is
 * the output of "interop.py reference CKPT": the weights of a PyTorch
 * TradingActorCritic, observations and PyTorch's outputs, which must agree
 * with rl_forward within 1e-5.  --bench prints ns per call (informational
 * only; timings are never a pass condition).
 *
 * test/c/test_forward.c
 *
 *-------------------------------------------------------------------------
 */
#define _POSIX_C_SOURCE 199309L

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "forward.h"
#include "tap.h"

#define TOL 1e-5

/* A network with its own storage, so tests can fill weights freely. */
typedef struct Net
{
	RlWeights	w;
	float	   *buf[RL_N_PARAMS];
} Net;

/* Number of floats in parameter i for an architecture. */
static int
param_size(const RlArch *a, int i)
{
	switch (i)
	{
		case 0:
			return a->hidden * a->obs_dim;
		case 1:
		case 3:
			return a->hidden;
		case 2:
			return a->hidden * a->hidden;
		case 4:
			return a->n_actions * a->hidden;
		case 5:
			return a->n_actions;
		case 6:
			return a->hidden;
		default:
			return 1;
	}
}

/* Allocate zeroed weights for an architecture. */
static void
net_init(Net *n, int window, int n_features, int hidden)
{
	int			i;

	memset(n, 0, sizeof(*n));
	n->w.arch.window = window;
	n->w.arch.n_features = n_features;
	n->w.arch.obs_dim = window + 1 + n_features;
	n->w.arch.hidden = hidden;
	n->w.arch.n_actions = RL_N_ACTIONS;
	for (i = 0; i < RL_N_PARAMS; i++)
		n->buf[i] = calloc(param_size(&n->w.arch, i), sizeof(float));
	n->w.trunk0_w = n->buf[0];
	n->w.trunk0_b = n->buf[1];
	n->w.trunk2_w = n->buf[2];
	n->w.trunk2_b = n->buf[3];
	n->w.actor_w = n->buf[4];
	n->w.actor_b = n->buf[5];
	n->w.critic_w = n->buf[6];
	n->w.critic_b = n->buf[7];
}

/* Release a Net's weights. */
static void
net_free(Net *n)
{
	int			i;

	for (i = 0; i < RL_N_PARAMS; i++)
		free(n->buf[i]);
}

/* Run rl_forward with a fresh scratch buffer. */
static void
run(const Net *n, const float *obs, float *probs, float *value)
{
	float	   *scratch = malloc(sizeof(float) * RL_FORWARD_SCRATCH(&n->w.arch));

	rl_forward(&n->w, obs, probs, value, scratch);
	free(scratch);
}

/* The same network in float64, written as plainly as possible. */
static void
reference_f64(const Net *n, const float *obs, double *probs, double *value)
{
	const RlArch *a = &n->w.arch;
	double		h1[512],
				h2[512],
				logit[RL_N_ACTIONS],
				max,
				sum = 0;
	int			i,
				j;

	for (j = 0; j < a->hidden; j++)
	{
		double		z = n->w.trunk0_b[j];

		for (i = 0; i < a->obs_dim; i++)
			z += (double) n->w.trunk0_w[j * a->obs_dim + i] * obs[i];
		h1[j] = tanh(z);
	}
	for (j = 0; j < a->hidden; j++)
	{
		double		z = n->w.trunk2_b[j];

		for (i = 0; i < a->hidden; i++)
			z += (double) n->w.trunk2_w[j * a->hidden + i] * h1[i];
		h2[j] = tanh(z);
	}
	for (j = 0; j < a->n_actions; j++)
	{
		logit[j] = n->w.actor_b[j];
		for (i = 0; i < a->hidden; i++)
			logit[j] += (double) n->w.actor_w[j * a->hidden + i] * h2[i];
	}
	*value = n->w.critic_b[0];
	for (i = 0; i < a->hidden; i++)
		*value += (double) n->w.critic_w[i] * h2[i];
	max = logit[0];
	for (j = 1; j < a->n_actions; j++)
		max = logit[j] > max ? logit[j] : max;
	for (j = 0; j < a->n_actions; j++)
		sum += (probs[j] = exp(logit[j] - max));
	for (j = 0; j < a->n_actions; j++)
		probs[j] /= sum;
}

/* Deterministic pseudo-random floats in [-scale, scale]. */
static float
frand(unsigned int *seed, float scale)
{
	*seed = *seed * 1103515245u + 12345u;
	return ((float) ((*seed >> 8) & 0xffff) / 32768.0f - 1.0f) * scale;
}

/* Fill every weight of a Net with pseudo-random values. */
static void
net_randomise(Net *n, unsigned int seed, float scale)
{
	int			i,
				k;

	for (i = 0; i < RL_N_PARAMS; i++)
		for (k = 0; k < param_size(&n->w.arch, i); k++)
			n->buf[i][k] = frand(&seed, scale);
}

/* All weights zero, actor bias [0, ln 2, ln 3]: probs 1/6, 1/3, 1/2 exactly. */
static void
test_hand_bias_only(void)
{
	Net			n;
	float		obs[2] = {5.0f, -7.0f};
	float		probs[3],
				value;

	net_init(&n, 1, 0, 2);
	n.buf[5][0] = 0.0f;
	n.buf[5][1] = (float) log(2.0);
	n.buf[5][2] = (float) log(3.0);
	n.buf[7][0] = 0.25f;
	run(&n, obs, probs, &value);
	ok(fabs(probs[0] - 1.0 / 6) < 1e-6 && fabs(probs[1] - 1.0 / 3) < 1e-6 &&
	   fabs(probs[2] - 0.5) < 1e-6 && value == 0.25f,
	   "zero weights, actor bias [0, ln 2, ln 3] gives 1/6, 1/3, 1/2 and value 0.25 (%.3g)",
	   fabs(probs[2] - 0.5));
	net_free(&n);
}

/*
 * obs (1, -1); trunk.0 W [[0.5, -0.25], [1, 1]], b [0, 0.1];
 * trunk.2 W [[1, 0], [0, -2]], b 0; actor W [[1, 0], [0, 1], [1, 1]], b 0;
 * critic W [2, -1], b 0.5.  By hand: z1 = (0.75, 0.1),
 * h2 = (tanh(tanh 0.75), tanh(-2 tanh 0.1)) = (p, q), logits (p, q, p + q),
 * value 2p - q + 0.5.
 */
static void
test_hand_tiny(void)
{
	Net			n;
	float		obs[2] = {1.0f, -1.0f};
	float		probs[3],
				value;
	double		p = tanh(tanh(0.75)),
				q = tanh(-2.0 * tanh(0.1));
	double		e0 = exp(p),
				e1 = exp(q),
				e2 = exp(p + q),
				s = e0 + e1 + e2;
	double		err;

	net_init(&n, 1, 0, 2);
	n.buf[0][0] = 0.5f;
	n.buf[0][1] = -0.25f;
	n.buf[0][2] = 1.0f;
	n.buf[0][3] = 1.0f;
	n.buf[1][1] = 0.1f;
	n.buf[2][0] = 1.0f;
	n.buf[2][3] = -2.0f;
	n.buf[4][0] = 1.0f;
	n.buf[4][3] = 1.0f;
	n.buf[4][4] = 1.0f;
	n.buf[4][5] = 1.0f;
	n.buf[6][0] = 2.0f;
	n.buf[6][1] = -1.0f;
	n.buf[7][0] = 0.5f;
	run(&n, obs, probs, &value);
	err = fmax(fmax(fabs(probs[0] - e0 / s), fabs(probs[1] - e1 / s)),
			   fmax(fabs(probs[2] - e2 / s), fabs(value - (2 * p - q + 0.5))));
	ok(err < 1e-6, "hand-computed 2-2 network matches (%.3g)", err);
	net_free(&n);
}

/* Large logits must not overflow exp: softmax subtracts the maximum. */
static void
test_softmax_stable(void)
{
	Net			n;
	float		obs[2] = {0, 0};
	float		probs[3],
				value;

	net_init(&n, 1, 0, 2);
	n.buf[5][0] = 1000.0f;
	n.buf[5][1] = 999.0f;
	n.buf[5][2] = -1000.0f;
	run(&n, obs, probs, &value);
	ok(isfinite(probs[0]) && isfinite(probs[1]) &&
	   fabs(probs[0] - 1 / (1 + exp(-1.0))) < 1e-6 && probs[2] == 0.0f,
	   "logits 1000, 999, -1000 give finite probabilities (%.3g)", probs[0]);
	net_free(&n);
}

/* Probabilities sum to 1 and match float64 for many random nets and inputs. */
static void
test_random_vs_f64(int window, int n_features, int hidden)
{
	Net			n;
	unsigned int seed = 42;
	double		worst_sum = 0,
				worst_diff = 0;
	int			trial;
	char		what[128];

	net_init(&n, window, n_features, hidden);
	for (trial = 0; trial < 200; trial++)
	{
		float		obs[512],
					probs[3],
					value;
		double		rp[3],
					rv;
		int			i;
		float		scale = trial < 50 ? 100.0f : 3.0f;

		net_randomise(&n, 1000 + trial, 1.0f / sqrtf((float) hidden));
		for (i = 0; i < n.w.arch.obs_dim; i++)
			obs[i] = frand(&seed, scale);
		run(&n, obs, probs, &value);
		reference_f64(&n, obs, rp, &rv);
		worst_sum = fmax(worst_sum, fabs(probs[0] + probs[1] + probs[2] - 1.0));
		for (i = 0; i < 3; i++)
			worst_diff = fmax(worst_diff, fabs(probs[i] - rp[i]));
		worst_diff = fmax(worst_diff, fabs(value - rv));
	}
	snprintf(what, sizeof(what),
			 "obs_dim %d hidden %d: probabilities sum to 1 (200 random nets)",
			 n.w.arch.obs_dim, hidden);
	ok(worst_sum < 1e-6, "%s (%.3g)", what, worst_sum);
	snprintf(what, sizeof(what),
			 "obs_dim %d hidden %d: matches a float64 forward within 1e-5",
			 n.w.arch.obs_dim, hidden);
	ok(worst_diff < TOL, "%s (%.3g)", what, worst_diff);
	net_free(&n);
}

/* Either output may be NULL; the other is unchanged. */
static void
test_null_outputs(void)
{
	Net			n;
	float		obs[33] = {0},
				probs[3],
				probs2[3],
				value,
				value2;

	net_init(&n, 32, 0, 64);
	net_randomise(&n, 7, 0.2f);
	run(&n, obs, probs, &value);
	run(&n, obs, probs2, NULL);
	run(&n, obs, NULL, &value2);
	ok(memcmp(probs, probs2, sizeof(probs)) == 0 && value == value2,
	   "NULL probs or NULL value leaves the other output identical (0)");
	net_free(&n);
}

/* Greedy action: the first maximum wins. */
static void
test_argmax(void)
{
	float		tie01[3] = {0.4f, 0.4f, 0.2f};
	float		tie12[3] = {0.2f, 0.4f, 0.4f};
	float		all[3] = {1.0f / 3, 1.0f / 3, 1.0f / 3};
	float		last[3] = {0.1f, 0.2f, 0.7f};

	ok(rl_argmax(tie01, 3) == 0, "argmax tie between 0 and 1 picks 0 (0)");
	ok(rl_argmax(tie12, 3) == 1, "argmax tie between 1 and 2 picks 1 (0)");
	ok(rl_argmax(all, 3) == 0, "argmax three-way tie picks 0 (0)");
	ok(rl_argmax(last, 3) == 2, "argmax picks the unique maximum (0)");
	ok(rl_argmax(last, 1) == 0, "argmax of one element is 0 (0)");
}

/* Compare with PyTorch outputs written by interop.py reference. */
static void
test_reference(const char *path)
{
	FILE	   *f = fopen(path, "r");
	Net			n;
	int			window,
				n_features,
				obs_dim,
				hidden,
				n_actions,
				nobs,
				i,
				k;
	double		worst = 0,
				x;
	int			rarg,
				carg,
				bad_argmax = 0,
				tie_argmax = 0;
	char		what[256];

	if (f == NULL || fscanf(f, "%d %d %d %d %d", &window, &n_features,
							&obs_dim, &hidden, &n_actions) != 5 ||
		n_actions != RL_N_ACTIONS || obs_dim != window + 1 + n_features ||
		obs_dim > 512 || hidden > 512)
	{
		ok(0, "reference file readable (0)");
		if (f)
			fclose(f);
		return;
	}
	net_init(&n, window, n_features, hidden);
	for (i = 0; i < RL_N_PARAMS; i++)
		for (k = 0; k < param_size(&n.w.arch, i); k++)
		{
			if (fscanf(f, "%lf", &x) != 1)
			{
				ok(0, "reference weights readable (0)");
				fclose(f);
				return;
			}
			n.buf[i][k] = (float) x;
		}
	if (fscanf(f, "%d", &nobs) != 1)
		nobs = -1;
	for (i = 0; i < nobs; i++)
	{
		float		obs[512],
					probs[3],
					value;
		double		ref[4];

		for (k = 0; k < obs_dim; k++)
		{
			if (fscanf(f, "%lf", &x) != 1)
				nobs = -1;
			obs[k] = (float) x;
		}
		for (k = 0; k < 4; k++)
			if (fscanf(f, "%lf", &ref[k]) != 1)
				nobs = -1;
		if (nobs < 0)
			break;
		run(&n, obs, probs, &value);
		for (k = 0; k < 3; k++)
			worst = fmax(worst, fabs(probs[k] - ref[k]));
		worst = fmax(worst, fabs(value - ref[3]));
		/* greedy actions may differ only where PyTorch is within TOL of a tie */
		rarg = 0;
		for (k = 1; k < 3; k++)
			if (ref[k] > ref[rarg])
				rarg = k;
		carg = rl_argmax(probs, 3);
		if (carg != rarg)
		{
			if (ref[rarg] - ref[carg] > TOL)
				bad_argmax++;
			else
				tie_argmax++;
		}
	}
	fclose(f);
	snprintf(what, sizeof(what),
			 "%s: %d observations (obs_dim %d, hidden %d) match PyTorch within 1e-5",
			 path, nobs, obs_dim, hidden);
	ok(nobs > 0 && worst < TOL, "%s (%.3g)", what, worst);
	snprintf(what, sizeof(what),
			 "%s: greedy actions agree with PyTorch (%d near-ties differ)",
			 path, tie_argmax);
	ok(nobs > 0 && bad_argmax == 0, "%s (%.3g)", what, (double) bad_argmax);
	net_free(&n);
}

/* ns per call for obs_dim 33, hidden 64: informational. */
static void
bench(void)
{
	Net			n;
	float		obs[33] = {0},
				probs[3],
				value,
				sink = 0;
	float		scratch[2 * 64 + 3];
	struct timespec t0,
				t1;
	double		best = 1e30;
	int			rep,
				i;

	net_init(&n, 32, 0, 64);
	net_randomise(&n, 3, 0.2f);
	for (rep = 0; rep < 20; rep++)
	{
		clock_gettime(CLOCK_MONOTONIC, &t0);
		for (i = 0; i < 50000; i++)
		{
			obs[i % 33] += 0.001f;
			rl_forward(&n.w, obs, probs, &value, scratch);
			sink += probs[0] + value;
		}
		clock_gettime(CLOCK_MONOTONIC, &t1);
		best = fmin(best, ((t1.tv_sec - t0.tv_sec) * 1e9 +
						   (t1.tv_nsec - t0.tv_nsec)) / 50000);
	}
	diag("rl_forward obs_dim 33 hidden 64: %.0f ns/call (best of 20) [%g]",
		 best, sink != sink ? 0.0 : 1.0);
	net_free(&n);
}

int
main(int argc, char **argv)
{
	int			i;

	test_hand_bias_only();
	test_hand_tiny();
	test_softmax_stable();
	test_null_outputs();
	test_argmax();
	test_random_vs_f64(32, 0, 64);
	test_random_vs_f64(5, 3, 17);
	test_random_vs_f64(1, 0, 1);
	for (i = 1; i < argc; i++)
		if (strcmp(argv[i], "--bench") != 0)
			test_reference(argv[i]);
	for (i = 1; i < argc; i++)
		if (strcmp(argv[i], "--bench") == 0)
			bench();
	return done_testing();
}
