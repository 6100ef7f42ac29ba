package main

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/edgeprobe/edgeprobe/config"
)

// includePoll is how often the agent looks at the files its include patterns match.
const includePoll = time.Second

// watchIncludes reports the files the running configuration's include patterns match
// (config.StatIncludes: names, sizes, modification times) whenever that differs from
// what it last reported, checking every `every`, until ctx is done. The agent compares
// it with what it last loaded and reloads on a difference.
//
// It polls rather than asking the kernel (inotify) because polling is what stays right
// for every way such files change: an editor or configuration management replacing a
// file by rename, a Kubernetes ConfigMap swapping a symlinked directory, a directory
// that a pattern names appearing later, wildcards in directory names, NFS; each needs
// its own watch bookkeeping with inotify and some escape it. And it is cheap: one
// directory read per pattern and one stat per file a second, microseconds for the tens
// of files a site list has, on a goroutine of its own (a hung file system delays a
// reload, never a probe or a stop), and nothing at all without include. A change is
// seen within a second, well inside what editing a site list needs.
func watchIncludes(ctx context.Context, running *atomic.Pointer[config.Config], every time.Duration) <-chan string {
	changes := make(chan string)
	go func() {
		ticker := time.NewTicker(every)
		defer ticker.Stop()
		last := running.Load().IncludeStamp()
		for {
			select {
			case <-ctx.Done():
				return
			case <-ticker.C:
			}
			cfg := running.Load()
			if len(cfg.Include) == 0 {
				continue
			}
			now := cfg.StatIncludes()
			if now == last {
				continue
			}
			last = now
			select {
			case changes <- now:
			case <-ctx.Done():
				return
			}
		}
	}()
	return changes
}
