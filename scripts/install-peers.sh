#!/usr/bin/env bash
# install-peers.sh: installs the real peer programs the interoperability tests
# run against (chronyd, ntpsec's ntpd, ptp4l, gpsd with gpsfake, tshark, ...).
#
# Idempotent and fast when everything is there: it checks first and touches
# apt only for what is missing. Debian packages that conflict with chrony
# (ntpsec) or pull in a desktop (gpsd-clients) are not installed but
# extracted into a project-local folder, .peers/ by default
# (TIMED_PEERS_DIR overrides it), where the tests find them.
#
# Usage: scripts/install-peers.sh [--check]
#   --check  only report what is missing; exit 1 when something is.
#
# When something is missing and cannot be installed (no apt-get, not root and
# no sudo), it says so and exits 0 so that tests skip, unless
# TIMED_REQUIRE_PEERS=1, where it exits 1.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
peers=${TIMED_PEERS_DIR:-$root/.peers}
check_only=0
[[ ${1:-} == --check ]] && check_only=1

# Debian packages installed system-wide, and one program of each that shows
# the package is there.
packages=(
	chrony:/usr/sbin/chronyd
	linuxptp:/usr/sbin/ptp4l
	gpsd:/usr/sbin/gpsd
	gpsd-tools:/usr/bin/gpsmon
	python3-gps:/usr/lib/python3/dist-packages/gps/__init__.py
	tshark:/usr/bin/tshark
	iproute2:/usr/sbin/ip
	libcap2-bin:/usr/sbin/capsh
	python3-ntp:/usr/lib/python3/dist-packages/ntp/__init__.py
	# go test ./packaging: systemd-analyze verify, systemd-sysusers and
	# systemd-tmpfiles --root (installing systemd does not start it when
	# PID 1 is not systemd), apparmor_parser (policy-rc.d keeps its service
	# from starting), lintian (the .deb is lintian-clean).
	systemd:/usr/bin/systemd-analyze
	apparmor:/usr/sbin/apparmor_parser
	lintian:/usr/bin/lintian
)
# Debian packages extracted under $peers/NAME (package:file inside it).
extracted=(
	ntpsec:ntpsec/usr/sbin/ntpd
	ntpsec-ntpdig:ntpsec/usr/bin/ntpdig
	gpsd-clients:gpsd-clients/usr/bin/gpsfake
)

say() { echo "install-peers: $*" >&2; }

missing_pkgs=()
for entry in "${packages[@]}"; do
	pkg=${entry%%:*} file=${entry#*:}
	[[ -e $file ]] || missing_pkgs+=("$pkg")
done
missing_extract=()
for entry in "${extracted[@]}"; do
	pkg=${entry%%:*} file=${entry#*:}
	[[ -e $peers/$file ]] || missing_extract+=("$pkg")
done

if ((${#missing_pkgs[@]} == 0 && ${#missing_extract[@]} == 0)); then
	exit 0
fi
say "missing: ${missing_pkgs[*]} ${missing_extract[*]}"
if ((check_only)); then
	exit 1
fi

cannot() {
	say "cannot install: $*"
	if [[ ${TIMED_REQUIRE_PEERS:-} == 1 ]]; then
		exit 1
	fi
	say "tests that need these peers will be skipped"
	exit 0
}

command -v apt-get >/dev/null || cannot "no apt-get (not Debian)"
sudo=()
if [[ $(id -u) != 0 ]]; then
	command -v sudo >/dev/null || cannot "not root and no sudo"
	sudo=(sudo -n)
	"${sudo[@]}" true 2>/dev/null || cannot "not root and sudo needs a password"
fi

# Installing a daemon must never start it: a chronyd started by its package
# would discipline this machine's clock. policy-rc.d exiting 101 tells
# invoke-rc.d not to start services. Put it in place BEFORE installing.
policy=/usr/sbin/policy-rc.d
if [[ ! -x $policy ]] || ! grep -q 'exit 101' "$policy"; then
	say "writing $policy (exit 101: packages must not start services)"
	printf '#!/bin/sh\n# Written by timed scripts/install-peers.sh: never start services on install.\nexit 101\n' |
		"${sudo[@]}" tee "$policy" >/dev/null
	"${sudo[@]}" chmod 0755 "$policy"
fi

export DEBIAN_FRONTEND=noninteractive
apt=("${sudo[@]}" apt-get -q -o DPkg::Lock::Timeout=300)
"${apt[@]}" update -qq

if ((${#missing_pkgs[@]})); then
	say "installing ${missing_pkgs[*]}"
	"${apt[@]}" install -y -qq --no-install-recommends "${missing_pkgs[@]}" >/dev/null
fi

# If a package started chronyd anyway (a system whose policy-rc.d was
# ignored), stop that one instance: the Debian service's pidfile names it.
# Test instances use pidfiles of their own and are left alone.
for pidfile in /run/chrony/chronyd.pid /var/run/chrony/chronyd.pid; do
	[[ -r $pidfile ]] || continue
	pid=$(cat "$pidfile")
	if [[ $pid =~ ^[0-9]+$ ]] && [[ $(cat "/proc/$pid/comm" 2>/dev/null) == chronyd ]]; then
		say "the chrony package started chronyd (pid $pid); stopping it so it cannot touch the clock"
		"${sudo[@]}" kill "$pid" || true
	fi
done

if ((${#missing_extract[@]})); then
	tmp=$(mktemp -d)
	chmod 0755 "$tmp" # apt downloads as _apt
	trap 'rm -rf "$tmp"' EXIT
	(cd "$tmp" && "${apt[@]}" download "${missing_extract[@]}" >/dev/null)
	chmod -R a+r "$tmp"
	for entry in "${extracted[@]}"; do
		pkg=${entry%%:*} file=${entry#*:}
		dir=$peers/${file%%/*}
		for deb in "$tmp/${pkg}"_*.deb; do
			[[ -e $deb ]] || continue
			say "extracting $pkg into $dir"
			mkdir -p "$dir"
			dpkg-deb -x "$deb" "$dir"
		done
	done
fi

# Check again: anything still missing is an error.
rc=0
for entry in "${packages[@]}"; do
	file=${entry#*:}
	[[ -e $file ]] || { say "still missing after install: $file"; rc=1; }
done
for entry in "${extracted[@]}"; do
	file=${entry#*:}
	[[ -e $peers/$file ]] || { say "still missing after install: $peers/$file"; rc=1; }
done
exit $rc
