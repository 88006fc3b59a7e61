//go:build !linux

package netstamp

import (
	"fmt"
	"net"
	"net/netip"
	"time"
)

// BatchConn is a UDP socket for servers. On this operating system it reads
// and writes one datagram per system call, reads receive times in user
// space, does not report the destination address and gives no transmit
// timestamps.
type BatchConn struct {
	uc    *net.UDPConn
	local netip.AddrPort
}

// ReusePort reports whether several BatchConns can share an address and
// port: not here.
const ReusePort = false

// ListenBatch opens a UDP socket bound to laddr. ReusePort is not
// supported here: a second socket on the same address fails to bind.
func ListenBatch(laddr netip.AddrPort, batch int, opts BatchOptions) (*BatchConn, error) {
	if batch < 1 {
		return nil, fmt.Errorf("netstamp: batch size %d, want at least 1", batch)
	}
	network := "udp4"
	if laddr.Addr().Unmap().Is6() {
		network = "udp6"
	}
	uc, err := net.ListenUDP(network, net.UDPAddrFromAddrPort(laddr))
	if err != nil {
		return nil, fmt.Errorf("netstamp: listen %s: %w", laddr, err)
	}
	return &BatchConn{uc: uc, local: uc.LocalAddr().(*net.UDPAddr).AddrPort()}, nil
}

// LocalAddr is the address and port the socket is bound to.
func (c *BatchConn) LocalAddr() netip.AddrPort { return c.local }

// Close closes the socket; a blocked ReadBatch returns net.ErrClosed.
func (c *BatchConn) Close() error { return c.uc.Close() }

// ReadBatch reads one datagram into msgs[0].
func (c *BatchConn) ReadBatch(msgs []Message) (int, error) {
	if len(msgs) == 0 {
		return 0, nil
	}
	m := &msgs[0]
	n, flags, from, err := readMsg(c.uc, m.Buf)
	if err != nil {
		return 0, err
	}
	m.N, m.Addr, m.RxTime, m.Truncated = n, from, time.Now(), flags
	m.Local, m.IfIndex = netip.Addr{}, 0
	return 1, nil
}

func readMsg(uc *net.UDPConn, b []byte) (int, bool, netip.AddrPort, error) {
	n, _, flags, from, err := uc.ReadMsgUDPAddrPort(b, nil)
	return n, flags&msgTrunc != 0, from, err
}

// WriteBatch sends msgs one by one.
func (c *BatchConn) WriteBatch(msgs []Message) (sent, failed int, err error) {
	for i := range msgs {
		if _, werr := c.uc.WriteToUDPAddrPort(msgs[i].Buf, msgs[i].Addr); werr != nil {
			failed++
			err = fmt.Errorf("netstamp: send to %s: %w", msgs[i].Addr, werr)
			continue
		}
		sent++
	}
	return sent, failed, err
}

// DrainTxStamps does nothing: there are no transmit timestamps here.
func (c *BatchConn) DrainTxStamps() {}
