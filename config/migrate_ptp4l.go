package config

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// ptp4lOptions are the options ptp4l knows (linuxptp 3.1 and 4.x), each
// with why timed has no use for it when it is not carried over.
var ptp4lOptions = func() map[string]string {
	m := map[string]string{}
	set := func(why string, names ...string) {
		for _, n := range names {
			m[n] = why
		}
	}
	set(noEquivalent, "BMCA", "G.8275.defaultDS.localPriority", "G.8275.portDS.localPriority", "asCapable",
		"boundary_clock_jbod", "check_fup_sync", "clockIdentity", "dataset_comparison", "delay_filter",
		"delay_filter_length", "dscp_event", "dscp_general", "egressLatency", "ingressLatency", "follow_up_info",
		"gmCapable", "hwts_filter", "hybrid_e2e", "ignore_source_id", "ignore_transport_specific",
		"inhibit_announce", "inhibit_delay_req", "initial_delay", "manufacturerIdentity", "maxStepsRemoved",
		"message_tag", "min_neighbor_prop_delay", "msg_interval_request", "net_sync_monitor", "ntpshm_segment",
		"p2p_dst_mac", "path_trace_enabled", "productDescription", "ptp_dst_mac", "revisionData",
		"slave_event_monitor", "socket_priority", "tc_spanning_tree", "transportSpecific", "tsproc_mode",
		"udp6_scope", "udp_ttl", "userDescription", "utc_offset", "write_phase_mode", "phc_index",
		"refclock_sock_address", "spp", "active_key_id", "sa_file", "allowedLostResponses", "power_profile.version",
		"power_profile.2011.grandmasterID", "power_profile.2011.grandmasterTimeInaccuracy",
		"power_profile.2011.networkTimeInaccuracy", "power_profile.2017.totalTimeInaccuracy",
		"neighborPropDelayThresh", "operLogSyncInterval", "operLogPdelayReqInterval", "syncReceiptTimeout",
		"logMinPdelayReqInterval", "unicast_req_duration", "inhibit_multicast_service", "domainNumber",
		"priority1", "priority2", "clock_type", "step_window")
	set(doesDifferent+": the clock quality announced is what the engine measures (class 6 synchronized, 7 in holdover, 248 before)",
		"clockClass", "clockAccuracy", "offsetScaledLogVariance", "timeSource")
	set(doesDifferent+": timed always sends two-step Sync with Follow_Up", "twoStepFlag", "assume_two_step")
	set(doesDifferent+": clock.driver none measures without steering", "free_running")
	set(doesDifferent+": the engine steers the clock (engine.step_threshold, max_slew_rate_ppm, max_frequency_ppm)",
		"freq_est_interval", "pi_proportional_const", "pi_integral_const", "pi_proportional_scale",
		"pi_proportional_exponent", "pi_proportional_norm_max", "pi_integral_scale", "pi_integral_exponent",
		"pi_integral_norm_max", "first_step_threshold", "clock_servo", "sanity_freq_limit",
		"servo_num_offset_values", "servo_offset_threshold", "step_threshold", "max_frequency")
	set(doesDifferent+": timed logs through its own log (log.level, log.format)",
		"logging_level", "use_syslog", "verbose", "summary_interval")
	set(doesDifferent+": timectl ptp shows the ports' state through control.socket",
		"uds_address", "uds_ro_address", "uds_file_mode", "uds_ro_file_mode")
	set(notNeeded+": timed waits for the kernel's transmit timestamp itself", "tx_timestamp_timeout")
	set(doesDifferent+": the clock driver applies leap seconds from the leap-seconds list", "kernel_leap")
	set(notNeeded+": a faulty port is retried by timed", "fault_reset_interval", "fault_badpeernet_interval")
	set("", "network_transport", "delay_mechanism", "time_stamping", "slaveOnly", "clientOnly", "masterOnly",
		"serverOnly", "logAnnounceInterval", "logSyncInterval", "logMinDelayReqInterval",
		"announceReceiptTimeout", "delayAsymmetry", "unicast_master_table", "unicast_listen")
	return m
}()

// ptp4lOpt is one option line.
type ptp4lOpt struct {
	value string
	at    pos
	used  bool
}

type ptp4lSection struct {
	name string
	at   pos
	opts map[string]*ptp4lOpt
	keys []string // in order
}

type ptp4lTable struct {
	at      pos
	id      int
	entries []ptp4lOpt // UDPv4/UDPv6/L2 lines, value = "KIND ADDR"
}

func (m *migration) ptp4l(name string, src []byte) error {
	var global *ptp4lSection
	var ifaces []*ptp4lSection
	var tables []*ptp4lTable
	var cur *ptp4lSection
	var curTable *ptp4lTable
	for i, raw := range lines(src) {
		at := pos{name, i + 1}
		line := strings.TrimSpace(raw)
		if line == "" || line[0] == '#' || line[0] == ';' {
			continue
		}
		if line[0] == '[' {
			end := strings.IndexByte(line, ']')
			sec := ""
			if end > 0 {
				sec = strings.TrimSpace(line[1:end])
			}
			if sec == "" || strings.TrimSpace(line[end+1:]) != "" {
				return fmt.Errorf("migrate: %s: this is not a ptp4l configuration: %q is not a section header", at, clean(line))
			}
			cur, curTable = nil, nil
			switch sec {
			case "global":
				if global == nil {
					global = &ptp4lSection{name: sec, at: at, opts: map[string]*ptp4lOpt{}}
				}
				cur = global
			case "unicast_master_table":
				curTable = &ptp4lTable{at: at}
				if len(tables) >= maxMigrateEntries {
					m.warn(at, line, fmt.Sprintf("not carried over: more than %d unicast master tables", maxMigrateEntries))
					continue // read and dropped
				}
				tables = append(tables, curTable)
			default:
				idx := slices.IndexFunc(ifaces, func(s *ptp4lSection) bool { return s.name == sec })
				if idx < 0 && len(ifaces) >= maxMigrateEntries {
					m.warn(at, line, fmt.Sprintf("not carried over: more than %d interface sections", maxMigrateEntries))
					cur = &ptp4lSection{name: sec, opts: map[string]*ptp4lOpt{}} // read and dropped
					continue
				}
				if idx < 0 {
					ifaces = append(ifaces, &ptp4lSection{name: sec, at: at, opts: map[string]*ptp4lOpt{}})
					idx = len(ifaces) - 1
				}
				cur = ifaces[idx]
			}
			continue
		}
		f := strings.Fields(line)
		line = strings.Join(f, " ")
		if cur == nil && curTable == nil {
			return notFormat(at, "ptp4l configuration", line+" (outside any [section])")
		}
		key, value := f[0], strings.Join(f[1:], " ")
		if curTable != nil {
			switch key {
			case "table_id":
				id, ok := whole(value, 1, 1<<20)
				if !ok {
					m.warn(at, line, notUnderstood+": table_id takes a positive number")
					continue
				}
				curTable.id = id
			case "UDPv4", "UDPv6", "L2":
				curTable.entries = append(curTable.entries, ptp4lOpt{value: key + " " + value, at: at})
			case "logQueryInterval", "peer_address":
				m.note(at, line, doesDifferent+": timed asks each master at the port's announce_interval")
			default:
				m.warn(at, line, unknownKeyword+" of a unicast_master_table")
			}
			continue
		}
		if _, ok := ptp4lOptions[key]; !ok {
			m.warn(at, line, "unknown ptp4l option")
			continue
		}
		if len(f) < 2 {
			m.warn(at, line, notUnderstood+": the option has no value")
			continue
		}
		if _, dup := cur.opts[key]; !dup {
			cur.keys = append(cur.keys, key)
		}
		cur.opts[key] = &ptp4lOpt{value: value, at: at}
	}
	if global == nil {
		global = &ptp4lSection{name: "global", opts: map[string]*ptp4lOpt{}}
	}
	m.ptp4lPorts(global, ifaces, tables)
	// Every option not carried over is noted.
	for _, s := range append([]*ptp4lSection{global}, ifaces...) {
		for _, k := range s.keys {
			o := s.opts[k]
			if o.used {
				continue
			}
			why := ptp4lOptions[k]
			if why == "" || why == noEquivalent {
				why = noEquivalent + " for this configuration"
			}
			m.note(o.at, k+" "+o.value, why)
		}
	}
	return nil
}

// ptp4lPorts makes the ports: one per interface named on the command line
// or by a section.
func (m *migration) ptp4lPorts(global *ptp4lSection, ifaces []*ptp4lSection, tables []*ptp4lTable) {
	names := slices.Clone(m.opts.Interfaces)
	for _, s := range ifaces {
		if !slices.Contains(names, s.name) {
			names = append(names, s.name)
		}
	}
	// get returns an option of the interface, else of [global].
	get := func(iface, key string) *ptp4lOpt {
		for _, s := range ifaces {
			if s.name == iface {
				if o, ok := s.opts[key]; ok {
					return o
				}
			}
		}
		return global.opts[key]
	}
	val := func(iface, key string) string {
		if o := get(iface, key); o != nil {
			return o.value
		}
		return ""
	}
	ctype := strings.ToUpper(val("", "clock_type"))
	if ctype == "E2E_TC" || ctype == "P2P_TC" {
		o := get("", "clock_type")
		o.used = true
		m.warn(o.at, "clock_type "+o.value, noEquivalent+": timed is an ordinary clock (a slave, master or grandmaster on each port), not a transparent clock, so no ports are made; keep linuxptp for this switch or use timed on the hosts behind it")
		return
	}
	if len(names) == 0 {
		at := global.at
		if at.file == "" {
			at = pos{m.name, 1}
		}
		m.warn(at, "no interface", "ptp4l takes its interfaces from the command line (-i): name them with --interface to make ports")
	}
	if o := global.opts["dataset_comparison"]; o != nil && strings.HasPrefix(o.value, "G.8275") {
		o.used = true
		m.warn(o.at, "dataset_comparison "+o.value, noEquivalent+": the telecom profiles' alternate BMCA is not supported; the ports use IEEE 1588's default BMCA")
	}
	gptpFile := false
	for _, iface := range names {
		at := pos{m.name, 1}
		if s := slices.IndexFunc(ifaces, func(s *ptp4lSection) bool { return s.name == iface }); s >= 0 {
			at = ifaces[s].at
		} else if global.at.file != "" {
			at = global.at
		}
		directive := "port " + iface
		use := func(key string) *ptp4lOpt {
			o := get(iface, key)
			if o != nil {
				o.used = true
			}
			return o
		}
		ts, _ := whole(val(iface, "transportSpecific"), 0, 15)
		if ts == 1 {
			gptpFile = true
			m.ptp4lGPTP(at, directive, iface, use, val)
			continue
		}
		m.ptp4lPTP(at, directive, iface, use, val, tables)
	}
	if gptpFile {
		return
	}
	for _, k := range []struct{ opt, key string }{{"domainNumber", "ptp.domain"}, {"priority1", "ptp.priority1"}, {"priority2", "ptp.priority2"}} {
		if o := global.opts[k.opt]; o != nil && len(names) > 0 {
			v, ok := whole(o.value, 0, 255)
			if !ok {
				m.warn(o.at, k.opt+" "+o.value, notUnderstood)
				continue
			}
			o.used = m.set(o.at, k.opt+" "+o.value, k.key, v)
		}
	}
}

// portField sets key of a port entry to v if the entry stays valid with
// it; otherwise it notes why not.
func (m *migration) portField(list string, item *yaml.Node, at pos, directive, key string, v any) {
	old := slices.Clone(item.Content)
	setKey(item, key, scalarNode(v), "")
	if problem := m.check(list, &yaml.Node{Kind: yaml.SequenceNode, Content: []*yaml.Node{item}}, false); problem != "" {
		item.Content = old
		m.warn(at, directive, "not carried over: "+problem)
	}
}

func (m *migration) ptp4lPTP(at pos, directive, iface string, use func(string) *ptp4lOpt, val func(string, string) string, tables []*ptp4lTable) {
	const list = "ptp.ports"
	e := entry("interface", iface)
	if m.check(list, &yaml.Node{Kind: yaml.SequenceNode, Content: []*yaml.Node{e}}, false) != "" {
		m.warn(at, directive, "not carried over: "+clean(iface)+" is not an interface name timed accepts")
		return
	}
	field := func(opt, key string, conv func(string) (any, bool)) {
		o := use(opt)
		if o == nil {
			return
		}
		v, ok := conv(o.value)
		if !ok {
			m.warn(o.at, opt+" "+o.value, notUnderstood)
			return
		}
		if v == nil {
			return
		}
		m.portField(list, e, o.at, opt+" "+o.value, key, v)
	}
	field("network_transport", "transport", func(s string) (any, bool) {
		v, ok := map[string]string{"UDPv4": "udp4", "UDPv6": "udp6", "L2": "l2"}[s]
		return v, ok
	})
	field("delay_mechanism", "delay_mechanism", func(s string) (any, bool) {
		switch s {
		case "E2E":
			return "e2e", true
		case "P2P":
			return "p2p", true
		case "Auto":
			m.note(use("delay_mechanism").at, "delay_mechanism Auto", doesDifferent+": the port uses e2e unless delay_mechanism says p2p")
			return nil, true
		}
		return nil, false
	})
	role := ""
	for _, o := range []string{"slaveOnly", "clientOnly"} {
		if p := use(o); p != nil && p.value == "1" {
			role = "slave_only"
		}
	}
	for _, o := range []string{"masterOnly", "serverOnly"} {
		if p := use(o); p != nil && p.value == "1" {
			role = "master_only"
		}
	}
	if role != "" {
		m.portField(list, e, at, directive, "role", role)
	}
	if get := use("time_stamping"); get == nil {
		m.note(at, directive, "time_stamping not given: ptp4l stamps in hardware unless started with -S; the port uses software timestamps: set timestamping: hardware where the NIC has a PTP hardware clock")
	}
	field("time_stamping", "timestamping", func(s string) (any, bool) {
		switch s {
		case "software":
			return "software", true
		case "hardware":
			return "hardware", true
		case "onestep", "p2p1step", "legacy":
			m.note(use("time_stamping").at, "time_stamping "+s, doesDifferent+": carried over as hardware timestamps with two-step Sync")
			return "hardware", true
		}
		return nil, false
	})
	interval := func(s string) (any, bool) { return whole(s, -128, 127) }
	field("logAnnounceInterval", "announce_interval", interval)
	field("logSyncInterval", "sync_interval", interval)
	field("logMinDelayReqInterval", "delay_req_interval", interval)
	field("announceReceiptTimeout", "announce_receipt_timeout", func(s string) (any, bool) { return whole(s, 0, 255) })
	field("delayAsymmetry", "delay_asymmetry", func(s string) (any, bool) {
		v, ok := whole(s, -1<<31, 1<<31-1)
		return time.Duration(v) * time.Nanosecond, ok
	})
	if o := use("unicast_listen"); o != nil && o.value == "1" {
		m.portField(list, e, o.at, "unicast_listen 1", "unicast_listen", true)
	}
	if o := use("unicast_master_table"); o != nil && o.value != "0" {
		id, _ := whole(o.value, 1, 1<<20)
		var masters []string
		for _, t := range tables {
			if t.id != id {
				continue
			}
			for _, en := range t.entries {
				kind, addr, _ := strings.Cut(en.value, " ")
				a, err := netip.ParseAddr(strings.TrimSpace(addr))
				if kind == "L2" || err != nil {
					m.warn(en.at, en.value, noEquivalent+": timed negotiates unicast over UDP with IP addresses only")
					continue
				}
				masters = append(masters, a.String())
			}
		}
		if len(masters) == 0 {
			m.warn(o.at, "unicast_master_table "+o.value, "not carried over: the table has no UDP masters")
		} else {
			m.portField(list, e, o.at, "unicast_master_table "+o.value, "unicast_masters", masters)
		}
	}
	m.add(at, directive, list, e)
}

func (m *migration) ptp4lGPTP(at pos, directive, iface string, use func(string) *ptp4lOpt, val func(string, string) string) {
	const list = "gptp.ports"
	automotive := strings.EqualFold(val(iface, "BMCA"), "noop") || val(iface, "inhibit_announce") == "1"
	profile := "gptp"
	if automotive {
		profile = "automotive"
	}
	for _, k := range []string{"transportSpecific", "gmCapable", "path_trace_enabled", "follow_up_info", "network_transport", "delay_mechanism", "ptp_dst_mac", "assume_two_step", "twoStepFlag"} {
		use(k)
	}
	if automotive {
		for _, k := range []string{"BMCA", "inhibit_announce", "asCapable", "inhibit_delay_req", "msg_interval_request", "ignore_source_id"} {
			use(k)
		}
	}
	role := ""
	for _, o := range []string{"slaveOnly", "clientOnly"} {
		if p := use(o); p != nil && p.value == "1" {
			role = "slave"
		}
	}
	for _, o := range []string{"masterOnly", "serverOnly"} {
		if p := use(o); p != nil && p.value == "1" {
			role = "master"
		}
	}
	e := entry("interface", iface, "profile", profile)
	if role != "" {
		setKey(e, "role", scalarNode(role), "")
	}
	if problem := m.check(list, &yaml.Node{Kind: yaml.SequenceNode, Content: []*yaml.Node{e}}, false); problem != "" {
		m.warn(at, directive, "not carried over: "+problem)
		return
	}
	intField := func(opt, key string, lo, hi int) {
		o := use(opt)
		if o == nil {
			return
		}
		v, ok := whole(o.value, lo, hi)
		if !ok {
			m.warn(o.at, opt+" "+o.value, notUnderstood)
			return
		}
		m.portField(list, e, o.at, opt+" "+o.value, key, v)
	}
	intField("priority1", "priority1", 0, 255)
	intField("priority2", "priority2", 0, 255)
	intField("logSyncInterval", "sync_interval", -128, 127)
	intField("logMinPdelayReqInterval", "pdelay_interval", -128, 127)
	intField("syncReceiptTimeout", "sync_receipt_timeout", 1, 255)
	if automotive {
		intField("operLogSyncInterval", "oper_sync_interval", -128, 127)
		intField("operLogPdelayReqInterval", "oper_pdelay_interval", -128, 127)
	} else {
		intField("logAnnounceInterval", "announce_interval", -128, 127)
		intField("announceReceiptTimeout", "announce_receipt_timeout", 0, 255)
		if o := use("neighborPropDelayThresh"); o != nil {
			v, ok := whole(o.value, 0, 1<<31-1)
			if !ok {
				m.warn(o.at, "neighborPropDelayThresh "+o.value, notUnderstood)
			} else {
				m.portField(list, e, o.at, "neighborPropDelayThresh "+o.value, "neighbor_prop_delay_thresh", time.Duration(v)*time.Nanosecond)
			}
		}
	}
	if o := use("time_stamping"); o != nil && o.value != "software" {
		m.warn(o.at, "time_stamping "+o.value, doesDifferent+": gPTP ports use software timestamps for now")
	}
	if o := use("domainNumber"); o != nil && o.value != "0" {
		m.warn(o.at, "domainNumber "+o.value, noEquivalent+": gPTP runs in domain 0")
	}
	m.add(at, directive, list, e)
}
