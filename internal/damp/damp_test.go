package damp

import (
	"testing"
	"time"
)

func TestDamper(t *testing.T) {
	t0 := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	at := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }
	type step struct {
		at      float64 // seconds after t0
		verdict string  // "" to only look at the time
		want    Firing
	}
	tests := []struct {
		name                string
		lostFor, recoverFor time.Duration
		steps               []step
	}{
		{"no delays follows the verdict", 0, 0, []step{
			{0, "up", None}, {1, "lost", Lost}, {2, "degraded", Lost}, {3, "up", None},
			{4, "partitioned", Partitioned}, {5, "lost", Lost}, {6, "up", None},
		}},
		{"a loss shorter than lost_for fires nothing", 5 * time.Second, 0, []step{
			{0, "up", None}, {1, "lost", None}, {5.9, "", None}, {5.95, "up", None}, {20, "", None},
		}},
		{"a loss that lasts fires at lost_for", 5 * time.Second, 0, []step{
			{0, "lost", None}, {4.999, "", None}, {5, "", Lost}, {6, "up", None},
		}},
		{"flapping 3s/3s with lost_for 5s never fires", 5 * time.Second, 10 * time.Second, []step{
			{0, "lost", None}, {3, "up", None}, {6, "lost", None}, {9, "up", None}, {12, "lost", None},
			{15, "up", None}, {18, "lost", None}, {21, "up", None}, {60, "", None},
		}},
		{"flapping with recover_for gives one alert and one resolution", 0, 10 * time.Second, []step{
			{0, "lost", Lost}, {3, "up", Lost}, {6, "lost", Lost}, {9, "up", Lost}, {12, "lost", Lost},
			{15, "up", Lost}, {24.9, "", Lost}, {25, "", None},
		}},
		{"unknown, degraded and partitioned keep lost firing", 0, 0, []step{
			{0, "lost", Lost}, {1, "unknown", Lost}, {2, "degraded", Lost}, {3, "partitioned", Lost}, {4, "up", None},
		}},
		{"partitioned warns and turns into lost", 2 * time.Second, 0, []step{
			{0, "partitioned", None}, {2, "", Partitioned}, {3, "lost", Partitioned}, {4.9, "", Partitioned},
			{5, "", Lost},
		}},
		{"trouble that changes shape still counts from its start", 2 * time.Second, 0, []step{
			{0, "lost", None}, {1, "partitioned", None}, {1.5, "lost", None}, {2, "", Partitioned}, {3.5, "", Lost},
		}},
		{"an up that breaks restarts recover_for", 0, 5 * time.Second, []step{
			{0, "lost", Lost}, {1, "up", Lost}, {4, "degraded", Lost}, {5, "up", Lost}, {9.9, "", Lost}, {10, "", None},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := &Damper{LostFor: tt.lostFor, RecoverFor: tt.recoverFor}
			for _, s := range tt.steps {
				now := at(s.at)
				if s.verdict != "" {
					d.Update(s.verdict, now)
				}
				if got := d.Firing(now); got != s.want {
					t.Fatalf("at %gs (verdict %s): firing %v, want %v", s.at, d.Verdict(), got, s.want)
				}
			}
		})
	}
}

// TestDamperNext: Next names exactly the moment Firing changes, so a consumer that sleeps
// until Next misses no change and wakes for none that does not come.
func TestDamperNext(t *testing.T) {
	t0 := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	d := &Damper{LostFor: 2 * time.Second, RecoverFor: 3 * time.Second}
	d.Update("partitioned", t0)
	if got, want := d.Next(t0), t0.Add(2*time.Second); !got.Equal(want) {
		t.Fatalf("partitioned: Next = %v, want %v", got, want)
	}
	d.Update("lost", t0.Add(time.Second))
	if got, want := d.Next(t0.Add(time.Second)), t0.Add(2*time.Second); !got.Equal(want) {
		t.Fatalf("lost after partitioned: Next = %v, want the partitioned deadline %v", got, want)
	}
	if got, want := d.Next(t0.Add(2*time.Second)), t0.Add(3*time.Second); !got.Equal(want) || d.Firing(t0.Add(2*time.Second)) != Partitioned {
		t.Fatalf("after the warning: Next = %v (firing %v), want %v", got, d.Firing(t0.Add(2*time.Second)), want)
	}
	d.Update("up", t0.Add(4*time.Second))
	if got, want := d.Next(t0.Add(4*time.Second)), t0.Add(7*time.Second); !got.Equal(want) {
		t.Fatalf("up: Next = %v, want %v", got, want)
	}
	if got := d.Next(t0.Add(7 * time.Second)); !got.IsZero() || d.Firing(t0.Add(7*time.Second)) != None {
		t.Fatalf("resolved: Next = %v, firing %v; want zero and none", got, d.Firing(t0.Add(7*time.Second)))
	}
}
