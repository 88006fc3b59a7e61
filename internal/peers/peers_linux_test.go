package peers

import (
	"os"
	"testing"
)

func TestCheckNoSysTime(t *testing.T) {
	if err := CheckNoSysTime(999999999); err == nil {
		t.Error("no error for a process that does not exist")
	}
	err := CheckNoSysTime(os.Getpid())
	t.Logf("this test process: %v", err)
}

func TestStartChronyServer(t *testing.T) {
	c := StartChronyServer(t, ChronyOptions{})
	if !c.Addr.IsValid() || c.Pid == 0 {
		t.Fatalf("%+v", c)
	}
	if err := CheckNoSysTime(c.Pid); err != nil {
		t.Fatal(err)
	}
}
