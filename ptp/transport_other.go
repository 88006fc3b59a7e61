//go:build !linux

package ptp

import (
	"fmt"
	"runtime"
)

func openTransport(cfg TransportConfig) (Transport, error) {
	return nil, fmt.Errorf("PTP transports are not supported on %s", runtime.GOOS)
}
