package config

import (
	"fmt"
	"net"
	"net/netip"
	"strings"

	"gopkg.in/yaml.v3"
)

// ntpsecNotes are ntpsec directives timed has no use for, with why.
var ntpsecNotes = map[string]string{
	"leapfile":          doesDifferent + ": it reads leap seconds from /usr/share/zoneinfo/leap-seconds.list",
	"leapsmearinterval": noEquivalent + ": timed does not smear leap seconds",
	"statistics":        doesDifferent + ": statistics are in timectl and /metrics (metrics.listen)",
	"statsdir":          doesDifferent + ": statistics are in timectl and /metrics (metrics.listen)",
	"filegen":           doesDifferent + ": statistics are in timectl and /metrics (metrics.listen)",
	"logfile":           doesDifferent + ": it logs through its own log (log.level, log.format)",
	"logconfig":         doesDifferent + ": it logs through its own log (log.level, log.format)",
	"keys":              noEquivalent + ": symmetric keys are not supported; use NTS",
	"trustedkey":        noEquivalent + ": symmetric keys are not supported; use NTS",
	"controlkey":        doesDifferent + ": timectl talks to timed over the Unix socket control.socket",
	"requestkey":        doesDifferent + ": timectl talks to timed over the Unix socket control.socket",
	"unrestrict":        doesDifferent + ": server.allow and server.deny",
	"enable":            doesDifferent + ": each feature is its own key",
	"disable":           doesDifferent + ": each feature is its own key",
	"setvar":            noEquivalent,
	"mru":               doesDifferent + ": server.client_table_size bounds the clients remembered",
	"rlimit":            notNeeded,
	"broadcast":         noEquivalent + ": timed sends no broadcast NTP",
	"broadcastclient":   noEquivalent + ": timed does not listen to broadcast NTP",
	"broadcastdelay":    noEquivalent,
	"manycastclient":    noEquivalent,
	"manycastserver":    noEquivalent,
	"multicastclient":   noEquivalent,
	"phone":             noEquivalent,
	"ntpsigndsocket":    noEquivalent,
	"fudge":             doesDifferent + ": refclock options go on the refclock line (ntpsec's refclock syntax is carried over)",
	"nic":               doesDifferent + ": server.listen names the addresses served",
	"dscp":              noEquivalent,
	"tinker":            "",
	"tos":               "",
}

// ntpsecRestrictFlags are restrict flags about queries and modes timed does
// not have: noted, not refused.
var ntpsecRestrictFlags = map[string]bool{
	"kod": true, "limited": true, "nomodify": true, "noquery": true, "nopeer": true, "notrap": true,
	"nomrulist": true, "version": true, "ntpport": true, "notrust": true, "noepeer": true, "flake": true,
	"interface": true,
}

type ntpsecState struct {
	known       int
	denyDefault bool
	allow, deny []string
	restrictAt  *pos
	bind        []netip.Addr
	noWildcard  bool
	orphanAt    *pos
	orphan      int
	ntsAt       *pos
	ntsOn       bool
	ntsCert     string
	ntsKey      string
}

func (m *migration) ntpsec(name string, src []byte, depth int) error {
	st := &ntpsecState{}
	if err := m.ntpsecFile(st, name, src, depth); err != nil {
		return err
	}
	m.ntpsecFinish(st)
	if !m.has("engine.step_threshold") {
		m.note(pos{name, 1}, "tinker step not given", doesDifferent+": ntpd steps offsets over 128 ms at any time; timed steps offsets over engine.step_threshold (1s) in its first engine.step_limit (3) updates only")
	}
	return nil
}

func (m *migration) ntpsecFile(st *ntpsecState, name string, src []byte, depth int) error {
	var firstUnknown *pos
	var firstLine string
	before := st.known
	for i, raw := range lines(src) {
		at := pos{name, i + 1}
		f := fields(raw)
		if len(f) == 0 {
			continue
		}
		line := strings.Join(f, " ")
		dir := strings.ToLower(f[0])
		args := f[1:]
		st.known++
		switch dir {
		case "server", "pool", "peer":
			m.ntpsecSource(at, line, dir, args)
		case "refclock":
			m.ntpsecRefclock(at, line, args)
		case "includefile":
			if len(args) != 1 {
				m.warn(at, line, notUnderstood+": includefile takes one file")
				continue
			}
			if err := m.include(at, line, args[0], depth, func(n string, s []byte) error {
				return m.ntpsecFile(st, n, s, depth+1)
			}); err != nil {
				return err
			}
		case "driftfile":
			if m.set(at, line, "drift_file", DefaultDriftFile) {
				m.note(at, line, "carried over as timed's own drift_file: its format differs, so timed does not read ntpd's")
			}
		case "restrict":
			m.ntpsecRestrict(st, at, line, args)
		case "tos":
			m.ntpsecTos(st, at, line, args)
		case "tinker":
			m.ntpsecTinker(at, line, args)
		case "interface":
			m.ntpsecInterface(st, at, line, args)
		case "nts":
			m.ntpsecNTS(st, at, line, args)
		default:
			why, ok := ntpsecNotes[dir]
			if !ok || why == "" {
				st.known--
				if firstUnknown == nil {
					firstUnknown, firstLine = &at, line
				}
				m.warn(at, line, unknownKeyword+" of ntp.conf")
				continue
			}
			m.note(at, line, why)
		}
	}
	if firstUnknown != nil && st.known == before {
		return notFormat(*firstUnknown, "ntp.conf", firstLine)
	}
	return nil
}

// splitHostPort splits ntpsec's host:port, [v6]:port, or a plain host or
// IPv6 address.
func splitHostPort(s string) (string, int, bool) {
	if a, err := netip.ParseAddr(s); err == nil {
		return a.String(), 0, true
	}
	if host, port, err := net.SplitHostPort(s); err == nil {
		p, ok := whole(port, 1, 65535)
		return host, p, ok
	}
	return s, 0, !strings.ContainsAny(s, "[]")
}

func (m *migration) ntpsecSource(at pos, line, dir string, args []string) {
	if len(args) == 0 {
		m.warn(at, line, notUnderstood+": "+dir+" needs an address")
		return
	}
	if strings.HasPrefix(args[0], "127.127.") {
		m.ntpsecLegacyRefclock(at, line, args)
		return
	}
	for len(args) > 1 && (args[0] == "-4" || args[0] == "-6") {
		args = args[1:]
	}
	host, port, ok := splitHostPort(args[0])
	if !ok {
		m.warn(at, line, notUnderstood+": "+clean(args[0])+" is not an address")
		return
	}
	pool := dir == "pool"
	e := entry("address", host)
	nts := entry()
	ntsOn := false
	for i := 1; i < len(args); i++ {
		opt := strings.ToLower(args[i])
		val := ""
		if i+1 < len(args) {
			val = args[i+1]
		}
		switch opt {
		case "iburst", "xleave":
			setKey(e, opt, scalarNode(true), "")
		case "prefer", "noselect", "true":
			if pool {
				m.note(at, line, opt+": "+noEquivalent+" for pools")
				continue
			}
			if opt == "true" {
				opt = "trust"
			}
			setKey(e, opt, scalarNode(true), "")
		case "nts":
			ntsOn = true
		case "burst", "preempt":
			m.note(at, line, opt+": "+notNeeded)
		case "noval":
			m.warn(at, line, "noval: "+noEquivalent+": timed always checks the NTS-KE server's certificate (nts.ca trusts a file of your own)")
		case "minpoll", "maxpoll":
			i++
			v, ok := m.clampedInt(at, line, opt, val, -6, 17)
			if !ok {
				continue
			}
			setKey(e, opt, scalarNode(v), "")
		case "ca":
			i++
			setKey(nts, "ca", scalarNode(val), "")
		case "version", "key", "mode", "ttl", "bias", "aead", "cookie", "expire":
			i++
			m.note(at, line, opt+" "+clean(val)+": "+noEquivalent)
		default:
			m.warn(at, line, "unknown option "+clean(args[i])+": left out")
		}
	}
	if ntsOn {
		if port != 0 {
			setKey(nts, "port", scalarNode(port), "")
		}
		setNTS(e, nts)
	} else {
		if port != 0 {
			setKey(e, "port", scalarNode(port), "")
		}
		if len(nts.Content) > 0 {
			m.note(at, line, "ca: "+notNeeded+" without nts")
		}
	}
	m.addNTPSource(at, line, dir, e)
}

// ntpsecLegacyRefclock reads the old form, server 127.127.TYPE.UNIT.
func (m *migration) ntpsecLegacyRefclock(at pos, line string, args []string) {
	parts := strings.Split(args[0], ".")
	if len(parts) != 4 {
		m.warn(at, line, notUnderstood)
		return
	}
	if _, ok := whole(parts[3], 0, 255); !ok {
		m.warn(at, line, notUnderstood)
		return
	}
	switch parts[2] {
	case "28":
		m.ntpsecRefclock(at, line, append([]string{"shm", "unit", parts[3]}, args[1:]...))
	case "46":
		m.ntpsecRefclock(at, line, append([]string{"gpsd", "unit", parts[3]}, args[1:]...))
	case "22":
		m.ntpsecRefclock(at, line, append([]string{"pps", "unit", parts[3]}, args[1:]...))
	default:
		m.warn(at, line, noEquivalent+": timed reads the SHM (type 28), gpsd (46) and PPS (22) reference clocks")
	}
}

func (m *migration) ntpsecRefclock(at pos, line string, args []string) {
	if len(args) == 0 {
		m.warn(at, line, notUnderstood+": refclock needs a driver")
		return
	}
	driver := strings.ToLower(args[0])
	unit := 0
	var path string
	e := entry()
	for i := 1; i < len(args); i++ {
		opt := strings.ToLower(args[i])
		val := ""
		if i+1 < len(args) {
			val = args[i+1]
		}
		switch opt {
		case "prefer", "noselect":
			setKey(e, opt, scalarNode(true), "")
		case "true":
			setKey(e, "trust", scalarNode(true), "")
		case "unit":
			i++
			v, ok := whole(val, 0, 255)
			if !ok {
				m.warn(at, line, notUnderstood+": unit "+clean(val))
				return
			}
			unit = v
		case "refid":
			i++
			if refIDOK(val) {
				setKey(e, "refid", scalarNode(val), "")
			} else {
				m.note(at, line, "refid "+clean(val)+": timed's refid is 1 to 4 letters")
			}
		case "time1":
			i++
			v, ok := seconds(val)
			if !ok {
				m.warn(at, line, notUnderstood+": time1 "+clean(val))
				continue
			}
			setKey(e, "offset", scalarNode(v), "")
		case "minpoll":
			i++
			v, ok := whole(val, -6, 17)
			if !ok {
				m.warn(at, line, "minpoll "+clean(val)+": outside -6 to 17: left out")
				continue
			}
			setKey(e, "poll", scalarNode(v), "")
		case "path":
			i++
			path = val
		case "time2", "stratum", "flag1", "flag2", "flag3", "flag4", "maxpoll", "subtype", "mode", "baud", "ppspath", "holdover":
			if !strings.HasPrefix(opt, "flag") || val == "0" || val == "1" {
				i++
			}
			m.note(at, line, opt+": "+noEquivalent)
		default:
			m.warn(at, line, "unknown option "+clean(args[i])+": left out")
		}
	}
	var head []any
	switch driver {
	case "shm":
		if unit > 7 {
			m.warn(at, line, "not carried over: timed reads SHM units 0 to 7")
			return
		}
		head = []any{"kind", "shm", "unit", unit}
	case "gpsd":
		head = []any{"kind", "gpsd", "device", fmt.Sprintf("/dev/gps%d", unit)}
		if path != "" {
			head[3] = path
		}
	case "pps":
		head = []any{"kind", "pps", "device", fmt.Sprintf("/dev/pps%d", unit)}
		if path != "" {
			head[3] = path
		}
	default:
		m.warn(at, line, noEquivalent+": timed reads the shm, gpsd and pps reference clocks")
		return
	}
	item := entry(head...)
	item.Content = append(item.Content, e.Content...)
	m.addRefclock(at, line, item)
}

func (m *migration) ntpsecRestrict(st *ntpsecState, at pos, line string, args []string) {
	for len(args) > 0 && (args[0] == "-4" || args[0] == "-6") {
		args = args[1:]
	}
	if len(args) == 0 {
		m.warn(at, line, notUnderstood+": restrict needs an address")
		return
	}
	if st.restrictAt == nil {
		st.restrictAt = &at
	}
	target := args[0]
	mask := ""
	var flags []string
	for i := 1; i < len(args); i++ {
		if args[i] == "mask" && i+1 < len(args) {
			mask = args[i+1]
			i++
			continue
		}
		flags = append(flags, strings.ToLower(args[i]))
	}
	refuse := false
	var others []string
	for _, f := range flags {
		switch {
		case f == "ignore" || f == "noserve":
			refuse = true
		case ntpsecRestrictFlags[f]:
			others = append(others, f)
		default:
			m.warn(at, line, "unknown flag "+clean(f)+": left out")
		}
	}
	if len(others) > 0 {
		m.note(at, line, strings.Join(others, " ")+": "+doesDifferent+": timed answers no mode 6 or 7 queries and takes no peers; server.rate_limit limits every client (with RATE kisses)")
	}
	switch target {
	case "default":
		st.denyDefault = refuse
		return
	case "source":
		m.note(at, line, notNeeded+": timed's sources need no restrict entry")
		return
	}
	s := target
	if mask != "" {
		a, err1 := netip.ParseAddr(target)
		mk, err2 := netip.ParseAddr(mask)
		if err1 != nil || err2 != nil || a.Is4() != mk.Is4() {
			m.warn(at, line, notUnderstood+": address and mask")
			return
		}
		bits := 0
		for _, b := range mk.AsSlice() {
			for ; b&0x80 != 0; b <<= 1 {
				bits++
			}
		}
		s = fmt.Sprintf("%s/%d", a, bits)
	}
	n, ok := network(s)
	if !ok {
		m.warn(at, line, notUnderstood+": not an address or network (host names are not carried over)")
		return
	}
	if refuse {
		st.deny = append(st.deny, n)
	} else {
		st.allow = append(st.allow, n)
	}
}

func (m *migration) ntpsecTos(st *ntpsecState, at pos, line string, args []string) {
	for i := 0; i < len(args); i++ {
		opt := strings.ToLower(args[i])
		val := ""
		if i+1 < len(args) {
			val = args[i+1]
		}
		i++
		switch opt {
		case "minsane":
			v, ok := whole(val, 1, 1000)
			if !ok {
				m.warn(at, line, notUnderstood+": minsane "+clean(val))
				continue
			}
			m.set(at, line, "engine.min_agreeing_sources", v)
		case "orphan":
			v, ok := whole(val, 1, 15)
			if !ok {
				m.warn(at, line, "orphan "+clean(val)+": timed serves a local stratum of 1 to 15")
				continue
			}
			st.orphanAt, st.orphan = &at, v
			m.note(at, line, "orphan: carried over as server.local.stratum: timed serves its own time at that stratum while no source is selected (there is no orphan election between servers)")
		case "minclock", "maxclock", "mindist", "maxdist", "orphanwait", "floor", "ceiling", "cohort", "bcpollbstep", "beacon":
			m.note(at, line, opt+" "+clean(val)+": "+doesDifferent+": sources are selected by their confidence intervals and combined by their variance")
		default:
			m.warn(at, line, "unknown tos option "+clean(opt))
		}
	}
}

func (m *migration) ntpsecTinker(at pos, line string, args []string) {
	for i := 0; i+1 < len(args); i += 2 {
		opt := strings.ToLower(args[i])
		switch opt {
		case "step", "panic":
			v, ok := seconds(args[i+1])
			if !ok || v < 0 {
				m.warn(at, line, notUnderstood+": "+opt+" "+clean(args[i+1]))
				continue
			}
			key := "engine.step_threshold"
			if opt == "panic" {
				key = "engine.panic_threshold"
			}
			m.set(at, line, key, v)
		case "stepout", "dispersion", "allan", "huffpuff", "freq", "stepback", "stepfwd", "tick":
			m.note(at, line, opt+": "+doesDifferent+": the engine's filter and steering have no such setting")
		default:
			m.warn(at, line, "unknown tinker option "+clean(opt))
		}
	}
	if len(args)%2 != 0 {
		m.warn(at, line, notUnderstood+": options come as NAME VALUE pairs")
	}
}

func (m *migration) ntpsecInterface(st *ntpsecState, at pos, line string, args []string) {
	if len(args) == 2 && args[0] == "listen" {
		if a, err := netip.ParseAddr(args[1]); err == nil && a.Zone() == "" {
			st.bind = append(st.bind, a)
			return
		}
	}
	if len(args) == 2 && (args[0] == "ignore" || args[0] == "drop") && args[1] == "wildcard" {
		st.noWildcard = true
		return
	}
	m.note(at, line, doesDifferent+": server.listen names the addresses served (interface names and address families are not carried over)")
}

func (m *migration) ntpsecNTS(st *ntpsecState, at pos, line string, args []string) {
	if len(args) == 0 {
		m.warn(at, line, notUnderstood)
		return
	}
	st.ntsAt = &at
	switch strings.ToLower(args[0]) {
	case "enable":
		st.ntsOn = true
	case "disable":
		st.ntsOn = false
	case "cert", "key":
		if len(args) != 2 {
			m.warn(at, line, notUnderstood+": nts "+args[0]+" takes a file")
			return
		}
		if args[0] == "cert" {
			st.ntsCert = args[1]
		} else {
			st.ntsKey = args[1]
		}
	case "cookie":
		m.note(at, line, doesDifferent+": the cookie keys are kept in server.nts.key_file, in timed's own format")
	default:
		m.note(at, line, noEquivalent+": timed's NTS-KE uses TLS 1.3 and AES-SIV-CMAC-256 only")
	}
}

func (m *migration) ntpsecFinish(st *ntpsecState) {
	at := pos{m.name, 1}
	if st.restrictAt != nil {
		at = *st.restrictAt
	}
	if st.denyDefault && len(st.allow) == 0 {
		m.note(at, "restrict default ignore", "ntpd serves no one: timed's server stays off")
		return
	}
	if st.noWildcard && len(st.bind) == 0 {
		m.note(at, "interface ignore wildcard", "ntpd serves on no address: timed's server stays off")
		return
	}
	if !m.set(at, "ntpd serves NTP on port 123", "server.listen", listenAddrs(st.bind, DefaultNTPPort)) {
		return
	}
	if st.denyDefault {
		m.set(at, "restrict", "server.allow", dedupe(st.allow))
	}
	if len(st.deny) > 0 {
		m.set(at, "restrict ... ignore", "server.deny", dedupe(st.deny))
	}
	if st.orphanAt != nil {
		m.set(*st.orphanAt, "tos orphan", "server.local.stratum", st.orphan)
	}
	if st.ntsOn && st.ntsAt != nil {
		if st.ntsCert == "" || st.ntsKey == "" {
			m.warn(*st.ntsAt, "nts enable", "not carried over: timed's NTS-KE needs nts cert and nts key (ntpd's default files are not assumed)")
			return
		}
		ok := m.set(*st.ntsAt, "nts cert", "server.nts.certificate", st.ntsCert)
		ok = m.set(*st.ntsAt, "nts key", "server.nts.key", st.ntsKey) && ok
		if ok {
			m.set(*st.ntsAt, "nts enable", "server.nts.listen", listenAddrs(st.bind, DefaultNTSKEPort))
		}
	}
}

// addRefclock adds a reference clock unless one reads the same input or
// has the same name already.
func (m *migration) addRefclock(at pos, directive string, item *yaml.Node) bool {
	var r Refclock
	r.Kind = getKey(item, "kind").Value
	for _, k := range []struct {
		key string
		dst *string
	}{{"address", &r.Address}, {"device", &r.Device}, {"path", &r.Path}, {"name", &r.Name}} {
		if n := getKey(item, k.key); n != nil {
			*k.dst = n.Value
		}
	}
	if n := getKey(item, "unit"); n != nil {
		fmt.Sscan(n.Value, &r.Unit)
	}
	if r.Kind == "gpsd" && r.Address == "" {
		r.Address = DefaultGpsdAddress
	}
	if r.Name == "" {
		r.Name = r.defaultName()
	}
	input := r.Kind + " " + r.refclockInput()
	if r.Kind == "gpsd" {
		input = "name " + r.Name
	}
	for _, key := range []string{input, "name " + r.Name} {
		if line, ok := m.refKeys[key]; ok {
			m.warn(at, directive, fmt.Sprintf("not carried over: the same reference clock as line %d", line))
			return false
		}
	}
	if !m.add(at, directive, "refclocks", item) {
		return false
	}
	m.refKeys[input] = at.line
	m.refKeys["name "+r.Name] = at.line
	return true
}
