package control

import (
	"fmt"
	"net"

	"golang.org/x/sys/unix"
)

// peerCredentials asks the kernel who is at the other end of a Unix socket
// (SO_PEERCRED: the peer's uid, primary gid and pid when it connected).
func peerCredentials(conn net.Conn) (*peerCred, error) {
	var cred *unix.Ucred
	err := onSocketFD(conn, func(fd int) (err error) {
		cred, err = unix.GetsockoptUcred(fd, unix.SOL_SOCKET, unix.SO_PEERCRED)
		if err != nil {
			return fmt.Errorf("peer credentials: SO_PEERCRED: %w", err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &peerCred{UID: cred.Uid, GID: cred.Gid, PID: cred.Pid}, nil
}
