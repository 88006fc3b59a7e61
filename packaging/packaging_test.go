package packaging

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/timed-project/timed/config"
	"github.com/timed-project/timed/internal/testenv"
)

// run runs a command and returns its combined output and error.
func run(name string, args ...string) (string, error) {
	out, err := exec.Command(name, args...).CombinedOutput()
	return string(out), err
}

// copyFile copies src to dst (made with its directories) with mode.
func copyFile(t *testing.T, src, dst string, mode os.FileMode) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, dst, b, mode)
}

func writeFile(t *testing.T, dst string, b []byte, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, b, mode); err != nil {
		t.Fatal(err)
	}
}

// unitRoot makes a scratch root for `systemd-analyze --root` holding the
// system's units, a stub for every program the units run, and the units
// given (name to content) under usr/lib/systemd/system.
func unitRoot(t *testing.T, units map[string][]byte) string {
	t.Helper()
	root := t.TempDir()
	sysUnits := "/usr/lib/systemd/system"
	if _, err := os.Stat(filepath.Join(sysUnits, "sysinit.target")); err != nil {
		sysUnits = "/lib/systemd/system"
	}
	dst := filepath.Join(root, "usr/lib/systemd/system")
	if out, err := run("cp", "-a", sysUnits+"/.", dst+"/"); err != nil {
		if err := os.MkdirAll(dst, 0o755); err != nil {
			t.Fatal(err)
		}
		if out, err = run("cp", "-a", sysUnits+"/.", dst+"/"); err != nil {
			t.Fatalf("copy the system's units: %v\n%s", err, out)
		}
	}
	for name, b := range units {
		writeFile(t, filepath.Join(dst, name), b, 0o644)
	}
	for _, prog := range []string{"/usr/bin/timed", "/usr/bin/timectl", "/bin/kill"} {
		copyFile(t, "/bin/true", filepath.Join(root, prog), 0o755)
	}
	return root
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// systemd-analyze verify accepts both units, and refuses a unit whose
// program is missing, so its silence means something.
func TestUnitsVerify(t *testing.T) {
	analyze := testenv.LookPath(t, "systemd-analyze", "/usr/bin/systemd-analyze")
	service := readFile(t, "systemd/timed.service")
	wait := readFile(t, "systemd/timed-wait.service")
	sock := readFile(t, "systemd/timed-sock@.socket")
	all := map[string][]byte{"timed.service": service, "timed-wait.service": wait, "timed-sock@.socket": sock}
	tests := []struct {
		name, unit string
		units      map[string][]byte
		ok         bool
	}{
		{"timed", "timed.service", all, true},
		{"timed-wait", "timed-wait.service", all, true},
		{"timed-sock", "timed-sock@ttyS0.socket", all, true},
		{"socket without a listen setting", "timed-sock@ttyS0.socket", map[string][]byte{"timed.service": service,
			"timed-sock@.socket": bytes.ReplaceAll(sock, []byte("ListenDatagram="), []byte("#"))}, false},
		{"missing program", "timed.service", map[string][]byte{"timed.service": bytes.ReplaceAll(service,
			[]byte("ExecStart=/usr/bin/timed"), []byte("ExecStart=/usr/bin/no-such-timed"))}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := unitRoot(t, tt.units)
			out, err := run(analyze, "--root="+root, "verify", filepath.Join(root, "usr/lib/systemd/system", tt.unit))
			if (err == nil) != tt.ok || (tt.ok && strings.TrimSpace(out) != "") {
				t.Errorf("systemd-analyze verify %s: %v, want ok=%v\n%s", tt.unit, err, tt.ok, out)
			}
		})
	}
}

// unitSettings reads the Key=Value lines of a unit file; repeated keys
// are joined with spaces.
func unitSettings(b []byte) map[string]string {
	out := map[string]string{}
	for _, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' || line[0] == '[' {
			continue
		}
		if k, v, ok := strings.Cut(line, "="); ok {
			out[k] = strings.TrimSpace(out[k] + " " + v)
		}
	}
	return out
}

// The units say what docs/PACKAGING.md promises: the readiness protocol
// timed speaks, the ordering, its user and capabilities.
func TestUnitSettings(t *testing.T) {
	tests := []struct {
		file, key, want string
	}{
		{"systemd/timed.service", "Type", "notify"},
		{"systemd/timed.service", "Before", "time-sync.target"},
		{"systemd/timed.service", "Wants", "time-sync.target"},
		{"systemd/timed.service", "After", "network.target"},
		{"systemd/timed.service", "Conflicts", "chrony.service systemd-timesyncd.service ntpsec.service ntp.service openntpd.service"},
		{"systemd/timed.service", "ExecReload", "/bin/kill -HUP $MAINPID"},
		{"systemd/timed.service", "Restart", "on-failure"},
		{"systemd/timed.service", "User", "_timed"},
		{"systemd/timed.service", "AmbientCapabilities", "CAP_SYS_TIME CAP_NET_BIND_SERVICE CAP_IPC_OWNER"},
		{"systemd/timed.service", "CapabilityBoundingSet", "CAP_SYS_TIME CAP_NET_BIND_SERVICE CAP_IPC_OWNER"},
		{"systemd/timed.service", "RuntimeDirectory", "timed"},
		{"systemd/timed.service", "StateDirectory", "timed"},
		{"systemd/timed.service", "SystemCallFilter", "@system-service @clock seccomp"},
		{"systemd/timed.service", "RestrictAddressFamilies", "AF_INET AF_INET6 AF_UNIX AF_NETLINK AF_PACKET"},
		{"systemd/timed-wait.service", "ExecStart", "/usr/bin/timectl waitsync --max-error 100ms"},
		{"systemd/timed-wait.service", "Requires", "timed.service"},
		{"systemd/timed-wait.service", "Before", "time-sync.target"},
		{"systemd/timed-wait.service", "TimeoutStartSec", "180"},
		{"systemd/timed-wait.service", "WantedBy", "multi-user.target"},
		{"systemd/timed.service.d/ptp-ethernet.conf", "AmbientCapabilities", "CAP_NET_RAW CAP_NET_ADMIN"},
		{"systemd/timed-sock@.socket", "ListenDatagram", "/run/chrony.%i.sock"},
		{"systemd/timed-sock@.socket", "SocketMode", "0600"},
		{"systemd/timed-sock@.socket", "Service", "timed.service"},
	}
	for _, tt := range tests {
		if got := unitSettings(readFile(t, tt.file))[tt.key]; got != tt.want {
			t.Errorf("%s: %s=%q, want %q", tt.file, tt.key, got, tt.want)
		}
	}
}

// apparmor_parser accepts the profile, and refuses a broken copy.
func TestAppArmorProfileParses(t *testing.T) {
	parser := testenv.LookPath(t, "apparmor_parser", "/usr/sbin/apparmor_parser", "/sbin/apparmor_parser")
	profile := readFile(t, "apparmor/usr.bin.timed")
	tests := []struct {
		name    string
		profile []byte
		ok      bool
	}{
		{"shipped", profile, true},
		{"broken", bytes.Replace(profile, []byte("capability sys_time,"), []byte("capability sys_tim,"), 1), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "usr.bin.timed")
			writeFile(t, path, tt.profile, 0o644)
			out, err := run(parser, "-Q", "-K", path)
			if (err == nil) != tt.ok {
				t.Errorf("apparmor_parser -Q -K: %v, want ok=%v\n%s", err, tt.ok, out)
			}
		})
	}
}

// checkUsersAndState runs systemd-sysusers and systemd-tmpfiles on the scratch
// root (which holds usr/lib/sysusers.d and tmpfiles.d), then checks the
// user, the groups and /var/lib/timed.
func checkUsersAndState(t *testing.T, root string) {
	t.Helper()
	sysusers := testenv.LookPath(t, "systemd-sysusers", "/usr/bin/systemd-sysusers")
	tmpfiles := testenv.LookPath(t, "systemd-tmpfiles", "/usr/bin/systemd-tmpfiles")
	if err := os.MkdirAll(filepath.Join(root, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := run(sysusers, "--root="+root); err != nil {
		t.Fatalf("systemd-sysusers: %v\n%s", err, out)
	}
	if out, err := run(tmpfiles, "--create", "--root="+root); err != nil {
		t.Fatalf("systemd-tmpfiles: %v\n%s", err, out)
	}
	passwd := string(readFile(t, filepath.Join(root, "etc/passwd")))
	group := string(readFile(t, filepath.Join(root, "etc/group")))
	var uid, gid string
	for _, line := range strings.Split(passwd, "\n") {
		f := strings.Split(line, ":")
		if len(f) == 7 && f[0] == "_timed" {
			uid, gid = f[2], f[3]
			if f[5] != "/var/lib/timed" || f[6] != "/usr/sbin/nologin" {
				t.Errorf("passwd: %q, want home /var/lib/timed and shell nologin", line)
			}
		}
	}
	if uid == "" {
		t.Fatalf("no _timed in passwd:\n%s", passwd)
	}
	for _, g := range []string{"_timed:x:" + gid + ":", "\ntimed:x:"} {
		if !strings.Contains("\n"+group, g) {
			t.Errorf("group file lacks %q:\n%s", g, group)
		}
	}
	out, err := run("stat", "-c", "%a %u %g", filepath.Join(root, "var/lib/timed"))
	if want := "750 " + uid + " " + gid; err != nil || strings.TrimSpace(out) != want {
		t.Errorf("var/lib/timed: %q %v, want %q", out, err, want)
	}
}

// systemd-sysusers and systemd-tmpfiles make the user, the operators'
// group and the state directory from the shipped files.
func TestSysusersAndTmpfiles(t *testing.T) {
	testenv.RequireRoot(t) // tmpfiles gives /var/lib/timed its owner
	root := t.TempDir()
	copyFile(t, "sysusers.d/timed.conf", filepath.Join(root, "usr/lib/sysusers.d/timed.conf"), 0o644)
	copyFile(t, "tmpfiles.d/timed.conf", filepath.Join(root, "usr/lib/tmpfiles.d/timed.conf"), 0o644)
	checkUsersAndState(t, root)
}

// make deb's script builds a package whose fields and files are right;
// unpacked into a scratch root, its units verify, its users and state
// directory are made, and its /etc/timed/timed.yaml is the default built
// into timed.
func TestDeb(t *testing.T) {
	testenv.RequireRoot(t)
	dpkgDeb := testenv.LookPath(t, "dpkg-deb", "/usr/bin/dpkg-deb")
	analyze := testenv.LookPath(t, "systemd-analyze", "/usr/bin/systemd-analyze")
	lintian := testenv.LookPath(t, "lintian", "/usr/bin/lintian")
	out := t.TempDir()
	stdout, err := exec.Command("./build-deb.sh", out, "1.2.3~test").Output()
	if err != nil {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		t.Fatalf("build-deb.sh: %v\n%s", err, stderr)
	}
	deb := strings.TrimSpace(string(stdout))
	if filepath.Dir(deb) != out || !strings.HasPrefix(filepath.Base(deb), "timed_1.2.3~test_") {
		t.Fatalf("build-deb.sh made %q", deb)
	}
	// lintian-clean: no error and no warning (its informational tags,
	// such as a systemd unit without an init.d script, are allowed).
	if lout, err := exec.Command(lintian, "--fail-on", "error,warning", "--tag-display-limit", "0", deb).CombinedOutput(); err != nil {
		t.Errorf("lintian: %v\n%s", err, lout)
	}

	fields := []struct{ name, want string }{
		{"Package", "timed"},
		{"Version", "1.2.3~test"},
		{"Provides", "time-daemon"},
		{"Conflicts", "time-daemon"},
		{"Replaces", "time-daemon"},
		{"Section", "net"},
	}
	for _, f := range fields {
		got, err := run(dpkgDeb, "-f", deb, f.name)
		if err != nil || strings.TrimSpace(got) != f.want {
			t.Errorf("control field %s: %q %v, want %q", f.name, got, err, f.want)
		}
	}
	info, err := run(dpkgDeb, "-I", deb)
	if err != nil {
		t.Fatalf("dpkg-deb -I: %v\n%s", err, info)
	}
	for _, f := range []string{"conffiles", "postinst", "prerm", "postrm"} {
		if !strings.Contains(info, " "+f+" ") {
			t.Errorf("control archive has no %s:\n%s", f, info)
		}
	}

	list, err := run(dpkgDeb, "-c", deb)
	if err != nil {
		t.Fatalf("dpkg-deb -c: %v\n%s", err, list)
	}
	files := []struct{ path, mode string }{
		{"./usr/bin/timed", "-rwxr-xr-x"},
		{"./usr/bin/timectl", "-rwxr-xr-x"},
		{"./usr/lib/systemd/system/timed.service", "-rw-r--r--"},
		{"./usr/lib/systemd/system/timed-wait.service", "-rw-r--r--"},
		{"./usr/lib/systemd/system/timed-sock@.socket", "-rw-r--r--"},
		{"./usr/lib/sysusers.d/timed.conf", "-rw-r--r--"},
		{"./usr/lib/tmpfiles.d/timed.conf", "-rw-r--r--"},
		{"./usr/lib/udev/rules.d/60-timed.rules", "-rw-r--r--"},
		{"./etc/apparmor.d/usr.bin.timed", "-rw-r--r--"},
		{"./etc/timed/timed.yaml", "-rw-r--r--"},
		{"./usr/share/doc/timed/PACKAGING.md", "-rw-r--r--"},
		{"./usr/share/doc/timed/examples/timed.service.d/ptp-ethernet.conf", "-rw-r--r--"},
		{"./usr/share/man/man8/timed.8.gz", "-rw-r--r--"},
		{"./usr/share/man/man1/timectl.1.gz", "-rw-r--r--"},
		{"./usr/share/man/man1/timectl-waitsync.1.gz", "-rw-r--r--"},
	}
	for _, f := range files {
		found := false
		for _, line := range strings.Split(list, "\n") {
			fs := strings.Fields(line)
			if len(fs) >= 6 && fs[len(fs)-1] == f.path {
				found = true
				if fs[0] != f.mode || fs[1] != "root/root" {
					t.Errorf("%s: %s %s, want %s root/root", f.path, fs[0], fs[1], f.mode)
				}
			}
		}
		if !found {
			t.Errorf("the package lacks %s:\n%s", f.path, list)
		}
	}

	root := t.TempDir()
	if out, err := run(dpkgDeb, "-x", deb, root); err != nil {
		t.Fatalf("dpkg-deb -x: %v\n%s", err, out)
	}
	conffiles, err := run("sh", "-c", dpkgDeb+" --ctrl-tarfile '"+deb+"' | tar -xOf - ./conffiles")
	if err != nil || conffiles != "/etc/timed/timed.yaml\n/etc/apparmor.d/usr.bin.timed\n" {
		t.Errorf("conffiles %q %v", conffiles, err)
	}
	yaml := readFile(t, filepath.Join(root, "etc/timed/timed.yaml"))
	if !bytes.Equal(yaml, config.DefaultYAML) {
		t.Error("the package's /etc/timed/timed.yaml differs from the default built into timed")
	}
	if _, err := config.Parse("timed.yaml", yaml); err != nil {
		t.Errorf("the package's timed.yaml: %v", err)
	}
	if out, err := run(filepath.Join(root, "usr/bin/timed"), "--version"); err != nil || !strings.Contains(out, "1.2.3~test") {
		t.Errorf("timed --version: %q %v", out, err)
	}

	// The units, verified against the unpacked tree and the system's units.
	vroot := unitRoot(t, map[string][]byte{
		"timed.service":      readFile(t, filepath.Join(root, "usr/lib/systemd/system/timed.service")),
		"timed-wait.service": readFile(t, filepath.Join(root, "usr/lib/systemd/system/timed-wait.service")),
		"timed-sock@.socket": readFile(t, filepath.Join(root, "usr/lib/systemd/system/timed-sock@.socket")),
	})
	for _, prog := range []string{"usr/bin/timed", "usr/bin/timectl"} {
		copyFile(t, filepath.Join(root, prog), filepath.Join(vroot, prog), 0o755)
	}
	for _, u := range []string{"timed.service", "timed-wait.service", "timed-sock@ttyS0.socket"} {
		if out, err := run(analyze, "--root="+vroot, "verify", filepath.Join(vroot, "usr/lib/systemd/system", u)); err != nil || strings.TrimSpace(out) != "" {
			t.Errorf("systemd-analyze verify %s from the package: %v\n%s", u, err, out)
		}
	}
	checkUsersAndState(t, root)
}

// syscallGroups parses `systemd-analyze syscall-filter`: each @group and
// what it lists (calls and other groups).
func syscallGroups(out string) map[string][]string {
	groups := map[string][]string{}
	cur := ""
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) == 0 || strings.HasPrefix(f[0], "#"):
		case !strings.HasPrefix(line, " ") && strings.HasPrefix(f[0], "@"):
			cur = f[0]
		case cur != "":
			groups[cur] = append(groups[cur], f[0])
		}
	}
	return groups
}

// expandFilter is the set of calls a SystemCallFilter= list allows.
func expandFilter(groups map[string][]string, list []string) map[string]bool {
	out := map[string]bool{}
	var add func(item string, depth int)
	add = func(item string, depth int) {
		if !strings.HasPrefix(item, "@") {
			out[item] = true
			return
		}
		if depth > 10 {
			return
		}
		for _, x := range groups[item] {
			add(x, depth+1)
		}
	}
	for _, item := range list {
		add(item, 0)
	}
	return out
}

// Every system call timed's own seccomp filter allows (read from its
// allow-list in daemon/) is also allowed by the unit's SystemCallFilter=,
// so the two filters do not disagree; and seccomp(2) itself is allowed,
// or timed could not install its own.
func TestUnitSyscallFilterCoversTimed(t *testing.T) {
	analyze := testenv.LookPath(t, "systemd-analyze", "/usr/bin/systemd-analyze")
	out, err := run(analyze, "syscall-filter")
	if err != nil {
		t.Fatalf("systemd-analyze syscall-filter: %v\n%s", err, out)
	}
	filter := strings.Fields(unitSettings(readFile(t, "systemd/timed.service"))["SystemCallFilter"])
	allowed := expandFilter(syscallGroups(out), filter)
	if len(allowed) < 100 {
		t.Fatalf("SystemCallFilter=%v allows only %d calls: systemd-analyze's output was not understood", filter, len(allowed))
	}
	common, _, ok := strings.Cut(string(readFile(t, "../daemon/seccomp_linux.go")), "var forbiddenSyscalls")
	if !ok {
		t.Fatal("daemon/seccomp_linux.go: no forbiddenSyscalls after the allow-list")
	}
	src := common + string(readFile(t, "../daemon/seccomp_amd64.go"))
	names := regexp.MustCompile(`unix\.SYS_([A-Z0-9_]+)`).FindAllStringSubmatch(src, -1)
	if len(names) < 100 {
		t.Fatalf("found only %d system calls in timed's allow-list", len(names))
	}
	for _, want := range append([]string{"seccomp"}, func() []string {
		var s []string
		for _, m := range names {
			s = append(s, strings.ToLower(m[1]))
		}
		return s
	}()...) {
		if !allowed[want] {
			t.Errorf("timed allows %s, the unit's SystemCallFilter=%s does not", want, strings.Join(filter, " "))
		}
	}
}
