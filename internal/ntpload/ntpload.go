// Package ntpload loads an NTP server with client requests and measures how
// it copes: responses per second, loss, latency and, given the server's
// process ID, the server's CPU time per response.
//
// Requests are NTPv4 client packets (48 bytes) whose transmit timestamp is a
// cookie: random high bits and a sequence number in the low bits, which the
// server echoes as the origin timestamp. Every response is matched to its
// request by that cookie, so responses are counted once and late, duplicate,
// foreign and malformed datagrams are told apart.
//
// With Options.Protocol set to sptp or csptp the requests are instead
// client-server PTP ones, built by package csptp's encoder, one sequence
// number after the other, each from its source address with a clock
// identity of its own; an answer is matched by its sequence id and the
// address it came back to, and is complete when all its datagrams came (an
// SPTP Sync and Announce, a CSPTP Sync).
//
// On Linux the requests come from many source addresses: 127.0.0.0/8 is
// all on loopback, so each worker has one socket bound to the wildcard
// address (and to the loopback device when the server is on loopback) and
// chooses the source address of each send with IP_PKTINFO. A send carries
// Burst requests from one source address as one UDP GSO (UDP_SEGMENT)
// datagram that the kernel splits into Burst 48-byte datagrams, and many
// sends go in one sendmmsg call; responses are read with recvmmsg in the
// same loop. Nothing is allocated per packet. A worker paces a fixed rate
// in steps of 50 µs, waiting in ppoll for responses in between. Elsewhere
// Run returns an error.
//
// On this project's machine one worker on one core sends about 1.8 million
// requests a second in GSO bursts of 16 (2.5 million in bursts of 64), and
// 0.3 to 0.37 million one request per address, plain or not (the kernel's
// receive path on loopback runs on the sender's core and is part of that).
package ntpload

import (
	"errors"
	"fmt"
	"net/netip"
	"time"

	"go.uber.org/zap"

	"github.com/timed-project/timed/csptp"
	"github.com/timed-project/timed/nts"
)

// Options says how to load a server. The zero value of a field means its
// default.
type Options struct {
	// Server is the server's IPv4 address and port.
	Server netip.AddrPort
	// Sources is the number of distinct source addresses (default 1), up
	// to MaxSources.
	Sources int
	// FirstSource is the first source address (default 127.1.0.1); the
	// others follow it, skipping addresses that end in .0 or .255. They must
	// be local addresses: any 127.a.b.c is.
	FirstSource netip.Addr
	// Rate is the number of requests per second of all workers together;
	// 0 sends as fast as the workers can.
	Rate float64
	// Duration is how long to send (default 1 s).
	Duration time.Duration
	// Workers is the number of sockets, each with a goroutine on a thread
	// of its own that sends and receives (default 1). Each has its own
	// source port; the source addresses are dealt out among them, and the
	// rate is shared equally.
	Workers int
	// Burst is the number of requests sent in a row from one source
	// address, as one UDP GSO send (default 16, at most MaxBurst). The
	// next burst comes from the next source address.
	Burst int
	// NoGSO sends each request as a datagram of its own (plain sendmmsg),
	// still Burst in a row from each source address.
	NoGSO bool
	// Wait is how long to wait for responses after the last request
	// (default 500 ms); it ends early once every request is answered.
	Wait time.Duration
	// ServerPID, when not 0, is the server's process: its CPU time over
	// the measurement is reported.
	ServerPID int
	// NTS, when not empty, makes every request an NTS-protected one
	// (RFC 8915): the source addresses are dealt out among these clients,
	// and each request carries a fresh unique identifier, the client's
	// cookie and an authenticator sealed with its key, so the server does
	// all of an NTS request's work. The cookies must all be as long.
	NTS []NTSClient
	// Protocol is what the requests are: ProtocolNTP (the default),
	// ProtocolSPTP or ProtocolCSPTP. A PTP request's sequence id and
	// source address match it to its answer; each source address has a
	// clock identity of its own.
	Protocol string
	// Pad pads each SPTP or CSPTP request with a PAD TLV to the length of
	// its answer, as servers that refuse to amplify want.
	Pad bool
	// Logger receives warnings (nil: none).
	Logger *zap.Logger
}

// NTSClient is one NTS client's keys and a cookie, from an NTS-KE
// exchange with the server (see KeyExchange). Its cookie is sent again and
// again, which servers accept (they keep no record of cookies used); a
// real client would use each once.
type NTSClient struct {
	Session *nts.ClientSession
	Cookie  []byte
}

// MaxSources is the number of distinct source addresses there are from
// 127.1.0.1 on, skipping .0 and .255.
const MaxSources = 255 * 256 * 254

// MaxBurst is the most requests one GSO send carries (the kernel's limit
// is 64 segments on older kernels).
const MaxBurst = 64

// Result is what a run measured. Rates are per second of sending time.
type Result struct {
	Server  string `json:"server"`
	Sources int    `json:"sources"`
	Workers int    `json:"workers"`
	Burst   int    `json:"burst"`
	GSO     bool   `json:"gso"`
	NTS     bool   `json:"nts,omitempty"`
	// Protocol is what the requests were: ntp, sptp or csptp.
	Protocol string `json:"protocol"`
	// RequestLen is the length of each request in bytes.
	RequestLen int `json:"request_len"`
	// ResponseLen is the mean number of bytes an answer took from the
	// server, all its datagrams together (UDP payload, as RequestLen); a
	// ratio to RequestLen above 1 is amplification.
	ResponseLen float64 `json:"response_len"`
	Offered     float64 `json:"offered_rate"` // requests/s asked for; 0 = maximal
	// Seconds is how long requests were sent.
	Seconds float64 `json:"duration_s"`

	Sent     uint64 `json:"sent"`
	Answered uint64 `json:"answered"` // matched, complete answers that are not kisses
	Kissed   uint64 `json:"kissed"`   // matched kiss-of-death responses
	// Kisses counts the matched kisses by code (RATE, DENY, ...).
	Kisses map[string]uint64 `json:"kisses,omitempty"`
	// Unmatched counts server responses whose origin timestamp matches no
	// request still remembered (late beyond the ring, forged), and
	// datagrams from other addresses than the server's.
	Unmatched uint64 `json:"unmatched"`
	// Duplicates counts second and later responses to one request.
	Duplicates uint64 `json:"duplicates"`
	// Malformed counts datagrams that are not NTP server responses.
	Malformed uint64 `json:"malformed"`
	// RecvDropped counts responses the kernel dropped because the load
	// generator's own receive buffer was full (SO_RXQ_OVFL): loss that is
	// not the server's.
	RecvDropped uint64 `json:"recv_dropped"`

	SendRate     float64 `json:"send_rate"`     // Sent / Seconds
	ResponseRate float64 `json:"response_rate"` // Answered / Seconds
	// Loss is 1 − (Answered + Kissed) / Sent: a kiss is an answer.
	Loss float64 `json:"loss"`
	// Latency is from the user-space send to the user-space receive, over
	// the answered requests.
	Latency Latency `json:"latency_us"`

	ServerPID int `json:"server_pid,omitempty"`
	// ServerCPU is the server's user + system CPU seconds from the first
	// send to the end of the wait for responses (10 ms resolution).
	ServerCPU float64 `json:"server_cpu_s,omitempty"`
	// ServerCores is ServerCPU over Seconds: how many cores the server
	// kept busy while requests were sent.
	ServerCores float64 `json:"server_cores,omitempty"`
	// PerCPUSecond is Answered / ServerCPU.
	PerCPUSecond float64 `json:"responses_per_cpu_s,omitempty"`

	// responseBytes is the bytes of the datagrams that made up the
	// answers counted.
	responseBytes uint64
}

// Latency holds latency percentiles in microseconds.
type Latency struct {
	P50  float64 `json:"p50"`
	P90  float64 `json:"p90"`
	P99  float64 `json:"p99"`
	P999 float64 `json:"p99.9"`
	Max  float64 `json:"max"`
	Mean float64 `json:"mean"`
}

func latencyOf(h *histogram) Latency {
	us := func(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }
	return Latency{
		P50: us(h.quantile(0.5)), P90: us(h.quantile(0.9)), P99: us(h.quantile(0.99)), P999: us(h.quantile(0.999)),
		Max: us(time.Duration(h.max)), Mean: us(h.mean()),
	}
}

// withDefaults checks o and fills in its defaults.
func (o Options) withDefaults() (Options, error) {
	if !o.Server.IsValid() || !o.Server.Addr().Unmap().Is4() || o.Server.Port() == 0 {
		return o, fmt.Errorf("ntpload: server %s: want an IPv4 address and port", o.Server)
	}
	o.Server = netip.AddrPortFrom(o.Server.Addr().Unmap(), o.Server.Port())
	if o.Sources == 0 {
		o.Sources = 1
	}
	if !o.FirstSource.IsValid() {
		o.FirstSource = netip.AddrFrom4([4]byte{127, 1, 0, 1})
	}
	o.FirstSource = o.FirstSource.Unmap()
	if o.Duration == 0 {
		o.Duration = time.Second
	}
	if o.Workers == 0 {
		o.Workers = 1
	}
	if o.Burst == 0 {
		o.Burst = 16
	}
	if o.Wait == 0 {
		o.Wait = 500 * time.Millisecond
	}
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	if o.Protocol == "" {
		o.Protocol = ProtocolNTP
	}
	p, err := ptpProtocol(o.Protocol)
	if err != nil {
		return o, err
	}
	if p != 0 && len(o.NTS) > 0 {
		return o, fmt.Errorf("ntpload: NTS with protocol %s: NTS protects NTP only", o.Protocol)
	}
	if p == 0 && o.Pad {
		return o, errors.New("ntpload: padding is for SPTP and CSPTP requests")
	}
	switch {
	case o.Sources < 1 || o.Sources > MaxSources:
		return o, fmt.Errorf("ntpload: %d sources: want 1 to %d", o.Sources, MaxSources)
	case !o.FirstSource.Is4():
		return o, fmt.Errorf("ntpload: first source %s: want an IPv4 address", o.FirstSource)
	case o.Rate < 0:
		return o, fmt.Errorf("ntpload: rate %g: want a positive rate, or 0 for maximal", o.Rate)
	case o.Duration < 0 || o.Wait < 0:
		return o, errors.New("ntpload: negative duration or wait")
	case o.Workers < 1 || o.Workers > 1024:
		return o, fmt.Errorf("ntpload: %d workers: want 1 to 1024", o.Workers)
	case o.Burst < 1 || o.Burst > MaxBurst:
		return o, fmt.Errorf("ntpload: burst %d: want 1 to %d", o.Burst, MaxBurst)
	}
	for i, c := range o.NTS {
		if c.Session == nil || len(c.Cookie) == 0 || len(c.Cookie) != len(o.NTS[0].Cookie) {
			return o, fmt.Errorf("ntpload: NTS client %d: want keys and a cookie as long as the others'", i)
		}
	}
	if _, err := sourceAddr(o.FirstSource, o.Sources-1); err != nil {
		return o, err
	}
	return o, nil
}

// requestLen is the length of each request o makes (o has its defaults).
func requestLen(o Options) int {
	if p, _ := ptpProtocol(o.Protocol); p != 0 {
		b, _ := ptpTemplate(p, [4]byte{127, 0, 0, 1}, ptpPad(o, p))
		return len(b)
	}
	if len(o.NTS) == 0 {
		return headerLen
	}
	return headerLen + nts.RequestFieldsLen(len(o.NTS[0].Cookie), 0)
}

// ptpPad is the PAD TLV length o's PTP requests of protocol p carry.
func ptpPad(o Options, p csptp.Protocol) int {
	if !o.Pad {
		return 0
	}
	n, _ := ptpPadding(p)
	return n
}

// sourceAddr is the i-th source address from first on, skipping addresses
// whose last byte is 0 or 255 (254 usable addresses in each /24).
func sourceAddr(first netip.Addr, i int) ([4]byte, error) {
	a := first.As4()
	base := uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8
	last := int(a[3])
	if last == 0 || last == 255 {
		return a, fmt.Errorf("ntpload: first source %s ends in .%d: want .1 to .254", first, last)
	}
	k := last - 1 + i // index among the usable addresses from base on
	v := uint64(base) + uint64(k/254)<<8 + uint64(k%254+1)
	if v>>24 != uint64(a[0]) {
		return a, fmt.Errorf("ntpload: %d sources from %s run out of the /8", i+1, first)
	}
	return [4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}, nil
}

// finish computes the derived figures.
func (r *Result) finish(h *histogram) {
	if r.Seconds > 0 {
		r.SendRate = float64(r.Sent) / r.Seconds
		r.ResponseRate = float64(r.Answered) / r.Seconds
	}
	if r.Sent > 0 {
		r.Loss = 1 - float64(r.Answered+r.Kissed)/float64(r.Sent)
	}
	r.Latency = latencyOf(h)
	if r.Answered+r.Kissed > 0 {
		r.ResponseLen = float64(r.responseBytes) / float64(r.Answered+r.Kissed)
	}
	if r.ServerCPU > 0 {
		r.PerCPUSecond = float64(r.Answered) / r.ServerCPU
	}
	if r.ServerPID != 0 && r.Seconds > 0 {
		r.ServerCores = r.ServerCPU / r.Seconds
	}
}
