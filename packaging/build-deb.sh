#!/usr/bin/env bash
# build-deb.sh: builds the timed .deb from a staged tree with dpkg-deb,
# offline (GOPROXY=off: the module cache must hold the dependencies).
#
# Usage: packaging/build-deb.sh OUTDIR [VERSION]
#   OUTDIR   where timed_VERSION_ARCH.deb is written
#   VERSION  the package version (default: 0.0~git<date>.<commit>)
# GOARCH (default: the Go toolchain's) picks the architecture.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
out=${1:?usage: build-deb.sh OUTDIR [VERSION]}
version=${2:-}
go=${GO:-go}
if [[ -z $version ]]; then
	commit=$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)
	date=$(git -C "$root" log -1 --format=%cd --date=format:%Y%m%d 2>/dev/null || date -u +%Y%m%d)
	version="0.0~git$date.$commit"
fi
goarch=${GOARCH:-$($go env GOARCH)}
case $goarch in
amd64 | arm64 | armhf | i386 | riscv64 | ppc64el | s390x) arch=$goarch ;;
arm) arch=armhf ;;
386) arch=i386 ;;
*) echo "build-deb: no Debian architecture for GOARCH=$goarch" >&2; exit 1 ;;
esac

mkdir -p "$out"
stage=$(mktemp -d)
chmod 0755 "$stage"
trap 'rm -rf "$stage"' EXIT
pkg=$root/packaging

# Static binaries without cgo: timed must be able to drop capabilities on
# every thread (see Makefile, build).
CGO_ENABLED=0 GOOS=linux GOARCH=$goarch GOPROXY=off GOFLAGS=-mod=mod \
	$go build -C "$root" -trimpath -ldflags "-s -w -X main.version=$version" \
	-o "$stage/usr/bin/" ./cmd/timed ./cmd/timectl

install -D -m 0644 "$pkg/systemd/timed.service" "$stage/usr/lib/systemd/system/timed.service"
install -D -m 0644 "$pkg/systemd/timed-wait.service" "$stage/usr/lib/systemd/system/timed-wait.service"
install -D -m 0644 "$pkg/systemd/timed-sock@.socket" "$stage/usr/lib/systemd/system/timed-sock@.socket"
install -D -m 0644 "$pkg/sysusers.d/timed.conf" "$stage/usr/lib/sysusers.d/timed.conf"
install -D -m 0644 "$pkg/tmpfiles.d/timed.conf" "$stage/usr/lib/tmpfiles.d/timed.conf"
install -D -m 0644 "$pkg/udev/60-timed.rules" "$stage/usr/lib/udev/rules.d/60-timed.rules"
install -D -m 0644 "$pkg/apparmor/usr.bin.timed" "$stage/etc/apparmor.d/usr.bin.timed"
# The default configuration is the file built into timed, byte for byte.
install -D -m 0644 "$root/config/default.yaml" "$stage/etc/timed/timed.yaml"
install -D -m 0644 "$root/docs/PACKAGING.md" "$stage/usr/share/doc/timed/PACKAGING.md"
install -D -m 0644 "$root/docs/CONFIG.md" "$stage/usr/share/doc/timed/CONFIG.md"
install -D -m 0644 "$pkg/systemd/timed.service.d/ptp-ethernet.conf" \
	"$stage/usr/share/doc/timed/examples/timed.service.d/ptp-ethernet.conf"
# Man pages, when the project can make them.
# Debian's changelog and copyright. The binaries are static and carry the
# Go modules they link: the copyright file lists each with its licence.
doc=$stage/usr/share/doc/timed
{
	printf 'timed (%s) unstable; urgency=medium\n\n' "$version"
	printf '  * Built from the timed repository at %s.\n\n' "$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo 'an unknown commit')"
	printf ' -- timed developers <timed@timed-project.invalid>  %s\n' "$(date -u -R -d "@$(git -C "$root" log -1 --format=%ct 2>/dev/null || date +%s)")"
} | gzip -9n >"$doc/changelog.gz"
chmod 0644 "$doc/changelog.gz"
"$pkg/debian/copyright.sh" "$root" "$go" >"$doc/copyright"
chmod 0644 "$doc/copyright"
# Go programs are static by design; say so to lintian.
install -D -m 0644 "$pkg/debian/lintian-overrides" "$stage/usr/share/lintian/overrides/timed"

# Man pages, generated from the commands (make man), compressed as Debian
# wants them.
mandir=$(mktemp -d)
trap 'rm -rf "$stage" "$mandir"' EXIT
make -C "$root" -s --no-print-directory man MANDIR="$mandir" >&2
for page in "$mandir"/man*/*; do
	sect=$(basename "$(dirname "$page")")
	install -d -m 0755 "$stage/usr/share/man/$sect"
	gzip -9n <"$page" >"$stage/usr/share/man/$sect/$(basename "$page").gz"
	chmod 0644 "$stage/usr/share/man/$sect/$(basename "$page").gz"
done

install -d -m 0755 "$stage/DEBIAN"
for f in postinst prerm postrm; do
	install -m 0755 "$pkg/debian/$f" "$stage/DEBIAN/$f"
done
printf '%s\n' /etc/timed/timed.yaml /etc/apparmor.d/usr.bin.timed >"$stage/DEBIAN/conffiles"
(cd "$stage" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | sort -z | xargs -0 md5sum) >"$stage/DEBIAN/md5sums"
chmod 0644 "$stage/DEBIAN/md5sums"
size=$(du -sk --exclude=DEBIAN "$stage" | cut -f1)
sed -e "s/@VERSION@/$version/" -e "s/@ARCH@/$arch/" -e "s/@SIZE@/$size/" \
	"$pkg/debian/control.in" >"$stage/DEBIAN/control"

deb=$out/timed_${version}_$arch.deb
dpkg-deb --root-owner-group -Zxz --build "$stage" "$deb" >/dev/null
echo "$deb"
