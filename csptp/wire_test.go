package csptp

import (
	"encoding/binary"
	"errors"
	"testing"
	"time"

	"github.com/facebook/time/ptp/protocol"
)

var (
	clientPort = protocol.PortIdentity{ClockIdentity: 0x0011_22ff_fe33_4455, PortNumber: 40000}
	serverPort = protocol.PortIdentity{ClockIdentity: 0x0a0b_0cff_fe0d_0e0f, PortNumber: 1}
)

func TestRequestRoundTrip(t *testing.T) {
	tests := []struct {
		name    string
		req     Request
		wantLen int
	}{
		{"SPTP", Request{Protocol: SPTP, Domain: 0, SequenceID: 7, Source: clientPort}, 44},
		{"SPTP with correction and domain", Request{Protocol: SPTP, Domain: 24, SequenceID: 0xffff, Source: clientPort, Correction: protocol.NewCorrection(1234.5)}, 44},
		{"SPTP padded", Request{Protocol: SPTP, SequenceID: 1, Source: clientPort, Padding: 64}, 108},
		{"CSPTP", Request{Protocol: CSPTP, SequenceID: 9, Source: clientPort}, 52},
		{"CSPTP with flags", Request{Protocol: CSPTP, SequenceID: 9, Source: clientPort, Flags: 3}, 52},
		{"CSPTP padded", Request{Protocol: CSPTP, SequenceID: 9, Source: clientPort, Padding: 14}, 66},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := tt.req.AppendBinary(nil)
			if err != nil {
				t.Fatal(err)
			}
			if len(b) != tt.wantLen {
				t.Errorf("encoded %d octets, want %d", len(b), tt.wantLen)
			}
			got, err := ParseRequest(b)
			if err != nil {
				t.Fatal(err)
			}
			want := tt.req
			want.Length = tt.wantLen
			if got != want {
				t.Errorf("round trip:\n got %+v\nwant %+v", got, want)
			}
			// facebook/time's codec reads the same header.
			var fb protocol.SyncDelayReq
			if err := protocol.FromBytes(b[:44], &fb); err == nil || tt.wantLen != 44 {
				if err == nil && (fb.SequenceID != tt.req.SequenceID || fb.SourcePortIdentity != clientPort) {
					t.Errorf("facebook/time decodes seq %d port %s", fb.SequenceID, fb.SourcePortIdentity)
				}
			} else {
				t.Errorf("facebook/time cannot decode: %v", err)
			}
		})
	}
}

// TestParseSPTPClientRequest decodes a Delay_Req as facebook/time's sptp
// client builds it: with an ALTERNATE_RESPONSE_PORT TLV and the two
// trailing octets of protocol.BytesTo.
func TestParseSPTPClientRequest(t *testing.T) {
	p := &protocol.SyncDelayReq{
		Header: protocol.Header{
			SdoIDAndMsgType:    protocol.NewSdoIDAndMsgType(protocol.MessageDelayReq, 0),
			Version:            protocol.Version,
			SequenceID:         4242,
			MessageLength:      44 + 6,
			FlagField:          protocol.FlagUnicast | protocol.FlagProfileSpecific1,
			SourcePortIdentity: protocol.PortIdentity{PortNumber: 1, ClockIdentity: 5},
			LogMessageInterval: 0x7f,
		},
		TLVs: []protocol.TLV{&protocol.AlternateResponsePortTLV{
			TLVHead: protocol.TLVHead{TLVType: protocol.TLVAlternateResponsePort, LengthField: 2}}},
	}
	b := make([]byte, 64)
	n, err := protocol.BytesTo(p, b)
	if err != nil {
		t.Fatal(err)
	}
	got, err := ParseRequest(b[:n])
	if err != nil {
		t.Fatal(err)
	}
	if got.Protocol != SPTP || got.SequenceID != 4242 || got.Source.PortNumber != 1 || got.Length != 50 {
		t.Errorf("got %+v", got)
	}
}

func TestResponseRoundTrip(t *testing.T) {
	rx := protocol.NewTimestamp(time.Unix(1_700_000_037, 123_456_789))
	tx := protocol.NewTimestamp(time.Unix(1_700_000_037, 123_556_789))
	q := Quality{UTCOffset: 37, UTCOffsetValid: true, Leap61: true, StepsRemoved: 2}
	q.ClockQuality = protocol.ClockQuality{ClockClass: 6, ClockAccuracy: protocol.ClockAccuracyMicrosecond1, OffsetScaledLogVariance: 0x4e5d}
	q.TimeSource = protocol.TimeSourceNTP
	q.TimeTraceable = true
	req := Request{Protocol: SPTP, Domain: 3, SequenceID: 99, Source: clientPort, Correction: protocol.NewCorrection(500)}
	creq := req
	creq.Protocol = CSPTP

	sync, err := appendSPTPSync(nil, &req, serverPort, rx)
	if err != nil {
		t.Fatal(err)
	}
	announce, err := appendSPTPAnnounce(nil, &req, serverPort, tx, q)
	if err != nil {
		t.Fatal(err)
	}
	csptp, err := appendCSPTPResponse(nil, &creq, serverPort, rx, tx, q)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		b       []byte
		wantLen int
		check   func(t *testing.T, r Response)
	}{
		{"SPTP Sync", sync, 44, func(t *testing.T, r Response) {
			if r.Protocol != SPTP || r.Header.MessageType() != protocol.MessageSync || r.Origin != rx ||
				r.Header.FlagField != protocol.FlagUnicast|protocol.FlagTwoStep || r.Header.CorrectionField != 0 {
				t.Errorf("got %+v", r)
			}
		}},
		{"SPTP Announce", announce, 64, func(t *testing.T, r Response) {
			a := r.Announce
			if r.Protocol != SPTP || r.Header.MessageType() != protocol.MessageAnnounce || r.Origin != tx ||
				r.Header.CorrectionField != req.Correction || a.CurrentUTCOffset != 37 || a.StepsRemoved != 2 ||
				a.GrandmasterClockQuality != q.ClockQuality || a.TimeSource != protocol.TimeSourceNTP ||
				a.GrandmasterIdentity != serverPort.ClockIdentity ||
				r.Header.FlagField&protocol.FlagLeap61 == 0 || r.Header.FlagField&protocol.FlagPTPTimescale == 0 {
				t.Errorf("got %+v", r)
			}
			// facebook/time's codec agrees.
			var fb protocol.Announce
			if err := protocol.FromBytes(announce, &fb); err != nil {
				t.Fatal(err)
			}
			if fb.AnnounceBody != a || fb.Header != r.Header {
				t.Errorf("facebook/time decodes\n%+v\nwe decode\n%+v", fb, r)
			}
		}},
		{"CSPTP Sync", csptp, 66, func(t *testing.T, r Response) {
			if r.Protocol != CSPTP || r.Origin != tx || r.RequestReceipt != rx || r.RequestCorrection != req.Correction ||
				r.Header.SdoIDAndMsgType>>4 != csptpMajorSdo {
				t.Errorf("got %+v", r)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if len(tt.b) != tt.wantLen {
				t.Errorf("encoded %d octets, want %d", len(tt.b), tt.wantLen)
			}
			r, err := ParseResponse(tt.b)
			if err != nil {
				t.Fatal(err)
			}
			if r.Header.SequenceID != 99 || r.Header.SourcePortIdentity != serverPort || r.Header.DomainNumber != 3 {
				t.Errorf("header %+v", r.Header)
			}
			tt.check(t, r)
		})
	}
}

// mutate returns a copy of b changed by f.
func mutate(b []byte, f func(b []byte) []byte) []byte {
	return f(append([]byte(nil), b...))
}

func TestParseRejects(t *testing.T) {
	sptp, _ := (&Request{Protocol: SPTP, SequenceID: 1, Source: clientPort}).AppendBinary(nil)
	csptp, _ := (&Request{Protocol: CSPTP, SequenceID: 1, Source: clientPort}).AppendBinary(nil)
	req := Request{Protocol: CSPTP, SequenceID: 1}
	resp, _ := appendCSPTPResponse(nil, &req, serverPort, protocol.Timestamp{}, protocol.Timestamp{}, Quality{})
	setLen := func(n uint16) func([]byte) []byte {
		return func(b []byte) []byte { binary.BigEndian.PutUint16(b[2:], n); return b }
	}
	tests := []struct {
		name     string
		response bool
		b        []byte
		want     error
	}{
		{"empty", false, nil, ErrMalformed},
		{"short header", false, sptp[:20], ErrMalformed},
		{"header only", false, mutate(sptp[:34], setLen(34)), ErrMalformed},
		{"PTP version 1", false, mutate(sptp, func(b []byte) []byte { b[1] = 0x01; return b }), ErrMalformed},
		{"messageLength beyond datagram", false, mutate(sptp, setLen(45)), ErrMalformed},
		{"messageLength below header", false, mutate(sptp, setLen(10)), ErrMalformed},
		{"too long", false, make([]byte, 2000), ErrMalformed},
		{"nanoseconds out of range", false, mutate(sptp, func(b []byte) []byte { binary.BigEndian.PutUint32(b[40:], 1e9); return b }), ErrMalformed},
		{"Delay_Req without SPTP flags", false, mutate(sptp, func(b []byte) []byte { b[6] = 0; return b }), ErrUnexpected},
		{"Sync without request TLV", false, mutate(csptp[:44], setLen(44)), ErrUnexpected},
		{"Announce as request", false, mutate(csptp, func(b []byte) []byte { b[0] = 0x3b; return b }), ErrUnexpected},
		{"Follow_Up", false, mutate(csptp, func(b []byte) []byte { b[0] = 0x08; return b }), ErrUnexpected},
		{"TLV overruns", false, mutate(csptp, func(b []byte) []byte { binary.BigEndian.PutUint16(b[46:], 8); return b }), ErrMalformed},
		{"odd TLV length", false, mutate(csptp, func(b []byte) []byte { binary.BigEndian.PutUint16(b[46:], 3); return b }), ErrMalformed},
		{"short request TLV", false, mutate(csptp, func(b []byte) []byte { binary.BigEndian.PutUint16(b[46:], 2); return setLen(50)(b[:50]) }), ErrMalformed},
		{"stray octets", false, mutate(csptp, func(b []byte) []byte { return setLen(54)(append(b, 0, 0)) }), ErrMalformed},
		{"response: empty", true, nil, ErrMalformed},
		{"response: Delay_Req", true, sptp, ErrUnexpected},
		{"response: short Announce", true, mutate(resp, func(b []byte) []byte { b[0] = 0x0b; return b }), ErrMalformed},
		{"response: short response TLV", true, mutate(resp, func(b []byte) []byte { binary.BigEndian.PutUint16(b[46:], 16); return setLen(64)(b[:64]) }), ErrMalformed},
		{"response: TLV nanoseconds", true, mutate(resp, func(b []byte) []byte { binary.BigEndian.PutUint32(b[54:], 2e9); return b }), ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var err error
			if tt.response {
				_, err = ParseResponse(tt.b)
			} else {
				_, err = ParseRequest(tt.b)
			}
			if !errors.Is(err, tt.want) {
				t.Errorf("error %v, want %v", err, tt.want)
			}
		})
	}
}

func TestRequestPaddingChecked(t *testing.T) {
	for _, pad := range []int{2, 5, 2000} {
		if _, err := (&Request{Protocol: SPTP, Padding: pad}).AppendBinary(nil); err == nil {
			t.Errorf("padding %d accepted", pad)
		}
	}
	if _, err := (&Request{}).AppendBinary(nil); err == nil {
		t.Error("request without protocol encoded")
	}
}
