package config

import (
	"path/filepath"
	"strings"

	"gopkg.in/yaml.v3"
)

// This file is the schema. Adding a section is a struct in config.go, its
// default in defaults(), one line in topLevel and one decode function here.

// topLevel lists the sections of the file. c may be nil when only the key
// names are wanted.
func topLevel(c *Config) []field {
	return []field{
		{"clock", func(d *decoder, n *yaml.Node, p string) { d.clock(n, p, &c.Clock) }},
		{"drift_file", func(d *decoder, n *yaml.Node, p string) {
			d.path(n, p, true, "use an absolute path such as "+DefaultDriftFile+`, or "" for no drift file`, &c.DriftFile)
		}},
		{"engine", func(d *decoder, n *yaml.Node, p string) { d.engine(n, p, &c.Engine) }},
		{"ntp", func(d *decoder, n *yaml.Node, p string) { d.ntp(n, p, &c.NTP) }},
		{"server", func(d *decoder, n *yaml.Node, p string) { d.server(n, p, &c.Server) }},
		{"ptp", func(d *decoder, n *yaml.Node, p string) { d.ptp(n, p, &c.PTP) }},
		{"gptp", func(d *decoder, n *yaml.Node, p string) { d.gptp(n, p, &c.GPTP) }},
		{"csptp", func(d *decoder, n *yaml.Node, p string) { d.csptp(n, p, &c.CSPTP) }},
		{"refclocks", func(d *decoder, n *yaml.Node, p string) { d.refclocks(n, p, &c.Refclocks) }},
		{"control", func(d *decoder, n *yaml.Node, p string) { d.control(n, p, &c.Control) }},
		{"metrics", func(d *decoder, n *yaml.Node, p string) { d.metrics(n, p, &c.Metrics) }},
		{"log", func(d *decoder, n *yaml.Node, p string) { d.log(n, p, &c.Log) }},
		{"seccomp", func(d *decoder, n *yaml.Node, p string) { d.boolean(n, p, &c.Seccomp) }},
	}
}

func (d *decoder) clock(n *yaml.Node, path string, c *ClockConfig) {
	driverOK := true
	given := d.mapping(n, path, []field{
		{"driver", func(d *decoder, n *yaml.Node, p string) {
			driverOK = d.oneOf(n, p, "clock driver", []string{"system", "virtual", "none"}, &c.Driver)
		}},
		{"simulate", func(d *decoder, n *yaml.Node, p string) {
			d.mapping(n, p, []field{
				{"offset", func(d *decoder, n *yaml.Node, p string) {
					d.duration(n, p, true, "use a duration such as 200ms or -1.5s", &c.Simulate.Offset)
				}},
				{"frequency_ppm", func(d *decoder, n *yaml.Node, p string) {
					d.number(n, p, -100000, 100000, "use a number of ppm from -100000 to 100000, such as 50", &c.Simulate.FrequencyPPM)
				}},
			})
		}},
	})
	if k, ok := given["simulate"]; ok && driverOK && c.Driver != "virtual" {
		d.errorf(k, joinPath(path, "simulate"), "only the virtual clock can simulate an error, and the driver is %s; set driver: virtual or remove simulate", driverName(given, c.Driver))
	}
}

func driverName(given map[string]*yaml.Node, driver string) string {
	if _, ok := given["driver"]; ok {
		return driver
	}
	return driver + " (the default)"
}

func (d *decoder) engine(n *yaml.Node, path string, c *EngineConfig) {
	const stepHint = "use a duration such as 1s, or 0 to never step"
	d.mapping(n, path, []field{
		{"min_agreeing_sources", func(d *decoder, n *yaml.Node, p string) {
			d.integer(n, p, 1, 1000, "use a count of at least 1, such as 1 or 2", &c.MinAgreeingSources)
		}},
		{"step_threshold", func(d *decoder, n *yaml.Node, p string) {
			d.duration(n, p, false, stepHint, &c.StepThreshold)
		}},
		{"step_limit", func(d *decoder, n *yaml.Node, p string) {
			d.integer(n, p, -1, 1<<30, "use a count of clock updates such as 3, 0 to never step, or -1 to allow steps at any time", &c.StepLimit)
		}},
		{"panic_threshold", func(d *decoder, n *yaml.Node, p string) {
			d.duration(n, p, false, "use a duration such as 1000s, or 0 to correct offsets of any size", &c.PanicThreshold)
		}},
		{"max_slew_rate_ppm", func(d *decoder, n *yaml.Node, p string) {
			d.number(n, p, 1, 1e6, "use a rate in ppm from 1 to 1000000, such as 83333", &c.MaxSlewRatePPM)
		}},
		{"max_frequency_ppm", func(d *decoder, n *yaml.Node, p string) {
			d.number(n, p, 1, 1e6, "use a frequency in ppm from 1 to 1000000, such as 500", &c.MaxFrequencyPPM)
		}},
		boolField("require_authenticated", &c.RequireAuthenticated),
	})
}

// ntpKey identifies an NTP source for the duplicate check.
type ntpKey struct {
	host string
	port int
}

func (d *decoder) ntp(n *yaml.Node, path string, c *NTPConfig) {
	seen := map[ntpKey]*yaml.Node{} // the address value node of the first one
	checkDup := func(addr *yaml.Node, p, host string, port int) {
		if addr == nil || hostProblem(host) != "" {
			return
		}
		k := ntpKey{hostKey(host), port}
		if first, ok := seen[k]; ok {
			d.errorf(addr, p, "%s (port %d) is already listed at line %d; list each server or pool once", host, port, first.Line)
			return
		}
		seen[k] = addr
	}
	d.mapping(n, path, []field{
		{"servers", func(d *decoder, n *yaml.Node, p string) {
			d.list(n, p, "- address: time.example.com", func(n *yaml.Node, p string) {
				s, addr := d.ntpServer(n, p)
				checkDup(addr, joinPath(p, "address"), s.Address, s.Port)
				c.Servers = append(c.Servers, s)
			})
		}},
		{"pools", func(d *decoder, n *yaml.Node, p string) {
			d.list(n, p, "- address: pool.ntp.org", func(n *yaml.Node, p string) {
				s, addr := d.ntpPool(n, p)
				checkDup(addr, joinPath(p, "address"), s.Address, s.Port)
				c.Pools = append(c.Pools, s)
			})
		}},
	})
}

// Field decoders shared by servers and pools.

func addressField(dst *string, node **yaml.Node) field {
	return field{"address", func(d *decoder, n *yaml.Node, p string) {
		if !d.str(n, p, "use a host name such as time.example.com or an IP address such as 192.0.2.1", dst) {
			return
		}
		if problem := hostProblem(*dst); problem != "" {
			d.errorf(resolve(n), p, "%s %s; use a host name such as time.example.com or an IP address such as 192.0.2.1, without a port", quote(*dst), problem)
			return
		}
		*node = resolve(n)
	}}
}

func portField(dst *int) field {
	return field{"port", func(d *decoder, n *yaml.Node, p string) {
		d.integer(n, p, 1, 65535, "use a port from 1 to 65535", dst)
	}}
}

func boolField(key string, dst *bool) field {
	return field{key, func(d *decoder, n *yaml.Node, p string) { d.boolean(n, p, dst) }}
}

// boundedByField decodes `bounded_by: authenticated` (or `none`).
func boundedByField(dst *bool) field {
	return field{"bounded_by", func(d *decoder, n *yaml.Node, p string) {
		var v string
		if d.oneOf(n, p, "bound", []string{"authenticated", "none"}, &v) {
			*dst = v == "authenticated"
		}
	}}
}

// pollFields decodes minpoll and maxpoll and checks them together. When
// only one is given and it conflicts with the other's default, the default
// gives way.
type pollFields struct {
	min, max       *int
	minNode        *yaml.Node
	minOK, maxOK   bool
	minSet, maxSet bool
}

const pollHint = "use a power of two in seconds from -6 (1/64 s) to 17 (36 h)"

func (pf *pollFields) fields() []field {
	return []field{
		{"minpoll", func(d *decoder, n *yaml.Node, p string) {
			pf.minSet = true
			pf.minNode = resolve(n)
			pf.minOK = d.integer(n, p, -6, 17, pollHint, pf.min)
		}},
		{"maxpoll", func(d *decoder, n *yaml.Node, p string) {
			pf.maxSet = true
			pf.maxOK = d.integer(n, p, -6, 17, pollHint, pf.max)
		}},
	}
}

func (pf *pollFields) check(d *decoder, path string) {
	switch {
	case pf.minSet && pf.maxSet:
		if pf.minOK && pf.maxOK && *pf.min > *pf.max {
			d.errorf(pf.minNode, joinPath(path, "minpoll"), "minpoll %d is greater than maxpoll %d; make minpoll at most maxpoll", *pf.min, *pf.max)
		}
	case pf.minSet && pf.minOK && *pf.min > *pf.max:
		*pf.max = *pf.min
	case pf.maxSet && pf.maxOK && *pf.max < *pf.min:
		*pf.min = *pf.max
	}
}

func (d *decoder) ntpServer(n *yaml.Node, path string) (NTPServer, *yaml.Node) {
	s := defaultServer()
	var addr *yaml.Node
	poll := pollFields{min: &s.MinPoll, max: &s.MaxPoll}
	fields := append([]field{
		addressField(&s.Address, &addr),
		portField(&s.Port),
		boolField("iburst", &s.IBurst),
		boolField("xleave", &s.XLeave),
	}, poll.fields()...)
	fields = append(fields,
		boolField("prefer", &s.Prefer),
		boolField("noselect", &s.NoSelect),
		boolField("trust", &s.Trust),
		boolField("require", &s.Require),
		boundedByField(&s.BoundedByAuthenticated),
		ntsField(&s.NTS),
	)
	given := d.mapping(n, path, fields)
	requireAddress(d, n, path, given, "address: time.example.com")
	poll.check(d, path)
	return s, addr
}

func (d *decoder) ntpPool(n *yaml.Node, path string) (NTPPool, *yaml.Node) {
	s := defaultPool()
	var addr *yaml.Node
	poll := pollFields{min: &s.MinPoll, max: &s.MaxPoll}
	fields := append([]field{
		addressField(&s.Address, &addr),
		portField(&s.Port),
		{"max_sources", func(d *decoder, n *yaml.Node, p string) {
			d.integer(n, p, 1, 64, "use a count from 1 to 64, such as 4", &s.MaxSources)
		}},
		boolField("iburst", &s.IBurst),
		boolField("xleave", &s.XLeave),
		ntsField(&s.NTS),
	}, poll.fields()...)
	given := d.mapping(n, path, fields)
	requireAddress(d, n, path, given, "address: pool.ntp.org")
	poll.check(d, path)
	return s, addr
}

// ntsField decodes `nts:`: true or false, or a mapping of server, port and
// ca (each optional; a mapping turns NTS on).
func ntsField(dst *NTSClient) field {
	return field{"nts", func(d *decoder, n *yaml.Node, p string) {
		n = resolve(n)
		if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!bool" {
			if d.boolean(n, p, &dst.Enabled) && dst.Enabled {
				dst.Port = DefaultNTSKEPort
			}
			return
		}
		if n.Kind != yaml.MappingNode && !isNull(n) {
			d.errorf(n, p, "expected true, false or a mapping with the keys server, port and ca, got %s; use nts: true or nts: {server: nts.example.com, port: 4460, ca: /etc/timed/ca.pem}", describe(n))
			return
		}
		dst.Enabled = true
		d.mapping(n, p, []field{
			{"server", func(d *decoder, n *yaml.Node, p string) {
				const hint = "use the NTS-KE server's host name or IP address, without a port"
				if !d.str(n, p, hint, &dst.Server) {
					return
				}
				if problem := hostProblem(dst.Server); problem != "" {
					d.errorf(resolve(n), p, "%s %s; %s", quote(dst.Server), problem, hint)
				}
			}},
			portField(&dst.Port),
			{"ca", func(d *decoder, n *yaml.Node, p string) {
				d.path(n, p, false, "use the absolute path of a PEM file of CA certificates such as /etc/timed/nts-ca.pem", &dst.CA)
			}},
			{"certificate_dates", func(d *decoder, n *yaml.Node, p string) {
				var v string
				if d.oneOf(n, p, "certificate date check", []string{"check", "ignore_until_synchronized"}, &v) {
					dst.IgnoreDatesUntilSynced = v == "ignore_until_synchronized"
				}
			}},
		})
		if dst.Port == 0 {
			dst.Port = DefaultNTSKEPort
		}
	}}
}

func requireAddress(d *decoder, n *yaml.Node, path string, given map[string]*yaml.Node, example string) {
	if given == nil {
		return // not a mapping; already reported
	}
	if _, ok := given["address"]; !ok {
		d.errorf(resolve(n), path, "address is missing; every entry needs one, such as %s", example)
	}
}

func (d *decoder) control(n *yaml.Node, path string, c *ControlConfig) {
	d.mapping(n, path, []field{
		{"socket", func(d *decoder, n *yaml.Node, p string) {
			if d.path(n, p, false, "use an absolute path such as "+DefaultControlSocket, &c.Socket) && len(c.Socket) > maxSocketPath {
				d.errorf(resolve(n), p, "the path is %d bytes long; a Unix socket path can have at most %d on every system timed runs on", len(c.Socket), maxSocketPath)
			}
		}},
	})
}

// maxSocketPath is the longest Unix socket path all of Linux (107), the
// BSDs and macOS (103) accept.
const maxSocketPath = 103

// path decodes an absolute file path; allowEmpty also accepts "".
func (d *decoder) path(n *yaml.Node, p string, allowEmpty bool, hint string, dst *string) bool {
	var s string
	if !d.str(n, p, hint, &s) {
		return false
	}
	var problem string
	switch {
	case s == "" && allowEmpty:
	case s == "":
		problem = "is empty"
	case strings.ContainsRune(s, 0):
		problem = "contains a NUL byte"
	case !filepath.IsAbs(s):
		problem = "is a relative path"
	case strings.HasSuffix(s, "/"):
		problem = "ends in / (it must name a file, not a directory)"
	}
	if problem != "" {
		d.errorf(resolve(n), p, "%s %s; %s", quote(s), problem, hint)
		return false
	}
	*dst = s
	return true
}

func (d *decoder) metrics(n *yaml.Node, path string, c *MetricsConfig) {
	d.mapping(n, path, []field{
		{"listen", func(d *decoder, n *yaml.Node, p string) {
			const hint = `use a loopback address and port such as 127.0.0.1:9123 or [::1]:9123, or "" to turn metrics off`
			var s string
			if !d.str(n, p, hint, &s) {
				return
			}
			if s != "" {
				if problem := loopbackListenProblem(s); problem != "" {
					d.errorf(resolve(n), p, "%s %s; %s", quote(s), problem, hint)
					return
				}
			}
			c.Listen = s
		}},
	})
}

func (d *decoder) log(n *yaml.Node, path string, c *LogConfig) {
	d.mapping(n, path, []field{
		{"level", func(d *decoder, n *yaml.Node, p string) {
			d.oneOf(n, p, "log level", []string{"debug", "info", "warn", "error"}, &c.Level)
		}},
		{"format", func(d *decoder, n *yaml.Node, p string) {
			d.oneOf(n, p, "log format", []string{"auto", "console", "json"}, &c.Format)
		}},
	})
}
