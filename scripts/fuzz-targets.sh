#!/usr/bin/env bash
# fuzz-targets.sh: lists every Go fuzz target in the module, one per line, as
# "PACKAGE_DIR FUZZ_NAME" (e.g. "./ntp FuzzParsePacket"), so that make test and
# make fuzz pick up new targets without being edited.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
{ grep -rEo --include='*_test.go' --exclude-dir=.peers --exclude-dir=.git \
	'^func Fuzz[A-Za-z0-9_]*\(' . || true; } |
	sed -E 's|^(.*)/[^/]*_test\.go:func (Fuzz[A-Za-z0-9_]*)\($|\1 \2|' |
	sort -u
