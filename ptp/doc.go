// Package ptp implements the parts of an IEEE 1588-2019 ordinary clock that
// need no I/O: the datasets (clause 8), the best master clock algorithm
// (clause 9.3: dataset comparison and state decision, with the foreign master
// qualification rule), the port state machine (clause 9.2.5, simplified for
// an ordinary clock with one port), and the delay request-response and peer
// delay arithmetic (clauses 11.3 and 11.4).
//
// Nothing in this package reads the wall clock, starts goroutines or touches
// the network: every function that depends on time takes it as an argument,
// and every message is a github.com/facebook/time/ptp/protocol value decoded
// by the caller. The transport (UDP, Ethernet, timestamped sockets) lives in
// other files of this package and drives these types.
//
// Timestamps carried by PTP are in the PTP timescale (TAI) when the
// ptpTimescale flag is set; TimeProperties.ToUTC converts them to UTC.
package ptp
