#!/usr/bin/python3
"""The rl_mlops training epoch written as a plain PyTorch script, for the
benchmark in bench/train/run.sh.

Same environment, network and PPO as the worker (ARCHITECTURE.md "The trading environment"):
observation = the last W=32 log returns / sigma, then the position;
actions short / flat / long; reward (pos * r[t+1] - cost * |pos - prev|) /
sigma with cost 5 bp; episodes are consecutive chunks of 256 decisions per
symbol, all stepping together as one batch; GAE(0.99, 0.95) with no
bootstrap after an episode's last step; PPO clip 0.2, Adam 3e-4, 4 passes
of minibatches of 256, value coefficient 0.5, entropy 0.01, gradient norm
clip 0.5, advantages normalised per minibatch.  Network
Linear(33,64)-tanh-Linear(64,64)-tanh, actor Linear(64,3), critic
Linear(64,1), built in that order after torch.manual_seed(seed): the same
initial weights as the worker's for the same seed.

The data split is the worker's: per symbol, the last floor(0.2 n) prices
are the holdout; sigma is the sample std of the pooled training returns.
After training, a greedy backtest on each symbol's holdout (from t =
n_train - 1 to n - 2, starting flat) gives the holdout log return.

Input: CSV lines "symbol,epoch_seconds,price" ordered by symbol then time.
Output: one JSON object on stdout.
"""
import argparse
import csv
import json
import math
import time

import numpy as np
import torch
from torch import nn

W = 32
COST = 0.0005
EPISODE = 256
GAMMA, LAMBDA = 0.99, 0.95
CLIP, LR, PASSES, MINIBATCH = 0.2, 3e-4, 4, 256
VALUE_COEF, ENTROPY_COEF, MAX_GRAD_NORM = 0.5, 0.01, 0.5
HOLDOUT = 0.2


class TradingActorCritic(nn.Module):
    def __init__(self, obs_dim, hidden=64, n_actions=3):
        super().__init__()
        self.trunk = nn.Sequential(nn.Linear(obs_dim, hidden), nn.Tanh(),
                                   nn.Linear(hidden, hidden), nn.Tanh())
        self.actor = nn.Linear(hidden, n_actions)
        self.critic = nn.Linear(hidden, 1)

    def forward(self, x):
        h = self.trunk(x)
        return self.actor(h), self.critic(h).squeeze(-1)


def load(path):
    series = {}
    with open(path) as f:
        for sym, _ts, price in csv.reader(f):
            series.setdefault(sym, []).append(float(price))
    out = []
    for sym in sorted(series):
        p = np.array(series[sym], dtype=np.float64)
        r = np.zeros_like(p)
        r[1:] = np.log(p[1:] / p[:-1])
        n = len(p)
        n_hold = int(math.floor(n * HOLDOUT))
        out.append((sym, r, n - n_hold))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('csv')
    ap.add_argument('--epochs', type=int, default=10)
    ap.add_argument('--seed', type=int, default=42)
    ap.add_argument('--threads', type=int, default=1)
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    data = load(args.csv)

    # sigma: sample std of the pooled training returns r[1..n_train-1]
    pooled = np.concatenate([r[1:n_train] for _, r, n_train in data])
    sigma = float(np.std(pooled, ddof=1))

    # one flat array of scaled returns; per series offset
    flat = np.concatenate([r / sigma for _, r, _ in data]).astype(np.float32)
    r_next_flat = np.concatenate([r for _, r, _ in data])
    offsets = np.cumsum([0] + [len(r) for _, r, _ in data])[:-1]

    # episodes: consecutive chunks of EPISODE decisions t in [W, n_train-2]
    eps = []
    for i, (_, r, n_train) in enumerate(data):
        d = n_train - W - 1
        for start in range(0, d, EPISODE):
            eps.append((offsets[i] + W + start, min(EPISODE, d - start)))
    ep_t0 = np.array([e[0] for e in eps], dtype=np.int64)
    ep_len = np.array([e[1] for e in eps], dtype=np.int64)
    n_ep = len(eps)
    n_dec = int(ep_len.sum())
    ep_off = np.concatenate([[0], np.cumsum(ep_len)[:-1]])
    max_len = int(ep_len.max())
    win = np.arange(-W + 1, 1)

    torch.manual_seed(args.seed)
    net = TradingActorCritic(W + 1)
    opt = torch.optim.Adam(net.parameters(), lr=LR)
    gen = torch.Generator().manual_seed(args.seed * 1000003)

    def backtest():
        total = bh = 0.0
        steps = 0
        with torch.no_grad():
            for i, (_, r, n_train) in enumerate(data):
                n = len(r)
                prev = 0
                for t in range(n_train - 1, n - 1):
                    g = offsets[i] + t
                    obs = torch.empty(W + 1)
                    obs[:W] = torch.from_numpy(flat[g - W + 1:g + 1])
                    obs[W] = prev
                    logits, _ = net(obs.unsqueeze(0))
                    pos = int(torch.argmax(torch.softmax(logits, -1)[0])) - 1
                    total += pos * r[t + 1] - COST * abs(pos - prev)
                    bh += r[t + 1]
                    steps += 1
                    prev = pos
        return {'total_log_return': total, 'buy_hold_log_return': bh, 'steps': steps}

    initial = backtest()

    obs_buf = np.zeros((n_dec, W + 1), dtype=np.float32)
    act_buf = np.zeros(n_dec, dtype=np.int64)
    logp_buf = np.zeros(n_dec, dtype=np.float32)
    val_buf = np.zeros(n_dec, dtype=np.float32)
    rew_buf = np.zeros(n_dec, dtype=np.float32)
    epochs = []
    for epoch in range(1, args.epochs + 1):
        t_start = time.perf_counter()
        c_start = time.process_time()
        # rollout: all episodes step together
        prev_pos = np.zeros(n_ep, dtype=np.float32)
        with torch.no_grad():
            for k in range(max_len):
                live = np.nonzero(ep_len > k)[0]
                t = ep_t0[live] + k
                obs = np.empty((len(live), W + 1), dtype=np.float32)
                obs[:, :W] = flat[t[:, None] + win]
                obs[:, W] = prev_pos[live]
                logits, values = net(torch.from_numpy(obs))
                probs = torch.softmax(logits, -1)
                a = torch.multinomial(probs, 1, generator=gen).squeeze(1)
                logp = torch.log(probs.gather(1, a.unsqueeze(1)).squeeze(1))
                a = a.numpy()
                pos = (a - 1).astype(np.float32)
                reward = (pos * r_next_flat[t + 1] - COST * np.abs(pos - prev_pos[live])) / sigma
                j = ep_off[live] + k
                obs_buf[j] = obs
                act_buf[j] = a
                logp_buf[j] = logp.numpy()
                val_buf[j] = values.numpy()
                rew_buf[j] = reward
                prev_pos[live] = pos
        # GAE per episode, no bootstrap after the last step
        adv_buf = np.zeros(n_dec, dtype=np.float32)
        ret_buf = np.zeros(n_dec, dtype=np.float32)
        for e in range(n_ep):
            o, n = ep_off[e], ep_len[e]
            adv = 0.0
            next_v = 0.0
            for k in range(n - 1, -1, -1):
                v = float(val_buf[o + k])
                delta = float(rew_buf[o + k]) + GAMMA * next_v - v
                adv = delta + GAMMA * LAMBDA * adv
                adv_buf[o + k] = adv
                ret_buf[o + k] = adv + v
                next_v = v
        t_rollout = time.perf_counter() - t_start

        # PPO update
        obs_t = torch.from_numpy(obs_buf)
        act_t = torch.from_numpy(act_buf)
        old_logp_t = torch.from_numpy(logp_buf)
        adv_t = torch.from_numpy(adv_buf)
        ret_t = torch.from_numpy(ret_buf)
        losses = []
        for _ in range(PASSES):
            perm = torch.randperm(n_dec, generator=gen)
            for s in range(0, n_dec, MINIBATCH):
                idx = perm[s:s + MINIBATCH]
                adv = adv_t[idx]
                adv = (adv - adv.mean()) / (adv.std() + 1e-8) if len(idx) > 1 else adv - adv.mean()
                logits, value = net(obs_t[idx])
                logp_all = torch.log_softmax(logits, -1)
                logp = logp_all.gather(1, act_t[idx].unsqueeze(1)).squeeze(1)
                entropy = -(logp_all.exp() * logp_all).sum(1).mean()
                ratio = torch.exp(logp - old_logp_t[idx])
                policy_loss = -torch.min(ratio * adv, torch.clamp(ratio, 1 - CLIP, 1 + CLIP) * adv).mean()
                value_loss = (value - ret_t[idx]).pow(2).mean()
                loss = policy_loss + VALUE_COEF * value_loss - ENTROPY_COEF * entropy
                opt.zero_grad()
                loss.backward()
                nn.utils.clip_grad_norm_(net.parameters(), MAX_GRAD_NORM)
                opt.step()
                losses.append(loss.item())
        elapsed = time.perf_counter() - t_start
        cpu = time.process_time() - c_start
        epochs.append({'epoch': epoch, 'seconds': elapsed, 'rollout_seconds': t_rollout,
                       'samples_per_second': n_dec / elapsed,
                       'cpu_seconds': cpu, 'samples_per_cpu_second': n_dec / cpu,
                       'loss': sum(losses) / len(losses),
                       'mean_episode_return': float(rew_buf.sum()) / n_ep})

    holdout = backtest()
    print(json.dumps({'torch': torch.__version__, 'threads': torch.get_num_threads(),
                      'symbols': len(data), 'samples': n_dec, 'episodes': n_ep, 'sigma': sigma,
                      'initial': initial, 'holdout': holdout, 'epochs': epochs}))


if __name__ == '__main__':
    main()
