package control

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/timed-project/timed/sources"
)

// Version is the protocol version this package speaks.
const Version = 1

// DefaultSocket is where timed listens unless configured otherwise.
const DefaultSocket = "/run/timed/timed.sock"

// MaxRequestSize is the longest request line a server accepts, without the
// newline.
const MaxRequestSize = 64 << 10

// The commands of protocol version 1.
const (
	CmdStatus      = "status"
	CmdReload      = "reload"
	CmdMakeStep    = "makestep"
	CmdServerStats = "serverstats"
	CmdClients     = "clients" // args: ClientsArgs
	CmdPTP         = "ptp"
	CmdSourceStats = "sourcestats"
	CmdNTS         = "nts"
	CmdBurst       = "burst"  // args: BurstArgs
	CmdAdd         = "add"    // args: AddArgs
	CmdRemove      = "remove" // args: RemoveArgs
)

// Request is one command to timed.
type Request struct {
	Version int    `json:"version"`
	Command string `json:"command"`
	// Args are the command's arguments, for commands that take any.
	Args json.RawMessage `json:"args,omitempty"`
}

// Response is timed's answer to one Request. Exactly one result member is
// set when the command succeeded and has a result.
type Response struct {
	Version int    `json:"version"`
	OK      bool   `json:"ok"`
	Error   string `json:"error"`
	// Status is the result of "status".
	Status *StatusReply `json:"status,omitempty"`
	// ServerStats is the result of "serverstats".
	ServerStats *ServerStatsReply `json:"serverstats,omitempty"`
	// Clients is the result of "clients".
	Clients *ClientsReply `json:"clients,omitempty"`
	// PTP is the result of "ptp".
	PTP *PTPReply `json:"ptp,omitempty"`
	// SourceStats is the result of "sourcestats".
	SourceStats *SourceStatsReply `json:"sourcestats,omitempty"`
	// NTS is the result of "nts".
	NTS *NTSReply `json:"nts,omitempty"`
	// Burst is the result of "burst".
	Burst *BurstReply `json:"burst,omitempty"`
	// Add is the result of "add".
	Add *AddReply `json:"add,omitempty"`
}

// SourceStatsReply is the result of "sourcestats": what the filter of each
// source knows, in the engine's order (as chronyc sourcestats).
type SourceStatsReply struct {
	Sources []SourceStats `json:"sources"`
}

// SourceStats is one source's filter. Times are in seconds, frequencies in
// ppm; the estimates are zero until the filter has one (Valid false).
type SourceStats struct {
	Name string `json:"name"`
	Kind string `json:"kind"`
	// Runtime is true for a source added with "add" (forgotten at restart).
	Runtime bool `json:"runtime,omitempty"`
	// Samples counts the measurements taken since the source started;
	// Window those the filter holds now, Span the time from the oldest of
	// them to the newest, Outliers those of them it left out.
	Samples  int     `json:"samples"`
	Window   int     `json:"window"`
	Span     float64 `json:"span_s"`
	Outliers int     `json:"outliers"`
	// Valid says whether the filter has an estimate yet.
	Valid bool `json:"valid"`
	// Offset is the filtered offset now (positive: the local clock is
	// behind) and StdDev its standard deviation; Noise the typical error
	// of one measurement (the median over the window).
	Offset float64 `json:"offset_s"`
	StdDev float64 `json:"std_dev_s"`
	Noise  float64 `json:"noise_s"`
	// Frequency is the source's estimate of the oscillator's frequency
	// error and FrequencyUncertainty its standard deviation, in ppm.
	Frequency            float64 `json:"frequency_ppm"`
	FrequencyUncertainty float64 `json:"frequency_uncertainty_ppm"`
	// MinDelay is the path's minimum delay the filter weighs samples by.
	MinDelay float64 `json:"min_delay_s"`
	// Poll is the poll interval, log2 seconds.
	Poll int `json:"poll"`
	// Restarts counts the times the filter started again from its newest
	// samples because the source's time jumped; Dropped the measurements
	// the engine refused (straddling a step or a leap second, malformed).
	Restarts int `json:"restarts"`
	Dropped  int `json:"dropped"`
}

// NTSReply is the result of "nts": the NTS client side of every NTS source
// and, when timed serves NTS, its server side.
type NTSReply struct {
	Clients []NTSClientStatus `json:"clients"`
	// Server is nil unless server.nts is configured.
	Server *NTSServerStatus `json:"server,omitempty"`
}

// NTSClientStatus is one NTS source. Times are in seconds.
type NTSClientStatus struct {
	// Name is the engine source's name; KEServer the NTS-KE server as
	// host:port.
	Name     string `json:"name"`
	KEServer string `json:"ke_server"`
	// KEState is "ok" (the last key exchange succeeded), "failed" (it
	// did not: KEError says why, RetryIn when the next is tried) or
	// "pending" (none finished yet).
	KEState string  `json:"ke_state"`
	KEError string  `json:"ke_error,omitempty"`
	RetryIn float64 `json:"retry_in_s,omitempty"`
	// LastKEAgo is the time since the last successful key exchange
	// (absent before the first); KEs counts them.
	LastKEAgo float64 `json:"last_ke_ago_s,omitempty"`
	KEs       uint64  `json:"ke_count"`
	// AEAD is the algorithm negotiated (such as AEAD_AES_SIV_CMAC_256);
	// NTPServer the NTP server and port the key exchange named.
	AEAD      string `json:"aead,omitempty"`
	NTPServer string `json:"ntp_server,omitempty"`
	// Cookies is how many cookies the client holds, of MaxCookies.
	Cookies    int `json:"cookies"`
	MaxCookies int `json:"max_cookies"`
	// NAKs counts NTS NAKs received; AuthFailures responses that failed
	// authentication (bad tag, unique identifier mismatch, no NTS fields).
	NAKs         uint64 `json:"naks"`
	AuthFailures uint64 `json:"auth_failures"`
}

// NTSServerStatus is the server side of NTS: the NTS-KE and NTP counters
// of NTSServerStats and the cookie keys.
type NTSServerStatus struct {
	NTSServerStats
	// KeyID is the id of the key that seals new cookies (8 hex digits);
	// KeyRotatesIn the seconds until the next key is made.
	KeyID        string  `json:"key_id"`
	KeyRotatesIn float64 `json:"key_rotates_in_s"`
	// CookiesIssued counts the cookies handed out by NTS-KE;
	// CookiesAccepted the NTP requests whose cookie opened and
	// authenticated; CookiesRejected those whose cookie could not be
	// opened (unknown or retired key, damaged).
	CookiesIssued   uint64 `json:"cookies_issued"`
	CookiesAccepted uint64 `json:"cookies_accepted"`
	CookiesRejected uint64 `json:"cookies_rejected"`
}

// BurstArgs are the arguments of "burst".
type BurstArgs struct {
	// Source is the name of the NTP source to burst (as "sources" shows
	// it); empty means every NTP source.
	Source string `json:"source,omitempty"`
}

// BurstReply is the result of "burst".
type BurstReply struct {
	// Sources are the names of the sources that will send a burst.
	Sources []string `json:"sources"`
}

// Source types of AddArgs.
const (
	AddServer = "server"
	AddPool   = "pool"
)

// AddArgs are the arguments of "add": an NTP server or pool to start now,
// as an entry of ntp.servers or ntp.pools would. Added sources survive a
// reload; a restart forgets them.
type AddArgs struct {
	// Type is AddServer or AddPool.
	Type string `json:"type"`
	// Address is a host name or IP address, without the port; Port 0
	// means 123.
	Address string `json:"address"`
	Port    int    `json:"port,omitempty"`
	IBurst  bool   `json:"iburst,omitempty"`
	NTS     bool   `json:"nts,omitempty"`
	Prefer  bool   `json:"prefer,omitempty"`
	// MinPoll and MaxPoll bound the poll interval (log2 seconds); absent
	// means the defaults.
	MinPoll *int `json:"minpoll,omitempty"`
	MaxPoll *int `json:"maxpoll,omitempty"`
}

// AddReply is the result of "add".
type AddReply struct {
	// Name is the source's name, host:port.
	Name string `json:"name"`
}

// RemoveArgs are the arguments of "remove".
type RemoveArgs struct {
	// Source is an NTP server or pool by the name "sources" shows
	// (host:port) or by its address alone.
	Source string `json:"source"`
}

// PTPReply is the result of "ptp": every configured PTP port.
type PTPReply struct {
	Ports []PTPPortStatus `json:"ports"`
}

// PTPPortStatus is one PTP port. Durations are in seconds; identities are
// written as IEEE 1588 clock identities with the port number
// (0a1b2c.fffe.3d4e5f-1).
type PTPPortStatus struct {
	Interface string `json:"interface"`
	Transport string `json:"transport"`
	Role      string `json:"role"`
	// State is the port state (SLAVE, MASTER, LISTENING, ...), Reason says
	// why in words, SinceAgo how long ago it was entered.
	State    string  `json:"state"`
	Reason   string  `json:"reason"`
	SinceAgo float64 `json:"since_ago_s"`
	Identity string  `json:"identity"`
	// Parent is the port the clock takes time from, Grandmaster its
	// grandmaster with its clock class and accuracy (0: unknown) and the
	// steps removed; empty unless the port follows a master or is one.
	Parent              string  `json:"parent,omitempty"`
	Grandmaster         string  `json:"grandmaster,omitempty"`
	GrandmasterClass    uint8   `json:"grandmaster_class,omitempty"`
	GrandmasterAccuracy float64 `json:"grandmaster_accuracy_s,omitempty"`
	StepsRemoved        uint16  `json:"steps_removed"`
	// UTCOffset is TAI − UTC as used; UTCOffsetValid whether the
	// grandmaster marks it valid; PTPTimescale whether the timescale is
	// PTP's (TAI) rather than arbitrary.
	UTCOffset      float64 `json:"utc_offset_s"`
	UTCOffsetValid bool    `json:"utc_offset_valid"`
	PTPTimescale   bool    `json:"ptp_timescale"`
	// Offset is the last measured offset from the master (local − master,
	// UTC), MeanPathDelay the last mean path delay, Timestamps their kind
	// (kernel, hardware, user), LastMeasurementAgo how long ago.
	Offset             float64 `json:"offset_s"`
	MeanPathDelay      float64 `json:"mean_path_delay_s"`
	Timestamps         string  `json:"timestamps,omitempty"`
	LastMeasurementAgo float64 `json:"last_measurement_ago_s,omitempty"`
	// Measurements counts completed Syncs; Dropped the messages the delay
	// mechanism did not use, by reason.
	Measurements uint64            `json:"measurements"`
	Dropped      map[string]uint64 `json:"dropped,omitempty"`
	// UnicastMasters is the unicast negotiation with each configured
	// master; empty when the port listens to multicast.
	UnicastMasters []PTPUnicastMaster `json:"unicast_masters,omitempty"`
	// UnicastClients are the unicast clients the port serves as master
	// (unicast_listen), with what each was granted; empty otherwise.
	UnicastClients []PTPUnicastClient `json:"unicast_clients,omitempty"`
	// GPTP is set on an 802.1AS port (gptp.ports).
	GPTP *GPTPInfo `json:"gptp,omitempty"`
}

// GPTPInfo is what an 802.1AS port adds to PTPPortStatus (whose
// MeanPathDelay is then the mean link delay).
type GPTPInfo struct {
	// Profile is "gptp" or "automotive".
	Profile string `json:"profile"`
	// ASCapable says whether the link qualifies (gptp: the neighbor
	// answers peer delay requests within neighbor_prop_delay_thresh;
	// automotive: assumed).
	ASCapable bool `json:"as_capable"`
	// Neighbor answers the peer delay requests; NeighborRateRatio is its
	// frequency over ours; RestoredLink says the link delay and ratio come
	// from the state file and were not measured yet.
	Neighbor          string  `json:"neighbor,omitempty"`
	NeighborRateRatio float64 `json:"neighbor_rate_ratio"`
	RestoredLink      bool    `json:"restored_link,omitempty"`
	// RateRatio is the grandmaster's frequency over ours.
	RateRatio float64 `json:"rate_ratio,omitempty"`
	// LogSyncInterval is the Sync interval now, log2 seconds.
	LogSyncInterval int8 `json:"log_sync_interval"`
	// PdelayExchanges counts completed peer delay exchanges; FirstSync is
	// the seconds from start to the first measurement (0: none yet).
	PdelayExchanges uint64  `json:"pdelay_exchanges"`
	FirstSync       float64 `json:"first_sync_s,omitempty"`
}

// PTPUnicastClient is a unicast client a master PTP port serves (IEEE 1588
// clause 16.1).
type PTPUnicastClient struct {
	// Address is the client's IP address, Identity the port identity of
	// its last request.
	Address  string `json:"address"`
	Identity string `json:"identity,omitempty"`
	// Grants are the message types granted it, each with State "granted",
	// the granted interval and the seconds left.
	Grants []PTPUnicastGrant `json:"grants"`
}

// PTPUnicastMaster is the unicast negotiation of a PTP port with one
// master (IEEE 1588 clause 16.1).
type PTPUnicastMaster struct {
	// Address is the master's IP address, Identity the port identity its
	// Announces carry (empty until one came), Selected whether the port
	// follows it.
	Address  string `json:"address"`
	Identity string `json:"identity,omitempty"`
	Selected bool   `json:"selected"`
	// Grants are the message types asked for.
	Grants []PTPUnicastGrant `json:"grants"`
}

// PTPUnicastGrant is one message type asked of a unicast master.
type PTPUnicastGrant struct {
	// Message is "announce", "sync" or "delay_resp"; State is "granted",
	// "requesting", "denied", "no answer" or "cancelled".
	Message string `json:"message"`
	State   string `json:"state"`
	// LogInterval is the message interval asked for or granted (log2 s),
	// Left how long the grant still runs, in seconds.
	LogInterval int8    `json:"log_interval"`
	Left        float64 `json:"left_s,omitempty"`
}

// ServerStatsReply is the result of "serverstats": the NTP server's
// counters since it started.
type ServerStatsReply struct {
	// Enabled is false when no server is configured (the rest is zero).
	Enabled bool     `json:"enabled"`
	Listen  []string `json:"listen"`
	// Workers is the number of sockets (and goroutines) serving.
	Workers int `json:"workers"`
	// Uptime is how long the server has run, in seconds.
	Uptime float64 `json:"uptime_s"`
	// Received counts datagrams read; Answered the time responses sent,
	// Interleaved of them in interleaved mode.
	Received    uint64 `json:"received"`
	Answered    uint64 `json:"answered"`
	Interleaved uint64 `json:"interleaved"`
	// KissRate and KissDeny count the RATE and DENY kiss-of-death replies.
	KissRate uint64 `json:"kiss_rate"`
	KissDeny uint64 `json:"kiss_deny"`
	// Dropped counts requests not answered with time, by reason.
	Dropped map[string]uint64 `json:"dropped"`
	// UserRxStamps counts requests without a kernel receive timestamp;
	// TxStamps the kernel transmit timestamps captured for interleaved
	// clients.
	UserRxStamps uint64 `json:"user_rx_stamps"`
	TxStamps     uint64 `json:"tx_stamps"`
	// Clients is how many clients the table holds, of ClientTableSize.
	Clients         int `json:"clients"`
	ClientTableSize int `json:"client_table_size"`
	// Stratum, Leap and RefID are what the server sends now.
	Stratum uint8        `json:"stratum"`
	Leap    sources.Leap `json:"leap"`
	RefID   uint32       `json:"refid"`
	// NTS is set when the server offers NTS.
	NTS *NTSServerStats `json:"nts,omitempty"`
	// CSPTP is set when the CSPTP/SPTP responder runs (csptp.listen).
	CSPTP *CSPTPServerStats `json:"csptp,omitempty"`
}

// CSPTPServerStats are the counters of the CSPTP/SPTP responder.
type CSPTPServerStats struct {
	// Listen lists the addresses it answers on.
	Listen []string `json:"listen"`
	// Answered counts answers by protocol ("sptp", "csptp"); Dropped the
	// requests not answered, by reason.
	Answered map[string]uint64 `json:"answered"`
	Dropped  map[string]uint64 `json:"dropped,omitempty"`
}

// NTSServerStats are the NTS counters of the server: NTS-KE and the NTS
// requests of the NTP server.
type NTSServerStats struct {
	// Listen lists the NTS-KE addresses.
	Listen []string `json:"listen"`
	// Answered counts authenticated NTS responses (of the server's
	// Answered); NAKs the NTS NAKs sent to requests whose cookie could not
	// be used or that failed authentication.
	Answered uint64 `json:"answered"`
	NAKs     uint64 `json:"naks"`
	// NTS-KE: connections accepted (Refused of them over the connection
	// limit), TLS handshakes completed, key exchanges answered with
	// cookies, and failures by kind; Active connections now.
	Accepted       uint64 `json:"ke_accepted"`
	Refused        uint64 `json:"ke_refused"`
	Handshakes     uint64 `json:"ke_handshakes"`
	Exchanges      uint64 `json:"ke_exchanges"`
	TLSErrors      uint64 `json:"ke_tls_errors"`
	Timeouts       uint64 `json:"ke_timeouts"`
	BadRequests    uint64 `json:"ke_bad_requests"`
	Unsupported    uint64 `json:"ke_unsupported"`
	InternalErrors uint64 `json:"ke_internal_errors"`
	WriteErrors    uint64 `json:"ke_write_errors"`
	Active         int64  `json:"ke_active"`
}

// ClientsArgs are the arguments of "clients".
type ClientsArgs struct {
	// Limit is how many clients to return, busiest first; 0 means 20.
	Limit int `json:"limit"`
}

// ClientsReply is the result of "clients".
type ClientsReply struct {
	// Enabled is false when no server is configured.
	Enabled bool         `json:"enabled"`
	Clients []ClientInfo `json:"clients"`
}

// ClientInfo is one client of the NTP server.
type ClientInfo struct {
	Address  string `json:"address"`
	Requests uint64 `json:"requests"`
	Served   uint64 `json:"served"`
	Kissed   uint64 `json:"kissed"`
	Dropped  uint64 `json:"dropped"`
	// Rate is the client's request rate, per second (a moving average).
	Rate float64 `json:"rate_per_s"`
	// LastSeenAgo is the time since its last request, in seconds.
	LastSeenAgo float64 `json:"last_seen_ago_s"`
	Interleaved bool    `json:"interleaved"`
}

// StatusReply is the result of "status".
type StatusReply struct {
	Engine sources.Status `json:"engine"`
	Clock  ClockInfo      `json:"clock"`
	// Refclocks are the configured reference clocks, in configuration
	// order; each has the engine source of the same name.
	Refclocks []RefclockInfo `json:"refclocks,omitempty"`
}

// RefclockInfo is what a reference clock (gpsd, SOCK, SHM or PPS) says
// about its input, beside its engine source.
type RefclockInfo struct {
	// Name is the engine source's name, Kind the reader ("gpsd", "sock",
	// "shm", "pps"), Device what it reads (a gpsd address and device, a
	// socket path, an SHM unit, a PPS device).
	Name   string `json:"name"`
	Kind   string `json:"kind"`
	Device string `json:"device"`
	// Connected reports whether the input is open; Reason says in words
	// why it is not, or why it gives no samples (empty when all is well).
	Connected bool   `json:"connected"`
	Reason    string `json:"reason,omitempty"`
	// Samples counts the measurements given to the engine, LastSampleAgo
	// the seconds since the last (absent before the first); Dropped the
	// inputs read but not used, by reason.
	Samples       uint64            `json:"samples"`
	LastSampleAgo float64           `json:"last_sample_ago_s,omitempty"`
	Dropped       map[string]uint64 `json:"dropped,omitempty"`
	// Mode is the GNSS fix mode (2: 2D, 3: 3D; 0: unknown or not a GNSS
	// reader) and Satellites the satellites used in the fix (0: unknown).
	Mode       int `json:"fix_mode,omitempty"`
	Satellites int `json:"satellites,omitempty"`
}

// ClockInfo describes the clock timed disciplines.
type ClockInfo struct {
	// Driver is the clock driver: "system", "virtual", "none", "phc".
	Driver string `json:"driver"`
	// OffsetFromSystem is how far the clock is ahead of the system clock,
	// in seconds (virtual clock only; 0 otherwise).
	OffsetFromSystem float64 `json:"offset_from_system_s"`
	// Frequency is the frequency correction applied, in ppm.
	Frequency float64 `json:"frequency_ppm"`
	// Device is the PTP hardware clock disciplined (driver "phc" only),
	// such as /dev/ptp0.
	Device string `json:"device,omitempty"`
	// Tie is how the system clock is kept on the PTP hardware clock;
	// absent when no clock is tied to it (drivers other than "phc", and
	// "phc" under the none driver).
	Tie *TieInfo `json:"tie,omitempty"`
}

// TieInfo is the state of the tie of the system clock to the PTP hardware
// clock (what linuxptp's phc2sys does).
type TieInfo struct {
	// Clock is the driver of the tied clock: "system", or "virtual"
	// without CAP_SYS_TIME and in tests.
	Clock string `json:"clock"`
	// Offset is the tied clock's offset from the PHC at the last
	// measurement, in seconds (positive: ahead); Delay that
	// measurement's read delay, in seconds.
	Offset float64 `json:"offset_s"`
	Delay  float64 `json:"delay_s"`
	// Frequency is the tied clock's frequency correction, in ppm.
	Frequency float64 `json:"frequency_ppm"`
	// Updates counts the measurements used, Dropped those dropped for a
	// slow read, Steps the steps of the tied clock.
	Updates int `json:"updates"`
	Dropped int `json:"dropped"`
	Steps   int `json:"steps"`
	// Waiting is true while the tie waits for the PHC's first
	// synchronization.
	Waiting bool `json:"waiting"`
}

// decodeRequest parses one request line and checks what every request must
// have: an object with a supported version and a command. Whether the
// command is known is for the server to say.
func decodeRequest(line []byte) (Request, error) {
	line = bytes.TrimSpace(line)
	if len(line) == 0 {
		return Request{}, errors.New("empty request")
	}
	if line[0] != '{' {
		return Request{}, errors.New("malformed request: not a JSON object")
	}
	var req Request
	if err := json.Unmarshal(line, &req); err != nil {
		var typeErr *json.UnmarshalTypeError
		if errors.As(err, &typeErr) && typeErr.Field != "" {
			return Request{}, fmt.Errorf("malformed request: %q must be a %s", typeErr.Field, jsonKind(typeErr.Field))
		}
		return Request{}, fmt.Errorf("malformed request: %v", err)
	}
	switch {
	case req.Version == 0:
		return req, errors.New("malformed request: missing \"version\"")
	case req.Version != Version:
		return req, fmt.Errorf("unsupported protocol version %d (this timed speaks version %d)", req.Version, Version)
	case req.Command == "":
		return req, errors.New("malformed request: missing \"command\"")
	}
	if len(req.Args) > 0 && req.Args[0] != '{' && !bytes.Equal(req.Args, []byte("null")) {
		return req, errors.New("malformed request: \"args\" must be an object")
	}
	return req, nil
}

func jsonKind(field string) string {
	switch field {
	case "version":
		return "number"
	case "command":
		return "string"
	default:
		return "value of another type"
	}
}

// errorResponse is a failed response with the given message.
func errorResponse(msg string) Response {
	return Response{Version: Version, OK: false, Error: msg}
}
