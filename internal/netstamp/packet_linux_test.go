package netstamp

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/timed-project/timed/internal/testenv"
)

const etherTypePTP = 0x88F7

var (
	macPTPPrimary   = net.HardwareAddr{0x01, 0x1b, 0x19, 0x00, 0x00, 0x00}
	macPTPPeerDelay = net.HardwareAddr{0x01, 0x80, 0xc2, 0x00, 0x00, 0x0e}
)

func TestPacketVeth(t *testing.T) {
	p := newVeth(t)
	conns := openPacketPair(t, p)
	cases := []struct {
		name string
		to   func(side int) net.HardwareAddr
	}{
		{"primary group", func(int) net.HardwareAddr { return macPTPPrimary }},
		{"peer delay group", func(int) net.HardwareAddr { return macPTPPeerDelay }},
		{"unicast", func(side int) net.HardwareAddr { return p[side].MAC }},
	}
	buf := make([]byte, 1500)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var maxD time.Duration
			for seq := range 20 {
				from, to := seq%2, 1-seq%2
				src, d := exchange(t, seq, conns[from], conns[to], tc.to(to), buf)
				if src.String() != p[from].MAC.String() {
					t.Errorf("seq %d: from %v, want %v", seq, src, p[from].MAC)
				}
				maxD = max(maxD, d)
			}
			t.Logf("largest rx - tx: %v", maxD)
			// Neither side reads back the frames it sent itself.
			for i := range 2 {
				ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
				n, src, _, _, err := conns[i].ReadFromContext(ctx, buf)
				cancel()
				if err == nil {
					t.Errorf("side %d read %d more bytes from %v", i, n, src)
				}
			}
		})
	}
	t.Run("unstamped", func(t *testing.T) {
		if err := conns[0].WriteToUnstamped([]byte("general message, long enough"), macPTPPrimary); err != nil {
			t.Fatal(err)
		}
		conns[1].SetReadDeadline(time.Now().Add(2 * time.Second))
		n, _, _, rxst, err := conns[1].ReadFrom(buf)
		if err != nil || !strings.HasPrefix(string(buf[:n]), "general message") || rxst != StampKernel {
			t.Errorf("got %q, %v, %v", buf[:n], rxst, err)
		}
	})
}

// TestPacketTshark captures the frames in the receiving namespace and
// checks that tshark decodes them as PTPv2 Sync messages.
func TestPacketTshark(t *testing.T) {
	tshark := testenv.LookPath(t, "tshark")
	p := newVeth(t)
	conns := openPacketPair(t, p)
	pcap := filepath.Join(t.TempDir(), "l2.pcap")
	const frames = 6
	cmd := exec.Command("ip", "netns", "exec", p[1].Netns, tshark, "-i", p[1].Iface, "-f", "ether proto 0x88f7",
		"-c", fmt.Sprint(frames), "-w", pcap)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	// tshark says "Capturing on" once the capture runs.
	started := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stderr)
		once := false
		for sc.Scan() {
			if !once && strings.Contains(sc.Text(), "Capturing on") {
				close(started)
				once = true
			}
		}
	}()
	select {
	case <-started:
	case <-time.After(20 * time.Second):
		t.Fatal("tshark did not start capturing")
	}
	// The capture may begin a little after tshark says so: send rounds of
	// frames to the three destinations until it has its count.
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	dsts := []net.HardwareAddr{macPTPPrimary, macPTPPeerDelay, p[1].MAC}
	timeout := time.After(20 * time.Second)
	for seq := 0; ; seq++ {
		if _, _, err := conns[0].WriteTo(syncMessage(t, uint16(seq)), dsts[seq%3]); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("tshark capture: %v", err)
			}
		case <-timeout:
			t.Fatal("tshark did not capture the frames")
		case <-time.After(50 * time.Millisecond):
			continue
		}
		break
	}
	out, err := exec.Command(tshark, "-r", pcap, "-T", "fields", "-E", "separator=,",
		"-e", "eth.dst", "-e", "eth.type", "-e", "ptp.v2.messagetype", "-e", "ptp.v2.sequenceid").CombinedOutput()
	if err != nil {
		t.Fatalf("tshark -r: %v: %s", err, out)
	}
	var lines []string
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if strings.Contains(l, ",") { // skip tshark's notes about running as root
			lines = append(lines, l)
		}
	}
	if len(lines) != frames {
		t.Fatalf("tshark decoded %d frames, want %d:\n%s", len(lines), frames, out)
	}
	t.Logf("tshark (eth.dst, eth.type, ptp.v2.messagetype, ptp.v2.sequenceid): %s", strings.Join(lines, "; "))
	seen := map[string]bool{}
	for i, l := range lines {
		f := strings.Split(l, ",")
		if len(f) != 4 || f[1] != "0x88f7" || f[2] != "0x00" || f[3] == "" {
			t.Errorf("frame %d: tshark says %q, want a PTPv2 Sync (messagetype 0x00) with a sequence id", i, l)
			continue
		}
		seen[f[0]] = true
	}
	for _, d := range dsts {
		if !seen[d.String()] {
			t.Errorf("no frame to %v decoded", d)
		}
	}
}

func TestListenPacketErrors(t *testing.T) {
	cases := []struct {
		name      string
		ifname    string
		etherType uint16
	}{
		{"no such interface", "nosuch0", etherTypePTP},
		{"length, not a type", "lo", 0x05dc},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := ListenPacket(tc.ifname, tc.etherType, LinkOptions{})
			if err == nil {
				c.Close()
				t.Fatal("no error")
			}
		})
	}
	t.Run("bad addresses", func(t *testing.T) {
		p := newVeth(t)
		conns := openPacketPair(t, p)
		if err := conns[0].JoinGroup(p[1].MAC); err == nil {
			t.Error("joined a unicast MAC address as a group")
		}
		if _, _, err := conns[0].WriteTo([]byte("x"), net.HardwareAddr{1, 2, 3}); err == nil {
			t.Error("sent to a 3-byte MAC address")
		}
	})
}
