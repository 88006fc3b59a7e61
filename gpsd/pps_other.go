//go:build !linux

package gpsd

import "fmt"

// openPPSDevice fails: PPS devices are read through the Linux PPS API only.
func openPPSDevice(path string, clearEdge bool) (ppsDevice, error) {
	return nil, fmt.Errorf("pps: %s: PPS devices are supported on Linux only", path)
}
