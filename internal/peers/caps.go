package peers

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// capSysTime is CAP_SYS_TIME's bit in the capability sets.
const capSysTime = 25

// CheckNoSysTime returns an error unless process pid's effective, permitted
// and bounding capability sets (in /proc/PID/status) all lack CAP_SYS_TIME.
// Where it cannot read them, it returns an error too.
func CheckNoSysTime(pid int) error {
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return fmt.Errorf("reading capabilities: %w", err)
	}
	if err := noSysTime(string(status)); err != nil {
		return fmt.Errorf("pid %d: %w", pid, err)
	}
	return nil
}

// noSysTime checks the capability sets in the text of a /proc/PID/status.
func noSysTime(status string) error {
	found := 0
	for _, line := range strings.Split(status, "\n") {
		key, val, ok := strings.Cut(line, ":")
		if !ok || (key != "CapEff" && key != "CapPrm" && key != "CapBnd") {
			continue
		}
		found++
		caps, err := strconv.ParseUint(strings.TrimSpace(val), 16, 64)
		if err != nil {
			return fmt.Errorf("%s: %w", key, err)
		}
		if caps&(1<<capSysTime) != 0 {
			return fmt.Errorf("still has CAP_SYS_TIME in %s (%s): refusing to run a program that can change the clock", key, strings.TrimSpace(val))
		}
	}
	if found != 3 {
		return errors.New("capability sets not found in /proc status")
	}
	return nil
}
