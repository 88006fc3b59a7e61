package config

import (
	"fmt"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// chronyNotes are chrony directives timed has no use for, with why.
var chronyNotes = map[string]string{
	"rtcsync":           noEquivalent + ": timed does not keep the real-time clock in step",
	"rtcfile":           noEquivalent + ": timed does not track the real-time clock",
	"rtcautotrim":       noEquivalent + ": timed does not track the real-time clock",
	"rtcdevice":         noEquivalent + ": timed does not track the real-time clock",
	"rtconutc":          noEquivalent + ": timed does not track the real-time clock",
	"hwclockfile":       noEquivalent + ": timed does not track the real-time clock",
	"logdir":            doesDifferent + ": it logs through its own log (log.level, log.format); statistics are in timectl and /metrics",
	"log":               doesDifferent + ": it logs through its own log (log.level, log.format); statistics are in timectl and /metrics",
	"logbanner":         doesDifferent + ": it logs through its own log",
	"logchange":         doesDifferent + ": it logs every step and large correction",
	"mailonchange":      noEquivalent,
	"keyfile":           noEquivalent + ": symmetric keys are not supported; use NTS (nts: true)",
	"leapsectz":         doesDifferent + ": it reads leap seconds from /usr/share/zoneinfo/leap-seconds.list",
	"leapsecmode":       doesDifferent + ": the kernel inserts or deletes the leap second",
	"leapseclist":       doesDifferent + ": it reads leap seconds from /usr/share/zoneinfo/leap-seconds.list",
	"maxclockerror":     doesDifferent + ": the engine estimates the oscillator's wander",
	"maxupdateskew":     doesDifferent + ": the engine weighs sources by their variance",
	"corrtimeratio":     doesDifferent + ": corrections are slewed up to engine.max_slew_rate_ppm",
	"clockprecision":    notNeeded + ": timed measures the clock's precision at start",
	"fallbackdrift":     noEquivalent,
	"tempcomp":          noEquivalent,
	"smoothtime":        noEquivalent,
	"manual":            noEquivalent + ": use timectl makestep",
	"initstepslew":      doesDifferent + ": use iburst on the servers; engine.step_threshold and step_limit decide steps",
	"reselectdist":      doesDifferent + ": sources are combined by their variance",
	"stratumweight":     doesDifferent + ": sources are combined by their variance",
	"combinelimit":      doesDifferent + ": sources are combined by their variance",
	"maxdistance":       doesDifferent + ": sources are selected by their confidence intervals, with no fixed distance limit",
	"maxjitter":         doesDifferent + ": sources are selected by their confidence intervals, with no fixed jitter limit",
	"minsamples":        doesDifferent + ": each source's filter decides how many samples it keeps",
	"maxsamples":        doesDifferent + ": each source's filter decides how many samples it keeps",
	"broadcast":         noEquivalent + ": timed sends no broadcast NTP",
	"clientloglimit":    doesDifferent + ": server.client_table_size bounds the clients remembered, by count",
	"noclientlog":       doesDifferent + ": server.client_table_size bounds the clients remembered",
	"cmdport":           doesDifferent + ": timectl talks to timed over the Unix socket control.socket",
	"bindcmdaddress":    doesDifferent + ": timectl talks to timed over the Unix socket control.socket",
	"bindcmddevice":     doesDifferent + ": timectl talks to timed over the Unix socket control.socket",
	"cmdallow":          doesDifferent + ": anyone may read status through control.socket; only root may change anything",
	"cmddeny":           doesDifferent + ": anyone may read status through control.socket; only root may change anything",
	"cmdratelimit":      notNeeded + ": the control socket is local",
	"dumpdir":           notNeeded + ": timed restarts from its drift file and measures its sources anew",
	"dumponexit":        notNeeded + ": timed restarts from its drift file and measures its sources anew",
	"pidfile":           notNeeded + ": the service manager tracks timed",
	"user":              doesDifferent + ": timed drops every capability it does not need",
	"sched_priority":    noEquivalent,
	"lock_all":          noEquivalent,
	"acquisitionport":   doesDifferent + ": each source uses its own socket on a random port",
	"bindacqaddress":    noEquivalent,
	"bindacqdevice":     noEquivalent,
	"binddevice":        noEquivalent + ": server.listen names addresses, not devices",
	"dscp":              noEquivalent,
	"ptpport":           noEquivalent + ": NTP over PTP is not supported; use a ptp or csptp source",
	"hwtimestamp":       doesDifferent + ": NTP uses kernel software timestamps; hardware timestamps belong to PTP ports (ptp.ports[].timestamping: hardware)",
	"hwtsignore":        doesDifferent + ": NTP uses kernel software timestamps",
	"nosystemcert":      doesDifferent + ": give nts.ca on the server to trust only that file",
	"ntsdumpdir":        doesDifferent + ": the NTS client keeps its cookies in memory; the NTS server keeps its keys in server.nts.key_file",
	"ntscachedir":       doesDifferent + ": the NTS client keeps its cookies in memory; the NTS server keeps its keys in server.nts.key_file",
	"ntsntpserver":      noEquivalent + ": the NTS-KE server names no other NTP server",
	"ntsratelimit":      doesDifferent + ": server.nts.max_connections bounds NTS-KE connections",
	"ntsprocesses":      notNeeded + ": one timed serves NTS-KE on every core",
	"maxntsconnections": doesDifferent + ": use server.nts.max_connections",
	"ntsrefresh":        doesDifferent + ": NTS-KE certificates are read again on SIGHUP",
	"refresh":           notNeeded + ": pools are resolved again when a server stops answering",
	"maxtxbuffers":      notNeeded,
	"ntstrustedcerts":   "carried over as nts.ca of each NTS source",
	"nocerttimecheck":   "carried over as nts.certificate_dates: ignore_until_synchronized of each NTS source",
}

// chronyRefclockOpts are refclock options with a value timed does not use.
var chronyRefclockOpts = map[string]bool{
	"dpoll": true, "rate": true, "minsamples": true, "maxsamples": true, "maxlockage": true,
	"maxdispersion": true, "stratum": true, "width": true, "filter": true,
}

// chronySourceOpts are server options with a value timed does not use.
var chronySourceOpts = map[string]string{
	"key":              noEquivalent + ": symmetric keys are not supported; use nts",
	"polltarget":       doesDifferent + ": the poll interval adapts between minpoll and maxpoll",
	"maxdelay":         doesDifferent + ": the filter weighs samples by their delay",
	"maxdelayratio":    doesDifferent + ": the filter weighs samples by their delay",
	"maxdelaydevratio": doesDifferent + ": the filter weighs samples by their delay",
	"mindelay":         noEquivalent,
	"asymmetry":        doesDifferent + ": the engine estimates each source's asymmetry",
	"offset":           noEquivalent,
	"filter":           doesDifferent + ": each source has its own filter",
	"minstratum":       noEquivalent,
	"version":          notNeeded + ": timed sends NTPv4",
	"presend":          notNeeded,
	"extfield":         notNeeded + ": timed asks for interleaved mode with xleave",
	"certset":          doesDifferent + ": use nts.ca",
	"minsamples":       doesDifferent + ": each source's filter decides how many samples it keeps",
	"maxsamples":       doesDifferent + ": each source's filter decides how many samples it keeps",
}

// chronyServe is what chrony's server directives say, put together at the
// end because they depend on each other.
type chronyServe struct {
	allowAt      *pos
	denyAt       *pos
	allowAll     bool
	allow, deny  []string
	bind         []netip.Addr
	port         int
	portAt       *pos
	localAt      *pos
	localStratum int
	ntsCert      string
	ntsKey       string
	ntsAt        *pos
	ntsPort      int
	rateAt       *pos
}

type chronyRefclock struct {
	at        pos
	directive string
	name      string
	kind      string
	item      *yaml.Node
	lock      string
}

type chronyState struct {
	serve     chronyServe
	refclocks []chronyRefclock
	ntsCA     string
	ntsNoTime bool
	known     int
	makestep  bool
}

func (m *migration) chrony(name string, src []byte, depth int) error {
	st := &chronyState{serve: chronyServe{port: DefaultNTPPort, ntsPort: DefaultNTSKEPort}}
	// ntstrustedcerts and nocerttimecheck apply to every NTS source, also
	// those written before them.
	for _, raw := range lines(src) {
		f := strings.Fields(raw)
		if len(f) >= 2 && strings.EqualFold(f[0], "ntstrustedcerts") && st.ntsCA == "" {
			st.ntsCA = f[len(f)-1]
		}
		if len(f) >= 1 && strings.EqualFold(f[0], "nocerttimecheck") {
			st.ntsNoTime = true
		}
	}
	if err := m.chronyFile(st, name, src, depth, false); err != nil {
		return err
	}
	m.chronyFinish(st)
	if !st.makestep {
		m.note(pos{name, 1}, "makestep not given", doesDifferent+": chronyd then never steps the clock; timed steps offsets over engine.step_threshold (1s) in its first engine.step_limit (3) updates. Set step_limit: 0 to never step")
	}
	return nil
}

// chronyFile reads one file (the main one or an included one). sources
// limits it to the source directives a sourcedir file may hold.
func (m *migration) chronyFile(st *chronyState, name string, src []byte, depth int, sources bool) error {
	var firstUnknown *pos
	var firstLine string
	before := st.known
	for i, raw := range lines(src) {
		at := pos{name, i + 1}
		line := strings.TrimSpace(raw)
		if line == "" || strings.ContainsRune("#;!%", rune(line[0])) {
			continue
		}
		f := strings.Fields(line)
		dir := strings.ToLower(f[0])
		args := f[1:]
		if sources && dir != "server" && dir != "pool" && dir != "peer" && dir != "refclock" {
			m.warn(at, line, "not carried over: a sourcedir file holds only server, pool, peer and refclock lines")
			continue
		}
		st.known++
		switch dir {
		case "server", "pool", "peer":
			m.chronySource(st, at, line, dir, args)
		case "refclock":
			m.chronyRefclock(st, at, line, args)
		case "include":
			if len(args) != 1 {
				m.warn(at, line, notUnderstood+": include takes one file pattern")
				continue
			}
			if err := m.include(at, line, args[0], depth, func(n string, s []byte) error {
				return m.chronyFile(st, n, s, depth+1, false)
			}); err != nil {
				return err
			}
		case "confdir", "sourcedir":
			ext, srcOnly := "*.conf", false
			if dir == "sourcedir" {
				ext, srcOnly = "*.sources", true
			}
			for _, d := range args {
				if err := m.include(at, line, filepath.Join(d, ext), depth, func(n string, s []byte) error {
					return m.chronyFile(st, n, s, depth+1, srcOnly)
				}); err != nil {
					return err
				}
			}
		default:
			if !m.chronyDirective(st, at, line, dir, args) {
				st.known--
				if firstUnknown == nil {
					firstUnknown, firstLine = &at, line
				}
				m.warn(at, line, unknownKeyword+" of chrony.conf")
			}
		}
	}
	if firstUnknown != nil && st.known == before {
		return notFormat(*firstUnknown, "chrony.conf", firstLine)
	}
	return nil
}

// chronyDirective handles the directives other than sources and includes;
// it returns false for one chrony does not know.
func (m *migration) chronyDirective(st *chronyState, at pos, line, dir string, args []string) bool {
	arg := func(i int) string {
		if i < len(args) {
			return args[i]
		}
		return ""
	}
	bad := func(what string) { m.warn(at, line, notUnderstood+": "+what) }
	switch dir {
	case "makestep":
		st.makestep = true
		th, ok1 := seconds(arg(0))
		lim, ok2 := whole(arg(1), -1<<31, 1<<31-1)
		if len(args) != 2 || !ok1 || !ok2 || th < 0 {
			bad("makestep takes a threshold in seconds and a limit of updates")
			return true
		}
		if lim < 0 {
			lim = -1
		}
		m.set(at, line, "engine.step_threshold", th)
		m.set(at, line, "engine.step_limit", lim)
	case "maxslewrate", "maxdrift":
		v, ok := number(arg(0))
		if len(args) != 1 || !ok {
			bad(dir + " takes a rate in ppm")
			return true
		}
		key := "engine.max_slew_rate_ppm"
		if dir == "maxdrift" {
			key = "engine.max_frequency_ppm"
		}
		m.set(at, line, key, v)
	case "maxchange":
		v, ok := seconds(arg(0))
		if len(args) != 3 || !ok || v < 0 {
			bad("maxchange takes an offset in seconds, a start and a count")
			return true
		}
		if m.set(at, line, "engine.panic_threshold", v) {
			m.note(at, line, "carried over as engine.panic_threshold: timed refuses such an offset at any time after the first synchronization and waits for timectl makestep, where chronyd exits after the count")
		}
	case "minsources":
		v, ok := whole(arg(0), 1, 1000)
		if len(args) != 1 || !ok {
			bad("minsources takes a count from 1 to 1000")
			return true
		}
		m.set(at, line, "engine.min_agreeing_sources", v)
	case "authselectmode":
		if arg(0) == "require" {
			m.set(at, line, "engine.require_authenticated", true)
		} else {
			m.note(at, line, doesDifferent+": only NTS sources steer with engine.require_authenticated: true; otherwise every source may, and bounded_by: authenticated holds one in check")
		}
	case "driftfile":
		if m.set(at, line, "drift_file", DefaultDriftFile) {
			m.note(at, line, "carried over as timed's own drift_file: its format differs, so timed does not read chrony's")
		}
	case "allow", "deny":
		m.chronyAccess(st, at, line, dir, args)
	case "bindaddress":
		a, err := netip.ParseAddr(arg(0))
		if len(args) != 1 || err != nil || a.Zone() != "" {
			bad("bindaddress takes one IP address")
			return true
		}
		st.serve.bind = append(st.serve.bind, a)
	case "port":
		v, ok := whole(arg(0), 0, 65535)
		if len(args) != 1 || !ok {
			bad("port takes a port number")
			return true
		}
		st.serve.port, st.serve.portAt = v, &at
	case "local":
		stratum := 10
		for i := 0; i < len(args); i++ {
			switch args[i] {
			case "stratum":
				v, ok := whole(arg(i+1), 1, 15)
				if !ok {
					bad("local stratum takes a stratum from 1 to 15")
					return true
				}
				stratum = v
				i++
			case "orphan":
			case "distance", "waitsynced", "waitunsynced":
				i++
			default:
				bad("unknown option " + args[i])
				return true
			}
		}
		st.serve.localAt, st.serve.localStratum = &at, stratum
		if len(args) > 2 {
			m.note(at, line, "only the stratum is carried over: timed serves its local time while no source is selected")
		}
	case "ratelimit":
		st.serve.rateAt = &at
		for i := 0; i+1 < len(args); i += 2 {
			switch args[i] {
			case "interval":
				v, ok := whole(args[i+1], -19, 12)
				if !ok {
					bad("ratelimit interval takes log2 seconds, -19 to 12")
					continue
				}
				m.set(at, line, "server.rate_limit.interval", time.Duration(pow2(v)*float64(time.Second)))
			case "burst":
				v, ok := whole(args[i+1], 1, 255)
				if !ok {
					bad("ratelimit burst takes 1 to 255")
					continue
				}
				m.set(at, line, "server.rate_limit.burst", v)
			case "leak":
				m.note(at, line, "leak: "+doesDifferent+": one in server.rate_limit.kiss_every over-limit requests gets a RATE kiss, the others no answer")
			default:
				bad("unknown option " + args[i])
			}
		}
		if len(args)%2 != 0 {
			bad("options come as NAME VALUE pairs")
		}
	case "ntsserverkey", "ntsservercert":
		if len(args) != 1 {
			bad(dir + " takes one file")
			return true
		}
		if dir == "ntsserverkey" {
			st.serve.ntsKey = args[0]
		} else {
			st.serve.ntsCert = args[0]
		}
		st.serve.ntsAt = &at
	case "ntsport":
		v, ok := whole(arg(0), 1, 65535)
		if len(args) != 1 || !ok {
			bad("ntsport takes a port number")
			return true
		}
		st.serve.ntsPort = v
	case "ntsrotate":
		v, ok := seconds(arg(0))
		if len(args) != 1 || !ok {
			bad("ntsrotate takes seconds")
			return true
		}
		if v == 0 {
			m.note(at, line, noEquivalent+": timed always rotates its cookie keys")
			return true
		}
		m.set(at, line, "server.nts.key_rotation", v)
	default:
		why, ok := chronyNotes[dir]
		if !ok {
			return false
		}
		m.note(at, line, why)
	}
	return true
}

func pow2(e int) float64 {
	v := 1.0
	for ; e > 0; e-- {
		v *= 2
	}
	for ; e < 0; e++ {
		v /= 2
	}
	return v
}

// chronyAccess reads allow and deny: "all", nothing (everyone), an
// address, a network, or chrony's short form of a network (192.168).
func (m *migration) chronyAccess(st *chronyState, at pos, line, dir string, args []string) {
	if dir == "allow" && st.serve.allowAt == nil {
		st.serve.allowAt = &at
	}
	if dir == "deny" && st.serve.denyAt == nil {
		st.serve.denyAt = &at
	}
	if len(args) == 0 || len(args) == 1 && args[0] == "all" {
		if dir == "allow" {
			st.serve.allowAll = true
		} else {
			st.serve.deny = append(st.serve.deny, "0.0.0.0/0", "::/0")
		}
		return
	}
	if len(args) != 1 {
		m.warn(at, line, notUnderstood+": "+dir+" takes one network")
		return
	}
	s := args[0]
	if !strings.ContainsAny(s, ":/") && strings.Count(s, ".") < 3 && s != "" {
		// chrony's short form: 192.168 is 192.168.0.0/16.
		parts := strings.Split(s, ".")
		for len(parts) < 4 {
			parts = append(parts, "0")
		}
		s = fmt.Sprintf("%s/%d", strings.Join(parts, "."), 8*len(strings.Split(args[0], ".")))
	}
	n, ok := network(s)
	if !ok {
		m.warn(at, line, notUnderstood+": not an address or network (host names are not carried over)")
		return
	}
	if dir == "allow" {
		st.serve.allow = append(st.serve.allow, n)
	} else {
		st.serve.deny = append(st.serve.deny, n)
	}
}

func (m *migration) chronySource(st *chronyState, at pos, line, dir string, args []string) {
	if len(args) == 0 {
		m.warn(at, line, notUnderstood+": "+dir+" needs an address")
		return
	}
	pool := dir == "pool"
	e := entry("address", args[0])
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
		case "prefer", "noselect", "trust", "require":
			if pool {
				m.note(at, line, opt+": "+noEquivalent+" for pools")
				continue
			}
			setKey(e, opt, scalarNode(true), "")
		case "nts":
			ntsOn = true
		case "burst", "offline", "auto_offline", "copy":
			m.note(at, line, opt+": "+notNeeded)
		case "minpoll", "maxpoll", "port", "ntsport", "maxsources":
			i++
			lo, hi := -6, 17
			if opt == "port" || opt == "ntsport" {
				lo, hi = 1, 65535
			} else if opt == "maxsources" {
				lo, hi = 1, 64
			}
			v, ok := m.clampedInt(at, line, opt, val, lo, hi)
			if !ok {
				continue
			}
			switch opt {
			case "ntsport":
				setKey(nts, "port", scalarNode(v), "")
			case "maxsources":
				if !pool {
					m.note(at, line, "maxsources: "+notNeeded+" for a server")
					continue
				}
				setKey(e, "max_sources", scalarNode(v), "")
			default:
				setKey(e, opt, scalarNode(v), "")
			}
		default:
			if why, ok := chronySourceOpts[opt]; ok {
				i++
				m.note(at, line, opt+": "+why)
				continue
			}
			m.warn(at, line, "unknown option "+clean(args[i])+": left out")
		}
	}
	if ntsOn {
		if st.ntsCA != "" {
			setKey(nts, "ca", scalarNode(st.ntsCA), "")
		}
		if st.ntsNoTime {
			setKey(nts, "certificate_dates", scalarNode("ignore_until_synchronized"), "")
		}
		setNTS(e, nts)
	} else if len(nts.Content) > 0 {
		m.note(at, line, "ntsport: "+notNeeded+" without nts")
	}
	m.addNTPSource(at, line, dir, e)
}

func (m *migration) chronyRefclock(st *chronyState, at pos, line string, args []string) {
	if len(args) < 2 {
		m.warn(at, line, notUnderstood+": refclock needs a driver and its parameter")
		return
	}
	driver := strings.ToUpper(args[0])
	param, popts, _ := strings.Cut(args[1], ":")
	rc := chronyRefclock{at: at, directive: line}
	var e *yaml.Node
	switch driver {
	case "SHM":
		unit, ok := whole(param, 0, 7)
		if !ok {
			m.warn(at, line, notUnderstood+": timed reads SHM units 0 to 7")
			return
		}
		rc.kind, e = "shm", entry("kind", "shm", "unit", unit)
		if popts != "" {
			m.note(at, line, ":"+popts+": "+notNeeded+": timed opens the segment as it finds it")
		}
	case "SOCK":
		rc.kind, e = "sock", entry("kind", "sock", "path", args[1])
	case "PPS":
		rc.kind, e = "pps", entry("kind", "pps", "device", param)
		for _, o := range strings.Split(popts, ":") {
			switch o {
			case "":
			case "clear":
				setKey(e, "edge", scalarNode("clear"), "")
			default:
				m.note(at, line, ":"+o+": "+noEquivalent)
			}
		}
	case "PHC":
		m.warn(at, line, noEquivalent+": a PTP hardware clock is read through a ptp port with timestamping: hardware")
		return
	default:
		m.warn(at, line, noEquivalent+": timed reads the SHM, SOCK and PPS reference clocks (and gpsd's JSON)")
		return
	}
	rc.name = fmt.Sprintf("%s%d", driver[:3], len(st.refclocks))
	for i := 2; i < len(args); i++ {
		opt := strings.ToLower(args[i])
		val := ""
		if i+1 < len(args) {
			val = args[i+1]
		}
		switch opt {
		case "prefer", "noselect", "trust", "require":
			setKey(e, opt, scalarNode(true), "")
		case "tai", "local", "pps":
			m.note(at, line, opt+": "+noEquivalent)
		case "poll":
			i++
			v, ok := whole(val, -6, 17)
			if !ok {
				m.warn(at, line, "poll "+clean(val)+": not understood or outside -6 to 17: left out")
				continue
			}
			setKey(e, "poll", scalarNode(v), "")
		case "offset", "delay", "precision":
			i++
			v, ok := seconds(val)
			if !ok || opt != "offset" && v < 0 {
				m.warn(at, line, opt+" "+clean(val)+": "+notUnderstood)
				continue
			}
			setKey(e, opt, scalarNode(v), "")
		case "refid":
			i++
			rc.name = val
			if refIDOK(val) {
				setKey(e, "refid", scalarNode(val), "")
			} else {
				m.note(at, line, "refid "+clean(val)+": timed's refid is 1 to 4 letters: kept as the source's name only")
			}
		case "lock":
			i++
			rc.lock = val
		default:
			if chronyRefclockOpts[opt] {
				i++
				m.note(at, line, opt+": "+noEquivalent)
				continue
			}
			m.warn(at, line, "unknown option "+clean(args[i])+": left out")
		}
	}
	if problem := refclockNameProblem(rc.name); problem == "" {
		setKey(e, "name", scalarNode(rc.name), "")
		// name first reads better.
		e.Content = append(e.Content[len(e.Content)-2:], e.Content[:len(e.Content)-2]...)
	}
	rc.item = e
	st.refclocks = append(st.refclocks, rc)
}

// chronyFinish adds what needed the whole file: the reference clocks
// (whose locks name each other) and the server.
func (m *migration) chronyFinish(st *chronyState) {
	added := map[string]string{} // name → kind
	var locked []chronyRefclock
	for _, rc := range st.refclocks {
		if m.addRefclock(rc.at, rc.directive, rc.item) {
			if n := getKey(rc.item, "name"); n != nil {
				added[n.Value] = rc.kind
			}
			if rc.lock != "" {
				locked = append(locked, rc)
			}
		}
	}
	for _, rc := range locked {
		switch kind, ok := added[rc.lock]; {
		case !ok:
			m.warn(rc.at, rc.directive, "lock "+clean(rc.lock)+": no reference clock of that refid was carried over: the local clock numbers the pulses")
		case rc.kind != "pps" || kind == "pps":
			m.warn(rc.at, rc.directive, "lock "+clean(rc.lock)+": timed locks a pps refclock to a gpsd, sock or shm one only")
		default:
			setKey(rc.item, "lock", scalarNode(rc.lock), "")
		}
	}

	s := st.serve
	if s.allowAt == nil {
		for _, p := range []*pos{s.localAt, s.ntsAt, s.rateAt} {
			if p != nil {
				m.note(*p, "server settings", notNeeded+": chronyd serves no one without allow, so timed's server stays off")
			}
		}
		return
	}
	at := *s.allowAt
	if s.port == 0 {
		m.note(*s.portAt, "port 0", "chronyd serves no one: timed's server stays off")
		return
	}
	if !m.set(at, "allow (chronyd serves NTP)", "server.listen", listenAddrs(s.bind, s.port)) {
		return
	}
	if !s.allowAll && len(s.allow) > 0 {
		m.set(at, "allow", "server.allow", dedupe(s.allow))
	}
	if len(s.deny) > 0 {
		m.set(*s.denyAt, "deny", "server.deny", dedupe(s.deny))
		for _, a := range s.allow {
			ap, _ := netip.ParsePrefix(prefixOf(a))
			for _, d := range s.deny {
				dp, _ := netip.ParsePrefix(prefixOf(d))
				if dp.Bits() < ap.Bits() && dp.Overlaps(ap) {
					m.warn(at, "allow "+a, "timed checks deny before allow, so "+d+" denies this network too, where chronyd let the more specific allow win")
				}
			}
		}
	}
	if s.localAt != nil {
		m.set(*s.localAt, "local stratum", "server.local.stratum", s.localStratum)
	}
	if s.ntsAt != nil {
		if s.ntsCert == "" || s.ntsKey == "" {
			m.warn(*s.ntsAt, "ntsservercert/ntsserverkey", "not carried over: NTS-KE needs both a certificate and a key")
			return
		}
		ok := m.set(*s.ntsAt, "ntsservercert", "server.nts.certificate", s.ntsCert)
		ok = m.set(*s.ntsAt, "ntsserverkey", "server.nts.key", s.ntsKey) && ok
		if ok {
			m.set(*s.ntsAt, "ntsport", "server.nts.listen", listenAddrs(s.bind, s.ntsPort))
		}
	}
}

func dedupe(s []string) []string {
	var out []string
	for _, v := range s {
		if !slices.Contains(out, v) {
			out = append(out, v)
		}
	}
	return out
}

func prefixOf(s string) string {
	if strings.Contains(s, "/") {
		return s
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return s
	}
	return netip.PrefixFrom(a, a.BitLen()).String()
}
