//go:build !linux && !freebsd && !darwin

package control

import (
	"errors"
	"net"
)

// peerCredentials: this OS offers no way to learn a Unix socket peer's
// credentials that timed uses, so changing commands are refused here
// (read-only queries still work).
func peerCredentials(net.Conn) (*peerCred, error) {
	return nil, errors.New("peer credentials are not supported on this OS")
}
