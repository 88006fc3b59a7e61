//go:build !linux

package daemon

// dropBindCapability does nothing: Linux capabilities are Linux's.
func dropBindCapability() (had bool, err error) { return false, nil }

// dropNetAdminCapability does nothing: Linux capabilities are Linux's.
func dropNetAdminCapability() (had bool, err error) { return false, nil }
