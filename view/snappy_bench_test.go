package view

import (
	"testing"
	"time"

	refsnappy "github.com/golang/snappy"
	"github.com/klauspost/compress/snappy"
)

// BenchmarkSnappyDecode: the snappy block of one agent's push of 20 sites decoded by
// github.com/golang/snappy (the view's, decodeWrite) and by klauspost/compress's strict
// decoder, side by side.
func BenchmarkSnappyDecode(b *testing.B) {
	at := time.Now()
	body := encodePushes(b, agentPush{agent: "edge0000", interval: 1, sites: benchSites(), since: at, detect: 0.3, at: at, targets: 2})
	n, err := refsnappy.DecodedLen(body)
	if err != nil {
		b.Fatal(err)
	}
	dst := make([]byte, n)
	for _, bm := range []struct {
		name   string
		decode func(dst, src []byte) ([]byte, error)
	}{{"golang", refsnappy.Decode}, {"klauspost-strict", snappy.DecodeStrict}} {
		b.Run(bm.name, func(b *testing.B) {
			b.SetBytes(int64(n))
			for b.Loop() {
				if _, err := bm.decode(dst, body); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
