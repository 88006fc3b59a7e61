package config

import (
	"net/netip"

	"gopkg.in/yaml.v3"
)

// DefaultCSPTPPort is the PTP event port, where CSPTP and SPTP servers
// listen.
const DefaultCSPTPPort = 319

// CSPTPConfig is the `csptp:` section: client-server PTP (IEEE 1588.1 and
// Meta's SPTP) servers to take time from, and the addresses to answer on.
type CSPTPConfig struct {
	// Servers are the CSPTP or SPTP servers timed polls.
	Servers []CSPTPServer
	// Listen lists the addresses the CSPTP/SPTP server answers on; empty
	// means no server.
	Listen []netip.AddrPort
	// RefuseAmplification answers only requests padded to the length of
	// their answer (clients that do not pad get none).
	RefuseAmplification bool
}

// CSPTPServer is one entry of csptp.servers.
type CSPTPServer struct {
	// Address is the server's IP address, Port its port (319).
	Address netip.Addr
	Port    int
	// Protocol is "sptp" (Meta's, as facebook/time's ptp4u answers it) or
	// "csptp" (the IEEE 1588.1 draft's TLVs).
	Protocol string
	// MinPoll and MaxPoll bound the poll interval, log2 seconds.
	MinPoll, MaxPoll int
	// Pad pads each request to the length of its answer, for servers
	// that refuse to amplify.
	Pad bool
	// Selection flags, as for NTP servers.
	Prefer, NoSelect, Trust, Require bool
	BoundedByAuthenticated           bool
}

// AddrPort is the server's address and port.
func (s CSPTPServer) AddrPort() netip.AddrPort {
	return netip.AddrPortFrom(s.Address, uint16(s.Port)) //#nosec G115 -- 1..65535, checked
}

// String is the server as address:port.
func (s CSPTPServer) String() string { return s.AddrPort().String() }

func defaultCSPTPServer() CSPTPServer {
	return CSPTPServer{Port: DefaultCSPTPPort, Protocol: "sptp", MinPoll: 0, MaxPoll: 4}
}

func (d *decoder) csptp(n *yaml.Node, path string, c *CSPTPConfig) {
	d.mapping(n, path, []field{
		{"servers", func(d *decoder, n *yaml.Node, p string) {
			type key struct {
				addr     netip.AddrPort
				protocol string
			}
			seen := map[key]int{}
			d.list(n, p, "- address: 192.0.2.10", func(n *yaml.Node, p string) {
				s, ok := d.csptpServer(n, p)
				if !ok {
					return
				}
				k := key{s.AddrPort(), s.Protocol}
				if line, dup := seen[k]; dup {
					d.errorf(resolve(n), p, "%s (%s) is already listed at line %d; list each server once for each protocol", k.addr, k.protocol, line)
					return
				}
				seen[k] = resolve(n).Line
				c.Servers = append(c.Servers, s)
			})
		}},
		{"listen", func(d *decoder, n *yaml.Node, p string) { c.Listen = d.listenAddrs(n, p, DefaultCSPTPPort) }},
		boolField("refuse_amplification", &c.RefuseAmplification),
	})
}

// csptpServer decodes one entry of csptp.servers; ok is false when it has
// no usable address.
func (d *decoder) csptpServer(n *yaml.Node, path string) (CSPTPServer, bool) {
	s := defaultCSPTPServer()
	poll := pollFields{min: &s.MinPoll, max: &s.MaxPoll}
	fields := append([]field{
		{"address", func(d *decoder, n *yaml.Node, p string) {
			d.ipAddr(n, p, "use the server's IP address such as 192.0.2.10, without a port", &s.Address)
		}},
		portField(&s.Port),
		{"protocol", func(d *decoder, n *yaml.Node, p string) {
			d.oneOf(n, p, "client-server PTP protocol", []string{"sptp", "csptp"}, &s.Protocol)
		}},
		boolField("pad", &s.Pad),
	}, poll.fields()...)
	fields = append(fields,
		boolField("prefer", &s.Prefer),
		boolField("noselect", &s.NoSelect),
		boolField("trust", &s.Trust),
		boolField("require", &s.Require),
		boundedByField(&s.BoundedByAuthenticated),
	)
	given := d.mapping(n, path, fields)
	if given == nil {
		return s, false
	}
	if _, ok := given["address"]; !ok {
		d.errorf(resolve(n), path, "a CSPTP server needs its address, such as address: 192.0.2.10")
		return s, false
	}
	poll.check(d, path)
	return s, s.Address.IsValid()
}

// ipAddr decodes an IP address without a zone (an IPv4-mapped IPv6
// address becomes IPv4).
func (d *decoder) ipAddr(n *yaml.Node, path, hint string, dst *netip.Addr) bool {
	var v string
	if !d.str(n, path, hint, &v) {
		return false
	}
	a, err := netip.ParseAddr(v)
	if err != nil || a.Zone() != "" {
		d.errorf(resolve(n), path, "%s is not an IP address; %s", quote(v), hint)
		return false
	}
	*dst = a.Unmap()
	return true
}
