package ntpload

import (
	"context"
	"fmt"

	"github.com/timed-project/timed/nts"
	"github.com/timed-project/timed/nts/ke"
)

// KeyExchange makes n NTS clients for Options.NTS, one NTS-KE exchange
// each with the server cfg names (cfg is used as is for every exchange).
// Each client keeps the first cookie of its exchange.
func KeyExchange(ctx context.Context, cfg ke.Config, n int) ([]NTSClient, error) {
	if n < 1 {
		return nil, fmt.Errorf("ntpload: %d NTS clients: want at least 1", n)
	}
	clients := make([]NTSClient, 0, n)
	for i := range n {
		res, err := ke.Exchange(ctx, cfg)
		if err != nil {
			return nil, fmt.Errorf("ntpload: NTS-KE exchange %d of %d: %w", i+1, n, err)
		}
		if len(res.Cookies) == 0 {
			return nil, fmt.Errorf("ntpload: NTS-KE exchange %d of %d: no cookie", i+1, n)
		}
		sess, err := nts.NewClientSession(res.AEAD, res.C2S, res.S2C)
		if err != nil {
			return nil, fmt.Errorf("ntpload: NTS-KE exchange %d of %d: %w", i+1, n, err)
		}
		clients = append(clients, NTSClient{Session: sess, Cookie: res.Cookies[0]})
	}
	return clients, nil
}
