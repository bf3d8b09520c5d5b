package selector

// Labels is the one thing a selector needs from what it evaluates: the value of
// a label and whether it is present. Implement it on whatever holds your labels
// (a map, a Kubernetes object, a view that layers a pod's labels over its
// namespace's) so evaluation never copies them.
type Labels interface {
	// Get returns the value of the label named key and true, or "" and false
	// when the label is absent.
	Get(key string) (value string, ok bool)
}

// Map adapts a plain map (or a Kubernetes labels.Set, which is one) to Labels.
// Converting a Map to Labels does not allocate.
type Map map[string]string

// Get implements Labels.
func (m Map) Get(key string) (string, bool) {
	v, ok := m[key]
	return v, ok
}

// Overlay is a layered view of two label sources: a label in Top hides the
// label of the same name in Bottom. Use it for an endpoint's own labels over
// its namespace's or service account's. Pass a pointer (&Overlay{...}) to keep
// evaluation free of allocations; a nil layer, or a nil *Overlay, counts as
// empty.
type Overlay struct {
	Top, Bottom Labels
}

// Get implements Labels.
func (o *Overlay) Get(key string) (string, bool) {
	if o == nil {
		return "", false
	}
	if o.Top != nil {
		if v, ok := o.Top.Get(key); ok {
			return v, true
		}
	}
	if o.Bottom != nil {
		return o.Bottom.Get(key)
	}
	return "", false
}

var (
	_ Labels = Map(nil)
	_ Labels = (*Overlay)(nil)
)
