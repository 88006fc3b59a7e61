package netstamp

import (
	"net/netip"
	"time"
)

// Message is one datagram of a batch read or write on a BatchConn.
type Message struct {
	// Buf holds the datagram: on read, the buffer to fill (its length is
	// the most that is read); on write, the payload.
	Buf []byte
	// N is the length of the datagram read.
	N int
	// Addr is the peer: the sender on read, the destination on write.
	Addr netip.AddrPort
	// Local is the address the datagram was sent to (on read) or is to be
	// sent from (on write; the zero Addr lets the kernel choose), and
	// IfIndex the interface it came in on: a reply sent with the Local and
	// IfIndex of its request leaves from the address the request came to.
	Local   netip.Addr
	IfIndex int
	// RxTime is the kernel's receive timestamp (system clock), or zero if
	// the kernel gave none.
	RxTime time.Time
	// Truncated reports that the datagram was longer than Buf.
	Truncated bool
	// StampTx asks for the kernel's transmit timestamp of this datagram
	// (on write). It is delivered later to the connection's TxStamp
	// callback with TxID, which WriteBatch sets.
	StampTx bool
	TxID    uint32
}

// BatchOptions configures a BatchConn.
type BatchOptions struct {
	// ReusePort lets several sockets bind the same address and port
	// (SO_REUSEPORT); the kernel spreads datagrams over them by a hash of
	// the peer's address and port.
	ReusePort bool
	// ReceiveBuffer is the socket's receive buffer in bytes (SO_RCVBUF;
	// the kernel caps it at net.core.rmem_max); 0 means 4 MiB, to ride out
	// bursts. A server slower per request may want less: what the buffer
	// holds is answered that much later.
	ReceiveBuffer int
	// TxStamp receives the kernel's transmit timestamps of the datagrams
	// written with StampTx, with their TxID. It is called from ReadBatch and
	// DrainTxStamps, on the caller's goroutine.
	TxStamp func(id uint32, sys time.Time)
}
