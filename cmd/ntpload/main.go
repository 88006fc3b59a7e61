// Command ntpload loads an NTP server (or, with -protocol, an SPTP or
// CSPTP server) with client requests from many source addresses and
// reports responses per second, loss, kisses, latency percentiles, bytes
// per request and per answer and, with -pid, the server's CPU time per
// response.
//
//	ntpload [-protocol ntp|sptp|csptp] [-pad] [-sources N] [-rate R]
//	        [-d DURATION] [-workers W] [-burst B] [-no-gso] [-wait D]
//	        [-pid PID] [-o text|json] ADDRESS:PORT
//
// Source addresses are 127.1.0.1, 127.1.0.2, ... (any 127.a.b.c is on
// loopback); -rate 0 sends as fast as it can. See internal/ntpload.
// Exit status: 0 success, 1 error, 2 usage error.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/signal"
	"syscall"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/timed-project/timed/internal/ntpload"
	"github.com/timed-project/timed/nts/ke"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run runs ntpload with args and returns the exit status.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("ntpload", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o ntpload.Options
	first := fs.String("first-source", "127.1.0.1", "first source address; the others follow it, skipping .0 and .255")
	output := fs.String("o", "text", "output format: text or json")
	fs.IntVar(&o.Sources, "sources", 1, "number of distinct source addresses")
	fs.Float64Var(&o.Rate, "rate", 0, "requests per second, all workers together (0: as fast as possible)")
	fs.DurationVar(&o.Duration, "d", time.Second, "how long to send")
	fs.IntVar(&o.Workers, "workers", 1, "sockets, each with a thread that sends and receives")
	fs.IntVar(&o.Burst, "burst", 16, fmt.Sprintf("requests in a row from one source address, one UDP GSO send (1 to %d)", ntpload.MaxBurst))
	fs.BoolVar(&o.NoGSO, "no-gso", false, "send each request as a datagram of its own (plain sendmmsg)")
	fs.DurationVar(&o.Wait, "wait", 500*time.Millisecond, "how long to wait for responses after the last request")
	fs.IntVar(&o.ServerPID, "pid", 0, "the server's process ID, to report its CPU time")
	fs.StringVar(&o.Protocol, "protocol", ntpload.ProtocolNTP, "requests to send: ntp, sptp (Delay_Req, answered by Sync and Announce) or csptp (Sync with a request TLV)")
	fs.BoolVar(&o.Pad, "pad", false, "pad sptp and csptp requests to the length of their answer (for servers that refuse to amplify)")
	ntsKE := fs.String("nts", "", "send NTS requests, with keys and cookies from this NTS-KE server (HOST:PORT)")
	ntsCA := fs.String("nts-ca", "", "PEM file of the CA certificates to trust for -nts (default: the system's)")
	ntsClients := fs.Int("nts-clients", 16, "NTS-KE exchanges for -nts: each makes one client, and the sources are dealt out among them")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: ntpload [flags] ADDRESS:PORT")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	usage := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "ntpload: "+format+"\n", a...)
		fs.Usage()
		return 2
	}
	if fs.NArg() != 1 {
		return usage("want one server ADDRESS:PORT")
	}
	var err error
	if o.Server, err = netip.ParseAddrPort(fs.Arg(0)); err != nil {
		return usage("server: %v", err)
	}
	if o.FirstSource, err = netip.ParseAddr(*first); err != nil {
		return usage("-first-source: %v", err)
	}
	if *output != "text" && *output != "json" {
		return usage("-o %q: want text or json", *output)
	}
	cfg := zap.NewDevelopmentConfig()
	cfg.Level = zap.NewAtomicLevelAt(zapcore.WarnLevel)
	cfg.OutputPaths = []string{"stderr"}
	log, err := cfg.Build()
	if err != nil {
		fmt.Fprintf(stderr, "ntpload: logger: %v\n", err)
		return 1
	}
	defer func() { _ = log.Sync() }()
	o.Logger = log

	if *ntsKE != "" {
		if o.NTS, err = ntpload.KeyExchange(ctx, ke.Config{Server: *ntsKE, CAFile: *ntsCA}, *ntsClients); err != nil {
			fmt.Fprintf(stderr, "%v\n", err)
			return 1
		}
	}
	res, err := ntpload.Run(ctx, o)
	if res == nil {
		fmt.Fprintf(stderr, "%v\n", err)
		return 1
	}
	if *output == "json" {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if werr := enc.Encode(res); werr != nil {
			fmt.Fprintf(stderr, "ntpload: %v\n", werr)
			return 1
		}
	} else if werr := res.WriteText(stdout); werr != nil {
		fmt.Fprintf(stderr, "ntpload: %v\n", werr)
		return 1
	}
	if err != nil {
		fmt.Fprintf(stderr, "%v\n", err)
		return 1
	}
	return 0
}
