// Package csptp is client-server PTP: a client that sends one request and
// takes the offset from the server's answer, and a stateless server that
// answers every request from the disciplined clock, both unicast over UDP.
//
// Two wire forms are spoken, both made of IEEE 1588-2019 messages:
//
//   - SPTP, Meta's simplified unicast PTP as github.com/facebook/time
//     implements it (ptp4u answers it, its sptp program sends it). The
//     client sends a Delay_Req to the event port with the unicast and
//     profile-specific-1 flags. The server answers with a two-step Sync to
//     the request's source address whose originTimestamp is the request's
//     receive time, and an Announce whose originTimestamp is the Sync's
//     transmit time and whose correctionField is the request's. The Announce
//     goes to the request's source port when the requesting portNumber is
//     above 10, else to the general port 320 of the requesting address.
//   - CSPTP as in the experimental implementation in ntpd-rs, after the
//     IEEE 1588.1 draft: the request is a Sync (majorSdoId 3, unicast and
//     PTP-timescale flags) carrying a CSPTP request TLV (type 0xFF00, four
//     octets of flags); the answer is one one-step Sync to the request's
//     source address whose originTimestamp is the server's transmit time
//     and which carries a CSPTP response TLV (type 0xFF01): the request's
//     receive timestamp (10 octets) and its correctionField (8 octets).
//     The TLV type numbers are those of that implementation; they are not
//     checked against the draft.
//
// Every timestamp on the wire is in the PTP timescale (TAI): the server adds
// its announced UTC offset to the disciplined clock's UTC time, and the
// client subtracts the offset the Announce carries (for CSPTP, the one it is
// configured with, 37 s by default).
package csptp
