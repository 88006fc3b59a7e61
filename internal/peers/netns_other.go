//go:build !linux

package peers

import (
	"testing"

	"github.com/timed-project/timed/internal/testenv"
)

// NewNetns creates a network namespace; see the Linux version. Elsewhere
// it reports Linux as missing.
func NewNetns(t testing.TB) string {
	t.Helper()
	testenv.Missing(t, "Linux (network namespaces)")
	return ""
}
