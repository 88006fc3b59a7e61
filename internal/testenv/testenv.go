// Package testenv decides what a test does when a peer program or a
// privilege it needs is missing: it skips on a developer's machine and fails
// in CI, where TIMED_REQUIRE_PEERS=1 says every peer must be there.
package testenv

import (
	"os"
	"os/exec"
	"testing"
)

// PeersRequired reports whether missing peers must fail tests
// (TIMED_REQUIRE_PEERS=1, as .ci/run sets it).
func PeersRequired() bool { return os.Getenv("TIMED_REQUIRE_PEERS") == "1" }

// Missing skips the test, or fails it when peers are required, saying what
// is missing.
func Missing(t testing.TB, what string) {
	t.Helper()
	if PeersRequired() {
		t.Fatalf("required by TIMED_REQUIRE_PEERS=1 but missing: %s", what)
	}
	t.Skipf("missing: %s (set TIMED_REQUIRE_PEERS=1 to make this a failure)", what)
}

// LookPath finds a peer program on PATH or at one of the given paths and
// returns its path; when it is nowhere, it calls Missing.
func LookPath(t testing.TB, name string, alternatives ...string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	for _, p := range alternatives {
		if st, err := os.Stat(p); err == nil && !st.IsDir() && st.Mode()&0o111 != 0 {
			return p
		}
	}
	Missing(t, "program "+name+" (make test installs it)")
	return ""
}

// RequireRoot calls Missing unless the test runs as root (needed for
// network namespaces).
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		Missing(t, "root (network namespaces need it)")
	}
}
