package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

func TestUsage(t *testing.T) {
	tests := []struct {
		name string
		args []string
		code int
		err  string
	}{
		{"help", []string{"-h"}, 0, "Usage: ntpload"},
		{"no server", nil, 2, "want one server"},
		{"two servers", []string{"127.0.0.1:1", "127.0.0.1:2"}, 2, "want one server"},
		{"bad server", []string{"localhost"}, 2, "server:"},
		{"bad first source", []string{"-first-source", "x", "127.0.0.1:123"}, 2, "-first-source"},
		{"bad output", []string{"-o", "yaml", "127.0.0.1:123"}, 2, "want text or json"},
		{"unknown flag", []string{"-frobnicate", "127.0.0.1:123"}, 2, "flag provided but not defined"},
		{"bad option", []string{"-burst", "1000", "127.0.0.1:123"}, 1, "burst 1000"},
		{"IPv6 server", []string{"[::1]:123"}, 1, "want an IPv4"},
		{"bad protocol", []string{"-protocol", "ptp", "127.0.0.1:319"}, 1, `protocol "ptp"`},
		{"pad with NTP", []string{"-pad", "127.0.0.1:123"}, 1, "padding is for SPTP"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(context.Background(), tt.args, &stdout, &stderr)
			if code != tt.code || !strings.Contains(stderr.String(), tt.err) {
				t.Fatalf("exit %d, stderr %q; want exit %d and %q", code, stderr.String(), tt.code, tt.err)
			}
		})
	}
}
