/*-------------------------------------------------------------------------
 *
 * test_env.c
 *	  Standalone tests of the trading environment, the batched rollout with
 *	  GAE and the greedy backtest (src/core/env.c, src/core/rollout.c,
 *	  src/core/backtest.c).  Prints TAP lines, exits non-zero on any failure.
 *
 * Built by test/c/Makefile.env.  When src/core/forward.c is missing or does not
 * compile, the Makefile defines RL_TEST_OWN_FORWARD and this file supplies
 * rl_forward and rl_argmax from its private reference implementation;
 * otherwise the real forward pass is also cross-checked against it.
 *
 * test/c/test_env.c
 *
 *-------------------------------------------------------------------------
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "env.h"
#include "rollout.h"
#include "backtest.h"
#include "tap.h"

/* Relative-or-absolute closeness for doubles. */
static int
near(double a, double b, double tol)
{
	return fabs(a - b) <= tol * (1.0 + fabs(b));
}

/* ---------- private reference forward pass, in double ---------- */

/* Straightforward actor-critic in double, independent of forward.c. */
static void
ref_forward(const RlWeights *w, const float *obs, float *probs, float *value)
{
	const RlArch *a = &w->arch;
	double		h1[64];
	double		h2[64];
	double		logit[RL_N_ACTIONS];
	double		mx;
	double		z = 0.0;
	int			i;
	int			j;

	for (i = 0; i < a->hidden; i++)
	{
		double		s = w->trunk0_b[i];

		for (j = 0; j < a->obs_dim; j++)
			s += (double) w->trunk0_w[i * a->obs_dim + j] * obs[j];
		h1[i] = tanh(s);
	}
	for (i = 0; i < a->hidden; i++)
	{
		double		s = w->trunk2_b[i];

		for (j = 0; j < a->hidden; j++)
			s += (double) w->trunk2_w[i * a->hidden + j] * h1[j];
		h2[i] = tanh(s);
	}
	for (i = 0; i < a->n_actions; i++)
	{
		double		s = w->actor_b[i];

		for (j = 0; j < a->hidden; j++)
			s += (double) w->actor_w[i * a->hidden + j] * h2[j];
		logit[i] = s;
	}
	mx = logit[0];
	for (i = 1; i < a->n_actions; i++)
		if (logit[i] > mx)
			mx = logit[i];
	for (i = 0; i < a->n_actions; i++)
		z += exp(logit[i] - mx);
	if (probs != NULL)
		for (i = 0; i < a->n_actions; i++)
			probs[i] = (float) (exp(logit[i] - mx) / z);
	if (value != NULL)
	{
		double		s = w->critic_b[0];

		for (j = 0; j < a->hidden; j++)
			s += (double) w->critic_w[j] * h2[j];
		*value = (float) s;
	}
}

/* First index of the largest probability. */
static int
ref_argmax(const float *p, int n)
{
	int			best = 0;
	int			i;

	for (i = 1; i < n; i++)
		if (p[i] > p[best])
			best = i;
	return best;
}

#ifdef RL_TEST_OWN_FORWARD
/* Stand-in for src/core/forward.c when it is missing or does not compile. */
void
rl_forward(const RlWeights *w, const float *obs, float *probs, float *value,
		   float *scratch)
{
	(void) scratch;
	ref_forward(w, obs, probs, value);
}

/* Stand-in greedy choice, same tie rule as forward.h. */
int
rl_argmax(const float *probs, int n)
{
	return ref_argmax(probs, n);
}
#endif

/* ---------- small deterministic helpers ---------- */

static uint64_t lcg_state = 12345;

/* Test data only: a tiny LCG, uniform in [-1, 1). */
static double
lcg(void)
{
	lcg_state = lcg_state * UINT64_C(6364136223846793005) +
		UINT64_C(1442695040888963407);
	return (double) (lcg_state >> 11) / 4503599627370496.0 - 1.0;
}

/* Weight storage for a network of at most hidden 8, obs_dim 16. */
typedef struct TestNet
{
	float		t0w[8 * 16];
	float		t0b[8];
	float		t2w[8 * 8];
	float		t2b[8];
	float		aw[RL_N_ACTIONS * 8];
	float		ab[RL_N_ACTIONS];
	float		cw[8];
	float		cb[1];
	RlWeights	w;
} TestNet;

/* Wire the pointers and fill with zeros (or random values, scale > 0). */
static void
net_init(TestNet *n, int window, int n_features, int hidden, double scale)
{
	float	   *all[] = {n->t0w, n->t0b, n->t2w, n->t2b, n->aw, n->ab, n->cw, n->cb};
	int			sizes[] = {8 * 16, 8, 8 * 8, 8, RL_N_ACTIONS * 8, RL_N_ACTIONS, 8, 1};
	int			i;
	int			j;

	for (i = 0; i < 8; i++)
		for (j = 0; j < sizes[i]; j++)
			all[i][j] = (float) (scale * lcg());
	n->w.arch.window = window;
	n->w.arch.n_features = n_features;
	n->w.arch.obs_dim = window + 1 + n_features;
	n->w.arch.hidden = hidden;
	n->w.arch.n_actions = RL_N_ACTIONS;
	n->w.trunk0_w = n->t0w;
	n->w.trunk0_b = n->t0b;
	n->w.trunk2_w = n->t2w;
	n->w.trunk2_b = n->t2b;
	n->w.actor_w = n->aw;
	n->w.actor_b = n->ab;
	n->w.critic_w = n->cw;
	n->w.critic_b = n->cb;
}

/* A network whose actor bias alone decides: always action "a". */
static void
net_constant(TestNet *n, int window, int a)
{
	int			i;

	net_init(n, window, 0, 2, 0.0);
	for (i = 0; i < RL_N_ACTIONS; i++)
		n->ab[i] = (i == a) ? 10.0f : -10.0f;
}

/* ---------- env ---------- */

/* Returns and sigma feed every observation: check them by hand. */
static void
test_returns_sigma(void)
{
	double		prices[] = {100.0, 110.0, 99.0, 99.0, 108.9};
	double		r[5];
	double		bad[] = {100.0, 101.0, 0.0, 102.0};
	double		badnan[] = {100.0, 101.0, 102.0, NAN};
	double		rs1[] = {0.0, 1.0, 2.0};
	double		rs2[] = {99.0, 3.0, 4.0};	/* r_0 must be ignored */
	double		flat[] = {0.0, 0.01, 0.01, 0.01};
	RlSeries	ss[3];
	char		err[RL_ENV_ERRLEN];
	double		sigma = -1.0;
	int			rc;

	rc = rl_env_returns(prices, 5, r, err);
	ok(rc == RL_ENV_OK && err[0] == '\0' && r[0] == 0.0 &&
	   near(r[1], log(1.1), 1e-15) && near(r[2], log(0.9), 1e-15) &&
	   r[3] == 0.0 && near(r[4], log(1.1), 1e-15),
	   "returns of 100, 110, 99, 99, 108.9 are 0, ln 1.1, ln 0.9, 0, ln 1.1");

	rc = rl_env_returns(bad, 4, r, err);
	ok(rc == RL_ENV_BAD_PRICE && strstr(err, "index 2") != NULL,
	   "zero price refused, naming index 2 (%s)", err);
	rc = rl_env_returns(badnan, 4, r, err);
	ok(rc == RL_ENV_BAD_PRICE && strstr(err, "index 3") != NULL,
	   "NaN price refused, naming index 3 (%s)", err);
	bad[2] = -5.0;
	rc = rl_env_returns(bad, 4, r, err);
	ok(rc == RL_ENV_BAD_PRICE, "negative price refused");
	{
		/* positive and finite, but 100 / 1e-310 overflows to infinity */
		double		denormal[4] = {100.0, 1e-310, 100.0, 101.0};

		rc = rl_env_returns(denormal, 4, r, err);
		ok(rc == RL_ENV_BAD_PRICE && strstr(err, "index 2") != NULL &&
		   strstr(err, "not finite") != NULL,
		   "a denormal price whose log return overflows is refused, naming index 2 (%s)", err);
	}
	ok(rl_env_returns(prices, 0, r, err) == RL_ENV_TOO_SHORT,
	   "zero prices refused");
	ok(rl_env_returns(NULL, 3, r, err) == RL_ENV_BAD_ARG &&
	   rl_env_returns(prices, 3, NULL, NULL) == RL_ENV_BAD_ARG,
	   "NULL prices or returns refused (NULL err allowed)");

	/* pooled sample std of 1, 2, 3, 4 = sqrt(5 / 3) */
	ss[0].n = 3;
	ss[0].returns = rs1;
	ss[0].features = NULL;
	ss[1].n = 3;
	ss[1].returns = rs2;
	ss[1].features = NULL;
	ss[2].n = 1;				/* one price: no return, contributes nothing */
	ss[2].returns = rs2;
	ss[2].features = NULL;
	rc = rl_env_sigma(ss, 3, &sigma, err);
	ok(rc == RL_ENV_OK && near(sigma, sqrt(5.0 / 3.0), 1e-15),
	   "sigma pools r_1.. of all series, sample std sqrt(5/3) (got %.17g)",
	   sigma);

	ss[0].n = 4;
	ss[0].returns = flat;
	rc = rl_env_sigma(ss, 1, &sigma, err);
	ok(rc == RL_ENV_BAD_SIGMA && strstr(err, "sigma") != NULL,
	   "constant returns give sigma 0: refused (%s)", err);
	ss[0].n = 2;
	rc = rl_env_sigma(ss, 1, &sigma, err);
	ok(rc == RL_ENV_TOO_SHORT, "one return is too few for sigma (%s)", err);
	ok(rl_env_check_sigma(NAN, err) == RL_ENV_BAD_SIGMA &&
	   rl_env_check_sigma(-1.0, err) == RL_ENV_BAD_SIGMA &&
	   rl_env_check_sigma(INFINITY, err) == RL_ENV_BAD_SIGMA &&
	   rl_env_check_sigma(0.01, err) == RL_ENV_OK,
	   "sigma check: NaN, negative, infinite refused; 0.01 accepted");
}

/* Observation layout and reward arithmetic on hand-made numbers. */
static void
test_observation_reward(void)
{
	double		r[] = {0.0, 0.1, 0.2, 0.3, 0.4, 0.5};
	float		f[6 * 2];
	float		obs[3 + 1 + 2];
	float		want[] = {0.4f, 0.6f, 0.8f, -1.0f, 40.0f, 41.0f};
	RlSeries	s;
	char		err[RL_ENV_ERRLEN];
	int			i;
	int			rc;

	for (i = 0; i < 6; i++)
	{
		f[2 * i] = (float) (10 * i);
		f[2 * i + 1] = (float) (10 * i + 1);
	}
	s.n = 6;
	s.returns = r;
	s.features = f;

	rc = rl_env_observation(&s, 3, 2, 0.5, 4, -1, obs, err);
	ok(rc == RL_ENV_OK && memcmp(obs, want, sizeof(want)) == 0,
	   "obs at t=4, W=3: [r2 r3 r4]/sigma, position -1, features of row 4");
	rc = rl_env_observation(&s, 3, 0, 0.5, 3, 1, obs, err);
	ok(rc == RL_ENV_OK && obs[0] == 0.2f && obs[1] == 0.4f &&
	   obs[2] == 0.6f && obs[3] == 1.0f,
	   "obs at the first decision t=W=3 without features");
	rc = rl_env_observation(&s, 3, 2, 0.5, 5, 0, obs, err);
	ok(rc == RL_ENV_OK && obs[2] == 1.0f && obs[4] == 50.0f,
	   "obs at the last price t=n-1 (serving) is allowed");
	ok(rl_env_observation(&s, 3, 2, 0.5, 2, 0, obs, err) == RL_ENV_TOO_SHORT,
	   "obs at t < W refused (%s)", err);
	ok(rl_env_observation(&s, 3, 2, 0.5, 6, 0, obs, err) == RL_ENV_TOO_SHORT,
	   "obs at t >= n refused");
	ok(rl_env_observation(&s, 3, 2, 0.5, 4, 2, obs, err) == RL_ENV_BAD_ARG,
	   "position 2 refused");
	ok(rl_env_observation(&s, 3, 2, 0.0, 4, 0, obs, err) == RL_ENV_BAD_SIGMA,
	   "obs with sigma 0 refused");
	s.features = NULL;
	ok(rl_env_observation(&s, 3, 2, 0.5, 4, 0, obs, err) == RL_ENV_BAD_ARG,
	   "n_features > 0 without features refused (%s)", err);

	ok(rl_action_position(0) == -1 && rl_action_position(1) == 0 &&
	   rl_action_position(2) == 1, "actions 0, 1, 2 are positions -1, 0, +1");
	ok(near(rl_env_reward(1, 0, 0.01, 0.0005, 0.02), 0.475, 1e-14),
	   "reward entering long: (0.01 - 0.0005) / 0.02 = 0.475");
	ok(near(rl_env_reward(-1, 1, 0.01, 0.0005, 0.02), -0.55, 1e-14),
	   "reward long to short pays 2 x cost: (-0.01 - 0.001) / 0.02 = -0.55");
	ok(near(rl_env_reward(1, 1, 0.01, 0.0005, 0.02), 0.5, 1e-14) &&
	   rl_env_reward(0, 0, 0.01, 0.0005, 0.02) == 0.0,
	   "holding long earns r / sigma; flat earns 0");
	ok(near(rl_env_reward(0, -1, -0.03, 0.0005, 0.02), -0.025, 1e-14),
	   "closing a short costs only the cost");
}

/* Episode-table edge cases: too short, exact multiples, trailing chunks. */
static void
test_episodes(void)
{
	int64_t		lens[] = {33, 34, 256 + 33, 0, 2 * 256 + 33, 256 + 33 + 10};
	RlEpisode	eps[16];
	int64_t		ne = -1;
	int64_t		nd = -1;
	int64_t		nout = -1;
	char		err[RL_ENV_ERRLEN];
	int			rc;

	ok(rl_env_decisions(33, 32) == 0 && rl_env_decisions(34, 32) == 1 &&
	   rl_env_decisions(0, 32) == 0,
	   "decisions: n=33 gives 0, n=34 gives 1 (W=32)");

	rc = rl_env_count_episodes(lens, 1, 32, 256, &ne, &nd, err);
	ok(rc == RL_ENV_OK && ne == 0 && nd == 0,
	   "series shorter than W+2 prices: no episodes");
	rc = rl_env_episodes(lens, 1, 32, 256, eps, 16, &nout, err);
	ok(rc == RL_ENV_OK && nout == 0, "episode table of a short series is empty");

	rc = rl_env_count_episodes(lens, 6, 32, 256, &ne, &nd, err);
	ok(rc == RL_ENV_OK && ne == 6 && nd == 1 + 256 + 512 + 266,
	   "count: 6 episodes, %lld decisions", (long long) nd);
	rc = rl_env_episodes(lens, 6, 32, 256, eps, 16, &nout, err);
	ok(rc == RL_ENV_OK && nout == 6, "table has 6 episodes");
	ok(eps[0].series == 1 && eps[0].t0 == 32 && eps[0].len == 1,
	   "n=W+2: one episode of one decision at t=W");
	ok(eps[1].series == 2 && eps[1].t0 == 32 && eps[1].len == 256,
	   "exactly 256 decisions: one full episode");
	ok(eps[2].series == 4 && eps[2].t0 == 32 && eps[2].len == 256 &&
	   eps[3].series == 4 && eps[3].t0 == 288 && eps[3].len == 256,
	   "exact multiple of 256: two full episodes, no empty third");
	ok(eps[4].series == 5 && eps[4].t0 == 32 && eps[4].len == 256 &&
	   eps[5].series == 5 && eps[5].t0 == 288 && eps[5].len == 10 &&
	   eps[5].t0 + eps[5].len - 1 == lens[5] - 2,
	   "trailing chunk of 10 is an episode ending at t=n-2");
	rc = rl_env_episodes(lens, 6, 32, 256, eps, 5, &nout, err);
	ok(rc == RL_ENV_NO_SPACE, "too small a table refused (%s)", err);
	ok(rl_env_episodes(lens, 6, 0, 256, eps, 16, &nout, err) == RL_ENV_BAD_ARG &&
	   rl_env_episodes(lens, 6, 32, 0, eps, 16, &nout, err) == RL_ENV_BAD_ARG &&
	   rl_env_episodes(NULL, 6, 32, 256, eps, 16, &nout, err) == RL_ENV_BAD_ARG,
	   "window 0, episode_len 0 and NULL lengths refused");
}

/* ---------- rollout ---------- */

#define RW 4					/* window of the rollout tests */
#define RF 1					/* features */
#define RD (RW + 1 + RF)		/* obs_dim */
#define RMAXT 200

/* Per-call record of a test policy. */
typedef struct PolicyLog
{
	int			calls;
	int64_t		sizes[64];
	int			fail_at;		/* return non-zero on this call (-1: never) */
	int			mode;			/* 0: obs-dependent, 1: fixed probs, 2: NaN */
} PolicyLog;

/* Row-wise deterministic policy, so a row's output depends only on its obs. */
static void
policy_row(const float *o, float *p, float *v)
{
	double		l0 = 0.5 * o[0];
	double		l1 = 0.3 + 0.2 * o[RW];
	double		l2 = -0.4 * o[RW - 1] + 0.1 * o[RW + 1];
	double		mx = fmax(l0, fmax(l1, l2));
	double		z = exp(l0 - mx) + exp(l1 - mx) + exp(l2 - mx);

	p[0] = (float) (exp(l0 - mx) / z);
	p[1] = (float) (exp(l1 - mx) / z);
	p[2] = (float) (exp(l2 - mx) / z);
	*v = (float) (0.1 * o[RW - 1] + 0.05 * o[RW]);
}

/* Test policy: logs batch sizes, can fail on a chosen call or emit NaN. */
static int
test_policy(void *arg, const float *obs, int64_t n, float *probs,
			float *values)
{
	PolicyLog  *log_ = (PolicyLog *) arg;
	int64_t		i;

	if (log_->calls < 64)
		log_->sizes[log_->calls] = n;
	if (log_->calls++ == log_->fail_at)
		return 1;
	for (i = 0; i < n; i++)
	{
		float	   *p = probs + i * RL_N_ACTIONS;

		if (log_->mode == 0)
			policy_row(obs + i * RD, p, values + i);
		else
		{
			p[0] = 0.2f;
			p[1] = log_->mode == 2 ? NAN : 0.5f;
			p[2] = 0.3f;
			values[i] = 0.0f;
		}
	}
	return 0;
}

/* Rollout outputs for up to RMAXT transitions. */
typedef struct RollBufs
{
	float		obs[RMAXT * RD];
	int32_t		actions[RMAXT];
	float		logp[RMAXT];
	float		values[RMAXT];
	float		rewards[RMAXT];
	float		adv[RMAXT];
	float		ret[RMAXT];
	float		work[64 * (RD + RL_N_ACTIONS + 1)];
	RlRolloutBuffers b;
} RollBufs;

/* Point the rollout buffer struct at a RollBufs' arrays. */
static void
rollbufs_init(RollBufs *r)
{
	memset(r, 0, sizeof(*r));
	r->b.capacity = RMAXT;
	r->b.obs = r->obs;
	r->b.actions = r->actions;
	r->b.logp = r->logp;
	r->b.values = r->values;
	r->b.rewards = r->rewards;
	r->b.advantages = r->adv;
	r->b.returns = r->ret;
	r->b.work = r->work;
}

static RollBufs rb1;
static RollBufs rb2;
static RollBufs rb3;

/* GAE against a hand-computed 3-step example. */
static void
test_gae(void)
{
	float		rew[] = {1.0f, 0.0f, 2.0f};
	float		val[] = {0.5f, 1.0f, 1.5f};
	float		adv[3];
	float		ret[3];

	/*
	 * gamma 0.9, lambda 0.8, value after the end 0:
	 * k=2: delta = 2 - 1.5 = 0.5, A = 0.5, R = 2.0
	 * k=1: delta = 0 + 0.9*1.5 - 1 = 0.35, A = 0.35 + 0.72*0.5 = 0.71
	 * k=0: delta = 1 + 0.9*1.0 - 0.5 = 1.4, A = 1.4 + 0.72*0.71 = 1.9112
	 */
	rl_gae(rew, val, 3, 0.9, 0.8, adv, ret);
	ok(near(adv[2], 0.5, 1e-6) && near(adv[1], 0.71, 1e-6) &&
	   near(adv[0], 1.9112, 1e-6),
	   "GAE advantages of the 3-step example: 1.9112, 0.71, 0.5");
	ok(near(ret[2], 2.0, 1e-6) && near(ret[1], 1.71, 1e-6) &&
	   near(ret[0], 2.4112, 1e-6),
	   "GAE returns = advantages + values: 2.4112, 1.71, 2.0");
	rl_gae(rew, val, 3, 1.0, 1.0, adv, ret);
	ok(near(ret[0], 3.0, 1e-6) && near(ret[1], 2.0, 1e-6) &&
	   near(ret[2], 2.0, 1e-6),
	   "gamma = lambda = 1: returns are the undiscounted rewards-to-go");
}

/* Batched rollout: bookkeeping, determinism, abort and input checks. */
static void
test_rollout(void)
{
	double		p0[40];
	double		p1[23];
	double		r0[40];
	double		r1[23];
	float		f0[40 * RF];
	float		f1[23 * RF];
	RlSeries	ss[2];
	int64_t		lens[2] = {40, 23};
	RlEpisode	eps[16];
	int64_t		ne;
	RlRolloutSpec spec;
	RlRolloutStats st1;
	RlRolloutStats st2;
	PolicyLog	pl;
	char		err[RL_ENV_ERRLEN];
	double		sigma;
	int64_t		ntr;
	int64_t		e;
	int64_t		off;
	int			i;
	int			rc;
	int			all_ok;
	int			differ;
	double		rsum;
	int64_t		cnt[RL_N_ACTIONS] = {0};

	p0[0] = 100.0;
	for (i = 1; i < 40; i++)
		p0[i] = p0[i - 1] * exp(0.01 * lcg());
	p1[0] = 50.0;
	for (i = 1; i < 23; i++)
		p1[i] = p1[i - 1] * exp(0.02 * lcg());
	for (i = 0; i < 40 * RF; i++)
		f0[i] = (float) lcg();
	for (i = 0; i < 23 * RF; i++)
		f1[i] = (float) lcg();
	rl_env_returns(p0, 40, r0, NULL);
	rl_env_returns(p1, 23, r1, NULL);
	ss[0].n = 40;
	ss[0].returns = r0;
	ss[0].features = f0;
	ss[1].n = 23;
	ss[1].returns = r1;
	ss[1].features = f1;
	rl_env_sigma(ss, 2, &sigma, NULL);

	/* W=4, episode_len 10: series 0 has 35 decisions (10,10,10,5), 1 has 18 */
	rc = rl_env_episodes(lens, 2, RW, 10, eps, 16, &ne, err);
	ntr = rl_rollout_transitions(eps, ne);
	ok(rc == RL_ENV_OK && ne == 6 && ntr == 35 + 18,
	   "rollout setup: 6 episodes, 53 transitions");

	memset(&spec, 0, sizeof(spec));
	spec.series = ss;
	spec.n_series = 2;
	spec.window = RW;
	spec.n_features = RF;
	spec.sigma = sigma;
	spec.cost = RL_DEFAULT_COST;
	spec.gamma = RL_DEFAULT_GAMMA;
	spec.lambda = RL_DEFAULT_GAE_LAMBDA;
	spec.episodes = eps;
	spec.n_episodes = ne;
	spec.seed = 42;
	spec.policy = test_policy;
	spec.policy_arg = &pl;
	ok(rl_rollout_work_floats(ne, RD) <= 64 * (RD + RL_N_ACTIONS + 1),
	   "work buffer size: %lld floats", (long long) rl_rollout_work_floats(ne, RD));

	memset(&pl, 0, sizeof(pl));
	pl.fail_at = -1;
	rollbufs_init(&rb1);
	rc = rl_rollout(&spec, &rb1.b, &st1, err);
	ok(rc == RL_ENV_OK && err[0] == '\0', "rollout succeeds (%s)", err);
	ok(pl.calls == 10 && st1.n_steps == 10 && pl.sizes[0] == 6 &&
	   pl.sizes[4] == 6 && pl.sizes[5] == 5 && pl.sizes[7] == 5 &&
	   pl.sizes[8] == 4 && pl.sizes[9] == 4,
	   "one policy call per step; batch shrinks as short episodes end (6,..,6,5,5,5,4,4)");
	ok(st1.n_transitions == 53 && st1.n_episodes == 6,
	   "stats count 53 transitions, 6 episodes");

	/* every recorded transition is consistent with the environment */
	all_ok = 1;
	rsum = 0.0;
	off = 0;
	for (e = 0; e < ne; e++)
	{
		int32_t		prev = 0;
		int			k;

		for (k = 0; k < eps[e].len; k++)
		{
			int64_t		j = off + k;
			int64_t		t = eps[e].t0 + k;
			const RlSeries *s = &ss[eps[e].series];
			float		o[RD];
			float		p[RL_N_ACTIONS];
			float		v;
			int32_t		pos = rb1.actions[j] - 1;

			rl_env_observation(s, RW, RF, sigma, t, prev, o, NULL);
			policy_row(o, p, &v);
			if (memcmp(o, rb1.obs + j * RD, sizeof(o)) != 0 ||
				rb1.actions[j] < 0 || rb1.actions[j] > 2 ||
				rb1.values[j] != v ||
				rb1.logp[j] != (float) log((double) p[rb1.actions[j]]) ||
				rb1.rewards[j] != (float) rl_env_reward(pos, prev,
														s->returns[t + 1],
														RL_DEFAULT_COST,
														sigma) ||
				!near(rb1.ret[j], (double) rb1.adv[j] + rb1.values[j], 1e-6))
				all_ok = 0;
			rsum += rl_env_reward(pos, prev, s->returns[t + 1],
								  RL_DEFAULT_COST, sigma);
			cnt[rb1.actions[j]]++;
			prev = pos;
		}
		/* terminal bootstrap: the last step's advantage is r - v */
		if (!near(rb1.adv[off + eps[e].len - 1],
				  (double) rb1.rewards[off + eps[e].len - 1] -
				  rb1.values[off + eps[e].len - 1], 1e-6))
			all_ok = 0;
		off += eps[e].len;
	}
	ok(all_ok, "each transition: obs (position from previous action, flat at episode start), value, log prob, reward and return match");
	ok(near(st1.mean_reward, rsum / 53.0, 1e-12) &&
	   near(st1.mean_episode_return, rsum / 6.0, 1e-12) &&
	   st1.action_counts[0] == cnt[0] && st1.action_counts[1] == cnt[1] &&
	   st1.action_counts[2] == cnt[2],
	   "stats: mean reward per step, mean episode return and action counts");

	/* GAE per episode equals rl_gae over that episode's slice */
	{
		float		a[16];
		float		r[16];

		rl_gae(rb1.rewards + 10, rb1.values + 10, 10, 0.99, 0.95, a, r);
		ok(memcmp(a, rb1.adv + 10, 10 * sizeof(float)) == 0 &&
		   memcmp(r, rb1.ret + 10, 10 * sizeof(float)) == 0,
		   "rollout GAE of episode 1 equals rl_gae on its slice (gamma 0.99, lambda 0.95)");
	}

	/* determinism */
	memset(&pl, 0, sizeof(pl));
	pl.fail_at = -1;
	rollbufs_init(&rb2);
	rc = rl_rollout(&spec, &rb2.b, &st2, err);
	ok(rc == RL_ENV_OK &&
	   memcmp(rb1.obs, rb2.obs, sizeof(rb1.obs)) == 0 &&
	   memcmp(rb1.actions, rb2.actions, sizeof(rb1.actions)) == 0 &&
	   memcmp(rb1.logp, rb2.logp, sizeof(rb1.logp)) == 0 &&
	   memcmp(rb1.values, rb2.values, sizeof(rb1.values)) == 0 &&
	   memcmp(rb1.rewards, rb2.rewards, sizeof(rb1.rewards)) == 0 &&
	   memcmp(rb1.adv, rb2.adv, sizeof(rb1.adv)) == 0 &&
	   memcmp(rb1.ret, rb2.ret, sizeof(rb1.ret)) == 0 &&
	   st1.mean_reward == st2.mean_reward,
	   "same seed: identical obs, actions, log probs, values, rewards, advantages, returns");

	/*
	 * Bounded memory (issue 16): every observation rebuilt from the series
	 * and the actions is the one stored; a rollout that stores none, GAE
	 * in place (advantages over rewards, returns over values), gives the
	 * same actions, log probs, advantages and returns.
	 */
	{
		int64_t		offsets[16 + 1];
		int64_t		buckets[64];
		float		o[RD];
		int			same = 1;

		rl_rollout_offsets(eps, ne, offsets, buckets);
		for (i = 0; i < ntr; i++)
			if (rl_rollout_observation(&spec, offsets, buckets, rb1.actions, i, o, err) != RL_ENV_OK ||
				memcmp(o, rb1.obs + i * RD, sizeof(o)) != 0)
				same = 0;
		ok(same && offsets[ne] == ntr,
		   "each of the 53 observations rebuilt from the series and the actions is the stored one");

		/* the update's fast path: copies of returns scaled once */
		{
			static float sc0[64];
			static float sc1[64];
			const float *scaled[2] = {sc0, sc1};
			int32_t		sr;
			int64_t		tt;
			int32_t		ps;

			rl_rollout_scale_returns(&ss[0], sigma, sc0);
			rl_rollout_scale_returns(&ss[1], sigma, sc1);
			same = 1;
			for (i = 0; i < ntr; i++)
			{
				if (rl_rollout_locate(&spec, offsets, buckets, rb1.actions, i, &sr, &tt, &ps, err) != RL_ENV_OK)
					same = 0;
				rl_rollout_scaled_observation(&spec, scaled, sr, tt, ps, o);
				if (memcmp(o, rb1.obs + i * RD, sizeof(o)) != 0)
					same = 0;
			}
			ok(same, "... and so is each copied from the returns scaled once (bit for bit, with the feature)");
		}
		ok(rl_rollout_observation(&spec, offsets, buckets, rb1.actions, ntr, o, err) == RL_ENV_BAD_ARG,
		   "a transition past the rollout is refused (%s)", err);

		memset(&pl, 0, sizeof(pl));
		pl.fail_at = -1;
		rollbufs_init(&rb3);
		rb3.b.obs = NULL;
		rb3.b.advantages = rb3.b.rewards;
		rb3.b.returns = rb3.b.values;
		rc = rl_rollout(&spec, &rb3.b, NULL, err);
		ok(rc == RL_ENV_OK &&
		   memcmp(rb1.actions, rb3.actions, sizeof(rb1.actions)) == 0 &&
		   memcmp(rb1.logp, rb3.logp, sizeof(rb1.logp)) == 0 &&
		   memcmp(rb1.adv, rb3.rewards, ntr * sizeof(float)) == 0 &&
		   memcmp(rb1.ret, rb3.values, ntr * sizeof(float)) == 0,
		   "without stored observations and with GAE in place: the same actions, log probs, advantages and returns (%s)", err);
	}

	spec.seed = 43;
	memset(&pl, 0, sizeof(pl));
	pl.fail_at = -1;
	rollbufs_init(&rb3);
	rc = rl_rollout(&spec, &rb3.b, NULL, err);
	differ = 0;
	for (i = 0; i < ntr; i++)
		if (rb1.actions[i] != rb3.actions[i])
			differ++;
	ok(rc == RL_ENV_OK && differ > 0,
	   "different seed: different actions (%d of 53 differ)", differ);

	/* abort */
	spec.seed = 42;
	memset(&pl, 0, sizeof(pl));
	pl.fail_at = 2;
	rollbufs_init(&rb3);
	rc = rl_rollout(&spec, &rb3.b, NULL, err);
	ok(rc == RL_ENV_ABORTED && pl.calls == 3 && strstr(err, "step 2") != NULL,
	   "policy returning non-zero aborts the rollout at once (%s)", err);

	/* invalid policy output */
	memset(&pl, 0, sizeof(pl));
	pl.fail_at = -1;
	pl.mode = 2;
	rc = rl_rollout(&spec, &rb3.b, NULL, err);
	ok(rc == RL_ENV_BAD_POLICY, "NaN probability refused (%s)", err);

	/* input checks */
	pl.mode = 0;
	rb3.b.capacity = 52;
	rc = rl_rollout(&spec, &rb3.b, NULL, err);
	ok(rc == RL_ENV_NO_SPACE, "buffers one transition short refused (%s)", err);
	rb3.b.capacity = RMAXT;
	spec.n_episodes = 0;
	ok(rl_rollout(&spec, &rb3.b, NULL, err) == RL_ENV_TOO_SHORT,
	   "no episodes refused (%s)", err);
	spec.n_episodes = ne;
	spec.sigma = 0.0;
	ok(rl_rollout(&spec, &rb3.b, NULL, err) == RL_ENV_BAD_SIGMA,
	   "rollout with sigma 0 refused");
	spec.sigma = sigma;
	eps[5].len = 19;			/* would read r_{n} */
	ok(rl_rollout(&spec, &rb3.b, NULL, err) == RL_ENV_BAD_ARG,
	   "episode running past t = n-2 refused (%s)", err);
	eps[5].len = 8;
	spec.policy = NULL;
	ok(rl_rollout(&spec, &rb3.b, NULL, err) == RL_ENV_BAD_ARG,
	   "NULL policy refused");
}

/*
 * The bucket index finds every transition's episode as a search would,
 * over many buckets, episodes of 1 to 300 steps and episodes shorter than
 * a bucket.
 */
static void
test_rollout_index(void)
{
	enum
	{
		NE = 2000
	};
	static RlEpisode eps[NE];
	static int64_t offsets[NE + 1];
	static int64_t buckets[NE * 300 / 64 + 2];
	static int32_t actions[NE * 300];
	RlRolloutSpec spec;
	uint64_t	x = 12345;
	int64_t		total = 0;
	int64_t		e = 0;
	int			all_ok = 1;
	char		err[RL_ENV_ERRLEN];

	for (int i = 0; i < NE; i++)
	{
		x = x * 6364136223846793005ULL + 1442695040888963407ULL;
		eps[i].series = i % 3;
		eps[i].t0 = 100 + i;
		eps[i].len = i % 7 == 0 ? 1 + (int32_t) ((x >> 33) % 5) : 1 + (int32_t) ((x >> 33) % 300);
		total += eps[i].len;
	}
	memset(&spec, 0, sizeof(spec));
	spec.episodes = eps;
	spec.n_episodes = NE;
	for (int64_t j = 0; j < total; j++)
		actions[j] = (int32_t) (j % 3);
	rl_rollout_offsets(eps, NE, offsets, buckets);
	for (int64_t j = 0; j < total; j++)
	{
		int32_t		s;
		int64_t		t;
		int32_t		p;

		while (offsets[e + 1] <= j)
			e++;
		if (rl_rollout_locate(&spec, offsets, buckets, actions, j, &s, &t, &p, err) != RL_ENV_OK ||
			s != eps[e].series || t != eps[e].t0 + (j - offsets[e]) ||
			p != (j == offsets[e] ? 0 : (int32_t) ((j - 1) % 3) - 1))
			all_ok = 0;
	}
	ok(all_ok && offsets[NE] == total,
	   "bucket index: all %lld transitions of %d episodes (1 to 300 steps) found in the right episode, bar and position",
	   (long long) total, NE);
	ok(rl_rollout_locate(&spec, offsets, buckets, actions, total, NULL, NULL, NULL, err) == RL_ENV_BAD_ARG &&
	   rl_rollout_locate(&spec, offsets, buckets, actions, -1, NULL, NULL, NULL, err) == RL_ENV_BAD_ARG,
	   "bucket index: a transition outside the rollout is refused (%s)", err);
}

/* Fixed-probability policy: sampling frequencies and zero-probability actions. */
static int
fixed_policy(void *arg, const float *obs, int64_t n, float *probs,
			 float *values)
{
	const float *p = (const float *) arg;
	int64_t		i;

	(void) obs;
	for (i = 0; i < n; i++)
	{
		memcpy(probs + i * RL_N_ACTIONS, p, RL_N_ACTIONS * sizeof(float));
		values[i] = 0.0f;
	}
	return 0;
}

/* The PRNG and the inverse-CDF sampler behind the rollout. */
static void
test_sampling(void)
{
	RlRng		a;
	RlRng		b;
	float		p[] = {0.2f, 0.5f, 0.3f};
	float		pz[] = {0.0f, 0.0f, 1.0f};
	int			cnt[3] = {0, 0, 0};
	int			i;
	int			same = 1;

	rl_rng_seed(&a, 7);
	rl_rng_seed(&b, 7);
	for (i = 0; i < 100; i++)
		if (rl_rng_next(&a) != rl_rng_next(&b))
			same = 0;
	ok(same, "same seed: same xoshiro256** stream");
	rl_rng_seed(&a, 0);
	ok(rl_rng_next(&a) != 0 && rl_rng_uniform(&a) < 1.0,
	   "seed 0 gives a usable state");

	rl_rng_seed(&a, 1);
	for (i = 0; i < 100000; i++)
		cnt[rl_sample_action(p, 3, 1.0, rl_rng_uniform(&a))]++;
	ok(fabs(cnt[0] / 1e5 - 0.2) < 0.01 && fabs(cnt[1] / 1e5 - 0.5) < 0.01 &&
	   fabs(cnt[2] / 1e5 - 0.3) < 0.01,
	   "sampled frequencies %.3f %.3f %.3f match 0.2 0.5 0.3",
	   cnt[0] / 1e5, cnt[1] / 1e5, cnt[2] / 1e5);
	ok(rl_sample_action(p, 3, 1.0, 0.0) == 0 &&
	   rl_sample_action(p, 3, 1.0, 0.19999) == 0 &&
	   rl_sample_action(p, 3, 1.0, 0.2001) == 1 &&
	   rl_sample_action(p, 3, 1.0, 0.69) == 1 &&
	   rl_sample_action(p, 3, 1.0, 0.71) == 2 &&
	   rl_sample_action(p, 3, 1.0, 0.9999999999) == 2,
	   "inverse CDF boundaries");
	ok(rl_sample_action(pz, 3, 1.0, 0.0) == 2 &&
	   rl_sample_action(pz, 3, 1.0, 0.99999999999) == 2 &&
	   rl_sample_action(p, 3, 1.0, 0.9999999999999999) == 2,
	   "zero-probability actions are never drawn, u near 1 stays in range");

	/* the whole rollout through a fixed policy never picks a zero action */
	{
		double		pr[30];
		double		r[30];
		RlSeries	s;
		RlEpisode	ep = {0, RW, 25};
		RlRolloutSpec spec;
		int			never = 1;

		pr[0] = 10.0;
		for (i = 1; i < 30; i++)
			pr[i] = pr[i - 1] * exp(0.01 * lcg());
		rl_env_returns(pr, 30, r, NULL);
		s.n = 30;
		s.returns = r;
		s.features = NULL;
		memset(&spec, 0, sizeof(spec));
		spec.series = &s;
		spec.n_series = 1;
		spec.window = RW;
		spec.sigma = 0.01;
		spec.cost = 0.0;
		spec.gamma = 0.99;
		spec.lambda = 0.95;
		spec.episodes = &ep;
		spec.n_episodes = 1;
		spec.seed = 5;
		spec.policy = fixed_policy;
		spec.policy_arg = pz;
		rollbufs_init(&rb3);
		ok(rl_rollout(&spec, &rb3.b, NULL, NULL) == RL_ENV_OK,
		   "single-episode rollout without features");
		for (i = 0; i < 25; i++)
			if (rb3.actions[i] != 2 || rb3.logp[i] != 0.0f)
				never = 0;
		ok(never, "policy (0, 0, 1): always long, log prob 0");
		ok(near(rb3.rewards[0], (r[RW + 1] - 0.0) / 0.01, 1e-6) &&
		   near(rb3.rewards[1], r[RW + 2] / 0.01, 1e-6),
		   "rewards of an always-long episode are r_{t+1} / sigma");
	}
}

/* ---------- backtest ---------- */

/* Backtest metrics against hand-computed always-long/short/flat cases. */
static void
test_backtest(void)
{
	/* W=2, decisions t = 2 .. 4 */
	double		prices[] = {100.0, 101.0, 99.0, 102.0, 100.0, 105.0};
	double		dd_prices[] = {100.0, 100.0, 100.0, 90.0, 95.0, 80.0, 120.0};
	double		r[6];
	double		rdd[7];
	RlSeries	s;
	RlSeries	sdd;
	RlSeries	both[2];
	TestNet		net;
	float		work[64];
	RlBacktestStep steps[8];
	RlBacktestSummary sum;
	RlBacktestRange ranges[2];
	char		err[RL_ENV_ERRLEN];
	double		c = 0.0005;
	double		n1,
				n2,
				n3,
				mean,
				sd;
	int			rc;

	rl_env_returns(prices, 6, r, NULL);
	rl_env_returns(dd_prices, 7, rdd, NULL);
	s.n = 6;
	s.returns = r;
	s.features = NULL;
	sdd.n = 7;
	sdd.returns = rdd;
	sdd.features = NULL;

	/* always long */
	net_constant(&net, 2, 2);
	ok(RL_BACKTEST_WORK_FLOATS(&net.w.arch) == 3 + 2 * 2 + 3 + 3,
	   "work: obs_dim + forward scratch + probabilities floats");
	rc = rl_backtest(&net.w, &s, 0.01, c, 2, 4, 252.0, work, steps, &sum, err);
	n1 = log(102.0 / 99.0) - c;
	n2 = log(100.0 / 102.0);
	n3 = log(105.0 / 100.0);
	ok(rc == RL_ENV_OK && sum.n_steps == 3, "always-long backtest runs 3 steps (%s)", err);
	ok(near(sum.total_log_return, log(105.0 / 99.0) - c, 1e-14) &&
	   near(sum.buy_hold_log_return, log(105.0 / 99.0), 1e-14),
	   "always long = buy-and-hold ln(105/99) minus one entry cost");
	ok(steps[0].t == 2 && steps[0].position == 1 && steps[2].t == 4 &&
	   steps[2].position == 1 && near(steps[0].net_return, n1, 1e-14) &&
	   near(steps[1].net_return, n2, 1e-14) &&
	   near(steps[2].net_return, n3, 1e-14),
	   "per-step rows: t, position +1, net log return (cost only on entry)");
	ok(near(steps[0].reward, n1 / 0.01, 1e-12) &&
	   near(steps[0].equity, exp(n1), 1e-14) &&
	   near(steps[2].equity, exp(n1 + n2 + n3), 1e-14),
	   "per-step reward = net / sigma, equity = exp(cumulative)");
	ok(near(sum.turnover, 1.0 / 3.0, 1e-14), "turnover: one unit over 3 steps");
	ok(near(sum.max_drawdown, 1.0 - 100.0 / 102.0, 1e-12),
	   "max drawdown 1 - 100/102 (got %.12f)", sum.max_drawdown);
	mean = (n1 + n2 + n3) / 3.0;
	sd = sqrt(((n1 - mean) * (n1 - mean) + (n2 - mean) * (n2 - mean) +
			   (n3 - mean) * (n3 - mean)) / 2.0);
	ok(near(sum.sharpe, mean / sd * sqrt(252.0), 1e-10),
	   "Sharpe = mean / sample std * sqrt(252) (%.6f)", sum.sharpe);

	/* max drawdown: the peak starts at 1.0, before the first step */
	rc = rl_backtest(&net.w, &sdd, 0.01, 0.0, 2, 5, 252.0, work, NULL, &sum, err);
	ok(rc == RL_ENV_OK && near(sum.max_drawdown, 0.2, 1e-12) &&
	   near(sum.total_log_return, log(1.2), 1e-14),
	   "equity 0.9, 0.95, 0.8, 1.2 from 1.0: max drawdown 0.2 (got %.12f)",
	   sum.max_drawdown);

	/* always short, always flat */
	net_constant(&net, 2, 0);
	rc = rl_backtest(&net.w, &s, 0.01, c, 2, 4, 252.0, work, steps, &sum, err);
	ok(rc == RL_ENV_OK && steps[1].position == -1 &&
	   near(sum.total_log_return, -log(105.0 / 99.0) - c, 1e-14),
	   "always short = minus buy-and-hold minus one entry cost");
	net_constant(&net, 2, 1);
	rc = rl_backtest(&net.w, &s, 0.01, c, 2, 4, 252.0, work, steps, &sum, err);
	ok(rc == RL_ENV_OK && sum.total_log_return == 0.0 && sum.sharpe == 0.0 &&
	   sum.max_drawdown == 0.0 && sum.turnover == 0.0 && steps[2].equity == 1.0,
	   "always flat: zero return, Sharpe 0 (std 0), no drawdown, no turnover");
	rc = rl_backtest(&net.w, &s, 0.01, c, 3, 3, 252.0, work, NULL, &sum, err);
	ok(rc == RL_ENV_OK && sum.n_steps == 1 && sum.sharpe == 0.0,
	   "one step: Sharpe 0");

	/* portfolio of two series */
	net_constant(&net, 2, 2);
	both[0] = s;
	both[1] = sdd;
	ranges[0].series = 0;
	ranges[0].t_from = 2;
	ranges[0].t_to = 4;
	ranges[1].series = 1;
	ranges[1].t_from = 2;
	ranges[1].t_to = 5;
	rc = rl_backtest_multi(&net.w, both, 2, ranges, 2, 0.01, c, 252.0, work,
						   &sum, err);
	ok(rc == RL_ENV_OK && sum.n_steps == 7 &&
	   near(sum.total_log_return, log(105.0 / 99.0) - c + log(1.2) - c, 1e-14) &&
	   near(sum.buy_hold_log_return, log(105.0 / 99.0) + log(1.2), 1e-14) &&
	   near(sum.turnover, 2.0 / 7.0, 1e-14),
	   "portfolio: steps, log returns, buy-and-hold summed; turnover 2/7");
	ok(sum.max_drawdown > 0.2 && sum.max_drawdown < 0.2 + 1e-3,
	   "portfolio max drawdown is the worst series' (%.6f)", sum.max_drawdown);
	ranges[1].series = 2;
	ok(rl_backtest_multi(&net.w, both, 2, ranges, 2, 0.01, c, 252.0, work,
						 &sum, err) == RL_ENV_BAD_ARG,
	   "range naming a missing series refused (%s)", err);

	/* argument checks */
	ok(rl_backtest(&net.w, &s, 0.01, c, 1, 4, 252.0, work, NULL, &sum, err) == RL_ENV_TOO_SHORT,
	   "t_from < W refused (%s)", err);
	ok(rl_backtest(&net.w, &s, 0.01, c, 2, 5, 252.0, work, NULL, &sum, err) == RL_ENV_TOO_SHORT,
	   "t_to > n-2 refused");
	ok(rl_backtest(&net.w, &s, 0.01, c, 4, 3, 252.0, work, NULL, &sum, err) == RL_ENV_TOO_SHORT,
	   "t_from > t_to refused");
	ok(rl_backtest(&net.w, &s, NAN, c, 2, 4, 252.0, work, NULL, &sum, err) == RL_ENV_BAD_SIGMA,
	   "NaN sigma refused");
	ok(rl_backtest(&net.w, &s, 0.01, c, 2, 4, 0.0, work, NULL, &sum, err) == RL_ENV_BAD_ARG,
	   "periods_per_year 0 refused");
	net.w.arch.obs_dim = 7;
	ok(rl_backtest(&net.w, &s, 0.01, c, 2, 4, 252.0, work, NULL, &sum, err) == RL_ENV_BAD_ARG,
	   "inconsistent architecture refused (%s)", err);
	ok(rl_backtest(NULL, &s, 0.01, c, 2, 4, 252.0, work, NULL, &sum, err) == RL_ENV_BAD_ARG,
	   "NULL weights refused");
}

/* Greedy positions feed back into the next observation. */
static void
test_backtest_feedback(void)
{
	double		pr[60];
	double		r[60];
	float		f[60 * 2];
	RlSeries	s;
	TestNet		net;
	float		work[64];
	RlBacktestStep steps[60];
	RlBacktestSummary sum;
	char		err[RL_ENV_ERRLEN];
	int32_t		prev = 0;
	int			match = 1;
	int			changes = 0;
	double		total = 0.0;
	int			i;
	int			rc;

	pr[0] = 20.0;
	for (i = 1; i < 60; i++)
		pr[i] = pr[i - 1] * exp(0.02 * lcg());
	for (i = 0; i < 120; i++)
		f[i] = (float) lcg();
	rl_env_returns(pr, 60, r, NULL);
	s.n = 60;
	s.returns = r;
	s.features = f;
	net_init(&net, 5, 2, 6, 1.0);

	rc = rl_backtest(&net.w, &s, 0.02, 0.001, 5, 58, 252.0, work, steps,
					 &sum, err);
	ok(rc == RL_ENV_OK && sum.n_steps == 54, "random-network backtest (%s)", err);
	for (i = 5; i <= 58; i++)
	{
		float		o[8];
		float		p[3];
		int32_t		pos;

		rl_env_observation(&s, 5, 2, 0.02, i, prev, o, NULL);
		ref_forward(&net.w, o, p, NULL);
		pos = ref_argmax(p, 3) - 1;
		if (steps[i - 5].position != pos)
			match = 0;
		if (pos != prev)
			changes++;
		total += rl_env_net_return(pos, prev, r[i + 1], 0.001);
		prev = pos;
	}
	ok(match && near(sum.total_log_return, total, 1e-12),
	   "positions equal the reference greedy policy with position feedback (%d changes)",
	   changes);

#ifndef RL_TEST_OWN_FORWARD
	{
		float		o[8];
		float		pa[3];
		float		pb[3];
		float		va;
		float		vb;
		float		scratch[64];
		double		maxdiff = 0.0;
		int			k;
		int			j;

		for (k = 0; k < 200; k++)
		{
			for (j = 0; j < 8; j++)
				o[j] = (float) (3.0 * lcg());
			rl_forward(&net.w, o, pa, &va, scratch);
			ref_forward(&net.w, o, pb, &vb);
			for (j = 0; j < 3; j++)
				maxdiff = fmax(maxdiff, fabs(pa[j] - pb[j]));
			maxdiff = fmax(maxdiff, fabs(va - vb));
		}
		ok(maxdiff < 1e-5, "src/core/forward.c agrees with the reference forward (max diff %.2g)",
		   maxdiff);
	}
#else
	ok(1, "# SKIP src/core/forward.c unavailable: private reference forward used");
#endif
}

/* Run every group; the exit status tells make whether all passed. */
int
main(void)
{
	test_returns_sigma();
	test_observation_reward();
	test_episodes();
	test_gae();
	test_sampling();
	test_rollout();
	test_rollout_index();
	test_backtest();
	test_backtest_feedback();
	return done_testing();
}
