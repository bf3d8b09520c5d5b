package k8sselector_test

import (
	"errors"
	"fmt"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/tabbynet/tabby/selector"
	"github.com/tabbynet/tabby/selector/k8sselector"
)

// A NetworkPolicy's podSelector as a Calico selector, and back.
func Example() {
	sel, err := k8sselector.FromLabelSelector(&metav1.LabelSelector{
		MatchLabels: map[string]string{"app": "web"},
		MatchExpressions: []metav1.LabelSelectorRequirement{
			{Key: "env", Operator: metav1.LabelSelectorOpIn, Values: []string{"prod", "staging"}},
		},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(sel)
	fmt.Println(sel.Evaluate(selector.Map{"app": "web", "env": "prod"}))

	ls, err := k8sselector.ToLabelSelector(selector.MustParse(`app == "web" && !has(quarantine)`))
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(ls.MatchLabels, ls.MatchExpressions[0].Key, ls.MatchExpressions[0].Operator)

	// What a LabelSelector cannot hold, and a nil one.
	_, err = k8sselector.ToLabelSelector(selector.MustParse(`app == "web" || app == "api"`))
	fmt.Println(errors.Is(err, selector.ErrNotLabelSelector))
	none, _ := k8sselector.FromLabelSelector(nil)
	fmt.Println(none)
	// Output:
	// (app == "web" && env in {"prod", "staging"})
	// true
	// map[app:web] quarantine DoesNotExist
	// true
	// !all()
}
