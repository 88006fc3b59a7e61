package server

import (
	"encoding/binary"
	"net/netip"
	"time"

	"go.uber.org/zap"

	"github.com/timed-project/timed/internal/netstamp"
	"github.com/timed-project/timed/ntp"
	"github.com/timed-project/timed/ntp/clientlog"
)

// worker serves one socket.
type worker struct {
	s    *Server
	conn batchConn
	c    counters

	in      []netstamp.Message
	out     []netstamp.Message
	outBuf  []byte
	ntsBuf  []byte // NTS replies' room, batch*maxRequest, made at the first NTS request
	answers int    // time responses in out (the rest are kisses)
	basic   []int  // indexes into out of basic responses (transmit patched at send)
	stamped []int  // indexes into out of responses whose send time is captured
	pending [pendingSize]pendingStamp

	lastRefresh time.Time
	lastSendErr time.Time
}

// batchConn is the worker's socket (a *netstamp.BatchConn; tests use
// another).
type batchConn interface {
	ReadBatch(msgs []netstamp.Message) (int, error)
	WriteBatch(msgs []netstamp.Message) (sent, failed int, err error)
}

// pendingStamp is a reply whose kernel transmit timestamp is awaited.
type pendingStamp struct {
	id    uint32
	valid bool
	addr  netip.Addr
	rx    ntp.Timestamp
}

// pendingSize bounds the replies awaiting a transmit timestamp; older ones
// are forgotten (their clients get the user-space send time).
const pendingSize = 256

func (w *worker) init() {
	w.in = make([]netstamp.Message, batch)
	for i := range w.in {
		w.in[i].Buf = make([]byte, maxRequest)
	}
	w.out = make([]netstamp.Message, 0, batch)
	w.outBuf = make([]byte, batch*ntp.HeaderLen)
	w.basic = make([]int, 0, batch)
	w.stamped = make([]int, 0, batch)
}

func (w *worker) run() {
	for {
		n, err := w.conn.ReadBatch(w.in)
		if err != nil {
			if isClosed(err) {
				return
			}
			w.s.log.Warn("NTP server: receive failed", zap.Error(err))
			time.Sleep(10 * time.Millisecond)
			continue
		}
		w.serve(w.in[:n])
	}
}

// serve answers one batch of requests.
func (w *worker) serve(in []netstamp.Message) {
	s := w.s
	set := s.set.Load()
	now := s.tb.Now()
	if now.Sub(w.lastRefresh) >= time.Second || now.Before(w.lastRefresh) {
		w.lastRefresh = now
		if set.LocalStratum > 0 {
			s.refresh(now)
		}
	}
	wire := s.wire.Load()
	mono := s.monotonic()
	w.out, w.basic, w.stamped, w.answers = w.out[:0], w.basic[:0], w.stamped[:0], 0
	w.c.received.Add(uint64(len(in)))
	for i := range in {
		m := &in[i]
		if m.Truncated {
			w.c.drop(DropOversized)
			continue
		}
		req := m.Buf[:m.N]
		if reason, ok := checkRequest(req); !ok {
			w.c.drop(reason)
			continue
		}
		from := m.Addr.Addr().Unmap()
		if !set.permitted(from) {
			w.c.drop(DropDenied)
			// Kisses to denied clients obey the rate limit too, so that
			// the server does not reflect a flood of forged requests.
			if set.DenyKiss {
				if v, _, _ := set.clients.Request(from, mono, 0, 0); v != clientlog.Drop {
					w.kiss(m, req, codeDENY)
				}
			}
			continue
		}
		rxTime := m.RxTime
		if rxTime.IsZero() {
			w.c.userRx.Add(1)
			rxTime = time.Now()
		}
		rx := receiveStamp(s.tb.FromSystem(rxTime))
		v, prevRx, prevTx := set.clients.Request(from, mono, uint64(rx), 0)
		switch v {
		case clientlog.Kiss:
			w.c.drop(DropRateLimited)
			w.kiss(m, req, codeRATE)
			continue
		case clientlog.Drop:
			w.c.drop(DropRateLimited)
			continue
		}
		if set.NTS != nil && len(req) > ntp.HeaderLen {
			if done := w.serveNTS(m, req, set.NTS, wire, rx, now); done {
				continue
			}
		}
		out := w.next(m)
		w.answers++
		var xleaveTx ntp.Timestamp
		if set.Interleaved && prevTx != 0 && binary.BigEndian.Uint64(req[offOrigin:]) == prevRx {
			xleaveTx = ntp.Timestamp(prevTx)
			w.c.interleaved.Add(1)
		}
		fillResponse(out.Buf, req, wire, rx, now, xleaveTx)
		if xleaveTx == 0 {
			w.basic = append(w.basic, len(w.out)-1)
		}
		if set.Interleaved && wantsInterleaved(req) {
			out.StampTx = true
			w.stamped = append(w.stamped, len(w.out)-1)
			set.clients.MarkInterleaved(from)
		}
	}
	w.send(set.clients)
}

// next appends a reply to the request m and returns it.
func (w *worker) next(m *netstamp.Message) *netstamp.Message {
	k := len(w.out)
	w.out = append(w.out, netstamp.Message{
		Buf:  w.outBuf[k*ntp.HeaderLen : (k+1)*ntp.HeaderLen],
		Addr: m.Addr, Local: m.Local, IfIndex: m.IfIndex,
	})
	return &w.out[k]
}

func (w *worker) kiss(m *netstamp.Message, req []byte, code uint32) {
	out := w.next(m)
	fillKiss(out.Buf, req, code)
	if code == codeRATE {
		w.c.kissRate.Add(1)
	} else {
		w.c.kissDeny.Add(1)
	}
}

// send stamps the basic replies with the transmit time and sends the batch.
func (w *worker) send(clients *clientlog.Log) {
	if len(w.out) == 0 {
		return
	}
	s := w.s
	tx := transmitStamp(s.tb.Now())
	for _, k := range w.basic {
		patchTransmit(w.out[k].Buf, tx)
	}
	for _, k := range w.stamped {
		// Until the kernel's timestamp arrives, an interleaved client gets
		// this one.
		clients.UpdateTx(w.out[k].Addr.Addr().Unmap(), rxOf(w.out[k].Buf), uint64(tx))
	}
	w.c.answered.Add(uint64(w.answers))
	_, failed, err := w.conn.WriteBatch(w.out)
	for range failed {
		w.c.drop(DropSendFailed)
	}
	if err != nil && time.Since(w.lastSendErr) > time.Minute {
		w.lastSendErr = time.Now()
		s.log.Warn("NTP server: send failed", zap.Error(err))
	}
	for _, k := range w.stamped {
		o := &w.out[k]
		w.pending[o.TxID%pendingSize] = pendingStamp{id: o.TxID, valid: true, addr: o.Addr.Addr().Unmap(), rx: ntp.Timestamp(rxOf(o.Buf))}
	}
}

// rxOf reads the receive timestamp of a reply.
func rxOf(b []byte) uint64 { return binary.BigEndian.Uint64(b[offReceive:]) }

// txStamp is the socket's callback for the kernel's transmit timestamps of
// the replies sent to interleaved clients.
func (w *worker) txStamp(id uint32, sys time.Time) {
	p := &w.pending[id%pendingSize]
	if !p.valid || p.id != id {
		return
	}
	p.valid = false
	w.s.set.Load().clients.UpdateTx(p.addr, uint64(p.rx), uint64(transmitStamp(w.s.tb.FromSystem(sys))))
	w.c.txStamps.Add(1)
}
