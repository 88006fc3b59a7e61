package server

import (
	"errors"
	"time"

	"github.com/timed-project/timed/internal/netstamp"
	"github.com/timed-project/timed/ntp"
	"github.com/timed-project/timed/nts"
)

// NTS (RFC 8915) in the worker. A request with extension fields that carry
// an NTS unique identifier is read with nts.ReadRequest; one without (other
// extension fields, a legacy MAC) is answered as plain NTP, as it is with
// NTS off. An authenticated request gets a basic-mode response (NTS
// responses are never interleaved for now) with new cookies, never longer
// than the request; one whose cookie cannot be used or that fails
// authentication gets an NTS NAK (an NTSN kiss echoing the unique
// identifier); other failures are dropped and counted.
//
// Replays: like chronyd, the server keeps no per-cookie state. Cookies are
// stateless, a replayed request only earns its sender the response the
// original client already got (the client drops it: its unique identifier
// is spent), and the rate limit bounds what a replayer can draw.

// Drop reasons of NTS requests.
const (
	DropNTSMalformed = "NTS: malformed"
	DropNTSCookie    = "NTS: bad cookie"
	DropNTSAuth      = "NTS: authentication failed"
	DropNTSResponse  = "NTS: response failed"
)

// codeNTSN is the kiss code of an NTS NAK.
const codeNTSN = 'N'<<24 | 'T'<<16 | 'S'<<8 | 'N'

// serveNTS answers an NTS request and reports whether it is done with it;
// false means the request carries no NTS unique identifier and is answered
// as plain NTP.
func (w *worker) serveNTS(m *netstamp.Message, req []byte, ring *nts.KeyRing, wire *wire, rx ntp.Timestamp, now time.Time) bool {
	r, err := nts.ReadRequest(req, ring)
	if r.UniqueID == nil {
		if err == nil || errors.Is(err, nts.ErrNoUniqueID) || errors.Is(err, nts.ErrMalformed) {
			return false
		}
	}
	if err != nil {
		switch {
		case nts.WantsNAK(err):
			if errors.Is(err, nts.ErrAuth) {
				w.c.drop(DropNTSAuth)
			} else {
				w.c.drop(DropNTSCookie)
			}
			out := w.nextNTS(m)
			fillKiss(out.Buf, req, codeNTSN)
			out.Buf = nts.AppendNAK(out.Buf, r.UniqueID)
			w.c.ntsNAK.Add(1)
		default:
			w.c.drop(DropNTSMalformed)
		}
		return true
	}
	out := w.nextNTS(m)
	fillResponse(out.Buf, req, wire, rx, now, 0)
	// The authenticator covers the transmit timestamp: it is set now,
	// not patched at send time as for plain replies.
	patchTransmit(out.Buf, transmitStamp(w.s.tb.Now()))
	resp, err := r.AppendResponse(out.Buf, ring)
	if err != nil || len(resp) > len(req) {
		// Never amplify: AppendResponse sizes the response to the
		// request, and this guards that promise.
		w.out = w.out[:len(w.out)-1]
		w.c.drop(DropNTSResponse)
		return true
	}
	out.Buf = resp
	w.answers++
	w.c.nts.Add(1)
	return true
}

// nextNTS appends a reply to the request m with room for an NTS response
// (as long as the request) and returns it with its 48-byte header.
func (w *worker) nextNTS(m *netstamp.Message) *netstamp.Message {
	if w.ntsBuf == nil {
		w.ntsBuf = make([]byte, batch*maxRequest)
	}
	k := len(w.out)
	w.out = append(w.out, netstamp.Message{
		Buf:  w.ntsBuf[k*maxRequest : k*maxRequest+ntp.HeaderLen : (k+1)*maxRequest],
		Addr: m.Addr, Local: m.Local, IfIndex: m.IfIndex,
	})
	return &w.out[k]
}
