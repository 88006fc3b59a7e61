package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestRewrite(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "docs", "PERFORMANCE.md")
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	// Missing file: created with the introduction.
	if err := rewrite(path, "| table one |\n"); err != nil {
		t.Fatal(err)
	}
	// Rewritten: the table is replaced, what surrounds it stays.
	data, _ := os.ReadFile(path)
	edited := strings.Replace(string(data), "# Performance", "# Performance\n\nA note of our own.", 1) + "\nAfter the table.\n"
	if err := os.WriteFile(path, []byte(edited), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := rewrite(path, "| second |\n"); err != nil {
		t.Fatal(err)
	}
	data, _ = os.ReadFile(path)
	got := string(data)
	for _, want := range []string{"A note of our own.", "After the table.", beginMarker + "\n| second |\n" + endMarker} {
		if !strings.Contains(got, want) {
			t.Errorf("file lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "table one") {
		t.Errorf("old table kept:\n%s", got)
	}

	// A file without the markers is an error, and is left alone.
	bad := filepath.Join(dir, "bad.md")
	if err := os.WriteFile(bad, []byte("no markers\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := rewrite(bad, "x"); err == nil || !strings.Contains(err.Error(), "markers") {
		t.Fatalf("error %v", err)
	}
}
