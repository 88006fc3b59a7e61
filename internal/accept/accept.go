// Package accept is the accept loop's step shared by timed's stream
// servers (the control socket, NTS-KE): temporary failures (out of file
// descriptors and the like) are retried with a growing pause, the end of
// the context ends the loop.
package accept

import (
	"context"
	"errors"
	"net"
	"time"

	"go.uber.org/zap"
)

// Backoff is the pause state of one accept loop; its zero value is ready.
type Backoff struct{ d time.Duration }

// Next accepts one connection. It returns (nil, nil) once ctx is done, and
// an error only when ln has failed for good; temporary failures are logged
// (as what) and retried after a pause of 5 ms, doubling up to 1 s.
func (b *Backoff) Next(ctx context.Context, ln net.Listener, log *zap.Logger, what string) (net.Conn, error) {
	for {
		c, err := ln.Accept()
		if err == nil {
			b.d = 0
			return c, nil
		}
		if ctx.Err() != nil {
			return nil, nil
		}
		var ne net.Error
		if !(errors.As(err, &ne) && ne.Timeout() || isTemporary(err)) {
			return nil, err
		}
		b.d = min(max(2*b.d, 5*time.Millisecond), time.Second)
		log.Warn(what+": accept failed; retrying", zap.Error(err), zap.Duration("in", b.d))
		select {
		case <-time.After(b.d):
		case <-ctx.Done():
			return nil, nil
		}
	}
}

func isTemporary(err error) bool {
	var t interface{ Temporary() bool }
	return errors.As(err, &t) && t.Temporary()
}
