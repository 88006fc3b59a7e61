//go:build linux

package netstamp

import (
	"net"
	"net/netip"
	"testing"
	"time"
)

// TestBatchRoundTrip sends datagrams to a wildcard-bound BatchConn at two
// loopback addresses, answers them in one batch from the address each came
// to, and checks receive timestamps, destination addresses and transmit
// timestamps.
func TestBatchRoundTrip(t *testing.T) {
	var stamps []uint32
	bc, err := ListenBatch(netip.MustParseAddrPort("0.0.0.0:0"), 8, BatchOptions{
		ReusePort: true,
		TxStamp:   func(id uint32, sys time.Time) { stamps = append(stamps, id) },
	})
	if err != nil {
		t.Fatal(err)
	}
	defer bc.Close()
	port := bc.LocalAddr().Port()

	client, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	dests := []netip.Addr{netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("127.0.0.2")}
	before := time.Now()
	for i, d := range dests {
		if _, err := client.WriteToUDPAddrPort([]byte{byte(i), 1, 2, 3}, netip.AddrPortFrom(d, port)); err != nil {
			t.Fatal(err)
		}
	}
	msgs := make([]Message, 8)
	for i := range msgs {
		msgs[i].Buf = make([]byte, 2)
	}
	var got []Message
	for len(got) < 2 {
		n, err := bc.ReadBatch(msgs)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range msgs[:n] {
			m.Buf = append([]byte(nil), m.Buf[:m.N]...)
			got = append(got, m)
		}
	}
	for _, m := range got {
		i := int(m.Buf[0])
		if m.Local != dests[i] {
			t.Errorf("datagram %d: Local %s, want %s", i, m.Local, dests[i])
		}
		if !m.Truncated || m.N != 2 {
			t.Errorf("datagram %d: N %d truncated %v, want 2 and true (4 bytes into 2)", i, m.N, m.Truncated)
		}
		if m.RxTime.Before(before.Add(-time.Second)) || m.RxTime.After(time.Now()) {
			t.Errorf("datagram %d: receive time %v not around now", i, m.RxTime)
		}
	}
	replies := make([]Message, len(got))
	for i, m := range got {
		replies[i] = Message{Buf: []byte{m.Buf[0], 9}, Addr: m.Addr, Local: m.Local, IfIndex: m.IfIndex, StampTx: true}
	}
	sent, failed, err := bc.WriteBatch(replies)
	if err != nil || sent != len(replies) || failed != 0 {
		t.Fatalf("WriteBatch: sent %d failed %d err %v", sent, failed, err)
	}
	if replies[0].TxID == replies[1].TxID {
		t.Errorf("both replies have TxID %d", replies[0].TxID)
	}
	client.SetReadDeadline(time.Now().Add(2 * time.Second))
	buf := make([]byte, 16)
	for range replies {
		n, from, err := client.ReadFromUDPAddrPort(buf)
		if err != nil {
			t.Fatal(err)
		}
		if n != 2 || from.Addr() != dests[buf[0]] || from.Port() != port {
			t.Errorf("reply %v from %s; want it from %s:%d", buf[:n], from, dests[buf[0]], port)
		}
	}
	// The kernel's transmit timestamps arrive through the callback, which
	// runs from ReadBatch or DrainTxStamps.
	deadline := time.Now().Add(time.Second)
	for len(stamps) < 2 && time.Now().Before(deadline) {
		bc.DrainTxStamps()
		time.Sleep(5 * time.Millisecond)
	}
	if len(stamps) != 2 || stamps[0] != replies[0].TxID || stamps[1] != replies[1].TxID {
		t.Errorf("transmit stamps for IDs %v, want %d and %d", stamps, replies[0].TxID, replies[1].TxID)
	}
}

func TestBatchReadAllocatesNothing(t *testing.T) {
	bc, err := ListenBatch(netip.MustParseAddrPort("127.0.0.1:0"), 4, BatchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer bc.Close()
	client, err := net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(bc.LocalAddr()))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	msgs := []Message{{Buf: make([]byte, 64)}}
	out := []Message{{Buf: make([]byte, 48)}}
	allocs := testing.AllocsPerRun(100, func() {
		client.Write(make([]byte, 48))
		if n, err := bc.ReadBatch(msgs); err != nil || n != 1 {
			t.Fatalf("ReadBatch: %d %v", n, err)
		}
		out[0].Addr = msgs[0].Addr
		bc.WriteBatch(out)
	})
	if allocs > 1 { // the client's Write buffer
		t.Errorf("%.1f allocations per round trip, want none in BatchConn", allocs)
	}
}
