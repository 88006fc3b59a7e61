//go:build linux

package interop

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/timed-project/timed/internal/peers"
	"github.com/timed-project/timed/internal/testenv"
)

// chronyServerWithCommands starts a chronyd server whose command socket is
// in the test's directory, and returns it with that socket.
func chronyServerWithCommands(t *testing.T, extra ...string) (*peers.Chrony, string) {
	t.Helper()
	sockDir := filepath.Join(t.TempDir(), "run")
	if err := os.Mkdir(sockDir, 0o700); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(sockDir, "chronyd.sock")
	srv := peers.StartChronyServer(t, peers.ChronyOptions{RunAsRoot: true, Extra: append(extra, "bindcmdaddress "+sock)})
	return srv, sock
}

// chronydReceived is chronyd's count of NTP packets received.
func chronydReceived(t *testing.T, chronyc, sock string) int {
	t.Helper()
	out, err := exec.Command(chronyc, "-h", sock, "-n", "serverstats").CombinedOutput()
	if err != nil {
		t.Fatalf("chronyc serverstats: %v\n%s", err, out)
	}
	n, err := strconv.Atoi(chronycFields(string(out))["NTP packets received"])
	if err != nil {
		t.Fatalf("chronyc serverstats: no packet count:\n%s", out)
	}
	return n
}

// TestTimectlRuntimeSources: timed started without sources; `timectl add
// server 127.0.0.1:PORT --iburst` makes a chronyd server a source, marked
// as added at runtime, that gets selected; `timectl sourcestats` shows its
// samples; `timectl burst` makes chronyd receive a request within a second
// while the source would otherwise wait a minute; `timectl remove` removes
// it.
func TestTimectlRuntimeSources(t *testing.T) {
	t.Parallel()
	testenv.RequireRoot(t)
	chronyc := testenv.LookPath(t, "chronyc", "/usr/bin/chronyc")
	srv, sock := chronyServerWithCommands(t)
	cfg := simulatedStart
	cfg.Name = "timectl-add"
	cfg.NoSources = true
	tp := startTimed(t, cfg, "")

	name := srv.Addr.String()
	if out := runTimectl(t, tp, "add", "server", name, "--iburst"); !strings.Contains(out, "added server "+name) {
		t.Fatalf("timectl add: %q", out)
	}
	var src sourceStatus
	deadline := time.Now().Add(20 * time.Second)
	for {
		var st struct {
			Engine struct {
				Sources []struct {
					sourceStatus
					Runtime bool `json:"runtime"`
				} `json:"sources"`
			} `json:"engine"`
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		err := tp.query(ctx, &st, "sources")
		cancel()
		if err == nil && len(st.Engine.Sources) == 1 {
			src = st.Engine.Sources[0].sourceStatus
			if !st.Engine.Sources[0].Runtime {
				t.Fatalf("the added source is not marked as added at runtime: %+v", st.Engine.Sources[0])
			}
			if src.State == "selected" {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the added source is not selected after 20 s: %+v %v\n%s", st.Engine.Sources, err, tp.Tail(30))
		}
		time.Sleep(250 * time.Millisecond)
	}
	t.Logf("selected %s after %d samples", src.Name, src.Samples)
	text := runTimectl(t, tp, "sources")
	if !strings.Contains(text, name+" +") || !strings.Contains(text, "added with timectl add") {
		t.Errorf("timectl sources does not mark the added source:\n%s", text)
	}

	var stats struct {
		Sources []struct {
			Name    string  `json:"name"`
			Samples int     `json:"samples"`
			Window  int     `json:"window"`
			Span    float64 `json:"span_s"`
			Poll    int     `json:"poll"`
		} `json:"sources"`
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	err := tp.query(ctx, &stats, "sourcestats")
	cancel()
	if err != nil || len(stats.Sources) != 1 || stats.Sources[0].Samples < 1 || stats.Sources[0].Window < 1 {
		t.Fatalf("timectl sourcestats -o json: %+v %v", stats, err)
	}
	t.Logf("sourcestats: %+v\n%s", stats.Sources[0], runTimectl(t, tp, "sourcestats"))

	// Wait until the iburst is over (no request for 3 s), then burst.
	quiet := time.Now().Add(20 * time.Second)
	n0 := chronydReceived(t, chronyc, sock)
	for {
		time.Sleep(3 * time.Second)
		n := chronydReceived(t, chronyc, sock)
		if n == n0 {
			break
		}
		if time.Now().After(quiet) {
			t.Fatalf("timed keeps polling chronyd every few seconds (%d → %d): no quiet time to see a burst in", n0, n)
		}
		n0 = n
	}
	burstAt := time.Now()
	if out := runTimectl(t, tp, "burst"); !strings.Contains(out, "burst started on 1 source: "+name) {
		t.Errorf("timectl burst: %q", out)
	}
	for n := chronydReceived(t, chronyc, sock); n <= n0; n = chronydReceived(t, chronyc, sock) {
		if time.Since(burstAt) > time.Second {
			t.Fatalf("chronyd received nothing within 1 s of timectl burst (%d packets)", n)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("chronyd received a request %v after timectl burst", time.Since(burstAt).Round(time.Millisecond))

	if out := runTimectl(t, tp, "remove", name); !strings.Contains(out, "removed "+name) {
		t.Errorf("timectl remove: %q", out)
	}
	if out := runTimectl(t, tp, "sources"); !strings.Contains(out, "No sources.") {
		t.Errorf("timectl sources after remove:\n%s", out)
	}
}

// TestTimectlNTS: `timectl nts` against timed with an NTS client of a
// chronyd NTS server (as TestNTSClientChrony) shows the key exchange done,
// the AEAD and 8 cookies.
func TestTimectlNTS(t *testing.T) {
	t.Parallel()
	testenv.RequireRoot(t)
	binaries(t)
	certFile, keyFile := writeNTSCert(t, t.TempDir())
	kePort := peers.FreeTCPPort(t)
	srv, _ := chronyServerWithCommands(t, fmt.Sprintf("ntsport %d", kePort), "ntsservercert "+certFile,
		"ntsserverkey "+keyFile, "ntsdumpdir "+t.TempDir(), "bindaddress ::1")
	cfg := simulatedStart
	cfg.Name = "timectl-nts"
	cfg.Port = 9 // the NTP port comes from NTS-KE
	cfg.NTS = fmt.Sprintf("{port: %d, ca: %s}", kePort, certFile)
	tp := startTimed(t, cfg, "")

	type ntsClient struct {
		Name       string `json:"name"`
		KEServer   string `json:"ke_server"`
		KEState    string `json:"ke_state"`
		AEAD       string `json:"aead"`
		NTPServer  string `json:"ntp_server"`
		Cookies    int    `json:"cookies"`
		MaxCookies int    `json:"max_cookies"`
	}
	var r struct {
		Clients []ntsClient `json:"clients"`
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		err := tp.query(ctx, &r, "nts")
		cancel()
		if err == nil && len(r.Clients) == 1 && r.Clients[0].KEState == "ok" && r.Clients[0].Cookies == 8 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("timectl nts -o json: %+v %v; want one client, key exchange ok, 8 cookies\n%s", r, err, tp.Tail(30))
		}
		time.Sleep(200 * time.Millisecond)
	}
	c := r.Clients[0]
	if c.AEAD != "AEAD_AES_SIV_CMAC_256" || c.MaxCookies != 8 || c.KEServer != fmt.Sprintf("127.0.0.1:%d", kePort) || c.NTPServer != srv.Addr.String() {
		t.Errorf("timectl nts -o json: %+v; want AEAD_AES_SIV_CMAC_256, KE server 127.0.0.1:%d, NTP server %s", c, kePort, srv.Addr)
	}
	text := runTimectl(t, tp, "nts")
	t.Logf("timectl nts:\n%s", text)
	for _, want := range []string{"ok", "AEAD_AES_SIV_CMAC_256", srv.Addr.String(), "timed serves no NTS"} {
		if !strings.Contains(text, want) {
			t.Errorf("timectl nts lacks %q", want)
		}
	}
}
