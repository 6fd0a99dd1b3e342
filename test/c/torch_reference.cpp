/*-------------------------------------------------------------------------
 *
 * torch_reference.cpp
 *	  The PPO update as src/torch/rl_torch.cpp did it before issue 16: the
 *	  loss through autograd, torch::nn::utils::clip_grad_norm_ and
 *	  torch::optim::Adam.  test_torch.c checks the hand-derived backward pass
 *	  and Adam of rl_torch.cpp against this, and times both (--bench).
 *
 * Kept as it was apart from the names (ref_torch_*, RefTorchNet), the
 * entry points the test does not need (version, threads, tensor_info)
 * and one addition, ref_torch_ppo_grad.  Test code only.
 *
 * test/c/torch_reference.cpp
 *
 *-------------------------------------------------------------------------
 */
#include "torch_reference.h"

#include <cmath>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <memory>
#include <new>
#include <stdexcept>
#include <string>
#include <vector>

#include <torch/torch.h>
#include <torch/version.h>
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Parallel.h>
#include <c10/core/InferenceMode.h>

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

/* Reject NaN and infinities before they reach the network. */
void
check_finite(const float *v, int64_t n, const char *what)
{
	for (int64_t i = 0; i < n; i++)
		if (!std::isfinite(v[i]))
			fail("%s contains a non-finite value at index %lld",
				 what, (long long) i);
}

}								/* namespace */

/* The network's parameters and the Adam optimizer that owns their state. */
struct RefTorchNet
{
	RlArch		arch;
	std::vector<torch::Tensor> params;	/* state_dict order */
	std::unique_ptr<torch::optim::Adam> opt;
	torch::Tensor ws_h1;		/* forward workspace, grown to the largest n */
	torch::Tensor ws_h2;
	torch::Tensor ws_logits;
};

namespace
{

/* The optimizer's state key for a parameter (what libtorch's Adam uses). */
std::string
state_key(const torch::Tensor &p)
{
	return c10::guts::to_string(p.unsafeGetTensorImpl());
}

/* Adam state of parameter i, or nullptr before the first step. */
torch::optim::AdamParamState *
find_state(const RefTorchNet *net, int i)
{
	auto	   &st = net->opt->state();
	auto		it = st.find(state_key(net->params[i]));

	if (it == st.end())
		return nullptr;
	return static_cast<torch::optim::AdamParamState *>(it->second.get());
}

/* Create missing Adam state (zeros, current step) so a warm start works. */
void
ensure_state(RefTorchNet *net)
{
	int64_t		step = 0;

	for (int i = 0; i < RL_N_PARAMS; i++)
	{
		auto	   *s = find_state(net, i);

		if (s != nullptr)
		{
			step = s->step();
			break;
		}
	}
	for (int i = 0; i < RL_N_PARAMS; i++)
	{
		if (find_state(net, i) != nullptr)
			continue;
		auto		s = std::make_unique<torch::optim::AdamParamState>();
		torch::Tensor p = net->params[i].detach();

		s->step(step);
		s->exp_avg(torch::zeros_like(p, torch::MemoryFormat::Preserve));
		s->exp_avg_sq(torch::zeros_like(p, torch::MemoryFormat::Preserve));
		net->opt->state()[state_key(net->params[i])] = std::move(s);
	}
}

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
tensor_numel(const RefTorchNet *net, int i)
{
	if (i == STEP_INDEX)
		return 1;
	return net->params[i % RL_N_PARAMS].numel();
}

/* Check a get/set buffer against the tensor it names. */
void
check_size(const RefTorchNet *net, int idx, const void *buf, int64_t n)
{
	int64_t		expected = tensor_numel(net, idx);

	if (buf == nullptr)
		fail("buffer for tensor \"%s\" must not be null", tensor_names[idx]);
	if (n != expected)
		fail("size mismatch for tensor \"%s\": expected %lld elements, got %lld",
			 tensor_names[idx], (long long) expected, (long long) n);
}

/* The trunk with autograd, for the PPO loss. */
torch::Tensor
trunk(const RefTorchNet *net, const torch::Tensor &x)
{
	const auto &p = net->params;
	torch::Tensor h = torch::tanh(torch::addmm(p[1], x, p[0].t()));

	return torch::tanh(torch::addmm(p[3], h, p[2].t()));
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
check_obs(const RefTorchNet *net, const float *obs, int64_t n)
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
torch::Tensor
wrap(const float *v, at::IntArrayRef shape)
{
	return torch::from_blob(const_cast<float *>(v), shape, torch::kFloat32);
}

/* The PPO loss of one minibatch and its parts, with autograd. */
struct PpoTerms
{
	torch::Tensor loss;
	torch::Tensor policy_loss;
	torch::Tensor value_loss;
	torch::Tensor entropy;
	torch::Tensor logp;
};

PpoTerms
ppo_terms(const RefTorchNet *net, const RlTorchPPOConfig *cfg,
		  const torch::Tensor &obs, const torch::Tensor &act,
		  const torch::Tensor &old_logp, torch::Tensor adv,
		  const torch::Tensor &ret)
{
	const auto &p = net->params;
	PpoTerms	t;

	/* a single row has no spread: only centre it */
	adv = adv.size(0) > 1 ? (adv - adv.mean()) / (adv.std() + 1e-8)
		: adv - adv.mean();

	torch::Tensor h = trunk(net, obs);
	torch::Tensor logp_all = torch::log_softmax(torch::addmm(p[5], h, p[4].t()), 1);
	torch::Tensor value = torch::addmm(p[7], h, p[6].t()).squeeze(1);

	t.logp = logp_all.gather(1, act.unsqueeze(1)).squeeze(1);
	t.entropy = -(logp_all.exp() * logp_all).sum(1).mean();

	torch::Tensor ratio = torch::exp(t.logp - old_logp);

	t.policy_loss = -torch::min(
		ratio * adv,
		torch::clamp(ratio, 1.0 - cfg->clip, 1.0 + cfg->clip) * adv).mean();
	t.value_loss = (value - ret).pow(2).mean();
	t.loss = t.policy_loss + cfg->value_coef * t.value_loss -
		cfg->entropy_coef * t.entropy;
	return t;
}

/* Validate a PPO batch against the net. */
void
check_batch(const RefTorchNet *net, const RlTorchBatch *batch)
{
	if (batch == nullptr)
		fail("batch must not be null");
	if (batch->actions == nullptr || batch->old_logp == nullptr ||
		batch->advantages == nullptr || batch->returns == nullptr)
		fail("batch arrays must not be null");

	const int64_t n = batch->n;

	check_obs(net, batch->obs, n);
	for (int64_t i = 0; i < n; i++)
		if (batch->actions[i] < 0 || batch->actions[i] >= net->arch.n_actions)
			fail("action %d at index %lld out of range 0..%d",
				 (int) batch->actions[i], (long long) i,
				 (int) net->arch.n_actions - 1);
	check_finite(batch->old_logp, n, "old_logp");
	check_finite(batch->advantages, n, "advantages");
	check_finite(batch->returns, n, "returns");
}

}								/* namespace */

/* Build a fresh, deterministically initialised network and its optimizer. */
extern "C" RlTorchStatus
ref_torch_net_create(const RlArch *arch, uint64_t seed, float lr,
					RefTorchNet **out, char *err)
{
	return guarded(err, [&]() {
		if (out == nullptr)
			fail("output pointer must not be null");
		*out = nullptr;
		check_arch(arch);
		if (!std::isfinite(lr) || lr <= 0)
			fail("invalid learning rate %g: must be positive", (double) lr);

		auto		net = std::make_unique<RefTorchNet>();
		const int64_t in[4] = {arch->obs_dim, arch->hidden, arch->hidden, arch->hidden};
		const int64_t outd[4] = {arch->hidden, arch->hidden, arch->n_actions, 1};
		at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(seed);
		torch::NoGradGuard no_grad;

		net->arch = *arch;
		/* torch.nn.Linear.reset_parameters, in module construction order */
		for (int l = 0; l < 4; l++)
		{
			const double a = std::sqrt(5.0);
			const double gain = std::sqrt(2.0 / (1 + a * a));
			const double wbound = std::sqrt(3.0) * (gain / std::sqrt((double) in[l]));
			const double bbound = 1 / std::sqrt((double) in[l]);
			torch::Tensor w = torch::empty({outd[l], in[l]}, torch::kFloat32);
			torch::Tensor b = torch::empty({outd[l]}, torch::kFloat32);

			w.uniform_(-wbound, wbound, gen);
			b.uniform_(-bbound, bbound, gen);
			net->params.push_back(w.requires_grad_(true));
			net->params.push_back(b.requires_grad_(true));
		}
		net->opt = std::make_unique<torch::optim::Adam>(
			net->params, torch::optim::AdamOptions((double) lr));
		*out = net.release();
		return RL_TORCH_OK;
	});
}

/* Release a net; NULL-safe, never throws. */
extern "C" void
ref_torch_net_free(RefTorchNet *net)
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
ref_torch_forward(RefTorchNet *net, const float *obs, int64_t n,
				 float *probs, float *values, char *err)
{
	return guarded(err, [&]() {
		if (net == nullptr)
			fail("net must not be null");
		check_obs(net, obs, n);

		const RlArch *a = &net->arch;
		const auto &p = net->params;

		/* normal (not inference) tensors, so they outlive any mode */
		if (!net->ws_h1.defined() || net->ws_h1.size(0) < n)
		{
			net->ws_h1 = torch::Tensor();
			net->ws_h2 = torch::Tensor();
			net->ws_logits = torch::Tensor();
			net->ws_h1 = torch::empty({n, a->hidden}, torch::kFloat32);
			net->ws_h2 = torch::empty({n, a->hidden}, torch::kFloat32);
			net->ws_logits = torch::empty({n, a->n_actions}, torch::kFloat32);
		}

		c10::InferenceMode guard;
		torch::Tensor h1 = net->ws_h1.narrow(0, 0, n);
		torch::Tensor h2 = net->ws_h2.narrow(0, 0, n);

		at::addmm_out(h1, p[1], wrap(obs, {n, a->obs_dim}), p[0].t()).tanh_();
		at::addmm_out(h2, p[3], h1, p[2].t()).tanh_();
		if (probs != nullptr)
		{
			torch::Tensor logits = net->ws_logits.narrow(0, 0, n);
			torch::Tensor out = torch::from_blob(probs, {n, a->n_actions}, torch::kFloat32);

			at::addmm_out(logits, p[5], h2, p[4].t());
			at::softmax_out(out, logits, 1);
		}
		if (values != nullptr)
		{
			torch::Tensor out = torch::from_blob(values, {n, 1}, torch::kFloat32);

			at::addmm_out(out, p[7], h2, p[6].t());
		}
		return RL_TORCH_OK;
	});
}

/* Copy a tensor out by name, for writing a checkpoint. */
extern "C" RlTorchStatus
ref_torch_tensor_get(const RefTorchNet *net, const char *name, float *out,
					int64_t n, char *err)
{
	return guarded(err, [&]() {
		if (net == nullptr)
			fail("net must not be null");

		int			idx = tensor_index(name);

		check_size(net, idx, out, n);

		int			pi = idx % RL_N_PARAMS;
		auto	   *s = find_state(net, pi);
		torch::Tensor t;

		if (idx == STEP_INDEX)
		{
			s = find_state(net, 0);
			out[0] = s ? (float) s->step() : 0.0f;
			return RL_TORCH_OK;
		}
		if (idx < RL_N_PARAMS)
			t = net->params[pi].detach();
		else if (s == nullptr)
		{
			memset(out, 0, sizeof(float) * n);
			return RL_TORCH_OK;
		}
		else
			t = idx < 2 * RL_N_PARAMS ? s->exp_avg() : s->exp_avg_sq();
		t = t.contiguous();
		memcpy(out, t.data_ptr<float>(), sizeof(float) * n);
		return RL_TORCH_OK;
	});
}

/* Overwrite a tensor by name, for a warm start from a checkpoint. */
extern "C" RlTorchStatus
ref_torch_tensor_set(RefTorchNet *net, const char *name, const float *in,
					int64_t n, char *err)
{
	return guarded(err, [&]() {
		if (net == nullptr)
			fail("net must not be null");

		int			idx = tensor_index(name);

		check_size(net, idx, in, n);
		check_finite(in, n, tensor_names[idx]);

		torch::NoGradGuard no_grad;

		if (idx == STEP_INDEX)
		{
			if (in[0] < 0 || in[0] > 16777216.0f || in[0] != std::floor(in[0]))
				fail("invalid optim.step %g: must be a whole number between 0 and 16777216",
					 (double) in[0]);
			ensure_state(net);
			for (int i = 0; i < RL_N_PARAMS; i++)
				find_state(net, i)->step((int64_t) in[0]);
			return RL_TORCH_OK;
		}

		int			pi = idx % RL_N_PARAMS;
		torch::Tensor src = wrap(in, net->params[pi].sizes());

		if (idx < RL_N_PARAMS)
		{
			net->params[pi].copy_(src);
			return RL_TORCH_OK;
		}
		if (idx >= 2 * RL_N_PARAMS)
			for (int64_t k = 0; k < n; k++)
				if (in[k] < 0)
					fail("%s contains a negative value at index %lld",
						 tensor_names[idx], (long long) k);
		ensure_state(net);

		auto	   *s = find_state(net, pi);

		(idx < 2 * RL_N_PARAMS ? s->exp_avg() : s->exp_avg_sq()).copy_(src);
		return RL_TORCH_OK;
	});
}

/* One PPO clipped-surrogate update over a rollout. */
extern "C" RlTorchStatus
ref_torch_ppo_update(RefTorchNet *net, const RlTorchPPOConfig *cfg,
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
		const RlArch *a = &net->arch;

		for (auto &g : net->opt->param_groups())
			static_cast<torch::optim::AdamOptions &>(g.options()).lr(cfg->lr);

		const auto &p = net->params;
		torch::Tensor obs = wrap(batch->obs, {n, a->obs_dim});
		torch::Tensor act = torch::from_blob(const_cast<int32_t *>(batch->actions),
											 {n}, torch::kInt32).to(torch::kLong);
		torch::Tensor old_logp = wrap(batch->old_logp, {n});
		torch::Tensor adv_all = wrap(batch->advantages, {n});
		torch::Tensor ret_all = wrap(batch->returns, {n});
		at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(cfg->seed);
		const int64_t mb = cfg->minibatch;
		double		sum[5] = {0, 0, 0, 0, 0};
		int64_t		count = 0;
		RlTorchStatus result = RL_TORCH_OK;

		for (int pass = 0; pass < cfg->update_passes && result == RL_TORCH_OK; pass++)
		{
			torch::Tensor perm = torch::randperm(n, gen, torch::kLong);

			for (int64_t start = 0; start < n; start += mb)
			{
				if (should_stop != nullptr && should_stop(stop_arg))
				{
					put_err(err, "ppo update stopped on request after %lld minibatches",
							(long long) count);
					result = RL_TORCH_STOPPED;
					break;
				}

				torch::Tensor idx = perm.slice(0, start, std::min(start + mb, n));
				torch::Tensor mb_act = act.index_select(0, idx);

				PpoTerms	t = ppo_terms(net, cfg, obs.index_select(0, idx), mb_act,
										  old_logp.index_select(0, idx),
										  adv_all.index_select(0, idx),
										  ret_all.index_select(0, idx));
				torch::Tensor &loss = t.loss;
				torch::Tensor &policy_loss = t.policy_loss;
				torch::Tensor &value_loss = t.value_loss;
				torch::Tensor &entropy = t.entropy;
				torch::Tensor &logp = t.logp;
				torch::Tensor mb_old = old_logp.index_select(0, idx);
				double		lv = loss.item<double>();

				if (!std::isfinite(lv))
					fail("ppo loss is not finite after %lld minibatches",
						 (long long) count);

				net->opt->zero_grad();
				loss.backward();
				if (!std::isfinite(torch::nn::utils::clip_grad_norm_(p, cfg->max_grad_norm)))
					fail("ppo gradient norm is not finite after %lld minibatches",
						 (long long) count);
				net->opt->step();

				sum[0] += lv;
				sum[1] += policy_loss.item<double>();
				sum[2] += value_loss.item<double>();
				sum[3] += entropy.item<double>();
				sum[4] += (mb_old - logp.detach()).mean().item<double>();
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
ref_torch_ppo_loss(RefTorchNet *net, const RlTorchPPOConfig *cfg,
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

		torch::NoGradGuard no_grad;
		const int64_t n = batch->n;
		torch::Tensor act = torch::from_blob(const_cast<int32_t *>(batch->actions),
											 {n}, torch::kInt32).to(torch::kLong);
		torch::Tensor old_logp = wrap(batch->old_logp, {n});
		PpoTerms	t = ppo_terms(net, cfg, wrap(batch->obs, {n, net->arch.obs_dim}),
								  act, old_logp, wrap(batch->advantages, {n}),
								  wrap(batch->returns, {n}));

		stats->loss = t.loss.item<double>();
		stats->policy_loss = t.policy_loss.item<double>();
		stats->value_loss = t.value_loss.item<double>();
		stats->entropy = t.entropy.item<double>();
		stats->approx_kl = (old_logp - t.logp).mean().item<double>();
		stats->minibatches = 0;
		return RL_TORCH_OK;
	});
}

/* autograd's gradient of the whole batch's PPO loss, without a step. */
extern "C" RlTorchStatus
ref_torch_ppo_grad(RefTorchNet *net, const RlTorchPPOConfig *cfg,
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

		int64_t		total = 0;

		for (const auto &p : net->params)
			total += p.numel();
		if (grad == nullptr || n != total)
			fail("gradient buffer must hold %lld floats", (long long) total);

		const int64_t rows = batch->n;
		torch::Tensor act = torch::from_blob(const_cast<int32_t *>(batch->actions),
											 {rows}, torch::kInt32).to(torch::kLong);
		torch::Tensor old_logp = wrap(batch->old_logp, {rows});
		PpoTerms	t = ppo_terms(net, cfg, wrap(batch->obs, {rows, net->arch.obs_dim}),
								  act, old_logp, wrap(batch->advantages, {rows}),
								  wrap(batch->returns, {rows}));

		net->opt->zero_grad();
		t.loss.backward();
		for (const auto &p : net->params)
		{
			torch::Tensor g = p.grad().contiguous();

			memcpy(grad, g.data_ptr<float>(), sizeof(float) * g.numel());
			grad += g.numel();
		}
		stats->loss = t.loss.item<double>();
		stats->policy_loss = t.policy_loss.item<double>();
		stats->value_loss = t.value_loss.item<double>();
		stats->entropy = t.entropy.item<double>();
		stats->approx_kl = (old_logp - t.logp.detach()).mean().item<double>();
		return RL_TORCH_OK;
	});
}
