#!/usr/bin/env bash
# Operating characteristic of the rollback / promotion test (issues 12, 13):
# builds sim.c with src/core/sequential.c and prints the tables of README.md.
#
#   bash bench/monitor/run.sh                  # the README's run, ~3 minutes
#   bash bench/monitor/run.sh --paths 500 --edge-paths 200 --multi-paths 200
#
# Options go to the simulator: --paths --edge-paths --multi-paths --steps
# --seed (default 20261130).  Plain C, no PostgreSQL; nothing is written in
# the source tree (the binary goes to $TMPDIR).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
core="$here/../../src/core"
bin="${TMPDIR:-/tmp}/rl_mlops_monitor_sim.$$"
trap 'rm -f "$bin"' EXIT
gcc -std=c99 -O2 -fwrapv -Wall -Wextra -Werror -Wmissing-prototypes \
	-Wdeclaration-after-statement -I"$core" -o "$bin" \
	"$here/sim.c" "$core/sequential.c" -lm
echo "# $(gcc --version | head -1); $(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //'); $(nproc) CPUs"
echo "# load before: $(uptime)"
start=$(date +%s)
"$bin" "$@"
echo
echo "# load after: $(uptime); $(( $(date +%s) - start )) s"
