#!/usr/bin/python3
"""libtorch reference for bench/serve: microseconds per batch-1 forward pass.

  torch_forward.py CKPT N RUNS

Loads the checkpoint with test/python/interop.py (the same network and
weights rl_mlops.act() serves), pins torch to one thread, and times N
batch-1 forward passes (probabilities and value, as act() computes them)
per run, eagerly and as a TorchScript trace.  Prints one line of JSON with
the median microseconds per call of each.
"""

import json
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "..", "test", "python"))
import interop  # noqa: E402


def per_call_us(model, rows, runs):
    """Median over runs of the mean time of one call, in microseconds."""
    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        for x in rows:
            model(x)
        out.append((time.perf_counter() - t0) / len(rows) * 1e6)
    return statistics.median(out)


def main():
    ckpt, n, runs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    torch.set_num_threads(1)
    model, arch, _ = interop.load(ckpt)
    gen = torch.Generator().manual_seed(1)
    obs = torch.rand(n, arch["obs_dim"], generator=gen) * 4 - 2
    rows = [obs[i:i + 1].clone() for i in range(n)]
    with torch.inference_mode():
        model(rows[0])
        eager = per_call_us(model, rows, runs)
        traced = torch.jit.trace(model, rows[0])
        traced(rows[0])
        jit = per_call_us(traced, rows, runs)
    print(json.dumps({"torch": torch.__version__, "threads": torch.get_num_threads(),
                      "eager_us": round(eager, 2), "traced_us": round(jit, 2)}))


if __name__ == "__main__":
    main()
