package event

import (
	"bytes"
	"encoding/json"
)

// Invocation is the request the Functions host POSTs to the custom handler
// for a non-HTTP trigger: {"Data": {"<bindingName>": …}, "Metadata": {…}}.
// Values are kept raw; decode them with Decode (Event Grid trigger) or
// DecodeTimer (timer trigger).
type Invocation struct {
	// Data maps each input binding name (e.g. "event", "timer") to its value;
	// never nil after a successful DecodeInvocation.
	Data map[string]json.RawMessage
	// Metadata holds trigger metadata (e.g. "sys"); nil when the host sent
	// none.
	Metadata map[string]json.RawMessage
}

// DecodeInvocation decodes a host invocation body. It fails, wrapping
// ErrMalformed, when the body is larger than MaxInvocationSize, is not a JSON
// object, or has no Data object. An empty Data object is accepted; Binding
// reports the missing binding.
func DecodeInvocation(body []byte) (Invocation, error) {
	if len(body) > MaxInvocationSize {
		return Invocation{}, malformed("invocation body is %d bytes, more than %d", len(body), MaxInvocationSize)
	}
	b := bytes.TrimSpace(body)
	if len(b) == 0 {
		return Invocation{}, malformed("invocation body is empty")
	}
	if b[0] != '{' {
		return Invocation{}, malformed("invocation body: want a JSON object, got %s", kindOf(b))
	}
	// The host spells the keys "Data" and "Metadata"; match them exactly, so
	// that an Event Grid event (which has "data") posted directly is not
	// mistaken for an invocation.
	var top map[string]json.RawMessage
	if err := json.Unmarshal(b, &top); err != nil {
		return Invocation{}, malformed("invocation body: %v", jsonError(err))
	}
	var inv Invocation
	data, ok := top["Data"]
	if !ok {
		if _, ok := top["data"]; ok {
			return Invocation{}, malformed(`invocation body has no Data object (it has "data": an event posted directly rather than a host invocation?)`)
		}
		return Invocation{}, malformed("invocation body has no Data object")
	}
	if err := json.Unmarshal(data, &inv.Data); err != nil {
		return Invocation{}, malformed("invocation Data: want an object, got %s", kindOf(data))
	}
	if inv.Data == nil {
		return Invocation{}, malformed("invocation body has no Data object (Data is null)")
	}
	if md, ok := top["Metadata"]; ok {
		if err := json.Unmarshal(md, &inv.Metadata); err != nil {
			return Invocation{}, malformed("invocation Metadata: want an object, got %s", kindOf(md))
		}
	}
	return inv, nil
}

// Binding returns the raw value of the input binding name. It fails, wrapping
// ErrMalformed, when the binding is absent or null.
func (inv Invocation) Binding(name string) (json.RawMessage, error) {
	v := bytes.TrimSpace(inv.Data[name])
	if _, ok := inv.Data[name]; !ok {
		return nil, malformed("invocation has no Data.%s", name)
	}
	if len(v) == 0 || bytes.Equal(v, []byte("null")) {
		return nil, malformed("invocation Data.%s is null", name)
	}
	return v, nil
}
