#!/usr/bin/env bash
# Training memory at scale (issue 16): the worker's peak resident memory
# (VmHWM of its process, read until it exits; runs also record it in
# models.metrics.worker_peak_rss_mb) and the time per epoch when training on SYMBOLS symbols x DAYS days of
# 1-minute bars, against the bound 200 MB + 32 bytes per source row.
# Prints one markdown table row per run.  Informative only: no test
# depends on it.
#
#   bash bench/train/memory.sh                   (as root or as postgres)
#   SYMBOLS=50 DAYS=30 EPOCHS=1 REPS=1 THREADS=1 bash bench/train/memory.sh
#
# Needs the extension installed (make install).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
SYMBOLS=${SYMBOLS:-50}
DAYS=${DAYS:-30}
EPOCHS=${EPOCHS:-1}
REPS=${REPS:-1}
THREADS=${THREADS:-1}

# initdb refuses root: copy what we need and run as postgres.
if [ "$(id -u)" = 0 ]; then
	work=$(mktemp -d /tmp/rl_mlops_bench_mem.XXXXXX)
	mkdir -p "$work/src/test/lib" "$work/src/bench/train"
	cp "$root/test/lib/cluster.sh" "$work/src/test/lib/"
	cp "$here/memory.sh" "$work/src/bench/train/"
	chown -R postgres "$work"
	exec runuser -u postgres -- env BENCH_WORK="$work" SYMBOLS="$SYMBOLS" DAYS="$DAYS" \
		EPOCHS="$EPOCHS" REPS="$REPS" THREADS="$THREADS" bash "$work/src/bench/train/memory.sh"
fi
work=${BENCH_WORK:-$(mktemp -d /tmp/rl_mlops_bench_mem.XXXXXX)}
source "$root/test/lib/cluster.sh"
start_cluster "$work/cluster" "shared_buffers = '256MB'" "max_wal_size = '4GB'" >/dev/null
trap stop_cluster EXIT
q() { psql -X -q -At -d postgres -v ON_ERROR_STOP=1 -c "$1"; }

bars=$((DAYS * 1440))
q "CREATE EXTENSION rl_mlops"
q "CREATE TABLE bars AS SELECT * FROM rl_mlops.synthetic_bars(symbols => $SYMBOLS, bars => $bars,
       start_at => now() - interval '$DAYS days', seed => 0.3)"
q "CREATE INDEX ON bars (symbol, ts)"
rows=$(q "SELECT count(*) FROM bars")
q "SELECT rl_mlops.create_agent('m', 'bars') IS NULL" 2>/dev/null
q "SELECT rl_mlops.configure('m', initial_epochs => $EPOCHS, data_window => '$DAYS days',
                             threads => $THREADS) IS NULL"

echo "| rows | epochs | worker peak RSS, VmHWM (MB) | of which shared buffers, peak RssShmem (MB) | worker's own peak, RssAnon + RssFile (MB) | bound 200 MB + 32 B/row | decisions per epoch | s per epoch (rollout + update) | update µs per minibatch step (worker log, median of epochs) | run wall s | load (1 min) |"
echo "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"
for _ in $(seq "$REPS"); do
	run=$(q "SELECT rl_mlops.retrain('m', full => true)" 2>/dev/null)
	# the worker's VmHWM (peak RSS), read until it exits: works for builds
	# that do not record metrics.worker_peak_rss_mb too
	pid=
	until [ -n "$pid" ]; do
		pid=$(q "SELECT worker_pid FROM rl_mlops.runs WHERE id = $run AND worker_pid IS NOT NULL")
		sleep 0.1
	done
	# VmHWM counts the pages of shared_buffers the worker touched while it
	# read the source (the table's pages, shared with every backend): the
	# worker's own memory is RssAnon + RssFile, sampled every 0.1 s
	hwm=0 own=0 shm=0
	while [ -r "/proc/$pid/status" ]; do
		read -r h a f s < <(awk '/^VmHWM/ {h=$2} /^RssAnon/ {a=$2} /^RssFile/ {f=$2} /^RssShmem/ {s=$2}
			END {print h+0, a+0, f+0, s+0}' "/proc/$pid/status" 2>/dev/null || echo "0 0 0 0")
		[ "$h" -gt "$hwm" ] && hwm=$h
		[ $((a + f)) -gt "$own" ] && own=$((a + f))
		[ "$s" -gt "$shm" ] && shm=$s
		sleep 0.1
	done
	until [ "$(q "SELECT state IN ('succeeded', 'rejected', 'failed', 'cancelled') FROM rl_mlops.runs WHERE id = $run")" = t ]; do
		sleep 0.2
	done
	# the worker logs the update's time per minibatch step for each epoch
	step_us=$(grep -o "run $run epoch [0-9]*/[0-9]*: .*update [0-9]* us" "$CLUSTER_DIR/server.log" |
		sed 's/.*update \([0-9]*\) us/\1/' | sort -n | awk '{v[NR]=$1} END {print (NR ? v[int((NR+1)/2)] : "n/a")}')
	q "SELECT format('| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |', $rows, r.epochs,
	              round($hwm / 1024.0, 1), round($shm / 1024.0, 1), round($own / 1024.0, 1),
	              round(200 + 32 * $rows / 1048576.0, 1),
	              r.samples, round((r.samples / r.samples_per_second)::numeric, 2), '$step_us',
	              round(extract(epoch FROM r.finished_at - r.started_at)::numeric, 1),
	              '$(cut -d' ' -f1 /proc/loadavg)')
	     FROM rl_mlops.runs r WHERE r.id = $run"
	q "SELECT 'run ' || id || ': ' || state || coalesce(' (' || error || ')', '') FROM rl_mlops.runs WHERE id = $run" >&2
done
