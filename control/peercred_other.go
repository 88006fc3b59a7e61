//go:build !linux && !freebsd && !darwin

package control

import (
	"errors"
	"net"
)

// peerCredentials is not implemented here, so changing commands are
// refused.
func peerCredentials(net.Conn) (*peerCred, error) {
	return nil, errors.New("peer credentials are not supported on this OS")
}
