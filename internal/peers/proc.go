package peers

import (
	"os"
	"strings"
	"syscall"
	"time"
)

// ProcOptions says how Start runs a program.
type ProcOptions struct {
	// Name names the process in messages and its output file; "" means
	// the base name of the program.
	Name string
	// Dir is the working directory, where the output goes (NAME.log);
	// "" means a new temporary directory of the test.
	Dir string
	// Netns is the network namespace to run in (see NewNetns); "" means
	// this one.
	Netns string
	// Exec is the program the command's exec chain ends in, when the
	// command is a wrapper that runs it (setpriv, a socket activator);
	// "" means the command itself.
	Exec string
}

// Proc is a program started by Start. Only this process is ever
// signalled, by its own pid.
type Proc struct {
	name    string
	pid     int
	signal  func(os.Signal) error
	logPath string
	started time.Time
	done    chan struct{}
	err     error
}

// Name is the name the process goes by in messages.
func (p *Proc) Name() string { return p.name }

// Pid is the program's process ID.
func (p *Proc) Pid() int { return p.pid }

// Started is when the process was started.
func (p *Proc) Started() time.Time { return p.started }

// Done is closed when the process has ended.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Exited reports whether the process has ended.
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Err is how the process ended (exec.Cmd.Wait's error); nil while it runs.
func (p *Proc) Err() error {
	if !p.Exited() {
		return nil
	}
	return p.err
}

// Stop ends the process: SIGTERM, and SIGKILL after 5 s. The test's
// cleanup calls it too.
func (p *Proc) Stop() {
	if p.Exited() {
		return
	}
	_ = p.signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		_ = p.signal(os.Kill)
		<-p.done
	}
}

// LogPath is the file that holds the process's stdout and stderr.
func (p *Proc) LogPath() string { return p.logPath }

// Output is everything the process wrote so far.
func (p *Proc) Output() string {
	b, _ := os.ReadFile(p.logPath)
	return string(b)
}

// Tail is the last n lines of the process's output.
func (p *Proc) Tail(n int) string {
	lines := strings.Split(strings.TrimRight(p.Output(), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
