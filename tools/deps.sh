#!/bin/sh
# Install, with apt-get, whatever the build, the tests and the demo need.
# Idempotent and quiet when everything is there already.
set -eu

PACKAGES="
build-essential
postgresql-15
postgresql-server-dev-15
postgresql-15-cron
postgresql-15-pgtap
libtap-parser-sourcehandler-pgtap-perl
libipc-run-perl
libtorch-dev
libopenblas0-openmp
python3-torch
prometheus
prometheus-postgres-exporter
chromium
libjs-chart.js
"

missing=""
for p in $PACKAGES; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
		missing="$missing $p"
	fi
done

[ -z "$missing" ] && exit 0

if [ "$(id -u)" != 0 ]; then
	echo "rl_mlops: missing packages:$missing" >&2
	echo "rl_mlops: run 'make deps' as root (or: sudo apt-get install$missing)" >&2
	exit 1
fi

echo "rl_mlops: installing$missing"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# shellcheck disable=SC2086
apt-get install -y -qq $missing >/dev/null
