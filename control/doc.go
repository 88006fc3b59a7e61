// Package control is the control protocol between timectl and timed: its
// types, the server side the daemon runs and the client side timectl uses.
//
// # Transport
//
// timed listens on a Unix stream socket, DefaultSocket
// (/run/timed/timed.sock) unless configured otherwise. The socket's mode is
// 0666: anyone may connect, and authorization is by the peer's credentials
// (SO_PEERCRED on Linux, LOCAL_PEERCRED on FreeBSD and macOS).
//
// A client writes requests and reads responses, one JSON object per line
// (newline-delimited JSON), strictly in turn: one response for each request,
// in order. A connection may carry any number of requests. A request line
// may be at most 64 KiB (MaxRequestSize); a longer one gets an error
// response and the connection is closed. A connection idle for longer than
// the server's timeout (5 s) is closed; so is one whose response cannot be
// written within it. The server serves at most 64 connections at once; the
// next one gets an error response and is closed.
//
// # Schema, version 1
//
// A request is one object:
//
//	{"version": 1, "command": "status", "args": {...}}
//
// Its members are:
//   - version (integer, required): the protocol version the client speaks.
//     A server answers a version it does not speak with ok=false and an
//     error naming the version it does speak.
//   - command (string, required): what to do, see below.
//   - args (object, optional): the command's arguments: ClientsArgs for
//     clients, BurstArgs for burst, AddArgs for add, RemoveArgs for
//     remove. The other commands ignore args. The changing commands with
//     arguments reject members they do not know, so that a misspelt option
//     is an error rather than silently ignored.
//
// A response is one object:
//
//	{"version": 1, "ok": true, "error": "", "status": {...}}
//
// Its members are:
//   - version: the protocol version of the response (the server's).
//   - ok: whether the command succeeded.
//   - error: why not, in words, when ok is false; "" otherwise.
//   - one member named after the command carrying its result, present only
//     when the command has one and succeeded: "status" for status.
//
// Commands:
//
//   - status (anyone): the engine's state and the clock's. The result is a
//     StatusReply: {"engine": sources.Status, "clock": ClockInfo}.
//   - reload (root or the configured group): re-read the configuration, as
//     SIGHUP does. No result.
//   - makestep (root or the configured group): step the clock to the
//     current estimate of true time at once. No result.
//   - serverstats, clients, ptp (anyone): the NTP server's counters
//     (ServerStatsReply), its busiest clients (ClientsReply, args
//     ClientsArgs) and the PTP ports (PTPReply).
//   - sourcestats (anyone): what each source's filter knows, as chronyc
//     sourcestats (SourceStatsReply).
//   - nts (anyone): the NTS client state of every NTS source and the NTS
//     server's keys and counters (NTSReply).
//   - burst (root or the configured group): the NTP sources, or the one
//     named in BurstArgs (a pool by its name: all its members), send a
//     quick burst of requests now. Result BurstReply: the sources that do.
//   - add (root or the configured group): start the NTP server or pool of
//     AddArgs, with the defaults and checks of the configuration file.
//     Result AddReply: its name. Sources added so are kept across reloads
//     until removed; a restart forgets them.
//   - remove (root or the configured group): stop the NTP server or pool
//     named in RemoveArgs (host:port, or the address alone), whether added
//     at runtime or from the file (which brings it back at the next
//     reload). No result.
//
// A changing command from a peer that is neither uid 0 nor in the
// configured group (its primary gid) gets
//
//	{"version": 1, "ok": false, "error": "permission denied: reload needs root or the timed group"}
//
// # Evolution
//
// Within version 1, changes are additive only: new commands, new optional
// request args, new response members and new fields inside results.
// Clients and servers ignore members they do not know. A later command's
// result gets its own response member named after it (for example
// "serverstats", "clients", "ptp", "sourcestats", "nts", "burst", "add"), so existing members never change
// meaning. Anything incompatible bumps the version; a server may speak
// several versions, answering each request in the version it was asked in.
package control
