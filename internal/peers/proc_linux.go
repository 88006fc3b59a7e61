package peers

import (
	"os/exec"
	"syscall"
)

// killWithParent makes the kernel kill the peer if the test binary dies.
func killWithParent(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
