//go:build !linux

package phc

import "fmt"

// FindByInterface is only available on Linux.
func FindByInterface(ifname string) (string, error) {
	return "", fmt.Errorf("phc: %s: PTP hardware clocks are only supported on Linux", ifname)
}

// Open is only available on Linux.
func Open(path string) (Device, error) {
	return nil, fmt.Errorf("phc: %s: PTP hardware clocks are only supported on Linux", path)
}
