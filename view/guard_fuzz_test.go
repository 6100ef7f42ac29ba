package view

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"net/netip"
	"testing"

	refsnappy "github.com/golang/snappy"
	"github.com/klauspost/compress/s2"
	"github.com/klauspost/compress/snappy"
)

// FuzzSnappyStrict holds github.com/golang/snappy, the format's Go reference and the
// view's decoder, and klauspost/compress's strict decoder, a second implementation, to
// the same blocks with the same bytes, and nothing else (the second may refuse a length
// header longer than its value needs, such as 80 80 80 80 80 00 for an empty block: the
// reference reads any varint, no encoder writes one, and snappyClaim refuses it); the
// header check before decoding (snappyClaim) never refuses one of them as a lie, while
// every claim it lets through is one that the block's length can hold, and decodeWrite
// refuses none of them as bad snappy.
func FuzzSnappyStrict(f *testing.F) {
	rng := rand.New(rand.NewPCG(1, 2))
	random := make([]byte, 4096)
	for i := range random {
		random[i] = byte(rng.Uint32())
	}
	for _, plain := range [][]byte{nil, []byte("a"), make([]byte, 64<<10), random, bytes.Repeat([]byte("edgeprobe_site_state"), 200)} {
		f.Add(refsnappy.Encode(nil, plain))
		f.Add(snappy.Encode(nil, plain))
		f.Add(s2.Encode(nil, plain))
	}
	f.Add([]byte{0x80, 0x80, 0x80, 0x20, 0x00, 0x00})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0x0f})
	const limit = 1 << 20
	f.Fuzz(func(t *testing.T, b []byte) {
		n, claimErr := snappyClaim(b, limit)
		if claimErr == nil && int64(n)*snappyMaxExpansionDen > int64(len(b))*snappyMaxExpansionNum {
			t.Fatalf("claim of %d bytes let through for a block of %d", n, len(b))
		}
		// The reference allocates whatever the header claims: ask it only below the limit.
		if refLen, err := refsnappy.DecodedLen(b); err != nil || refLen > limit {
			return
		}
		want, wantErr := refsnappy.Decode(nil, b)
		got, gotErr := snappy.DecodeStrict(nil, b)
		if wantErr == nil && gotErr != nil && !minimalHeader(b) {
			return
		}
		if (wantErr == nil) != (gotErr == nil) || !bytes.Equal(want, got) {
			t.Fatalf("reference: %d bytes, %v; DecodeStrict: %d bytes, %v", len(want), wantErr, len(got), gotErr)
		}
		if wantErr == nil && claimErr != nil {
			t.Fatalf("a block the reference decodes is refused before decoding: %v", claimErr)
		}
		if wantErr == nil {
			// decodeWrite decodes it the same way (and then reads the protobuf).
			if _, _, err := decodeWrite(b, n, nil); err != nil {
				var pe *pushError
				if errors.As(err, &pe) && pe.reason == "bad_snappy" {
					t.Fatalf("decodeWrite refuses a snappy block the reference decodes: %v", err)
				}
			}
		}
	})
}

// FuzzHostAllowed: no Host header makes the check panic; an IP literal is always
// allowed, and so is any spelling of a configured name (case, port, trailing dot), while
// a name that is not configured never is.
func FuzzHostAllowed(f *testing.F) {
	for _, h := range []string{"127.0.0.1:9470", "[::1]:9470", "localhost", "view.example.net.", "VIEW.example.net:443",
		"rebind.attacker.example:9470", "[fe80::1%eth0]:80", "", ":", "[", "a:b:c", "1.2.3.4.evil"} {
		f.Add(h)
	}
	cfg := DefaultConfig()
	cfg.AllowedHosts = []string{"view.example.net"}
	s, err := New(cfg, Options{})
	if err != nil {
		f.Fatal(err)
	}
	h := newHardening(cfg, s)
	f.Fuzz(func(t *testing.T, host string) {
		ok := h.hostAllowed(host)
		key := hostKey(host)
		if _, err := netip.ParseAddr(key); err == nil && !ok {
			t.Fatalf("IP literal %q refused", host)
		}
		if ok && host != "" && !h.hosts[key] {
			if _, err := netip.ParseAddr(key); err != nil {
				t.Fatalf("%q (%q) allowed but neither an IP literal nor a configured name", host, key)
			}
		}
	})
}

// minimalHeader says whether b's length header is the shortest varint of its value, as
// every snappy encoder writes it.
func minimalHeader(b []byte) bool {
	v, n := binary.Uvarint(b)
	return n > 0 && n == binary.PutUvarint(make([]byte, binary.MaxVarintLen64), v)
}
