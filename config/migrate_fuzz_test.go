package config

import (
	"os"
	"path/filepath"
	"testing"
)

// fuzzMigrate checks that Migrate never panics, answers every input with a
// result or an error, and that a result is valid and bounded in size.
func fuzzMigrate(f *testing.F, from string, seeds ...string) {
	for _, s := range seeds {
		f.Add([]byte(s), "eth0")
	}
	f.Fuzz(func(t *testing.T, src []byte, iface string) {
		var opts MigrateOptions
		if from == "ptp4l" {
			opts.Interfaces = []string{iface}
		}
		r, err := Migrate(from, "fuzz.conf", src, opts)
		if err != nil {
			return
		}
		if _, err := Parse("fuzz.yaml", r.YAML); err != nil {
			t.Fatalf("Migrate made an invalid file: %v\n%s", err, r.YAML)
		}
		if limit := 400*(len(src)+len(iface)) + 16384; len(r.YAML) > limit {
			t.Fatalf("%d bytes of input made %d bytes of output (limit %d)", len(src), len(r.YAML), limit)
		}
	})
}

func seedFile(f *testing.F, name string) string {
	src, err := os.ReadFile(filepath.Join("testdata", "migrate", name))
	if err != nil {
		f.Fatal(err)
	}
	return string(src)
}

func FuzzMigrateChrony(f *testing.F) {
	fuzzMigrate(f, "chrony", seedFile(f, "chrony.conf"),
		"server a.example iburst minpoll -2 maxpoll -2\nallow 127.0.0.0/8\nlocal stratum 8\n",
		"refclock PPS /dev/pps0 lock X\nrefclock SHM 0 refid X\n", "allow 10\ndeny all\n")
}

func FuzzMigrateNtpsec(f *testing.F) {
	fuzzMigrate(f, "ntpsec", seedFile(f, "ntp.conf"),
		"restrict default ignore\nrestrict 10.0.0.0 mask 255.0.0.0\nserver [::1]:123 nts\n",
		"server 127.127.28.0\nrefclock shm unit 0\n")
}

func FuzzMigrateNtpdrs(f *testing.F) {
	fuzzMigrate(f, "ntpd-rs", seedFile(f, "ntp.toml"),
		"[[source]]\nmode = \"pool\"\naddress = \"a.example\"\ncount = 2\n",
		"[synchronization]\nsingle-step-panic-threshold = { forward = \"inf\" }\n")
}

func FuzzMigratePtp4l(f *testing.F) {
	fuzzMigrate(f, "ptp4l", seedFile(f, "ptp4l-unicast.cfg"),
		"[global]\ntransportSpecific 1\nBMCA noop\nmasterOnly 1\n",
		"[global]\nclock_type E2E_TC\n", "[unicast_master_table]\ntable_id 1\nUDPv6 ::1\n[eth0]\nunicast_master_table 1\nnetwork_transport UDPv6\n")
}
