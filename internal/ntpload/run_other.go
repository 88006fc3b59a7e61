//go:build !linux

package ntpload

import (
	"context"
	"errors"
)

// Run needs Linux (sendmmsg, recvmmsg, UDP GSO, IP_PKTINFO); elsewhere it
// returns an error.
func Run(ctx context.Context, o Options) (*Result, error) {
	if _, err := o.withDefaults(); err != nil {
		return nil, err
	}
	return nil, errors.New("ntpload: needs Linux")
}
