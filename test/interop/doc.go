// Package interop holds timed's end-to-end acceptance tests: they build the
// real timed and timectl binaries and run them against real peers (chronyd,
// ntpsec's ntpd) on loopback and in network namespaces the tests create and
// remove, and against a misbehaving UDP responder of their own.
//
// The tests need Linux, root (for namespaces) and the peer programs that
// scripts/install-peers.sh installs. Where something is missing they skip,
// except with TIMED_REQUIRE_PEERS=1 (as in CI), where they fail. Peer
// daemons and timed run without CAP_SYS_TIME (capsh --drop=cap_sys_time)
// and timed uses its virtual clock: the machine's clock is never changed.
//
// TIMED_WRITE_PERF=1 makes the footprint test write its table into
// docs/PERFORMANCE.md (between the footprint markers).
package interop
