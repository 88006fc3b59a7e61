package config

import (
	"fmt"
	"time"

	"gopkg.in/yaml.v3"
)

// GPTPConfig is the `gptp:` section: IEEE 802.1AS ports (gPTP, or the
// automotive profile) over Ethernet.
type GPTPConfig struct {
	Ports []GPTPPort
}

// GPTPPort is one gPTP port on a network interface.
type GPTPPort struct {
	// Interface is the network interface, such as eth0.
	Interface string
	// Profile is "gptp" (802.1AS) or "automotive" (static roles, no
	// Announce).
	Profile string
	// Role is "auto" (gptp only: the BMCA decides), "master" or "slave".
	Role string
	// Priority1 and Priority2 are the grandmaster priorities.
	Priority1, Priority2 int
	// NeighborPropDelayThresh is the largest mean link delay with which
	// the port is asCapable (gptp).
	NeighborPropDelayThresh time.Duration
	// The message intervals, log2 seconds; the oper_ ones are the
	// automotive slave's once synchronized.
	LogSyncInterval, LogAnnounceInterval, LogPdelayReqInterval int
	OperLogSyncInterval, OperLogPdelayReqInterval              int
	// SyncReceiptTimeout and AnnounceReceiptTimeout count intervals.
	SyncReceiptTimeout, AnnounceReceiptTimeout int
	// Selection options for the engine, as for NTP servers.
	Prefer, NoSelect, Trust, Require bool
	BoundedByAuthenticated           bool
}

func defaultGPTPPort() GPTPPort {
	return GPTPPort{Profile: "gptp", Role: "auto", Priority1: 248, Priority2: 248, NeighborPropDelayThresh: 800 * time.Nanosecond,
		LogSyncInterval: -3, LogAnnounceInterval: 0, LogPdelayReqInterval: 0, OperLogSyncInterval: 0, OperLogPdelayReqInterval: 2,
		SyncReceiptTimeout: 3, AnnounceReceiptTimeout: 3}
}

func (d *decoder) gptp(n *yaml.Node, path string, c *GPTPConfig) {
	seen := map[string]bool{}
	d.mapping(n, path, []field{
		{"ports", func(d *decoder, n *yaml.Node, p string) {
			d.list(n, p, "- interface: eth0", func(n *yaml.Node, p string) {
				port, ok := d.gptpPort(n, p)
				if !ok {
					return
				}
				if seen[port.Interface] {
					d.errorf(resolve(n), p, "interface %s has a gPTP port already; give each interface one port", quote(port.Interface))
					return
				}
				seen[port.Interface] = true
				c.Ports = append(c.Ports, port)
			})
		}},
	})
}

// gptpPort decodes one entry of gptp.ports; ok is false when it has no
// usable interface.
func (d *decoder) gptpPort(n *yaml.Node, path string) (GPTPPort, bool) {
	s := defaultGPTPPort()
	const intervalHint = "use a power of two in seconds from -7 (1/128 s) to 6 (64 s)"
	interval := func(key string, dst *int) field {
		return field{key, func(d *decoder, n *yaml.Node, p string) { d.integer(n, p, -7, 6, intervalHint, dst) }}
	}
	priority := func(key string, dst *int) field {
		return field{key, func(d *decoder, n *yaml.Node, p string) {
			d.integer(n, p, 0, 255, "use a priority from 0 to 255 (lower wins; 255: never grandmaster), such as 248", dst)
		}}
	}
	timeout := func(key string, dst *int) field {
		return field{key, func(d *decoder, n *yaml.Node, p string) {
			d.integer(n, p, 2, 255, "use a count of intervals from 2 to 255, such as 3", dst)
		}}
	}
	ifOK := false
	given := d.mapping(n, path, []field{
		{"interface", func(d *decoder, n *yaml.Node, p string) { ifOK = d.interfaceName(n, p, &s.Interface) }},
		{"profile", func(d *decoder, n *yaml.Node, p string) {
			d.oneOf(n, p, "gPTP profile", []string{"gptp", "automotive"}, &s.Profile)
		}},
		{"role", func(d *decoder, n *yaml.Node, p string) {
			d.oneOf(n, p, "role", []string{"auto", "master", "slave"}, &s.Role)
		}},
		priority("priority1", &s.Priority1),
		priority("priority2", &s.Priority2),
		{"neighbor_prop_delay_thresh", func(d *decoder, n *yaml.Node, p string) {
			d.duration(n, p, false, "use a duration such as 800ns (802.1AS), or 100us with software timestamps", &s.NeighborPropDelayThresh)
		}},
		interval("sync_interval", &s.LogSyncInterval),
		interval("announce_interval", &s.LogAnnounceInterval),
		interval("pdelay_interval", &s.LogPdelayReqInterval),
		interval("oper_sync_interval", &s.OperLogSyncInterval),
		interval("oper_pdelay_interval", &s.OperLogPdelayReqInterval),
		timeout("sync_receipt_timeout", &s.SyncReceiptTimeout),
		timeout("announce_receipt_timeout", &s.AnnounceReceiptTimeout),
		boolField("prefer", &s.Prefer),
		boolField("noselect", &s.NoSelect),
		boolField("trust", &s.Trust),
		boolField("require", &s.Require),
		boundedByField(&s.BoundedByAuthenticated),
	})
	if given == nil {
		return s, false
	}
	if _, ok := given["interface"]; !ok {
		d.errorf(resolve(n), path, "a gPTP port needs its interface, such as interface: eth0")
		return s, false
	}
	if k, ok := given["role"]; ok && s.Profile == "automotive" && s.Role == "auto" {
		d.errorf(k, joinPath(path, "role"), "the automotive profile has static roles and no best master clock algorithm; use master or slave")
	}
	if _, ok := given["role"]; !ok && s.Profile == "automotive" {
		d.errorf(resolve(n), path, "an automotive port needs its role: master or slave")
	}
	if s.Profile == "automotive" {
		for _, key := range []string{"announce_interval", "announce_receipt_timeout", "neighbor_prop_delay_thresh"} {
			if k, ok := given[key]; ok {
				d.errorf(k, joinPath(path, key), "the automotive profile has no Announce and assumes asCapable; remove %s", key)
			}
		}
	} else {
		for _, key := range []string{"oper_sync_interval", "oper_pdelay_interval"} {
			if k, ok := given[key]; ok {
				d.errorf(k, joinPath(path, key), "%s belongs to the automotive profile; remove it or set profile: automotive", key)
			}
		}
	}
	return s, ifOK
}

// sharedInterfaces reports a gPTP port on an interface that also has a
// PTP port: both would read and answer the same Ethernet frames.
func (d *decoder) sharedInterfaces(root *yaml.Node, c *Config) {
	ptpIfaces := map[string]bool{}
	for _, p := range c.PTP.Ports {
		ptpIfaces[p.Interface] = true
	}
	for i, p := range c.GPTP.Ports {
		if ptpIfaces[p.Interface] {
			d.errorf(gptpPortNode(root, i), fmt.Sprintf("gptp.ports[%d].interface", i),
				"interface %s has a PTP port (ptp.ports) already; a gPTP and a PTP port cannot share an interface", quote(p.Interface))
		}
	}
}

// gptpPortNode finds gptp.ports[i] in the file (root when it cannot).
func gptpPortNode(root *yaml.Node, i int) *yaml.Node {
	n := resolve(root)
	for _, key := range []string{"gptp", "ports"} {
		next := (*yaml.Node)(nil)
		if n != nil && n.Kind == yaml.MappingNode {
			for j := 0; j+1 < len(n.Content); j += 2 {
				if n.Content[j].Value == key {
					next = resolve(n.Content[j+1])
				}
			}
		}
		if next == nil {
			return root
		}
		n = next
	}
	if n.Kind != yaml.SequenceNode || i >= len(n.Content) {
		return root
	}
	return resolve(n.Content[i])
}

// interfaceName decodes a network interface name.
func (d *decoder) interfaceName(n *yaml.Node, path string, dst *string) bool {
	if !d.str(n, path, "use a network interface name such as eth0", dst) {
		return false
	}
	if problem := interfaceProblem(*dst); problem != "" {
		d.errorf(resolve(n), path, "%s %s; use a network interface name such as eth0", quote(*dst), problem)
		return false
	}
	return true
}
