package ptp

import (
	"net/netip"
	"testing"
	"time"

	"github.com/facebook/time/ptp/protocol"

	"github.com/timed-project/timed/internal/netstamp"
)

// FuzzHandlers feeds arbitrary bytes through protocol.DecodePacket into the
// Port, Slave and PeerDelay handlers: whatever arrives, they must not panic,
// and the port must stay in a valid state with a reason.
func FuzzHandlers(f *testing.F) {
	seed := func(p protocol.Packet) {
		b, err := protocol.Bytes(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	a := announce(masterPort, 0x70, 6, 1)
	seed(a)
	seed(syncMsg(1, false, masterT0, corr(12.5)))
	seed(syncMsg(1, true, masterT0, corr(-3)))
	seed(followUpMsg(1, masterT0, corr(1)))
	seed(delayRespMsg(0, masterT0, corr(0.5)))
	req := protocol.ReqPDelay(slavePort.ClockIdentity, slavePort.PortNumber, 0)
	seed(pdelayResp(req, responderT0, true, 0))
	seed(pdelayResp(req, responderT0, false, corr(10000)))
	seed(pdelayFollowUp(req, responderT0, 0))
	// Signaling with each unicast negotiation TLV, and broken ones.
	sig := func(tlv protocol.TLV, size int) []byte {
		m := &protocol.Signaling{Header: protocol.Header{
			SdoIDAndMsgType: protocol.NewSdoIDAndMsgType(protocol.MessageSignaling, 0), Version: protocol.Version,
			MessageLength: uint16(44 + size), FlagField: protocol.FlagUnicast, SourcePortIdentity: masterPort, LogMessageInterval: 0x7f,
		}, TargetPortIdentity: wildcardPort, TLVs: []protocol.TLV{tlv}}
		b, err := m.MarshalBinary()
		if err != nil {
			f.Fatal(err)
		}
		return b
	}
	request := sig(&protocol.RequestUnicastTransmissionTLV{
		TLVHead:            protocol.TLVHead{TLVType: protocol.TLVRequestUnicastTransmission, LengthField: 6},
		MsgTypeAndReserved: protocol.NewUnicastMsgTypeAndFlags(protocol.MessageSync, 0), LogInterMessagePeriod: -3, DurationField: 60}, 10)
	grant := sig(&protocol.GrantUnicastTransmissionTLV{
		TLVHead:            protocol.TLVHead{TLVType: protocol.TLVGrantUnicastTransmission, LengthField: 8},
		MsgTypeAndReserved: protocol.NewUnicastMsgTypeAndFlags(protocol.MessageAnnounce, 0), LogInterMessagePeriod: 1, DurationField: 60, Renewal: 1}, 12)
	deny := sig(&protocol.GrantUnicastTransmissionTLV{
		TLVHead:            protocol.TLVHead{TLVType: protocol.TLVGrantUnicastTransmission, LengthField: 8},
		MsgTypeAndReserved: protocol.NewUnicastMsgTypeAndFlags(protocol.MessageSync, 0)}, 12)
	cancel := sig(cancelRequest(uniA, protocol.MessageAnnounce).tlv, 6)
	ack := sig(&protocol.AcknowledgeCancelUnicastTransmissionTLV{
		TLVHead:         protocol.TLVHead{TLVType: protocol.TLVAcknowledgeCancelUnicastTransmission, LengthField: 2},
		MsgTypeAndFlags: protocol.NewUnicastMsgTypeAndFlags(protocol.MessageSync, 0)}, 6)
	for _, b := range [][]byte{request, grant, deny, cancel, ack} {
		f.Add(b)
		f.Add(b[:len(b)-3]) // TLV cut short
		long := append(append([]byte{}, b...), make([]byte, 600)...)
		long[2], long[3] = byte(len(long)>>8), byte(len(long))
		f.Add(long) // message longer than its TLVs
		bad := append([]byte{}, b...)
		bad[44+2], bad[44+3] = 0xff, 0xf0 // TLV length past the end
		f.Add(bad)
	}
	f.Add(append(append([]byte{}, grant...), cancel[44:]...)) // two TLVs, length field not counting the second
	// A client's renewal as ptp4l sends it: three requests in one message,
	// and a request with a cancellation.
	three := append(append(append([]byte{}, request...), request[44:]...), request[44:]...)
	three[2], three[3] = 0, byte(len(three))
	three[44+4] = byte(protocol.MessageAnnounce) << 4
	three[54+4] = byte(protocol.MessageDelayResp) << 4
	f.Add(three)
	reqCancel := append(append([]byte{}, request...), cancel[44:]...)
	reqCancel[2], reqCancel[3] = 0, byte(len(reqCancel))
	f.Add(reqCancel)
	f.Add([]byte{})
	f.Add([]byte{0x0b, 0x02, 0x00, 0x40})

	f.Fuzz(func(t *testing.T, data []byte) {
		fuzzMasterService(t, data)
		pkt, err := protocol.DecodePacket(data)
		if err != nil {
			return
		}
		cfg := portConfig(248)
		port, err := NewPort(cfg)
		if err != nil {
			t.Fatal(err)
		}
		port.Initialize(at(0))
		s, err := NewSlave(SlaveConfig{Identity: slavePort, Mechanism: EndToEnd, Timestamps: netstamp.StampKernel})
		if err != nil {
			t.Fatal(err)
		}
		pd := newPeerDelay(t)
		_ = pd.RequestSent(pd.NewRequest().SequenceID, masterT0)
		local := masterT0.Add(time.Millisecond)

		switch m := pkt.(type) {
		case *protocol.Announce:
			for i := range 3 {
				_ = port.HandleAnnounce(m, at(float64(i)))
				m.SequenceID++
				port.Tick(at(float64(i)))
			}
			port.MasterClockSelected(at(3))
			port.Tick(at(10))
			if mm, ok := port.Master(); ok {
				_, _ = mm.TimeProperties.ToUTC(masterT0)
			}
		case *protocol.SyncDelayReq:
			s.SetMaster(m.SourcePortIdentity)
			_, _, _ = s.HandleSync(m, local)
			_ = s.DelayReqSent(m.SequenceID, local)
			s.SetPeerDelay(IntervalOf(time.Microsecond))
			_, _, _ = s.HandleSync(m, local)
		case *protocol.FollowUp:
			s.SetMaster(m.SourcePortIdentity)
			s.SetPeerDelay(IntervalOf(time.Microsecond))
			_, _, _ = s.HandleFollowUp(m)
			sy := syncMsg(m.SequenceID, true, time.Time{}, 0)
			sy.SourcePortIdentity = m.SourcePortIdentity
			_, _, _ = s.HandleSync(sy, local)
		case *protocol.DelayResp:
			s.SetMaster(m.SourcePortIdentity)
			_, _, _ = s.HandleSync(syncMsg(1, false, masterT0, 0), local)
			_ = s.DelayReqSent(m.SequenceID, local)
			_, _ = s.HandleDelayResp(m)
		case *protocol.PDelayResp:
			_, _, _ = pd.HandleResp(m, local)
			fu := protocol.RespFollowUpPDelay(m.SourcePortIdentity.ClockIdentity, m.SourcePortIdentity.PortNumber, m.RequestReceiptTimestamp, req)
			fu.SequenceID = m.SequenceID
			_, _, _ = pd.HandleRespFollowUp(fu)
		case *protocol.Signaling:
			n := newUnicastNegotiation([]netip.Addr{uniA}, unicastIntervals{announce: 1, sync: 0, endToEnd: true})
			n.due(at(0))
			n.announced(uniA, m.SourcePortIdentity)
			n.selectMaster(uniA, at(0))
			n.due(at(0))
			if _, err := n.handle(uniA, m, at(1)); err != nil {
				t.Fatal(err)
			}
			n.due(at(2))
			for _, st := range n.status(at(2)) {
				for _, g := range st.Grants {
					if g.State == "" || g.Left < 0 || g.Left > time.Duration(^uint32(0))*time.Second {
						t.Fatalf("grant status %+v", g)
					}
				}
			}
			n.stop()
		case *protocol.PDelayRespFollowUp:
			_, _, _ = pd.HandleResp(pdelayResp(req, responderT0, true, 0), local)
			_, _, _ = pd.HandleRespFollowUp(m)
		}
		if _, ok := protocol.PortStateToString[port.State()]; !ok || port.Reason() == "" {
			t.Fatalf("port in state %d with reason %q", port.State(), port.Reason())
		}
	})
}

// fuzzMasterService hands data to a MASTER port with unicast_listen, as if
// from 192.0.2.1: it answers a Signaling message of its domain, to it or
// to every port, that holds REQUEST or CANCEL TLVs with exactly one message,
// one TLV per REQUEST or CANCEL in it, grants no longer than
// UnicastMaxGrant, and sends only to a client it granted something.
func fuzzMasterService(t *testing.T, data []byte) {
	p, tr := masterServicePort(t)
	p.port.Initialize(at(0))
	p.port.Tick(at(10))
	if p.port.State() != protocol.PortStateMaster {
		t.Fatalf("master-only port in state %s", p.port.State())
	}
	p.handle(data, Received{N: len(data), From: Address{IP: uniA}, RX: masterT0, Stamping: netstamp.StampKernel})
	p.sendMasterMessages(time.Now())
	answers := tr.find(ofType(protocol.MessageSignaling))
	if len(answers) > 1 {
		t.Fatalf("%d answers to one message", len(answers))
	}
	asked := 0
	if pkt, err := protocol.DecodePacket(data); err == nil {
		if sig, ok := pkt.(*protocol.Signaling); ok && data[4] == p.s.cfg.Domain &&
			(sig.TargetPortIdentity == wildcardPort || sig.TargetPortIdentity == p.self) {
			for _, tlv := range sig.TLVs {
				switch tlv.(type) {
				case *protocol.RequestUnicastTransmissionTLV, *protocol.CancelUnicastTransmissionTLV:
					asked++
				}
			}
		}
	}
	if len(answers) == 1 {
		a := answers[0].pkt.(*protocol.Signaling)
		if len(a.TLVs) != asked || answers[0].to.IP != uniA {
			t.Fatalf("answer with %d TLVs to %v for %d requests", len(a.TLVs), answers[0].to, asked)
		}
		for _, tlv := range a.TLVs {
			if g, ok := tlv.(*protocol.GrantUnicastTransmissionTLV); ok && time.Duration(g.DurationField)*time.Second > UnicastMaxGrant {
				t.Fatalf("granted %d s", g.DurationField)
			}
		}
	} else if asked > 0 {
		t.Fatalf("%d requests unanswered", asked)
	}
	clients := p.service.status(time.Now())
	if len(clients) > 1 || (len(clients) == 1 && clients[0].Address != uniA) {
		t.Fatalf("clients %+v", clients)
	}
	for _, m := range tr.find(func(m sentMessage) bool { return m.to.IP == uniA && m.pkt.MessageType() != protocol.MessageSignaling }) {
		typ := m.pkt.MessageType()
		if typ == protocol.MessageFollowUp {
			typ = protocol.MessageSync
		}
		if _, ok := p.service.granted(uniA, typ, time.Now()); !ok {
			t.Fatalf("%s sent to %s without a grant", m.pkt.MessageType(), uniA)
		}
	}
}
