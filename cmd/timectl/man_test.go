package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

// roffText turns a man page into plain words: roff escapes undone, lines
// joined, runs of white space made one space.
func roffText(page string) string {
	r := strings.NewReplacer(`\-`, "-", `\&`, "", `\(aq`, "'", `\(dq`, `"`, `\\`, `\`, `\fB`, "", `\fR`, "", `\fI`, "", `\fP`, "")
	var lines []string
	for _, l := range strings.Split(page, "\n") {
		if strings.HasPrefix(l, ".") {
			continue // a roff request
		}
		lines = append(lines, r.Replace(l))
	}
	return strings.Join(strings.Fields(strings.Join(lines, " ")), " ")
}

// TestManPages builds timectl and timed with the genman tag, writes their
// man pages into a temporary directory, and checks that every visible
// command has a page holding its long help and its exit status.
func TestManPages(t *testing.T) {
	goCmd := filepath.Join(runtime.GOROOT(), "bin", "go")
	dir := t.TempDir()
	for _, pkg := range []string{".", "../timed"} {
		out, err := exec.Command(goCmd, "run", "-tags", "genman", pkg, "__man", dir).CombinedOutput()
		if err != nil {
			t.Fatalf("go run -tags genman %s __man: %v\n%s", pkg, err, out)
		}
	}
	type want struct{ file, long string }
	var wants []want
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		if !c.IsAvailableCommand() && c.HasParent() || c.Name() == "completion" {
			return // hidden, or cobra's own completion commands
		}
		wants = append(wants, want{strings.ReplaceAll(c.CommandPath(), " ", "-") + ".1", c.Long})
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(newRootCommand(context.Background(), false))
	wants = append(wants, want{"timed.8", "timed keeps the clock synchronized to the time sources its configuration names."})
	if len(wants) < 12 {
		t.Fatalf("only %d commands found", len(wants))
	}
	for _, w := range wants {
		b, err := os.ReadFile(filepath.Join(dir, w.file))
		if err != nil {
			t.Errorf("no page: %v", err)
			continue
		}
		page := roffText(string(b))
		// The first paragraph of the long help, and the exit status.
		first, _, _ := strings.Cut(w.long, "\n\n")
		if p := strings.Join(strings.Fields(first), " "); !strings.Contains(page, p) {
			t.Errorf("%s lacks the long help %q:\n%s", w.file, p, page)
		}
		if !strings.Contains(page, "Exit status: 0") {
			t.Errorf("%s lacks the exit status", w.file)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "timectl-completion-bash.1")); err != nil {
		t.Errorf("completion: %v", err)
	}
}

// TestCompletion checks the completion command and the --output values.
func TestCompletion(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"completion", "bash"}, "__start_timectl"},
		{[]string{"completion", "zsh"}, "#compdef timectl"},
		{[]string{"completion", "fish"}, "complete -c timectl"},
		{[]string{"__complete", "status", "-o", ""}, "json\n"},
		{[]string{"__complete", "wa"}, "waitsync\t"},
	} {
		code, out, errOut := runArgs(t, tc.args...)
		if code != 0 || !strings.Contains(out, tc.want) {
			t.Errorf("%q: exit %d, want %q in:\n%.300s%s", tc.args, code, tc.want, out, errOut)
		}
	}
}
