//go:build !linux || !(amd64 || arm64)

package daemon

import (
	"fmt"
	"runtime"
)

// seccompSupported tells whether this build can install the filter.
const seccompSupported = false

// installSeccomp fails: the filter exists for Linux on amd64 and arm64.
func installSeccomp() (int, error) {
	return 0, fmt.Errorf("seccomp: no filter for %s/%s (Linux amd64 and arm64 only)", runtime.GOOS, runtime.GOARCH)
}
