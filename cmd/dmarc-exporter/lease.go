package main

import (
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"time"
)

// holderName names this exporter in the leases of a shared archive: its
// host, process and a random part, so that a restarted process is
// another holder.
func holderName() string {
	host, _ := os.Hostname()
	b := make([]byte, 4)
	rand.Read(b)
	return fmt.Sprintf("%s/%d/%x", host, os.Getpid(), b)
}

// leased runs a source while this exporter holds its lease in the shared
// archive, so that of the exporters sharing it exactly one reads the
// source at a time: the lease is renewed every ttl/3; when it cannot be
// (taken over after this exporter was cut off, the database gone) the
// source is stopped and the lease sought again. Another exporter takes a
// lease over at most ttl after its holder last renewed it, and looks
// every ttl/3: within ttl*4/3 of a holder's death.
func (s *server) leased(ctx context.Context, source string, ttl time.Duration, run func(context.Context)) {
	name := "source:" + source
	leader := s.leaders.WithLabelValues(source)
	leader.Set(0)
	for {
		if ok, err := s.arc.TakeLease(ctx, name, s.holder, time.Now(), ttl); err != nil && ctx.Err() == nil {
			s.log.Warn("source lease", "source", source, "err", err)
		} else if ok {
			s.log.Info("this exporter reads the source", "source", source)
			leader.Set(1)
			s.whileHeld(ctx, name, ttl, run)
			leader.Set(0)
			if ctx.Err() != nil {
				s.arc.DropLease(context.Background(), name, s.holder) // the other one need not wait
				return
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(ttl / 3):
		}
	}
}

// whileHeld runs the source until ctx is done or the lease is lost.
func (s *server) whileHeld(ctx context.Context, name string, ttl time.Duration, run func(context.Context)) {
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { run(runCtx); close(done) }()
	defer func() { cancel(); <-done }()
	for {
		select {
		case <-ctx.Done():
			return
		case <-done:
			return
		case <-time.After(ttl / 3):
		}
		if ok, err := s.arc.TakeLease(ctx, name, s.holder, time.Now(), ttl); err != nil || !ok {
			if ctx.Err() == nil {
				s.log.Warn("lost the lease of a source: stopped reading it", "lease", name, "err", err)
			}
			return
		}
	}
}
