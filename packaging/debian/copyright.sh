#!/usr/bin/env bash
# copyright.sh ROOT [GO]: writes the package's copyright file: timed's own
# notice, then every Go module linked into timed and timectl with the
# licence file it ships (from the module cache).
set -euo pipefail
root=${1:?usage: copyright.sh ROOT [GO]}
go=${2:-go}
cat <<'HEAD'
timed: a time service for NTP, NTS, PTP, gPTP, CSPTP and GNSS.

Copyright: the timed developers.
The project has not published its licence yet; until it does, these
binaries are for evaluation only.

The programs are linked statically with the Go standard library and the
Go modules below; each is under the licence that follows its name.
HEAD
printf '\n%s\n\n' "==== Go standard library ($("$go" env GOVERSION))"
cat "$("$go" env GOROOT)/LICENSE"
GOFLAGS=-mod=mod GOPROXY=off "$go" list -C "$root" -deps -f '{{with .Module}}{{if not .Main}}{{.Path}} {{.Version}} {{.Dir}}{{end}}{{end}}' ./cmd/timed ./cmd/timectl |
	sort -u | while read -r path version dir; do
	lic=$(find "$dir" -maxdepth 1 -type f \( -iname 'LICENSE*' -o -iname 'LICENCE*' -o -iname 'COPYING*' \) | sort | head -1)
	printf '\n%s\n\n' "==== $path $version"
	if [[ -n $lic ]] && grep -q 'Apache License' "$lic" && grep -q 'Version 2.0' "$lic"; then
		echo "Licensed under the Apache License, Version 2.0. On Debian systems its full"
		echo "text is in /usr/share/common-licenses/Apache-2.0."
	elif [[ -n $lic ]]; then
		cat "$lic"
	else
		echo "(no licence file in the module; see https://$path)"
	fi
done
