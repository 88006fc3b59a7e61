package nts

import (
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/timed-project/timed/internal/testenv"
)

// TestTsharkDecodes checks the wire form against an independent decoder:
// tshark reads a request with placeholders and its response (written to a
// pcap file, nothing goes on a network) as NTP with exactly the NTS
// extension fields built, their lengths, no MAC and no complaint.
func TestTsharkDecodes(t *testing.T) {
	tshark := testenv.LookPath(t, "tshark")
	s := newSetup(t)
	req, _ := s.request(t, 2)
	resp := s.serve(t, req)
	path := filepath.Join(t.TempDir(), "nts.pcap")
	if err := os.WriteFile(path, pcap(req, resp), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(tshark, "-n", "-r", path, "-T", "fields", "-E", "separator=|",
		"-e", "ntp.flags.mode", "-e", "ntp.ext.type", "-e", "ntp.ext.length", "-e", "ntp.mac", "-e", "_ws.expert").Output()
	if err != nil {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		t.Fatalf("tshark: %v\n%s", err, stderr)
	}
	authLen := len(resp) - ntpHeaderLen - 36
	want := []string{
		"3|0x0104,0x0204,0x0304,0x0304,0x0404|36,108,108,108,40||",
		fmt.Sprintf("4|0x0104,0x0404|36,%d||", authLen),
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) != len(want) {
		t.Fatalf("tshark decoded %d packets, want %d:\n%s", len(lines), len(want), out)
	}
	for i := range want {
		if got := strings.TrimSpace(lines[i]); got != want[i] {
			t.Errorf("packet %d: tshark says\n\t%s\nwant\n\t%s", i+1, got, want[i])
		}
	}
}

// pcap wraps NTP payloads in IPv4/UDP (127.0.0.1:50000 <-> :123) in a pcap
// file of link type RAW.
func pcap(payloads ...[]byte) []byte {
	b := binary.LittleEndian.AppendUint32(nil, 0xa1b2c3d4)
	b = binary.LittleEndian.AppendUint16(b, 2)
	b = binary.LittleEndian.AppendUint16(b, 4)
	b = append(b, make([]byte, 8)...)              // time zone, accuracy
	b = binary.LittleEndian.AppendUint32(b, 65535) // snap length
	b = binary.LittleEndian.AppendUint32(b, 101)   // LINKTYPE_RAW
	for i, p := range payloads {
		src, dst := uint16(50000), uint16(123)
		if i%2 == 1 {
			src, dst = dst, src
		}
		ip := make([]byte, 20, 28+len(p))
		ip[0] = 0x45
		binary.BigEndian.PutUint16(ip[2:], uint16(28+len(p)))
		ip[8], ip[9] = 64, 17
		copy(ip[12:], []byte{127, 0, 0, 1})
		copy(ip[16:], []byte{127, 0, 0, 1})
		var sum uint32
		for j := 0; j < 20; j += 2 {
			sum += uint32(binary.BigEndian.Uint16(ip[j:]))
		}
		sum = sum>>16 + sum&0xffff
		sum += sum >> 16
		binary.BigEndian.PutUint16(ip[10:], ^uint16(sum))
		ip = binary.BigEndian.AppendUint16(ip, src)
		ip = binary.BigEndian.AppendUint16(ip, dst)
		ip = binary.BigEndian.AppendUint16(ip, uint16(8+len(p)))
		ip = binary.BigEndian.AppendUint16(ip, 0) // no UDP checksum
		ip = append(ip, p...)
		b = binary.LittleEndian.AppendUint32(b, uint32(1_700_000_000+i))
		b = binary.LittleEndian.AppendUint32(b, 0)
		b = binary.LittleEndian.AppendUint32(b, uint32(len(ip)))
		b = binary.LittleEndian.AppendUint32(b, uint32(len(ip)))
		b = append(b, ip...)
	}
	return b
}
