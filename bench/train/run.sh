#!/usr/bin/env bash
# Training benchmark on a throwaway cluster (driver.py does the work):
#  1. samples per second of one training epoch (rollout + PPO updates,
#     default hyper-parameters, one thread) of the rl_mlops worker against
#     the same epoch written in plain PyTorch (ppo_torch.py, /usr/bin/python3
#     with Debian's torch 1.13) on the same data exported to CSV, and the
#     holdout log return each reaches after the same number of epochs;
#  2. wall time of one weekly incremental retrain (5 epochs) on 30 days of
#     1-minute bars for 10 symbols (432,000 rows) after an initial training.
# Prints a markdown report (also kept as $work/results.md).  Timings are
# informative only, never pass conditions.
#
#   bash bench/train/run.sh                      (as root or as postgres)
#   EPOCHS=10 SEEDS="1 2 3" SYMBOLS=10 BARS=10000 WEEKLY_REPS=3 bash bench/train/run.sh
#   SKIP_WEEKLY=1 bash bench/train/run.sh        (part 1 only; SKIP_EPOCH=1: part 2 only)
#
# Needs the extension installed (make install) and python3-torch.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
vars="EPOCHS SEEDS SYMBOLS BARS WEEKLY_REPS WEEKLY_INITIAL_EPOCHS SKIP_WEEKLY SKIP_EPOCH"

# initdb refuses root: copy what we need and run as postgres.
if [ "$(id -u)" = 0 ]; then
	work=$(mktemp -d /tmp/rl_mlops_bench_train.XXXXXX)
	mkdir -p "$work/src/test/lib" "$work/src/bench/train"
	cp "$root/test/lib/cluster.sh" "$work/src/test/lib/"
	cp "$here"/run.sh "$here"/driver.py "$here"/ppo_torch.py "$work/src/bench/train/"
	chown -R postgres "$work"
	envs=(BENCH_WORK="$work")
	for v in $vars; do [ -n "${!v:-}" ] && envs+=("$v=${!v}"); done
	exec runuser -u postgres -- env "${envs[@]}" bash "$work/src/bench/train/run.sh"
fi
work=${BENCH_WORK:-$(mktemp -d /tmp/rl_mlops_bench_train.XXXXXX)}
source "$root/test/lib/cluster.sh"
start_cluster "$work/cluster" "shared_buffers = '256MB'" "max_wal_size = '4GB'" \
	"checkpoint_timeout = '30min'" >/dev/null
trap stop_cluster EXIT
psql -X -q -d postgres -c 'CREATE EXTENSION rl_mlops' >/dev/null

SERVER_LOG="$CLUSTER_DIR/server.log" BENCH_WORK="$work" /usr/bin/python3 "$here/driver.py" |
	tee "$work/results.md"
echo "(report kept in $work/results.md, server log in $CLUSTER_DIR/server.log)" >&2
