#!/usr/bin/env bash
# Registry benchmark: an agent with N_VERSIONS (default 10,000) checkpoint
# versions, each with its own large object, on a throwaway cluster; median
# timings of deploy_model, rollback, status, cleanup_old_models (dry run and
# real, VICTIMS rows each), and checkpoint throughput through large objects
# against a plain file; the plan of every statement one rollback runs
# (auto_explain), to show that deploys and rollbacks read index ranges only.
# Prints a markdown report (also kept as $work/results.md) with the load
# average before and after the registry timings (the machine may be
# shared).  Timings are informative only, never pass conditions.
#
#   bash bench/registry/run.sh            (as root or as postgres)
#   N_VERSIONS=1000 REPS=20 bash bench/registry/run.sh
#
# Needs the extension installed (see the top-level README) and python3.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
N_VERSIONS=${N_VERSIONS:-10000}
REPS=${REPS:-50}           # deploy / rollback repetitions
STATUS_REPS=${STATUS_REPS:-200}
VICTIMS=${VICTIMS:-1000}   # rows per real cleanup
CLEANUP_REPS=${CLEANUP_REPS:-5}
BLOB_REPS=${BLOB_REPS:-5}

# initdb refuses root: copy what we need and run as postgres.
if [ "$(id -u)" = 0 ]; then
	work=$(mktemp -d /tmp/rl_mlops_bench.XXXXXX)
	mkdir -p "$work/src/test/lib" "$work/src/test/pgtap/helpers" "$work/src/bench/registry"
	cp "$root/test/lib/cluster.sh" "$work/src/test/lib/"
	cp "$root/test/pgtap/helpers/checkpoint.sql" "$work/src/test/pgtap/helpers/"
	cp "$here/run.sh" "$work/src/bench/registry/"
	chown -R postgres "$work"
	exec runuser -u postgres -- env BENCH_WORK="$work" N_VERSIONS="$N_VERSIONS" REPS="$REPS" \
		STATUS_REPS="$STATUS_REPS" VICTIMS="$VICTIMS" CLEANUP_REPS="$CLEANUP_REPS" BLOB_REPS="$BLOB_REPS" \
		bash "$work/src/bench/registry/run.sh"
fi
work=${BENCH_WORK:-$(mktemp -d /tmp/rl_mlops_bench.XXXXXX)}
source "$root/test/lib/cluster.sh"
# fsync on (cluster.sh turns it off for tests): commits really reach disk,
# like the fsync'ed file writes we compare with.
start_cluster "$work/cluster" "fsync = on" "shared_buffers = '256MB'" "max_wal_size = '4GB'" \
	"checkpoint_timeout = '30min'" >/dev/null
trap 'stop_cluster; rm -rf "$work/cluster" "$work/blob.bin" "$work/blob.copy"' EXIT
createdb bench
q() { psql -X -q -v ON_ERROR_STOP=1 -d bench "$@"; }

# median_ms FILE: runs FILE's statements (one transaction each) with
# \timing and prints the median "Time:" in ms.
median_ms() {
	{ echo '\timing on'; cat "$1"; } | q -o /dev/null 2>&1 | sed -n 's/^Time: \([0-9.]*\) ms.*/\1/p' |
		sort -n | awk '{a[NR] = $1} END {if (NR == 0) {print "n/a"; exit} if (NR % 2) m = a[(NR + 1) / 2]; else m = (a[NR / 2] + a[NR / 2 + 1]) / 2; printf "%.2f\n", m}'
}
# median of the last column of repeated shell timings (seconds -> ms)
median_of() { sort -n | awk '{a[NR] = $1} END {if (NR % 2) m = a[(NR + 1) / 2]; else m = (a[NR / 2] + a[NR / 2 + 1]) / 2; printf "%.2f\n", m}'; }
mbps() { awk -v b="$1" -v ms="$2" 'BEGIN {printf "%.0f", b / 1048576 / (ms / 1000)}'; }

echo "setting up $N_VERSIONS versions..." >&2
t0=$(date +%s.%N)
q <<SQL
\o /dev/null
SET client_min_messages = warning;
CREATE EXTENSION rl_mlops;
\i $root/test/pgtap/helpers/checkpoint.sql
SELECT rl_mlops.create_agent('bench', 'rl_test.bars');
-- two real versions A and B (imported, validated) to deploy back and forth
CREATE TABLE bench_v AS SELECT 'A'::text AS name, rl_mlops.import_model('bench', rl_test.checkpoint(1)) AS version;
INSERT INTO bench_v SELECT 'B', rl_mlops.import_model('bench', rl_test.checkpoint(2));
SELECT rl_mlops.validate_model('bench', version) FROM bench_v;
-- the bulk: archived versions, each with its own large object (same bytes),
-- one a second going back in time, archived recently (nothing is due)
CREATE TEMP TABLE ck AS SELECT rl_test.checkpoint(3) AS b;
INSERT INTO rl_mlops.models (agent, version, checkpoint, sha256, size_bytes, state, created_at,
                             validated_at, deployed_at, archived_at, validation, sigma)
SELECT 'bench', to_char(timestamp '2020-01-01' + i * interval '1 second', 'YYYYMMDD_HH24MISS'),
       lo_from_bytea(0, ck.b), encode(sha256(ck.b), 'hex'), length(ck.b), 'archived',
       now() - (($N_VERSIONS - i) * interval '1 second') - interval '1 hour',
       now() - interval '1 hour', now() - interval '1 hour', now() - interval '1 hour',
       '{"ok": true}', 0.001
  FROM generate_series(1, $N_VERSIONS) i, ck;
SELECT rl_mlops.deploy_model('bench', version, 'setup') FROM bench_v WHERE name = 'A';
VACUUM ANALYZE;
SQL
t1=$(date +%s.%N)
setup_s=$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.1f", b - a}')
nmodels=$(q -tA -c "SELECT count(*) FROM rl_mlops.models")
nlo=$(q -tA -c "SELECT count(*) FROM pg_largeobject_metadata")
A=$(q -tA -c "SELECT version FROM bench_v WHERE name = 'A'")
B=$(q -tA -c "SELECT version FROM bench_v WHERE name = 'B'")

load_before=$(cut -d' ' -f1-3 /proc/loadavg)
# deploy B, A, B, A... (each archives the other; retention runs every time)
for i in $(seq 1 "$REPS"); do
	if [ $((i % 2)) = 1 ]; then v=$B; else v=$A; fi
	echo "SELECT rl_mlops.deploy_model('bench', '$v', 'bench');"
done >"$work/deploy.sql"
deploy_ms=$(median_ms "$work/deploy.sql")
# rollback walks back and forth between A and B
for i in $(seq 1 "$REPS"); do echo "SELECT rl_mlops.rollback('bench', reason => 'bench');"; done >"$work/rollback.sql"
rollback_ms=$(median_ms "$work/rollback.sql")
for i in $(seq 1 "$STATUS_REPS"); do echo "SELECT rl_mlops.status('bench');"; done >"$work/status.sql"
status_ms=$(median_ms "$work/status.sql")
for i in $(seq 1 "$STATUS_REPS"); do echo "SELECT rl_mlops.metadata('bench');"; done >"$work/metadata.sql"
metadata_ms=$(median_ms "$work/metadata.sql")
for i in $(seq 1 20); do echo "SELECT rl_mlops.cleanup_old_models('bench', dry_run => true);"; done >"$work/dry0.sql"
dry0_ms=$(median_ms "$work/dry0.sql")
load_after=$(cut -d' ' -f1-3 /proc/loadavg)

# The plan of every statement one rollback runs (deploy_model runs the same
# ones but the history lookup), logged by auto_explain from inside the
# functions: statement, scan, rows the scan returned.
q -o /dev/null 2>"$work/plans.txt" <<SQL
LOAD 'auto_explain';
SET auto_explain.log_min_duration = 0;
SET auto_explain.log_nested_statements = on;
SET auto_explain.log_analyze = on;
SET auto_explain.log_buffers = on;
SET auto_explain.log_level = notice;
SET client_min_messages = notice;
SELECT rl_mlops.rollback('bench', reason => 'plans');
SQL
awk '/Query Text:/ {sub(/.*Query Text: */, ""); gsub(/[ \t]+/, " "); q = substr($0, 1, 70); next}
     /Scan/ {s = $0; sub(/^ *(-> *)?/, "", s); r = s; sub(/ +\(cost=.*/, "", s)
             sub(/.*actual time=[^ ]* rows=/, "", r); sub(/ .*/, "", r)
             printf "| `%s` | %s | %s |\n", q, s, r}' "$work/plans.txt" >"$work/plans.md"

# cleanup with VICTIMS due rows: age the oldest VICTIMS archived rows,
# time a dry run, then the real run (which unlinks their large objects)
: >"$work/dry.times"
: >"$work/real.times"
for r in $(seq 1 "$CLEANUP_REPS"); do
	q -c "UPDATE rl_mlops.models SET archived_at = now() - interval '40 days'
	       WHERE (agent, version) IN (SELECT agent, version FROM rl_mlops.models
	                                   WHERE agent = 'bench' AND state = 'archived' AND NOT pinned
	                                   ORDER BY created_at LIMIT $VICTIMS)"
	# one session: warm up (plpgsql compile, library load), then time a dry
	# run and the real run
	cat >"$work/c.sql" <<SQL
\\o /dev/null
SELECT rl_mlops.cleanup_old_models('bench', dry_run => true);
SELECT rl_mlops.cleanup_old_models('bench', dry_run => true);
\\timing on
SELECT rl_mlops.cleanup_old_models('bench', dry_run => true);
\\o
SELECT rl_mlops.cleanup_old_models('bench') ->> 'count';
SQL
	q -tA -f "$work/c.sql" >"$work/c.out"
	removed=$(grep -v '^Time:' "$work/c.out" | head -1)
	[ "$removed" = "$VICTIMS" ] || { echo "cleanup removed $removed rows, expected $VICTIMS" >&2; exit 1; }
	sed -n 's/^Time: \([0-9.]*\) ms.*/\1/p' "$work/c.out" | sed -n 1p >>"$work/dry.times"
	sed -n 's/^Time: \([0-9.]*\) ms.*/\1/p' "$work/c.out" | sed -n 2p >>"$work/real.times"
done
dry_ms=$(median_of <"$work/dry.times")
real_ms=$(median_of <"$work/real.times")
left=$(q -tA -c "SELECT count(*) FROM rl_mlops.models")
lo_left=$(q -tA -c "SELECT count(*) FROM pg_largeobject_metadata")

# Throughput: a large valid checkpoint (window 1024, hidden 1024, with
# optimizer state, pseudo-random floats so TOAST cannot compress it).
python3 - "$work/blob.bin" <<'PY'
import array, json, struct, sys
W, H = 1024, 1024
obs = W + 1
params = [("trunk.0.weight", [H, obs]), ("trunk.0.bias", [H]), ("trunk.2.weight", [H, H]), ("trunk.2.bias", [H]),
          ("actor.weight", [3, H]), ("actor.bias", [3]), ("critic.weight", [1, H]), ("critic.bias", [1])]
tensors = params + [("optim.exp_avg." + n, s) for n, s in params] + \
          [("optim.exp_avg_sq." + n, s) for n, s in params] + [("optim.step", [1])]
hdr = {"__metadata__": {"format": "rl_mlops/1", "window": str(W), "n_features": "0", "obs_dim": str(obs),
                        "hidden": str(H), "n_actions": "3", "sigma": "0.001"}}
x = 12345
chunks, pos = [], 0
for name, shape in tensors:
    n = shape[0] * (shape[1] if len(shape) > 1 else 1)
    a = array.array("f", bytes(4 * n))
    for i in range(n):
        x = (1103515245 * x + 12345) & 0x7fffffff
        a[i] = (x / 2147483648.0 - 0.5) * 0.01
    if sys.byteorder != "little":
        a.byteswap()
    b = a.tobytes()
    hdr[name] = {"dtype": "F32", "shape": shape, "data_offsets": [pos, pos + len(b)]}
    chunks.append(b)
    pos += len(b)
h = json.dumps(hdr, separators=(",", ":")).encode()
h += b" " * ((8 - len(h) % 8) % 8)
with open(sys.argv[1], "wb") as f:
    f.write(struct.pack("<Q", len(h)) + h + b"".join(chunks))
PY
bytes=$(stat -c %s "$work/blob.bin")
q <<SQL
\o /dev/null
SELECT rl_mlops.create_agent('big', 'rl_test.bars', window_size => 1024, hidden_size => 1024);
CREATE TABLE blob (b bytea);
ALTER TABLE blob ALTER COLUMN b SET STORAGE EXTERNAL;
INSERT INTO blob SELECT pg_read_binary_file('$work/blob.bin');
SQL
for i in $(seq 1 "$BLOB_REPS"); do echo "SELECT length(b || ''::bytea) FROM blob;"; done >"$work/toast.sql"
toast_ms=$(median_ms "$work/toast.sql")
for i in $(seq 1 "$BLOB_REPS"); do echo "SELECT rl_mlops.import_model('big', b) FROM blob;"; done >"$work/import.sql"
import_ms=$(median_ms "$work/import.sql")
big=$(q -tA -c "SELECT max(version) FROM rl_mlops.models WHERE agent = 'big'")
for i in $(seq 1 "$BLOB_REPS"); do echo "SELECT length(rl_mlops.export_model('big', '$big'));"; done >"$work/export.sql"
export_ms=$(median_ms "$work/export.sql")
for i in $(seq 1 "$BLOB_REPS"); do echo "SELECT rl_mlops.validate_model('big', '$big');"; done >"$work/validate.sql"
validate_ms=$(median_ms "$work/validate.sql")
for i in $(seq 1 "$BLOB_REPS"); do echo "SELECT lo_from_bytea(0, b) FROM blob;"; done >"$work/lowrite.sql"
lowrite_ms=$(median_ms "$work/lowrite.sql")
oid=$(q -tA -c "SELECT checkpoint FROM rl_mlops.models WHERE agent = 'big' AND version = '$big'")
for i in $(seq 1 "$BLOB_REPS"); do echo "SELECT length(lo_get($oid));"; done >"$work/loread.sql"
loread_ms=$(median_ms "$work/loread.sql")
# the same bytes to and from a file
TIMEFORMAT=%R
for i in $(seq 1 "$BLOB_REPS"); do
	{ time dd if="$work/blob.bin" of="$work/blob.copy" bs=1M conv=fsync status=none; } 2>&1
done | awk '{print $1 * 1000}' >"$work/fw.times"
filewrite_ms=$(median_of <"$work/fw.times")
for i in $(seq 1 "$BLOB_REPS"); do
	{ time dd if="$work/blob.copy" of=/dev/null bs=1M status=none; } 2>&1
done | awk '{print $1 * 1000}' >"$work/fr.times"
fileread_ms=$(median_of <"$work/fr.times")
# python3's own start-up is part of this one (about 20 ms): sha256 of the file
for i in $(seq 1 "$BLOB_REPS"); do
	{ time python3 -c "import hashlib,sys; hashlib.sha256(open(sys.argv[1],'rb').read()).hexdigest()" "$work/blob.copy"; } 2>&1
done | awk '{print $1 * 1000}' >"$work/fs.times"
filesha_ms=$(median_of <"$work/fs.times")

mb=$(awk -v b="$bytes" 'BEGIN {printf "%.1f", b / 1048576}')
{
	echo "Machine: $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')), $(free -g | awk '/^Mem/ {print $2}') GB RAM, PostgreSQL $(psql -X -tA -d bench -c 'SHOW server_version' | cut -d' ' -f1), fsync on, shared_buffers 256MB."
	echo "Set-up: $nmodels model rows and $nlo large objects (27 kB checkpoints) in ${setup_s} s."
	echo "Load average (1, 5, 15 min) before the registry timings: $load_before; after: $load_after."
	echo
	echo "| operation (agent with $nmodels versions) | median |"
	echo "| --- | ---: |"
	echo "| deploy_model (recheck, archive, history, retention scan) | $deploy_ms ms |"
	echo "| rollback | $rollback_ms ms |"
	echo "| status() | $status_ms ms |"
	echo "| metadata() (all versions as JSON) | $metadata_ms ms |"
	echo "| cleanup_old_models dry run, nothing due | $dry0_ms ms |"
	echo "| cleanup_old_models dry run, $VICTIMS due | $dry_ms ms |"
	echo "| cleanup_old_models, $VICTIMS removed and unlinked | $real_ms ms |"
	echo
	echo "Plans inside one rollback (auto_explain; full plans in $work/plans.txt):"
	echo
	echo "| statement (first line) | scan | rows |"
	echo "| --- | --- | ---: |"
	cat "$work/plans.md"
	echo
	echo "After the cleanups: $left model rows, $lo_left large objects."
	echo
	echo "| checkpoint of $mb MB (window 1024, hidden 1024, optimizer state) | median | MB/s |"
	echo "| --- | ---: | ---: |"
	echo "| import_model (parse, sha256, large object write, commit) | $import_ms ms | $(mbps "$bytes" "$import_ms") |"
	echo "| lo_from_bytea (large object write, commit) | $lowrite_ms ms | $(mbps "$bytes" "$lowrite_ms") |"
	echo "| reading (detoasting) the bytea from its table, included in both rows above | $toast_ms ms | $(mbps "$bytes" "$toast_ms") |"
	echo "| file write, dd conv=fsync | $filewrite_ms ms | $(mbps "$bytes" "$filewrite_ms") |"
	echo "| export_model (large object read, sha256 check) | $export_ms ms | $(mbps "$bytes" "$export_ms") |"
	echo "| validate_model (read, sha256, parse, architecture, forward) | $validate_ms ms | $(mbps "$bytes" "$validate_ms") |"
	echo "| lo_get (large object read) | $loread_ms ms | $(mbps "$bytes" "$loread_ms") |"
	echo "| file read, dd (page cache) | $fileread_ms ms | $(mbps "$bytes" "$fileread_ms") |"
	echo "| file read + sha256 in python3 (incl. start-up) | $filesha_ms ms | $(mbps "$bytes" "$filesha_ms") |"
} | tee "$work/results.md"
echo "(results kept in $work/results.md)" >&2
