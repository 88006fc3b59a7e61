//go:build !linux

package daemon

// dropBindCapability does nothing: Linux capabilities are Linux's.
func dropBindCapability() (had bool, err error) { return false, nil }

// dropNetAdminCapability does nothing: Linux capabilities are Linux's.
func dropNetAdminCapability() (had bool, err error) { return false, nil }

// limitCapabilities does nothing: Linux capabilities are Linux's.
func limitCapabilities(map[capability]string) (kept []capability, bounding bool, err error) {
	return nil, false, nil
}
