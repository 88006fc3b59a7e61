package config

import (
	"fmt"
	"net/netip"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// ServerConfig is the `server:` section: timed's NTP server. It serves
// nothing unless Listen names at least one address.
type ServerConfig struct {
	// Listen lists the addresses and ports to serve NTP on.
	Listen []netip.AddrPort
	// Workers is the number of SO_REUSEPORT sockets (and goroutines) per
	// listen address; 0 means one per CPU.
	Workers int
	// Interleaved answers interleaved requests (RFC 9769).
	Interleaved bool
	// Allow lists the networks served (empty: all); Deny the networks
	// refused, checked first.
	Allow, Deny []netip.Prefix
	// DenyResponse is "ignore" (send nothing) or "kiss" (a DENY
	// kiss-of-death).
	DenyResponse string
	// ClientTableSize is how many clients are remembered for rate limits,
	// interleaved mode and `timectl clients`: the bound on its memory.
	ClientTableSize int
	RateLimit       RateLimitConfig
	// LocalStratum, when 1 to 15, serves that stratum while no source is
	// selected (chrony's `local stratum`); 0 turns it off.
	LocalStratum int
	// NTS is `server.nts`: the NTS-KE server and NTS in the NTP server.
	NTS NTSServerConfig
}

// NTSServerConfig is `server.nts`: NTS (RFC 8915) for the NTP server. It
// is off while Listen is empty.
type NTSServerConfig struct {
	// Listen lists the addresses and ports of the NTS-KE server (TLS).
	Listen []netip.AddrPort
	// Certificate and Key are the PEM files of the server's certificate
	// chain and private key, read again on SIGHUP.
	Certificate, Key string
	// KeyFile keeps the cookie keys across restarts; hosts that share it
	// share cookies.
	KeyFile string
	// KeyRotation is how often a new cookie key is made; KeysKept how many
	// rotation periods a key opens cookies.
	KeyRotation time.Duration
	KeysKept    int
	// MaxConnections bounds the NTS-KE connections served at once; Timeout
	// bounds one of them.
	MaxConnections int
	Timeout        time.Duration
}

// Defaults of server.nts.
const (
	DefaultNTSKeyFile        = "/var/lib/timed/nts-keys"
	DefaultNTSKeyRotation    = 24 * time.Hour
	DefaultNTSKeysKept       = 7
	DefaultNTSMaxConnections = 64
	DefaultNTSTimeout        = 5 * time.Second
)

// RateLimitConfig is `server.rate_limit`.
type RateLimitConfig struct {
	// Interval is the mean interval allowed between requests from one
	// address; 0 disables rate limiting.
	Interval time.Duration
	// Burst is how many requests an address may send at once.
	Burst int
	// KissEvery: 1 in this many over-limit requests gets a RATE kiss, the
	// rest nothing; 0 never kisses.
	KissEvery int
	// PrefixIPv4 and PrefixIPv6 are the prefix lengths of the per-network
	// limit; PrefixInterval (0 disables it) and PrefixBurst its limit.
	PrefixIPv4, PrefixIPv6 int
	PrefixInterval         time.Duration
	PrefixBurst            int
}

// Defaults of the server section.
const (
	DefaultClientTableSize = 65536
	DefaultRateInterval    = time.Second
	DefaultRateBurst       = 16
	DefaultKissEvery       = 4
)

func defaultServerSection() ServerConfig {
	return ServerConfig{
		Interleaved:     true,
		DenyResponse:    "ignore",
		ClientTableSize: DefaultClientTableSize,
		RateLimit: RateLimitConfig{
			Interval: DefaultRateInterval, Burst: DefaultRateBurst, KissEvery: DefaultKissEvery,
			PrefixIPv4: 24, PrefixIPv6: 48, PrefixInterval: 10 * time.Millisecond, PrefixBurst: 256,
		},
		NTS: NTSServerConfig{
			KeyFile: DefaultNTSKeyFile, KeyRotation: DefaultNTSKeyRotation, KeysKept: DefaultNTSKeysKept,
			MaxConnections: DefaultNTSMaxConnections, Timeout: DefaultNTSTimeout,
		},
	}
}

func (d *decoder) server(n *yaml.Node, path string, c *ServerConfig) {
	var ntsNode *yaml.Node
	given := d.mapping(n, path, []field{
		{"listen", func(d *decoder, n *yaml.Node, p string) { c.Listen = d.listenAddrs(n, p, 123) }},
		{"workers", func(d *decoder, n *yaml.Node, p string) {
			d.integer(n, p, 0, 1024, "use a count of sockets per address from 1 to 1024, or 0 for one per CPU", &c.Workers)
		}},
		boolField("interleaved", &c.Interleaved),
		{"allow", func(d *decoder, n *yaml.Node, p string) { c.Allow = d.prefixes(n, p) }},
		{"deny", func(d *decoder, n *yaml.Node, p string) { c.Deny = d.prefixes(n, p) }},
		{"deny_response", func(d *decoder, n *yaml.Node, p string) {
			d.oneOf(n, p, "response to denied clients", []string{"ignore", "kiss"}, &c.DenyResponse)
		}},
		{"client_table_size", func(d *decoder, n *yaml.Node, p string) {
			d.integer(n, p, 64, 1<<24, "use a count of clients from 64 to 16777216, such as 65536", &c.ClientTableSize)
		}},
		{"rate_limit", func(d *decoder, n *yaml.Node, p string) { d.rateLimit(n, p, &c.RateLimit) }},
		{"local", func(d *decoder, n *yaml.Node, p string) {
			d.mapping(n, p, []field{
				{"stratum", func(d *decoder, n *yaml.Node, p string) {
					d.integer(n, p, 0, 15, "use a stratum from 1 to 15, such as 10, or 0 to turn local off", &c.LocalStratum)
				}},
			})
		}},
		{"nts", func(d *decoder, n *yaml.Node, p string) {
			ntsNode = n
			d.serverNTS(n, p, &c.NTS)
		}},
	})
	if ntsNode != nil && len(c.NTS.Listen) > 0 && len(c.Listen) == 0 {
		k := given["nts"]
		d.errorf(k, joinPath(path, "nts"), "NTS needs the NTP server: add server.listen, such as - \"0.0.0.0:123\"")
	}
}

// listenAddrs decodes a list of IP addresses with ports, each given once.
func (d *decoder) listenAddrs(n *yaml.Node, path string, port int) []netip.AddrPort {
	var out []netip.AddrPort
	seen := map[netip.AddrPort]int{}
	hint := fmt.Sprintf(`use an IP address and port such as "0.0.0.0:%d", "[::]:%d" or "192.0.2.1:%d"`, port, port, port)
	d.list(n, path, fmt.Sprintf(`- "0.0.0.0:%d"`, port), func(n *yaml.Node, p string) {
		var s string
		if !d.str(n, p, hint, &s) {
			return
		}
		ap, err := netip.ParseAddrPort(s)
		if err != nil || ap.Port() == 0 || ap.Addr().Zone() != "" {
			d.errorf(resolve(n), p, "%s is not an IP address and port; %s", quote(s), hint)
			return
		}
		ap = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
		if line, ok := seen[ap]; ok {
			d.errorf(resolve(n), p, "%s is already listed at line %d; list each address once", s, line)
			return
		}
		seen[ap] = resolve(n).Line
		out = append(out, ap)
	})
	return out
}

// serverNTS decodes `server.nts`.
func (d *decoder) serverNTS(n *yaml.Node, path string, c *NTSServerConfig) {
	bad := map[string]bool{} // keys already reported
	given := d.mapping(n, path, []field{
		{"listen", func(d *decoder, n *yaml.Node, p string) { c.Listen = d.listenAddrs(n, p, 4460) }},
		{"certificate", func(d *decoder, n *yaml.Node, p string) {
			bad["certificate"] = !d.path(n, p, true, "use the absolute path of the PEM file of the server's certificate chain, such as /etc/timed/nts.crt", &c.Certificate)
		}},
		{"key", func(d *decoder, n *yaml.Node, p string) {
			bad["key"] = !d.path(n, p, true, "use the absolute path of the PEM file of the certificate's private key, such as /etc/timed/nts.key", &c.Key)
		}},
		{"key_file", func(d *decoder, n *yaml.Node, p string) {
			d.path(n, p, false, "use an absolute path such as "+DefaultNTSKeyFile, &c.KeyFile)
		}},
		{"key_rotation", func(d *decoder, n *yaml.Node, p string) {
			if d.duration(n, p, false, "use a duration such as 24h", &c.KeyRotation) && c.KeyRotation < time.Minute {
				d.errorf(resolve(n), p, "%s is too short; use a duration of at least 1m, such as 24h", c.KeyRotation)
			}
		}},
		{"keys_kept", func(d *decoder, n *yaml.Node, p string) {
			d.integer(n, p, 2, 1000, "use a count of rotation periods from 2 to 1000, such as 7", &c.KeysKept)
		}},
		{"max_connections", func(d *decoder, n *yaml.Node, p string) {
			d.integer(n, p, 1, 1<<16, "use a count of connections from 1 to 65536, such as 64", &c.MaxConnections)
		}},
		{"timeout", func(d *decoder, n *yaml.Node, p string) {
			if d.duration(n, p, false, "use a duration such as 5s", &c.Timeout) && c.Timeout <= 0 {
				d.errorf(resolve(n), p, "a timeout of 0 would end every connection at once; use a duration such as 5s")
			}
		}},
	})
	if given == nil || len(c.Listen) == 0 {
		return
	}
	for _, f := range []struct{ key, val string }{{"certificate", c.Certificate}, {"key", c.Key}} {
		if f.val == "" && !bad[f.key] {
			d.errorf(resolve(n), path, "%s is missing; NTS-KE (listen is set) needs the server's certificate and its key, such as certificate: /etc/timed/nts.crt and key: /etc/timed/nts.key", f.key)
		}
	}
}

// prefixes decodes a list of networks in CIDR notation; a bare address is
// a network of one.
func (d *decoder) prefixes(n *yaml.Node, path string) []netip.Prefix {
	var out []netip.Prefix
	d.list(n, path, `- 192.0.2.0/24`, func(n *yaml.Node, p string) {
		const hint = "use a network such as 192.0.2.0/24 or 2001:db8::/32, or an address such as 192.0.2.1"
		var s string
		if !d.str(n, p, hint, &s) {
			return
		}
		var pfx netip.Prefix
		var err error
		if strings.Contains(s, "/") {
			pfx, err = netip.ParsePrefix(s)
		} else {
			var a netip.Addr
			if a, err = netip.ParseAddr(s); err == nil {
				pfx = netip.PrefixFrom(a, a.BitLen())
			}
		}
		if err != nil || pfx.Addr().Zone() != "" {
			d.errorf(resolve(n), p, "%s is not a network; %s", quote(s), hint)
			return
		}
		if pfx.Masked() != pfx {
			d.errorf(resolve(n), p, "%s has bits set after the prefix length; write %s", quote(s), pfx.Masked())
			return
		}
		if pfx.Addr().Is4In6() {
			pfx = netip.PrefixFrom(pfx.Addr().Unmap(), pfx.Bits()-96)
		}
		out = append(out, pfx)
	})
	return out
}

func (d *decoder) rateLimit(n *yaml.Node, path string, c *RateLimitConfig) {
	const intervalHint = "use a duration such as 1s or 100ms, or 0 to turn the limit off"
	d.mapping(n, path, []field{
		{"interval", func(d *decoder, n *yaml.Node, p string) {
			d.duration(n, p, false, intervalHint, &c.Interval)
		}},
		{"burst", func(d *decoder, n *yaml.Node, p string) {
			d.integer(n, p, 1, 1<<20, "use a count of requests from 1 to 1048576, such as 16", &c.Burst)
		}},
		{"kiss_every", func(d *decoder, n *yaml.Node, p string) {
			d.integer(n, p, 0, 1<<20, "use a count such as 4 (one RATE kiss in 4 over-limit requests), or 0 to never send one", &c.KissEvery)
		}},
		{"prefix_ipv4", func(d *decoder, n *yaml.Node, p string) {
			d.integer(n, p, 1, 32, "use an IPv4 prefix length from 1 to 32, such as 24", &c.PrefixIPv4)
		}},
		{"prefix_ipv6", func(d *decoder, n *yaml.Node, p string) {
			d.integer(n, p, 1, 128, "use an IPv6 prefix length from 1 to 128, such as 48", &c.PrefixIPv6)
		}},
		{"prefix_interval", func(d *decoder, n *yaml.Node, p string) {
			d.duration(n, p, false, intervalHint, &c.PrefixInterval)
		}},
		{"prefix_burst", func(d *decoder, n *yaml.Node, p string) {
			d.integer(n, p, 1, 1<<24, "use a count of requests from 1 to 16777216, such as 256", &c.PrefixBurst)
		}},
	})
}
