package gpsd

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"
	"time"
)

func TestJSONDecodeReport(t *testing.T) {
	tests := []struct {
		name    string
		line    string
		wantErr string
		check   func(t *testing.T, r jsonReport)
	}{
		{name: "version", line: `{"class":"VERSION","release":"3.22","rev":"3.22","proto_major":3,"proto_minor":14}`,
			check: func(t *testing.T, r jsonReport) {
				if r.Class != "VERSION" || r.ProtoMajor != 3 || r.ProtoMinor != 14 || r.Release != "3.22" {
					t.Errorf("got %+v", r)
				}
			}},
		{name: "devices", line: `{"class":"DEVICES","devices":[{"class":"DEVICE","path":"/dev/pts/1","driver":"NMEA0183"}]}`,
			check: func(t *testing.T, r jsonReport) {
				if len(r.Devices) != 1 || r.Devices[0].Path != "/dev/pts/1" || r.Devices[0].Driver != "NMEA0183" {
					t.Errorf("got %+v", r.Devices)
				}
			}},
		{name: "tpv", line: `{"class":"TPV","device":"/dev/pts/1","mode":3,"time":"2026-11-22T10:55:48.000Z","leapseconds":18}`,
			check: func(t *testing.T, r jsonReport) {
				if r.Mode != 3 || r.Device != "/dev/pts/1" || r.Leapseconds == nil || *r.Leapseconds != 18 {
					t.Errorf("got %+v", r)
				}
			}},
		{name: "toff", line: `{"class":"TOFF","device":"/dev/pts/1","real_sec":1795344948, "real_nsec":0,"clock_sec":1795344947,"clock_nsec":174265942}`,
			check: func(t *testing.T, r jsonReport) {
				if got, want := r.jsonRefTime().Sub(r.jsonClockTime()), 825734058*time.Nanosecond; got != want {
					t.Errorf("ref - clock = %v, want %v", got, want)
				}
				if p := r.jsonPrecision(time.Millisecond); p != time.Millisecond {
					t.Errorf("precision without field = %v, want the default", p)
				}
			}},
		{name: "pps precision", line: `{"class":"PPS","device":"/dev/pps0","real_sec":10,"real_nsec":0,"clock_sec":10,"clock_nsec":5,"precision":-20}`,
			check: func(t *testing.T, r jsonReport) {
				if p := r.jsonPrecision(time.Millisecond); p != 953*time.Nanosecond {
					t.Errorf("precision = %v, want 2^-20 s = 953ns", p)
				}
			}},
		{name: "sky uSat", line: `{"class":"SKY","uSat":7,"satellites":[{"used":true}]}`,
			check: func(t *testing.T, r jsonReport) {
				if n := r.jsonSatellitesUsed(); n != 7 {
					t.Errorf("used = %d, want 7", n)
				}
			}},
		{name: "sky counted", line: `{"class":"SKY","satellites":[{"used":true},{"used":false},{"used":true}]}`,
			check: func(t *testing.T, r jsonReport) {
				if n := r.jsonSatellitesUsed(); n != 2 {
					t.Errorf("used = %d, want 2", n)
				}
			}},
		{name: "empty", line: "  ", wantErr: "empty line"},
		{name: "not an object", line: `["class"]`, wantErr: "not a JSON object"},
		{name: "bad json", line: `{"class":"TPV",`, wantErr: "bad report"},
		{name: "no class", line: `{"mode":3}`, wantErr: "without class"},
		{name: "wrong type", line: `{"class":"TPV","mode":"3"}`, wantErr: "bad report"},
		{name: "mode out of range", line: `{"class":"TPV","mode":4}`, wantErr: "mode 4 out of range"},
		{name: "bad time", line: `{"class":"TPV","mode":3,"time":"yesterday"}`, wantErr: "TPV time"},
		{name: "nsec out of range", line: `{"class":"TOFF","real_sec":10,"real_nsec":1000000000,"clock_sec":10,"clock_nsec":0}`, wantErr: "real_nsec 1000000000 out of range"},
		{name: "negative clock", line: `{"class":"PPS","real_sec":10,"real_nsec":0,"clock_sec":-1,"clock_nsec":0}`, wantErr: "clock_sec -1 out of range"},
		{name: "missing sec", line: `{"class":"TOFF","real_nsec":5}`, wantErr: "real_sec 0 out of range"},
		{name: "huge sec", line: `{"class":"TOFF","real_sec":9223372036854775807,"real_nsec":0,"clock_sec":10,"clock_nsec":0}`, wantErr: "out of range"},
		{name: "precision out of range", line: `{"class":"PPS","real_sec":10,"real_nsec":0,"clock_sec":10,"clock_nsec":0,"precision":-1000}`, wantErr: "precision -1000"},
		{name: "too many devices", line: `{"class":"DEVICES","devices":[` + strings.Repeat(`{},`, 64) + `{}]}`, wantErr: "65 devices"},
		{name: "too long", line: "{" + strings.Repeat(" ", jsonMaxLine) + "}", wantErr: "longer than"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := jsonDecodeReport([]byte(tt.line))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, r)
		})
	}
}

func TestJSONLineReader(t *testing.T) {
	long := strings.Repeat("x", jsonMaxLine)
	tests := []struct {
		name  string
		input string
		want  []string
		last  error // the error after the lines
	}{
		{name: "lines", input: "a\r\nbb\n\nccc\n", want: []string{"a", "bb", "", "ccc"}, last: io.EOF},
		{name: "unterminated last line", input: "a\nb", want: []string{"a", "b"}, last: io.EOF},
		{name: "longest line", input: long + "\n", want: []string{long}, last: io.EOF},
		{name: "too long", input: "a\n" + long + "y\n", want: []string{"a"}, last: errJSONLineTooLong},
		{name: "too long unterminated", input: long + "y", want: nil, last: errJSONLineTooLong},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// One byte at a time: lines must not depend on how reads split.
			lr := newJSONLineReader(iotest.OneByteReader(strings.NewReader(tt.input)))
			for i, w := range tt.want {
				got, err := lr.readLine()
				if err != nil {
					t.Fatalf("line %d: %v", i, err)
				}
				if string(got) != w {
					t.Fatalf("line %d = %.20q (%d bytes), want %.20q (%d bytes)", i, got, len(got), w, len(w))
				}
			}
			if _, err := lr.readLine(); !errors.Is(err, tt.last) {
				t.Fatalf("after the lines: %v, want %v", err, tt.last)
			}
		})
	}
}

func FuzzReport(f *testing.F) {
	for _, s := range []string{
		`{"class":"VERSION","release":"3.22","rev":"3.22","proto_major":3,"proto_minor":14}`,
		`{"class":"DEVICES","devices":[{"class":"DEVICE","path":"/dev/pts/1","driver":"NMEA0183"}]}`,
		`{"class":"TPV","device":"/dev/pts/1","mode":3,"time":"2026-11-22T10:55:48.000Z","leapseconds":18}`,
		`{"class":"TOFF","device":"/dev/pts/1","real_sec":1795344948, "real_nsec":0,"clock_sec":1795344947,"clock_nsec":174265942}`,
		`{"class":"PPS","device":"/dev/pps0","real_sec":10,"real_nsec":0,"clock_sec":10,"clock_nsec":5,"precision":-20}`,
		`{"class":"SKY","satellites":[{"used":true}]}`,
		`{"class":"ERROR","message":"unrecognized"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		r, err := jsonDecodeReport(line)
		if err != nil {
			if err.Error() == "" {
				t.Fatal("error without text")
			}
			return
		}
		if r.Class == "" {
			t.Fatal("accepted a report without class")
		}
		switch r.Class {
		case "TOFF", "PPS":
			if r.RealNsec < 0 || r.RealNsec >= 1e9 || r.ClockNsec < 0 || r.ClockNsec >= 1e9 {
				t.Fatalf("accepted nanoseconds out of range: %+v", r)
			}
			_ = r.jsonRefTime().Sub(r.jsonClockTime())
			if p := r.jsonPrecision(time.Microsecond); p < 0 {
				t.Fatalf("negative precision %v", p)
			}
		case "TPV":
			if r.Mode < 0 || r.Mode > 3 {
				t.Fatalf("accepted mode %d", r.Mode)
			}
		case "SKY":
			if n := r.jsonSatellitesUsed(); n < 0 {
				t.Fatalf("negative satellites %d", n)
			}
		}
	})
}

func FuzzLineReader(f *testing.F) {
	f.Add([]byte("a\nbb\r\n\n"), uint8(0))
	f.Add([]byte(`{"class":"TPV"}`+"\n"+`{"class":"SKY"}`), uint8(3))
	f.Fuzz(func(t *testing.T, input []byte, repeat uint8) {
		// repeat makes long lines out of short inputs.
		data := bytes.Repeat(input, int(repeat)%64+1)
		lr := newJSONLineReader(bytes.NewReader(data))
		total := 0
		for i := 0; ; i++ {
			line, err := lr.readLine()
			if err != nil {
				if !errors.Is(err, io.EOF) && !errors.Is(err, errJSONLineTooLong) {
					t.Fatalf("unexpected error %v", err)
				}
				return
			}
			if len(line) > jsonMaxLine {
				t.Fatalf("line of %d bytes", len(line))
			}
			if bytes.IndexByte(line, '\n') >= 0 {
				t.Fatal("line holds a newline")
			}
			total += len(line) + 1
			if i > len(data) || total > len(data)+1 {
				t.Fatal("more lines than input")
			}
		}
	})
}
