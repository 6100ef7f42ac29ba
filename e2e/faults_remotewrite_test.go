//go:build linux

package e2e

import (
	"flag"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// The remote_write faults, each against the built agent on loopback pushing to
// a real receiver in this process (faults_rw_helpers_test.go). What is counted:
//
//   - produced: the samples of every snapshot the exporter encoded and queued, from its
//     own counter (the "remote_write stopped" log line at SIGTERM, or
//     edgeprobe_remote_write_created_samples_total on /metrics);
//   - delivered: distinct samples (series and timestamp) the receiver ingested;
//   - left in the spool at exit: decoded from the segment files;
//   - lost = produced - |delivered ∪ spool at exit| - samples of batches the agent counted
//     as dropped (and said so in a metric);
//   - duplicated: ingestions of a sample beyond the first.
//
// Probe timing: the agent prints every probe (results = "all") with its start. Throughout
// the fault every target is probed once per interval, none twice at once, no slot doubled
// or skipped (checkTiming); the jitter is logged, and `make bench-faults` prints it.

var outage = flag.Duration("outage", 5*time.Minute, "how long TestFaultReceiverDown keeps the receiver down")

// faultSites: 2 sites probing the same 2 loopback TCP servers, 4 targets.
var faultSites = []string{"alpha", "beta"}

// accounting compares produced samples with delivered ones.
type accounting struct {
	produced, delivered, inSpool, lost, duplicated int
	droppedBatches                                 int
}

// account computes lost and duplicated samples. Dropped batches count as the largest
// push's samples: the tests fault the receiver only once the state is complete, so every
// batch that can be dropped carries all of it.
func account(t testing.TB, produced int64, d delivery, spoolKeys map[string]bool, droppedBatches int64) accounting {
	t.Helper()
	union := len(d.keys)
	overlap := 0
	for k := range spoolKeys {
		if d.keys[k] {
			overlap++ // delivered and still spooled: the next start sends it again
		} else {
			union++
		}
	}
	droppedSamples := int(droppedBatches) * d.seriesMax
	a := accounting{produced: int(produced), delivered: d.samples, inSpool: len(spoolKeys),
		duplicated: d.sampleDups + overlap, droppedBatches: int(droppedBatches)}
	a.lost = a.produced - union - droppedSamples
	t.Logf("samples: produced %d, delivered %d (%d batches), left in spool %d, dropped and counted %d (%d batches), lost %d, duplicated %d (%d already ingested twice, %d would be resent); series per push %d..%d",
		a.produced, a.delivered, d.batches, a.inSpool, droppedSamples, droppedBatches, a.lost, a.duplicated, d.sampleDups, overlap, d.seriesMin, d.seriesMax)
	return a
}

// TestFaultReceiverDown: the receiver is down (connection refused) for -outage (5 min by
// default, the figure), then back. Probing goes on at its interval, the spool
// holds every batch, and every one is delivered after recovery: zero samples lost.
func TestFaultReceiverDown(t *testing.T) {
	t.Parallel()
	recv := newRWReceiver(t)
	recv.up(rwOK)
	stateDir := t.TempDir()
	cfg := faultConfig{StateDir: stateDir, Interval: 500 * time.Millisecond, Targets: tcpTargets(t, 2), Sites: faultSites,
		URL: recv.url(), PushInterval: time.Second, Timeout: 2 * time.Second, QueueSize: 1000, Spool: true}
	a := startFaultAgent(t, cfg)
	recv.waitFullState(15*time.Second, cfg)

	recv.down()
	outageStart := time.Now()
	t.Logf("receiver down for %v", *outage)
	time.Sleep(*outage)
	a.alive("during the outage")
	m := a.mustMetrics()
	queued := metric(m, "edgeprobe_remote_write_queued_batches")
	spoolDir := filepath.Join(stateDir, "spool", "recv")
	_, spooled, _ := spoolContents(t, spoolDir)
	t.Logf("after %v down: %g batches queued, %d segments in %s, dropped %g", *outage, queued, len(spooled), spoolDir,
		metric(m, "edgeprobe_remote_write_dropped_batches_total"))
	if want := outage.Seconds()/cfg.PushInterval.Seconds() - 2; queued < want {
		t.Errorf("%g batches queued after %v without a receiver, want at least %g (one a push interval)", queued, *outage, want)
	}
	if float64(len(spooled)) < queued-1 {
		t.Errorf("%d segments on disk for %g queued batches: the spool must hold them", len(spooled), queued)
	}
	if n := len(a.logLines("push failed")); n < 1 || n > 2+int(outage.Minutes()) {
		t.Errorf("%d \"push failed\" log lines over %v: want one when it starts and at most one a minute", n, *outage)
	}

	recv.up(rwOK)
	healed := time.Now()
	a.waitMetric(60*time.Second, "the spool to drain", func(m map[string]float64) bool {
		return metric(m, "edgeprobe_remote_write_queued_batches") == 0
	})
	t.Logf("spool drained %v after the receiver came back", time.Since(healed).Round(time.Millisecond))
	a.waitLog(5*time.Second, "receiver accepts pushes again")
	time.Sleep(2 * cfg.PushInterval)
	end := time.Now()
	a.checkTiming("through the outage and recovery", outageStart.Add(-time.Second), end)

	a.stop(syscall.SIGTERM)
	stop := a.stopLine()
	spoolKeys, _, _ := spoolContents(t, spoolDir)
	d := recv.delivered()
	acc := account(t, stop["created_samples"], d, spoolKeys, stop["dropped_batches"])
	if acc.lost != 0 || acc.droppedBatches != 0 {
		t.Errorf("%d samples lost and %d batches dropped over a %v outage, want none", acc.lost, acc.droppedBatches, *outage)
	}
	if acc.duplicated != 0 {
		t.Errorf("%d samples ingested twice with no crash", acc.duplicated)
	}
	if d.outOfOrder != 0 {
		t.Errorf("%d pushes arrived after a newer one: the backlog must go oldest first", d.outOfOrder)
	}
}

// TestFaultReceiverBroken: a receiver that accepts connections and never answers, and one
// that answers 500 to everything, each for 20 s with a memory queue of 20 batches. The
// agent keeps probing at its interval, memory and goroutines stay flat, the queue stays
// at its bound with the overflow counted, the log says so once rather than per retry,
// and it recovers when the receiver heals.
func TestFaultReceiverBroken(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		mode int
	}{{"never answers", rwHang}, {"answers 500", rw500}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			recv := newRWReceiver(t)
			recv.up(rwOK)
			cfg := faultConfig{Interval: 500 * time.Millisecond, Targets: tcpTargets(t, 2), Sites: faultSites,
				URL: recv.url(), PushInterval: 200 * time.Millisecond, Timeout: time.Second, QueueSize: 20}
			a := startFaultAgent(t, cfg)
			recv.waitFullState(15*time.Second, cfg)
			time.Sleep(2 * time.Second) // let the runtime settle before measuring memory
			rss0, g0 := a.rssBytes(), metric(a.mustMetrics(), "go_goroutines")

			recv.setMode(tc.mode)
			faultStart := time.Now()
			const faultFor = 20 * time.Second
			var rssMax int64
			var gMax, queuedMax float64
			for time.Since(faultStart) < faultFor {
				time.Sleep(time.Second)
				a.alive("during the fault")
				m := a.mustMetrics()
				rssMax = max(rssMax, a.rssBytes())
				gMax = max(gMax, metric(m, "go_goroutines"))
				queuedMax = max(queuedMax, metric(m, "edgeprobe_remote_write_queued_batches"))
			}
			m := a.mustMetrics()
			dropped := metric(m, "edgeprobe_remote_write_dropped_batches_total", `reason="queue_full"`)
			t.Logf("during %v: RSS %d -> max %d KiB, goroutines %g -> max %g, queued max %g, dropped (queue_full) %g, failed requests %g, attempts at the receiver %d",
				faultFor, rss0>>10, rssMax>>10, g0, gMax, queuedMax, dropped,
				metric(m, "edgeprobe_remote_write_failed_requests_total"), recv.delivered().attempts)
			if rssMax-rss0 > 8<<20 {
				t.Errorf("RSS grew by %d KiB during the fault, want under 8 MiB", (rssMax-rss0)>>10)
			}
			if gMax-g0 > 10 {
				t.Errorf("goroutines grew from %g to %g during the fault", g0, gMax)
			}
			if queuedMax > float64(cfg.QueueSize) {
				t.Errorf("%g batches queued, beyond queue_size %d", queuedMax, cfg.QueueSize)
			}
			if want := faultFor.Seconds()/cfg.PushInterval.Seconds() - float64(cfg.QueueSize) - 15; dropped < want {
				t.Errorf("%g batches dropped as queue_full over %v at one per %v with a queue of %d, want at least %g", dropped, faultFor, cfg.PushInterval, cfg.QueueSize, want)
			}
			if n := len(a.logLines("push failed")); n != 1 {
				t.Errorf("%d \"push failed\" log lines during the %v fault, want 1 (then one a minute); log:\n%s", n, faultFor, a.log())
			}
			if n := len(a.logLines("memory queue full")); n != 1 {
				t.Errorf("%d \"memory queue full\" log lines during the fault, want 1; log:\n%s", n, a.log())
			}

			recv.setMode(rwOK)
			healed := time.Now()
			a.waitMetric(20*time.Second, "the queue to drain", func(m map[string]float64) bool {
				return metric(m, "edgeprobe_remote_write_queued_batches") <= 1 &&
					metric(m, "edgeprobe_remote_write_sent_batches_total") > 0
			})
			t.Logf("queue drained %v after the receiver healed", time.Since(healed).Round(time.Millisecond))
			a.waitLog(5*time.Second, "receiver accepts pushes again")
			time.Sleep(time.Second)
			a.checkTiming("through the fault and recovery", faultStart.Add(-time.Second), time.Now())
			a.stop(syscall.SIGTERM)
			stop := a.stopLine()
			// No spool: batches still queued at exit are lost, and the stop line says how many.
			d := recv.delivered()
			acc := account(t, stop["created_samples"], d, nil, stop["dropped_batches"]+stop["queued_batches"])
			// A batch in flight at SIGTERM may be both ingested and counted as queued at
			// exit: lost is then minus one batch's samples.
			if acc.lost > 0 || acc.lost < -d.seriesMax {
				t.Errorf("%d samples lost beyond the %d batches counted as dropped or queued at exit", acc.lost, stop["dropped_batches"]+stop["queued_batches"])
			}
			if acc.duplicated != 0 {
				t.Errorf("%d samples ingested twice", acc.duplicated)
			}
		})
	}
}

// TestFaultSpoolDiskFull: the spool lives on a 256 KiB tmpfs and the receiver is down,
// so the disk fills (segments cost a page each on tmpfs: about 60 fit). The agent says so
// once, drops the oldest batches and counts them (disk_full), keeps probing, and never
// crashes; when space returns (a filler file removed) and the receiver is back, every
// batch still spooled is delivered, and the dropped ones are exactly the oldest.
func TestFaultSpoolDiskFull(t *testing.T) {
	t.Parallel()
	stateDir := mountTmpfs(t, "256k")
	recv := newRWReceiver(t)
	recv.up(rwOK)
	cfg := faultConfig{StateDir: stateDir, Interval: 500 * time.Millisecond, Targets: tcpTargets(t, 2), Sites: faultSites,
		URL: recv.url(), PushInterval: 100 * time.Millisecond, Timeout: time.Second, QueueSize: 1000, Spool: true}
	a := startFaultAgent(t, cfg)
	recv.waitFullState(15*time.Second, cfg)
	recv.down() // connection refused: the spool fills its disk
	faultStart := time.Now()
	m := a.waitMetric(30*time.Second, "the spool's disk to fill", func(m map[string]float64) bool {
		return metric(m, "edgeprobe_remote_write_dropped_batches_total", `reason="disk_full"`) >= 10
	})
	t.Logf("disk full after %v: %g batches queued", time.Since(faultStart).Round(time.Millisecond), metric(m, "edgeprobe_remote_write_queued_batches"))
	time.Sleep(3 * time.Second) // full for a while: the log must not grow a line per batch
	a.alive("with the disk full")
	if n := len(a.logLines("disk full")); n != 1 {
		t.Errorf("%d \"disk full\" log lines, want 1; log:\n%s", n, a.log())
	}
	if n := len(a.logLines("level=ERROR")); n > 1 {
		t.Errorf("%d error lines with the disk full, want 1", n)
	}

	// Space returns: the receiver comes back and the spool drains.
	recv.up(rwOK)
	a.waitMetric(30*time.Second, "the spool to drain", func(m map[string]float64) bool {
		return metric(m, "edgeprobe_remote_write_queued_batches") <= 1
	})
	m = a.mustMetrics()
	droppedAfter := metric(m, "edgeprobe_remote_write_dropped_batches_total", `reason="disk_full"`)
	time.Sleep(2 * time.Second)
	if d := metric(a.mustMetrics(), "edgeprobe_remote_write_dropped_batches_total", `reason="disk_full"`); d != droppedAfter {
		t.Errorf("disk_full drops went on after the spool drained: %g -> %g", droppedAfter, d)
	}
	a.waitLog(5*time.Second, "disk has room again")
	a.checkTiming("with the spool's disk full", faultStart, time.Now())
	a.stop(syscall.SIGTERM)
	stop := a.stopLine()
	spoolKeys, _, _ := spoolContents(t, filepath.Join(stateDir, "spool", "recv"))
	d := recv.delivered()
	acc := account(t, stop["created_samples"], d, spoolKeys, stop["dropped_batches"])
	if acc.lost != 0 {
		t.Errorf("%d samples lost beyond the %d batches counted as dropped", acc.lost, acc.droppedBatches)
	}
	if stop["dropped_batches"] < 10 {
		t.Errorf("only %d batches dropped with the disk full", stop["dropped_batches"])
	}
	// The oldest went: the delivered batches are the ones before the outage, then one run
	// at the push interval, with no hole in the middle (a hole is a batch dropped that was
	// not among the oldest). The hole from the outage's start is the dropped oldest.
	holes := 0
	for i := 1; i < len(d.timestamps); i++ {
		if gap := time.Duration(d.timestamps[i]-d.timestamps[i-1]) * time.Millisecond; gap > 5*cfg.PushInterval {
			holes++
			t.Logf("delivered batches %d and %d are %v apart", d.timestamps[i-1], d.timestamps[i], gap)
		}
	}
	if holes != 1 {
		t.Errorf("%d holes in the delivered batches, want exactly 1 (the oldest of the outage dropped)", holes)
	}
}

// TestFaultSpoolReadOnly: the spool's file system is remounted read-only for 5 s while
// the receiver is down. The agent says once that it cannot write, holds the batches in
// memory (queue_size 20: the overflow is dropped oldest first and counted as
// spool_error), keeps probing and never crashes; remounted read-write and with the
// receiver back, everything not counted as dropped is delivered.
func TestFaultSpoolReadOnly(t *testing.T) {
	t.Parallel()
	stateDir := mountTmpfs(t, "4m")
	recv := newRWReceiver(t)
	recv.up(rwOK)
	cfg := faultConfig{StateDir: stateDir, Interval: 500 * time.Millisecond, Targets: tcpTargets(t, 2), Sites: faultSites,
		URL: recv.url(), PushInterval: 100 * time.Millisecond, Timeout: time.Second, QueueSize: 20, Spool: true}
	a := startFaultAgent(t, cfg)
	recv.waitFullState(15*time.Second, cfg)
	recv.down()
	faultStart := time.Now()
	a.waitMetric(15*time.Second, "batches in the spool", func(m map[string]float64) bool {
		return metric(m, "edgeprobe_remote_write_queued_batches") >= 10
	})
	remount(t, stateDir, "ro")
	time.Sleep(5 * time.Second)
	a.alive("with the spool read-only")
	m := a.mustMetrics()
	t.Logf("read-only for 5 s: %g batches queued, %g dropped (spool_error)", metric(m, "edgeprobe_remote_write_queued_batches"),
		metric(m, "edgeprobe_remote_write_dropped_batches_total", `reason="spool_error"`))
	if n := len(a.logLines("cannot write")); n != 1 {
		t.Errorf("%d \"cannot write\" log lines, want 1; log:\n%s", n, a.log())
	}
	if d := metric(m, "edgeprobe_remote_write_dropped_batches_total", `reason="spool_error"`); d < 10 {
		t.Errorf("%g batches dropped as spool_error after 5 s read-only at 10 a second with 20 held in memory, want at least 10", d)
	}
	remount(t, stateDir, "rw")
	recv.up(rwOK)
	a.waitMetric(30*time.Second, "the spool to drain", func(m map[string]float64) bool {
		return metric(m, "edgeprobe_remote_write_queued_batches") <= 1
	})
	a.waitLog(5*time.Second, "writing again")
	a.checkTiming("with the spool read-only", faultStart, time.Now())
	a.stop(syscall.SIGTERM)
	stop := a.stopLine()
	spoolKeys, _, _ := spoolContents(t, filepath.Join(stateDir, "spool", "recv"))
	acc := account(t, stop["created_samples"], recv.delivered(), spoolKeys, stop["dropped_batches"])
	if acc.lost != 0 {
		t.Errorf("%d samples lost beyond the %d batches counted as dropped", acc.lost, acc.droppedBatches)
	}
}

// TestFaultKillDuringFlush: 3 s of outage fill the spool; the receiver comes back slow
// (each push ingested, then answered after 300 ms), and the agent is SIGKILLed in the
// middle of flushing the backlog, then restarted on the same state_dir.
//
// The guarantee: a batch counts as created once its segment is fsynced (file and
// directory), and its segment is unlinked only after the receiver's 2xx. So after a kill
// every created batch is either acknowledged or whole on disk, and the only batch that
// can reach the receiver twice is the one in flight at the kill (ingested, never
// acknowledged), which the restarted agent sends first. A snapshot being encoded or
// written at the kill instant is lost before it counted: at most one push interval,
// superseded by the next snapshot's complete state. The duplicate carries the same
// timestamps and values; remote_write receivers (Prometheus, Mimir, the view) take an
// identical sample again without error or effect.
func TestFaultKillDuringFlush(t *testing.T) {
	t.Parallel()
	recv := newRWReceiver(t)
	recv.slow = 300 * time.Millisecond
	stateDir := t.TempDir()
	spoolDir := filepath.Join(stateDir, "spool", "recv")
	cfg := faultConfig{StateDir: stateDir, Interval: 500 * time.Millisecond, Targets: tcpTargets(t, 2), Sites: faultSites,
		URL: recv.url(), PushInterval: 100 * time.Millisecond, Timeout: 5 * time.Second, QueueSize: 1000, Spool: true}
	recv.up(rwOK)
	first := startFaultAgent(t, cfg)
	recv.waitFullState(15*time.Second, cfg)
	recv.down()
	first.waitMetric(15*time.Second, "a backlog in the spool", func(m map[string]float64) bool {
		return metric(m, "edgeprobe_remote_write_queued_batches") >= 30
	})
	already := recv.delivered().batches
	recv.up(rwSlow)
	waitFor := time.Now().Add(15 * time.Second)
	for recv.delivered().batches < already+5 {
		if time.Now().After(waitFor) {
			t.Fatalf("the slow receiver got %d batches in 15 s", recv.delivered().batches)
		}
		time.Sleep(20 * time.Millisecond)
	}
	before := first.mustMetrics()
	createdBefore := metric(before, "edgeprobe_remote_write_created_samples_total")
	first.stop(syscall.SIGKILL)
	if first.running() {
		t.Fatal("agent survived SIGKILL")
	}
	run1 := recv.delivered()
	diskKeys, diskBatches, tmp := spoolContents(t, spoolDir)
	t.Logf("killed with %d batches delivered (%d samples), %d segments on disk (%d samples), %d temporary files",
		run1.batches, run1.samples, len(diskBatches), len(diskKeys), tmp)
	// Everything created by the last scrape before the kill is delivered or on disk.
	union := len(run1.keys)
	for k := range diskKeys {
		if !run1.keys[k] {
			union++
		}
	}
	if float64(union) < createdBefore {
		t.Errorf("after the kill %d samples are delivered or on disk, but %g had been created before it: lost beyond the last fsync", union, createdBefore)
	}

	recv.setMode(rwOK)
	second := startFaultAgent(t, cfg)
	second.waitMetric(30*time.Second, "the spool to drain after the restart", func(m map[string]float64) bool {
		return metric(m, "edgeprobe_remote_write_queued_batches") <= 1 &&
			metric(m, "edgeprobe_remote_write_sent_batches_total") > float64(len(diskBatches))
	})
	second.stop(syscall.SIGTERM)
	stop := second.stopLine()
	all := recv.delivered()
	for k := range diskKeys {
		if !all.keys[k] {
			t.Errorf("sample %s was on disk after the kill and never delivered after the restart", k)
			break
		}
	}
	exitKeys, _, _ := spoolContents(t, spoolDir)
	// Run 2's own samples are accounted like the other faults'; run 1's are the union above.
	run2Produced := stop["created_samples"]
	acc := account(t, int64(union)+run2Produced, all, exitKeys, stop["dropped_batches"])
	t.Logf("batches delivered twice: %v (in flight at the kill: run 1's last delivered %d, oldest on disk %v)",
		all.dupBatches, lastOf(run1.timestamps), firstOf(diskBatches))
	if acc.lost != 0 {
		t.Errorf("%d samples lost across the kill and restart", acc.lost)
	}
	if all.batchDups > 1 {
		t.Errorf("%d batches delivered twice, want at most 1 (the one in flight at the kill): %v", all.batchDups, all.dupBatches)
	}
	if all.batchDups == 1 && all.dupBatches[0] != lastOf(run1.timestamps) {
		t.Errorf("batch %d delivered twice, but the one in flight at the kill was %d", all.dupBatches[0], lastOf(run1.timestamps))
	}
}

func lastOf(s []int64) int64 {
	if len(s) == 0 {
		return 0
	}
	return s[len(s)-1]
}

func firstOf(s []int64) any {
	if len(s) == 0 {
		return "none"
	}
	return s[0]
}

// TestFaultNoneControl is the control of the probe timing checks: the same agent and
// receiver with no fault for 20 s. When the others' timing fails, this one says whether
// the fault or the machine (a loaded CI host, other tests) moved the probes.
func TestFaultNoneControl(t *testing.T) {
	t.Parallel()
	recv := newRWReceiver(t)
	recv.up(rwOK)
	cfg := faultConfig{StateDir: t.TempDir(), Interval: 500 * time.Millisecond, Targets: tcpTargets(t, 2), Sites: faultSites,
		URL: recv.url(), PushInterval: 100 * time.Millisecond, Timeout: time.Second, QueueSize: 1000, Spool: true}
	a := startFaultAgent(t, cfg)
	recv.waitFullState(15*time.Second, cfg)
	start := time.Now()
	time.Sleep(20 * time.Second)
	a.checkTiming("with no fault", start, time.Now())
	a.stop(syscall.SIGTERM)
	stop := a.stopLine()
	spoolKeys, _, _ := spoolContents(t, filepath.Join(cfg.StateDir, "spool", "recv"))
	if acc := account(t, stop["created_samples"], recv.delivered(), spoolKeys, stop["dropped_batches"]); acc.lost != 0 || acc.duplicated > fullState(cfg) {
		t.Errorf("with no fault: %d samples lost, %d duplicated", acc.lost, acc.duplicated)
	}
}
