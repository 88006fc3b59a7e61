package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"regexp"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// decoder walks the yaml.Node tree of one file and collects every mistake.
// The schema is written as decode functions (sections.go) built from the
// helpers here, so each mistake is reported with the node it is about.
type decoder struct {
	file    string
	errs    []error
	dropped int // mistakes beyond maxErrors
}

// maxErrors is how many mistakes are reported one by one; the rest are
// counted.
const maxErrors = 50

func (d *decoder) err() error {
	if d.dropped > 0 {
		d.errs = append(d.errs, &Error{File: d.file, Msg: fmt.Sprintf("%d more mistakes not shown", d.dropped)})
		d.dropped = 0
	}
	return errors.Join(d.errs...)
}

// errorf records a mistake at node n (its line and column) under key path.
func (d *decoder) errorf(n *yaml.Node, path, format string, args ...any) {
	if len(d.errs) >= maxErrors {
		d.dropped++
		return
	}
	e := &Error{File: d.file, Path: path, Msg: fmt.Sprintf(format, args...)}
	if n != nil {
		e.Line, e.Column = n.Line, n.Column
	}
	d.errs = append(d.errs, e)
}

// field is one key of a mapping and how its value is decoded.
type field struct {
	key    string
	decode func(d *decoder, n *yaml.Node, path string)
}

// joinPath makes the key path of key inside path. A key that is not a
// plain name is quoted, so a message never carries raw control characters.
func joinPath(path, key string) string {
	for _, r := range key {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-') {
			key = quote(key)
			break
		}
	}
	if path == "" {
		return key
	}
	return path + "." + key
}

// resolve follows aliases (*name) to the node they stand for. It never
// returns nil.
func resolve(n *yaml.Node) *yaml.Node {
	for i := 0; n != nil && n.Kind == yaml.AliasNode && i < 100; i++ {
		n = n.Alias
	}
	if n == nil {
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!null"}
	}
	return n
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

var yamlLineRE = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// document parses data as a single YAML document and returns its root node,
// or nil when the file is empty or there is nothing to decode.
func (d *decoder) document(data []byte) (root *yaml.Node) {
	defer func() {
		// yaml.v3 has panicked on malformed input in the past; a
		// config file must never crash the daemon.
		if r := recover(); r != nil {
			d.errorf(nil, "", "invalid YAML: %v", r)
			root = nil
		}
	}()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if err != io.EOF {
			d.syntaxError(data, err)
		}
		return nil
	}
	var next yaml.Node
	switch err := dec.Decode(&next); {
	case err == nil:
		d.errorf(&next, "", "a second YAML document starts here; the file must hold exactly one (remove the \"---\" line)")
	case err != io.EOF:
		d.syntaxError(data, err)
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) == 0 {
		return nil
	}
	root = resolve(doc.Content[0])
	if isNull(root) {
		return nil
	}
	if root.Kind != yaml.MappingNode {
		d.errorf(root, "", "the file must be a mapping of sections (%s), not %s", keyList(nil), describe(root))
		return nil
	}
	return root
}

// syntaxError records a YAML syntax error of data.
//
// yaml.v3 names no column, and the line it names is where the enclosing
// block starts (counted from 0 for some errors, from 1 for others), or none
// at all. The mistake is at or after that line, so the line reported is the
// first from there on at which the file, cut after that line, fails with the
// same problem.
func (d *decoder) syntaxError(data []byte, err error) {
	msg := err.Error()
	e := &Error{File: d.file}
	from := 1
	if m := yamlLineRE.FindStringSubmatch(msg); m != nil {
		from, _ = strconv.Atoi(m[1])
		e.Line = max(from, 1)
		msg = m[2]
	} else {
		msg = strings.TrimPrefix(msg, "yaml: ")
	}
	if line := failingLine(data, from, msg); line > 0 {
		e.Line = line
	}
	e.Msg = "invalid YAML: " + msg
	d.errs = append(d.errs, e)
}

// failingLine returns the first line n >= from such that the first n lines
// of data fail to parse with the problem msg, or 0. It gives up after a few
// hundred lines or megabytes, to bound the work on large input.
func failingLine(data []byte, from int, msg string) int {
	budget := 4 << 20
	from = max(from, 1)
	// end is the offset just after line n.
	end, n := 0, 0
	for end < len(data) && n < from-1 {
		if i := bytes.IndexByte(data[end:], '\n'); i >= 0 {
			end += i + 1
		} else {
			end = len(data)
		}
		n++
	}
	for tries := 0; end < len(data) && tries < 300; tries++ {
		if i := bytes.IndexByte(data[end:], '\n'); i >= 0 {
			end += i + 1
		} else {
			end = len(data)
		}
		n++
		if budget -= end; budget < 0 {
			break
		}
		if err := parseAll(data[:end]); err != nil && strings.HasSuffix(err.Error(), msg) {
			return n
		}
	}
	return 0
}

// parseAll parses every document of data and returns the first error.
func parseAll(data []byte) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%v", r)
		}
	}()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for {
		var n yaml.Node
		if err := dec.Decode(&n); err == io.EOF {
			return nil
		} else if err != nil {
			return err
		}
	}
}

// mapping decodes a mapping whose keys must be among fields. A null value
// (a key with nothing after it) is an empty mapping: every key keeps its
// default. It returns the key nodes of the keys that were given, by name, or
// nil if n is not a mapping.
func (d *decoder) mapping(n *yaml.Node, path string, fields []field) map[string]*yaml.Node {
	n = resolve(n)
	given := map[string]*yaml.Node{}
	if isNull(n) {
		return given
	}
	if n.Kind != yaml.MappingNode {
		d.errorf(n, path, "expected a mapping with the keys %s, got %s", keyList(fields), describe(n))
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := resolve(n.Content[i]), n.Content[i+1]
		if k.ShortTag() == "!!merge" {
			d.errorf(k, path, "merge keys (<<) are not supported; write the keys out")
			continue
		}
		if k.Kind != yaml.ScalarNode || k.ShortTag() != "!!str" {
			d.errorf(k, path, "a key must be a name, not %s; the keys here are %s", describe(k), keyList(fields))
			continue
		}
		name := k.Value
		if first, dup := given[name]; dup {
			d.errorf(k, joinPath(path, name), "duplicate key (first given at line %d); give each key once", first.Line)
			continue
		}
		given[name] = k
		f := findField(fields, name)
		if f == nil {
			msg := "unknown key"
			if s := closest(name, fields); s != "" {
				msg += fmt.Sprintf("; did you mean %s?", s)
			}
			where := "in " + path
			if path == "" {
				where = "at the top level"
			}
			d.errorf(k, joinPath(path, name), "%s (the keys allowed %s are %s)", msg, where, keyList(fields))
			continue
		}
		f.decode(d, v, joinPath(path, name))
	}
	return given
}

func findField(fields []field, name string) *field {
	for i := range fields {
		if fields[i].key == name {
			return &fields[i]
		}
	}
	return nil
}

func keyList(fields []field) string {
	if fields == nil {
		fields = topLevel(nil)
	}
	names := make([]string, len(fields))
	for i, f := range fields {
		names[i] = f.key
	}
	return strings.Join(names, ", ")
}

// closest returns the known key that name most likely misspells, or "".
func closest(name string, fields []field) string {
	norm := func(s string) string {
		return strings.NewReplacer("_", "", "-", "", " ", "").Replace(strings.ToLower(s))
	}
	best, bestDist := "", math.MaxInt
	for _, f := range fields {
		if norm(f.key) == norm(name) {
			return f.key
		}
		if dist := levenshtein(strings.ToLower(name), f.key); dist < bestDist {
			best, bestDist = f.key, dist
		}
	}
	limit := 1
	if len(name) >= 5 {
		limit = 2
	}
	if len(name) >= 10 {
		limit = 3
	}
	if bestDist <= limit {
		return best
	}
	return ""
}

func levenshtein(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return math.MaxInt // not a typo of any key; keeps the work bounded
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// describe names what a node is, for "expected X, got Y" messages.
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		switch n.ShortTag() {
		case "!!null":
			return "no value"
		case "!!str":
			return fmt.Sprintf("the string %s", quote(n.Value))
		case "!!int", "!!float":
			return "the number " + quote(n.Value)
		case "!!bool":
			return n.Value
		case "!!timestamp":
			return "the timestamp " + quote(n.Value)
		default:
			return fmt.Sprintf("a value tagged %s", n.Tag)
		}
	}
	return "an unexpected YAML node"
}

// quote quotes s for a message, shortened if it is long.
func quote(s string) string {
	const max = 64
	if len(s) > max {
		s = s[:max] + "..."
	}
	return strconv.Quote(s)
}

// list decodes a list, calling item for each element with its path
// (path[i]). A null value is an empty list.
func (d *decoder) list(n *yaml.Node, path, example string, item func(n *yaml.Node, path string)) {
	n = resolve(n)
	if isNull(n) {
		return
	}
	if n.Kind != yaml.SequenceNode {
		d.errorf(n, path, "expected a list (each entry on a line starting with \"- \", such as %s), got %s", example, describe(n))
		return
	}
	for i, v := range n.Content {
		item(v, fmt.Sprintf("%s[%d]", path, i))
	}
}

// scalar returns n if it is a scalar value of one of the given YAML tags;
// otherwise it records that want was expected (and hint, what to use) and
// returns nil.
func (d *decoder) scalar(n *yaml.Node, path, want, hint string, tags ...string) *yaml.Node {
	n = resolve(n)
	if n.Kind == yaml.ScalarNode {
		tag := n.ShortTag()
		for _, t := range tags {
			if tag == t {
				return n
			}
		}
	}
	if hint != "" {
		d.errorf(n, path, "expected %s, got %s; %s", want, describe(n), hint)
	} else {
		d.errorf(n, path, "expected %s, got %s", want, describe(n))
	}
	return nil
}

// str decodes a string; hint says what is allowed.
func (d *decoder) str(n *yaml.Node, path, hint string, dst *string) bool {
	if n = d.scalar(n, path, "a string", hint, "!!str"); n == nil {
		return false
	}
	*dst = n.Value
	return true
}

// boolean decodes true or false.
func (d *decoder) boolean(n *yaml.Node, path string, dst *bool) bool {
	if n = d.scalar(n, path, "true or false", "", "!!bool"); n == nil {
		return false
	}
	if err := n.Decode(dst); err != nil {
		d.errorf(n, path, "%s is not true or false", quote(n.Value))
		return false
	}
	return true
}

// integer decodes a whole number in lo..hi; hint says what is allowed.
func (d *decoder) integer(n *yaml.Node, path string, lo, hi int, hint string, dst *int) bool {
	if n = d.scalar(n, path, "a whole number", hint, "!!int"); n == nil {
		return false
	}
	var v int64
	if err := n.Decode(&v); err != nil || v < int64(lo) || v > int64(hi) {
		d.errorf(n, path, "%s is out of range; %s", n.Value, hint)
		return false
	}
	*dst = int(v)
	return true
}

// number decodes a finite number in lo..hi; hint says what is allowed.
func (d *decoder) number(n *yaml.Node, path string, lo, hi float64, hint string, dst *float64) bool {
	if n = d.scalar(n, path, "a number", hint, "!!int", "!!float"); n == nil {
		return false
	}
	var v float64
	if err := n.Decode(&v); err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
		d.errorf(n, path, "%s is not a finite number; %s", n.Value, hint)
		return false
	}
	if v < lo || v > hi {
		d.errorf(n, path, "%s is out of range; %s", n.Value, hint)
		return false
	}
	*dst = v
	return true
}

// duration decodes a Go duration string ("200ms", "1.5s", "1h") or a plain
// number of seconds. Negative values are refused unless allowNegative; hint
// says what is allowed.
func (d *decoder) duration(n *yaml.Node, path string, allowNegative bool, hint string, dst *time.Duration) bool {
	if n = d.scalar(n, path, "a duration", hint, "!!str", "!!int", "!!float"); n == nil {
		return false
	}
	var v time.Duration
	if n.ShortTag() == "!!str" {
		var err error
		if v, err = time.ParseDuration(strings.TrimSpace(n.Value)); err != nil {
			d.errorf(n, path, "%s is not a duration; %s", quote(n.Value), hint)
			return false
		}
	} else {
		var secs float64
		if err := n.Decode(&secs); err != nil || math.IsNaN(secs) || math.IsInf(secs, 0) {
			d.errorf(n, path, "%s is not a finite number of seconds; %s", n.Value, hint)
			return false
		}
		ns := math.Round(secs * 1e9)
		if ns >= math.MaxInt64 || ns <= math.MinInt64 {
			d.errorf(n, path, "%s seconds is too long (the limit is about 292 years); %s", n.Value, hint)
			return false
		}
		v = time.Duration(ns)
	}
	if v < 0 && !allowNegative {
		d.errorf(n, path, "%s is negative; %s", n.Value, hint)
		return false
	}
	*dst = v
	return true
}

// oneOf decodes a string that must be one of choices; what names the
// setting for the message ("clock driver").
func (d *decoder) oneOf(n *yaml.Node, path, what string, choices []string, dst *string) bool {
	allowed := strings.Join(choices, ", ")
	var s string
	if !d.str(n, path, "use one of "+allowed, &s) {
		return false
	}
	for _, c := range choices {
		if s == c {
			*dst = s
			return true
		}
	}
	d.errorf(resolve(n), path, "unknown %s %s; use one of %s", what, quote(s), allowed)
	return false
}
