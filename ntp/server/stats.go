package server

import (
	"sync/atomic"

	"github.com/timed-project/timed/ntp/clientlog"
)

// dropReasons lists the reasons a datagram goes unanswered, in the order
// Stats reports them.
var dropReasons = [...]string{DropShort, DropOversized, DropVersion, DropMode, DropDenied, DropRateLimited, DropSendFailed,
	DropNTSMalformed, DropNTSCookie, DropNTSAuth, DropNTSResponse}

// counters are one worker's; only it writes them, Stats reads them.
type counters struct {
	received, answered, interleaved atomic.Uint64
	kissRate, kissDeny              atomic.Uint64
	userRx, txStamps                atomic.Uint64
	nts, ntsNAK                     atomic.Uint64
	dropped                         [len(dropReasons)]atomic.Uint64
	_                               [64]byte // keep workers' counters on separate cache lines
}

func (c *counters) drop(reason string) {
	for i, r := range dropReasons {
		if r == reason {
			c.dropped[i].Add(1)
			return
		}
	}
}

// Stats are the server's counters since it started.
type Stats struct {
	// Received counts datagrams read; Answered the time responses sent
	// (Interleaved of them in interleaved mode).
	Received, Answered, Interleaved uint64
	// KissRate and KissDeny count the kiss-of-death replies sent.
	KissRate, KissDeny uint64
	// Dropped counts datagrams not answered with time, by reason (a
	// rate-limited or denied request answered with a kiss is counted both
	// here and as a kiss).
	Dropped map[string]uint64
	// UserRxStamps counts requests the kernel gave no receive timestamp
	// for (the time was read in user space); TxStamps the kernel transmit
	// timestamps captured for interleaved clients.
	UserRxStamps, TxStamps uint64
	// NTS counts the authenticated NTS responses sent (of Answered);
	// NTSNAK the NTS NAKs (NTSN kisses) sent to requests whose cookie
	// could not be used or that failed authentication (counted in Dropped
	// too).
	NTS, NTSNAK uint64
	// Workers is the number of sockets (and goroutines) serving.
	Workers int
	// Clients is the number of clients in the table, of ClientTableSize.
	Clients, ClientTableSize int
}

// Stats sums the workers' counters.
func (s *Server) Stats() Stats {
	cl := s.set.Load().clients
	st := Stats{Dropped: map[string]uint64{}, Workers: len(s.workers), Clients: cl.Len(), ClientTableSize: cl.Size()}
	for _, w := range s.workers {
		c := &w.c
		st.Received += c.received.Load()
		st.Answered += c.answered.Load()
		st.Interleaved += c.interleaved.Load()
		st.KissRate += c.kissRate.Load()
		st.KissDeny += c.kissDeny.Load()
		st.UserRxStamps += c.userRx.Load()
		st.TxStamps += c.txStamps.Load()
		st.NTS += c.nts.Load()
		st.NTSNAK += c.ntsNAK.Load()
		for i, r := range dropReasons {
			st.Dropped[r] += c.dropped[i].Load()
		}
	}
	return st
}

// Clients returns up to n clients, busiest first.
func (s *Server) Clients(n int) []clientlog.Client {
	return s.set.Load().clients.Top(n, s.monotonic())
}
