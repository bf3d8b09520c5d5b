package selector_test

import (
	"fmt"

	"github.com/tabbynet/tabby/selector"
)

func Example() {
	sel, err := selector.Parse(`app == 'web' && env in {"prod","staging"} && !has(quarantine)`)
	if err != nil {
		panic(err)
	}
	pod := selector.Map{"app": "web", "env": "prod"}
	fmt.Println(sel.Evaluate(pod))
	fmt.Println(sel.String())

	// Equivalent spellings share one canonical form and one ID.
	same := selector.MustParse(`(app=="web") && (env in {'staging', 'prod'}) && !has( quarantine )`)
	fmt.Println(same.UniqueID() == sel.UniqueID())

	// Errors name the column.
	_, err = selector.Parse(`app == "web" & env == "prod"`)
	fmt.Println(err)
	// Output:
	// true
	// (app == "web" && env in {"prod", "staging"} && !has(quarantine))
	// true
	// unexpected "&" at column 14, expected "&&"
}

func Example_builder() {
	sel := selector.Eq("app", "web").And(selector.Has("env"), selector.Not(selector.In("tier", "db", "cache")))
	fmt.Println(sel)
	// As the parts of a Kubernetes LabelSelector (k8sselector.ToLabelSelector
	// makes the metav1.LabelSelector).
	matchLabels, reqs, err := sel.Requirements()
	if err != nil {
		panic(err)
	}
	fmt.Println(matchLabels, reqs[0].Operator, reqs[1].Operator, reqs[1].Values)
	// Output:
	// (app == "web" && has(env) && !tier in {"cache", "db"})
	// map[app:web] Exists NotIn [cache db]
}

func Example_overlay() {
	// A pod's labels over its namespace's: the pod's win.
	pod := selector.Map{"app": "web"}
	ns := selector.Map{"team": "payments", "app": "ignored"}
	sel := selector.MustParse(`app == "web" && team == "payments"`)
	fmt.Println(sel.Evaluate(&selector.Overlay{Top: pod, Bottom: ns}))
	// Output: true
}

func ExampleSelector_Satisfiable() {
	for _, s := range []string{`env == "prod" && env == "dev"`, `has(a) && !has(a)`, `env != "prod"`} {
		fmt.Println(s, "->", selector.MustParse(s).Satisfiable())
	}
	// Output:
	// env == "prod" && env == "dev" -> false
	// has(a) && !has(a) -> false
	// env != "prod" -> true
}

func ExampleInterner() {
	in := selector.NewInterner()
	web := in.Compile(selector.MustParse(`app == "web" && team == "payments"`))
	// A pod's labels over its namespace's, stored once by key ID.
	pod := in.LabelSet(map[string]string{"app": "web"}, map[string]string{"team": "payments"})
	fmt.Println(web.Evaluate(pod))
	// Output: true
}
