package control

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/timed-project/timed/sources"
)

// Version is the protocol version this package speaks.
const Version = 1

// DefaultSocket is where timed listens unless configured otherwise.
const DefaultSocket = "/run/timed/timed.sock"

// MaxRequestSize is the longest request line a server accepts, without the
// newline.
const MaxRequestSize = 64 << 10

// The commands of protocol version 1.
const (
	CmdStatus   = "status"
	CmdReload   = "reload"
	CmdMakeStep = "makestep"
)

// Request is one command to timed.
type Request struct {
	Version int    `json:"version"`
	Command string `json:"command"`
	// Args are the command's arguments, for commands that take any.
	Args json.RawMessage `json:"args,omitempty"`
}

// Response is timed's answer to one Request. Exactly one result member is
// set when the command succeeded and has a result.
type Response struct {
	Version int    `json:"version"`
	OK      bool   `json:"ok"`
	Error   string `json:"error"`
	// Status is the result of "status".
	Status *StatusReply `json:"status,omitempty"`
}

// StatusReply is the result of "status".
type StatusReply struct {
	Engine sources.Status `json:"engine"`
	Clock  ClockInfo      `json:"clock"`
}

// ClockInfo describes the clock timed disciplines.
type ClockInfo struct {
	// Driver is the clock driver: "system", "virtual", "none", "phc".
	Driver string `json:"driver"`
	// OffsetFromSystem is how far the clock is ahead of the system clock,
	// in seconds (virtual clock only; 0 otherwise).
	OffsetFromSystem float64 `json:"offset_from_system_s"`
	// Frequency is the frequency correction applied, in ppm.
	Frequency float64 `json:"frequency_ppm"`
}

// decodeRequest parses one request line and checks what every request must
// have: an object with a supported version and a command. Whether the
// command is known is for the server to say.
func decodeRequest(line []byte) (Request, error) {
	line = bytes.TrimSpace(line)
	if len(line) == 0 {
		return Request{}, errors.New("empty request")
	}
	if line[0] != '{' {
		return Request{}, errors.New("malformed request: not a JSON object")
	}
	var req Request
	if err := json.Unmarshal(line, &req); err != nil {
		var typeErr *json.UnmarshalTypeError
		if errors.As(err, &typeErr) && typeErr.Field != "" {
			return Request{}, fmt.Errorf("malformed request: %q must be a %s", typeErr.Field, jsonKind(typeErr.Field))
		}
		return Request{}, fmt.Errorf("malformed request: %v", err)
	}
	switch {
	case req.Version == 0:
		return req, errors.New("malformed request: missing \"version\"")
	case req.Version != Version:
		return req, fmt.Errorf("unsupported protocol version %d (this timed speaks version %d)", req.Version, Version)
	case req.Command == "":
		return req, errors.New("malformed request: missing \"command\"")
	}
	if len(req.Args) > 0 && req.Args[0] != '{' && !bytes.Equal(req.Args, []byte("null")) {
		return req, errors.New("malformed request: \"args\" must be an object")
	}
	return req, nil
}

func jsonKind(field string) string {
	switch field {
	case "version":
		return "number"
	case "command":
		return "string"
	default:
		return "value of another type"
	}
}

// errorResponse is a failed response with the given message.
func errorResponse(msg string) Response {
	return Response{Version: Version, OK: false, Error: msg}
}
