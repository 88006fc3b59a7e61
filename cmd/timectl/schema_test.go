package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/timed-project/timed/control"
)

var updateSchema = flag.Bool("update", false, "rewrite docs/schema/*.json (make schema) and testdata/golden (make golden)")

// schemaDir is where the schemas are committed, from this package.
const schemaDir = "../../docs/schema"

// outputs are the JSON outputs of timectl: the schema file, the commands
// that print it, and a value of the type. Adding a command's reply type is
// one line here (then make schema).
var outputs = []struct {
	file     string
	commands string
	v        any
}{
	{"status.json", "status, sources, waitsync, watch (one per line)", control.StatusReply{}},
	{"serverstats.json", "serverstats", control.ServerStatsReply{}},
	{"clients.json", "clients", control.ClientsReply{}},
	{"ptp.json", "ptp", control.PTPReply{}},
	{"compare.json", "compare", compareReply{}},
	{"sourcestats.json", "sourcestats", control.SourceStatsReply{}},
	{"nts.json", "nts", control.NTSReply{}},
	{"burst.json", "burst", control.BurstReply{}},
	{"add.json", "add", control.AddReply{}},
}

// jsonSchema writes the JSON Schema (draft 2020-12) of v's type: every
// named struct once under $defs, fields by their json names, required
// unless omitempty. Objects admit more members: a protocol version may add
// fields.
func jsonSchema(v any, file, commands string) ([]byte, error) {
	defs := map[string]any{}
	t := reflect.TypeOf(v)
	root := map[string]any{
		"$schema":     "https://json-schema.org/draft/2020-12/schema",
		"$id":         "https://github.com/timed-project/timed/docs/schema/" + file,
		"title":       t.String(),
		"description": fmt.Sprintf("Output of timectl %s with -o json; control protocol version %d.", commands, control.Version),
		"version":     control.Version,
	}
	for k, v := range schemaOf(t, defs) {
		root[k] = v
	}
	root["$defs"] = defs
	b, err := json.MarshalIndent(root, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("schema %s: %w", file, err)
	}
	return append(b, '\n'), nil
}

func schemaOf(t reflect.Type, defs map[string]any) map[string]any {
	switch t.Kind() {
	case reflect.Pointer:
		return map[string]any{"anyOf": []any{schemaOf(t.Elem(), defs), map[string]any{"type": "null"}}}
	case reflect.Bool:
		return map[string]any{"type": "boolean"}
	case reflect.String:
		return map[string]any{"type": "string"}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return map[string]any{"type": "integer"}
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return map[string]any{"type": "integer", "minimum": 0}
	case reflect.Float32, reflect.Float64:
		return map[string]any{"type": "number"}
	case reflect.Slice, reflect.Array:
		return map[string]any{"type": []string{"array", "null"}, "items": schemaOf(t.Elem(), defs)}
	case reflect.Map:
		return map[string]any{"type": []string{"object", "null"}, "additionalProperties": schemaOf(t.Elem(), defs)}
	case reflect.Struct:
		name := t.Name()
		if name == "" {
			return structSchema(t, defs)
		}
		name = strings.ReplaceAll(t.String(), ".", "_")
		if _, ok := defs[name]; !ok {
			defs[name] = nil // reserve: recursive types
			defs[name] = structSchema(t, defs)
		}
		return map[string]any{"$ref": "#/$defs/" + name}
	}
	panic("schema: unsupported kind " + t.Kind().String() + " of " + t.String())
}

func structSchema(t reflect.Type, defs map[string]any) map[string]any {
	props := map[string]any{}
	required := []string{}
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, opts, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" {
			continue
		}
		if name == "" {
			name = f.Name
		}
		props[name] = schemaOf(f.Type, defs)
		if !strings.Contains(","+opts+",", ",omitempty,") {
			required = append(required, name)
		}
	}
	return map[string]any{"type": "object", "properties": props, "required": required}
}

// TestSchema regenerates docs/schema/*.json and fails when the committed
// files differ (with -update it rewrites them). It also checks that each
// type's example output has every required member.
func TestSchema(t *testing.T) {
	for _, o := range outputs {
		got, err := jsonSchema(o.v, o.file, o.commands)
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(schemaDir, o.file)
		if *updateSchema {
			if err := os.WriteFile(path, got, 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		want, err := os.ReadFile(path)
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s is not what the code writes (run make schema): %v", path, err)
		}
	}
}

// TestSchemaRequired checks the schema against real output: the members a
// schema requires of status are all in the JSON of a fabricated status.
func TestSchemaRequired(t *testing.T) {
	b, err := jsonSchema(control.StatusReply{}, "status.json", "status")
	if err != nil {
		t.Fatal(err)
	}
	var s struct {
		Required []string `json:"required"`
		Defs     map[string]struct {
			Required []string `json:"required"`
		} `json:"$defs"`
	}
	if err := json.Unmarshal(b, &s); err != nil {
		t.Fatal(err)
	}
	out, _ := json.Marshal(fabricated())
	var m map[string]json.RawMessage
	json.Unmarshal(out, &m)
	for _, k := range s.Required {
		if _, ok := m[k]; !ok {
			t.Errorf("required %q missing from %s", k, out)
		}
	}
	var engine map[string]json.RawMessage
	json.Unmarshal(m["engine"], &engine)
	for _, k := range s.Defs["sources_Status"].Required {
		if _, ok := engine[k]; !ok {
			t.Errorf("engine: required %q missing", k)
		}
	}
	if n := len(s.Defs["sources_Status"].Required); n < 10 {
		t.Errorf("sources.Status requires only %d members: %s", n, strconv.Quote(string(b)))
	}
}
