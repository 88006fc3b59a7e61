//go:build !linux

package peers

import (
	"os/exec"
	"testing"

	"github.com/timed-project/timed/internal/testenv"
)

// Start runs argv without CAP_SYS_TIME; see the Linux version. Elsewhere
// the capability check cannot be made, so it reports Linux as missing.
func Start(t testing.TB, opts ProcOptions, argv ...string) *Proc {
	t.Helper()
	testenv.Missing(t, "Linux (peers run under capsh and are checked in /proc)")
	return nil
}

func killWithParent(*exec.Cmd) {}
