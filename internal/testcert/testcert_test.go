package testcert

import (
	"crypto/tls"
	"crypto/x509"
	"testing"
)

func TestNew(t *testing.T) {
	dir := t.TempDir()
	a := New(t, dir)
	if _, err := tls.LoadX509KeyPair(a.CertFile, a.KeyFile); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"localhost", "127.0.0.1", "::1"} {
		if _, err := a.TLS.Leaf.Verify(x509.VerifyOptions{Roots: a.Pool, DNSName: name}); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	b := New(t, dir, "time.example")
	if b.TLS.Leaf.SerialNumber.Cmp(a.TLS.Leaf.SerialNumber) == 0 {
		t.Error("two certificates with one serial number")
	}
	if _, err := b.TLS.Leaf.Verify(x509.VerifyOptions{Roots: b.Pool, DNSName: "localhost"}); err == nil {
		t.Error("a certificate for time.example verifies for localhost")
	}
}
