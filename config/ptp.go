package config

import (
	"net/netip"
	"time"

	"gopkg.in/yaml.v3"
)

// PTPConfig is the `ptp:` section: IEEE 1588 ordinary clock ports, as
// client (slave) or master. It does nothing while Ports is empty.
type PTPConfig struct {
	// Domain is the PTP domain number (0 to 127; 0 is the default
	// profile's).
	Domain int
	// Priority1 and Priority2 are the clock's priorities in the best
	// master clock algorithm (lower wins).
	Priority1, Priority2 int
	Ports                []PTPPort
}

// PTPPort is one PTP port on a network interface.
type PTPPort struct {
	// Interface is the network interface, such as eth0.
	Interface string
	// Transport is "udp4", "udp6" or "l2" (Ethernet, ethertype 0x88F7).
	Transport string
	// DelayMechanism is "e2e" (Delay_Req/Delay_Resp) or "p2p" (Pdelay).
	DelayMechanism string
	// Role is "auto" (the best master clock algorithm decides),
	// "slave_only" or "master_only".
	Role string
	// Timestamping is "software" (kernel) or "hardware" (the NIC's PTP
	// hardware clock, which then is the clock disciplined).
	Timestamping string
	// LogAnnounceInterval, LogSyncInterval and LogMinDelayReqInterval are
	// the message intervals as log2 seconds.
	LogAnnounceInterval, LogSyncInterval, LogMinDelayReqInterval int
	// AnnounceReceiptTimeout is how many announce intervals pass without
	// an announce before the master is given up.
	AnnounceReceiptTimeout int
	// DelayAsymmetry is how much longer the path from the master is than
	// the path to it (IEEE 1588 delayAsymmetry).
	DelayAsymmetry time.Duration
	// UnicastMasters, when not empty, are asked for unicast service
	// (unicast negotiation) instead of listening to multicast.
	UnicastMasters []netip.Addr
	// UnicastListen serves unicast clients (unicast negotiation) when the
	// port is master, beside multicast.
	UnicastListen bool
	// Selection options for the engine, as for NTP servers.
	Prefer, NoSelect, Trust, Require bool
	BoundedByAuthenticated           bool
}

// Defaults of the ptp section.
const (
	DefaultPTPPriority              = 128
	DefaultPTPAnnounceReceiptTimout = 3
)

func defaultPTPSection() PTPConfig {
	return PTPConfig{Priority1: DefaultPTPPriority, Priority2: DefaultPTPPriority}
}

func defaultPTPPort() PTPPort {
	return PTPPort{
		Transport: "udp4", DelayMechanism: "e2e", Role: "auto", Timestamping: "software",
		LogAnnounceInterval: 1, LogSyncInterval: 0, LogMinDelayReqInterval: 0,
		AnnounceReceiptTimeout: DefaultPTPAnnounceReceiptTimout,
	}
}

func (d *decoder) ptp(n *yaml.Node, path string, c *PTPConfig) {
	seen := map[string]*yaml.Node{}
	d.mapping(n, path, []field{
		{"domain", func(d *decoder, n *yaml.Node, p string) {
			d.integer(n, p, 0, 127, "use a domain number from 0 to 127, such as 0", &c.Domain)
		}},
		{"priority1", func(d *decoder, n *yaml.Node, p string) {
			d.integer(n, p, 0, 255, "use a priority from 0 to 255 (lower wins), such as 128", &c.Priority1)
		}},
		{"priority2", func(d *decoder, n *yaml.Node, p string) {
			d.integer(n, p, 0, 255, "use a priority from 0 to 255 (lower wins), such as 128", &c.Priority2)
		}},
		{"ports", func(d *decoder, n *yaml.Node, p string) {
			d.list(n, p, "- interface: eth0", func(n *yaml.Node, p string) {
				port, ifNode := d.ptpPort(n, p)
				if ifNode != nil {
					if _, dup := seen[port.Interface]; dup {
						d.errorf(ifNode, joinPath(p, "interface"), "interface %s has a PTP port already; give each interface one port", quote(port.Interface))
					}
					seen[port.Interface] = ifNode
				}
				c.Ports = append(c.Ports, port)
			})
		}},
	})
}

func (d *decoder) ptpPort(n *yaml.Node, path string) (PTPPort, *yaml.Node) {
	s := defaultPTPPort()
	var ifNode *yaml.Node
	const intervalHint = "use a power of two in seconds from -7 (1/128 s) to 6 (64 s)"
	interval := func(key string, dst *int) field {
		return field{key, func(d *decoder, n *yaml.Node, p string) { d.integer(n, p, -7, 6, intervalHint, dst) }}
	}
	given := d.mapping(n, path, []field{
		{"interface", func(d *decoder, n *yaml.Node, p string) {
			if d.interfaceName(n, p, &s.Interface) {
				ifNode = resolve(n)
			}
		}},
		{"transport", func(d *decoder, n *yaml.Node, p string) {
			d.oneOf(n, p, "transport", []string{"udp4", "udp6", "l2"}, &s.Transport)
		}},
		{"delay_mechanism", func(d *decoder, n *yaml.Node, p string) {
			d.oneOf(n, p, "delay mechanism", []string{"e2e", "p2p"}, &s.DelayMechanism)
		}},
		{"role", func(d *decoder, n *yaml.Node, p string) {
			d.oneOf(n, p, "role", []string{"auto", "slave_only", "master_only"}, &s.Role)
		}},
		{"timestamping", func(d *decoder, n *yaml.Node, p string) {
			d.oneOf(n, p, "timestamping", []string{"software", "hardware"}, &s.Timestamping)
		}},
		interval("announce_interval", &s.LogAnnounceInterval),
		interval("sync_interval", &s.LogSyncInterval),
		interval("delay_req_interval", &s.LogMinDelayReqInterval),
		{"announce_receipt_timeout", func(d *decoder, n *yaml.Node, p string) {
			d.integer(n, p, 2, 255, "use a count of announce intervals from 2 to 255, such as 3", &s.AnnounceReceiptTimeout)
		}},
		{"delay_asymmetry", func(d *decoder, n *yaml.Node, p string) {
			d.duration(n, p, true, "use a duration such as 150ns or -2us", &s.DelayAsymmetry)
		}},
		{"unicast_masters", func(d *decoder, n *yaml.Node, p string) {
			d.list(n, p, "- 192.0.2.1", func(n *yaml.Node, p string) {
				var a netip.Addr
				if d.ipAddr(n, p, "use the IP address of a PTP master such as 192.0.2.1", &a) {
					s.UnicastMasters = append(s.UnicastMasters, a)
				}
			})
		}},
		boolField("unicast_listen", &s.UnicastListen),
		boolField("prefer", &s.Prefer),
		boolField("noselect", &s.NoSelect),
		boolField("trust", &s.Trust),
		boolField("require", &s.Require),
		boundedByField(&s.BoundedByAuthenticated),
	})
	if given != nil {
		if _, ok := given["interface"]; !ok {
			d.errorf(n, path, "a PTP port needs its interface, such as interface: eth0")
		}
		if k, ok := given["unicast_masters"]; ok && s.Role == "master_only" {
			d.errorf(k, joinPath(path, "unicast_masters"), "a master_only port has no masters to ask; remove unicast_masters or the role")
		}
	}
	if k, ok := given["unicast_listen"]; ok && s.UnicastListen {
		switch {
		case s.Transport == "l2":
			d.errorf(k, joinPath(path, "unicast_listen"), "unicast negotiation runs over UDP only; use transport udp4 or udp6 with unicast_listen, or remove it")
		case s.Role == "slave_only":
			d.errorf(k, joinPath(path, "unicast_listen"), "a slave_only port is never master and serves no one; remove unicast_listen or use role auto or master_only")
		}
	}
	if len(s.UnicastMasters) > 0 && s.Transport == "l2" {
		d.errorf(given["unicast_masters"], joinPath(path, "unicast_masters"),
			"unicast negotiation runs over UDP only; use transport udp4 or udp6 with unicast_masters, or remove them")
		return s, ifNode
	}
	for _, a := range s.UnicastMasters {
		if a.Is4() != (s.Transport == "udp4") {
			d.errorf(given["unicast_masters"], joinPath(path, "unicast_masters"),
				"unicast master %s does not fit transport %s; use IPv4 addresses with udp4 and IPv6 ones with udp6", a, s.Transport)
			break
		}
	}
	return s, ifNode
}

// interfaceProblem says what is wrong with a network interface name, or "".
func interfaceProblem(s string) string {
	switch {
	case s == "":
		return "is empty"
	case len(s) > 15:
		return "is longer than 15 characters, the most Linux allows"
	}
	for _, r := range s {
		if r <= ' ' || r == '/' || r == ':' || r > '~' {
			return "contains a character interface names cannot have"
		}
	}
	return ""
}
