package ptp

import (
	"testing"
	"time"

	"github.com/facebook/time/ptp/protocol"

	"github.com/timed-project/timed/internal/netstamp"
)

// newPeerPort is a peer-to-peer port run on a fake transport whose event
// messages leave at tx (system clock), on a disciplined clock off from the
// system clock; it is driven by calling its methods, not run.
func newPeerPort(t *testing.T, id protocol.PortIdentity, role Role, tx time.Time, off time.Duration) (*portRun, *fakeTransport) {
	t.Helper()
	src, err := NewSource(SourceConfig{Interface: "fake0", Role: role, Network: NetworkUDPv4, Domain: 2,
		LogAnnounceInterval: 1, LogSyncInterval: 0, LogMinDelayReqInterval: 0, DelayMechanism: PeerToPeer},
		offsetTimebase{off: off}, nil)
	if err != nil {
		t.Fatal(err)
	}
	tr := newFakeTransport(tx)
	p, err := newPortRun(src, id.ClockIdentity, tr, nopReporter{})
	if err != nil {
		t.Fatal(err)
	}
	return p, tr
}

// deliver hands msg, as it goes on the wire, to p as if it arrived at rx
// (system clock).
func deliver(t *testing.T, p *portRun, msg protocol.Packet, rx time.Time) {
	t.Helper()
	b, err := protocol.Bytes(msg)
	if err != nil {
		t.Fatal(err)
	}
	p.handle(b, Received{N: len(b), From: Address{IP: IPv4PeerDelay}, RX: rx, Stamping: netstamp.StampKernel})
}

// Two peer-to-peer ports measure the link between them: the requester's
// Pdelay_Req, the responder's two-step Pdelay_Resp and
// Pdelay_Resp_Follow_Up, all to the peer-delay group, give the requester's
// Slave the mean link delay [(t4 − t1) − (t3 − t2) − corrections] / 2,
// whatever the two clocks' offsets (the responder's timestamps are on its
// own timescale). The responder answers in any state and ignores its own
// requests.
func TestPeerDelayExchange(t *testing.T) {
	sys := time.Unix(1_700_000_000, 0)
	tests := []struct {
		name           string
		reqOff, rspOff time.Duration // the disciplined clocks against the system clock
		t1, t2, t3, t4 time.Duration // system-clock stamps after sys
		reqCorr        float64       // a transparent clock's residence time in the Pdelay_Req
		wantDelay      float64       // ns
	}{
		{"same clocks", 0, 0, 0, 1000, 51000, 52000, 0, 1000},
		{"responder far ahead", 0, 3 * time.Hour, 0, 2500, 10_002_500, 10_005_000, 0, 2500},
		{"requester behind", -time.Second, 5 * time.Millisecond, 100, 700, 900, 1700, 0, 700},
		{"transparent clock residence", 0, 0, 0, 1500, 2500, 4000, 1000, 1000},
		{"turnaround longer than the round trip", 0, 0, 0, 10, 5000, 4990, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, reqTr := newPeerPort(t, slavePort, RoleSlaveOnly, sys.Add(tt.t1), tt.reqOff)
			rsp, rspTr := newPeerPort(t, masterPort, RoleAuto, sys.Add(tt.t3), tt.rspOff)
			if _, ok := req.slave.MeanPathDelay(); ok {
				t.Fatal("mean link delay before any exchange")
			}
			pdGroup := Address{IP: IPv4PeerDelay}

			req.peerDelayRequest(sys)
			sent := reqTr.find(ofType(protocol.MessagePDelayReq))
			if len(sent) != 1 || !sent[0].event || sent[0].to.IP != pdGroup.IP {
				t.Fatalf("pdelay requests %+v", sent)
			}
			pr := sent[0].pkt.(*protocol.PDelayReq)
			if pr.SourcePortIdentity != slavePort || pr.DomainNumber != 2 {
				t.Fatalf("pdelay request %+v", pr.Header)
			}
			// Not due again within the interval.
			req.peerDelayRequest(sys.Add(500 * time.Millisecond))
			if n := len(reqTr.find(ofType(protocol.MessagePDelayReq))); n != 1 {
				t.Errorf("%d pdelay requests within one interval", n)
			}
			// A port ignores its own request looped back.
			deliver(t, req, pr, sys.Add(tt.t2))
			if n := len(reqTr.find(ofType(protocol.MessagePDelayResp))); n != 0 {
				t.Errorf("answered its own request %d times", n)
			}

			pr.CorrectionField = corr(tt.reqCorr)
			deliver(t, rsp, pr, sys.Add(tt.t2))
			resps := rspTr.find(ofType(protocol.MessagePDelayResp))
			fus := rspTr.find(ofType(protocol.MessagePDelayRespFollowUp))
			if len(resps) != 1 || len(fus) != 1 {
				t.Fatalf("%d responses, %d follow-ups", len(resps), len(fus))
			}
			resp := resps[0].pkt.(*protocol.PDelayResp)
			fu := fus[0].pkt.(*protocol.PDelayRespFollowUp)
			// The responder's PTP timescale: its disciplined clock plus the
			// UTC offset it last took from its leap table (none here).
			utc := time.Duration(rsp.timeProps.CurrentUTCOffset) * time.Second
			switch {
			case !resps[0].event || resps[0].to.IP != pdGroup.IP || fus[0].event || fus[0].to.IP != pdGroup.IP:
				t.Errorf("response to %v (event %t), follow-up to %v (event %t)", resps[0].to, resps[0].event, fus[0].to, fus[0].event)
			case resp.SequenceID != pr.SequenceID || resp.RequestingPortIdentity != slavePort || resp.SourcePortIdentity != masterPort ||
				resp.FlagField&protocol.FlagTwoStep == 0 || resp.CorrectionField != 0 || resp.DomainNumber != 2 ||
				resp.ControlField != 5 || resp.LogMessageInterval != 0x7f:
				t.Errorf("pdelay response %+v", resp)
			case fu.SequenceID != pr.SequenceID || fu.RequestingPortIdentity != slavePort || fu.SourcePortIdentity != masterPort ||
				fu.CorrectionField != corr(tt.reqCorr) || fu.DomainNumber != 2 || fu.LogMessageInterval != 0x7f:
				t.Errorf("pdelay response follow-up %+v", fu)
			case !resp.RequestReceiptTimestamp.Time().Equal(sys.Add(tt.t2 + tt.rspOff + utc)):
				t.Errorf("requestReceiptTimestamp %v, want %v", resp.RequestReceiptTimestamp.Time(), sys.Add(tt.t2+tt.rspOff+utc))
			case !fu.ResponseOriginTimestamp.Time().Equal(sys.Add(tt.t3 + tt.rspOff + utc)):
				t.Errorf("responseOriginTimestamp %v, want %v", fu.ResponseOriginTimestamp.Time(), sys.Add(tt.t3+tt.rspOff+utc))
			}

			deliver(t, req, resp, sys.Add(tt.t4))
			if _, ok := req.slave.MeanPathDelay(); ok {
				t.Fatal("mean link delay before the follow-up")
			}
			deliver(t, req, fu, sys.Add(tt.t4+time.Millisecond))
			d, ok := req.slave.MeanPathDelay()
			if !ok || d.Nanoseconds() != tt.wantDelay {
				t.Errorf("mean link delay %v (%t), want %v ns", d, ok, tt.wantDelay)
			}
		})
	}
}

// A peer-to-peer port in the MASTER state, run on a fake transport, sends
// Pdelay_Req to the peer-delay group, answers a Pdelay_Req and leaves a
// Delay_Req unanswered; an end-to-end port neither sends nor answers
// Pdelay_Req.
func TestPortRunPeerToPeerMaster(t *testing.T) {
	tests := []struct {
		name      string
		mechanism DelayMechanism
	}{
		{"p2p", PeerToPeer},
		{"e2e", EndToEnd},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr := newFakeTransport(time.Unix(1_700_000_000, 0))
			src, err := NewSource(SourceConfig{Interface: "fake0", Role: RoleMasterOnly, Network: NetworkUDPv4, Domain: 3,
				LogAnnounceInterval: -3, LogSyncInterval: -4, LogMinDelayReqInterval: -3, DelayMechanism: tt.mechanism},
				offsetTimebase{}, nil)
			if err != nil {
				t.Fatal(err)
			}
			p, err := newPortRun(src, masterPort.ClockIdentity, tr, nopReporter{})
			if err != nil {
				t.Fatal(err)
			}
			runPort(t, p)
			waitFor := func(what string, match func(sentMessage) bool, n int) []sentMessage {
				t.Helper()
				return waitSent(t, tr, what, match, n)
			}
			waitFor("follow-ups", ofType(protocol.MessageFollowUp), 1)
			send := func(msg protocol.Packet) {
				b, err := protocol.Bytes(msg)
				if err != nil {
					t.Fatal(err)
				}
				tr.data <- b
				tr.in <- Received{From: Address{IP: IPv4Primary}, RX: time.Unix(1_700_000_001, 0), Stamping: netstamp.StampKernel}
			}
			send(&protocol.SyncDelayReq{Header: protocol.Header{
				SdoIDAndMsgType: protocol.NewSdoIDAndMsgType(protocol.MessageDelayReq, 0), Version: protocol.Version,
				MessageLength: 44, DomainNumber: 3, SourcePortIdentity: slavePort, SequenceID: 9, ControlField: 1,
				LogMessageInterval: 0x7f}})
			preq := protocol.ReqPDelay(slavePort.ClockIdentity, slavePort.PortNumber, 12)
			preq.DomainNumber = 3
			send(preq)
			if tt.mechanism == PeerToPeer {
				reqs := waitFor("pdelay requests", ofType(protocol.MessagePDelayReq), 2)
				if reqs[0].to.IP != IPv4PeerDelay || reqs[1].pkt.(*protocol.PDelayReq).SequenceID != 1 {
					t.Errorf("pdelay requests to %v, sequence ids %d, %d", reqs[0].to,
						reqs[0].pkt.(*protocol.PDelayReq).SequenceID, reqs[1].pkt.(*protocol.PDelayReq).SequenceID)
				}
				fu := waitFor("pdelay follow-ups", ofType(protocol.MessagePDelayRespFollowUp), 1)[0].pkt.(*protocol.PDelayRespFollowUp)
				if fu.SequenceID != 12 || fu.RequestingPortIdentity != slavePort {
					t.Errorf("pdelay follow-up %+v", fu)
				}
				if n := len(tr.find(ofType(protocol.MessageDelayResp))); n != 0 {
					t.Errorf("answered a Delay_Req %d times with the peer delay mechanism", n)
				}
				return
			}
			waitFor("delay responses", ofType(protocol.MessageDelayResp), 1)
			time.Sleep(300 * time.Millisecond) // two pdelay intervals
			if n := len(tr.find(ofType(protocol.MessagePDelayReq))) + len(tr.find(ofType(protocol.MessagePDelayResp))); n != 0 {
				t.Errorf("%d peer delay messages with the end-to-end mechanism", n)
			}
		})
	}
}

// Messages that no state machine may see are dropped and counted by
// reason in the port's status: undecodable or truncated ones as
// "malformed", another domain's as "wrong_domain".
func TestPortDropsBadMessages(t *testing.T) {
	sys := time.Unix(1_700_000_000, 0)
	req := protocol.ReqPDelay(masterPort.ClockIdentity, masterPort.PortNumber, 0)
	req.DomainNumber = 2
	good, err := protocol.Bytes(req)
	if err != nil {
		t.Fatal(err)
	}
	otherDomain := append([]byte(nil), good...)
	otherDomain[4] = 3
	tests := []struct {
		name   string
		msg    []byte
		reason string
	}{
		{"empty", nil, "malformed"},
		{"truncated header", good[:20], "malformed"},
		{"truncated body", good[:len(good)-12], "malformed"},
		{"unknown type", append([]byte{0x0e}, good[1:]...), "malformed"},
		{"other domain", otherDomain, "wrong_domain"},
		{"good, answered", good, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, tr := newPeerPort(t, slavePort, RoleAuto, sys, 0)
			p.handle(tc.msg, Received{N: len(tc.msg), From: Address{IP: IPv4PeerDelay}, RX: sys, Stamping: netstamp.StampKernel})
			p.publish()
			got := p.s.Status().Dropped
			tr.mu.Lock()
			sent := len(tr.sent)
			tr.mu.Unlock()
			if tc.reason == "" {
				if len(got) != 0 || sent == 0 {
					t.Errorf("dropped %v and %d messages sent, want none dropped and an answer", got, sent)
				}
				return
			}
			if got[tc.reason] != 1 || len(got) != 1 {
				t.Errorf("dropped %v, want one %s", got, tc.reason)
			}
			if sent != 0 {
				t.Errorf("%d messages sent in answer, want none", sent)
			}
		})
	}
}
