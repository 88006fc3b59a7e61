package ptp

import (
	"time"

	"github.com/facebook/time/ptp/protocol"

	"github.com/timed-project/timed/sources"
)

// Quality is what a port in the MASTER state announces about the local
// clock as grandmaster, beside the priorities and the UTC offset.
type Quality struct {
	// ClockQuality is defaultDS.clockQuality.
	ClockQuality protocol.ClockQuality
	// TimeTraceable and FrequencyTraceable are the flags of
	// timePropertiesDS.
	TimeTraceable, FrequencyTraceable bool
	// TimeSource is timePropertiesDS.timeSource.
	TimeSource protocol.TimeSource
}

// freeRunning is the quality of a clock that was never synchronized
// (clockClass 248, the default) or that has no one to ask.
var freeRunning = Quality{
	ClockQuality: protocol.ClockQuality{ClockClass: protocol.ClockClass(248),
		ClockAccuracy: protocol.ClockAccuracyUnknown, OffsetScaledLogVariance: 0xffff},
	TimeSource: protocol.TimeSourceInternalOscillator,
}

// QualityOf is the quality of a clock the engine disciplines, from its
// status: clockClass 6, traceable, with the accuracy that covers the
// engine's uncertainty (table 5) while synchronized to a source that is not
// PTP; 7 (holdover) once it was synchronized and no longer is; 248 when it
// never was. The time source is the kind of the selected source (NTP,
// GNSS for gpsd, PTP), the internal oscillator without one.
//
// A clock synchronized through PTP keeps class 248: announcing the time a
// PTP master handed it as a primary reference would let two ports take
// each other for the better master.
func QualityOf(st sources.Status, everSynchronized bool) Quality {
	q := freeRunning
	kind := ""
	for _, s := range st.Sources {
		if s.Name == st.Reference {
			kind = s.Kind
		}
	}
	switch kind {
	case "ntp":
		q.TimeSource = protocol.TimeSourceNTP
	case "gpsd":
		q.TimeSource = protocol.TimeSourceGNSS
	case "ptp":
		q.TimeSource = protocol.TimeSourcePTP
	}
	switch {
	case st.Synchronized && !st.Holdover && kind == "ptp":
	case st.Synchronized && !st.Holdover:
		q.ClockQuality.ClockClass = protocol.ClockClass6
		q.ClockQuality.ClockAccuracy = protocol.ClockAccuracyFromOffset(time.Duration(st.Uncertainty * 1e9))
		q.TimeTraceable, q.FrequencyTraceable = true, true
	case everSynchronized && kind != "ptp":
		q.ClockQuality.ClockClass = protocol.ClockClass7
	}
	return q
}

// masterMessages builds the messages of a port in the MASTER state:
// Announce, two-step Sync with its Follow_Up, and Delay_Resp; and the
// answers to Pdelay_Req every peer-to-peer port sends. Announce and
// Sync count their own sequence ids; a Follow_Up carries its Sync's, a
// Delay_Resp its Delay_Req's.
type masterMessages struct {
	self                           protocol.PortIdentity
	domain                         uint8
	logAnnounce, logSync, logDelay protocol.LogInterval
	announceSeq, syncSeq           uint16
}

// header is the common header of a message of type t.
func (m *masterMessages) header(t protocol.MessageType, length uint16, seq uint16, control uint8, iv protocol.LogInterval) protocol.Header {
	return protocol.Header{
		SdoIDAndMsgType:    protocol.NewSdoIDAndMsgType(t, 0),
		Version:            protocol.Version,
		MessageLength:      length,
		DomainNumber:       m.domain,
		SourcePortIdentity: m.self,
		SequenceID:         seq,
		ControlField:       control,
		LogMessageInterval: iv,
	}
}

// announce builds the next Announce of a grandmaster described by parent
// and tp, originTimestamp origin (PTP timescale).
func (m *masterMessages) announce(parent ParentDataset, tp TimeProperties, origin time.Time) *protocol.Announce {
	h := m.header(protocol.MessageAnnounce, 64, m.announceSeq, 5, m.logAnnounce)
	m.announceSeq++
	h.FlagField = tp.Flags()
	return &protocol.Announce{Header: h, AnnounceBody: AnnounceBodyOf(parent, tp, protocol.NewTimestamp(origin))}
}

// sync builds the next two-step Sync; origin is an estimate of its sending
// time (PTP timescale): the Follow_Up carries the precise one.
func (m *masterMessages) sync(origin time.Time) *protocol.SyncDelayReq {
	h := m.header(protocol.MessageSync, 44, m.syncSeq, 0, m.logSync)
	m.syncSeq++
	h.FlagField = protocol.FlagTwoStep
	return &protocol.SyncDelayReq{Header: h, SyncDelayReqBody: protocol.SyncDelayReqBody{
		OriginTimestamp: protocol.NewTimestamp(origin)}}
}

// followUp builds the Follow_Up of the Sync with sequence id seq that left
// at t1 (PTP timescale).
func (m *masterMessages) followUp(seq uint16, t1 time.Time) *protocol.FollowUp {
	return &protocol.FollowUp{Header: m.header(protocol.MessageFollowUp, 44, seq, 2, m.logSync),
		FollowUpBody: protocol.FollowUpBody{PreciseOriginTimestamp: protocol.NewTimestamp(t1)}}
}

// delayResp answers the Delay_Req req that arrived at t4 (PTP timescale):
// its sequence id, requesting port and correctionField carried over
// (clause 11.3.2: the timestamps have no sub-nanosecond part to move into
// it), and the minimum delay request interval the slave is to keep.
func (m *masterMessages) delayResp(req *protocol.SyncDelayReq, t4 time.Time) *protocol.DelayResp {
	h := m.header(protocol.MessageDelayResp, 54, req.SequenceID, 3, m.logDelay)
	h.CorrectionField = req.CorrectionField
	return &protocol.DelayResp{Header: h, DelayRespBody: protocol.DelayRespBody{
		ReceiveTimestamp:       protocol.NewTimestamp(t4),
		RequestingPortIdentity: req.SourcePortIdentity,
	}}
}

// pdelayResp answers, two-step, the Pdelay_Req req that arrived at t2 (PTP
// timescale): its sequence id and requesting port carried over, and a
// correctionField of zero (clause 11.4.3: the request's correction goes
// into the follow-up). Every port using the peer delay mechanism answers,
// whatever its state.
func (m *masterMessages) pdelayResp(req *protocol.PDelayReq, t2 time.Time) *protocol.PDelayResp {
	h := m.header(protocol.MessagePDelayResp, 54, req.SequenceID, 5, 0x7f)
	h.FlagField = protocol.FlagTwoStep
	return &protocol.PDelayResp{Header: h, PDelayRespBody: protocol.PDelayRespBody{
		RequestReceiptTimestamp: protocol.NewTimestamp(t2),
		RequestingPortIdentity:  req.SourcePortIdentity,
	}}
}

// pdelayRespFollowUp is the Pdelay_Resp_Follow_Up of the Pdelay_Resp to req
// that left at t3 (PTP timescale); it carries the request's
// correctionField (clause 11.4.3: the timestamps have no sub-nanosecond
// part to add to it).
func (m *masterMessages) pdelayRespFollowUp(req *protocol.PDelayReq, t3 time.Time) *protocol.PDelayRespFollowUp {
	h := m.header(protocol.MessagePDelayRespFollowUp, 54, req.SequenceID, 5, 0x7f)
	h.CorrectionField = req.CorrectionField
	return &protocol.PDelayRespFollowUp{Header: h, PDelayRespFollowUpBody: protocol.PDelayRespFollowUpBody{
		ResponseOriginTimestamp: protocol.NewTimestamp(t3),
		RequestingPortIdentity:  req.SourcePortIdentity,
	}}
}
