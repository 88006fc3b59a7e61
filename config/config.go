// Package config reads timed's configuration file, timed.yaml.
//
// The file is YAML. Every key has a default, so a file only names what it
// changes; an empty file is valid and means "all defaults, no sources".
// Mistakes are reported as *Error values (joined with errors.Join) that name
// the file, line and column, the key path, what is wrong and what is allowed.
// docs/CONFIG.md is the reference of every key; default.yaml, embedded here
// as DefaultYAML, is the configuration timed runs with when it has no file.
package config

import (
	_ "embed"
	"fmt"
	"os"
	"time"
)

// DefaultPath is where timed looks for its configuration file.
const DefaultPath = "/etc/timed/timed.yaml"

// DefaultYAML is the embedded default configuration file. It documents every
// key in comments.
//
//go:embed default.yaml
var DefaultYAML []byte

// Config is the whole configuration file.
type Config struct {
	Clock ClockConfig
	// DriftFile is where the oscillator's frequency error is kept across
	// restarts; empty disables it.
	DriftFile string
	Engine    EngineConfig
	NTP       NTPConfig
	Server    ServerConfig
	PTP       PTPConfig
	// GPTP is 802.1AS (gPTP and the automotive profile).
	GPTP GPTPConfig
	// CSPTP is client-server PTP: servers to poll and addresses to answer
	// on.
	CSPTP CSPTPConfig
	// Refclocks are the reference clocks (GNSS receivers) read through
	// gpsd, SOCK, SHM or PPS devices.
	Refclocks []Refclock
	Control   ControlConfig
	Metrics   MetricsConfig
	Log       LogConfig
	// Seccomp makes timed install a seccomp filter once it has started: a
	// system call outside its allow-list fails with EPERM (Linux amd64 and
	// arm64; elsewhere it has no effect).
	Seccomp bool
}

// ClockConfig is the `clock:` section: the clock timed disciplines.
type ClockConfig struct {
	// Driver is "system" (the OS clock), "virtual" (a clock of timed's own
	// on top of the system clock, which is never changed) or "none"
	// (observe only).
	Driver string
	// Simulate gives the virtual clock an initial error; it is only valid
	// with the virtual driver.
	Simulate SimulateConfig
}

// SimulateConfig is the error a virtual clock starts with.
type SimulateConfig struct {
	Offset       time.Duration
	FrequencyPPM float64
}

// EngineConfig is the `engine:` section: how sources are combined and how
// the clock is steered.
type EngineConfig struct {
	// MinAgreeingSources is how many sources must agree before the clock
	// is steered (at least 1).
	MinAgreeingSources int
	// StepThreshold: offsets larger than this are stepped, not slewed;
	// zero never steps.
	StepThreshold time.Duration
	// StepLimit is how many of the first clock updates may step; -1
	// allows steps at any time.
	StepLimit int
	// PanicThreshold: offsets larger than this are never corrected
	// automatically; zero disables the check.
	PanicThreshold time.Duration
	// MaxSlewRatePPM bounds the rate at which a phase error is slewed away.
	MaxSlewRatePPM float64
	// MaxFrequencyPPM bounds the absolute frequency correction.
	MaxFrequencyPPM float64
	// RequireAuthenticated keeps unauthenticated sources (without NTS)
	// from steering the clock.
	RequireAuthenticated bool
}

// NTPConfig is the `ntp:` section: NTP servers and pools to synchronize to.
type NTPConfig struct {
	Servers []NTPServer
	Pools   []NTPPool
}

// NTPServer is one NTP server.
type NTPServer struct {
	// Address is a host name or an IP address literal (without a port).
	Address string
	Port    int
	// IBurst sends a quick burst of requests at start.
	IBurst bool
	// XLeave asks for interleaved mode (RFC 9769): the server's true
	// transmit times, sent one response later.
	XLeave bool
	// MinPoll and MaxPoll bound the poll interval, log2 seconds (-6..17).
	MinPoll, MaxPoll int
	// Selection flags, as sources.SourceOptions.
	Prefer, NoSelect, Trust, Require bool
	// BoundedByAuthenticated (`bounded_by: authenticated`): the server is
	// used only while it agrees with the authenticated (NTS) sources.
	BoundedByAuthenticated bool
	// NTS protects the association with Network Time Security (RFC 8915).
	NTS NTSClient
}

// NTPPool is a DNS name that resolves to several NTP servers, of which up to
// MaxSources are used at a time.
type NTPPool struct {
	Address          string
	Port             int
	MaxSources       int
	IBurst           bool
	XLeave           bool
	MinPoll, MaxPoll int
	// NTS protects every member with Network Time Security: each one's
	// key exchange goes to its own address (or NTS.Server) on NTS.Port,
	// and the certificate must name the pool (as chrony does).
	NTS NTSClient
}

// NTSClient is the `nts:` key of an NTP server or pool: `true`, or a mapping
// of the key exchange server, its port and the CA to trust.
type NTSClient struct {
	// Enabled turns NTS on.
	Enabled bool
	// Server is the NTS-KE server's host; empty means the entry's address.
	Server string
	// Port is the NTS-KE port: DefaultNTSKEPort when NTS is on and no
	// port is given.
	Port int
	// CA is a PEM file of CA certificates to trust instead of the
	// system's roots; empty means the system's roots.
	CA string
	// IgnoreDatesUntilSynced skips the certificates' validity dates until
	// the clock has been synchronized once (a clock far wrong at boot;
	// chrony's nocerttimecheck). The chain and the name are always checked.
	IgnoreDatesUntilSynced bool
}

// DefaultNTSKEPort is the NTS-KE port of RFC 8915.
const DefaultNTSKEPort = 4460

// ControlConfig is the `control:` section.
type ControlConfig struct {
	// Socket is the path of the control socket timectl talks to.
	Socket string
}

// MetricsConfig is the `metrics:` section.
type MetricsConfig struct {
	// Listen is the loopback host:port of the Prometheus /metrics
	// endpoint; empty turns it off.
	Listen string
}

// LogConfig is the `log:` section.
type LogConfig struct {
	// Level is debug, info, warn or error.
	Level string
	// Format is auto (console on a terminal, json otherwise), console or
	// json.
	Format string
}

// Default values of the keys a file leaves out.
const (
	DefaultDriftFile     = "/var/lib/timed/drift"
	DefaultControlSocket = "/run/timed/timed.sock"
	DefaultNTPPort       = 123
	DefaultMinPoll       = 6
	DefaultMaxPoll       = 10
	DefaultPoolSources   = 4
)

// Load reads and parses the configuration file at path.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return Parse(path, data)
}

// Parse parses the contents of a configuration file. filename is used in
// error messages only. On failure the error is all the mistakes found,
// joined, each an *Error.
func Parse(filename string, data []byte) (*Config, error) {
	c := defaults()
	d := &decoder{file: filename}
	root := d.document(data)
	if root != nil {
		d.mapping(root, "", topLevel(&c))
		d.refclockLocks(root, &c)
		d.sharedInterfaces(root, &c)
	}
	if err := d.err(); err != nil {
		return nil, err
	}
	return &c, nil
}

// Default returns the configuration of the embedded default file.
func Default() *Config {
	c, err := Parse("default.yaml", DefaultYAML)
	if err != nil {
		// The embedded file is tested; this cannot happen in a build
		// that passed its tests.
		panic(fmt.Sprintf("config: embedded default.yaml is invalid: %v", err))
	}
	return c
}

// defaults is the configuration of an empty file.
func defaults() Config {
	return Config{
		Clock:     ClockConfig{Driver: "system"},
		DriftFile: DefaultDriftFile,
		Engine: EngineConfig{
			MinAgreeingSources: 1,
			StepThreshold:      time.Second,
			StepLimit:          3,
			PanicThreshold:     1000 * time.Second,
			MaxSlewRatePPM:     83333.333,
			MaxFrequencyPPM:    500,
		},
		Server:  defaultServerSection(),
		PTP:     defaultPTPSection(),
		Control: ControlConfig{Socket: DefaultControlSocket},
		Seccomp: true,
		Log:     LogConfig{Level: "info", Format: "auto"},
	}
}

func defaultServer() NTPServer {
	return NTPServer{Port: DefaultNTPPort, MinPoll: DefaultMinPoll, MaxPoll: DefaultMaxPoll}
}

func defaultPool() NTPPool {
	return NTPPool{Port: DefaultNTPPort, MaxSources: DefaultPoolSources, MinPoll: DefaultMinPoll, MaxPoll: DefaultMaxPoll}
}
