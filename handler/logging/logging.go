// Package logging builds the guard's structured logger: JSON records on
// stdout (which the Functions host forwards to Application Insights), with the
// invocation id and event id attached from the context of each request.
package logging

import (
	"context"
	"io"
	"log/slog"
)

type ctxKey struct{}

// maxInline is how many attributes one With keeps without a further
// allocation; the server attaches one (invocation id) or two (event id and
// type) at a time.
const maxInline = 2

// attrContext is a context carrying the attributes of one With call and a
// link to those of the enclosing With calls: one allocation per call, where
// a context.WithValue holding a copied []slog.Attr takes three.
type attrContext struct {
	context.Context
	prev   *attrContext // the attributes of the enclosing With, or nil
	inline [maxInline]slog.Attr
	more   []slog.Attr // attributes beyond maxInline
	n      int         // attributes in inline
}

func (c *attrContext) Value(key any) any {
	if key == (ctxKey{}) {
		return c
	}
	return c.Context.Value(key)
}

// addTo adds the attributes of c's chain to r, outermost first.
func (c *attrContext) addTo(r *slog.Record) {
	var chain [8]*attrContext
	n := 0
	for p := c; p != nil && n < len(chain); p = p.prev {
		chain[n] = p
		n++
	}
	if n == len(chain) && chain[n-1].prev != nil {
		chain[n-1].prev.addTo(r) // a deep chain: the outer part first
	}
	for i := n - 1; i >= 0; i-- {
		r.AddAttrs(chain[i].inline[:chain[i].n]...)
		r.AddAttrs(chain[i].more...)
	}
}

// With returns a context whose log records carry attrs (for example the
// invocation id). Attributes accumulate across calls, in call order.
func With(ctx context.Context, attrs ...slog.Attr) context.Context {
	c := &attrContext{Context: ctx}
	c.prev, _ = ctx.Value(ctxKey{}).(*attrContext)
	c.n = copy(c.inline[:], attrs)
	if len(attrs) > maxInline {
		c.more = append([]slog.Attr(nil), attrs[maxInline:]...)
	}
	return c
}

// New returns a JSON logger writing to w at the given level that adds the
// context's attributes (see With) to every record logged with a context.
func New(w io.Writer, level slog.Leveler) *slog.Logger {
	return slog.New(contextHandler{slog.NewJSONHandler(w, &slog.HandlerOptions{Level: level})})
}

// Discard returns a logger that drops everything (for tests and tools).
func Discard() *slog.Logger { return slog.New(slog.DiscardHandler) }

type contextHandler struct{ slog.Handler }

func (h contextHandler) Handle(ctx context.Context, r slog.Record) error {
	if c, ok := ctx.Value(ctxKey{}).(*attrContext); ok {
		c.addTo(&r)
	}
	return h.Handler.Handle(ctx, r)
}

func (h contextHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return contextHandler{h.Handler.WithAttrs(attrs)}
}

func (h contextHandler) WithGroup(name string) slog.Handler {
	return contextHandler{h.Handler.WithGroup(name)}
}
