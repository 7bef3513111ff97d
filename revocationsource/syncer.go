package revocationsource

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// Syncer keeps an Index equal to a Store: a full read at start (readiness
// waits for it), the store's Follower for prompt small changes, and a
// periodic full reconciliation that repairs anything a follower missed
// (dropped notifications, rows deleted behind its back).
type Syncer struct {
	Store          Store
	Index          *Index
	Logger         *slog.Logger
	Metrics        *Metrics
	ReconcileEvery time.Duration // <= 0: never after the first read
	// PruneEvery, when > 0 and the store is a Pruner, deletes the store's
	// expired items that often. Off by default: the store is the app's.
	PruneEvery time.Duration

	ready atomic.Bool
	once  sync.Once
}

func (s *Syncer) init() {
	s.once.Do(func() {
		if s.Logger == nil {
			s.Logger = slog.New(slog.DiscardHandler)
		}
	})
}

// Ready reports whether the store has answered a full read, and has not
// since become unreadable (ErrUnreadable). An outage keeps it ready: nobody
// can write to an unreachable store, so the last list is still complete.
func (s *Syncer) Ready() bool { return s.ready.Load() }

// unreadable withdraws readiness when err says the store's content can no
// longer be read; the next successful full read restores it.
func (s *Syncer) unreadable(err error) {
	if errors.Is(err, ErrUnreadable) && s.ready.Swap(false) {
		s.Logger.Error("the store's content cannot be read: /readyz and the feed answer 503 until it can; filters keep their last good list", "err", err)
	}
}

// ReconcileOnce reads the whole store and applies the difference.
func (s *Syncer) ReconcileOnce(ctx context.Context) error {
	s.init()
	start := time.Now()
	since := s.Index.Seq()
	st, err := s.Store.Load(ctx)
	if err == nil {
		err = s.Index.Reconcile(st, since)
	}
	if err != nil {
		if s.Metrics != nil {
			s.Metrics.StoreErrors.WithLabelValues("load").Inc()
		}
		s.unreadable(err)
		return err
	}
	s.ready.Store(true)
	if s.Metrics != nil {
		s.Metrics.Reconciles.Inc()
		s.Metrics.ReconcileTime.Observe(time.Since(start).Seconds())
		s.Metrics.LastSyncSeconds.SetToCurrentTime()
	}
	n, c := s.Index.Len()
	s.Logger.Debug("reconciled with store", "entries", n, "cutoffs", c, "took", time.Since(start))
	return nil
}

// Run syncs until ctx ends.
func (s *Syncer) Run(ctx context.Context) error {
	s.init()
	b := backoff{min: 250 * time.Millisecond, max: 30 * time.Second}
	for {
		err := s.ReconcileOnce(ctx)
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return nil
		}
		s.Logger.Warn("store not answering yet", "err", err)
		if !sleepCtx(ctx, b.next()) {
			return nil
		}
	}
	n, c := s.Index.Len()
	s.Logger.Info("store loaded", "entries", n, "cutoffs", c, "version", s.Index.Version())

	if f, ok := s.Store.(Follower); ok {
		go s.follow(ctx, f)
	}
	expire := time.NewTicker(time.Second)
	defer expire.Stop()
	var reconcile <-chan time.Time
	if s.ReconcileEvery > 0 {
		t := time.NewTicker(s.ReconcileEvery)
		defer t.Stop()
		reconcile = t.C
	}
	var prune <-chan time.Time
	if p, ok := s.Store.(Pruner); ok && s.PruneEvery > 0 {
		t := time.NewTicker(s.PruneEvery)
		defer t.Stop()
		prune = t.C
		s.pruneOnce(ctx, p)
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-prune:
			s.pruneOnce(ctx, s.Store.(Pruner))
		case <-expire.C:
			s.Index.MaybeExpire()
		case <-reconcile:
			if err := s.ReconcileOnce(ctx); err != nil && ctx.Err() == nil {
				lvl := slog.LevelWarn
				if errors.Is(err, ErrStaleReconcile) {
					lvl = slog.LevelInfo
				}
				s.Logger.Log(ctx, lvl, "reconciliation failed; keeping the current list", "err", err)
			}
		}
	}
}

func (s *Syncer) pruneOnce(ctx context.Context, p Pruner) {
	n, err := p.Prune(ctx)
	switch {
	case err != nil && ctx.Err() == nil:
		if s.Metrics != nil {
			s.Metrics.StoreErrors.WithLabelValues("prune").Inc()
		}
		s.Logger.Warn("pruning expired rows failed", "err", err)
	case n > 0:
		s.Logger.Info("pruned expired rows", "rows", n)
	}
}

func (s *Syncer) follow(ctx context.Context, f Follower) {
	b := backoff{min: 250 * time.Millisecond, max: 30 * time.Second}
	for {
		started := time.Now()
		err := f.Follow(ctx, s.Index)
		if ctx.Err() != nil {
			return
		}
		if s.Metrics != nil {
			s.Metrics.StoreErrors.WithLabelValues("follow").Inc()
		}
		if time.Since(started) > time.Minute {
			b.reset()
		}
		s.unreadable(err)
		s.Logger.Warn("following store changes failed; restarting", "err", err)
		if !sleepCtx(ctx, b.next()) {
			return
		}
		// Changes may have been missed while the follower was down.
		if err := s.ReconcileOnce(ctx); err != nil && ctx.Err() == nil {
			s.Logger.Warn("reconciliation after follower restart failed", "err", err)
		}
	}
}

type backoff struct{ min, max, cur time.Duration }

func (b *backoff) next() time.Duration {
	if b.cur == 0 {
		b.cur = b.min
	} else {
		b.cur = min(2*b.cur, b.max)
	}
	return b.cur
}

func (b *backoff) reset() { b.cur = 0 }

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
