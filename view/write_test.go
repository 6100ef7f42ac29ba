package view

import "testing"

// A body takes a buffer of the smallest class that holds it, and only buffers of a
// class's exact size go back to a pool.
func TestBodyClasses(t *testing.T) {
	for _, tc := range []struct {
		n       int64
		class   int
		wantCap int
	}{
		{0, 0, 4 << 10},
		{1, 0, 4 << 10},
		{4 << 10, 0, 4 << 10},
		{4<<10 + 1, 1, 8 << 10},
		{20 << 10, 3, 32 << 10},
		{64 << 10, 4, 64 << 10},
		{64<<10 + 1, -1, 64<<10 + 1},
		{1 << 20, -1, 1 << 20},
	} {
		if c := bodyClass(tc.n); c != tc.class {
			t.Errorf("bodyClass(%d) = %d, want %d", tc.n, c, tc.class)
		}
		b := getBody(tc.n)
		if int64(len(b)) != tc.n || cap(b) != tc.wantCap {
			t.Errorf("getBody(%d): len %d cap %d, want len %d cap %d", tc.n, len(b), cap(b), tc.n, tc.wantCap)
		}
		putBody(b)
	}
	// A buffer of no class's size (io.ReadAll's, for a body without a length) is not
	// pooled: a later getBody of a class never sees it.
	putBody(make([]byte, 0, 5000))
	for range 100 {
		if b := getBody(4097); cap(b) != 8<<10 {
			t.Fatalf("getBody(4097) gave cap %d, want %d", cap(b), 8<<10)
		}
	}
}
