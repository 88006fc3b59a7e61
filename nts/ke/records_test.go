package ke

import (
	"bytes"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"
)

// raw encodes one record as given, without any check.
func raw(t RecordType, critical bool, body ...byte) []byte {
	h := uint16(t)
	if critical {
		h |= criticalBit
	}
	return append([]byte{byte(h >> 8), byte(h), byte(len(body) >> 8), byte(len(body))}, body...)
}

func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

var eom = raw(RecordEndOfMessage, true)

func TestParseRecords(t *testing.T) {
	cookie := bytes.Repeat([]byte{0xc0}, 100)
	manyUnknown := []byte{}
	for range MaxRecords {
		manyUnknown = append(manyUnknown, raw(0x4000, false, 1)...)
	}
	tests := []struct {
		name    string
		in      []byte
		want    []Record
		wantErr string
	}{
		{"request", cat(raw(RecordNextProtocol, true, 0, 0), raw(RecordAEAD, true, 0, 15, 0, 30), eom),
			[]Record{{RecordNextProtocol, true, []byte{0, 0}}, {RecordAEAD, true, []byte{0, 15, 0, 30}}}, ""},
		{"response", cat(raw(RecordNextProtocol, true, 0, 0), raw(RecordAEAD, false, 0, 15), raw(RecordServer, false, []byte("ntp.example")...),
			raw(RecordPort, true, 0x12, 0x34), raw(RecordNewCookie, false, cookie...), raw(RecordNewCookie, false, 1), eom),
			[]Record{{RecordNextProtocol, true, []byte{0, 0}}, {RecordAEAD, false, []byte{0, 15}}, {RecordServer, false, []byte("ntp.example")},
				{RecordPort, true, []byte{0x12, 0x34}}, {RecordNewCookie, false, cookie}, {RecordNewCookie, false, []byte{1}}}, ""},
		{"empty negotiation", cat(raw(RecordNextProtocol, true), raw(RecordAEAD, true), eom),
			[]Record{{RecordNextProtocol, true, []byte{}}, {RecordAEAD, true, []byte{}}}, ""},
		{"error and warning", cat(raw(RecordError, true, 0, 2), raw(RecordWarning, true, 0, 7), eom),
			[]Record{{RecordError, true, []byte{0, 2}}, {RecordWarning, true, []byte{0, 7}}}, ""},
		{"unknown non-critical ignored", cat(raw(0x1234, false, 1, 2, 3), raw(RecordNextProtocol, true, 0, 0), eom),
			[]Record{{RecordNextProtocol, true, []byte{0, 0}}}, ""},
		{"only end of message", eom, nil, ""},

		{"empty", nil, nil, "ends without End of Message"},
		{"no end of message", raw(RecordNextProtocol, true, 0, 0), nil, "message of 1 records ends without End of Message"},
		{"truncated header", cat(raw(RecordNextProtocol, true, 0, 0), []byte{0x80}), nil, "record 2: truncated header of 1 bytes, want 4"},
		{"truncated body", cat(raw(RecordNextProtocol, true, 0, 0), raw(RecordNewCookie, false, 1, 2, 3)[:6]), nil,
			"record 2 (New Cookie): truncated body: 2 of 3 bytes"},
		{"after end of message", cat(eom, []byte{0}), nil, "1 bytes after End of Message"},
		{"end of message with body", raw(RecordEndOfMessage, true, 0), nil, "record 1 (End of Message): body of 1 bytes, want none"},
		{"end of message not critical", raw(RecordEndOfMessage, false), nil, "record 1 (End of Message): critical bit not set"},
		{"next protocol odd", cat(raw(RecordNextProtocol, true, 0), eom), nil, "record 1 (next protocol): body of 1 bytes, want an even number"},
		{"next protocol not critical", cat(raw(RecordNextProtocol, false, 0, 0), eom), nil, "critical bit not set"},
		{"aead odd", cat(raw(RecordNextProtocol, true, 0, 0), raw(RecordNewCookie, false, 1), raw(RecordAEAD, true, 0, 15, 0), eom), nil,
			"nts-ke: record 3 (AEAD algorithm): body of 3 bytes, want an even number"},
		{"error short", cat(raw(RecordError, true, 0), eom), nil, "record 1 (Error): body of 1 bytes, want 2"},
		{"warning long", cat(raw(RecordWarning, true, 0, 0, 0), eom), nil, "record 1 (Warning): body of 3 bytes, want 2"},
		{"error not critical", cat(raw(RecordError, false, 0, 1), eom), nil, "critical bit not set"},
		{"cookie critical", cat(raw(RecordNewCookie, true, 1), eom), nil, "record 1 (New Cookie): critical bit set, RFC 8915 forbids it"},
		{"cookie empty", cat(raw(RecordNewCookie, false), eom), nil, "empty cookie"},
		{"server empty", cat(raw(RecordServer, false), eom), nil, "record 1 (NTPv4 server): body of 0 bytes, want 1 to 255"},
		{"server with space", cat(raw(RecordServer, false, 'a', ' ', 'b'), eom), nil, "byte 1 is 0x20, want printable ASCII"},
		{"server too long", cat(raw(RecordServer, false, bytes.Repeat([]byte{'a'}, 256)...), eom), nil, "body of 256 bytes, want 1 to 255"},
		{"port short", cat(raw(RecordPort, false, 1), eom), nil, "record 1 (NTPv4 port): body of 1 bytes, want 2"},
		{"unknown critical", cat(raw(RecordNextProtocol, true, 0, 0), raw(0x1234, true), eom), nil,
			"record 2 (unknown type 4660): critical but not understood"},
		{"repeated aead", cat(raw(RecordAEAD, true, 0, 15), raw(RecordAEAD, true, 0, 15), eom), nil, "record 2 (AEAD algorithm): repeated"},
		{"repeated port", cat(raw(RecordPort, false, 0, 1), raw(RecordPort, false, 0, 1), eom), nil, "record 2 (NTPv4 port): repeated"},
		{"too many records", cat(manyUnknown, eom), nil, "more than 64 records in one message"},
		{"too long", cat(raw(RecordNewCookie, false, make([]byte, 0xffff)...), eom), nil, "message longer than 16384 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseRecords(tt.in)
			checkParse(t, got, err, tt.want, tt.wantErr)
			// ReadRecords agrees, except on bytes after End of Message,
			// which it leaves unread.
			got, err = ReadRecords(bytes.NewReader(tt.in))
			if strings.Contains(tt.wantErr, "after End of Message") {
				return
			}
			wantErr := tt.wantErr
			switch {
			case strings.Contains(wantErr, "ends without End of Message"), strings.Contains(wantErr, "truncated"):
				wantErr = io.ErrUnexpectedEOF.Error()
			case strings.Contains(wantErr, "longer than"):
				wantErr = "makes the message longer than 16384 bytes"
			}
			checkParse(t, got, err, tt.want, wantErr)
		})
	}
}

func checkParse(t *testing.T, got []Record, err error, want []Record, wantErr string) {
	t.Helper()
	if wantErr != "" {
		if err == nil || !strings.Contains(err.Error(), wantErr) {
			t.Fatalf("error %v, want one containing %q", err, wantErr)
		}
		return
	}
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(normalize(got), normalize(want)) {
		t.Fatalf("records\n %v\nwant\n %v", got, want)
	}
}

// normalize makes empty bodies nil so that DeepEqual compares contents.
func normalize(recs []Record) []Record {
	out := make([]Record, len(recs))
	for i, r := range recs {
		if len(r.Body) == 0 {
			r.Body = nil
		}
		out[i] = r
	}
	return out
}

func TestUnknownCriticalIsTyped(t *testing.T) {
	_, err := ParseRecords(cat(raw(0x7000, true), eom))
	var bad *BadRecordError
	if !errors.As(err, &bad) || !bad.UnknownCritical || bad.Index != 1 {
		t.Fatalf("error %#v, want a BadRecordError for record 1 with UnknownCritical", err)
	}
	_, err = ParseRecords(cat(raw(RecordAEAD, true, 1), eom))
	if !errors.As(err, &bad) || bad.UnknownCritical {
		t.Fatalf("error %#v, want a BadRecordError without UnknownCritical", err)
	}
}

func TestAppendRecords(t *testing.T) {
	tests := []struct {
		name    string
		in      []Record
		want    []byte
		wantErr string
	}{
		{"request", []Record{U16Record(RecordNextProtocol, true, 0), U16Record(RecordAEAD, true, 15, 17)},
			cat(raw(RecordNextProtocol, true, 0, 0), raw(RecordAEAD, true, 0, 15, 0, 17), eom), ""},
		{"unknown critical is sent as given", []Record{{Type: 0x4242, Critical: true, Body: []byte{9}}},
			cat(raw(0x4242, true, 9), eom), ""},
		{"nothing", nil, eom, ""},
		{"cookie critical", []Record{{Type: RecordNewCookie, Critical: true, Body: []byte{1}}}, nil, "critical bit set"},
		{"end of message inside", []Record{{Type: RecordEndOfMessage, Critical: true}, U16Record(RecordNextProtocol, true, 0)}, nil,
			"End of Message before the last record"},
		{"type too large", []Record{{Type: 0x8000}}, nil, "does not fit in a record"},
		{"body too large", []Record{{Type: RecordNewCookie, Body: make([]byte, 0x10000)}}, nil, "does not fit in a record"},
		{"too many", make([]Record, MaxRecords), nil, "at most 64 fit"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := AppendRecords([]byte{0xaa}, tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tt.wantErr)
				}
				if !bytes.Equal(got, []byte{0xaa}) {
					t.Fatalf("dst changed on error: %x", got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got[1:], tt.want) {
				t.Fatalf("encoded %x, want %x", got[1:], tt.want)
			}
		})
	}
}

func FuzzParseRecords(f *testing.F) {
	f.Add(cat(raw(RecordNextProtocol, true, 0, 0), raw(RecordAEAD, true, 0, 15, 0, 30), eom))
	f.Add(cat(raw(RecordNextProtocol, true, 0, 0), raw(RecordAEAD, true, 0, 15), raw(RecordServer, false, 'h', 'o', 's', 't'),
		raw(RecordPort, false, 0, 123), raw(RecordNewCookie, false, 1, 2, 3), eom))
	f.Add(cat(raw(RecordError, true, 0, 1), eom))
	f.Add(cat(raw(0x1234, false, 5), raw(RecordWarning, true, 0, 0), eom))
	f.Add(cat(raw(0x1234, true), eom))
	f.Fuzz(func(t *testing.T, b []byte) {
		recs, err := ParseRecords(b)
		recs2, err2 := ReadRecords(bytes.NewReader(b))
		if err == nil && err2 != nil {
			t.Fatalf("ParseRecords accepts what ReadRecords rejects: %v", err2)
		}
		if err != nil {
			return
		}
		if !reflect.DeepEqual(normalize(recs), normalize(recs2)) {
			t.Fatalf("ParseRecords %v, ReadRecords %v", recs, recs2)
		}
		enc, err := AppendRecords(nil, recs)
		if err != nil {
			t.Fatalf("re-encoding accepted records: %v", err)
		}
		again, err := ParseRecords(enc)
		if err != nil {
			t.Fatalf("re-encoded message rejected: %v", err)
		}
		if !reflect.DeepEqual(normalize(again), normalize(recs)) {
			t.Fatalf("round trip changed %v into %v", recs, again)
		}
		if len(enc) > len(b) {
			t.Fatalf("re-encoding grew %d bytes into %d", len(b), len(enc))
		}
	})
}
