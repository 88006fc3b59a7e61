package accept

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"go.uber.org/zap"
)

type tempErr struct{}

func (tempErr) Error() string   { return "too many open files" }
func (tempErr) Temporary() bool { return true }

// flaky fails with the given errors, then accepts.
type flaky struct {
	net.Listener
	errs []error
}

func (f *flaky) Accept() (net.Conn, error) {
	if len(f.errs) > 0 {
		err := f.errs[0]
		f.errs = f.errs[1:]
		return nil, err
	}
	a, _ := net.Pipe()
	return a, nil
}

func TestNext(t *testing.T) {
	var b Backoff
	c, err := b.Next(context.Background(), &flaky{errs: []error{tempErr{}, tempErr{}}}, zap.NewNop(), "test")
	if err != nil || c == nil {
		t.Fatalf("after temporary errors: %v %v", c, err)
	}
	if b.d != 0 {
		t.Errorf("pause %v after a success, want 0", b.d)
	}
	boom := errors.New("listener broken")
	if c, err := b.Next(context.Background(), &flaky{errs: []error{boom}}, zap.NewNop(), "test"); c != nil || !errors.Is(err, boom) {
		t.Errorf("permanent error: %v %v", c, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if c, err := b.Next(ctx, &flaky{errs: []error{boom}}, zap.NewNop(), "test"); c != nil || err != nil {
		t.Errorf("after cancel: %v %v, want nil, nil", c, err)
	}
	start := time.Now()
	ctx, cancel = context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	errs := make([]error, 100)
	for i := range errs {
		errs[i] = tempErr{}
	}
	if c, err := b.Next(ctx, &flaky{errs: errs}, zap.NewNop(), "test"); c != nil || err != nil || time.Since(start) > time.Second {
		t.Errorf("retrying until cancelled: %v %v after %v", c, err, time.Since(start))
	}
}
