package jsonenc

import (
	"encoding/json"
	"math"
	"testing"
)

// FuzzAppend: AppendString and AppendFloat write what encoding/json writes for the same
// string and the same finite float; a non-finite float, which encoding/json refuses, is null.
func FuzzAppend(f *testing.F) {
	for _, s := range []string{"", "pangyo", "a<b>&\"\\\n\r\t\b\f\x01\x1f", "\u2028\u2029é\xff\xfe", "日本"} {
		f.Add(s, 0.443)
	}
	for _, v := range []float64{0, -0.0, 1e-7, 1e-6, 1e21, 1e20, 123456789.125, -3.5e-9, math.MaxFloat64, math.SmallestNonzeroFloat64} {
		f.Add("x", v)
	}
	f.Fuzz(func(t *testing.T, s string, v float64) {
		want, _ := json.Marshal(s)
		if got := AppendString(nil, s); string(got) != string(want) {
			t.Fatalf("AppendString(%q) = %s, encoding/json %s", s, got, want)
		}
		got := AppendFloat(nil, v)
		if math.IsNaN(v) || math.IsInf(v, 0) {
			if string(got) != "null" {
				t.Fatalf("AppendFloat(%v) = %s, want null", v, got)
			}
			return
		}
		if want, _ := json.Marshal(v); string(got) != string(want) {
			t.Fatalf("AppendFloat(%v) = %s, encoding/json %s", v, got, want)
		}
	})
}
