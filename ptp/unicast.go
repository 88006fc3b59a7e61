package ptp

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/facebook/time/ptp/protocol"
	"go.uber.org/zap"
)

// Unicast discovery and negotiation (IEEE 1588-2019 clause 16.1): a port
// with unicast masters asks each of them for unicast Announce messages,
// and the master the BMCA selects for unicast Sync (and, with the
// end-to-end mechanism, Delay_Resp), in Signaling messages carrying
// REQUEST_UNICAST_TRANSMISSION TLVs. Every grant is for a limited time and
// renewed before it runs out.

// unicastGrantDuration is the duration the port asks each grant for. A
// minute keeps the renewal traffic small (one request every 30 s per
// message type) while a master that lost its state (restarted) serves the
// port again within half a minute; ptp4l grants any duration asked for.
const unicastGrantDuration = 60 * time.Second

// unicastRetryFirst and unicastRetryMax bound the backoff between requests
// that were denied or not answered: the first retry comes after
// unicastRetryFirst, each further one after twice the last, at most
// unicastRetryMax.
const (
	unicastRetryFirst = time.Second
	unicastRetryMax   = 64 * time.Second
)

// unicastAnswerWait is how long a request waits for its grant before the
// status calls the master silent ("no answer").
const unicastAnswerWait = time.Second

// The states of a negotiated message type, as the status shows them.
const (
	grantRequesting = "requesting"
	grantGranted    = "granted"
	grantDenied     = "denied"
	grantNoAnswer   = "no answer"
	grantCancelled  = "cancelled"
)

// wildcardPort is the targetPortIdentity of a Signaling message meant for
// every port of the receiver (all ones).
var wildcardPort = protocol.PortIdentity{ClockIdentity: protocol.ClockIdentity(^uint64(0)), PortNumber: 0xffff}

// UnicastMasterStatus is the negotiation with one unicast master, as
// `timectl ptp` shows it.
type UnicastMasterStatus struct {
	// Address is the master's IP address.
	Address netip.Addr
	// Identity is the port identity its Announces carry, once one came.
	Identity string
	// Selected says whether the BMCA picked this master.
	Selected bool
	// Grants are the message types asked for, Announce first.
	Grants []UnicastGrantStatus
}

// UnicastGrantStatus is the state of one message type a unicast master was
// asked for.
type UnicastGrantStatus struct {
	// Message is "announce", "sync" or "delay_resp".
	Message string
	// State is "granted", "requesting", "denied", "no answer" or
	// "cancelled" (by the master).
	State string
	// LogInterval is the interval asked for or granted (log2 s).
	LogInterval int8
	// Left is how long the grant still runs (zero unless granted).
	Left time.Duration
}

// unicastGrant is the negotiation of one message type with one master.
type unicastGrant struct {
	msg       protocol.MessageType
	logPeriod int8
	wanted    bool
	state     string
	granted   bool      // a grant is in force until expires
	expires   time.Time // end of the grant in force
	asked     time.Time // when the last request left, zero once answered
	next      time.Time // when the next request (or renewal) is due
	backoff   time.Duration
}

// unicastMaster is the negotiation with one master.
type unicastMaster struct {
	addr     netip.Addr
	identity protocol.PortIdentity
	known    bool // identity came in an Announce
	grants   []*unicastGrant
}

func (m *unicastMaster) grant(t protocol.MessageType) *unicastGrant {
	for _, g := range m.grants {
		if g.msg == t {
			return g
		}
	}
	return nil
}

// unicastRequest is one TLV to send to a master: a request (Duration set),
// a cancellation or an acknowledgement of one.
type unicastRequest struct {
	to  netip.Addr
	tlv protocol.TLV
}

// unicastNegotiation keeps the negotiation with every unicast master of a
// port. It does no I/O and reads no clock: what it wants sent it returns.
type unicastNegotiation struct {
	masters  []*unicastMaster
	selected netip.Addr
}

// unicastIntervals are the intervals a port asks for, log2 s.
type unicastIntervals struct {
	announce, sync, delayResp int8
	// endToEnd asks the selected master for Delay_Resp too.
	endToEnd bool
}

func newUnicastNegotiation(addrs []netip.Addr, iv unicastIntervals) *unicastNegotiation {
	n := &unicastNegotiation{}
	for _, a := range addrs {
		m := &unicastMaster{addr: a}
		m.grants = append(m.grants,
			&unicastGrant{msg: protocol.MessageAnnounce, logPeriod: iv.announce, wanted: true, state: grantRequesting},
			&unicastGrant{msg: protocol.MessageSync, logPeriod: iv.sync})
		if iv.endToEnd {
			m.grants = append(m.grants, &unicastGrant{msg: protocol.MessageDelayResp, logPeriod: iv.delayResp})
		}
		n.masters = append(n.masters, m)
	}
	return n
}

func (n *unicastNegotiation) master(a netip.Addr) *unicastMaster {
	a = a.Unmap()
	for _, m := range n.masters {
		if m.addr == a {
			return m
		}
	}
	return nil
}

// isMaster reports whether a is one of the configured masters.
func (n *unicastNegotiation) isMaster(a netip.Addr) bool { return n.master(a) != nil }

// announced records the port identity of the master at a.
func (n *unicastNegotiation) announced(a netip.Addr, id protocol.PortIdentity) {
	if m := n.master(a); m != nil {
		m.identity, m.known = id, true
	}
}

// addressOf returns the address of the master whose Announces carry id.
func (n *unicastNegotiation) addressOf(id protocol.PortIdentity) (netip.Addr, bool) {
	for _, m := range n.masters {
		if m.known && m.identity == id {
			return m.addr, true
		}
	}
	return netip.Addr{}, false
}

// selectMaster makes the master at a (none when a is not valid) the one
// asked for Sync and Delay_Resp. Grants of the master given up are
// cancelled.
func (n *unicastNegotiation) selectMaster(a netip.Addr, now time.Time) []unicastRequest {
	if a == n.selected {
		return nil
	}
	var out []unicastRequest
	if old := n.master(n.selected); old != nil {
		for _, g := range old.grants[1:] {
			if g.granted {
				out = append(out, cancelRequest(old.addr, g.msg))
			}
			*g = unicastGrant{msg: g.msg, logPeriod: g.logPeriod}
		}
	}
	n.selected = netip.Addr{}
	if m := n.master(a); m != nil {
		n.selected = m.addr
		for _, g := range m.grants[1:] {
			g.wanted, g.state, g.next = true, grantRequesting, now
		}
	}
	return out
}

// due returns the requests due at now: first requests, retries after a
// denial or silence, and renewals at half a grant's duration.
func (n *unicastNegotiation) due(now time.Time) []unicastRequest {
	var out []unicastRequest
	for _, m := range n.masters {
		for _, g := range m.grants {
			if !g.wanted {
				continue
			}
			if g.granted && !now.Before(g.expires) {
				g.granted, g.state, g.next = false, grantRequesting, now
			}
			if !g.asked.IsZero() && now.Sub(g.asked) >= unicastAnswerWait && !g.granted {
				g.state = grantNoAnswer
			}
			if now.Before(g.next) {
				continue
			}
			if !g.asked.IsZero() && !g.granted {
				// The last request went unanswered: back off.
				g.backoff = nextBackoff(g.backoff)
			}
			g.asked = now
			g.next = now.Add(unicastRetryFirst)
			if g.backoff > 0 {
				g.next = now.Add(g.backoff)
			}
			if g.granted {
				// A renewal: the grant in force runs on; ask again
				// at half of what is left if this goes unanswered.
				g.next = now.Add(max(g.expires.Sub(now)/2, unicastRetryFirst))
			}
			out = append(out, unicastRequest{to: m.addr, tlv: &protocol.RequestUnicastTransmissionTLV{
				TLVHead:               protocol.TLVHead{TLVType: protocol.TLVRequestUnicastTransmission, LengthField: 6},
				MsgTypeAndReserved:    protocol.NewUnicastMsgTypeAndFlags(g.msg, 0),
				LogInterMessagePeriod: protocol.LogInterval(g.logPeriod),
				DurationField:         uint32(unicastGrantDuration / time.Second),
			}})
		}
	}
	return out
}

func nextBackoff(b time.Duration) time.Duration {
	if b == 0 {
		return 2 * unicastRetryFirst
	}
	return min(2*b, unicastRetryMax)
}

// stop cancels every grant in force, when the port stops.
func (n *unicastNegotiation) stop() []unicastRequest {
	var out []unicastRequest
	for _, m := range n.masters {
		for _, g := range m.grants {
			if g.granted {
				out = append(out, cancelRequest(m.addr, g.msg))
			}
			*g = unicastGrant{msg: g.msg, logPeriod: g.logPeriod}
		}
	}
	n.selected = netip.Addr{}
	return out
}

func cancelRequest(to netip.Addr, t protocol.MessageType) unicastRequest {
	return unicastRequest{to: to, tlv: &protocol.CancelUnicastTransmissionTLV{
		TLVHead:         protocol.TLVHead{TLVType: protocol.TLVCancelUnicastTransmission, LengthField: 2},
		MsgTypeAndFlags: protocol.NewUnicastMsgTypeAndFlags(t, 0),
	}}
}

// errNotOurMaster is why a Signaling message from an address that is not
// a configured unicast master is dropped.
var errNotOurMaster = errors.New("not from a configured unicast master")

// handle takes the TLVs of a Signaling message from a, received at now,
// and returns the acknowledgements to send back. TLVs it has no use for
// (requests to this port, which serves no one unicast) are skipped.
func (n *unicastNegotiation) handle(a netip.Addr, sig *protocol.Signaling, now time.Time) ([]unicastRequest, error) {
	m := n.master(a)
	if m == nil {
		return nil, fmt.Errorf("ptp: signaling from %s: %w", a, errNotOurMaster)
	}
	var out []unicastRequest
	for _, tlv := range sig.TLVs {
		switch t := tlv.(type) {
		case *protocol.GrantUnicastTransmissionTLV:
			g := m.grant(t.MsgTypeAndReserved.MsgType())
			if g == nil || !g.wanted {
				continue // a grant for something not asked for (or no longer)
			}
			g.asked = time.Time{}
			if t.DurationField == 0 {
				g.granted, g.state = false, grantDenied
				g.backoff = nextBackoff(g.backoff)
				g.next = now.Add(g.backoff)
				continue
			}
			d := time.Duration(t.DurationField) * time.Second
			g.granted, g.state, g.backoff = true, grantGranted, 0
			g.logPeriod = int8(t.LogInterMessagePeriod)
			g.expires = now.Add(d)
			g.next = now.Add(d / 2)
		case *protocol.CancelUnicastTransmissionTLV:
			if g := m.grant(t.MsgTypeAndFlags.MsgType()); g != nil && g.wanted {
				g.granted, g.state, g.asked = false, grantCancelled, time.Time{}
				g.backoff = nextBackoff(g.backoff)
				g.next = now.Add(g.backoff)
			}
			out = append(out, unicastRequest{to: m.addr, tlv: &protocol.AcknowledgeCancelUnicastTransmissionTLV{
				TLVHead:         protocol.TLVHead{TLVType: protocol.TLVAcknowledgeCancelUnicastTransmission, LengthField: 2},
				MsgTypeAndFlags: protocol.NewUnicastMsgTypeAndFlags(t.MsgTypeAndFlags.MsgType(), 0),
			}})
		}
	}
	return out, nil
}

// granted reports whether the master at a serves message type t now.
func (n *unicastNegotiation) granted(a netip.Addr, t protocol.MessageType, now time.Time) bool {
	m := n.master(a)
	if m == nil {
		return false
	}
	g := m.grant(t)
	return g != nil && g.granted && now.Before(g.expires)
}

// status describes every master's negotiation at now.
func (n *unicastNegotiation) status(now time.Time) []UnicastMasterStatus {
	out := make([]UnicastMasterStatus, 0, len(n.masters))
	for _, m := range n.masters {
		st := UnicastMasterStatus{Address: m.addr, Selected: m.addr == n.selected}
		if m.known {
			st.Identity = m.identity.String()
		}
		for _, g := range m.grants {
			if !g.wanted {
				continue
			}
			gs := UnicastGrantStatus{Message: messageName(g.msg), State: g.state, LogInterval: g.logPeriod}
			if g.granted && now.Before(g.expires) {
				gs.Left = g.expires.Sub(now)
			}
			st.Grants = append(st.Grants, gs)
		}
		out = append(out, st)
	}
	return out
}

func messageName(t protocol.MessageType) string {
	switch t {
	case protocol.MessageAnnounce:
		return "announce"
	case protocol.MessageSync:
		return "sync"
	case protocol.MessageDelayResp:
		return "delay_resp"
	}
	return fmt.Sprintf("message_type_%d", t)
}

// checkUnicastMasters checks SourceConfig.UnicastMasters against the
// network: unicast negotiation runs over UDP only, with addresses of the
// network's family.
func checkUnicastMasters(cfg SourceConfig) error {
	if len(cfg.UnicastMasters) == 0 {
		return nil
	}
	if cfg.Network == NetworkL2 {
		return fmt.Errorf("ptp: %s: unicast masters need transport udp4 or udp6; unicast negotiation over l2 is not supported", cfg.Interface)
	}
	if cfg.Role == RoleMasterOnly {
		return fmt.Errorf("ptp: %s: a master_only port has no unicast masters to ask", cfg.Interface)
	}
	for i, a := range cfg.UnicastMasters {
		switch {
		case !a.IsValid() || a.IsUnspecified() || a.IsMulticast():
			return fmt.Errorf("ptp: %s: unicast master %q is not a unicast IP address", cfg.Interface, a)
		case a.Unmap().Is4() != (cfg.Network == NetworkUDPv4):
			return fmt.Errorf("ptp: %s: unicast master %s does not fit network %s", cfg.Interface, a, cfg.Network)
		case slices.Contains(cfg.UnicastMasters[:i], a):
			return fmt.Errorf("ptp: %s: unicast master %s is listed twice", cfg.Interface, a)
		}
	}
	return nil
}

// The port's side of unicast negotiation: the I/O around
// unicastNegotiation.

// unicastAccept reports whether a decoded message is for the port: with
// unicast masters, only unicast messages from those masters are (the
// multicast ones of the same masters or of others are not relied on);
// without, every message is. It learns the masters' identities from
// their Announces.
func (p *portRun) unicastAccept(pkt protocol.Packet, rec Received) bool {
	if p.unicast == nil {
		return true
	}
	switch m := pkt.(type) {
	case *protocol.Signaling:
		return true // handleSignaling checks the sender
	case *protocol.Announce:
		if !p.unicast.isMaster(rec.From.IP) || m.FlagField&protocol.FlagUnicast == 0 {
			p.portDrops["not_unicast_master"]++
			return false
		}
		p.unicast.announced(rec.From.IP, m.SourcePortIdentity)
		return true
	case *protocol.SyncDelayReq, *protocol.FollowUp, *protocol.DelayResp:
		if d, ok := pkt.(*protocol.SyncDelayReq); ok && d.MessageType() == protocol.MessageDelayReq && p.service != nil {
			return true // a unicast client's (delayResponse checks its grant)
		}
		if !p.unicast.isMaster(rec.From.IP) || headerOf(pkt).FlagField&protocol.FlagUnicast == 0 {
			p.portDrops["not_unicast_master"]++
			return false
		}
		return true
	}
	return true
}

// headerOf returns the common header of the messages unicastAccept checks.
func headerOf(pkt protocol.Packet) protocol.Header {
	switch m := pkt.(type) {
	case *protocol.SyncDelayReq:
		return m.Header
	case *protocol.FollowUp:
		return m.Header
	case *protocol.DelayResp:
		return m.Header
	}
	return protocol.Header{}
}

// handleSignaling takes a Signaling message: grants, denials and
// cancellations from a unicast master, which it acknowledges; with
// unicast_listen, a message from any other address is a client's, for the
// service (serveSignaling).
func (p *portRun) handleSignaling(m *protocol.Signaling, rec Received, now time.Time) {
	if p.service != nil && (p.unicast == nil || !p.unicast.isMaster(rec.From.IP)) {
		p.serveSignaling(m, rec, now)
		return
	}
	if p.unicast == nil {
		return
	}
	if m.TargetPortIdentity != wildcardPort && m.TargetPortIdentity != p.self {
		return
	}
	acks, err := p.unicast.handle(rec.From.IP, m, now)
	if err != nil {
		p.portDrops["not_unicast_master"]++
		p.log.Debug("signaling not used", zap.Stringer("from", rec.From), zap.Error(err))
		return
	}
	for _, tlv := range m.TLVs {
		if g, ok := tlv.(*protocol.GrantUnicastTransmissionTLV); ok {
			p.log.Debug("unicast grant", zap.Stringer("from", rec.From), zap.String("message", messageName(g.MsgTypeAndReserved.MsgType())),
				zap.Int8("log_interval", int8(g.LogInterMessagePeriod)), zap.Uint32("duration_s", g.DurationField))
		}
	}
	p.sendUnicast(acks)
}

// unicastTick follows the BMCA's choice of master and sends the requests
// that are due.
func (p *portRun) unicastTick(now time.Time) {
	if p.unicast == nil {
		return
	}
	var sel netip.Addr
	if m, ok := p.port.Master(); ok {
		sel, _ = p.unicast.addressOf(m.SenderPortIdentity)
	}
	p.sendUnicast(p.unicast.selectMaster(sel, now))
	p.sendUnicast(p.unicast.due(now))
}

// unicastStop cancels the grants in force when the port stops.
func (p *portRun) unicastStop() {
	if p.unicast != nil {
		p.sendUnicast(p.unicast.stop())
	}
}

// delayReqDestination is where Delay_Req goes: the selected master with
// unicast masters (then req is marked unicast), the primary group without.
func (p *portRun) delayReqDestination(req *protocol.SyncDelayReq) Address {
	if p.unicast == nil {
		return p.group
	}
	req.FlagField |= protocol.FlagUnicast
	return Address{IP: p.unicast.selected}
}

// sendUnicast sends each TLV in a Signaling message of its own to its
// master.
func (p *portRun) sendUnicast(reqs []unicastRequest) {
	for _, r := range reqs {
		b, err := p.signaling(r.tlv)
		if err == nil {
			err = p.tr.SendGeneral(b, Address{IP: r.to})
		}
		if err != nil {
			p.log.Warn("cannot send a signaling message", zap.Stringer("to", r.to), zap.Error(err))
		}
	}
}

// signaling encodes a unicast Signaling message to every port of the
// master with one TLV.
func (p *portRun) signaling(tlv protocol.TLV) ([]byte, error) {
	p.signalingSeq++
	size := 0
	switch tlv.(type) {
	case *protocol.RequestUnicastTransmissionTLV:
		size = 4 + 6
	case *protocol.CancelUnicastTransmissionTLV, *protocol.AcknowledgeCancelUnicastTransmissionTLV:
		size = 4 + 2
	default:
		return nil, fmt.Errorf("ptp: no signaling with TLV %T", tlv)
	}
	const headerAndTarget = 34 + 10
	m := &protocol.Signaling{
		Header: protocol.Header{
			SdoIDAndMsgType:    protocol.NewSdoIDAndMsgType(protocol.MessageSignaling, 0),
			Version:            protocol.Version,
			MessageLength:      uint16(headerAndTarget + size),
			DomainNumber:       p.s.cfg.Domain,
			FlagField:          protocol.FlagUnicast,
			SequenceID:         p.signalingSeq,
			SourcePortIdentity: p.self,
			ControlField:       5, // all other messages
			LogMessageInterval: 0x7f,
		},
		TargetPortIdentity: wildcardPort,
		TLVs:               []protocol.TLV{tlv},
	}
	b, err := m.MarshalBinary()
	if err != nil {
		return nil, fmt.Errorf("ptp: signaling: %w", err)
	}
	return b, nil
}
