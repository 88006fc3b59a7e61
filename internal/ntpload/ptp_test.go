package ntpload

import (
	"encoding/binary"
	"net/netip"
	"testing"

	"github.com/facebook/time/ptp/protocol"

	"github.com/timed-project/timed/csptp"
)

// ptpAnswer is a server's datagram of type typ answering the PTP request
// req (sequence id copied); csptpTLV adds a CSPTP response TLV to a Sync.
func ptpAnswer(t testing.TB, req []byte, typ protocol.MessageType, csptpTLV bool) []byte {
	t.Helper()
	seq := binary.BigEndian.Uint16(req[ptpSeqOffset:])
	h := protocol.Header{SdoIDAndMsgType: protocol.NewSdoIDAndMsgType(typ, 0), Version: protocol.Version,
		SequenceID: seq, FlagField: protocol.FlagUnicast, SourcePortIdentity: protocol.PortIdentity{ClockIdentity: 1, PortNumber: 1}}
	var b []byte
	var err error
	switch typ {
	case protocol.MessageAnnounce:
		h.MessageLength = 64
		b, err = (&protocol.Announce{Header: h}).MarshalBinary()
	default:
		h.MessageLength = 44
		if csptpTLV {
			h.MessageLength += 22
		}
		b, err = (&protocol.SyncDelayReq{Header: h}).MarshalBinary()
		if csptpTLV {
			b = binary.BigEndian.AppendUint16(b, uint16(csptp.TLVCSPTPResponse))
			b = binary.BigEndian.AppendUint16(b, 18)
			b = append(b, make([]byte, 18)...)
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestPTPRequest(t *testing.T) {
	src := [4]byte{127, 1, 2, 3}
	tests := []struct {
		name     string
		protocol string
		pad      bool
	}{
		{"sptp", ProtocolSPTP, false},
		{"sptp padded", ProtocolSPTP, true},
		{"csptp", ProtocolCSPTP, false},
		{"csptp padded", ProtocolCSPTP, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := ptpProtocol(tt.protocol)
			if err != nil {
				t.Fatal(err)
			}
			tmpl, err := ptpTemplate(p, src, ptpPad(Options{Pad: tt.pad}, p))
			if err != nil {
				t.Fatal(err)
			}
			if n := requestLen(Options{Protocol: tt.protocol, Pad: tt.pad}); n != len(tmpl) {
				t.Errorf("requestLen = %d, template %d octets", n, len(tmpl))
			}
			b := make([]byte, len(tmpl))
			ptpRequest(b, tmpl, 0xbeef)
			req, err := csptp.ParseRequest(b)
			if err != nil {
				t.Fatalf("csptp.ParseRequest: %v", err)
			}
			if req.Protocol != p || req.SequenceID != 0xbeef || req.Source.PortNumber <= 10 || req.Source.ClockIdentity != ptpClockIdentity(src) {
				t.Errorf("parsed %+v; want %s, sequence 0xbeef, clock identity %v, port above 10", req, p, ptpClockIdentity(src))
			}
			if long := len(b) >= csptp.AnswerLen(p); long != tt.pad {
				t.Errorf("%d-octet request, %d-octet answer: as long as its answer %v, want %v", len(b), csptp.AnswerLen(p), long, tt.pad)
			}
			if other := ptpClockIdentity([4]byte{127, 1, 2, 4}); other == req.Source.ClockIdentity {
				t.Errorf("two source addresses share clock identity %v", other)
			}
		})
	}
}

func TestParsePTPResponse(t *testing.T) {
	tmpl, err := ptpTemplate(csptp.SPTP, [4]byte{127, 1, 0, 1}, 0)
	if err != nil {
		t.Fatal(err)
	}
	req := make([]byte, len(tmpl))
	ptpRequest(req, tmpl, 4242)
	tests := []struct {
		name     string
		protocol csptp.Protocol
		b        []byte
		part     uint64
		ok       bool
	}{
		{"SPTP Sync", csptp.SPTP, ptpAnswer(t, req, protocol.MessageSync, false), partSync, true},
		{"SPTP Announce", csptp.SPTP, ptpAnswer(t, req, protocol.MessageAnnounce, false), partAnnounce, true},
		{"CSPTP Sync", csptp.CSPTP, ptpAnswer(t, req, protocol.MessageSync, true), partSync, true},
		{"CSPTP answer to SPTP", csptp.SPTP, ptpAnswer(t, req, protocol.MessageSync, true), 0, false},
		{"Sync without TLV to CSPTP", csptp.CSPTP, ptpAnswer(t, req, protocol.MessageSync, false), 0, false},
		{"Delay_Req", csptp.SPTP, req, 0, false},
		{"truncated", csptp.SPTP, ptpAnswer(t, req, protocol.MessageSync, false)[:30], 0, false},
		{"NTP", csptp.CSPTP, make([]byte, headerLen), 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			part, seq, ok := parsePTPResponse(tt.protocol, tt.b)
			if ok != tt.ok || part != tt.part || (ok && seq != 4242) {
				t.Errorf("parsePTPResponse = %d, %d, %v; want %d, 4242, %v", part, seq, ok, tt.part, tt.ok)
			}
		})
	}
}

func TestPTPOptions(t *testing.T) {
	server := Options{Server: netip.MustParseAddrPort("127.0.0.1:319")}
	tests := []struct {
		name string
		edit func(o *Options)
		ok   bool
	}{
		{"sptp", func(o *Options) { o.Protocol = ProtocolSPTP }, true},
		{"csptp padded", func(o *Options) { o.Protocol, o.Pad = ProtocolCSPTP, true }, true},
		{"unknown", func(o *Options) { o.Protocol = "ptp" }, false},
		{"pad NTP", func(o *Options) { o.Pad = true }, false},
		{"NTS over PTP", func(o *Options) { o.Protocol, o.NTS = ProtocolCSPTP, []NTSClient{{}} }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := server
			tt.edit(&o)
			if _, err := o.withDefaults(); (err == nil) != tt.ok {
				t.Errorf("withDefaults: %v; want ok %v", err, tt.ok)
			}
		})
	}
}
