package ptp

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/facebook/time/ptp/protocol"

	"github.com/timed-project/timed/internal/netstamp"
)

// requestSig is a client's Signaling message with one REQUEST TLV per
// "TYPE/LOG/DURATION" and one CANCEL TLV per "cancel TYPE".
func requestSig(t *testing.T, tlvs ...string) *protocol.Signaling {
	t.Helper()
	types := map[string]protocol.MessageType{"announce": protocol.MessageAnnounce, "sync": protocol.MessageSync,
		"delay_resp": protocol.MessageDelayResp, "pdelay_resp": protocol.MessagePDelayResp}
	sig := &protocol.Signaling{Header: protocol.Header{SourcePortIdentity: slavePort}, TargetPortIdentity: wildcardPort}
	for _, s := range tlvs {
		if name, ok := strings.CutPrefix(s, "cancel "); ok {
			sig.TLVs = append(sig.TLVs, cancelRequest(uniA, types[name]).tlv)
			continue
		}
		var name string
		var log int8
		var d uint32
		if _, err := fmt.Sscanf(strings.ReplaceAll(s, "/", " "), "%s %d %d", &name, &log, &d); err != nil {
			t.Fatalf("request %q: %v", s, err)
		}
		sig.TLVs = append(sig.TLVs, &protocol.RequestUnicastTransmissionTLV{
			TLVHead:            protocol.TLVHead{TLVType: protocol.TLVRequestUnicastTransmission, LengthField: 6},
			MsgTypeAndReserved: protocol.NewUnicastMsgTypeAndFlags(types[name], 0), LogInterMessagePeriod: protocol.LogInterval(log),
			DurationField: d})
	}
	return sig
}

// answered describes answer TLVs as "grant TYPE/LOG/DURATION" or "ack TYPE".
func answered(tlvs []protocol.TLV) []string {
	var out []string
	for _, tlv := range tlvs {
		switch t := tlv.(type) {
		case *protocol.GrantUnicastTransmissionTLV:
			out = append(out, fmt.Sprintf("grant %s/%d/%d", messageName(t.MsgTypeAndReserved.MsgType()), t.LogInterMessagePeriod, t.DurationField))
		case *protocol.AcknowledgeCancelUnicastTransmissionTLV:
			out = append(out, "ack "+messageName(t.MsgTypeAndFlags.MsgType()))
		default:
			out = append(out, fmt.Sprintf("%T", tlv))
		}
	}
	return out
}

// TestUnicastService runs scripts of client requests against a service
// whose port has announce 2^1 s, sync 2^-1 s and delay requests 2^0 s, and
// checks its answers, what falls due and its status.
func TestUnicastService(t *testing.T) {
	type step struct {
		at   float64
		from netip.Addr
		req  []string // a Signaling message's TLVs; nil: call due
		want []string // the answer, or the messages due ("ADDR TYPE/LOG")
	}
	type grant struct {
		msg  string
		log  int8
		left float64
	}
	tests := []struct {
		name       string
		steps      []step
		statusAt   float64
		wantStatus map[netip.Addr][]grant
		wantDenied uint64
	}{
		{
			name: "ptp4l's requests granted, then sent at their intervals",
			steps: []step{
				{0, uniA, []string{"announce/1/3600"}, []string{"grant announce/1/300"}},
				{0, uniA, nil, []string{"192.0.2.1 announce/1"}},
				{0.5, uniA, []string{"sync/0/3600", "delay_resp/0/3600"}, []string{"grant sync/0/300", "grant delay_resp/0/300"}},
				{0.5, uniA, nil, []string{"192.0.2.1 sync/0"}},
				{1, uniA, nil, nil},
				{1.5, uniA, nil, []string{"192.0.2.1 sync/0"}},
				{2, uniA, nil, []string{"192.0.2.1 announce/1"}},
				{9, uniA, nil, []string{"192.0.2.1 announce/1", "192.0.2.1 sync/0"}}, // late: one each, no burst
				{9.2, uniA, nil, nil},
			},
			statusAt:   10,
			wantStatus: map[netip.Addr][]grant{uniA: {{"announce", 1, 290}, {"sync", 0, 290.5}, {"delay_resp", 0, 290.5}}},
		},
		{
			name: "short grants kept as asked; renewal extends; expiry drops the client",
			steps: []step{
				{0, uniA, []string{"announce/2/60", "sync/-1/60"}, []string{"grant announce/2/60", "grant sync/-1/60"}},
				{30, uniA, []string{"announce/2/60"}, []string{"grant announce/2/60"}},
				{61, uniA, nil, []string{"192.0.2.1 announce/2"}}, // sync ran out at 60, never sent
				{64, uniA, nil, nil},
				{89, uniA, nil, []string{"192.0.2.1 announce/2"}},
				{90, uniA, nil, nil}, // announce ran out at 90
			},
			statusAt:   91,
			wantStatus: map[netip.Addr][]grant{},
		},
		{
			name: "faster than the port, slower than 2^6 s, other types, zero duration: denied",
			steps: []step{
				{0, uniA, []string{"announce/0/60", "sync/-2/60", "delay_resp/-1/60", "sync/7/60", "pdelay_resp/0/60", "sync/0/0"},
					[]string{"grant announce/0/0", "grant sync/-2/0", "grant delay_resp/-1/0", "grant sync/7/0", "grant message_type_3/0/0", "grant sync/0/0"}},
				{0, uniA, nil, nil},
			},
			statusAt:   1,
			wantStatus: map[netip.Addr][]grant{},
			wantDenied: 6,
		},
		{
			name: "cancel ends a grant at once and is acknowledged, even without one",
			steps: []step{
				{0, uniA, []string{"announce/1/60", "sync/-1/60"}, []string{"grant announce/1/60", "grant sync/-1/60"}},
				{1, uniA, []string{"cancel sync"}, []string{"ack sync"}},
				{1, uniA, nil, []string{"192.0.2.1 announce/1"}},
				{1, uniB, []string{"cancel announce"}, []string{"ack announce"}},
				{2, uniA, []string{"cancel announce"}, []string{"ack announce"}},
				{10, uniA, nil, nil},
			},
			statusAt:   10,
			wantStatus: map[netip.Addr][]grant{},
		},
		{
			name: "a new interval restarts the schedule; clients apart",
			steps: []step{
				{0, uniA, []string{"sync/1/60"}, []string{"grant sync/1/60"}},
				{0, uniB, []string{"sync/-1/60"}, []string{"grant sync/-1/60"}},
				{0, uniA, nil, []string{"192.0.2.1 sync/1", "192.0.2.2 sync/-1"}},
				{0.5, uniA, []string{"sync/0/60"}, []string{"grant sync/0/60"}},
				{0.5, uniA, nil, []string{"192.0.2.1 sync/0", "192.0.2.2 sync/-1"}},
			},
			statusAt:   1,
			wantStatus: map[netip.Addr][]grant{uniA: {{"sync", 0, 59.5}}, uniB: {{"sync", -1, 59}}},
		},
		{
			name: "no TLVs to answer: no answer",
			steps: []step{
				{0, uniA, []string{}, nil},
			},
			statusAt:   0,
			wantStatus: map[netip.Addr][]grant{},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newUnicastService(1, -1, 0)
			for i, st := range tt.steps {
				now := uniAt(st.at)
				var got []string
				if st.req == nil {
					for _, d := range s.due(now) {
						got = append(got, fmt.Sprintf("%s %s/%d", d.to, messageName(d.msg), d.logPeriod))
					}
				} else {
					got = answered(s.handle(st.from, requestSig(t, st.req...), now))
				}
				if !slices.Equal(got, st.want) {
					t.Errorf("step %d at %vs: got %q, want %q", i, st.at, got, st.want)
				}
			}
			status := s.status(uniAt(tt.statusAt))
			if len(status) != len(tt.wantStatus) {
				t.Fatalf("status %+v, want %d clients", status, len(tt.wantStatus))
			}
			for _, c := range status {
				want := tt.wantStatus[c.Address]
				var got []grant
				for _, g := range c.Grants {
					if g.State != grantGranted {
						t.Errorf("%s: grant state %q", c.Address, g.State)
					}
					got = append(got, grant{g.Message, g.LogInterval, g.Left.Seconds()})
				}
				if !slices.Equal(got, want) {
					t.Errorf("%s: grants %+v, want %+v", c.Address, got, want)
				}
				if c.Identity != slavePort.String() {
					t.Errorf("%s: identity %q, want %q", c.Address, c.Identity, slavePort)
				}
			}
			if s.denied != tt.wantDenied {
				t.Errorf("denied %d, want %d", s.denied, tt.wantDenied)
			}
		})
	}
}

// TestUnicastServiceLimits: a full client table denies new addresses but
// serves the clients it has; it takes new ones once grants run out. The
// table never holds more than UnicastMaxClients, and the schedule needs no
// more memory per client.
func TestUnicastServiceLimits(t *testing.T) {
	s := newUnicastService(0, 0, 0)
	addr := func(i int) netip.Addr { return netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}) }
	for i := range UnicastMaxClients + 100 {
		now := uniAt(float64(i) / 1000)
		got := answered(s.handle(addr(i), requestSig(t, "sync/0/60"), now))
		want := "grant sync/0/60"
		if i >= UnicastMaxClients {
			want = "grant sync/0/0"
		}
		if len(got) != 1 || got[0] != want {
			t.Fatalf("client %d: %q, want %q", i, got, want)
		}
	}
	if len(s.clients) != UnicastMaxClients || s.denied != 100 {
		t.Fatalf("%d clients, %d denied; want %d and 100", len(s.clients), s.denied, UnicastMaxClients)
	}
	// A client in the table renews even when it is full.
	if got := answered(s.handle(addr(5), requestSig(t, "announce/0/600"), uniAt(1))); !slices.Equal(got, []string{"grant announce/0/300"}) {
		t.Errorf("renewal in a full table: %q", got)
	}
	if d := s.due(uniAt(1)); len(d) != UnicastMaxClients+1 {
		t.Errorf("%d messages due, want one per client and the announce", len(d))
	}
	// At 61 s every sync grant has run out: only client 5 is left, and
	// a new address is served again.
	if got := answered(s.handle(addr(999), requestSig(t, "sync/0/60"), uniAt(61))); !slices.Equal(got, []string{"grant sync/0/60"}) {
		t.Errorf("after expiry: %q", got)
	}
	if len(s.clients) != 2 {
		t.Errorf("%d clients after expiry, want 2", len(s.clients))
	}
	if _, ok := s.granted(addr(5), protocol.MessageSync, uniAt(61)); ok {
		t.Errorf("expired sync grant still granted")
	}
	if iv, ok := s.granted(addr(5), protocol.MessageAnnounce, uniAt(61)); !ok || iv != 0 {
		t.Errorf("announce grant: %d %v", iv, ok)
	}
	if !s.nextDue().Equal(uniAt(2)) {
		t.Errorf("next due %v, want client 5's second announce at 2 s", s.nextDue())
	}
}

// TestUnicastServiceAnswerSize: the answer to a Signaling message has one
// TLV per REQUEST or CANCEL and nothing else, so it is at most two octets
// per request longer than the request.
func TestUnicastServiceAnswerSize(t *testing.T) {
	for _, reqs := range [][]string{
		{"announce/1/60"},
		{"announce/1/60", "sync/0/60", "delay_resp/0/60"},
		{"cancel sync", "cancel announce"},
		{"sync/-7/60", "cancel sync"},
	} {
		sig := requestSig(t, reqs...)
		reqSize, ansSize := 0, 0
		for _, tlv := range sig.TLVs {
			switch r := tlv.(type) {
			case *protocol.RequestUnicastTransmissionTLV:
				reqSize += 4 + int(r.LengthField)
			case *protocol.CancelUnicastTransmissionTLV:
				reqSize += 4 + int(r.LengthField)
			}
		}
		s := newUnicastService(0, 0, 0)
		ans := s.handle(uniA, sig, uniAt(0))
		if len(ans) != len(sig.TLVs) {
			t.Errorf("%q: %d answer TLVs", reqs, len(ans))
		}
		for _, tlv := range ans {
			switch a := tlv.(type) {
			case *protocol.GrantUnicastTransmissionTLV:
				ansSize += 4 + int(a.LengthField)
			case *protocol.AcknowledgeCancelUnicastTransmissionTLV:
				ansSize += 4 + int(a.LengthField)
			}
		}
		if ansSize > reqSize+2*len(reqs) {
			t.Errorf("%q: answer TLVs %d octets for %d of requests", reqs, ansSize, reqSize)
		}
	}
}

// masterServicePort is a master-only port with unicast_listen on a fake
// transport, announce 2^-3 s, sync 2^-4 s, delay requests 2^0 s.
func masterServicePort(t testing.TB) (*portRun, *fakeTransport) {
	t.Helper()
	tr := newFakeTransport(time.Unix(1_700_000_000, 0))
	src, err := NewSource(SourceConfig{Interface: "fake0", Role: RoleMasterOnly, Network: NetworkUDPv4,
		LogAnnounceInterval: -3, LogSyncInterval: -4, LogMinDelayReqInterval: 0, UnicastListen: true}, offsetTimebase{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	p, err := newPortRun(src, masterPort.ClockIdentity, tr, nopReporter{})
	if err != nil {
		t.Fatal(err)
	}
	return p, tr
}

// feed hands the port b from the address from, as a test-side receive.
func feed(t *testing.T, tr *fakeTransport, msg protocol.Packet, from netip.Addr) {
	t.Helper()
	b, err := protocol.Bytes(msg)
	if err != nil {
		b, err = msg.(*protocol.Signaling).MarshalBinary()
	}
	if err != nil {
		t.Fatal(err)
	}
	tr.data <- b
	tr.in <- Received{From: Address{IP: from}, RX: time.Now(), Stamping: netstamp.StampKernel}
}

func delayReqFrom(seq uint16, unicast bool) *protocol.SyncDelayReq {
	req := &protocol.SyncDelayReq{Header: protocol.Header{
		SdoIDAndMsgType: protocol.NewSdoIDAndMsgType(protocol.MessageDelayReq, 0), Version: protocol.Version,
		MessageLength: 44, SourcePortIdentity: slavePort, SequenceID: seq, ControlField: 1, LogMessageInterval: 0x7f}}
	if unicast {
		req.FlagField = protocol.FlagUnicast
	}
	return req
}

// TestPortRunUnicastService: a master-only port with unicast_listen
// answers a client's requests in one Signaling message addressed to the
// client's port, then sends it unicast Announce, Sync and Follow_Up (marked
// unicast, at the granted intervals, the Follow_Up with its Sync's sequence
// id) beside the multicast ones, answers its unicast Delay_Req unicast and
// ignores a unicast Delay_Req from an address without a grant; its status
// lists the client.
func TestPortRunUnicastService(t *testing.T) {
	p, tr := masterServicePort(t)
	runPort(t, p)
	waitSent(t, tr, "multicast announces", ofType(protocol.MessageAnnounce), 1) // MASTER now

	sig := requestSig(t, "announce/-2/3600", "sync/-3/3600", "delay_resp/0/3600")
	sig.Header = protocol.Header{SdoIDAndMsgType: protocol.NewSdoIDAndMsgType(protocol.MessageSignaling, 0), Version: protocol.Version,
		MessageLength: 44 + 3*10, FlagField: protocol.FlagUnicast, SourcePortIdentity: slavePort, ControlField: 5, LogMessageInterval: 0x7f}
	feed(t, tr, sig, uniA)
	ans := waitSent(t, tr, "grants", ofType(protocol.MessageSignaling), 1)
	if len(ans) != 1 || ans[0].to.IP != uniA {
		t.Fatalf("answers %+v, want one to %s", ans, uniA)
	}
	g := ans[0].pkt.(*protocol.Signaling)
	if got := answered(g.TLVs); !slices.Equal(got, []string{"grant announce/-2/300", "grant sync/-3/300", "grant delay_resp/0/300"}) ||
		g.TargetPortIdentity != slavePort || g.FlagField&protocol.FlagUnicast == 0 || int(g.MessageLength) != 44+3*12 {
		t.Errorf("answer %+v: %q", g.Header, got)
	}

	toA := func(typ protocol.MessageType) func(sentMessage) bool {
		return func(m sentMessage) bool { return m.pkt.MessageType() == typ && m.to.IP == uniA }
	}
	anns := waitSent(t, tr, "unicast announces", toA(protocol.MessageAnnounce), 2)
	fus := waitSent(t, tr, "unicast follow-ups", toA(protocol.MessageFollowUp), 3)
	syncs := tr.find(toA(protocol.MessageSync))
	if a := anns[0].pkt.(*protocol.Announce); a.FlagField&protocol.FlagUnicast == 0 || a.LogMessageInterval != -2 {
		t.Errorf("unicast announce %+v", a.Header)
	}
	for i, m := range fus {
		fu, s := m.pkt.(*protocol.FollowUp), syncs[i].pkt.(*protocol.SyncDelayReq)
		if fu.SequenceID != s.SequenceID || s.FlagField&protocol.FlagUnicast == 0 || fu.FlagField&protocol.FlagUnicast == 0 ||
			s.LogMessageInterval != -3 || !syncs[i].event {
			t.Errorf("unicast sync %d %+v, follow-up %+v", i, s.Header, fu.Header)
		}
	}
	seqs := map[uint16]bool{}
	for _, m := range tr.find(ofType(protocol.MessageSync)) {
		seq := m.pkt.(*protocol.SyncDelayReq).SequenceID
		if seqs[seq] {
			t.Errorf("sync sequence id %d sent twice (multicast and unicast share one counter)", seq)
		}
		seqs[seq] = true
	}

	feed(t, tr, delayReqFrom(11, true), uniA)
	resp := waitSent(t, tr, "unicast delay responses", toA(protocol.MessageDelayResp), 1)[0].pkt.(*protocol.DelayResp)
	if resp.SequenceID != 11 || resp.FlagField&protocol.FlagUnicast == 0 || resp.RequestingPortIdentity != slavePort || resp.LogMessageInterval != 0 {
		t.Errorf("unicast delay response %+v", resp)
	}
	feed(t, tr, delayReqFrom(12, true), uniB)
	feed(t, tr, delayReqFrom(13, false), uniB)
	multi := waitSent(t, tr, "multicast delay response", func(m sentMessage) bool {
		return m.pkt.MessageType() == protocol.MessageDelayResp && m.to.IP == IPv4Primary
	}, 1)
	if r := multi[0].pkt.(*protocol.DelayResp); r.SequenceID != 13 || r.FlagField&protocol.FlagUnicast != 0 {
		t.Errorf("multicast delay response %+v", r.Header)
	}
	if got := tr.find(func(m sentMessage) bool { return m.to.IP == uniB }); len(got) != 0 {
		t.Errorf("sent to a client without a grant: %+v", got)
	}

	deadline := time.Now().Add(5 * time.Second)
	for {
		st := p.s.Status()
		if len(st.UnicastClients) == 1 && st.Dropped["no_unicast_grant"] == 1 {
			c := st.UnicastClients[0]
			if c.Address != uniA || c.Identity != slavePort.String() || len(c.Grants) != 3 || c.Grants[1].LogInterval != -3 ||
				c.Grants[0].Left <= 290*time.Second || c.Grants[0].Left > UnicastMaxGrant {
				t.Errorf("status client %+v", c)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("status %+v", st)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestNewSourceUnicastListen: unicast_listen needs UDP and a port that
// may become master.
func TestNewSourceUnicastListen(t *testing.T) {
	for _, tt := range []struct {
		name    string
		cfg     SourceConfig
		wantErr bool
	}{
		{"udp4 master_only", SourceConfig{Network: NetworkUDPv4, Role: RoleMasterOnly}, false},
		{"udp6 auto", SourceConfig{Network: NetworkUDPv6, Role: RoleAuto}, false},
		{"l2", SourceConfig{Network: NetworkL2, Role: RoleMasterOnly}, true},
		{"slave_only", SourceConfig{Network: NetworkUDPv4, Role: RoleSlaveOnly}, true},
		{"default role (slave_only)", SourceConfig{Network: NetworkUDPv4}, true},
	} {
		tt.cfg.Interface, tt.cfg.UnicastListen = "eth0", true
		_, err := NewSource(tt.cfg, offsetTimebase{}, nil)
		if (err != nil) != tt.wantErr || (err != nil && !strings.Contains(err.Error(), "eth0: unicast_listen needs")) {
			t.Errorf("%s: %v, want error %t", tt.name, err, tt.wantErr)
		}
	}
}
