#!/usr/bin/python3
"""PyTorch side of the rl_mlops checkpoint format (ARCHITECTURE.md "The network and its checkpoint", "The trading environment").

Proves that a PyTorch user can read and write our safetensors checkpoints
with plain load_state_dict, and gives the tests PyTorch reference outputs.
Needs only torch: the safetensors package is not required (the format is
8-byte little-endian header length, JSON header, raw little-endian data).

  interop.py write OUT [--obs-dim 33 --hidden 64 --window 32 --n-features 0
                        --sigma 0.001 --seed 1 --version V]
      a freshly initialised TradingActorCritic (torch.manual_seed(seed)),
      header laid out exactly as the C writer lays it out
  interop.py forward CKPT OBS_JSON
      {"probs": [[...]], "values": [...]} for the observations (a JSON list
      of lists, given inline, as a file name, or "-" for stdin)
  interop.py reference CKPT [OBS_JSON | --random N --seed S]
      plain-text weights, observations and PyTorch outputs for
      test/c/test_forward.c
  interop.py save OUT [--seed 1 --obs-dim 33 --hidden 64 --format pt
                       --dtype F32]
      a freshly initialised TradingActorCritic's state_dict saved the way
      safetensors.torch.save_file(model.state_dict(), OUT, metadata)
      saves it: metadata {"format": "pt"} (or none with --format none),
      tensors sorted by name, in F32, F16, BF16 or F64
  interop.py selftest
      write, read back, forward; prints "ok"

Any error: a message on stderr and exit status 1.
"""

import argparse
import json
import math
import os
import struct
import sys
import tempfile

import torch
from torch import nn

FORMAT = "rl_mlops/1"
PARAM_NAMES = [
    "trunk.0.weight", "trunk.0.bias", "trunk.2.weight", "trunk.2.bias",
    "actor.weight", "actor.bias", "critic.weight", "critic.bias",
]
ARCH_KEYS = ["window", "n_features", "obs_dim", "hidden", "n_actions"]
MAX_HEADER = 100 * 1024 * 1024
# safetensors dtype: (torch dtype, bytes per element)
DTYPES = {"F32": (torch.float32, 4), "F16": (torch.float16, 2),
          "BF16": (torch.bfloat16, 2), "F64": (torch.float64, 8)}


def to_bytes(t, dtype):
    """Little-endian bytes of a tensor stored as a safetensors dtype."""
    t = t.detach().to(DTYPES[dtype][0]).contiguous().cpu().flatten()
    if dtype in ("F16", "BF16"):
        return struct.pack("<%dh" % t.numel(), *t.view(torch.int16).tolist())
    fmt = "d" if dtype == "F64" else "f"
    return struct.pack("<%d%s" % (t.numel(), fmt), *t.tolist())


def from_bytes(raw, dtype, numel):
    """A float32 tensor (widened or rounded as rl_mlops does) from raw bytes."""
    if dtype in ("F16", "BF16"):
        ints = torch.tensor(struct.unpack("<%dh" % numel, raw), dtype=torch.int16)
        return ints.view(DTYPES[dtype][0]).to(torch.float32)
    fmt = "d" if dtype == "F64" else "f"
    return torch.tensor(struct.unpack("<%d%s" % (numel, fmt), raw),
                        dtype=torch.float64).to(torch.float32)


class TradingActorCritic(nn.Module):
    """The network of ARCHITECTURE.md "The trading environment"."""

    def __init__(self, obs_dim, hidden=64, n_actions=3):
        super().__init__()
        self.trunk = nn.Sequential(
            nn.Linear(obs_dim, hidden), nn.Tanh(),
            nn.Linear(hidden, hidden), nn.Tanh())
        self.actor = nn.Linear(hidden, n_actions)
        self.critic = nn.Linear(hidden, 1)

    def forward(self, obs):
        h = self.trunk(obs)
        return torch.softmax(self.actor(h), dim=-1), self.critic(h).squeeze(-1)


class FormatError(Exception):
    pass


def json_str(s):
    """A JSON string as PostgreSQL's escape_json writes it (non-ASCII raw)."""
    return json.dumps(s, ensure_ascii=False)


def serialize(metadata, tensors):
    """safetensors bytes: metadata keys and tensors in the order given."""
    parts = ['{"__metadata__":{']
    parts.append(",".join(json_str(k) + ":" + json_str(v)
                          for k, v in metadata.items()))
    parts.append("}")
    data = []
    offset = 0
    for name, t in tensors:
        t = t.detach().to(torch.float32).contiguous().cpu()
        raw = struct.pack("<%df" % t.numel(), *t.flatten().tolist())
        shape = ",".join(str(d) for d in t.shape)
        parts.append(',%s:{"dtype":"F32","shape":[%s],"data_offsets":[%d,%d]}'
                     % (json_str(name), shape, offset, offset + len(raw)))
        data.append(raw)
        offset += len(raw)
    parts.append("}")
    header = "".join(parts).encode("utf-8")
    header += b" " * (-len(header) % 8)
    return struct.pack("<Q", len(header)) + header + b"".join(data)


def no_duplicates(pairs):
    d = {}
    for k, v in pairs:
        if k in d:
            raise FormatError("duplicate key %r in header" % k)
        d[k] = v
    return d


def parse(buf):
    """(metadata dict, {name: tensor}) from safetensors bytes, checked."""
    if len(buf) < 8:
        raise FormatError("file shorter than 8 bytes")
    (hlen,) = struct.unpack("<Q", buf[:8])
    if hlen > len(buf) - 8 or hlen > MAX_HEADER:
        raise FormatError("header length %d out of bounds" % hlen)
    try:
        header = json.loads(buf[8:8 + hlen].decode("utf-8"),
                            object_pairs_hook=no_duplicates)
    except (UnicodeDecodeError, ValueError) as e:
        raise FormatError("header is not valid JSON: %s" % e)
    if not isinstance(header, dict):
        raise FormatError("header is not a JSON object")
    metadata = header.pop("__metadata__", {})
    if not isinstance(metadata, dict):
        raise FormatError("__metadata__ is not an object")
    data = buf[8 + hlen:]
    tensors = {}
    spans = []
    for name, info in header.items():
        if not isinstance(info, dict):
            raise FormatError("tensor %s: entry is not an object" % name)
        dtype = info.get("dtype")
        if dtype not in DTYPES:
            raise FormatError("tensor %s: dtype %r, not one of %s"
                              % (name, dtype, ", ".join(DTYPES)))
        shape = info.get("shape")
        begin, end = info.get("data_offsets", (None, None))
        if (not isinstance(shape, list) or not 1 <= len(shape) <= 2
                or not all(isinstance(d, int) and d > 0 for d in shape)):
            raise FormatError("tensor %s: bad shape" % name)
        numel = math.prod(shape)
        if (not isinstance(begin, int)
                or not isinstance(end, int) or not 0 <= begin <= end <= len(data)
                or end - begin != DTYPES[dtype][1] * numel):
            raise FormatError("tensor %s: bad shape or data_offsets" % name)
        spans.append((begin, end, name))
        t = from_bytes(data[begin:end], dtype, numel).reshape(shape)
        if not torch.isfinite(t).all():
            raise FormatError("tensor %s has a non-finite value" % name)
        tensors[name] = t
    pos = 0
    for begin, end, name in sorted(spans):
        if begin != pos:
            raise FormatError("data of tensor %s does not follow on" % name)
        pos = end
    if pos != len(data):
        raise FormatError("trailing bytes after the last tensor")
    return metadata, tensors


def arch_from_shapes(tensors):
    """A plain state_dict's architecture, from its tensors' shapes."""
    hidden, obs_dim = tensors["trunk.0.weight"].shape
    return {"window": None, "n_features": None, "obs_dim": obs_dim,
            "hidden": hidden, "n_actions": tensors["actor.weight"].shape[0]}


def arch_from_metadata(metadata):
    if metadata.get("format") != FORMAT:
        raise FormatError("format %r, expected %r"
                          % (metadata.get("format"), FORMAT))
    try:
        arch = {k: int(metadata[k]) for k in ARCH_KEYS}
        sigma = float(metadata["sigma"])
    except (KeyError, ValueError) as e:
        raise FormatError("bad or missing metadata: %s" % e)
    if arch["obs_dim"] != arch["window"] + 1 + arch["n_features"]:
        raise FormatError("obs_dim != window + 1 + n_features")
    return arch, sigma


def load(path):
    """A TradingActorCritic from one of our checkpoints (optim.* ignored)."""
    with open(path, "rb") as f:
        metadata, tensors = parse(f.read())
    if metadata.get("format", "pt") == "pt":
        arch = arch_from_shapes(tensors)
    else:
        arch, _ = arch_from_metadata(metadata)
    model = TradingActorCritic(arch["obs_dim"], arch["hidden"],
                               arch["n_actions"])
    state = {k: v for k, v in tensors.items() if not k.startswith("optim.")}
    model.load_state_dict(state, strict=True)
    model.eval()
    return model, arch, metadata


def make_metadata(window, n_features, obs_dim, hidden, n_actions, sigma,
                  version=None):
    """__metadata__ in the C writer's key order."""
    m = {"format": FORMAT, "window": str(window),
         "n_features": str(n_features), "obs_dim": str(obs_dim),
         "hidden": str(hidden), "n_actions": str(n_actions),
         "sigma": "%.17g" % sigma}
    if version is not None:
        m["version"] = version
    return m


def write_checkpoint(out, obs_dim, hidden, window, n_features, sigma, seed,
                     version=None):
    if obs_dim != window + 1 + n_features:
        raise FormatError("obs_dim must be window + 1 + n_features")
    torch.manual_seed(seed)
    model = TradingActorCritic(obs_dim, hidden)
    metadata = make_metadata(window, n_features, obs_dim, hidden, 3, sigma,
                             version)
    blob = serialize(metadata, list(model.state_dict().items()))
    with open(out, "wb") as f:
        f.write(blob)
    return model


def read_obs(arg):
    if arg == "-":
        text = sys.stdin.read()
    elif os.path.exists(arg):
        with open(arg) as f:
            text = f.read()
    else:
        text = arg
    obs = json.loads(text)
    if (not isinstance(obs, list) or not obs
            or not all(isinstance(row, list) for row in obs)):
        raise FormatError("observations must be a non-empty JSON list of lists")
    return torch.tensor(obs, dtype=torch.float32)


def run_forward(model, arch, obs):
    if obs.dim() != 2 or obs.shape[1] != arch["obs_dim"]:
        raise FormatError("each observation must have %d values"
                          % arch["obs_dim"])
    with torch.no_grad():
        return model(obs)


def cmd_write(a):
    write_checkpoint(a.out, a.obs_dim, a.hidden, a.window, a.n_features,
                     a.sigma, a.seed, a.version)


def cmd_save(a):
    """As safetensors.torch.save_file(model.state_dict(), out, metadata)."""
    torch.manual_seed(a.seed)
    model = TradingActorCritic(a.obs_dim, a.hidden)
    parts, data, offset = [], [], 0
    if a.format == "pt":
        parts.append('"__metadata__":{"format":"pt"}')
    for name, t in sorted(model.state_dict().items()):
        raw = to_bytes(t, a.dtype)
        parts.append('%s:{"dtype":"%s","shape":[%s],"data_offsets":[%d,%d]}'
                     % (json_str(name), a.dtype, ",".join(str(d) for d in t.shape),
                        offset, offset + len(raw)))
        data.append(raw)
        offset += len(raw)
    header = ("{" + ",".join(parts) + "}").encode("utf-8")
    header += b" " * (-len(header) % 8)
    with open(a.out, "wb") as f:
        f.write(struct.pack("<Q", len(header)) + header + b"".join(data))


def cmd_forward(a):
    model, arch, _ = load(a.ckpt)
    probs, values = run_forward(model, arch, read_obs(a.obs))
    print(json.dumps({"probs": probs.tolist(), "values": values.tolist()}))


def cmd_reference(a):
    """Text for test_forward.c: arch, the 8 tensors, then obs/probs/value rows."""
    model, arch, _ = load(a.ckpt)
    if a.obs is not None:
        obs = read_obs(a.obs)
    else:
        g = torch.Generator().manual_seed(a.seed)
        obs = torch.randn(a.random, arch["obs_dim"], generator=g) * 3
        obs[: a.random // 4] *= 100     # saturate tanh, large logits
    probs, values = run_forward(model, arch, obs)
    out = [" ".join(str(arch[k]) for k in ARCH_KEYS)]
    state = model.state_dict()
    for name in PARAM_NAMES:
        out.append(" ".join(repr(x) for x in state[name].flatten().tolist()))
    out.append(str(obs.shape[0]))
    for o, p, v in zip(obs.tolist(), probs.tolist(), values.tolist()):
        out.append(" ".join(repr(x) for x in o + p + [v]))
    print("\n".join(out))


def cmd_selftest(a):
    with tempfile.TemporaryDirectory() as d:
        p1, p2 = os.path.join(d, "a.safetensors"), os.path.join(d, "b.safetensors")
        m1 = write_checkpoint(p1, 33, 64, 32, 0, 0.001, 1, "20240101_000000")
        write_checkpoint(p2, 33, 64, 32, 0, 0.001, 1, "20240101_000000")
        with open(p1, "rb") as f1, open(p2, "rb") as f2:
            if f1.read() != f2.read():
                raise FormatError("writer is not deterministic")
        m2, arch, metadata = load(p1)
        if metadata.get("version") != "20240101_000000" or float(metadata["sigma"]) != 0.001:
            raise FormatError("metadata did not round-trip")
        for k, v in m1.state_dict().items():
            if not torch.equal(v, m2.state_dict()[k]):
                raise FormatError("tensor %s did not round-trip" % k)
        probs, values = run_forward(m2, arch, torch.randn(5, 33))
        if not torch.allclose(probs.sum(-1), torch.ones(5), atol=1e-6):
            raise FormatError("probabilities do not sum to 1")
        if values.shape != (5,) or not torch.isfinite(values).all():
            raise FormatError("bad values")
    print("ok")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    w = sub.add_parser("write")
    w.add_argument("out")
    w.add_argument("--obs-dim", type=int, default=33)
    w.add_argument("--hidden", type=int, default=64)
    w.add_argument("--window", type=int, default=32)
    w.add_argument("--n-features", type=int, default=0)
    w.add_argument("--sigma", type=float, default=0.001)
    w.add_argument("--seed", type=int, default=1)
    w.add_argument("--version", default=None)
    w.set_defaults(func=cmd_write)
    v = sub.add_parser("save")
    v.add_argument("out")
    v.add_argument("--obs-dim", type=int, default=33)
    v.add_argument("--hidden", type=int, default=64)
    v.add_argument("--seed", type=int, default=1)
    v.add_argument("--format", choices=["pt", "none"], default="pt")
    v.add_argument("--dtype", choices=list(DTYPES), default="F32")
    v.set_defaults(func=cmd_save)
    f = sub.add_parser("forward")
    f.add_argument("ckpt")
    f.add_argument("obs")
    f.set_defaults(func=cmd_forward)
    r = sub.add_parser("reference")
    r.add_argument("ckpt")
    r.add_argument("obs", nargs="?")
    r.add_argument("--random", type=int, default=100)
    r.add_argument("--seed", type=int, default=7)
    r.set_defaults(func=cmd_reference)
    s = sub.add_parser("selftest")
    s.set_defaults(func=cmd_selftest)
    a = ap.parse_args()
    try:
        a.func(a)
    except (FormatError, OSError, ValueError, RuntimeError) as e:
        print("interop.py: error: %s" % e, file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
