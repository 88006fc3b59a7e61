//go:build !linux && !windows && !plan9 && !js && !wasip1

package netstamp

import "syscall"

const msgTrunc = syscall.MSG_TRUNC
