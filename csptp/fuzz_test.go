package csptp

import (
	"testing"

	"github.com/facebook/time/ptp/protocol"
)

func seeds(f *testing.F) {
	for _, r := range []Request{
		{Protocol: SPTP, SequenceID: 1, Source: clientPort},
		{Protocol: CSPTP, SequenceID: 2, Source: clientPort, Flags: 1},
		{Protocol: SPTP, SequenceID: 3, Padding: 64},
	} {
		b, err := r.AppendBinary(nil)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	req := Request{Protocol: SPTP, SequenceID: 4}
	ts := protocol.Timestamp{Nanoseconds: 5}
	sync, _ := appendSPTPSync(nil, &req, serverPort, ts)
	announce, _ := appendSPTPAnnounce(nil, &req, serverPort, ts, defaultQuality())
	resp, _ := appendCSPTPResponse(nil, &req, serverPort, ts, ts, defaultQuality())
	f.Add(sync)
	f.Add(announce)
	f.Add(resp)
	f.Add([]byte{})
}

// FuzzParseRequest: no input makes ParseRequest panic, and what it accepts
// encodes back into a request it accepts again with the same fields.
func FuzzParseRequest(f *testing.F) {
	seeds(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := ParseRequest(b)
		if err != nil {
			return
		}
		r.Padding = 0 // other TLVs are not kept
		out, err := r.AppendBinary(nil)
		if err != nil {
			t.Fatalf("accepted %+v does not encode: %v", r, err)
		}
		again, err := ParseRequest(out)
		if err != nil {
			t.Fatalf("re-encoded request rejected: %v", err)
		}
		if again.Protocol != r.Protocol || again.SequenceID != r.SequenceID || again.Source != r.Source || again.Flags != r.Flags {
			t.Fatalf("round trip changed %+v into %+v", r, again)
		}
	})
}

// FuzzParseResponse: no input makes ParseResponse panic.
func FuzzParseResponse(f *testing.F) {
	seeds(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := ParseResponse(b)
		if err == nil && r.Protocol != SPTP && r.Protocol != CSPTP {
			t.Fatalf("accepted a response of protocol %s", r.Protocol)
		}
	})
}
