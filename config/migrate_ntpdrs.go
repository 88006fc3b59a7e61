package config

import (
	"errors"
	"fmt"
	"math"
	"net"
	"net/netip"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
	"gopkg.in/yaml.v3"
)

// tomlTables finds the lines of an ntp.toml's tables and keys, which the
// TOML decoder does not report.
type tomlTables struct {
	src     []string
	headers []tomlHeader
}

type tomlHeader struct {
	name string
	line int // 1-based
}

var tomlHeaderRE = regexp.MustCompile(`^\s*\[\[?\s*([A-Za-z0-9_.\-" ]+?)\s*\]\]?`)

func newTOMLTables(src []byte) *tomlTables {
	t := &tomlTables{src: lines(src)}
	for i, l := range t.src {
		if g := tomlHeaderRE.FindStringSubmatch(l); g != nil {
			t.headers = append(t.headers, tomlHeader{strings.ReplaceAll(g[1], " ", ""), i + 1})
		}
	}
	return t
}

// line returns the line of key in the occurrence-th table named table
// ("" for the top), or of the table itself.
func (t *tomlTables) line(table string, occurrence int, key string) int {
	start, end := 1, len(t.src)
	if table != "" {
		n := 0
		found := false
		for i, h := range t.headers {
			if h.name == table {
				if n == occurrence {
					start, found = h.line, true
					if i+1 < len(t.headers) {
						end = t.headers[i+1].line - 1
					}
					// sub-tables of this one ([server.allowlist]) belong to it.
					for j := i + 1; j < len(t.headers) && strings.HasPrefix(t.headers[j].name, table+"."); j++ {
						if j+1 < len(t.headers) {
							end = t.headers[j+1].line - 1
						} else {
							end = len(t.src)
						}
					}
					break
				}
				n++
			}
		}
		if !found {
			return 1
		}
	} else if len(t.headers) > 0 {
		end = t.headers[0].line - 1
	}
	if key != "" {
		for i := start - 1; i < end && i < len(t.src); i++ {
			l := strings.TrimLeft(t.src[i], " \t")
			if strings.HasPrefix(l, key) || strings.HasPrefix(l, `"`+key+`"`) {
				return i + 1
			}
		}
	}
	return start
}

func (t *tomlTables) text(line int) string {
	if line >= 1 && line <= len(t.src) {
		return t.src[line-1]
	}
	return ""
}

// ntpdrsSections are ntpd-rs's top-level tables and keys; the others are
// unknown.
var ntpdrsNotes = map[string]string{
	"clock": doesDifferent + ": clock.driver says which clock timed disciplines",
}

func (m *migration) ntpdrs(name string, src []byte) error {
	if line := tooDeep(src); line > 0 {
		return fmt.Errorf("migrate: %s:%d: this is not an ntp.toml file: arrays and tables nest more than %d deep", name, line, maxTOMLNesting)
	}
	var doc map[string]any
	if _, err := toml.Decode(string(src), &doc); err != nil {
		var pe toml.ParseError
		if errors.As(err, &pe) {
			return fmt.Errorf("migrate: %s:%d: this is not an ntp.toml (TOML) file: %s", name, pe.Position.Line, clean(pe.Message))
		}
		return fmt.Errorf("migrate: %s: this is not an ntp.toml (TOML) file: %w", name, err)
	}
	t := newTOMLTables(src)
	at := func(table string, occ int, key string) pos { return pos{name, t.line(table, occ, key)} }
	known := 0
	keys := make([]string, 0, len(doc))
	for k := range doc {
		keys = append(keys, k)
	}
	// The source defaults come before the sources, the NTS-KE server
	// after the NTP server it needs.
	rank := func(k string) int {
		switch {
		case k == "source-defaults":
			return 0
		case strings.HasPrefix(k, "nts-ke"):
			return 2
		}
		return 1
	}
	sort.Slice(keys, func(i, j int) bool {
		if ri, rj := rank(keys[i]), rank(keys[j]); ri != rj {
			return ri < rj
		}
		return t.line(keys[i], 0, "") < t.line(keys[j], 0, "")
	})
	if sync, _ := doc["synchronization"].(map[string]any); sync["minimum-agreeing-sources"] == nil {
		m.note(pos{name, 1}, "minimum-agreeing-sources not given", doesDifferent+": ntpd-rs waits for 3 agreeing sources by default, timed for 1 (and a majority of three or more in any case); set engine.min_agreeing_sources: 3 to keep ntpd-rs's rule")
	}
	var defaultPolls map[string]any
	var firstUnknown *pos
	for _, k := range keys {
		v := doc[k]
		p := at(k, 0, "")
		if t.line(k, 0, "") == 1 && !strings.Contains(t.text(1), k) {
			p = at("", 0, k)
		}
		switch k {
		case "source-defaults":
			known++
			for _, s := range tables(v) {
				for _, dk := range sortedKeys(t, k, 0, s) {
					kp := pos{name, t.line(k, 0, dk)}
					switch dk {
					case "poll-interval-limits":
						defaultPolls, _ = s[dk].(map[string]any)
						m.note(kp, directive(dk, s[dk]), "carried over as minpoll and maxpoll of each source without its own")
					case "initial-poll-interval":
						m.note(kp, directive(dk, s[dk]), notNeeded+": iburst starts quickly")
					default:
						m.warn(kp, directive(dk, s[dk]), "unknown key of [source-defaults]: left out")
					}
				}
			}
		case "source", "peer", "sources", "peers":
			known++
			for i, s := range tables(v) {
				if _, own := s["poll-interval-limits"]; !own && defaultPolls != nil {
					s["poll-interval-limits"] = defaultPolls
				}
				m.ntpdrsSource(t, name, k, i, s)
			}
		case "server", "servers":
			known++
			for i, s := range tables(v) {
				m.ntpdrsServer(t, name, k, i, s)
			}
		case "nts-ke-server", "nts-ke":
			known++
			for i, s := range tables(v) {
				m.ntpdrsNTSKE(t, name, k, i, s)
			}
		case "synchronization":
			known++
			for _, s := range tables(v) {
				m.ntpdrsSync(t, name, s)
			}
		case "observability":
			known++
			for _, s := range tables(v) {
				m.ntpdrsObservability(t, name, s)
			}
		case "keyset":
			known++
			for _, s := range tables(v) {
				m.ntpdrsKeyset(t, name, s)
			}
		default:
			if why, ok := ntpdrsNotes[k]; ok {
				known++
				m.note(p, "["+k+"]", why)
				continue
			}
			if firstUnknown == nil {
				firstUnknown = &p
			}
			m.warn(p, k, unknownKeyword+" of ntp.toml")
		}
	}
	if known == 0 && firstUnknown != nil {
		return fmt.Errorf("migrate: %s: this is not an ntp.toml file: it has none of ntpd-rs's tables ([[source]], [[server]], [synchronization], ...)", *firstUnknown)
	}
	return nil
}

// tooDeep returns the line where brackets and braces nest deeper than
// maxTOMLNesting (counting those in strings too, which only makes it
// stricter), or 0.
func tooDeep(src []byte) int {
	depth, line := 0, 1
	for _, c := range src {
		switch c {
		case '[', '{':
			if depth++; depth > maxTOMLNesting {
				return line
			}
		case ']', '}':
			depth = max(depth-1, 0)
		case '\n':
			line++
		}
	}
	return 0
}

// tables returns v as a list of tables (an array of tables as it is, a
// table as a list of one), at most maxMigrateEntries of them.
func tables(v any) []map[string]any {
	t := allTables(v)
	if len(t) > maxMigrateEntries {
		t = t[:maxMigrateEntries]
	}
	return t
}

func allTables(v any) []map[string]any {
	switch v := v.(type) {
	case map[string]any:
		return []map[string]any{v}
	case []map[string]any:
		return v
	case []any:
		var out []map[string]any
		for _, e := range v {
			if t, ok := e.(map[string]any); ok {
				out = append(out, t)
			}
		}
		return out
	}
	return nil
}

// sortedKeys returns a table's keys in the order of their lines.
func sortedKeys(t *tomlTables, table string, occ int, tab map[string]any) []string {
	keys := make([]string, 0, len(tab))
	for k := range tab {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		li, lj := t.line(table, occ, keys[i]), t.line(table, occ, keys[j])
		if li != lj {
			return li < lj
		}
		return keys[i] < keys[j]
	})
	return keys
}

func tomlString(v any) (string, bool) {
	s, ok := v.(string)
	return s, ok
}

// tomlSeconds reads a number of seconds, or "inf".
func tomlSeconds(v any) (time.Duration, bool) {
	var f float64
	switch v := v.(type) {
	case int64:
		f = float64(v)
	case float64:
		f = v
	case string:
		if v == "inf" {
			return 0, true
		}
		return 0, false
	default:
		return 0, false
	}
	if math.IsNaN(f) || math.IsInf(f, 0) || f < 0 || f > 1e9 {
		return 0, false
	}
	return time.Duration(f * float64(time.Second)), true
}

func tomlInt(v any, lo, hi int64) (int, bool) {
	i, ok := v.(int64)
	if !ok || i < lo || i > hi {
		return 0, false
	}
	return int(i), true
}

func directive(key string, v any) string {
	return fmt.Sprintf("%s = %v", key, v)
}

func (m *migration) ntpdrsSource(t *tomlTables, name, table string, occ int, s map[string]any) {
	head := pos{name, t.line(table, occ, "")}
	mode, _ := tomlString(s["mode"])
	addr, _ := tomlString(s["address"])
	desc := fmt.Sprintf("[[%s]] mode = %q", table, mode)
	switch mode {
	case "server", "pool", "nts":
		if addr == "" {
			m.warn(head, desc, notUnderstood+": the source has no address")
			return
		}
		host, port, ok := splitHostPort(addr)
		if !ok {
			m.warn(head, desc, notUnderstood+": address "+clean(addr))
			return
		}
		desc = fmt.Sprintf("[[%s]] mode = %q, address = %q", table, mode, addr)
		e := entry("address", host)
		if mode == "nts" {
			if port != 0 && port != DefaultNTSKEPort {
				setKey(e, "nts", entry("port", port), "")
			} else {
				setKey(e, "nts", scalarNode(true), "")
			}
		} else if port != 0 && port != DefaultNTPPort {
			setKey(e, "port", scalarNode(port), "")
		}
		for _, k := range sortedKeys(t, table, occ, s) {
			kp := pos{name, t.line(table, occ, k)}
			v := s[k]
			switch k {
			case "mode", "address":
			case "count":
				c, ok := tomlInt(v, 1, 64)
				if mode != "pool" || !ok {
					m.warn(kp, directive(k, v), "not carried over: a pool's count is 1 to 64")
					continue
				}
				setKey(e, "max_sources", scalarNode(c), "")
			case "certificate-authority", "ca":
				ca, ok := tomlString(v)
				if mode != "nts" || !ok {
					m.warn(kp, directive(k, v), notNeeded+" without NTS")
					continue
				}
				n := getKey(e, "nts")
				if n.Kind != yaml.MappingNode {
					n = entry()
					setKey(e, "nts", n, "")
				}
				setKey(n, "ca", scalarNode(ca), "")
			case "poll-interval-limits":
				lim, _ := v.(map[string]any)
				for _, b := range []string{"min", "max"} {
					if lv, ok := lim[b]; ok {
						p, ok := tomlInt(lv, -6, 17)
						if !ok {
							m.warn(kp, directive(k, v), b+" is outside timed's -6 to 17: left out")
							continue
						}
						setKey(e, b+"poll", scalarNode(p), "")
					}
				}
			case "ntp-version", "initial-poll-interval", "ignore", "accepted-upstream-versions":
				m.note(kp, directive(k, v), notNeeded)
			default:
				m.warn(kp, directive(k, v), "unknown key of a source: left out")
			}
		}
		m.addNTP(head, desc, mode == "pool", e)
	case "sock", "pps":
		path, _ := tomlString(s["path"])
		desc = fmt.Sprintf("[[%s]] mode = %q, path = %q", table, mode, path)
		var e = entry("kind", mode, "path", path)
		if mode == "pps" {
			e = entry("kind", "pps", "device", path)
		}
		for _, k := range sortedKeys(t, table, occ, s) {
			kp := pos{name, t.line(table, occ, k)}
			switch k {
			case "mode", "path":
			case "precision":
				d, ok := tomlSeconds(s[k])
				if !ok {
					m.warn(kp, directive(k, s[k]), notUnderstood)
					continue
				}
				setKey(e, "precision", scalarNode(d), "")
			default:
				m.note(kp, directive(k, s[k]), noEquivalent)
			}
		}
		m.addRefclock(head, desc, e)
	default:
		m.warn(head, desc, notUnderstood+": timed takes sources of mode server, pool, nts, sock and pps")
	}
}

func (m *migration) ntpdrsServer(t *tomlTables, name, table string, occ int, s map[string]any) {
	for _, k := range sortedKeys(t, table, occ, s) {
		kp := pos{name, t.line(table, occ, k)}
		v := s[k]
		switch k {
		case "listen":
			ap, ok := m.tomlAddrPort(kp, k, v)
			if !ok {
				continue
			}
			list := append(listStrings(m.list("server.listen")), ap)
			m.set(kp, directive(k, v), "server.listen", dedupe(list))
		case "allowlist", "denylist", "allow-list", "deny-list":
			tab, _ := v.(map[string]any)
			filter, _ := tab["filter"].([]any)
			var nets []string
			for _, f := range filter {
				fs, _ := f.(string)
				n, ok := network(fs)
				if !ok {
					m.warn(kp, directive(k, v), "filter entry "+clean(fs)+": not a network: left out")
					continue
				}
				nets = append(nets, n)
			}
			key := "server.allow"
			if strings.HasPrefix(k, "deny") {
				key = "server.deny"
			}
			if len(nets) > 0 {
				m.set(kp, directive(k, v), key, dedupe(append(listStrings(m.list(key)), nets...)))
			}
			if action, _ := tomlString(tab["action"]); action == "deny" {
				m.set(kp, directive(k, v), "server.deny_response", "kiss")
			}
		case "rate-limiting-cache-size":
			if v == int64(0) {
				m.note(kp, directive(k, v), doesDifferent+": timed's client table always exists (server.client_table_size)")
				continue
			}
			n, ok := tomlInt(v, 64, 16777216)
			if !ok {
				m.warn(kp, directive(k, v), "not carried over: timed's client table holds 64 to 16777216 clients")
				continue
			}
			m.set(kp, directive(k, v), "server.client_table_size", n)
		case "rate-limiting-cutoff-ms", "rate-limiting-cutoff":
			ms, ok := tomlInt(v, 0, 1<<40)
			if !ok {
				m.warn(kp, directive(k, v), notUnderstood)
				continue
			}
			d := time.Duration(ms) * time.Millisecond
			if k == "rate-limiting-cutoff" {
				d = time.Duration(ms) * time.Second
			}
			m.set(kp, directive(k, v), "server.rate_limit.interval", d)
		case "require-nts":
			m.note(kp, directive(k, v), noEquivalent+": timed's server answers plain NTP requests beside NTS ones")
		default:
			m.warn(kp, directive(k, v), "unknown key of [[server]]: left out")
		}
	}
}

// listStrings returns the values of a list's scalar items.
func listStrings(ns []*yaml.Node) []string {
	var out []string
	for _, n := range ns {
		out = append(out, n.Value)
	}
	return out
}

func (m *migration) ntpdrsNTSKE(t *tomlTables, name, table string, occ int, s map[string]any) {
	head := pos{name, t.line(table, occ, "")}
	var listen, cert, key string
	for _, k := range sortedKeys(t, table, occ, s) {
		kp := pos{name, t.line(table, occ, k)}
		v := s[k]
		switch k {
		case "listen":
			ap, ok := m.tomlAddrPort(kp, k, v)
			if !ok {
				continue
			}
			listen = ap
		case "certificate-chain-path":
			cert, _ = tomlString(v)
		case "private-key-path":
			key, _ = tomlString(v)
		case "key-exchange-timeout-ms", "timeout-ms":
			ms, ok := tomlInt(v, 1, 1<<40)
			if !ok {
				m.warn(kp, directive(k, v), notUnderstood)
				continue
			}
			m.set(kp, directive(k, v), "server.nts.timeout", time.Duration(ms)*time.Millisecond)
		case "concurrent-connections":
			n, ok := tomlInt(v, 1, 65536)
			if !ok {
				m.warn(kp, directive(k, v), notUnderstood)
				continue
			}
			m.set(kp, directive(k, v), "server.nts.max_connections", n)
		case "ntp-port", "ntp-server", "accepted-versions", "accept-ntp-versions", "authorized-pool-server-certificates":
			m.note(kp, directive(k, v), noEquivalent+": the NTS-KE server names timed's own NTP server")
		default:
			m.warn(kp, directive(k, v), "unknown key of [[nts-ke-server]]: left out")
		}
	}
	desc := "[[" + table + "]]"
	if listen == "" || cert == "" || key == "" {
		m.warn(head, desc, "not carried over: it needs listen, certificate-chain-path and private-key-path")
		return
	}
	if !m.has("server.listen") {
		m.warn(head, desc, "not carried over: timed's NTS-KE server needs the NTP server ([[server]] listen)")
		return
	}
	ok := m.set(head, desc, "server.nts.certificate", cert)
	ok = m.set(head, desc, "server.nts.key", key) && ok
	if ok {
		list := listStrings(m.list("server.nts.listen"))
		m.set(head, desc, "server.nts.listen", dedupe(append(list, listen)))
	}
}

func (m *migration) ntpdrsSync(t *tomlTables, name string, s map[string]any) {
	for _, k := range sortedKeys(t, "synchronization", 0, s) {
		kp := pos{name, t.line("synchronization", 0, k)}
		v := s[k]
		switch k {
		case "minimum-agreeing-sources":
			n, ok := tomlInt(v, 1, 1000)
			if !ok {
				m.warn(kp, directive(k, v), notUnderstood+": 1 to 1000")
				continue
			}
			m.set(kp, directive(k, v), "engine.min_agreeing_sources", n)
		case "single-step-panic-threshold":
			d, ok := panicThreshold(v)
			if !ok {
				m.warn(kp, directive(k, v), notUnderstood)
				continue
			}
			m.set(kp, directive(k, v), "engine.panic_threshold", d)
		case "startup-step-panic-threshold":
			m.note(kp, directive(k, v), doesDifferent+": the first synchronization after start may step by any amount")
		case "accumulated-step-panic-threshold":
			m.note(kp, directive(k, v), noEquivalent+": engine.step_limit bounds how many updates may step")
		case "local-stratum":
			n, ok := tomlInt(v, 1, 16)
			if !ok {
				m.warn(kp, directive(k, v), notUnderstood)
				continue
			}
			if n == 16 {
				m.note(kp, directive(k, v), notNeeded+": timed serves stratum 16 while it has no source unless server.local.stratum is set")
				continue
			}
			m.set(kp, directive(k, v), "server.local.stratum", n)
		case "algorithm":
			m.note(kp, "[synchronization.algorithm]", doesDifferent+": the engine's filter and steering are not configured this way; engine.step_threshold and max_slew_rate_ppm are its settings")
		case "warn-on-jump", "reference-id":
			m.note(kp, directive(k, v), noEquivalent)
		default:
			m.warn(kp, directive(k, v), "unknown key of [synchronization]: left out")
		}
	}
}

// panicThreshold reads a number of seconds, "inf", or ntpd-rs's
// {forward, backward} pair (the smaller is used).
func panicThreshold(v any) (time.Duration, bool) {
	if tab, ok := v.(map[string]any); ok {
		var ds []time.Duration
		for _, k := range []string{"forward", "backward"} {
			if x, ok := tab[k]; ok {
				d, ok := tomlSeconds(x)
				if !ok {
					return 0, false
				}
				if d > 0 {
					ds = append(ds, d)
				}
			}
		}
		if len(ds) == 0 {
			return 0, true
		}
		return slices.Min(ds), true
	}
	return tomlSeconds(v)
}

func (m *migration) ntpdrsObservability(t *tomlTables, name string, s map[string]any) {
	for _, k := range sortedKeys(t, "observability", 0, s) {
		kp := pos{name, t.line("observability", 0, k)}
		v := s[k]
		switch k {
		case "log-level":
			l, _ := tomlString(v)
			switch l {
			case "trace":
				l = "debug"
			case "warning":
				l = "warn"
			}
			m.set(kp, directive(k, v), "log.level", l)
		case "metrics-exporter-listen":
			a, _ := tomlString(v)
			if _, _, err := net.SplitHostPort(a); err != nil {
				m.warn(kp, directive(k, v), notUnderstood)
				continue
			}
			m.set(kp, directive(k, v), "metrics.listen", a)
		case "observation-path", "observation-permissions":
			m.note(kp, directive(k, v), doesDifferent+": timectl reads timed's state through control.socket")
		case "ansi-colors":
			m.note(kp, directive(k, v), doesDifferent+": log.format auto colours a terminal only")
		default:
			m.warn(kp, directive(k, v), "unknown key of [observability]: left out")
		}
	}
}

func (m *migration) ntpdrsKeyset(t *tomlTables, name string, s map[string]any) {
	for _, k := range sortedKeys(t, "keyset", 0, s) {
		kp := pos{name, t.line("keyset", 0, k)}
		v := s[k]
		switch k {
		case "stale-key-count", "stale-keys":
			n, ok := tomlInt(v, 1, 999)
			if !ok {
				m.warn(kp, directive(k, v), notUnderstood)
				continue
			}
			m.set(kp, directive(k, v), "server.nts.keys_kept", n+1)
		case "key-rotation-interval":
			d, ok := tomlSeconds(v)
			if !ok {
				m.warn(kp, directive(k, v), notUnderstood)
				continue
			}
			m.set(kp, directive(k, v), "server.nts.key_rotation", d)
		case "key-storage-path":
			m.note(kp, directive(k, v), doesDifferent+": server.nts.key_file keeps the keys in timed's own format")
		default:
			m.warn(kp, directive(k, v), "unknown key of [keyset]: left out")
		}
	}
}

// tomlAddrPort reads the value v of key k as an IP address and port, and
// warns when it is not one.
func (m *migration) tomlAddrPort(at pos, k string, v any) (string, bool) {
	a, ok := tomlString(v)
	ap, err := netip.ParseAddrPort(a)
	if !ok || err != nil {
		m.warn(at, directive(k, v), notUnderstood+": not an IP address and port")
		return "", false
	}
	return ap.String(), true
}
