package config

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/timed-project/timed/internal/testenv"
)

// migrated runs Migrate, parses its output back and checks what every
// result must hold: it is valid, and every warning is also a comment.
func migrated(t *testing.T, from, name, src string, opts MigrateOptions) (*Config, *Migration) {
	t.Helper()
	r, err := Migrate(from, name, []byte(src), opts)
	if err != nil {
		t.Fatalf("Migrate: %v", err)
	}
	c, err := Parse(name+".yaml", r.YAML)
	if err != nil {
		t.Fatalf("the migrated file does not parse: %v\n%s", err, r.YAML)
	}
	for _, w := range r.Warnings {
		if !strings.Contains(string(r.YAML), w) {
			t.Errorf("warning %q is not a comment of the output:\n%s", w, r.YAML)
		}
	}
	return c, r
}

func server(addr string, f func(*NTPServer)) NTPServer {
	s := defaultServer()
	s.Address = addr
	if f != nil {
		f(&s)
	}
	return s
}

func prefixes(ss ...string) []netip.Prefix {
	var out []netip.Prefix
	for _, s := range ss {
		if !strings.Contains(s, "/") {
			a := netip.MustParseAddr(s)
			out = append(out, netip.PrefixFrom(a, a.BitLen()))
			continue
		}
		out = append(out, netip.MustParsePrefix(s))
	}
	return out
}

func addrPorts(ss ...string) []netip.AddrPort {
	var out []netip.AddrPort
	for _, s := range ss {
		out = append(out, netip.MustParseAddrPort(s))
	}
	return out
}

// migrateCase is one input and what the configuration made from it must
// hold.
type migrateCase struct {
	name string
	src  string
	opts MigrateOptions
	// want checks the parsed result.
	want func(t *testing.T, c *Config)
	// warn and note are texts that must be among the warnings and in the
	// comments of the output.
	warn, note []string
}

func runMigrateCases(t *testing.T, from string, cases []migrateCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, r := migrated(t, from, "in.conf", tc.src, tc.opts)
			if tc.want != nil {
				tc.want(t, c)
			}
			for _, w := range tc.warn {
				if !strings.Contains(strings.Join(r.Warnings, "\n"), w) {
					t.Errorf("no warning containing %q; warnings: %q", w, r.Warnings)
				}
			}
			for _, n := range tc.note {
				if !strings.Contains(string(r.YAML), n) {
					t.Errorf("no comment containing %q:\n%s", n, r.YAML)
				}
			}
			if t.Failed() {
				t.Logf("output:\n%s", r.YAML)
			}
		})
	}
}

func equal[T any](t *testing.T, what string, got, want T) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Errorf("%s = %+v, want %+v", what, got, want)
	}
}

func TestMigrateChrony(t *testing.T) {
	runMigrateCases(t, "chrony", []migrateCase{
		{name: "server options", src: "server a.example iburst minpoll -2 maxpoll 3 prefer xleave port 1123 trust require\n",
			want: func(t *testing.T, c *Config) {
				equal(t, "servers", c.NTP.Servers, []NTPServer{server("a.example", func(s *NTPServer) {
					s.IBurst, s.MinPoll, s.MaxPoll, s.Prefer, s.XLeave, s.Port, s.Trust, s.Require = true, -2, 3, true, true, 1123, true, true
				})})
			}},
		{name: "noselect, options with no equivalent", src: "server 192.0.2.1 noselect key 3 maxdelay 0.1 offline\n",
			want: func(t *testing.T, c *Config) {
				equal(t, "servers", c.NTP.Servers, []NTPServer{server("192.0.2.1", func(s *NTPServer) { s.NoSelect = true })})
			},
			note: []string{"in.conf:1: server 192.0.2.1 noselect key 3 maxdelay 0.1 offline: key: no equivalent", "maxdelay:", "offline: not needed"}},
		{name: "pool", src: "pool pool.example iburst maxsources 6 maxpoll 12 prefer\n",
			want: func(t *testing.T, c *Config) {
				p := defaultPool()
				p.Address, p.IBurst, p.MaxSources, p.MaxPoll = "pool.example", true, 6, 12
				equal(t, "pools", c.NTP.Pools, []NTPPool{p})
			},
			note: []string{"prefer: no equivalent in timed for pools"}},
		{name: "poll out of range is clamped", src: "server a.example minpoll -10 maxpoll 24\n",
			want: func(t *testing.T, c *Config) {
				equal(t, "poll", [2]int{c.NTP.Servers[0].MinPoll, c.NTP.Servers[0].MaxPoll}, [2]int{-6, 17})
			},
			note: []string{"minpoll -10 is outside timed's -6 to 17: -6 is used"}},
		{name: "nts with trusted certs given later", src: "server nts.example nts ntsport 14460\nntstrustedcerts /etc/ca.pem\nnocerttimecheck 1\n",
			want: func(t *testing.T, c *Config) {
				equal(t, "nts", c.NTP.Servers[0].NTS, NTSClient{Enabled: true, Port: 14460, CA: "/etc/ca.pem", IgnoreDatesUntilSynced: true})
			}},
		{name: "peer", src: "peer 192.0.2.9\n",
			want: func(t *testing.T, c *Config) { equal(t, "address", c.NTP.Servers[0].Address, "192.0.2.9") },
			note: []string{"symmetric mode is not supported"}},
		{name: "same server twice", src: "server a.example\nserver A.example. iburst\n",
			want: func(t *testing.T, c *Config) { equal(t, "servers", len(c.NTP.Servers), 1) },
			warn: []string{"in.conf:2: server A.example. iburst: not carried over: the same source as line 1"}},
		{name: "engine", src: "makestep 0.1 3\nmaxslewrate 500\nmaxdrift 100\nminsources 2\nmaxchange 1000 1 2\n",
			want: func(t *testing.T, c *Config) {
				e := defaults().Engine
				e.StepThreshold, e.StepLimit, e.MaxSlewRatePPM, e.MaxFrequencyPPM, e.MinAgreeingSources, e.PanicThreshold = 100*time.Millisecond, 3, 500, 100, 2, 1000*time.Second
				equal(t, "engine", c.Engine, e)
			}},
		{name: "makestep without limit", src: "makestep 1 -1\n",
			want: func(t *testing.T, c *Config) { equal(t, "step_limit", c.Engine.StepLimit, -1) }},
		{name: "authselectmode require", src: "authselectmode require\n",
			want: func(t *testing.T, c *Config) { equal(t, "require_authenticated", c.Engine.RequireAuthenticated, true) }},
		{name: "driftfile", src: "driftfile /var/lib/chrony/drift\n",
			want: func(t *testing.T, c *Config) { equal(t, "drift_file", c.DriftFile, DefaultDriftFile) },
			note: []string{"its format differs"}},
		{name: "server: allow, deny, bind, port, local, ratelimit",
			src: "allow 192.168\nallow 10.0.0.0/8\ndeny 10.1.0.0/16\ndeny 192.0.0.0/8\nbindaddress 127.0.0.1\nport 11123\nlocal stratum 8\nratelimit interval 2 burst 4 leak 3\n",
			want: func(t *testing.T, c *Config) {
				s := c.Server
				equal(t, "listen", s.Listen, addrPorts("127.0.0.1:11123"))
				equal(t, "allow", s.Allow, prefixes("192.168.0.0/16", "10.0.0.0/8"))
				equal(t, "deny", s.Deny, prefixes("10.1.0.0/16", "192.0.0.0/8"))
				equal(t, "local stratum", s.LocalStratum, 8)
				equal(t, "rate interval", s.RateLimit.Interval, 4*time.Second)
				equal(t, "rate burst", s.RateLimit.Burst, 4)
			},
			warn: []string{"allow 192.168.0.0/16: timed checks deny before allow, so 192.0.0.0/8 denies"}},
		{name: "allow everyone", src: "allow\nlocal\n",
			want: func(t *testing.T, c *Config) {
				equal(t, "listen", c.Server.Listen, addrPorts("0.0.0.0:123", "[::]:123"))
				equal(t, "allow", len(c.Server.Allow), 0)
				equal(t, "local stratum", c.Server.LocalStratum, 10)
			}},
		{name: "no allow: no server", src: "local stratum 3\nbindaddress 127.0.0.1\n",
			want: func(t *testing.T, c *Config) {
				equal(t, "listen", len(c.Server.Listen), 0)
				equal(t, "local stratum", c.Server.LocalStratum, 0)
			},
			note: []string{"chronyd serves no one without allow"}},
		{name: "port 0: no server", src: "allow all\nport 0\n",
			want: func(t *testing.T, c *Config) { equal(t, "listen", len(c.Server.Listen), 0) }},
		{name: "nts server", src: "allow\nntsservercert /etc/c.pem\nntsserverkey /etc/k.pem\nntsport 14460\nntsrotate 7200\nbindaddress ::1\n",
			want: func(t *testing.T, c *Config) {
				n := c.Server.NTS
				equal(t, "nts", [3]string{n.Certificate, n.Key, n.KeyFile}, [3]string{"/etc/c.pem", "/etc/k.pem", DefaultNTSKeyFile})
				equal(t, "nts listen", n.Listen, addrPorts("[::1]:14460"))
				equal(t, "rotation", n.KeyRotation, 2*time.Hour)
			}},
		{name: "nts server without key", src: "allow\nntsservercert /etc/c.pem\n",
			want: func(t *testing.T, c *Config) { equal(t, "nts listen", len(c.Server.NTS.Listen), 0) },
			warn: []string{"needs both a certificate and a key"}},
		{name: "refclocks", src: "refclock SHM 0 refid NMEA offset 0.12 delay 0.2 noselect\nrefclock PPS /dev/pps0:clear lock NMEA prefer\nrefclock SOCK /run/chrony.ttyS0.sock refid GPS poll 2 trust\n",
			want: func(t *testing.T, c *Config) {
				r := c.Refclocks
				if len(r) != 3 {
					t.Fatalf("%d refclocks, want 3", len(r))
				}
				equal(t, "shm", [5]any{r[0].Kind, r[0].Name, r[0].Offset, r[0].Delay, r[0].NoSelect}, [5]any{"shm", "NMEA", 120 * time.Millisecond, 200 * time.Millisecond, true})
				equal(t, "pps", [5]any{r[1].Kind, r[1].Device, r[1].Edge, r[1].Lock, r[1].Prefer}, [5]any{"pps", "/dev/pps0", "clear", "NMEA", true})
				equal(t, "sock", [5]any{r[2].Kind, r[2].Path, r[2].RefID, r[2].Poll, r[2].Trust}, [5]any{"sock", "/run/chrony.ttyS0.sock", "GPS", 2, true})
			}},
		{name: "refclock lock on a missing refid", src: "refclock PPS /dev/pps0 lock GPS\n",
			want: func(t *testing.T, c *Config) { equal(t, "lock", c.Refclocks[0].Lock, "") },
			warn: []string{"no reference clock of that refid"}},
		{name: "refclock PHC and unit out of range", src: "refclock PHC /dev/ptp0\nrefclock SHM 9\n",
			want: func(t *testing.T, c *Config) { equal(t, "refclocks", len(c.Refclocks), 0) },
			warn: []string{"refclock PHC /dev/ptp0: no equivalent", "SHM units 0 to 7"}},
		{name: "noted directives", src: "rtcsync\nhwtimestamp eth0\nkeyfile /etc/chrony.keys\nlogdir /var/log/chrony\ncmdport 0\nleapsectz right/UTC\n",
			want: func(t *testing.T, c *Config) { equal(t, "config", *c, defaults()) },
			note: []string{"in.conf:1: rtcsync: no equivalent", "in.conf:2: hwtimestamp eth0: timed does this differently", "in.conf:3: keyfile", "in.conf:4: logdir", "in.conf:5: cmdport 0", "in.conf:6: leapsectz"}},
		{name: "includes noted", src: "confdir /etc/chrony/conf.d\nsourcedir /run/chrony-dhcp\ninclude /etc/chrony/x.conf\n",
			note: []string{"in.conf:1: confdir /etc/chrony/conf.d: not followed", "in.conf:2: sourcedir", "in.conf:3: include"}},
		{name: "unknown and malformed lines", src: "server a.example\nfrobnicate 1\nmakestep one\nserver b.example bogusopt\n",
			want: func(t *testing.T, c *Config) { equal(t, "servers", len(c.NTP.Servers), 2) },
			warn: []string{"in.conf:2: frobnicate 1: unknown directive", "in.conf:3: makestep one: not understood", "unknown option bogusopt"}},
		{name: "bad address", src: "server http://x.example\nserver 192.0.2.1:123\n",
			want: func(t *testing.T, c *Config) { equal(t, "servers", len(c.NTP.Servers), 0) },
			warn: []string{"in.conf:1:", "in.conf:2:"}},
	})
}

// TestMigrateBounded: lists stop growing at maxMigrateEntries, with a
// warning for each line left out.
func TestMigrateBounded(t *testing.T) {
	var src strings.Builder
	for i := range maxMigrateEntries + 2 {
		fmt.Fprintf(&src, "server s%d.example\n", i)
	}
	c, r := migrated(t, "chrony", "in.conf", src.String(), MigrateOptions{})
	equal(t, "servers", len(c.NTP.Servers), maxMigrateEntries)
	equal(t, "warnings", len(r.Warnings), 2)
}

func TestMigrateChronyFollowIncludes(t *testing.T) {
	dir := t.TempDir()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(dir, "conf.d"), 0o755))
	must(os.MkdirAll(filepath.Join(dir, "sources.d"), 0o755))
	must(os.WriteFile(filepath.Join(dir, "conf.d", "a.conf"), []byte("minsources 2\n"), 0o644))
	must(os.WriteFile(filepath.Join(dir, "sources.d", "b.sources"), []byte("server b.example iburst\nmakestep 1 1\n"), 0o644))
	must(os.WriteFile(filepath.Join(dir, "extra.conf"), []byte("include "+filepath.Join(dir, "extra.conf")+"\n"), 0o644))
	main := filepath.Join(dir, "chrony.conf")
	src := "confdir " + filepath.Join(dir, "conf.d") + "\nsourcedir sources.d\ninclude extra.conf\n"
	r, err := Migrate("chrony", main, []byte(src), MigrateOptions{FollowIncludes: true})
	if err != nil {
		t.Fatal(err)
	}
	c, err := Parse("out", r.YAML)
	if err != nil {
		t.Fatal(err)
	}
	equal(t, "min_agreeing_sources", c.Engine.MinAgreeingSources, 2)
	equal(t, "servers", len(c.NTP.Servers), 1)
	equal(t, "step_limit", c.Engine.StepLimit, 3) // makestep is not allowed in a sources file
	for _, w := range []string{"b.sources:2: makestep 1 1: not carried over: a sourcedir file", "nested more than 8 deep"} {
		if !strings.Contains(strings.Join(r.Warnings, "\n"), w) {
			t.Errorf("no warning %q in %q", w, r.Warnings)
		}
	}
}

func TestMigrateNtpsec(t *testing.T) {
	runMigrateCases(t, "ntpsec", []migrateCase{
		{name: "server options", src: "server a.example iburst minpoll 3 maxpoll 9 prefer\nserver 192.0.2.5:1123 noselect true\n",
			want: func(t *testing.T, c *Config) {
				equal(t, "servers", c.NTP.Servers, []NTPServer{
					server("a.example", func(s *NTPServer) { s.IBurst, s.MinPoll, s.MaxPoll, s.Prefer = true, 3, 9, true }),
					server("192.0.2.5", func(s *NTPServer) { s.Port, s.NoSelect, s.Trust = 1123, true, true }),
				})
			}},
		{name: "nts with port and ca", src: "server nts.example:14460 nts ca /etc/ca.pem\nserver [2001:db8::1]:4461 nts\n",
			want: func(t *testing.T, c *Config) {
				equal(t, "nts", c.NTP.Servers[0].NTS, NTSClient{Enabled: true, Port: 14460, CA: "/etc/ca.pem"})
				equal(t, "address", c.NTP.Servers[1].Address, "2001:db8::1")
				equal(t, "nts port", c.NTP.Servers[1].NTS.Port, 4461)
			}},
		{name: "pool", src: "pool 0.pool.example iburst\n",
			want: func(t *testing.T, c *Config) {
				equal(t, "pool", [2]any{c.NTP.Pools[0].Address, c.NTP.Pools[0].IBurst}, [2]any{"0.pool.example", true})
			}},
		{name: "refclocks", src: "refclock shm unit 1 refid GPS time1 0.1 prefer\nrefclock gpsd unit 0\nserver 127.127.28.2\n",
			want: func(t *testing.T, c *Config) {
				r := c.Refclocks
				if len(r) != 3 {
					t.Fatalf("%d refclocks, want 3", len(r))
				}
				equal(t, "shm", [5]any{r[0].Kind, r[0].Unit, r[0].RefID, r[0].Offset, r[0].Prefer}, [5]any{"shm", 1, "GPS", 100 * time.Millisecond, true})
				equal(t, "gpsd", [2]any{r[1].Kind, r[1].Device}, [2]any{"gpsd", "/dev/gps0"})
				equal(t, "legacy shm", [2]any{r[2].Kind, r[2].Unit}, [2]any{"shm", 2})
			}},
		{name: "same shm unit twice", src: "refclock shm unit 0\nserver 127.127.28.0\n",
			want: func(t *testing.T, c *Config) { equal(t, "refclocks", len(c.Refclocks), 1) },
			warn: []string{"the same reference clock as line 1"}},
		{name: "serves everyone by default", src: "restrict default kod limited nomodify noquery\nrestrict 192.0.2.66 ignore\nrestrict 127.0.0.1\n",
			want: func(t *testing.T, c *Config) {
				equal(t, "listen", c.Server.Listen, addrPorts("0.0.0.0:123", "[::]:123"))
				equal(t, "allow", len(c.Server.Allow), 0)
				equal(t, "deny", c.Server.Deny, prefixes("192.0.2.66"))
			},
			note: []string{"kod limited nomodify noquery: timed does this differently"}},
		{name: "default ignore, networks allowed", src: "restrict default ignore\nrestrict 192.0.2.0 mask 255.255.255.0 nomodify\ninterface listen 127.0.0.1\n",
			want: func(t *testing.T, c *Config) {
				equal(t, "listen", c.Server.Listen, addrPorts("127.0.0.1:123"))
				equal(t, "allow", c.Server.Allow, prefixes("192.0.2.0/24"))
			}},
		{name: "default ignore alone: no server", src: "restrict default ignore\n",
			want: func(t *testing.T, c *Config) { equal(t, "listen", len(c.Server.Listen), 0) }},
		{name: "tos and tinker", src: "tos minsane 3 orphan 6 minclock 4\ntinker step 0.25 panic 0\n",
			want: func(t *testing.T, c *Config) {
				equal(t, "min_agreeing_sources", c.Engine.MinAgreeingSources, 3)
				equal(t, "local stratum", c.Server.LocalStratum, 6)
				equal(t, "step_threshold", c.Engine.StepThreshold, 250*time.Millisecond)
				equal(t, "panic_threshold", c.Engine.PanicThreshold, time.Duration(0))
			},
			note: []string{"minclock 4: timed does this differently"}},
		{name: "nts server", src: "nts enable\nnts cert /etc/c.pem\nnts key /etc/k.pem\nnts cookie /var/lib/ntp/cookies\n",
			want: func(t *testing.T, c *Config) {
				equal(t, "nts listen", c.Server.NTS.Listen, addrPorts("0.0.0.0:4460", "[::]:4460"))
				equal(t, "cert", c.Server.NTS.Certificate, "/etc/c.pem")
			}},
		{name: "noted directives", src: "driftfile /var/lib/ntp/drift\nleapfile /usr/share/zoneinfo/leap-seconds.list\nstatistics loopstats\nfilegen loopstats file loopstats\nlogfile /var/log/ntp.log\n",
			note: []string{"in.conf:2: leapfile", "in.conf:3: statistics loopstats", "in.conf:4: filegen", "in.conf:5: logfile"}},
		{name: "unknown", src: "server a.example\nflux capacitor\n",
			warn: []string{"in.conf:2: flux capacitor: unknown directive"}},
	})
}

func TestMigrateNtpdrs(t *testing.T) {
	runMigrateCases(t, "ntpd-rs", []migrateCase{
		{name: "sources", src: `
[[source]]
mode = "server"
address = "192.0.2.7:1123"
poll-interval-limits = { min = 2, max = 8 }

[[source]]
mode = "pool"
address = "pool.example"
count = 6

[[source]]
mode = "nts"
address = "nts.example"

[[source]]
mode = "pps"
path = "/dev/pps1"
`,
			want: func(t *testing.T, c *Config) {
				equal(t, "servers", c.NTP.Servers, []NTPServer{
					server("192.0.2.7", func(s *NTPServer) { s.Port, s.MinPoll, s.MaxPoll = 1123, 2, 8 }),
					server("nts.example", func(s *NTPServer) { s.NTS = NTSClient{Enabled: true, Port: DefaultNTSKEPort} }),
				})
				equal(t, "pool", [2]any{c.NTP.Pools[0].Address, c.NTP.Pools[0].MaxSources}, [2]any{"pool.example", 6})
				equal(t, "pps", [2]any{c.Refclocks[0].Kind, c.Refclocks[0].Device}, [2]any{"pps", "/dev/pps1"})
			}},
		{name: "source defaults", src: `
[[source]]
mode = "server"
address = "a.example"

[[source]]
mode = "server"
address = "b.example"
poll-interval-limits = { min = 5, max = 9 }

[source-defaults]
poll-interval-limits = { min = 2, max = 3 }
`,
			want: func(t *testing.T, c *Config) {
				s := c.NTP.Servers
				equal(t, "polls", [4]int{s[0].MinPoll, s[0].MaxPoll, s[1].MinPoll, s[1].MaxPoll}, [4]int{2, 3, 5, 9})
			},
			note: []string{"minimum-agreeing-sources not given: timed does this differently: ntpd-rs waits for 3"}},
		{name: "synchronization", src: `
[synchronization]
minimum-agreeing-sources = 3
single-step-panic-threshold = { forward = 10, backward = 20 }
accumulated-step-panic-threshold = 100
local-stratum = 4
`,
			want: func(t *testing.T, c *Config) {
				equal(t, "min", c.Engine.MinAgreeingSources, 3)
				equal(t, "panic", c.Engine.PanicThreshold, 10*time.Second)
				equal(t, "local", c.Server.LocalStratum, 4)
			},
			note: []string{"in.conf:5: accumulated-step-panic-threshold = 100: no equivalent"}},
		{name: "server and nts-ke-server", src: `
[[nts-ke-server]]
listen = "127.0.0.1:4460"
certificate-chain-path = "/etc/c.pem"
private-key-path = "/etc/k.pem"

[[server]]
listen = "127.0.0.1:123"
denylist = { filter = ["192.0.2.0/24"], action = "deny" }
`,
			want: func(t *testing.T, c *Config) {
				equal(t, "listen", c.Server.Listen, addrPorts("127.0.0.1:123"))
				equal(t, "deny", c.Server.Deny, prefixes("192.0.2.0/24"))
				equal(t, "deny_response", c.Server.DenyResponse, "kiss")
				equal(t, "nts listen", c.Server.NTS.Listen, addrPorts("127.0.0.1:4460"))
			}},
		{name: "nts-ke-server without server", src: "[[nts-ke-server]]\nlisten = \"127.0.0.1:4460\"\ncertificate-chain-path = \"/c\"\nprivate-key-path = \"/k\"\n",
			want: func(t *testing.T, c *Config) { equal(t, "nts listen", len(c.Server.NTS.Listen), 0) },
			warn: []string{"in.conf:1: [[nts-ke-server]]: not carried over: timed's NTS-KE server needs the NTP server"}},
		{name: "observability", src: "[observability]\nlog-level = \"trace\"\nmetrics-exporter-listen = \"127.0.0.1:9975\"\n",
			want: func(t *testing.T, c *Config) {
				equal(t, "log", c.Log.Level, "debug")
				equal(t, "metrics", c.Metrics.Listen, "127.0.0.1:9975")
			}},
		{name: "unknown keys", src: "[[source]]\nmode = \"server\"\naddress = \"a.example\"\nweird = 1\n\n[mystery]\nx = 1\n",
			want: func(t *testing.T, c *Config) { equal(t, "servers", len(c.NTP.Servers), 1) },
			warn: []string{"in.conf:4: weird = 1: unknown key of a source", "in.conf:6: mystery: unknown directive"}},
	})
}

func TestMigratePtp4l(t *testing.T) {
	runMigrateCases(t, "ptp4l", []migrateCase{
		{name: "interfaces from the command line and sections",
			src:  "[global]\nnetwork_transport UDPv6\ndelay_mechanism P2P\ntime_stamping hardware\nslaveOnly 1\ndomainNumber 3\n\n[eth1]\nnetwork_transport L2\n",
			opts: MigrateOptions{Interfaces: []string{"eth0"}},
			want: func(t *testing.T, c *Config) {
				p := c.PTP.Ports
				if len(p) != 2 {
					t.Fatalf("%d ports, want 2", len(p))
				}
				equal(t, "eth0", [5]string{p[0].Interface, p[0].Transport, p[0].DelayMechanism, p[0].Timestamping, p[0].Role}, [5]string{"eth0", "udp6", "p2p", "hardware", "slave_only"})
				equal(t, "eth1", [2]string{p[1].Interface, p[1].Transport}, [2]string{"eth1", "l2"})
				equal(t, "domain", c.PTP.Domain, 3)
			}},
		{name: "intervals and unicast", src: "[global]\nlogAnnounceInterval -1\nlogSyncInterval -3\nlogMinDelayReqInterval -3\nannounceReceiptTimeout 5\ndelayAsymmetry 200\nmasterOnly 1\nunicast_listen 1\n",
			opts: MigrateOptions{Interfaces: []string{"eth0"}},
			want: func(t *testing.T, c *Config) {
				p := c.PTP.Ports[0]
				equal(t, "intervals", [4]int{p.LogAnnounceInterval, p.LogSyncInterval, p.LogMinDelayReqInterval, p.AnnounceReceiptTimeout}, [4]int{-1, -3, -3, 5})
				equal(t, "asymmetry", p.DelayAsymmetry, 200*time.Nanosecond)
				equal(t, "role", [2]any{p.Role, p.UnicastListen}, [2]any{"master_only", true})
			}},
		{name: "transparent clock", src: "[global]\nclock_type P2P_TC\n", opts: MigrateOptions{Interfaces: []string{"eth0"}},
			want: func(t *testing.T, c *Config) { equal(t, "ports", len(c.PTP.Ports), 0) },
			warn: []string{"not a transparent clock"}},
		{name: "no interface", src: "[global]\ndomainNumber 0\n",
			want: func(t *testing.T, c *Config) { equal(t, "ports", len(c.PTP.Ports), 0) },
			warn: []string{"name them with --interface"}},
		{name: "bad values and unknown options", src: "[global]\nlogSyncInterval 99\nfrob 1\nnetwork_transport carrier-pigeon\n",
			opts: MigrateOptions{Interfaces: []string{"eth0"}},
			want: func(t *testing.T, c *Config) { equal(t, "sync interval", c.PTP.Ports[0].LogSyncInterval, 0) },
			warn: []string{"in.conf:2: logSyncInterval 99: not carried over: timed says", "in.conf:3: frob 1: unknown ptp4l option", "in.conf:4: network_transport carrier-pigeon: not understood"}},
	})
}

// TestMigrateNotThatFormat: a file of another kind is an error naming
// FILE:LINE.
func TestMigrateNotThatFormat(t *testing.T) {
	for _, tc := range []struct {
		from, src, want string
	}{
		{"chrony", "# timed\nclock:\n  driver: system\n", "f:2: this is not a chrony.conf file"},
		{"ntpsec", "[global]\nslaveOnly 1\n", "f:1: this is not a ntp.conf file"},
		{"ntpd-rs", "server a.example iburst\n", "f:1: this is not an ntp.toml"},
		{"ntpd-rs", "[package]\nname = \"x\"\n", "f:1: this is not an ntp.toml file"},
		{"ptp4l", "server a.example iburst\n", "f:1: this is not a ptp4l configuration"},
		{"ptp4l", "[global\n", "f:1: this is not a ptp4l configuration"},
		{"sntp", "", `unknown format "sntp"`},
		{"ntpd-rs", "a = 1\nb = " + strings.Repeat("[", 65), "f:2: this is not an ntp.toml file: arrays and tables nest more than 64 deep"},
		{"chrony", strings.Repeat("#", maxMigrateInput+1), "is too large for a configuration file"},
	} {
		t.Run(tc.from, func(t *testing.T) {
			_, err := Migrate(tc.from, "f", []byte(tc.src), MigrateOptions{})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Migrate(%s, %q) = %v, want an error containing %q", tc.from, tc.src, err, tc.want)
			}
		})
	}
}

// TestMigrateTestdata migrates the example files of testdata/migrate (our
// own, exercising the directives of each program's documented examples).
func TestMigrateTestdata(t *testing.T) {
	for _, tc := range []struct {
		from, file string
		opts       MigrateOptions
		want       func(t *testing.T, c *Config)
	}{
		{"chrony", "chrony.conf", MigrateOptions{}, func(t *testing.T, c *Config) {
			equal(t, "sources", [3]int{len(c.NTP.Servers), len(c.NTP.Pools), len(c.Refclocks)}, [3]int{4, 1, 3})
			equal(t, "listen", c.Server.Listen, addrPorts("192.0.2.1:1123"))
			equal(t, "nts listen", c.Server.NTS.Listen, addrPorts("192.0.2.1:14460"))
		}},
		{"ntpsec", "ntp.conf", MigrateOptions{}, func(t *testing.T, c *Config) {
			equal(t, "sources", [3]int{len(c.NTP.Servers), len(c.NTP.Pools), len(c.Refclocks)}, [3]int{3, 1, 3})
			equal(t, "deny", c.Server.Deny, prefixes("192.0.2.66"))
		}},
		{"ntpd-rs", "ntp.toml", MigrateOptions{}, func(t *testing.T, c *Config) {
			equal(t, "sources", [3]int{len(c.NTP.Servers), len(c.NTP.Pools), len(c.Refclocks)}, [3]int{2, 1, 1})
			equal(t, "listen", c.Server.Listen, addrPorts("0.0.0.0:123", "[::]:123"))
			equal(t, "keys kept", c.Server.NTS.KeysKept, 8)
		}},
		{"ptp4l", "ptp4l-unicast.cfg", MigrateOptions{}, func(t *testing.T, c *Config) {
			p := c.PTP.Ports
			if len(p) != 2 {
				t.Fatalf("%d ports, want 2", len(p))
			}
			equal(t, "masters", p[0].UnicastMasters, []netip.Addr{netip.MustParseAddr("192.0.2.11"), netip.MustParseAddr("192.0.2.22")})
			equal(t, "eth1", [3]string{p[1].Transport, p[1].DelayMechanism, p[1].Role}, [3]string{"l2", "p2p", "master_only"})
			equal(t, "priorities", [3]int{c.PTP.Domain, c.PTP.Priority1, c.PTP.Priority2}, [3]int{24, 100, 110})
		}},
	} {
		t.Run(tc.file, func(t *testing.T) {
			src, err := os.ReadFile(filepath.Join("testdata", "migrate", tc.file))
			if err != nil {
				t.Fatal(err)
			}
			c, _ := migrated(t, tc.from, tc.file, string(src), tc.opts)
			tc.want(t, c)
		})
	}
}

// TestMigrateDistributionFiles migrates the files Debian ships: chrony's,
// ntpsec's and every linuxptp example configuration.
func TestMigrateDistributionFiles(t *testing.T) {
	read := func(t *testing.T, path string) string {
		t.Helper()
		src, err := os.ReadFile(path)
		if err != nil {
			testenv.Missing(t, path+" (make test installs the peers)")
		}
		return string(src)
	}
	t.Run("chrony.conf", func(t *testing.T) {
		c, r := migrated(t, "chrony", "/etc/chrony/chrony.conf", read(t, "/etc/chrony/chrony.conf"), MigrateOptions{})
		equal(t, "pools", len(c.NTP.Pools), 1)
		equal(t, "step", [2]any{c.Engine.StepThreshold, c.Engine.StepLimit}, [2]any{time.Second, 3})
		for _, n := range []string{"sourcedir /etc/chrony/sources.d: not followed", "rtcsync: no equivalent"} {
			if !strings.Contains(string(r.YAML), n) {
				t.Errorf("no comment %q", n)
			}
		}
	})
	t.Run("ntpsec", func(t *testing.T) {
		dir := os.Getenv("TIMED_PEERS_DIR")
		if dir == "" {
			dir = filepath.Join("..", ".peers")
		}
		path := filepath.Join(dir, "ntpsec", "etc", "ntpsec", "ntp.conf")
		c, _ := migrated(t, "ntpsec", path, read(t, path), MigrateOptions{})
		equal(t, "pools", len(c.NTP.Pools), 4)
		equal(t, "minsane", c.Engine.MinAgreeingSources, 3)
		equal(t, "listen", c.Server.Listen, addrPorts("0.0.0.0:123", "[::]:123"))
	})
	eth0 := MigrateOptions{Interfaces: []string{"eth0"}}
	for _, tc := range []struct {
		file string
		want func(t *testing.T, c *Config, r *Migration)
	}{
		{"default.cfg", func(t *testing.T, c *Config, _ *Migration) {
			p := c.PTP.Ports[0]
			equal(t, "port", [4]string{p.Interface, p.Transport, p.DelayMechanism, p.Timestamping}, [4]string{"eth0", "udp4", "e2e", "hardware"})
		}},
		{"gPTP.cfg", func(t *testing.T, c *Config, _ *Migration) {
			p := c.GPTP.Ports[0]
			equal(t, "port", [3]any{p.Profile, p.Role, p.NeighborPropDelayThresh}, [3]any{"gptp", "auto", 800 * time.Nanosecond})
			equal(t, "ptp ports", len(c.PTP.Ports), 0)
		}},
		{"automotive-master.cfg", func(t *testing.T, c *Config, _ *Migration) {
			p := c.GPTP.Ports[0]
			equal(t, "port", [3]any{p.Profile, p.Role, p.LogSyncInterval}, [3]any{"automotive", "master", -3})
		}},
		{"automotive-slave.cfg", func(t *testing.T, c *Config, _ *Migration) {
			p := c.GPTP.Ports[0]
			equal(t, "port", [4]any{p.Profile, p.Role, p.OperLogSyncInterval, p.OperLogPdelayReqInterval}, [4]any{"automotive", "slave", 0, 2})
		}},
		{"UNICAST-MASTER.cfg", func(t *testing.T, c *Config, _ *Migration) {
			equal(t, "unicast_listen", c.PTP.Ports[0].UnicastListen, true)
		}},
		{"UNICAST-SLAVE.cfg", func(t *testing.T, c *Config, r *Migration) {
			p := c.PTP.Ports
			equal(t, "ports", len(p), 2)
			equal(t, "masters", len(p[0].UnicastMasters), 3)
			equal(t, "eth1", p[1].Transport, "l2")
		}},
		{"G.8265.1.cfg", func(t *testing.T, c *Config, _ *Migration) {
			equal(t, "unicast_listen", c.PTP.Ports[0].UnicastListen, true)
		}},
		{"G.8275.1.cfg", func(t *testing.T, c *Config, r *Migration) {
			p := c.PTP.Ports[0]
			equal(t, "port", [3]any{p.Transport, p.LogSyncInterval, p.LogAnnounceInterval}, [3]any{"l2", -4, -3})
			equal(t, "warned", strings.Contains(strings.Join(r.Warnings, " "), "telecom profiles"), true)
		}},
		{"G.8275.2.cfg", func(t *testing.T, c *Config, _ *Migration) {
			equal(t, "unicast_listen", c.PTP.Ports[0].UnicastListen, true)
		}},
		{"E2E-TC.cfg", func(t *testing.T, c *Config, r *Migration) {
			equal(t, "ports", len(c.PTP.Ports)+len(c.GPTP.Ports), 0)
			equal(t, "warned", strings.Contains(strings.Join(r.Warnings, " "), "not a transparent clock"), true)
		}},
		{"P2P-TC.cfg", func(t *testing.T, c *Config, r *Migration) {
			equal(t, "ports", len(c.PTP.Ports)+len(c.GPTP.Ports), 0)
			equal(t, "warned", strings.Contains(strings.Join(r.Warnings, " "), "not a transparent clock"), true)
		}},
	} {
		t.Run(tc.file, func(t *testing.T) {
			path := filepath.Join("/usr/share/doc/linuxptp/configs", tc.file)
			c, r := migrated(t, "ptp4l", path, read(t, path), eth0)
			tc.want(t, c, r)
		})
	}
}
