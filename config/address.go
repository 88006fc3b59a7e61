package config

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
)

// hostProblem says why s cannot be a host name or an IP address literal, or
// returns "" when it can. It does not resolve anything: it only catches
// what no resolver could accept.
func hostProblem(s string) string {
	switch {
	case s == "":
		return "is empty"
	case strings.Contains(s, "://"):
		return "is a URL"
	case strings.ContainsAny(s, " \t\r\n"):
		return "contains white space"
	case strings.HasPrefix(s, "["):
		return "is in brackets (write an IPv6 address without them)"
	}
	if strings.Contains(s, ":") {
		if _, err := netip.ParseAddr(s); err == nil {
			return ""
		}
		if host, port, err := net.SplitHostPort(s); err == nil && host != "" && isDigits(port) {
			return "includes a port (give the port as port: " + port + ")"
		}
		return "is not a valid IPv6 address"
	}
	name := strings.TrimSuffix(s, ".")
	if len(name) > 253 {
		return fmt.Sprintf("is %d characters long (a host name has at most 253)", len(name))
	}
	labels := strings.Split(name, ".")
	numeric := true
	for _, l := range labels {
		if !isDigits(l) {
			numeric = false
		}
	}
	if numeric {
		// Only digits and dots: it can only be an IPv4 address.
		if _, err := netip.ParseAddr(name); err != nil || len(labels) != 4 {
			return "is not a valid IPv4 address"
		}
		return ""
	}
	for _, l := range labels {
		switch {
		case l == "":
			return "has an empty label (two dots in a row, or a dot at the start)"
		case len(l) > 63:
			return fmt.Sprintf("has a label of %d characters (at most 63 are allowed between dots)", len(l))
		case l[0] == '-' || l[len(l)-1] == '-':
			return fmt.Sprintf("has the label %s, which starts or ends with a hyphen", quote(l))
		}
		for _, r := range l {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
				return fmt.Sprintf("contains %s, which cannot be in a host name (letters, digits, hyphens, underscores and dots only)", quote(string(r)))
			}
		}
	}
	return ""
}

// hostKey is the form of a valid host under which duplicates are found.
func hostKey(s string) string {
	if a, err := netip.ParseAddr(s); err == nil {
		return a.String()
	}
	return strings.ToLower(strings.TrimSuffix(s, "."))
}

// loopbackListenProblem says why s cannot be a loopback host:port to listen
// on, or returns "" when it can.
func loopbackListenProblem(s string) string {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return "is not a host:port"
	}
	p, err := strconv.Atoi(port)
	if err != nil || !isDigits(port) || p < 1 || p > 65535 {
		return fmt.Sprintf("has the port %s (allowed: 1 to 65535)", quote(port))
	}
	if host == "" {
		return "listens on every interface (the metrics are for this host only)"
	}
	if strings.EqualFold(host, "localhost") {
		return ""
	}
	a, err := netip.ParseAddr(host)
	if err != nil || a.Zone() != "" {
		return fmt.Sprintf("has the host %s, which is not an IP address or localhost", quote(host))
	}
	if !a.Unmap().IsLoopback() {
		return fmt.Sprintf("has the host %s, which is not a loopback address", host)
	}
	return ""
}

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if r < '0' || r > '9' {
			return false
		}
	}
	return true
}
