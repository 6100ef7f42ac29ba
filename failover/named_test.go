package failover

import (
	"slices"
	"testing"

	"github.com/miekg/dns"

	"github.com/edgeprobe/edgeprobe/internal/testkit"
)

// The zone every test server serves, and the records it starts with.
const (
	testZone = "example.test."
	// Two sites' names, so that guard rails over several sites can be tested.
	testName1 = "www.example.test."
	testName2 = "api.example.test."
	testCNAME = "app.example.test."

	primary1  = "198.51.100.13"
	failover1 = "198.51.100.23"
	primary2  = "198.51.100.14"
	failover2 = "198.51.100.24"
)

// namedServer is a real BIND (testkit.StartNamed) serving testZone on a free 127.0.0.1
// port for one test, with the update key "edgeprobe" (KeyFile) and the key "readonly",
// known and granted nothing (RefusedKeyFile).
type namedServer struct{ *testkit.Named }

func startNamed(tb testing.TB) *namedServer {
	tb.Helper()
	return &namedServer{testkit.StartNamed(tb, testkit.NamedOptions{Zone: testZone, Records: `www 5 IN A ` + primary1 + `
api 5 IN A ` + primary2 + `
app 5 IN CNAME primary.example.test.
`})}
}

// lookup reads name's records of type t from the server, as a resolver would (unsigned),
// sorted.
func (s *namedServer) lookup(tb testing.TB, name string, t uint16) []string {
	tb.Helper()
	out, err := s.Lookup(name, t)
	if err != nil {
		tb.Fatalf("query %s: %v", name, err)
	}
	return out
}

// serial is the zone's SOA serial: it moves on every change the server applies.
func (s *namedServer) serial(tb testing.TB) uint32 {
	tb.Helper()
	v, err := s.Serial()
	if err != nil {
		tb.Fatalf("SOA serial: %v", err)
	}
	return v
}

// expectRecords fails unless name holds exactly want.
func (s *namedServer) expectRecords(tb testing.TB, name string, want ...string) {
	tb.Helper()
	slices.Sort(want)
	if got := s.lookup(tb, name, dns.TypeA); !slices.Equal(got, want) {
		tb.Fatalf("%s A = %v, want %v", name, got, want)
	}
}

// ttl is the TTL of name's A records.
func (s *namedServer) ttl(tb testing.TB, name string) uint32 {
	tb.Helper()
	rrs, err := s.Query(name, dns.TypeA)
	if err != nil || len(rrs) == 0 {
		tb.Fatalf("query %s: %v %v", name, rrs, err)
	}
	return rrs[0].Header().Ttl
}
