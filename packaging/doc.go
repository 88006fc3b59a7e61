// Package packaging holds timed's packaging: the systemd units, the
// sysusers.d and tmpfiles.d entries, the AppArmor profile and the Debian
// package's scripts (build-deb.sh, make deb). It has no Go code; its tests
// check those files with the tools that read them (systemd-analyze,
// apparmor_parser, systemd-sysusers, systemd-tmpfiles, dpkg-deb).
// docs/PACKAGING.md describes them.
package packaging
