#!/usr/bin/env bash
# Runs every test suite against throwaway clusters as a non-root user and
# ends with one line "N passed, N failed" totalling all suites.
# Usage: test/run_all.sh [suite...]   (unit regress pgtap tap; default all)
set -u
src=$(cd "$(dirname "$0")/.." && pwd)
suites=${*:-unit regress pgtap tap}

# initdb refuses root: as root, run the suites as the postgres user.
if [ "$(id -u)" = 0 ]; then
	user=postgres
	id -u "$user" >/dev/null 2>&1 || useradd --system --create-home "$user"
	run_as() { runuser -u "$user" -- "$@"; }
else
	user=$(id -un)
	run_as() { "$@"; }
fi

work=$(mktemp -d /tmp/rl_mlops_test.XXXXXX)
cp -r "$src/sql" "$src/expected" "$src/test" "$src/src" "$work/"
[ -d "$src/bench" ] && cp -r "$src/bench" "$work/"
[ -d "$src/tools" ] && cp -r "$src/tools" "$work/"
# the README's SQL blocks are a test (test/t/180_readme.pl)
cp "$src/README.md" "$work/"
chown -R "$user" "$work"

passed=0
failed=0
for suite in $suites; do
	log="$work/$suite.log"
	echo "== suite $suite (log: $log)"
	run_as bash "$work/test/suite_$suite.sh" "$work" >"$log" 2>&1
	rc=$?
	# TAP lines (unit, pgtap, tap) and pg_regress result lines.
	ok=$(grep -cE '^\s*ok [0-9]+|\.\.\. ok ' "$log")
	bad=$(grep -cE '^\s*not ok [0-9]+|\.\.\. FAILED' "$log")
	# A runner that failed without a failing test line (a crash, a bad
	# plan, a cluster that did not start) still counts as one failure.
	[ $rc -ne 0 ] && [ "$bad" -eq 0 ] && bad=1
	if [ $rc -ne 0 ] || [ "$bad" -ne 0 ]; then
		cat "$log"
	else
		grep -E '^\s*(not )?ok [0-9]+|\.\.\. (ok|FAILED)|^All tests|^Result' "$log"
	fi
	echo "== suite $suite: $ok passed, $bad failed"
	passed=$((passed + ok))
	failed=$((failed + bad))
done

[ $failed -eq 0 ] && [ -z "${RL_MLOPS_KEEP:-}" ] && rm -rf "$work"
echo "$passed passed, $failed failed"
[ $failed -eq 0 ]
