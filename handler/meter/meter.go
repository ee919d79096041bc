// Package meter counts the HTTP round trips that one unit of work (a reconcile
// of one project, a check) makes to each external API, so the guard can report
// its API cost. A Calls travels in the context; clients add to it at the
// transport level, so retries, digest challenges and token fetches all count.
package meter

import (
	"context"
	"sync/atomic"
)

// Calls holds the round-trip counts of one unit of work. The zero value is
// ready to use; a nil *Calls ignores every Add.
type Calls struct {
	atlas atomic.Int64
	arm   atomic.Int64
}

// AddAtlas records n round trips to the Atlas Admin API (token endpoint included).
func (c *Calls) AddAtlas(n int64) {
	if c != nil {
		c.atlas.Add(n)
	}
}

// AddARM records n round trips to Azure Resource Manager.
func (c *Calls) AddARM(n int64) {
	if c != nil {
		c.arm.Add(n)
	}
}

// Atlas returns the Atlas round trips counted so far (0 for a nil *Calls).
func (c *Calls) Atlas() int64 {
	if c == nil {
		return 0
	}
	return c.atlas.Load()
}

// ARM returns the ARM round trips counted so far (0 for a nil *Calls).
func (c *Calls) ARM() int64 {
	if c == nil {
		return 0
	}
	return c.arm.Load()
}

type ctxKey struct{}

// WithCalls returns a context whose API round trips are counted in c.
func WithCalls(ctx context.Context, c *Calls) context.Context {
	return context.WithValue(ctx, ctxKey{}, c)
}

// FromContext returns the counter carried by ctx, or nil when there is none
// (a nil *Calls is safe to Add to).
func FromContext(ctx context.Context) *Calls {
	c, _ := ctx.Value(ctxKey{}).(*Calls)
	return c
}
