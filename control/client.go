package control

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"syscall"
	"time"
)

const (
	// clientTimeout bounds a request whose context has no deadline.
	clientTimeout = 10 * time.Second
	// maxResponseSize bounds a response line (a status with many sources
	// is far smaller).
	maxResponseSize = 16 << 20
)

// ServerError is a request timed answered with ok=false.
type ServerError struct {
	Command string
	Message string
}

func (e *ServerError) Error() string { return "control: " + e.Message }

// Client talks to timed over its control socket. Its methods are safe for
// concurrent use; requests are sent one at a time.
type Client struct {
	path string

	mu   sync.Mutex
	conn net.Conn
	r    *bufio.Reader
	used bool // conn has carried a request
}

// Dial connects to timed's control socket at path.
func Dial(path string) (*Client, error) {
	c := &Client{path: path}
	if err := c.dial(); err != nil {
		return nil, err
	}
	return c, nil
}

func (c *Client) dial() error {
	conn, err := net.DialTimeout("unix", c.path, clientTimeout)
	if err != nil {
		var op *net.OpError
		if errors.As(err, &op) && op.Err != nil {
			err = op.Err
		}
		return fmt.Errorf("control: dial %s: %w (is timed running?)", c.path, err)
	}
	c.conn, c.r, c.used = conn, bufio.NewReader(conn), false
	return nil
}

// Close closes the connection.
func (c *Client) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.conn == nil {
		return nil
	}
	err := c.conn.Close()
	c.conn = nil
	return err
}

// Status asks for the engine's and the clock's state.
func (c *Client) Status(ctx context.Context) (StatusReply, error) {
	resp, err := c.do(ctx, Request{Version: Version, Command: CmdStatus}, true)
	if err != nil {
		return StatusReply{}, err
	}
	if resp.Status == nil {
		return StatusReply{}, errors.New("control: status: the response has no status")
	}
	return *resp.Status, nil
}

// Reload asks timed to re-read its configuration.
func (c *Client) Reload(ctx context.Context) error {
	_, err := c.do(ctx, Request{Version: Version, Command: CmdReload}, false)
	return err
}

// MakeStep asks timed to step the clock to its current estimate at once.
func (c *Client) MakeStep(ctx context.Context) error {
	_, err := c.do(ctx, Request{Version: Version, Command: CmdMakeStep}, false)
	return err
}

// ServerStats asks for the NTP server's counters.
func (c *Client) ServerStats(ctx context.Context) (ServerStatsReply, error) {
	resp, err := c.do(ctx, Request{Version: Version, Command: CmdServerStats}, true)
	if err != nil {
		return ServerStatsReply{}, err
	}
	if resp.ServerStats == nil {
		return ServerStatsReply{}, errors.New("control: serverstats: the response has no counters")
	}
	return *resp.ServerStats, nil
}

// PTP asks for the PTP ports.
func (c *Client) PTP(ctx context.Context) (PTPReply, error) {
	resp, err := c.do(ctx, Request{Version: Version, Command: CmdPTP}, true)
	if err != nil {
		return PTPReply{}, err
	}
	if resp.PTP == nil {
		return PTPReply{}, errors.New("control: ptp: the response has no ports")
	}
	return *resp.PTP, nil
}

// Clients asks for up to limit clients of the NTP server (0: the default).
func (c *Client) Clients(ctx context.Context, limit int) (ClientsReply, error) {
	args, err := json.Marshal(ClientsArgs{Limit: limit})
	if err != nil {
		return ClientsReply{}, err
	}
	resp, err := c.do(ctx, Request{Version: Version, Command: CmdClients, Args: args}, true)
	if err != nil {
		return ClientsReply{}, err
	}
	if resp.Clients == nil {
		return ClientsReply{}, errors.New("control: clients: the response has no clients")
	}
	return *resp.Clients, nil
}

// SourceStats asks what each source's filter knows.
func (c *Client) SourceStats(ctx context.Context) (SourceStatsReply, error) {
	resp, err := c.do(ctx, Request{Version: Version, Command: CmdSourceStats}, true)
	if err != nil {
		return SourceStatsReply{}, err
	}
	if resp.SourceStats == nil {
		return SourceStatsReply{}, errors.New("control: sourcestats: the response has no sources")
	}
	return *resp.SourceStats, nil
}

// NTS asks for the NTS client and server state.
func (c *Client) NTS(ctx context.Context) (NTSReply, error) {
	resp, err := c.do(ctx, Request{Version: Version, Command: CmdNTS}, true)
	if err != nil {
		return NTSReply{}, err
	}
	if resp.NTS == nil {
		return NTSReply{}, errors.New("control: nts: the response has no NTS state")
	}
	return *resp.NTS, nil
}

// Burst asks the NTP source named source (every one when empty) to send a
// quick burst of requests now.
func (c *Client) Burst(ctx context.Context, source string) (BurstReply, error) {
	resp, err := c.change(ctx, CmdBurst, BurstArgs{Source: source})
	if err != nil {
		return BurstReply{}, err
	}
	if resp.Burst == nil {
		return BurstReply{}, errors.New("control: burst: the response names no sources")
	}
	return *resp.Burst, nil
}

// AddSource asks timed to start an NTP server or pool.
func (c *Client) AddSource(ctx context.Context, args AddArgs) (AddReply, error) {
	resp, err := c.change(ctx, CmdAdd, args)
	if err != nil {
		return AddReply{}, err
	}
	if resp.Add == nil {
		return AddReply{}, errors.New("control: add: the response names no source")
	}
	return *resp.Add, nil
}

// RemoveSource asks timed to stop an NTP server or pool.
func (c *Client) RemoveSource(ctx context.Context, source string) error {
	_, err := c.change(ctx, CmdRemove, RemoveArgs{Source: source})
	return err
}

// change sends a changing command with its arguments.
func (c *Client) change(ctx context.Context, cmd string, args any) (*Response, error) {
	data, err := json.Marshal(args)
	if err != nil {
		return nil, fmt.Errorf("control: %s: %w", cmd, err)
	}
	return c.do(ctx, Request{Version: Version, Command: cmd, Args: data}, false)
}

// do sends one request and reads its response. A read-only request that
// finds the connection closed by the server (after its idle timeout) is
// sent once more on a new connection; a changing one is not, since it may
// have been carried out.
func (c *Client) do(ctx context.Context, req Request, readOnly bool) (*Response, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.conn == nil {
		if err := c.dial(); err != nil {
			return nil, err
		}
	}
	reused := c.used
	resp, err := c.roundTrip(ctx, req)
	if err != nil && reused && readOnly && ctx.Err() == nil && isClosedByPeer(err) {
		if err := c.dial(); err != nil {
			return nil, err
		}
		resp, err = c.roundTrip(ctx, req)
	}
	if err != nil {
		return nil, err
	}
	if resp.Version != Version {
		return nil, fmt.Errorf("control: %s: timed answered in protocol version %d, this timectl speaks %d", req.Command, resp.Version, Version)
	}
	if !resp.OK {
		msg := resp.Error
		if msg == "" {
			msg = req.Command + " failed"
		}
		return nil, &ServerError{Command: req.Command, Message: msg}
	}
	return resp, nil
}

// roundTrip writes req and reads one response. On any error the connection
// is closed, since its state is unknown.
func (c *Client) roundTrip(ctx context.Context, req Request) (resp *Response, err error) {
	conn := c.conn
	c.used = true
	defer func() {
		if err != nil {
			conn.Close()
			c.conn = nil
		}
	}()
	deadline, ctxDeadline := ctx.Deadline()
	if !ctxDeadline {
		deadline = time.Now().Add(clientTimeout)
	}
	if err := conn.SetDeadline(deadline); err != nil {
		return nil, fmt.Errorf("control: %s: %w", req.Command, err)
	}
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	wrap := func(err error) error {
		if ctxErr := ctx.Err(); ctxErr != nil {
			return fmt.Errorf("control: %s: %w", req.Command, ctxErr)
		}
		// The socket's deadline can fire a moment before the context's.
		var ne net.Error
		if ctxDeadline && errors.As(err, &ne) && ne.Timeout() && !time.Now().Before(deadline) {
			return fmt.Errorf("control: %s: %w", req.Command, context.DeadlineExceeded)
		}
		return fmt.Errorf("control: %s: %w", req.Command, err)
	}

	data, err := json.Marshal(req)
	if err != nil {
		return nil, wrap(err)
	}
	if _, err := conn.Write(append(data, '\n')); err != nil {
		return nil, wrap(err)
	}
	line, err := readLine(c.r, maxResponseSize)
	if err != nil {
		if errors.Is(err, errTooLong) {
			return nil, wrap(fmt.Errorf("response longer than %d bytes", maxResponseSize))
		}
		if errors.Is(err, io.EOF) && len(line) == 0 {
			return nil, wrap(fmt.Errorf("timed closed the connection: %w", io.EOF))
		}
		return nil, wrap(err)
	}
	resp = new(Response)
	if err := json.Unmarshal(line, resp); err != nil {
		return nil, wrap(fmt.Errorf("malformed response: %v", err))
	}
	return resp, nil
}

// isClosedByPeer reports errors that mean the server had closed the
// connection before the request.
func isClosedByPeer(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNRESET)
}
