package main

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"

	"github.com/edgeprobe/edgeprobe/config"

	"github.com/edgeprobe/edgeprobe/agent"
	"github.com/edgeprobe/edgeprobe/exporters"
	"github.com/edgeprobe/edgeprobe/internal/linequeue"
)

// outputs are the exporters one configuration asks for: the sinks the agent feeds, and
// the servers and push loops some of them run beside it.
type outputs struct {
	sinks   []agent.Sink
	runners []runner
	stdout  *linequeue.Queue
	wg      sync.WaitGroup
}

// runner is an exporter with a life of its own (an HTTP server, a push loop). Close
// releases what its constructor took when Run is never called.
type runner interface {
	Run(ctx context.Context) error
	Close() error
}

// newOutputs builds every exporter of cfg. stdout is always on (Load fills in its
// section when the file has none). Ports are bound and files read here, so that a busy
// port or a missing token file stops the agent before its first probe.
func newOutputs(cfg *config.Config, stdout io.Writer, logger *slog.Logger) (*outputs, error) {
	o := &outputs{}
	q, dropped := exporters.NewStdoutQueue(stdout, logger)
	s, err := exporters.NewStdout(q, *cfg.Exporters.Stdout)
	if err != nil {
		return nil, err
	}
	o.sinks, o.stdout = append(o.sinks, s), q
	var prom *exporters.Prometheus
	if pc := cfg.Exporters.Prometheus; pc != nil {
		prom, err = exporters.NewPrometheus(*pc, cfg.Agent.Name, cfg.Agent.Labels, logger.With("exporter", "prometheus"))
		if err != nil {
			return nil, err
		}
		if err := prom.Register(dropped); err != nil {
			prom.Close()
			return nil, err
		}
		o.sinks, o.runners = append(o.sinks, prom), append(o.runners, prom)
	}
	for _, rc := range cfg.Exporters.RemoteWrite {
		rw, err := exporters.NewRemoteWrite(rc, cfg.Agent.StateDir, cfg.Agent.Name, cfg.Agent.Labels, logger.With("exporter", "remote_write"))
		if err != nil {
			o.close()
			return nil, err
		}
		o.sinks, o.runners = append(o.sinks, rw), append(o.runners, rw)
		if prom != nil {
			if err := prom.Register(rw); err != nil {
				o.close()
				return nil, err
			}
		}
	}
	return o, nil
}

// start runs every runner until ctx ends; a runner that fails is logged, and the agent
// keeps probing: stdout and the other exporters still report.
func (o *outputs) start(ctx context.Context, logger *slog.Logger) {
	for _, r := range o.runners {
		o.wg.Add(1)
		go func() {
			defer o.wg.Done()
			if err := r.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
				logger.Error("exporter stopped", "error", err)
			}
		}()
	}
}

// wait returns a channel closed when every runner has returned.
func (o *outputs) wait() <-chan struct{} {
	done := make(chan struct{})
	go func() {
		o.wg.Wait()
		close(done)
	}()
	return done
}

// close releases the runners of outputs that never started.
func (o *outputs) close() {
	for _, r := range o.runners {
		r.Close()
	}
}
