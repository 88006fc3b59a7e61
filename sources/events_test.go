package sources

import (
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

func TestLogEvents(t *testing.T) {
	core, logs := observer.New(zap.DebugLevel)
	e := NewEngine(DefaultConfig(), zap.New(core))
	for _, n := range []string{"a", "b"} {
		if err := e.AddSource(n, SourceOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	type want struct {
		msg    string
		fields map[string]any
	}
	for _, step := range []struct {
		name       string
		a, b       SourceState
		synced     bool
		vote, leap Leap
		want       []want
	}{
		{name: "start", a: StateInitial, b: StateInitial, leap: LeapUnknown},
		{name: "a selected", a: StateSelected, b: StateCandidate, synced: true,
			want: []want{{"clock follows a new source", map[string]any{"source": "a"}}}},
		{name: "noise: b combined", a: StateSelected, b: StateCombined, synced: true},
		{name: "b a falseticker", a: StateSelected, b: StateFalseticker, synced: true,
			want: []want{{"source not used", map[string]any{"source": "b", "state": "falseticker"}}}},
		{name: "b unreachable too", a: StateSelected, b: StateUnreachable, synced: true,
			want: []want{{"source not used", map[string]any{"source": "b", "state": "unreachable"}}}},
		{name: "b back, selected", a: StateCandidate, b: StateSelected, synced: true,
			want: []want{{"source usable again", map[string]any{"source": "b", "was": "unreachable"}},
				{"clock follows a new source", map[string]any{"source": "b", "previous": "a"}}}},
		{name: "leap announced", a: StateCandidate, b: StateSelected, synced: true, vote: LeapInsert,
			want: []want{{"the sources announce a leap second at the end of the month", map[string]any{"leap": "insert"}}}},
		{name: "leap passed to the clock", a: StateCandidate, b: StateSelected, synced: true, vote: LeapInsert, leap: LeapInsert,
			want: []want{{"leap second at the next UTC midnight: the clock will insert a second", nil}}},
		{name: "all lost", a: StateUnreachable, b: StateUnreachable,
			want: []want{{"source not used", map[string]any{"source": "a"}}, {"source not used", map[string]any{"source": "b"}},
				{"no source selected", map[string]any{"previous": "b"}},
				{"the sources no longer announce a leap second", nil},
				{"leap second done or withdrawn: the clock runs on without one", nil}}},
	} {
		e.srcs["a"].state, e.srcs["b"].state = step.a, step.b
		e.synchronized, e.leap = step.synced, step.vote
		e.logEvents(step.leap)
		got := logs.TakeAll()
		if len(got) != len(step.want) {
			t.Errorf("%s: %d lines, want %d: %v", step.name, len(got), len(step.want), got)
			continue
		}
		for i, w := range step.want {
			if got[i].Message != w.msg {
				t.Errorf("%s: line %d %q, want %q", step.name, i, got[i].Message, w.msg)
			}
			ctx := got[i].ContextMap()
			for k, v := range w.fields {
				if ctx[k] != v {
					t.Errorf("%s: %q field %s = %v, want %v", step.name, w.msg, k, ctx[k], v)
				}
			}
		}
	}
}
