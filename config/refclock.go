package config

import (
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Refclock is one entry of the `refclocks:` list: a reference clock (GNSS
// receiver) read through gpsd, chrony's SOCK protocol, NTP shared memory or
// a PPS device. Kind says which; the keys of the other kinds are not allowed
// in the entry and stay zero.
type Refclock struct {
	// Kind is "gpsd", "sock", "shm" or "pps".
	Kind string
	// Name identifies the source in status and in other entries' Lock; it
	// is unique. The default is the kind and what it reads, such as
	// "pps:/dev/pps0", "shm:0", "sock:/run/chrony.ttyS0.sock" or
	// "gpsd:127.0.0.1:2947" (gpsd with a device: "gpsd:/dev/ttyS0").
	Name string

	// Address (gpsd) is gpsd's host:port or the path of its Unix socket.
	Address string
	// Device (gpsd: optional, the receiver gpsd should report; pps:
	// required) is a device path.
	Device string
	// MinMode (gpsd) is the GNSS fix mode needed: 2 (2D) or 3 (3D).
	MinMode int
	// PPS (gpsd) uses gpsd's PPS reports, numbered by its time, as well as
	// its serial time.
	PPS bool

	// Path (sock) is the Unix datagram socket timed listens on.
	Path string

	// Unit (shm) is the NTP shared memory unit, 0 to 7 (key 0x4e545030
	// plus the unit).
	Unit int

	// Edge (pps) is "assert" or "clear".
	Edge string
	// Lock (pps) names the source that numbers the pulses' seconds:
	// another refclock's Name, or an NTP server's address (or
	// address:port). Empty means the local clock, assumed within ±0.4 s.
	Lock string

	// Offset is added to the reference time of every sample (may be
	// negative; for pps less than a second either way).
	Offset time.Duration
	// Delay is the assumed uncertainty of the signal's timing, the
	// samples' root dispersion.
	Delay time.Duration
	// Precision of the samples; zero means the reader's default.
	Precision time.Duration
	// RefID is 1 to 4 ASCII letters: GPS by default, PPS for pps.
	RefID string
	// Poll is the engine's poll interval, log2 seconds (default 0).
	Poll int
	// Selection flags, as for NTP servers.
	Prefer, NoSelect, Trust, Require bool
}

// DefaultGpsdAddress is where gpsd listens by default.
const DefaultGpsdAddress = "127.0.0.1:2947"

// refclockKinds are the allowed values of kind.
var refclockKinds = []string{"gpsd", "sock", "shm", "pps"}

// refclockKeyKinds lists the keys that belong to some kinds only, and
// which.
var refclockKeyKinds = map[string][]string{
	"address":  {"gpsd"},
	"device":   {"gpsd", "pps"},
	"min_mode": {"gpsd"},
	"pps":      {"gpsd"},
	"path":     {"sock"},
	"unit":     {"shm"},
	"edge":     {"pps"},
	"lock":     {"pps"},
}

func defaultRefclock(kind string) Refclock {
	r := Refclock{Kind: kind, RefID: "GPS"}
	switch kind {
	case "gpsd":
		r.Address = DefaultGpsdAddress
		r.MinMode = 3
	case "pps":
		r.Edge = "assert"
		r.RefID = "PPS"
	}
	return r
}

// defaultName is the name of a refclock that has none.
func (r *Refclock) defaultName() string {
	switch r.Kind {
	case "gpsd":
		if r.Device != "" {
			return "gpsd:" + r.Device
		}
		return "gpsd:" + r.Address
	case "sock":
		return "sock:" + r.Path
	case "shm":
		return "shm:" + strconv.Itoa(r.Unit)
	case "pps":
		return "pps:" + r.Device
	}
	return r.Kind
}

// refclockInput is what a refclock reads, for the check that two entries do
// not read the same thing.
func (r *Refclock) refclockInput() string {
	switch r.Kind {
	case "sock":
		return "socket " + r.Path
	case "shm":
		return "SHM unit " + strconv.Itoa(r.Unit)
	case "pps":
		return "PPS device " + r.Device
	}
	return ""
}

func (d *decoder) refclocks(n *yaml.Node, path string, dst *[]Refclock) {
	names := map[string]int{}  // name → line of the first entry
	inputs := map[string]int{} // what it reads → line of the first entry
	d.list(n, path, "- {kind: shm, unit: 0}", func(n *yaml.Node, p string) {
		r, nameNode, ok := d.refclock(n, p)
		*dst = append(*dst, r)
		if !ok {
			return
		}
		at, atPath := resolve(n), p
		if nameNode != nil {
			at, atPath = nameNode, joinPath(p, "name")
		}
		if line, dup := names[r.Name]; dup {
			d.errorf(at, atPath, "the name %s is already used by the refclock at line %d; give each refclock its own name", quote(r.Name), line)
		} else {
			names[r.Name] = resolve(n).Line
		}
		if in := r.refclockInput(); in != "" {
			if line, dup := inputs[in]; dup {
				d.errorf(resolve(n), p, "%s is already read by the refclock at line %d; list each once", in, line)
			} else {
				inputs[in] = resolve(n).Line
			}
		}
	})
}

// refclock decodes one entry. It returns the name's value node when the
// name was given, and whether the entry is sound enough for the checks
// across entries.
func (d *decoder) refclock(n *yaml.Node, path string) (Refclock, *yaml.Node, bool) {
	n = resolve(n)
	kind, kindOK := d.refclockKind(n, path)
	r := defaultRefclock(kind)
	var nameNode *yaml.Node
	fields := []field{
		{"kind", func(*decoder, *yaml.Node, string) {}}, // decoded above
		{"name", func(d *decoder, n *yaml.Node, p string) {
			const hint = "use a short name such as gnss or pps0"
			if !d.str(n, p, hint, &r.Name) {
				return
			}
			if problem := refclockNameProblem(r.Name); problem != "" {
				d.errorf(resolve(n), p, "%s %s; %s", quote(r.Name), problem, hint)
				r.Name = ""
				return
			}
			nameNode = resolve(n)
		}},
		{"address", func(d *decoder, n *yaml.Node, p string) {
			const hint = "use gpsd's host:port such as " + DefaultGpsdAddress + ", or the absolute path of its Unix socket such as /run/gpsd.sock"
			var s string
			if !d.str(n, p, hint, &s) {
				return
			}
			if problem := gpsdAddressProblem(s); problem != "" {
				d.errorf(resolve(n), p, "%s %s; %s", quote(s), problem, hint)
				return
			}
			r.Address = s
		}},
		{"device", func(d *decoder, n *yaml.Node, p string) {
			hint := "use the absolute path of the receiver's device, such as /dev/ttyS0"
			if kind == "pps" {
				hint = "use the absolute path of a PPS device, such as /dev/pps0"
			}
			d.path(n, p, false, hint, &r.Device)
		}},
		{"min_mode", func(d *decoder, n *yaml.Node, p string) {
			d.integer(n, p, 2, 3, "use 2 (a 2D fix is enough) or 3 (a 3D fix is needed)", &r.MinMode)
		}},
		boolField("pps", &r.PPS),
		{"path", func(d *decoder, n *yaml.Node, p string) {
			if d.path(n, p, false, "use the absolute path of the socket, such as /run/chrony.ttyS0.sock", &r.Path) && len(r.Path) > maxSocketPath {
				d.errorf(resolve(n), p, "the path is %d bytes long; a Unix socket path can have at most %d on every system timed runs on", len(r.Path), maxSocketPath)
				r.Path = ""
			}
		}},
		{"unit", func(d *decoder, n *yaml.Node, p string) {
			d.integer(n, p, 0, 7, "use an SHM unit from 0 to 7", &r.Unit)
		}},
		{"edge", func(d *decoder, n *yaml.Node, p string) {
			d.oneOf(n, p, "PPS edge", []string{"assert", "clear"}, &r.Edge)
		}},
		{"lock", func(d *decoder, n *yaml.Node, p string) {
			const hint = "use the name of another refclock or the address of an NTP server"
			if d.str(n, p, hint, &r.Lock) && r.Lock == "" {
				d.errorf(resolve(n), p, "lock is empty; %s, or leave lock out", hint)
			}
		}},
		{"offset", func(d *decoder, n *yaml.Node, p string) {
			if d.duration(n, p, true, "use a duration such as 150ms or -20us", &r.Offset) && kind == "pps" &&
				(r.Offset <= -time.Second || r.Offset >= time.Second) {
				d.errorf(resolve(n), p, "%s is a second or more; a PPS offset must be less than a second either way", resolve(n).Value)
				r.Offset = 0
			}
		}},
		{"delay", func(d *decoder, n *yaml.Node, p string) {
			d.duration(n, p, false, "use a duration such as 200ms (serial time) or 1us (PPS)", &r.Delay)
		}},
		{"precision", func(d *decoder, n *yaml.Node, p string) {
			d.duration(n, p, false, "use a duration such as 1us, or 0 for the reader's default", &r.Precision)
		}},
		{"refid", func(d *decoder, n *yaml.Node, p string) {
			const hint = "use 1 to 4 ASCII letters such as GPS or PPS"
			var s string
			if !d.str(n, p, hint, &s) {
				return
			}
			if !refIDOK(s) {
				d.errorf(resolve(n), p, "%s is not 1 to 4 ASCII letters; %s", quote(s), hint)
				return
			}
			r.RefID = s
		}},
		{"poll", func(d *decoder, n *yaml.Node, p string) {
			d.integer(n, p, -6, 17, pollHint, &r.Poll)
		}},
		boolField("prefer", &r.Prefer),
		boolField("noselect", &r.NoSelect),
		boolField("trust", &r.Trust),
		boolField("require", &r.Require),
	}
	if kindOK {
		// Keys of other kinds are reported as such, not decoded.
		for i, f := range fields {
			kinds, ok := refclockKeyKinds[f.key]
			if !ok || slices.Contains(kinds, kind) {
				continue
			}
			key := f.key
			fields[i].decode = func(d *decoder, n *yaml.Node, p string) {
				d.errorf(resolve(n), p, "%s is a key of %s refclocks, and this one is kind %s; remove it or change the kind", key, strings.Join(kinds, " and "), kind)
			}
		}
	}
	given := d.mapping(n, path, fields)
	if given == nil || !kindOK {
		return r, nil, false
	}
	ok := true
	need := func(key, example string) {
		if _, has := given[key]; !has {
			d.errorf(n, path, "a %s refclock needs %s, such as %s: %s", kind, key, key, example)
			ok = false
		}
	}
	switch kind {
	case "sock":
		need("path", "/run/chrony.ttyS0.sock")
	case "pps":
		need("device", "/dev/pps0")
	}
	if r.Name == "" {
		if _, has := given["name"]; has {
			ok = false // a bad name, already reported
		}
		r.Name = r.defaultName()
	}
	return r, nameNode, ok
}

// refclockKind finds and checks the kind of the entry n before the rest is
// decoded, since it decides which keys are allowed.
func (d *decoder) refclockKind(n *yaml.Node, path string) (string, bool) {
	if isNull(n) {
		d.errorf(n, path, "the entry is empty; every refclock needs at least its kind: %s", strings.Join(refclockKinds, ", "))
		return "", false
	}
	if n.Kind != yaml.MappingNode {
		return "", false // reported by mapping
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if k := resolve(n.Content[i]); k.Kind == yaml.ScalarNode && k.Value == "kind" {
			var kind string
			ok := d.oneOf(n.Content[i+1], joinPath(path, "kind"), "refclock kind", refclockKinds, &kind)
			return kind, ok
		}
	}
	d.errorf(n, path, "kind is missing; every refclock needs one of kind: %s", strings.Join(refclockKinds, ", "))
	return "", false
}

// refclockNameProblem says what is wrong with a refclock name, or "".
func refclockNameProblem(s string) string {
	switch {
	case s == "":
		return "is empty"
	case len(s) > 64:
		return "is longer than 64 characters"
	}
	for _, r := range s {
		if r <= ' ' || r == 0x7f {
			return "contains white space or a control character"
		}
	}
	return ""
}

// gpsdAddressProblem says what is wrong with gpsd's address (host:port or
// an absolute socket path), or "".
func gpsdAddressProblem(s string) string {
	if strings.HasPrefix(s, "/") {
		switch {
		case strings.ContainsRune(s, 0):
			return "contains a NUL byte"
		case strings.HasSuffix(s, "/"):
			return "ends in / (it must name a socket, not a directory)"
		case len(s) > maxSocketPath:
			return fmt.Sprintf("is %d bytes long, more than a Unix socket path can have (%d)", len(s), maxSocketPath)
		}
		return ""
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return "is neither a host:port nor an absolute path"
	}
	if p, err := strconv.Atoi(port); err != nil || !isDigits(port) || p < 1 || p > 65535 {
		return fmt.Sprintf("has the port %s (allowed: 1 to 65535)", quote(port))
	}
	if problem := hostProblem(host); problem != "" {
		return "has a host that " + problem
	}
	return ""
}

func refIDOK(s string) bool {
	if len(s) < 1 || len(s) > 4 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z') {
			return false
		}
	}
	return true
}

// refclockLocks checks the lock of every pps refclock, once the whole file
// (the NTP servers included) is decoded. root is the file's mapping, used
// to find where each lock is written.
func (d *decoder) refclockLocks(root *yaml.Node, c *Config) {
	byName := map[string]*Refclock{}
	for i := range c.Refclocks {
		byName[c.Refclocks[i].Name] = &c.Refclocks[i]
	}
	ntpNames := map[string]bool{}
	for _, s := range c.NTP.Servers {
		ntpNames[s.Address] = true
		ntpNames[net.JoinHostPort(s.Address, strconv.Itoa(s.Port))] = true
	}
	for i, r := range c.Refclocks {
		if r.Lock == "" || r.Kind != "pps" {
			continue
		}
		p := fmt.Sprintf("refclocks[%d].lock", i)
		at := refclockLockNode(root, i)
		other, isRefclock := byName[r.Lock]
		switch {
		case r.Lock == r.Name:
			d.errorf(at, p, "lock names this refclock itself; name the refclock or NTP server that numbers its seconds")
		case isRefclock && other.Kind == "pps":
			d.errorf(at, p, "lock names the pps refclock %s, which cannot number seconds either; name a gpsd, sock or shm refclock or an NTP server", quote(r.Lock))
		case isRefclock || ntpNames[r.Lock]:
		default:
			var known []string
			for _, o := range c.Refclocks {
				if o.Name != r.Name && o.Kind != "pps" {
					known = append(known, o.Name)
				}
			}
			for _, s := range c.NTP.Servers {
				known = append(known, s.Address)
			}
			list := "there are none in this file"
			if len(known) > 0 {
				list = "the candidates are " + strings.Join(known, ", ")
			}
			d.errorf(at, p, "lock %s names no refclock or NTP server (%s); name one, or leave lock out to use the local clock", quote(r.Lock), list)
		}
	}
}

// refclockLockNode finds the value node of refclocks[i].lock in the file,
// or returns nil.
func refclockLockNode(root *yaml.Node, i int) *yaml.Node {
	find := func(m *yaml.Node, key string) *yaml.Node {
		if m == nil || m.Kind != yaml.MappingNode {
			return nil
		}
		for j := 0; j+1 < len(m.Content); j += 2 {
			if k := resolve(m.Content[j]); k.Kind == yaml.ScalarNode && k.Value == key {
				return resolve(m.Content[j+1])
			}
		}
		return nil
	}
	list := find(root, "refclocks")
	if list == nil || list.Kind != yaml.SequenceNode || i >= len(list.Content) {
		return nil
	}
	return find(resolve(list.Content[i]), "lock")
}
