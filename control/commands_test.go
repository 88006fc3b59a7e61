package control

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
)

func (b *fakeBackend) SourceStats() SourceStatsReply {
	return SourceStatsReply{Sources: []SourceStats{{Name: "192.0.2.1:123", Kind: "ntp", Samples: 12, Window: 8, Span: 448,
		Valid: true, Offset: -1e-5, StdDev: 2e-6, Frequency: 1.5, FrequencyUncertainty: 0.01, MinDelay: 3e-4, Poll: 6}}}
}

func (b *fakeBackend) NTS() NTSReply {
	return NTSReply{Clients: []NTSClientStatus{{Name: "nts.example:123", KEServer: "nts.example:4460", KEState: "ok",
		AEAD: "AEAD_AES_SIV_CMAC_256", Cookies: 8, MaxCookies: 8, NTPServer: "nts.example:123"}}}
}

func (b *fakeBackend) Burst(source string) (BurstReply, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.bursts = append(b.bursts, source)
	if source == "missing:123" {
		return BurstReply{}, errors.New(`no NTP source "missing:123"`)
	}
	return BurstReply{Sources: []string{"192.0.2.1:123"}}, nil
}

func (b *fakeBackend) AddSource(a AddArgs) (AddReply, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.added = append(b.added, a)
	port := a.Port
	if port == 0 {
		port = 123
	}
	return AddReply{Name: fmt.Sprintf("%s:%d", a.Address, port)}, nil
}

func (b *fakeBackend) RemoveSource(source string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.removed = append(b.removed, source)
	return nil
}

// TestSourceChangeAuthorization runs the changing source commands as root,
// as the configured group and as anyone else: only the first two reach the
// backend.
func TestSourceChangeAuthorization(t *testing.T) {
	const group = 4242
	lines := map[string]string{
		CmdBurst:  `{"version":1,"command":"burst"}`,
		CmdAdd:    `{"version":1,"command":"add","args":{"type":"server","address":"127.0.0.1","port":11123,"iburst":true}}`,
		CmdRemove: `{"version":1,"command":"remove","args":{"source":"127.0.0.1:11123"}}`,
	}
	for _, tt := range []struct {
		who     string
		cred    *peerCred
		allowed bool
	}{
		{"root", &peerCred{UID: 0, GID: 0}, true},
		{"group", &peerCred{UID: 1000, GID: group}, true},
		{"other", &peerCred{UID: 1000, GID: 1000}, false},
		{"unknown", nil, false},
	} {
		for cmd, line := range lines {
			b := &fakeBackend{}
			s := NewServer(b, nil, group)
			resp := s.handle([]byte(line), tt.cred, nil)
			reached := len(b.added) + len(b.removed) + len(b.bursts)
			if resp.OK != tt.allowed || (reached == 1) != tt.allowed {
				t.Errorf("%s as %s: ok=%v error=%q, backend reached %d times; want allowed=%v", cmd, tt.who, resp.OK, resp.Error, reached, tt.allowed)
			}
			if !tt.allowed && !strings.Contains(resp.Error, "permission denied: "+cmd) {
				t.Errorf("%s as %s: error %q", cmd, tt.who, resp.Error)
			}
		}
	}
}

func TestSourceChangeBadArguments(t *testing.T) {
	for _, tt := range []struct{ line, want string }{
		{`{"version":1,"command":"add"}`, `add: type "": want "server" or "pool"`},
		{`{"version":1,"command":"add","args":{"type":"peer","address":"a"}}`, `type "peer"`},
		{`{"version":1,"command":"add","args":{"type":"server"}}`, "add: no address given"},
		{`{"version":1,"command":"add","args":{"type":"server","address":"a b"}}`, `character ' ' not allowed`},
		{`{"version":1,"command":"add","args":{"type":"server","address":"-x"}}`, `must not start with '-'`},
		{`{"version":1,"command":"add","args":{"type":"server","address":"host:123"}}`, "give the port apart"},
		{`{"version":1,"command":"add","args":{"type":"server","address":"[::1]"}}`, "without brackets"},
		{`{"version":1,"command":"add","args":{"type":"server","address":"a","port":70000}}`, "port 70000 out of range"},
		{`{"version":1,"command":"add","args":{"type":"server","address":"a","minpol":3}}`, `bad arguments: json: unknown field "minpol"`},
		{`{"version":1,"command":"add","args":{"type":"server","address":"a","port":"x"}}`, "add: bad arguments"},
		{`{"version":1,"command":"add","args":{"type":"server","address":"` + strings.Repeat("a", 300) + `"}}`, "at most 270"},
		{`{"version":1,"command":"remove"}`, "remove: no source given"},
		{`{"version":1,"command":"remove","args":{"source":"a\nb"}}`, "not allowed"},
		{`{"version":1,"command":"burst","args":{"source":"missing:123"}}`, `burst: no NTP source "missing:123"`},
		{`{"version":1,"command":"burst","args":{"source":7}}`, "burst: bad arguments"},
	} {
		b := &fakeBackend{}
		resp := NewServer(b, nil, -1).handle([]byte(tt.line), &peerCred{UID: 0}, nil)
		if resp.OK || !strings.Contains(resp.Error, tt.want) {
			t.Errorf("%s: ok=%v error %q, want %q", tt.line, resp.OK, resp.Error, tt.want)
		}
		if len(b.added)+len(b.removed) > 0 {
			t.Errorf("%s: reached the backend", tt.line)
		}
	}
}

// TestSourceCommandsRoundTrip runs the new commands through a client and a
// server on a socket (changing ones only as root).
func TestSourceCommandsRoundTrip(t *testing.T) {
	b := &fakeBackend{}
	ts := startServer(t, b, -1, nil)
	c, err := Dial(ts.path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	ss, err := c.SourceStats(ctx)
	if err != nil || len(ss.Sources) != 1 || ss.Sources[0].Window != 8 || ss.Sources[0].Span != 448 {
		t.Errorf("SourceStats: %+v %v", ss, err)
	}
	n, err := c.NTS(ctx)
	if err != nil || len(n.Clients) != 1 || n.Clients[0].Cookies != 8 || n.Server != nil {
		t.Errorf("NTS: %+v %v", n, err)
	}
	if os.Geteuid() != 0 {
		if _, err := c.Burst(ctx, ""); err == nil || !strings.Contains(err.Error(), "permission denied: burst") {
			t.Errorf("burst as uid %d: %v", os.Geteuid(), err)
		}
		return
	}
	minpoll := -2
	add, err := c.AddSource(ctx, AddArgs{Type: AddServer, Address: "127.0.0.1", Port: 11123, IBurst: true, MinPoll: &minpoll})
	if err != nil || add.Name != "127.0.0.1:11123" {
		t.Errorf("AddSource: %+v %v", add, err)
	}
	br, err := c.Burst(ctx, "")
	if err != nil || len(br.Sources) != 1 {
		t.Errorf("Burst: %+v %v", br, err)
	}
	if err := c.RemoveSource(ctx, "127.0.0.1:11123"); err != nil {
		t.Errorf("RemoveSource: %v", err)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.added) != 1 || b.added[0].MinPoll == nil || *b.added[0].MinPoll != -2 || !b.added[0].IBurst ||
		len(b.removed) != 1 || b.removed[0] != "127.0.0.1:11123" || len(b.bursts) != 1 || b.bursts[0] != "" {
		t.Errorf("backend saw added %+v removed %v bursts %q", b.added, b.removed, b.bursts)
	}
}
