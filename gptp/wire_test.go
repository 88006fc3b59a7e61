package gptp

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/facebook/time/ptp/protocol"

	"github.com/timed-project/timed/internal/testenv"
	"github.com/timed-project/timed/ptp"
)

var (
	wireTestSrc = protocol.PortIdentity{ClockIdentity: 0x0011_22ff_fe33_4455, PortNumber: 1}
	wireTestReq = protocol.PortIdentity{ClockIdentity: 0x6677_88ff_fe99_aabb, PortNumber: 2}
)

// wireTestMessages are messages of every type, built as a port would.
func wireTestMessages() map[string]Message {
	origin := time.Unix(1_700_000_000, 123_456_789)
	info := FollowUpInfo{
		CumulativeScaledRateOffset: RateOffset(1 + 25e-6),
		GMTimeBaseIndicator:        7,
		LastGMPhaseChange:          ScaledNsOf(-1500 * time.Nanosecond),
		ScaledLastGMFreqChange:     -42,
	}
	parent := ptp.ParentDataset{
		GrandmasterIdentity: 0x0011_22ff_fe33_4455,
		GrandmasterClockQuality: protocol.ClockQuality{
			ClockClass: 248, ClockAccuracy: 0xfe, OffsetScaledLogVariance: 0x4100,
		},
		GrandmasterPriority1: 246,
		GrandmasterPriority2: 248,
		StepsRemoved:         1,
	}
	tp := ptp.TimeProperties{CurrentUTCOffset: 37, CurrentUTCOffsetValid: true, PTPTimescale: true,
		TimeSource: protocol.TimeSourceInternalOscillator}

	pdelayReq := &protocol.PDelayReq{Header: newWireHeader(protocol.MessagePDelayReq, 54, wireTestReq, 9, 0, wireControlOther, 0)}
	pdelayResp := &protocol.PDelayResp{Header: newWireHeader(protocol.MessagePDelayResp, 54, wireTestSrc, 9, protocol.FlagTwoStep, wireControlOther, 0)}
	pdelayResp.RequestReceiptTimestamp = protocol.NewTimestamp(origin)
	pdelayResp.RequestingPortIdentity = wireTestReq
	pdelayFollowUp := &protocol.PDelayRespFollowUp{Header: newWireHeader(protocol.MessagePDelayRespFollowUp, 54, wireTestSrc, 9, 0, wireControlOther, 0)}
	pdelayFollowUp.ResponseOriginTimestamp = protocol.NewTimestamp(origin.Add(time.Microsecond))
	pdelayFollowUp.RequestingPortIdentity = wireTestReq

	noInterval := NewSignaling(wireTestSrc, 4, IntervalRequest{})
	noInterval.Interval = nil
	noInterval.Header.MessageLength = wireHeaderLen + wireSignalingBodyLen

	return map[string]Message{
		"Sync": NewSync(wireTestSrc, 1, -3),
		"Follow_Up": NewFollowUp(wireTestSrc, 1, -3, origin,
			ptp.IntervalOf(1234*time.Nanosecond), info),
		"Announce":               NewAnnounce(wireTestSrc, 2, 0, parent, tp, []protocol.ClockIdentity{0x0011_22ff_fe33_4455, 0x6677_88ff_fe99_aabb}),
		"Announce no path trace": NewAnnounce(wireTestSrc, 3, 0, parent, ptp.TimeProperties{}, nil),
		"Signaling": NewSignaling(wireTestSrc, 4, IntervalRequest{
			LinkDelayInterval: 2, TimeSyncInterval: 0, AnnounceInterval: -128,
			ComputeNeighborRateRatio: true, ComputeNeighborPropDelay: true,
		}),
		"Signaling stop": NewSignaling(wireTestSrc, 5, IntervalRequest{
			LinkDelayInterval: 127, TimeSyncInterval: 126, AnnounceInterval: 127,
		}),
		"Signaling no TLV":      noInterval,
		"Pdelay_Req":            pdelayReq,
		"Pdelay_Resp":           pdelayResp,
		"Pdelay_Resp_Follow_Up": pdelayFollowUp,
	}
}

func TestWireRoundTrip(t *testing.T) {
	for name, m := range wireTestMessages() {
		t.Run(name, func(t *testing.T) {
			b, err := Encode(m)
			if err != nil {
				t.Fatal(err)
			}
			if got := binary.BigEndian.Uint16(b[2:]); int(got) != len(b) {
				t.Errorf("messageLength %d, encoded %d octets", got, len(b))
			}
			if b[0] != MajorSdoID<<4|byte(m.MessageType()) || b[1] != 0x02 {
				t.Errorf("first octets %x, want majorSdoId 1, type %d, version 2", b[:2], m.MessageType())
			}
			// Padding after the message, as an Ethernet frame has it, is ignored.
			got, err := Decode(append(b, 0, 0, 0, 0, 0, 0))
			if err != nil {
				t.Fatalf("Decode(%x): %v", b, err)
			}
			if !reflect.DeepEqual(got, m) {
				t.Errorf("decoded\n\t%+v\nwant\n\t%+v", got, m)
			}
		})
	}
}

func TestWireConstructors(t *testing.T) {
	m := wireTestMessages()
	tests := []struct {
		name     string
		h        protocol.Header
		flags    uint16
		control  uint8
		interval protocol.LogInterval
		length   uint16
	}{
		{"Sync", m["Sync"].(*Sync).Header, protocol.FlagTwoStep | protocol.FlagPTPTimescale, 0, -3, 44},
		{"Follow_Up", m["Follow_Up"].(*FollowUp).Header, protocol.FlagPTPTimescale, 2, -3, 76},
		{"Announce", m["Announce"].(*Announce).Header, protocol.FlagPTPTimescale | protocol.FlagCurrentUtcOffsetValid, 5, 0, 64 + 4 + 16},
		{"Signaling", m["Signaling"].(*Signaling).Header, 0, 5, 127, 60},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := tt.h
			if h.FlagField != tt.flags || h.ControlField != tt.control || h.LogMessageInterval != tt.interval ||
				h.MessageLength != tt.length || h.DomainNumber != 0 || h.SdoIDAndMsgType>>4 != MajorSdoID ||
				h.SourcePortIdentity != wireTestSrc {
				t.Errorf("header %+v: want flags 0x%04x, control %d, log interval %d, length %d, domain 0, majorSdoId 1",
					h, tt.flags, tt.control, tt.interval, tt.length)
			}
		})
	}
	fu := m["Follow_Up"].(*FollowUp)
	if c := fu.Header.CorrectionField; c != 1234<<16 {
		t.Errorf("Follow_Up correction %d, want 1234 ns = %d", c, 1234<<16)
	}
	if got := fu.PreciseOriginTimestamp.Time(); !got.Equal(time.Unix(1_700_000_000, 123_456_789)) {
		t.Errorf("Follow_Up origin %v", got)
	}
	if s := m["Signaling"].(*Signaling); s.TargetPortIdentity != protocol.DefaultTargetPortIdentity {
		t.Errorf("Signaling target %v, want all ones", s.TargetPortIdentity)
	}
	huge := NewFollowUp(wireTestSrc, 1, 0, time.Time{}, ptp.IntervalOf(math.MaxInt64), FollowUpInfo{})
	if huge.Header.CorrectionField != math.MaxInt64 {
		t.Errorf("correction too big for the field: %x, want 0x7fffffffffffffff", uint64(huge.Header.CorrectionField))
	}
}

// TestWireFollowUpInfoLayout checks the 32 octets of the Follow_Up
// information TLV against 802.1AS-2020 Table 11-11, field by field.
func TestWireFollowUpInfoLayout(t *testing.T) {
	m := NewFollowUp(wireTestSrc, 1, -3, time.Unix(0x0102_0304, 0x0506_0708), ptp.Interval{}, FollowUpInfo{
		CumulativeScaledRateOffset: -2,
		GMTimeBaseIndicator:        0x1234,
		LastGMPhaseChange:          ScaledNs{Hi: -1, Lo: 0x1122_3344_5566_7788},
		ScaledLastGMFreqChange:     0x0a0b_0c0d,
	})
	b, err := Encode(m)
	if err != nil {
		t.Fatal(err)
	}
	want := wireHex(t, ""+
		"0000 0102 0304 05060708"+ // preciseOriginTimestamp
		"0003 001c"+ // tlvType ORGANIZATION_EXTENSION, lengthField 28
		"0080c2 000001"+ // organizationId, organizationSubType
		"fffffffe"+ // cumulativeScaledRateOffset
		"1234"+ // gmTimeBaseIndicator
		"ffffffff 1122334455667788"+ // lastGmPhaseChange
		"0a0b0c0d") // scaledLastGmFreqChange
	if len(b) != wireHeaderLen+len(want) || !bytes.Equal(b[wireHeaderLen:], want) {
		t.Errorf("Follow_Up body and TLV\n\t%x\nwant\n\t%x", b[wireHeaderLen:], want)
	}
	if len(want)-10 != 32 {
		t.Fatalf("test TLV is %d octets", len(want)-10)
	}
}

// TestWireIntervalRequestLayout checks the message interval request TLV
// against 802.1AS-2020 Table 10-20.
func TestWireIntervalRequestLayout(t *testing.T) {
	tests := []struct {
		req  IntervalRequest
		want string
	}{
		{IntervalRequest{LinkDelayInterval: 2, TimeSyncInterval: -3, AnnounceInterval: 0, ComputeNeighborRateRatio: true},
			"0003 000c 0080c2 000002 02 fd 00 02 0000"},
		{IntervalRequest{LinkDelayInterval: 127, TimeSyncInterval: 126, AnnounceInterval: -128, ComputeNeighborPropDelay: true},
			"0003 000c 0080c2 000002 7f 7e 80 04 0000"},
		{IntervalRequest{ComputeNeighborRateRatio: true, ComputeNeighborPropDelay: true},
			"0003 000c 0080c2 000002 00 00 00 06 0000"},
	}
	for _, tt := range tests {
		b, err := Encode(NewSignaling(wireTestSrc, 1, tt.req))
		if err != nil {
			t.Fatal(err)
		}
		want := append(wireHex(t, "ffffffffffffffff ffff"), wireHex(t, tt.want)...)
		if !bytes.Equal(b[wireHeaderLen:], want) {
			t.Errorf("%+v: Signaling body and TLV\n\t%x\nwant\n\t%x", tt.req, b[wireHeaderLen:], want)
		}
	}
}

// Frames ptp4l 3.1.1 sent with /usr/share/doc/linuxptp/configs/gPTP.cfg
// (software timestamps, two network namespaces joined by a veth pair),
// captured with tshark: the PTP payload after the Ethernet header, with the
// Ethernet padding of the short ones.
const (
	ptp4lPdelayReq = "1202003600000000000000000000000000000000e20ab0fffe19b42700010001057f0000000000000000000000000000000000000000"
	ptp4lPdelayRes = "13020036000002000000000000000000000000005ee39dfffef07fab00010001057f00006b02e26732cdb629e20ab0fffe19b4270001"
	ptp4lPdelayFU  = "1a020036000000000000000000000000000000005ee39dfffef07fab00010001057f00006b02e26732cef8abe20ab0fffe19b4270001"
	ptp4lAnnounce  = "1b02004c000000000000000000000000000000005ee39dfffef07fab000100000500000000000000000000000025000af8fefffff85ee39dfffef07fab0000a0000800085ee39dfffef07fab"
	ptp4lSync      = "1002002c000002000000000000000000000000005ee39dfffef07fab0001000000fd00000000000000000000"
	ptp4lFollowUp  = "1802004c000000000000000000000000000000005ee39dfffef07fab0001000002fd00006b02e269351de4f70003001c0080c200000100000000000000000000000000000000000000000000"
)

func TestWireDecodePtp4l(t *testing.T) {
	gm := protocol.PortIdentity{ClockIdentity: 0x5ee39dfffef07fab, PortNumber: 1}
	peer := protocol.PortIdentity{ClockIdentity: 0xe20ab0fffe19b427, PortNumber: 1}
	tests := []struct {
		name  string
		frame string
		check func(t *testing.T, m Message)
	}{
		{"Sync", ptp4lSync, func(t *testing.T, m Message) {
			s := m.(*Sync)
			if s.Header.FlagField != protocol.FlagTwoStep || s.Header.LogMessageInterval != -3 || s.Header.SourcePortIdentity != gm {
				t.Errorf("%+v", s.Header)
			}
		}},
		{"Follow_Up", ptp4lFollowUp, func(t *testing.T, m Message) {
			f := m.(*FollowUp)
			if got := f.PreciseOriginTimestamp.Time(); got != time.Unix(0x6b02e269, 0x351de4f7) {
				t.Errorf("preciseOriginTimestamp %v", got)
			}
			if f.Info != (FollowUpInfo{}) || f.Info.RateRatio() != 1 || f.Header.ControlField != 2 || f.Header.SequenceID != 0 {
				t.Errorf("%+v", f)
			}
		}},
		{"Announce", ptp4lAnnounce, func(t *testing.T, m Message) {
			a := m.(*Announce)
			want := &Announce{
				Header: a.Header,
				AnnounceBody: protocol.AnnounceBody{CurrentUTCOffset: 37, GrandmasterPriority1: 10,
					GrandmasterClockQuality: protocol.ClockQuality{ClockClass: 248, ClockAccuracy: 0xfe, OffsetScaledLogVariance: 0xffff},
					GrandmasterPriority2:    248, GrandmasterIdentity: gm.ClockIdentity, StepsRemoved: 0,
					TimeSource: protocol.TimeSourceInternalOscillator},
				PathTrace: []protocol.ClockIdentity{gm.ClockIdentity},
			}
			if !reflect.DeepEqual(a, want) {
				t.Errorf("got\n\t%+v\nwant\n\t%+v", a, want)
			}
		}},
		{"Pdelay_Req", ptp4lPdelayReq, func(t *testing.T, m Message) {
			r := m.(*protocol.PDelayReq)
			if r.Header.SourcePortIdentity != peer || r.Header.SequenceID != 1 || r.Header.LogMessageInterval != 0x7f {
				t.Errorf("%+v", r.Header)
			}
		}},
		{"Pdelay_Resp", ptp4lPdelayRes, func(t *testing.T, m Message) {
			r := m.(*protocol.PDelayResp)
			if r.RequestingPortIdentity != peer || r.RequestReceiptTimestamp.Time() != time.Unix(0x6b02e267, 0x32cdb629) ||
				r.Header.FlagField != protocol.FlagTwoStep {
				t.Errorf("%+v", r)
			}
		}},
		{"Pdelay_Resp_Follow_Up", ptp4lPdelayFU, func(t *testing.T, m Message) {
			r := m.(*protocol.PDelayRespFollowUp)
			if r.RequestingPortIdentity != peer || r.ResponseOriginTimestamp.Time() != time.Unix(0x6b02e267, 0x32cef8ab) {
				t.Errorf("%+v", r)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := wireHex(t, tt.frame)
			m, err := Decode(b)
			if err != nil {
				t.Fatal(err)
			}
			if m.MessageType() != protocol.MessageType(b[0]&0x0f) {
				t.Errorf("type %v", m.MessageType())
			}
			tt.check(t, m)
			// Our encoding of it is ptp4l's, octet for octet (Pdelay_Req's
			// reserved octets are zero in both).
			enc, err := Encode(m)
			if err != nil {
				t.Fatal(err)
			}
			if n := binary.BigEndian.Uint16(b[2:]); !bytes.Equal(enc, b[:n]) {
				t.Errorf("re-encoded\n\t%x\nptp4l sent\n\t%x", enc, b[:n])
			}
		})
	}
}

// TestWireDecodeSignaling decodes a Signaling message with a message interval
// request built by hand from 802.1AS-2020 10.6.4 (ptp4l sends one only from
// a locked servo, which needs a clock it may adjust), with minor version 1
// as 802.1AS-2020 sends it.
func TestWireDecodeSignaling(t *testing.T) {
	b := wireHex(t, ""+
		"1c 12 003c 00 00 0000 0000000000000000 00000000 e20ab0fffe19b427 0001 0007 05 7f"+ // header
		"ffffffffffffffff ffff"+ // targetPortIdentity
		"0003 000c 0080c2 000002 02 00 7f 06 0000") // message interval request
	m, err := Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	s := m.(*Signaling)
	want := IntervalRequest{LinkDelayInterval: 2, TimeSyncInterval: 0, AnnounceInterval: 127,
		ComputeNeighborRateRatio: true, ComputeNeighborPropDelay: true}
	if s.Interval == nil || *s.Interval != want || s.TargetPortIdentity != protocol.DefaultTargetPortIdentity ||
		s.Header.SequenceID != 7 || s.Header.Version != 0x12 {
		t.Errorf("got %+v (interval %+v), want interval %+v", s, s.Interval, want)
	}
}

// TestWireUnknownTLVs checks that TLVs Decode does not know are skipped: an
// organization extension of another organization, one of 802.1 with
// another subtype, and a TLV of another type, before and after the known one.
func TestWireUnknownTLVs(t *testing.T) {
	other := wireHex(t, "0003 000a 001b19 000001 aabbccdd"+ // another organization
		"0003 0008 0080c2 000004 0102"+ // 802.1, gPTP capable TLV (subtype 4)
		"7ff0 0000") // an experimental type, empty
	tests := []struct {
		name  string
		m     Message
		check func(m Message) bool
	}{
		{"Follow_Up", NewFollowUp(wireTestSrc, 1, 0, time.Unix(5, 0), ptp.Interval{}, FollowUpInfo{CumulativeScaledRateOffset: 99}),
			func(m Message) bool { return m.(*FollowUp).Info.CumulativeScaledRateOffset == 99 }},
		{"Signaling", NewSignaling(wireTestSrc, 1, IntervalRequest{LinkDelayInterval: 3}),
			func(m Message) bool { return m.(*Signaling).Interval.LinkDelayInterval == 3 }},
		{"Announce", NewAnnounce(wireTestSrc, 1, 0, ptp.ParentDataset{}, ptp.TimeProperties{}, []protocol.ClockIdentity{42}),
			func(m Message) bool { return len(m.(*Announce).PathTrace) == 1 && m.(*Announce).PathTrace[0] == 42 }},
		{"Sync", NewSync(wireTestSrc, 1, 0), func(m Message) bool { return true }},
	}
	for _, tt := range tests {
		for _, where := range []string{"before", "after"} {
			t.Run(tt.name+" "+where, func(t *testing.T) {
				b, err := Encode(tt.m)
				if err != nil {
					t.Fatal(err)
				}
				body := map[protocol.MessageType]int{protocol.MessageFollowUp: 10, protocol.MessageSignaling: 10,
					protocol.MessageAnnounce: 30, protocol.MessageSync: 10}[tt.m.MessageType()]
				at := wireHeaderLen + body
				if where == "after" {
					at = len(b)
				}
				b = append(b[:at:at], append(other, b[at:]...)...)
				binary.BigEndian.PutUint16(b[2:], uint16(len(b)))
				m, err := Decode(b)
				if err != nil {
					t.Fatal(err)
				}
				if !tt.check(m) {
					t.Errorf("decoded %+v", m)
				}
			})
		}
	}
}

func TestWireDecodeRejects(t *testing.T) {
	sync := wireHex(t, ptp4lSync)[:44]
	fu := wireHex(t, ptp4lFollowUp)[:76]
	an := wireHex(t, ptp4lAnnounce)[:76]
	sig, err := Encode(NewSignaling(wireTestSrc, 1, IntervalRequest{}))
	if err != nil {
		t.Fatal(err)
	}
	edit := func(b []byte, f func(b []byte) []byte) []byte { return f(bytes.Clone(b)) }
	setLen := func(b []byte) []byte { binary.BigEndian.PutUint16(b[2:], uint16(len(b))); return b }
	tests := []struct {
		name string
		b    []byte
		want string
	}{
		{"empty", nil, "0 octets, shorter than the 34-octet header"},
		{"truncated header", sync[:33], "33 octets, shorter than the 34-octet header"},
		{"truncated message", fu[:60], "FOLLOW_UP: messageLength 76, but only 60 octets"},
		{"1588 majorSdoId 0", edit(sync, func(b []byte) []byte { b[0] = 0x00; return b }), "majorSdoId 0, want 1"},
		{"majorSdoId 2", edit(sync, func(b []byte) []byte { b[0] = 0x20; return b }), "majorSdoId 2, want 1"},
		{"PTPv1", edit(sync, func(b []byte) []byte { b[1] = 0x01; return b }), "versionPTP 1, want 2"},
		{"Delay_Req", edit(sync, func(b []byte) []byte { b[0] = 0x11; return b }), "message type DELAY_REQ (0x1) is not used by 802.1AS"},
		{"Management", edit(sync, func(b []byte) []byte { b[0] = 0x1d; return b }), "message type MANAGEMENT (0xd) is not used"},
		{"short Sync body", edit(sync, func(b []byte) []byte { return setLen(b[:40]) }), "SYNC: messageLength 40, shorter than the 44 octets"},
		{"short Announce body", edit(an, func(b []byte) []byte { return setLen(b[:60]) }), "ANNOUNCE: messageLength 60, shorter than the 64 octets"},
		{"TLV overruns", edit(fu, func(b []byte) []byte { b[47] = 29; return b }),
			"FOLLOW_UP: TLV type 0x0003 at offset 44: length 29 overruns the message by 1 octets"},
		{"TLV length beyond buffer", edit(an, func(b []byte) []byte { b[66], b[67] = 0xff, 0xff; return b }),
			"ANNOUNCE: TLV type 0x0008 at offset 64: length 65535 overruns"},
		{"stray octets", edit(sync, func(b []byte) []byte { return setLen(append(b, 0, 3)) }),
			"SYNC: 2 stray octets after the TLVs at offset 44"},
		{"Follow_Up information TLV too short", edit(fu, func(b []byte) []byte {
			b[47] = 24
			return setLen(b[:72])
		}), "Follow_Up information TLV length 24, want 28"},
		{"no Follow_Up information TLV", edit(fu, func(b []byte) []byte { return setLen(b[:44]) }),
			"FOLLOW_UP: no Follow_Up information TLV"},
		{"path trace not a multiple of 8", edit(an, func(b []byte) []byte {
			b[67] = 4
			return setLen(b[:72])
		}), "path trace TLV length 4, not a multiple of 8"},
		{"interval request too long", edit(sig, func(b []byte) []byte {
			b[wireHeaderLen+13] = 14
			return setLen(append(b, 0, 0))
		}), "message interval request TLV length 14, want 12"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := Decode(tt.b)
			if err == nil {
				t.Fatalf("Decode(%x) = %+v, want an error", tt.b, m)
			}
			if !errors.Is(err, errMalformed) || !strings.HasPrefix(err.Error(), "gptp: malformed gPTP message: ") ||
				!strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q, want one wrapping errMalformed saying %q", err, tt.want)
			}
		})
	}
}

func TestWireEncodeRejects(t *testing.T) {
	tests := []struct {
		name string
		m    Message
		want string
	}{
		{"nil", nil, "gptp: cannot encode a nil message"},
		{"nil Sync", (*Sync)(nil), "gptp: cannot encode a nil message"},
		{"nil Pdelay_Req", (*protocol.PDelayReq)(nil), "gptp: cannot encode a nil message"},
		{"Delay_Req", &protocol.SyncDelayReq{}, "gptp: cannot encode *protocol.SyncDelayReq"},
		{"path trace too long", &Announce{PathTrace: make([]protocol.ClockIdentity, 8200)},
			"gptp: encode Announce: path trace of 8200 clock identities does not fit in a message"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if b, err := Encode(tt.m); err == nil || err.Error() != tt.want {
				t.Errorf("Encode = %x, %v; want error %q", b, err, tt.want)
			}
		})
	}
	// The longest path trace that fits is encoded.
	if b, err := Encode(&Announce{PathTrace: make([]protocol.ClockIdentity, 8183)}); err != nil || len(b) != 65532 {
		t.Errorf("path trace of 8183: %d octets, %v", len(b), err)
	}
}

func TestWireScaledNs(t *testing.T) {
	tests := []struct {
		s    ScaledNs
		want time.Duration
	}{
		{ScaledNs{}, 0},
		{ScaledNs{Lo: 1 << 16}, 1},
		{ScaledNs{Lo: 3 << 15}, 1},                 // 1.5 ns rounds down
		{ScaledNs{Hi: -1, Lo: math.MaxUint64}, -1}, // −2^-16 ns rounds down
		{ScaledNs{Hi: -1, Lo: math.MaxUint64 - 3<<15 + 1}, -2},
		{ScaledNsOf(time.Hour), time.Hour},
		{ScaledNsOf(-time.Hour), -time.Hour},
		{ScaledNsOf(math.MaxInt64), math.MaxInt64},
		{ScaledNsOf(math.MinInt64), math.MinInt64},
		{ScaledNs{Hi: 1 << 15}, math.MaxInt64},
		{ScaledNs{Hi: math.MaxInt32, Lo: math.MaxUint64}, math.MaxInt64},
		{ScaledNs{Hi: -1<<15 - 1}, math.MinInt64},
		{ScaledNs{Hi: math.MinInt32}, math.MinInt64},
	}
	for _, tt := range tests {
		if got := tt.s.Duration(); got != tt.want {
			t.Errorf("%+v.Duration() = %d, want %d", tt.s, got, tt.want)
		}
	}
	if s := ScaledNsOf(-1); s != (ScaledNs{Hi: -1, Lo: 0xffff_ffff_ffff_0000}) {
		t.Errorf("ScaledNsOf(-1ns) = %+v", s)
	}
	if s := ScaledNsOf(math.MaxInt64); s != (ScaledNs{Hi: 0x7fff, Lo: 0xffff_ffff_ffff_0000}) {
		t.Errorf("ScaledNsOf(max) = %+v", s)
	}
}

func TestWireRateOffset(t *testing.T) {
	tests := []struct {
		ratio float64
		want  int32
	}{
		{1, 0},
		{1 + 1.0/(1<<41), 1},
		{1 - 1.0/(1<<41), -1},
		{1 + 1e-6, 2199023}, // 1 ppm: 2^41 × 1e-6 = 2199023.26
		{1 - 100e-6, -219902326},
		{1.001, math.MaxInt32}, // beyond ±976 ppm saturates
		{0.5, math.MinInt32},
		{math.Inf(1), math.MaxInt32},
		{math.NaN(), 0},
	}
	for _, tt := range tests {
		got := RateOffset(tt.ratio)
		if got != tt.want {
			t.Errorf("RateOffset(%v) = %d, want %d", tt.ratio, got, tt.want)
		}
		if tt.ratio > 0.999 && tt.ratio < 1.0009 {
			if back := (FollowUpInfo{CumulativeScaledRateOffset: got}).RateRatio(); math.Abs(back-tt.ratio) > 1.0/(1<<41) {
				t.Errorf("RateRatio(RateOffset(%v)) = %v", tt.ratio, back)
			}
		}
	}
}

// TestWireTshark has tshark decode our messages, in Ethernet frames to
// 01:80:c2:00:00:0e, as 802.1AS: the fields come out as encoded and nothing
// is marked malformed or questionable.
func TestWireTshark(t *testing.T) {
	tshark := testenv.LookPath(t, "tshark")
	msgs := wireTestMessages()
	const pid = "0x667788fffe99aabb"
	// For each frame, the fields tshark must show; every other field of
	// the list must be absent. ("Signaling no TLV" is left out: tshark's
	// 802.1AS dissector wants the TLV there and calls the message
	// malformed without it.)
	tests := []struct {
		name string
		want map[string]string
	}{
		{"Sync", map[string]string{"ptp.v2.messagetype": "0x00", "ptp.v2.messagelength": "44", "ptp.v2.sequenceid": "1",
			"ptp.v2.flags.twostep": "1", "ptp.v2.flags.timescale": "1", "ptp.v2.logmessageperiod": "-3"}},
		{"Follow_Up", map[string]string{"ptp.v2.messagetype": "0x08", "ptp.v2.messagelength": "76", "ptp.v2.sequenceid": "1",
			"ptp.v2.flags.twostep": "0", "ptp.v2.flags.timescale": "1", "ptp.v2.correction.ns": "1234", "ptp.v2.logmessageperiod": "-3",
			"ptp.v2.fu.preciseorigintimestamp.seconds": "1700000000", "ptp.v2.fu.preciseorigintimestamp.nanoseconds": "123456789",
			"ptp.as.fu.cumulativeScaledRateOffset": "54975581", "ptp.as.fu.gmTimeBaseIndicator": "7",
			"ptp.as.fu.scaledLastGmFreqChange": "-42"}},
		{"Announce", map[string]string{"ptp.v2.messagetype": "0x0b", "ptp.v2.messagelength": "84", "ptp.v2.sequenceid": "2",
			"ptp.v2.flags.twostep": "0", "ptp.v2.flags.timescale": "1", "ptp.v2.logmessageperiod": "0",
			"ptp.v2.an.origincurrentutcoffset": "37", "ptp.v2.an.priority1": "246", "ptp.v2.an.priority2": "248",
			"ptp.v2.an.grandmasterclockclass": "248", "ptp.v2.an.grandmasterclockidentity": "0x001122fffe334455",
			"ptp.v2.an.localstepsremoved": "1", "ptp.v2.an.pathsequence": "0x001122fffe334455," + pid}},
		{"Announce no path trace", map[string]string{"ptp.v2.messagetype": "0x0b", "ptp.v2.messagelength": "64", "ptp.v2.sequenceid": "3",
			"ptp.v2.flags.twostep": "0", "ptp.v2.flags.timescale": "0", "ptp.v2.logmessageperiod": "0",
			"ptp.v2.an.origincurrentutcoffset": "0", "ptp.v2.an.priority1": "246", "ptp.v2.an.priority2": "248",
			"ptp.v2.an.grandmasterclockclass": "248", "ptp.v2.an.grandmasterclockidentity": "0x001122fffe334455",
			"ptp.v2.an.localstepsremoved": "1"}},
		{"Signaling", map[string]string{"ptp.v2.messagetype": "0x0c", "ptp.v2.messagelength": "60", "ptp.v2.sequenceid": "4",
			"ptp.v2.flags.twostep": "0", "ptp.v2.flags.timescale": "0", "ptp.v2.logmessageperiod": "127",
			"ptp.v2.sig.targetportidentity":    "0xffffffffffffffff",
			"ptp.as.sig.tlv.linkdelayinterval": "2", "ptp.as.sig.tlv.timesyncinterval": "0", "ptp.as.sig.tlv.announceinterval": "-128",
			"ptp.as.sig.tlv.flags.rateratio": "1", "ptp.as.sig.tlv.flags.meanlinkdelay": "1"}},
		{"Signaling stop", map[string]string{"ptp.v2.messagetype": "0x0c", "ptp.v2.messagelength": "60", "ptp.v2.sequenceid": "5",
			"ptp.v2.flags.twostep": "0", "ptp.v2.flags.timescale": "0", "ptp.v2.logmessageperiod": "127",
			"ptp.v2.sig.targetportidentity":    "0xffffffffffffffff",
			"ptp.as.sig.tlv.linkdelayinterval": "127", "ptp.as.sig.tlv.timesyncinterval": "126", "ptp.as.sig.tlv.announceinterval": "127",
			"ptp.as.sig.tlv.flags.rateratio": "0", "ptp.as.sig.tlv.flags.meanlinkdelay": "0"}},
		{"Pdelay_Req", map[string]string{"ptp.v2.messagetype": "0x02", "ptp.v2.messagelength": "54", "ptp.v2.sequenceid": "9",
			"ptp.v2.flags.twostep": "0", "ptp.v2.flags.timescale": "0", "ptp.v2.logmessageperiod": "0"}},
		{"Pdelay_Resp", map[string]string{"ptp.v2.messagetype": "0x03", "ptp.v2.messagelength": "54", "ptp.v2.sequenceid": "9",
			"ptp.v2.flags.twostep": "1", "ptp.v2.flags.timescale": "0", "ptp.v2.logmessageperiod": "0",
			"ptp.v2.pdrs.requestreceipttimestamp.seconds": "1700000000", "ptp.v2.pdrs.requestingportidentity": pid}},
		{"Pdelay_Resp_Follow_Up", map[string]string{"ptp.v2.messagetype": "0x0a", "ptp.v2.messagelength": "54", "ptp.v2.sequenceid": "9",
			"ptp.v2.flags.twostep": "0", "ptp.v2.flags.timescale": "0", "ptp.v2.logmessageperiod": "0",
			"ptp.v2.pdfu.responseorigintimestamp.nanoseconds": "123457789", "ptp.v2.pdfu.requestingportidentity": pid}},
	}
	fields := []string{"ptp.v2.majorsdoid", "ptp.v2.versionptp", "ptp.v2.correction.ns", "_ws.malformed", "_ws.expert"}
	seen := map[string]bool{}
	for _, f := range fields {
		seen[f] = true
	}
	var frames [][]byte
	for _, tt := range tests {
		b, err := Encode(msgs[tt.name])
		if err != nil {
			t.Fatal(err)
		}
		frames = append(frames, b)
		for f := range tt.want {
			if !seen[f] {
				seen[f] = true
				fields = append(fields, f)
			}
		}
	}
	path := filepath.Join(t.TempDir(), "gptp.pcap")
	if err := os.WriteFile(path, wirePcap(frames...), 0o600); err != nil {
		t.Fatal(err)
	}
	args := []string{"-n", "-r", path, "-T", "fields", "-E", "separator=|"}
	for _, f := range fields {
		args = append(args, "-e", f)
	}
	out, err := exec.Command(tshark, args...).Output()
	if err != nil {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		t.Fatalf("tshark: %v\n%s", err, stderr)
	}
	lines := strings.Split(strings.TrimRight(string(out), "\n"), "\n")
	if len(lines) != len(tests) {
		t.Fatalf("tshark decoded %d frames, want %d:\n%s", len(lines), len(tests), out)
	}
	for i, tt := range tests {
		got := strings.Split(lines[i], "|")
		if len(got) != len(fields) {
			t.Fatalf("%s: tshark gave %d fields, want %d: %s", tt.name, len(got), len(fields), lines[i])
		}
		want := map[string]string{"ptp.v2.majorsdoid": "0x01", "ptp.v2.versionptp": "2", "ptp.v2.correction.ns": "0"}
		for f, v := range tt.want {
			want[f] = v
		}
		for j, f := range fields {
			if got[j] != want[f] {
				t.Errorf("%s: tshark shows %s = %q, want %q", tt.name, f, got[j], want[f])
			}
		}
	}
	if t.Failed() {
		t.Logf("fields %s\n%s", strings.Join(fields, "|"), out)
		verbose, _ := exec.Command(tshark, "-n", "-r", path, "-V").Output()
		t.Logf("tshark -V:\n%s", verbose)
	}
}

// wirePcap wraps gPTP messages in Ethernet frames (to 01:80:c2:00:00:0e,
// ethertype 0x88f7, padded to 60 octets) in a pcap file.
func wirePcap(msgs ...[]byte) []byte {
	b := binary.LittleEndian.AppendUint32(nil, 0xa1b2c3d4)
	b = binary.LittleEndian.AppendUint16(b, 2)
	b = binary.LittleEndian.AppendUint16(b, 4)
	b = append(b, make([]byte, 8)...)              // time zone, accuracy
	b = binary.LittleEndian.AppendUint32(b, 65535) // snap length
	b = binary.LittleEndian.AppendUint32(b, 1)     // Ethernet
	for i, m := range msgs {
		frame := append([]byte{0x01, 0x80, 0xc2, 0x00, 0x00, 0x0e, 0x02, 0x11, 0x22, 0x33, 0x44, 0x55, 0x88, 0xf7}, m...)
		for len(frame) < 60 {
			frame = append(frame, 0)
		}
		b = binary.LittleEndian.AppendUint32(b, uint32(1_700_000_000+i))
		b = binary.LittleEndian.AppendUint32(b, 0)
		b = binary.LittleEndian.AppendUint32(b, uint32(len(frame)))
		b = binary.LittleEndian.AppendUint32(b, uint32(len(frame)))
		b = append(b, frame...)
	}
	return b
}

// wireHex decodes hexadecimal with spaces.
func wireHex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}
