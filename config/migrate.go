package config

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
	"unicode"

	"gopkg.in/yaml.v3"
)

// MigrateFormats are the configuration formats Migrate reads: chrony's
// chrony.conf, ntpsec's ntp.conf, ntpd-rs's ntp.toml and linuxptp's
// ptp4l.conf.
var MigrateFormats = []string{"chrony", "ntpsec", "ntpd-rs", "ptp4l"}

// MigrateOptions change how Migrate reads its input.
type MigrateOptions struct {
	// Interfaces are the network interfaces ptp4l was started with (its
	// -i options); ports are made for them as well as for the interface
	// sections of the file.
	Interfaces []string
	// FollowIncludes reads the files that chrony's include, confdir and
	// sourcedir and ntpsec's includefile name, from the file system. Without
	// it they are only noted in the output.
	FollowIncludes bool
}

// Migration is the result of Migrate.
type Migration struct {
	// YAML is the timed.yaml made from the input; every directive that was
	// not carried over is a comment in it naming its line and why.
	YAML []byte
	// Warnings are the lines that could not be understood or carried over
	// although they mean something (FILE:LINE: what and why).
	Warnings []string
}

// Limits on the input, so that no file makes Migrate run long or allocate
// without bound.
const (
	maxMigrateInput = 4 << 20
	maxIncludeDepth = 8
	maxIncludeFiles = 256
	maxMigrateNotes = 10000
	// maxMigrateEntries bounds the entries of one list (servers,
	// refclocks, ports) and the tables or sections of one kind read.
	maxMigrateEntries = 256
	// maxTOMLNesting bounds how deep arrays and tables nest in ntp.toml.
	maxTOMLNesting = 64
)

// Migrate turns the configuration file of another time daemon into a
// timed.yaml. from is one of MigrateFormats; name is the file's name, used
// in comments, warnings and errors. The result always passes Parse. A file
// that is not of the format at all is an error naming FILE:LINE.
func Migrate(from, name string, src []byte, opts MigrateOptions) (*Migration, error) {
	if len(src) > maxMigrateInput {
		return nil, fmt.Errorf("migrate: %s: %d bytes is too large for a configuration file (at most %d)", name, len(src), maxMigrateInput)
	}
	m := newMigration(from, name, opts)
	var err error
	switch from {
	case "chrony":
		err = m.chrony(name, src, 0)
	case "ntpsec":
		err = m.ntpsec(name, src, 0)
	case "ntpd-rs":
		err = m.ntpdrs(name, src)
	case "ptp4l":
		err = m.ptp4l(name, src)
	default:
		return nil, fmt.Errorf("migrate: unknown format %q; use one of %s", from, strings.Join(MigrateFormats, ", "))
	}
	if err != nil {
		return nil, err
	}
	out, err := m.render()
	if err != nil {
		return nil, err
	}
	if _, err := Parse(name+" (migrated)", out); err != nil {
		return nil, fmt.Errorf("migrate: %s: the configuration made from it is not valid (a bug in timectl migrate): %w", name, err)
	}
	return &Migration{YAML: out, Warnings: m.warnings}, nil
}

// migration collects the output document, the notes and the warnings.
type migration struct {
	from     string
	name     string
	opts     MigrateOptions
	root     *yaml.Node // the top-level mapping
	notes    []string
	warnings []string
	files    int // files read, the main one included
	// ntpKeys are the NTP servers and pools already present (hostKey and
	// port), so that a second line for the same one is noted instead of
	// making the file invalid.
	ntpKeys map[string]int
	// refKeys are the reference clocks present, by what they read and by
	// name.
	refKeys map[string]int
}

func newMigration(from, name string, opts MigrateOptions) *migration {
	return &migration{
		from: from, name: name, opts: opts,
		root:    &yaml.Node{Kind: yaml.MappingNode},
		files:   1,
		ntpKeys: map[string]int{},
		refKeys: map[string]int{},
	}
}

// pos names a line of an input file.
type pos struct {
	file string
	line int
}

func (p pos) String() string { return fmt.Sprintf("%s:%d", printable(p.file), p.line) }

// note records a directive that is not carried over, and why, as a comment
// of the output.
func (m *migration) note(at pos, directive, why string) {
	if len(m.notes) >= maxMigrateNotes {
		return
	}
	m.notes = append(m.notes, fmt.Sprintf("%s: %s: %s", at, clean(directive), printable(why)))
}

// warn is a note that is also a warning: the line could not be understood,
// or meant something timed cannot do as asked.
func (m *migration) warn(at pos, directive, why string) {
	m.note(at, directive, why)
	if len(m.warnings) < maxMigrateNotes {
		m.warnings = append(m.warnings, fmt.Sprintf("%s: %s: %s", at, clean(directive), printable(why)))
	}
}

// clean makes input text safe for a one-line comment: printable, and cut
// at 160 characters.
func clean(s string) string {
	s = printable(strings.TrimSpace(s))
	if r := []rune(s); len(r) > 160 {
		s = string(r[:157]) + "..."
	}
	return s
}

// printable replaces control characters and bytes that are not UTF-8
// with '?'.
func printable(s string) string {
	return strings.Map(func(r rune) rune {
		if r == unicode.ReplacementChar || !unicode.IsPrint(r) && r != ' ' {
			return '?'
		}
		return r
	}, s)
}

// Reasons a directive is not carried over; every note starts with one.
const (
	noEquivalent   = "no equivalent in timed"
	doesDifferent  = "timed does this differently"
	notNeeded      = "not needed"
	notUnderstood  = "not understood"
	unknownKeyword = "unknown directive"
)

// set puts value at the dotted key path (such as "engine.step_threshold")
// if timed accepts it there; otherwise the directive is noted with timed's
// objection. It reports whether the value was set.
func (m *migration) set(at pos, directive, path string, value any) bool {
	v := scalarNode(value)
	if problem := m.check(path, v, true); problem != "" {
		m.warn(at, directive, "not carried over: "+problem)
		return false
	}
	parent, key := m.parent(path)
	setKey(parent, key, v, fmt.Sprintf("%s: %s", at, clean(directive)))
	return true
}

// add appends item to the list at the dotted key path (such as
// "ntp.servers") if timed accepts it there; otherwise the directive is
// noted with timed's objection.
func (m *migration) add(at pos, directive, path string, item *yaml.Node) bool {
	if len(m.list(path)) >= maxMigrateEntries {
		m.warn(at, directive, fmt.Sprintf("not carried over: more than %d entries in %s", maxMigrateEntries, path))
		return false
	}
	if problem := m.check(path, &yaml.Node{Kind: yaml.SequenceNode, Content: []*yaml.Node{item}}, false); problem != "" {
		m.warn(at, directive, "not carried over: "+problem)
		return false
	}
	item.HeadComment = fmt.Sprintf("%s: %s", at, clean(directive))
	parent, key := m.parent(path)
	list := getKey(parent, key)
	if list == nil {
		list = &yaml.Node{Kind: yaml.SequenceNode}
		setKey(parent, key, list, "")
	}
	list.Content = append(list.Content, item)
	return true
}

// has reports whether the dotted key path is set.
func (m *migration) has(path string) bool {
	parent, key := m.parent(path)
	return getKey(parent, key) != nil
}

// list returns the list at the dotted key path (nil when there is none).
func (m *migration) list(path string) []*yaml.Node {
	parent, key := m.parent(path)
	if n := getKey(parent, key); n != nil && n.Kind == yaml.SequenceNode {
		return n.Content
	}
	return nil
}

// check parses a file holding only value at path and returns timed's
// objection, or "".
//
// A value set in a section is checked together with what the section holds
// already (server.nts needs server.listen, for example); a list entry is
// checked alone.
func (m *migration) check(path string, value *yaml.Node, withSection bool) string {
	doc := &yaml.Node{Kind: yaml.MappingNode}
	keys := strings.Split(path, ".")
	if withSection && len(keys) > 1 {
		if sec := getKey(m.root, keys[0]); sec != nil {
			setKey(doc, keys[0], copyNode(sec), "")
		}
	}
	cur := doc
	for _, k := range keys[:len(keys)-1] {
		next := getKey(cur, k)
		if next == nil {
			next = &yaml.Node{Kind: yaml.MappingNode}
			setKey(cur, k, next, "")
		}
		cur = next
	}
	setKey(cur, keys[len(keys)-1], value, "")
	out, err := yaml.Marshal(doc)
	if err != nil {
		return err.Error()
	}
	_, err = Parse("check", out)
	if err == nil {
		return ""
	}
	var msgs []string
	for _, e := range unjoin(err) {
		var ce *Error
		if errors.As(e, &ce) {
			msgs = append(msgs, strings.TrimPrefix(ce.Path+": "+ce.Msg, ": "))
		} else {
			msgs = append(msgs, e.Error())
		}
	}
	return "timed says " + strings.Join(msgs, "; ")
}

// copyNode copies a node tree without its comments.
func copyNode(n *yaml.Node) *yaml.Node {
	c := &yaml.Node{Kind: n.Kind, Style: n.Style, Tag: n.Tag, Value: n.Value}
	for _, k := range n.Content {
		c.Content = append(c.Content, copyNode(k))
	}
	return c
}

func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

// parent returns the mapping that holds the last key of a dotted path,
// making the sections on the way.
func (m *migration) parent(path string) (*yaml.Node, string) {
	keys := strings.Split(path, ".")
	cur := m.root
	for _, k := range keys[:len(keys)-1] {
		next := getKey(cur, k)
		if next == nil {
			next = &yaml.Node{Kind: yaml.MappingNode}
			setKey(cur, k, next, "")
		}
		cur = next
	}
	return cur, keys[len(keys)-1]
}

func getKey(n *yaml.Node, key string) *yaml.Node {
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i+1]
		}
	}
	return nil
}

// setKey sets key in mapping n, replacing an earlier value, with comment
// above the key.
func setKey(n *yaml.Node, key string, v *yaml.Node, comment string) {
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			n.Content[i].HeadComment = comment
			n.Content[i+1] = v
			return
		}
	}
	n.Content = append(n.Content, &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: key, HeadComment: comment}, v)
}

// scalarNode makes the YAML node of a value: a *yaml.Node as it is, a
// duration as a Go duration string, a slice of strings as a list.
func scalarNode(v any) *yaml.Node {
	switch v := v.(type) {
	case *yaml.Node:
		return v
	case time.Duration:
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: v.String()}
	case []string:
		n := &yaml.Node{Kind: yaml.SequenceNode, Style: yaml.FlowStyle}
		for _, s := range v {
			n.Content = append(n.Content, scalarNode(s))
		}
		return n
	}
	n := &yaml.Node{}
	if err := n.Encode(v); err != nil {
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: fmt.Sprint(v)}
	}
	return n
}

// entry builds a mapping from key and value pairs, in order.
func entry(kv ...any) *yaml.Node {
	n := &yaml.Node{Kind: yaml.MappingNode}
	for i := 0; i+1 < len(kv); i += 2 {
		setKey(n, kv[i].(string), scalarNode(kv[i+1]), "")
	}
	return n
}

// render writes the document: a header, the notes, then the settings.
func (m *migration) render() ([]byte, error) {
	var head strings.Builder
	fmt.Fprintf(&head, "timed.yaml made by `timectl migrate --from %s` from %s.\n", m.from, clean(m.name))
	head.WriteString("Check it with `timectl validate FILE`; docs/MIGRATION.md says what maps to what.\n")
	head.WriteString("Each setting below names the line it came from.")
	if len(m.notes) > 0 {
		head.WriteString("\n\nNot carried over, or carried over differently (FILE:LINE: directive: why):")
		for _, n := range m.notes {
			head.WriteString("\n  " + n)
		}
	}
	m.sortSections()
	doc := &yaml.Node{Kind: yaml.DocumentNode, HeadComment: head.String(), Content: []*yaml.Node{m.root}}
	if len(m.root.Content) == 0 {
		// An empty mapping would be written as {}; an empty file means
		// the same and reads better.
		return []byte(commentBlock(head.String()) + "\n# Nothing to set: timed's defaults and no time sources.\n"), nil
	}
	var b bytes.Buffer
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(doc); err != nil {
		return nil, fmt.Errorf("migrate: %s: writing YAML: %w", m.name, err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("migrate: %s: writing YAML: %w", m.name, err)
	}
	return b.Bytes(), nil
}

// sectionOrder is the order of the top-level keys in the output, as in
// default.yaml.
var sectionOrder = []string{"clock", "drift_file", "engine", "ntp", "server", "ptp", "gptp", "csptp", "refclocks", "control", "metrics", "log"}

func (m *migration) sortSections() {
	type pair struct{ k, v *yaml.Node }
	var pairs []pair
	for i := 0; i+1 < len(m.root.Content); i += 2 {
		pairs = append(pairs, pair{m.root.Content[i], m.root.Content[i+1]})
	}
	slices.SortStableFunc(pairs, func(a, b pair) int {
		return slices.Index(sectionOrder, a.k.Value) - slices.Index(sectionOrder, b.k.Value)
	})
	m.root.Content = m.root.Content[:0]
	for _, p := range pairs {
		m.root.Content = append(m.root.Content, p.k, p.v)
	}
}

func commentBlock(s string) string {
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		lines[i] = strings.TrimRight("# "+l, " ")
	}
	return strings.Join(lines, "\n")
}

// clampedInt reads val, the value of option opt, as a whole number; one
// outside lo to hi is clamped, with a note. A value that is no number is
// warned about and not carried over.
func (m *migration) clampedInt(at pos, directive, opt, val string, lo, hi int) (int, bool) {
	v, ok := whole(val, -1<<31, 1<<31-1)
	if !ok {
		m.warn(at, directive, notUnderstood+": "+opt+" "+clean(val))
		return 0, false
	}
	if c := min(max(v, lo), hi); c != v {
		m.note(at, directive, fmt.Sprintf("%s %d is outside timed's %d to %d: %d is used", opt, v, lo, hi, c))
		v = c
	}
	return v, true
}

// setNTS sets the nts key of the source entry e: true, or the map nts when
// it has settings.
func setNTS(e, nts *yaml.Node) {
	if len(nts.Content) == 0 {
		setKey(e, "nts", scalarNode(true), "")
	} else {
		setKey(e, "nts", nts, "")
	}
}

// addNTPSource adds the NTP source e of a server, pool or peer directive
// dir (chrony's and ntpsec's); a peer becomes a server, with a note.
func (m *migration) addNTPSource(at pos, directive, dir string, e *yaml.Node) {
	if dir == "peer" {
		m.note(at, directive, doesDifferent+": symmetric mode is not supported; timed is a client of the peer (carried over as a server)")
	}
	m.addNTP(at, directive, dir == "pool", e)
}

// addNTP adds an NTP server or pool unless the same address and port is
// there already.
func (m *migration) addNTP(at pos, directive string, pool bool, item *yaml.Node) {
	addr := getKey(item, "address").Value
	port := DefaultNTPPort
	if p := getKey(item, "port"); p != nil {
		fmt.Sscan(p.Value, &port)
	}
	key := fmt.Sprintf("%s|%d", hostKey(addr), port)
	if line, ok := m.ntpKeys[key]; ok {
		m.warn(at, directive, fmt.Sprintf("not carried over: the same source as line %d (timed lists each address and port once)", line))
		return
	}
	path := "ntp.servers"
	if pool {
		path = "ntp.pools"
	}
	if m.add(at, directive, path, item) {
		m.ntpKeys[key] = at.line
	}
}

// Parsing of the values of directives.

// seconds reads a number of seconds as a duration, refusing what no
// duration holds.
func seconds(s string) (time.Duration, bool) {
	var f float64
	if _, err := fmt.Sscan(s, &f); err != nil || math.IsNaN(f) || math.Abs(f) > 1e9 {
		return 0, false
	}
	if strings.TrimLeft(s, "+-0123456789.eE") != "" {
		return 0, false
	}
	return time.Duration(f * float64(time.Second)), true
}

// number reads a finite number.
func number(s string) (float64, bool) {
	var f float64
	if _, err := fmt.Sscan(s, &f); err != nil || math.IsNaN(f) || math.IsInf(f, 0) || strings.TrimLeft(s, "+-0123456789.eE") != "" {
		return 0, false
	}
	return f, true
}

// whole reads a whole number in lo..hi (decimal, or hexadecimal with 0x).
func whole(s string, lo, hi int) (int, bool) {
	var v int64
	var err error
	if strings.HasPrefix(strings.ToLower(s), "0x") {
		_, err = fmt.Sscanf(s[2:], "%x", &v)
		if strings.Trim(s[2:], "0123456789abcdefABCDEF") != "" {
			return 0, false
		}
	} else {
		_, err = fmt.Sscan(s, &v)
		if strings.TrimLeft(s, "+-0123456789") != "" {
			return 0, false
		}
	}
	if err != nil || v < int64(lo) || v > int64(hi) {
		return 0, false
	}
	return int(v), true
}

// network reads an address or a network, as allow and deny take them.
func network(s string) (string, bool) {
	if p, err := netip.ParsePrefix(s); err == nil && p.Addr().Zone() == "" {
		return p.Masked().String(), true
	}
	if a, err := netip.ParseAddr(s); err == nil && a.Zone() == "" {
		return a.String(), true
	}
	return "", false
}

// listenAddrs are the addresses to serve on: the given ones, or every
// address of both families.
func listenAddrs(addrs []netip.Addr, port int) []string {
	if len(addrs) == 0 {
		addrs = []netip.Addr{netip.IPv4Unspecified(), netip.IPv6Unspecified()}
	}
	var out []string
	for _, a := range addrs {
		s := netip.AddrPortFrom(a, uint16(port)).String()
		if !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out
}

// fields splits a configuration line into words, dropping a comment that
// starts with '#'.
func fields(line string) []string {
	if i := strings.IndexByte(line, '#'); i >= 0 {
		line = line[:i]
	}
	return strings.Fields(line)
}

// lines splits src into lines, numbered from 1.
func lines(src []byte) []string {
	return strings.Split(strings.ReplaceAll(string(src), "\r\n", "\n"), "\n")
}

// include reads the files a directive names (a glob pattern, relative to
// the directory of the including file) when FollowIncludes is set, and
// notes the directive otherwise. read is called with each file.
func (m *migration) include(at pos, directive, pattern string, depth int, read func(name string, src []byte) error) error {
	if !m.opts.FollowIncludes {
		m.note(at, directive, "not followed: run timectl migrate with --follow-includes to read the files it names, or migrate them one by one")
		return nil
	}
	if depth >= maxIncludeDepth {
		m.warn(at, directive, fmt.Sprintf("not followed: includes nested more than %d deep", maxIncludeDepth))
		return nil
	}
	if !filepath.IsAbs(pattern) {
		pattern = filepath.Join(filepath.Dir(at.file), pattern)
	}
	names, err := filepath.Glob(pattern)
	if err != nil {
		m.warn(at, directive, "not followed: "+err.Error())
		return nil
	}
	if len(names) == 0 {
		m.note(at, directive, "followed: no file matches "+pattern)
		return nil
	}
	for _, name := range names {
		if m.files >= maxIncludeFiles {
			m.warn(at, directive, fmt.Sprintf("not followed further: more than %d files", maxIncludeFiles))
			return nil
		}
		m.files++
		src, err := os.ReadFile(name)
		if err != nil {
			m.warn(at, directive, "not followed: "+err.Error())
			continue
		}
		if len(src) > maxMigrateInput {
			m.warn(at, directive, fmt.Sprintf("not followed: %s is larger than %d bytes", name, maxMigrateInput))
			continue
		}
		if err := read(name, src); err != nil {
			return err
		}
	}
	return nil
}

// notFormat is the error for a file that is not of the expected format.
func notFormat(at pos, what, line string) error {
	return fmt.Errorf("migrate: %s: this is not a %s file: %q is not one of its directives", at, what, clean(line))
}
