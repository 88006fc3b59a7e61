// Package gpsd holds timed's reference-clock sources: a client of gpsd's
// JSON interface, and readers of the interfaces chrony and ntpd offer gpsd
// and other tools (SOCK datagrams, NTP shared memory, PPS devices).
//
// # The gpsd client
//
// Client connects to gpsd over TCP (127.0.0.1:2947 by default) or its Unix
// socket, sends ?WATCH={"enable":true,"json":true,"pps":true} (with the
// configured device), and reads gpsd's newline-delimited JSON reports. A
// line longer than 64 KiB ends the connection. VERSION must announce
// protocol 3; DEVICES and DEVICE choose the device (the configured path,
// or the first gpsd reports; a configured device gpsd does not have is a
// fault); TPV gives the fix mode; SKY the satellites used, for status;
// ERROR becomes a fault.
//
// The measurement is a pair of times from a TOFF or PPS report: real_sec
// and real_nsec are the receiver's time of the event, clock_sec and
// clock_nsec the system time at which gpsd saw it. The offset is the first
// minus the second (through the Timebase, so that a virtual clock measures
// its own time).
//
// One Client uses one kind of report, chosen by ClientConfig.PPS, as
// chrony's gpsd setup uses two refclocks:
//   - TOFF (PPS false, refid GPS) is the time of the serial NMEA sentence:
//     coarse. Its uncertainty (the root dispersion) is ClientConfig.Delay,
//     by default DefaultTOFFUncertainty (20 ms), and ClientConfig.Offset
//     corrects the receiver's known lag.
//   - PPS (PPS true, refid PPS) is the pulse-per-second edge, numbered by
//     gpsd with the serial time: fine. Its precision is the report's
//     precision field, or 1 µs.
//
// Measurements are used only while the device's last TPV has at least the
// configured fix mode (3D by default); otherwise the source reports a fault
// such as "no 3D fix: mode 2". When gpsd cannot be reached or closes the
// connection, the client retries after 1 s, doubling to 64 s, and its fault
// and status say so: "gpsd at 127.0.0.1:2947: connection refused, retrying
// in 4s".
package gpsd
