package nftables

import (
	"context"

	"sigs.k8s.io/knftables"
)

// sink receives the operations of one transaction, in order. Both
// *knftables.Transaction and *ops implement it.
type sink interface {
	Add(knftables.Object)
	Flush(knftables.Object)
	Delete(knftables.Object)
}

type verb int

const (
	verbAdd verb = iota
	verbFlush
	verbDelete
)

func (v verb) String() string { return [...]string{"add", "flush", "delete"}[v] }

// op is one operation of a transaction on a knftables object, or, when
// obj is nil, on the element el (added with its value, deleted
// without): the diff's elements reach the netlink executor without a
// knftables.Element made of them and taken apart again.
type op struct {
	verb verb
	obj  knftables.Object
	el   element
}

// ops records a transaction so that it can be replayed either into a
// knftables.Transaction (the `nft` CLI or knftables.Fake) or into one
// netlink batch (Netlink).
type ops struct{ list []op }

func (o *ops) Add(obj knftables.Object)    { o.list = append(o.list, op{verb: verbAdd, obj: obj}) }
func (o *ops) Flush(obj knftables.Object)  { o.list = append(o.list, op{verb: verbFlush, obj: obj}) }
func (o *ops) Delete(obj knftables.Object) { o.list = append(o.list, op{verb: verbDelete, obj: obj}) }

// object is x's knftables object.
func (x op) object() knftables.Object {
	if x.obj == nil {
		return x.el.object(x.verb == verbAdd)
	}
	return x.obj
}

// addElement adds or (v verbDelete) deletes e in tx.
func addElement(tx sink, v verb, e element) {
	if o, ok := tx.(*ops); ok {
		o.list = append(o.list, op{verb: v, el: e})
		return
	}
	if v == verbAdd {
		tx.Add(e.object(true))
	} else {
		tx.Delete(e.object(false))
	}
}

// replay adds the recorded operations to tx.
func (o *ops) replay(tx *knftables.Transaction) {
	for _, x := range o.list {
		x.into(tx)
	}
}

// into adds x to tx.
func (x op) into(tx *knftables.Transaction) {
	switch x.verb {
	case verbAdd:
		tx.Add(x.object())
	case verbFlush:
		tx.Flush(x.object())
	case verbDelete:
		tx.Delete(x.object())
	}
}

// run sends one transaction: over netlink when the Proxier was given a
// *Netlink, else as a knftables transaction.
func (p *Proxier) run(ctx context.Context, o *ops) error {
	if n, ok := p.nft.(*Netlink); ok {
		return n.apply(ctx, o)
	}
	tx := p.nft.NewTransaction()
	o.replay(tx)
	return p.nft.Run(ctx, tx)
}
