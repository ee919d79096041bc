package notify

import (
	"context"
	"errors"
	"time"

	"github.com/atlas-akv-guard/atlas-akv-guard/handler/alert"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/backoff"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/transient"
)

// RetryOptions bounds Retry. Zero fields take the defaults.
type RetryOptions struct {
	Attempts int // total tries (default 4)
	// BaseDelay (default 500ms) precedes the second try and doubles per try, with jitter, up to MaxDelay
	// (default 10s), which also caps a server's Retry-After.
	BaseDelay, MaxDelay time.Duration
}

// Retry returns a Sink that tries s again after transient failures (see
// package transient), with exponential backoff and jitter, at most opts.Attempts
// times and never past ctx's deadline. After a partial delivery only the
// undelivered notices are sent again; the final error reports every notice
// delivered across attempts. The wrapper keeps s's Name.
func Retry(s Sink, opts RetryOptions) Sink {
	if opts.Attempts <= 0 {
		opts.Attempts = 4
	}
	if opts.BaseDelay <= 0 {
		opts.BaseDelay = 500 * time.Millisecond
	}
	if opts.MaxDelay <= 0 {
		opts.MaxDelay = 10 * time.Second
	}
	return &retrySink{sink: s, opts: opts}
}

type retrySink struct {
	sink Sink
	opts RetryOptions
}

func (r *retrySink) Name() string { return r.sink.Name() }

func (r *retrySink) Send(ctx context.Context, notices []alert.Notice) error {
	delay, sent := r.opts.BaseDelay, 0
	for attempt := 1; ; attempt++ {
		err := r.sink.Send(ctx, notices[sent:])
		if err == nil {
			return nil
		}
		sent = len(notices) - len(Undelivered(err, notices[sent:]))
		err = partial(err, sent)
		if !transient.Is(err) || attempt >= r.opts.Attempts || ctx.Err() != nil {
			return err
		}
		wait := backoff.Jitter(delay)
		var se *SendError
		if errors.As(err, &se) && se.RetryAfter > wait {
			wait = min(se.RetryAfter, r.opts.MaxDelay)
		}
		if dl, ok := ctx.Deadline(); (ok && time.Until(dl) < wait) || backoff.Sleep(ctx, wait) != nil {
			return err
		}
		delay = min(delay*2, r.opts.MaxDelay)
	}
}
