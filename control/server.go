package control

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os/user"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/timed-project/timed/internal/accept"
)

// Backend is what the server asks the daemon.
type Backend interface {
	// Status returns the engine's and the clock's state.
	Status() StatusReply
	// Reload re-reads the configuration.
	Reload() error
	// MakeStep steps the clock to the current estimate at once.
	MakeStep() error
	// ServerStats returns the NTP server's counters.
	ServerStats() ServerStatsReply
	// Clients returns up to limit clients of the NTP server, busiest
	// first.
	Clients(limit int) ClientsReply
	// PTP returns the PTP ports.
	PTP() PTPReply
	// SourceStats returns what each source's filter knows.
	SourceStats() SourceStatsReply
	// NTS returns the NTS client and server state.
	NTS() NTSReply
	// Burst makes the NTP source named source (all of them when empty)
	// send a quick burst of requests now.
	Burst(source string) (BurstReply, error)
	// AddSource starts an NTP server or pool; args are checked already.
	AddSource(args AddArgs) (AddReply, error)
	// RemoveSource stops an NTP server or pool.
	RemoveSource(source string) error
}

// DefaultClientsLimit is how many clients "clients" returns by default, and
// MaxClientsLimit the most it returns.
const (
	DefaultClientsLimit = 20
	MaxClientsLimit     = 10000
)

const (
	defaultTimeout  = 5 * time.Second
	defaultMaxConns = 64
)

// command is one command the server knows.
type command struct {
	// change: the command changes something, so only root or the
	// configured group may run it.
	change bool
	run    func(b Backend, req Request) (Response, error)
}

var commands = map[string]command{
	CmdStatus: {run: func(b Backend, _ Request) (Response, error) {
		st := b.Status()
		return Response{Status: &st}, nil
	}},
	CmdReload: {change: true, run: func(b Backend, _ Request) (Response, error) {
		return Response{}, b.Reload()
	}},
	CmdMakeStep: {change: true, run: func(b Backend, _ Request) (Response, error) {
		return Response{}, b.MakeStep()
	}},
	CmdServerStats: {run: func(b Backend, _ Request) (Response, error) {
		st := b.ServerStats()
		return Response{ServerStats: &st}, nil
	}},
	CmdPTP: {run: func(b Backend, _ Request) (Response, error) {
		st := b.PTP()
		return Response{PTP: &st}, nil
	}},
	CmdSourceStats: {run: func(b Backend, _ Request) (Response, error) {
		st := b.SourceStats()
		return Response{SourceStats: &st}, nil
	}},
	CmdNTS: {run: func(b Backend, _ Request) (Response, error) {
		st := b.NTS()
		return Response{NTS: &st}, nil
	}},
	CmdBurst: {change: true, run: func(b Backend, req Request) (Response, error) {
		var args BurstArgs
		if err := decodeArgs(req, &args); err != nil {
			return Response{}, err
		}
		if args.Source != "" {
			if err := checkName("source", args.Source); err != nil {
				return Response{}, err
			}
		}
		r, err := b.Burst(args.Source)
		return Response{Burst: &r}, err
	}},
	CmdAdd: {change: true, run: func(b Backend, req Request) (Response, error) {
		var args AddArgs
		if err := decodeArgs(req, &args); err != nil {
			return Response{}, err
		}
		if err := args.check(); err != nil {
			return Response{}, err
		}
		r, err := b.AddSource(args)
		return Response{Add: &r}, err
	}},
	CmdRemove: {change: true, run: func(b Backend, req Request) (Response, error) {
		var args RemoveArgs
		if err := decodeArgs(req, &args); err != nil {
			return Response{}, err
		}
		if err := checkName("source", args.Source); err != nil {
			return Response{}, err
		}
		return Response{}, b.RemoveSource(args.Source)
	}},
	CmdClients: {run: func(b Backend, req Request) (Response, error) {
		var args ClientsArgs
		if err := decodeArgs(req, &args); err != nil {
			return Response{}, err
		}
		switch {
		case args.Limit == 0:
			args.Limit = DefaultClientsLimit
		case args.Limit < 0 || args.Limit > MaxClientsLimit:
			return Response{}, fmt.Errorf("limit %d out of range 1..%d", args.Limit, MaxClientsLimit)
		}
		cl := b.Clients(args.Limit)
		return Response{Clients: &cl}, nil
	}},
}

// decodeArgs decodes the request's args into v (strictly: unknown members
// are an error, so that a typo is not silently ignored by a changing
// command); absent args leave v as it is.
func decodeArgs(req Request, v any) error {
	if len(req.Args) == 0 || bytes.Equal(req.Args, []byte("null")) {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(req.Args))
	if req.Command != CmdClients {
		dec.DisallowUnknownFields()
	}
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("bad arguments: %v", err)
	}
	return nil
}

// maxNameLen bounds host names and source names in arguments (a DNS name
// has at most 253 characters; with a port and brackets a little more).
const maxNameLen = 270

// checkName rejects an empty, overlong or unprintable name.
func checkName(what, name string) error {
	switch {
	case name == "":
		return fmt.Errorf("no %s given", what)
	case len(name) > maxNameLen:
		return fmt.Errorf("%s is %d bytes long; at most %d", what, len(name), maxNameLen)
	case strings.HasPrefix(name, "-"):
		return fmt.Errorf("%s %q must not start with '-'", what, name)
	}
	for _, r := range name {
		if r <= ' ' || r == 0x7f || r == '/' || r == '\\' || r == '"' || r == '\'' || r == '#' {
			return fmt.Errorf("%s %q: character %q not allowed", what, name, r)
		}
	}
	return nil
}

// check rejects arguments of "add" that cannot name an NTP source.
func (a AddArgs) check() error {
	if a.Type != AddServer && a.Type != AddPool {
		return fmt.Errorf("type %q: want %q or %q", a.Type, AddServer, AddPool)
	}
	if err := checkName("address", a.Address); err != nil {
		return err
	}
	if strings.ContainsAny(a.Address, "[]") || strings.Count(a.Address, ":") == 1 {
		return fmt.Errorf("address %q: give the port apart (port), and an IPv6 address without brackets", a.Address)
	}
	if a.Port < 0 || a.Port > 65535 {
		return fmt.Errorf("port %d out of range 1..65535", a.Port)
	}
	return nil
}

// knownCommands lists the commands for error messages.
var knownCommands = func() string {
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	return strings.Join(names, ", ")
}()

// Server answers control requests for a Backend.
type Server struct {
	b         Backend
	log       *zap.Logger
	changeGID int
	groupName string

	timeout  time.Duration
	maxConns int
}

// NewServer returns a server for b. Changing commands are allowed to uid 0
// and, when changeGID ≥ 0, to peers whose primary gid is changeGID; pass -1
// for root only.
func NewServer(b Backend, log *zap.Logger, changeGID int) *Server {
	if log == nil {
		log = zap.NewNop()
	}
	s := &Server{b: b, log: log, changeGID: changeGID, timeout: defaultTimeout, maxConns: defaultMaxConns}
	if changeGID >= 0 {
		s.groupName = "gid " + strconv.Itoa(changeGID)
		if g, err := user.LookupGroupId(strconv.Itoa(changeGID)); err == nil {
			s.groupName = g.Name
		}
	}
	return s
}

// Serve accepts connections on ln until ctx is done; then it closes ln and
// every connection, waits for their handlers and returns nil. It returns an
// error if accepting fails for another reason.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	ctx, cancel := context.WithCancel(ctx)

	var (
		mu    sync.Mutex
		conns = map[net.Conn]struct{}{}
		wg    sync.WaitGroup
	)
	closed := make(chan struct{})
	context.AfterFunc(ctx, func() {
		defer close(closed)
		ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for c := range conns {
			c.Close()
		}
	})
	// However Serve returns, it closes the listener and every connection
	// and waits for the handlers.
	defer func() {
		cancel()
		<-closed
		wg.Wait()
	}()

	sem := make(chan struct{}, s.maxConns)
	var backoff accept.Backoff
	for {
		conn, err := backoff.Next(ctx, ln, s.log, "control")
		if err != nil {
			return fmt.Errorf("control: accept: %w", err)
		}
		if conn == nil {
			return nil
		}
		select {
		case sem <- struct{}{}:
		default:
			s.log.Warn("control: too many connections; refusing one", zap.Int("limit", s.maxConns))
			s.writeResponse(conn, errorResponse(fmt.Sprintf("too many control connections (limit %d); try again", s.maxConns)), 100*time.Millisecond)
			conn.Close()
			continue
		}
		mu.Lock()
		if ctx.Err() != nil {
			mu.Unlock()
			conn.Close()
			<-sem
			continue
		}
		conns[conn] = struct{}{}
		mu.Unlock()
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			s.serveConn(conn)
			mu.Lock()
			delete(conns, conn)
			mu.Unlock()
			conn.Close()
		}()
	}
}

// isTemporary reports accept errors worth retrying (EMFILE, ENFILE,
// ECONNABORTED and the like report themselves as temporary).
var errTooLong = errors.New("request too long")

// serveConn answers requests on one connection until it is closed, idle
// too long, or sends a request that is too long.
func (s *Server) serveConn(conn net.Conn) {
	cred, credErr := peerCredentials(conn)
	if credErr != nil {
		s.log.Debug("control: peer credentials unavailable", zap.Error(credErr))
	}
	r := bufio.NewReaderSize(conn, 4096)
	for {
		if err := conn.SetReadDeadline(time.Now().Add(s.timeout)); err != nil {
			return
		}
		line, err := readLine(r, MaxRequestSize)
		if errors.Is(err, errTooLong) {
			s.writeResponse(conn, errorResponse(fmt.Sprintf("request longer than %d bytes", MaxRequestSize)), s.timeout)
			return
		}
		if err != nil && len(line) == 0 {
			return // EOF, idle timeout, closed
		}
		if len(bytes.TrimSpace(line)) > 0 {
			resp := s.handle(line, cred, credErr)
			if !s.writeResponse(conn, resp, s.timeout) {
				return
			}
		}
		if err != nil {
			return // the last line had no newline
		}
	}
}

// readLine reads up to and without the next newline; lines longer than max
// give errTooLong. At EOF it returns what it has with the error.
func readLine(r *bufio.Reader, max int) ([]byte, error) {
	var line []byte
	for {
		chunk, err := r.ReadSlice('\n')
		if len(line)+len(chunk) > max+1 || (len(line)+len(chunk) > max && !bytes.HasSuffix(chunk, []byte("\n"))) {
			return nil, errTooLong
		}
		line = append(line, chunk...)
		switch {
		case err == nil:
			return line[:len(line)-1], nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		default:
			return line, err
		}
	}
}

// handle answers one request line. It never panics: a panicking backend
// gives an error response.
func (s *Server) handle(line []byte, cred *peerCred, credErr error) (resp Response) {
	defer func() {
		if p := recover(); p != nil {
			s.log.Error("control: request handler panicked", zap.Any("panic", p), zap.Stack("stack"))
			resp = errorResponse("internal error in timed (see its log)")
		}
	}()
	req, err := decodeRequest(line)
	if err != nil {
		return errorResponse(err.Error())
	}
	cmd, ok := commands[req.Command]
	if !ok {
		return errorResponse(fmt.Sprintf("unknown command %q (known: %s)", req.Command, knownCommands))
	}
	if cmd.change {
		if err := authorize(req.Command, cred, credErr, s.changeGID, s.groupName); err != nil {
			fields := []zap.Field{zap.String("command", req.Command)}
			if cred != nil {
				fields = append(fields, zap.Uint32("uid", cred.UID), zap.Uint32("gid", cred.GID), zap.Int32("pid", cred.PID))
			}
			s.log.Warn("control: refused a command", fields...)
			return errorResponse(err.Error())
		}
		s.log.Info("control: running command", zap.String("command", req.Command),
			zap.Uint32("uid", cred.UID), zap.Int32("pid", cred.PID))
	}
	resp, err = cmd.run(s.b, req)
	if err != nil {
		return errorResponse(fmt.Sprintf("%s: %v", req.Command, err))
	}
	resp.Version, resp.OK, resp.Error = Version, true, ""
	return resp
}

// peerCred is who is at the other end of a connection.
type peerCred struct {
	UID, GID uint32
	PID      int32 // 0 where the OS does not say
}

// authorize decides whether the peer may run a changing command: uid 0
// always, and the group changeGID (its primary gid) when changeGID ≥ 0.
func authorize(cmd string, cred *peerCred, credErr error, changeGID int, groupName string) error {
	if cred == nil {
		if credErr == nil {
			credErr = errors.New("unknown peer")
		}
		return fmt.Errorf("permission denied: %s: cannot tell who is asking (%v)", cmd, credErr)
	}
	if cred.UID == 0 {
		return nil
	}
	if changeGID >= 0 && int64(cred.GID) == int64(changeGID) {
		return nil
	}
	if changeGID < 0 {
		return fmt.Errorf("permission denied: %s needs root", cmd)
	}
	if groupName == "" {
		groupName = "gid " + strconv.Itoa(changeGID)
	}
	return fmt.Errorf("permission denied: %s needs root or the %s group", cmd, groupName)
}

// writeResponse writes one response line within timeout and reports
// whether it succeeded. A response that cannot be encoded (a NaN in the
// status, say) is replaced by an error response.
func (s *Server) writeResponse(conn net.Conn, resp Response, timeout time.Duration) bool {
	data, err := json.Marshal(resp)
	if err != nil {
		s.log.Error("control: cannot encode a response", zap.Error(err))
		data, _ = json.Marshal(errorResponse("internal error: cannot encode the response: " + err.Error()))
	}
	data = append(data, '\n')
	if err := conn.SetWriteDeadline(time.Now().Add(timeout)); err != nil {
		return false
	}
	if _, err := conn.Write(data); err != nil {
		if !errors.Is(err, io.EOF) {
			s.log.Debug("control: cannot write a response", zap.Error(err))
		}
		return false
	}
	return true
}
