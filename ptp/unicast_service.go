package ptp

import (
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/facebook/time/ptp/protocol"
	"go.uber.org/zap"
)

// The master's side of unicast negotiation (IEEE 1588-2019 clause 16.1),
// what ptp4l calls unicast_listen: a port in the MASTER state grants
// clients' REQUEST_UNICAST_TRANSMISSION TLVs for Announce, Sync and
// Delay_Resp, and then sends each client its Announce and Sync (with
// Follow_Up) at the granted interval and answers its Delay_Req unicast.
//
// This is a server that answers the network, so it is bounded:
//   - at most UnicastMaxClients clients a port; the requests of any further
//     address are denied (durationField 0) until a client's grants end;
//   - a grant lasts at most UnicastMaxGrant, whatever was asked for (the
//     grantor may grant a shorter duration than requested; the client
//     renews before it ends);
//   - the grant carries the requested interval, as the standard wants it
//     echoed, so a request for messages faster than the port's own
//     interval for that type (or slower than 2^6 s) is denied rather than
//     granted at another rate: the client may ask again at a rate the port
//     offers;
//   - each Signaling message is answered by at most one Signaling message
//     with one TLV per REQUEST or CANCEL TLV in it (a GRANT TLV is two
//     octets longer than its REQUEST, an ACKNOWLEDGE_CANCEL as long as its
//     CANCEL), and messages go only to clients holding a grant for them.
//
// Grants that ran out are dropped; a CANCEL ends a grant at once and is
// acknowledged.

// UnicastMaxClients is how many unicast clients a port serves at most.
const UnicastMaxClients = 256

// UnicastMaxGrant is the longest grant a port gives; longer requests are
// granted for this long.
const UnicastMaxGrant = 300 * time.Second

// unicastMaxLogPeriod is the slowest message interval granted (log2 s),
// the slowest a port can be configured for.
const unicastMaxLogPeriod = 6

// unicastServed are the message types a port grants, in the order the
// status lists them.
var unicastServed = [...]protocol.MessageType{protocol.MessageAnnounce, protocol.MessageSync, protocol.MessageDelayResp}

// UnicastClientStatus is a unicast client a master port serves, as
// `timectl ptp` shows it.
type UnicastClientStatus struct {
	// Address is the client's IP address.
	Address netip.Addr
	// Identity is the port identity of its last request.
	Identity string
	// Grants are the message types granted it, Announce first, each with
	// State "granted".
	Grants []UnicastGrantStatus
}

// serviceGrant is one message type granted to a client.
type serviceGrant struct {
	logPeriod int8
	expires   time.Time // zero: not granted
	next      time.Time // when the next message is due (Announce, Sync)
}

// unicastClient is one client of the service.
type unicastClient struct {
	addr     netip.Addr
	identity protocol.PortIdentity
	grants   [len(unicastServed)]serviceGrant
}

func (c *unicastClient) active(now time.Time) bool {
	for _, g := range c.grants {
		if now.Before(g.expires) {
			return true
		}
	}
	return false
}

// unicastDue is a message due to a client.
type unicastDue struct {
	to  netip.Addr
	msg protocol.MessageType
	// logPeriod is the granted interval, which the message carries.
	logPeriod int8
}

// unicastService keeps the grants of a master port's unicast clients. It
// does no I/O and reads no clock: what it wants sent it returns.
type unicastService struct {
	// minLog is the shortest interval granted for each of unicastServed:
	// the port's own.
	minLog  [len(unicastServed)]int8
	clients []*unicastClient
	// denied counts the REQUEST TLVs denied.
	denied uint64
}

func newUnicastService(announce, sync, delayResp int8) *unicastService {
	return &unicastService{minLog: [...]int8{announce, sync, delayResp}}
}

func servedIndex(t protocol.MessageType) int {
	for i, s := range unicastServed {
		if s == t {
			return i
		}
	}
	return -1
}

func (s *unicastService) client(a netip.Addr) *unicastClient {
	for _, c := range s.clients {
		if c.addr == a {
			return c
		}
	}
	return nil
}

// handle takes the REQUEST and CANCEL TLVs of a Signaling message from a,
// received at now, and returns the TLVs of the answer: a GRANT (duration
// 0 for a denial) per REQUEST and an ACKNOWLEDGE_CANCEL per CANCEL, in
// their order. Other TLVs are skipped; nil means no answer.
func (s *unicastService) handle(a netip.Addr, sig *protocol.Signaling, now time.Time) []protocol.TLV {
	a = a.Unmap()
	s.expire(now)
	var out []protocol.TLV
	for _, tlv := range sig.TLVs {
		switch t := tlv.(type) {
		case *protocol.RequestUnicastTransmissionTLV:
			out = append(out, s.request(a, sig.SourcePortIdentity, t, now))
		case *protocol.CancelUnicastTransmissionTLV:
			typ := t.MsgTypeAndFlags.MsgType()
			if c, i := s.client(a), servedIndex(typ); c != nil && i >= 0 {
				c.grants[i] = serviceGrant{}
			}
			out = append(out, &protocol.AcknowledgeCancelUnicastTransmissionTLV{
				TLVHead:         protocol.TLVHead{TLVType: protocol.TLVAcknowledgeCancelUnicastTransmission, LengthField: 2},
				MsgTypeAndFlags: protocol.NewUnicastMsgTypeAndFlags(typ, 0),
			})
		}
	}
	s.expire(now)
	return out
}

// request grants or denies one REQUEST_UNICAST_TRANSMISSION TLV.
func (s *unicastService) request(a netip.Addr, id protocol.PortIdentity, r *protocol.RequestUnicastTransmissionTLV, now time.Time) protocol.TLV {
	typ := r.MsgTypeAndReserved.MsgType()
	grant := &protocol.GrantUnicastTransmissionTLV{
		TLVHead:               protocol.TLVHead{TLVType: protocol.TLVGrantUnicastTransmission, LengthField: 8},
		MsgTypeAndReserved:    protocol.NewUnicastMsgTypeAndFlags(typ, 0),
		LogInterMessagePeriod: r.LogInterMessagePeriod,
	}
	i := servedIndex(typ)
	period := int8(r.LogInterMessagePeriod)
	if i < 0 || r.DurationField == 0 || period < s.minLog[i] || period > unicastMaxLogPeriod {
		s.denied++
		return grant
	}
	c := s.client(a)
	if c == nil {
		if len(s.clients) >= UnicastMaxClients {
			s.denied++
			return grant
		}
		c = &unicastClient{addr: a}
		s.clients = append(s.clients, c)
	}
	c.identity = id
	d := min(time.Duration(r.DurationField)*time.Second, UnicastMaxGrant)
	g := &c.grants[i]
	if !now.Before(g.expires) || g.logPeriod != period {
		g.next = now // a new grant, or a new rate: start at once
	}
	g.logPeriod, g.expires = period, now.Add(d)
	grant.DurationField = uint32(d / time.Second)
	grant.Renewal = 1 // renewal invited
	return grant
}

// expire drops the grants that ran out at now, and the clients left
// without any.
func (s *unicastService) expire(now time.Time) {
	s.clients = slices.DeleteFunc(s.clients, func(c *unicastClient) bool {
		for i := range c.grants {
			if !now.Before(c.grants[i].expires) {
				c.grants[i] = serviceGrant{}
			}
		}
		return !c.active(now)
	})
}

// granted reports whether the client at a holds a grant for t at now,
// and the interval granted.
func (s *unicastService) granted(a netip.Addr, t protocol.MessageType, now time.Time) (int8, bool) {
	c, i := s.client(a.Unmap()), servedIndex(t)
	if c == nil || i < 0 || !now.Before(c.grants[i].expires) {
		return 0, false
	}
	return c.grants[i].logPeriod, true
}

// due returns the Announce and Sync messages due at now, and schedules
// each grant's next one a granted interval later (never earlier than now,
// so that a late call sends one message, not a burst).
func (s *unicastService) due(now time.Time) []unicastDue {
	s.expire(now)
	var out []unicastDue
	for _, c := range s.clients {
		for i, t := range unicastServed[:2] {
			g := &c.grants[i]
			if g.expires.IsZero() || now.Before(g.next) {
				continue
			}
			out = append(out, unicastDue{to: c.addr, msg: t, logPeriod: g.logPeriod})
			g.next = g.next.Add(protocol.LogInterval(g.logPeriod).Duration())
			if !g.next.After(now) {
				g.next = now.Add(protocol.LogInterval(g.logPeriod).Duration())
			}
		}
	}
	return out
}

// nextDue is when the earliest Announce or Sync falls due; zero without
// any.
func (s *unicastService) nextDue() time.Time {
	var t time.Time
	for _, c := range s.clients {
		for i := range unicastServed[:2] {
			g := c.grants[i]
			if !g.expires.IsZero() && (t.IsZero() || g.next.Before(t)) {
				t = g.next
			}
		}
	}
	return t
}

// status describes every client at now, in the order they first asked.
func (s *unicastService) status(now time.Time) []UnicastClientStatus {
	out := make([]UnicastClientStatus, 0, len(s.clients))
	for _, c := range s.clients {
		st := UnicastClientStatus{Address: c.addr, Identity: c.identity.String()}
		for i, t := range unicastServed {
			g := c.grants[i]
			if !now.Before(g.expires) {
				continue
			}
			st.Grants = append(st.Grants, UnicastGrantStatus{Message: messageName(t), State: grantGranted,
				LogInterval: g.logPeriod, Left: g.expires.Sub(now)})
		}
		if len(st.Grants) > 0 {
			out = append(out, st)
		}
	}
	return out
}

// The port's side of the service: the I/O around unicastService.

// serviceNextDue is when the service's next message falls due; zero
// without unicast_listen or clients.
func (p *portRun) serviceNextDue() time.Time {
	if p.service == nil {
		return time.Time{}
	}
	return p.service.nextDue()
}

// serveSignaling answers the REQUEST and CANCEL TLVs of a client's
// Signaling message, in the MASTER state; in any other state requests are
// denied and cancellations still acknowledged.
func (p *portRun) serveSignaling(m *protocol.Signaling, rec Received, now time.Time) {
	if m.TargetPortIdentity != wildcardPort && m.TargetPortIdentity != p.self {
		return
	}
	var answer []protocol.TLV
	if p.port.State() == protocol.PortStateMaster {
		answer = p.service.handle(rec.From.IP, m, now)
	} else {
		answer = denyAll(m, &p.service.denied)
	}
	if len(answer) == 0 {
		return
	}
	for _, tlv := range answer {
		if g, ok := tlv.(*protocol.GrantUnicastTransmissionTLV); ok {
			p.log.Debug("unicast request", zap.Stringer("from", rec.From), zap.String("message", messageName(g.MsgTypeAndReserved.MsgType())),
				zap.Int8("log_interval", int8(g.LogInterMessagePeriod)), zap.Uint32("granted_s", g.DurationField))
		}
	}
	b, err := p.signalingTo(m.SourcePortIdentity, answer)
	if err == nil {
		err = p.tr.SendGeneral(b, Address{IP: rec.From.IP})
	}
	if err != nil {
		p.log.Warn("cannot answer a unicast request", zap.Stringer("to", rec.From), zap.Error(err))
	}
}

// denyAll is the answer of a port that serves no one now: a denial per
// REQUEST, an acknowledgement per CANCEL.
func denyAll(m *protocol.Signaling, denied *uint64) []protocol.TLV {
	var out []protocol.TLV
	for _, tlv := range m.TLVs {
		switch t := tlv.(type) {
		case *protocol.RequestUnicastTransmissionTLV:
			*denied++
			out = append(out, &protocol.GrantUnicastTransmissionTLV{
				TLVHead:               protocol.TLVHead{TLVType: protocol.TLVGrantUnicastTransmission, LengthField: 8},
				MsgTypeAndReserved:    protocol.NewUnicastMsgTypeAndFlags(t.MsgTypeAndReserved.MsgType(), 0),
				LogInterMessagePeriod: t.LogInterMessagePeriod,
			})
		case *protocol.CancelUnicastTransmissionTLV:
			out = append(out, &protocol.AcknowledgeCancelUnicastTransmissionTLV{
				TLVHead:         protocol.TLVHead{TLVType: protocol.TLVAcknowledgeCancelUnicastTransmission, LengthField: 2},
				MsgTypeAndFlags: protocol.NewUnicastMsgTypeAndFlags(t.MsgTypeAndFlags.MsgType(), 0),
			})
		}
	}
	return out
}

// signalingTo encodes a unicast Signaling message to the port target
// carrying tlvs (GRANT and ACKNOWLEDGE_CANCEL TLVs).
func (p *portRun) signalingTo(target protocol.PortIdentity, tlvs []protocol.TLV) ([]byte, error) {
	const headerAndTarget = 34 + 10
	size := headerAndTarget
	for _, tlv := range tlvs {
		switch t := tlv.(type) {
		case *protocol.GrantUnicastTransmissionTLV:
			size += 4 + int(t.LengthField)
		case *protocol.AcknowledgeCancelUnicastTransmissionTLV:
			size += 4 + int(t.LengthField)
		default:
			return nil, fmt.Errorf("ptp: no signaling answer with TLV %T", tlv)
		}
	}
	p.signalingSeq++
	m := &protocol.Signaling{
		Header: protocol.Header{
			SdoIDAndMsgType:    protocol.NewSdoIDAndMsgType(protocol.MessageSignaling, 0),
			Version:            protocol.Version,
			MessageLength:      uint16(size),
			DomainNumber:       p.s.cfg.Domain,
			FlagField:          protocol.FlagUnicast,
			SequenceID:         p.signalingSeq,
			SourcePortIdentity: p.self,
			ControlField:       5, // all other messages
			LogMessageInterval: 0x7f,
		},
		TargetPortIdentity: target,
		TLVs:               tlvs,
	}
	b, err := m.MarshalBinary()
	if err != nil {
		return nil, fmt.Errorf("ptp: signaling: %w", err)
	}
	return b, nil
}

// sendUnicastService sends the unicast Announce and Sync (with Follow_Up)
// messages due to granted clients, in the MASTER state. They share the
// port's sequence ids with the multicast ones, so that a client that hears
// both never pairs a Sync with the wrong Follow_Up.
func (p *portRun) sendUnicastService(now time.Time) {
	if p.service == nil {
		return
	}
	for _, d := range p.service.due(now) {
		to := Address{IP: d.to}
		iv := protocol.LogInterval(d.logPeriod)
		switch d.msg {
		case protocol.MessageAnnounce:
			a := p.msgs.announce(p.port.Parent(), p.port.TimeProperties(), p.toPTP(p.s.tb.Now()))
			a.FlagField |= protocol.FlagUnicast
			a.LogMessageInterval = iv
			p.sendGeneralTo("unicast announce", a, to)
		case protocol.MessageSync:
			sync := p.msgs.sync(p.toPTP(p.s.tb.Now()))
			sync.FlagField |= protocol.FlagUnicast
			sync.LogMessageInterval = iv
			if tx, ok := p.sendEventTo("unicast sync", sync, to); ok {
				fu := p.msgs.followUp(sync.SequenceID, p.toPTP(tx))
				fu.FlagField |= protocol.FlagUnicast
				fu.LogMessageInterval = iv
				p.sendGeneralTo("unicast follow-up", fu, to)
			}
		}
	}
}

// unicastDelayResponse answers a unicast Delay_Req unicast, with the
// granted interval, when its sender holds a Delay_Resp grant; others are
// dropped and counted (no_unicast_grant).
func (p *portRun) unicastDelayResponse(req *protocol.SyncDelayReq, rec Received) {
	iv, ok := p.service.granted(rec.From.IP, protocol.MessageDelayResp, time.Now())
	if !ok {
		p.portDrops["no_unicast_grant"]++
		return
	}
	resp := p.msgs.delayResp(req, p.toPTP(p.rxTime(rec)))
	resp.FlagField |= protocol.FlagUnicast
	resp.LogMessageInterval = protocol.LogInterval(iv)
	p.sendGeneralTo("unicast delay response", resp, Address{IP: rec.From.IP})
}
