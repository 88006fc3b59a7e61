package daemon

import (
	"net/netip"
	"reflect"
	"testing"
	"time"

	"github.com/timed-project/timed/config"
	"github.com/timed-project/timed/control"
	"github.com/timed-project/timed/ptp"
)

// The unicast masters of a port reach ptp.SourceConfig, and the port's
// negotiation status reaches the control protocol.
func TestPTPUnicastWiring(t *testing.T) {
	a, b := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")
	tests := []struct {
		name    string
		masters []netip.Addr
		status  []ptp.UnicastMasterStatus
		want    []control.PTPUnicastMaster
	}{
		{"multicast", nil, nil, nil},
		{"two masters", []netip.Addr{a, b}, []ptp.UnicastMasterStatus{
			{Address: a, Identity: "0a1b2c.fffe.3d4e5f-1", Selected: true, Grants: []ptp.UnicastGrantStatus{
				{Message: "announce", State: "granted", LogInterval: 1, Left: 30 * time.Second},
				{Message: "sync", State: "denied", LogInterval: -3}}},
			{Address: b, Grants: []ptp.UnicastGrantStatus{{Message: "announce", State: "no answer", LogInterval: 1}}},
		}, []control.PTPUnicastMaster{
			{Address: "192.0.2.1", Identity: "0a1b2c.fffe.3d4e5f-1", Selected: true, Grants: []control.PTPUnicastGrant{
				{Message: "announce", State: "granted", LogInterval: 1, Left: 30},
				{Message: "sync", State: "denied", LogInterval: -3}}},
			{Address: "192.0.2.2", Grants: []control.PTPUnicastGrant{{Message: "announce", State: "no answer", LogInterval: 1}}},
		}},
	}
	for _, tt := range tests {
		port := config.PTPPort{Interface: "eth0", Transport: "udp4", UnicastMasters: tt.masters}
		sc := ptpSourceConfig(config.PTPConfig{}, port)
		if !reflect.DeepEqual(sc.UnicastMasters, tt.masters) && (len(sc.UnicastMasters) != 0 || len(tt.masters) != 0) {
			t.Errorf("%s: SourceConfig.UnicastMasters = %v, want %v", tt.name, sc.UnicastMasters, tt.masters)
		}
		if got := ptpUnicastMasters(tt.status); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%s: control status %+v, want %+v", tt.name, got, tt.want)
		}
	}
}
