package ptp

import (
	"testing"

	"github.com/facebook/time/ptp/protocol"
)

func TestAnnounceBodyRoundTrip(t *testing.T) {
	want := protocol.AnnounceBody{
		OriginTimestamp:      protocol.Timestamp{Seconds: [6]uint8{0, 0, 0x6b, 2, 0xe2, 0x69}, Nanoseconds: 999999999},
		CurrentUTCOffset:     -3,
		Reserved:             7,
		GrandmasterPriority1: 128,
		GrandmasterClockQuality: protocol.ClockQuality{
			ClockClass: 6, ClockAccuracy: protocol.ClockAccuracyNanosecond100, OffsetScaledLogVariance: 0x4e5d,
		},
		GrandmasterPriority2: 9,
		GrandmasterIdentity:  0x0a1b2cfffe3d4e5f,
		StepsRemoved:         65535,
		TimeSource:           protocol.TimeSourceGNSS,
	}
	b := AppendAnnounceBody([]byte{0xee}, want)
	if len(b) != 1+AnnounceBodyLen {
		t.Fatalf("appended %d octets, want %d", len(b)-1, AnnounceBodyLen)
	}
	// The wire form ptp/protocol writes for the same body.
	m := protocol.Announce{Header: protocol.Header{SdoIDAndMsgType: protocol.NewSdoIDAndMsgType(protocol.MessageAnnounce, 0), MessageLength: 64}, AnnounceBody: want}
	ref, err := m.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	if string(ref[34:64]) != string(b[1:]) {
		t.Errorf("wire form\n\t% x\nptp/protocol writes\n\t% x", b[1:], ref[34:64])
	}
	got, err := DecodeAnnounceBody(b[1:])
	if err != nil || got != want {
		t.Errorf("decoded %+v, %v; want %+v", got, err, want)
	}
	for _, n := range []int{0, 1, AnnounceBodyLen - 1} {
		if _, err := DecodeAnnounceBody(b[1 : 1+n]); err == nil {
			t.Errorf("%d octets decoded without error", n)
		}
	}
}
