#!/usr/bin/env bash
# Unit suite: the plain-C and libtorch-wrapper self tests (TAP lines).
set -u
cd "$1"
rc=0
for dir in test/c test/torch; do
	for mk in "$dir"/Makefile*; do
		[ -f "$mk" ] || continue
		# test/c/Makefile's check runs it
		[ "$mk" = test/c/Makefile.torch ] && continue
		make -s -C "$dir" -f "$(basename "$mk")" check || rc=1
	done
done
exit $rc
