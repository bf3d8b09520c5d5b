package selector

import (
	"fmt"
	"strings"
	"testing"
)

// benchSelectors are the realistic shapes the issue names: one equality, a
// 6-term mixed expression and a 100-value set.
var benchSelectors = []struct {
	name, sel string
	labels    Map // labels that make evaluation visit every term
}{
	{"simple", `app == "web"`, benchLabels("web")},
	{"mixed6", `app == "web" && env in {"prod", "staging"} && !has(quarantine) && tier != "db" && (team starts with "pay" || owner contains "ops")`, benchLabels("web")},
	{"in100", bigInSelector(), benchLabels("value-zxxxx5")},
}

func benchLabels(app string) Map {
	return Map{"app": app, "env": "staging", "tier": "frontend", "team": "platform", "owner": "sre-ops",
		"projectcalico.org/namespace": "prod"}
}

func bigInSelector() string {
	vals := make([]string, 100)
	for i := range vals {
		// Unsorted, with a shared prefix, as generated lists tend to be.
		vals[i] = fmt.Sprintf(`"value-%c%s%d"`, 'a'+i%26, strings.Repeat("x", i%7), i%10)
	}
	return "app in {" + strings.Join(vals, ", ") + "}"
}

func BenchmarkParse(b *testing.B) {
	for _, c := range benchSelectors {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Parse(c.sel); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkEvaluate(b *testing.B) {
	for _, c := range benchSelectors {
		s := MustParse(c.sel)
		b.Run(c.name+"/map", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if !s.Evaluate(c.labels) {
					b.Fatal("expected a match")
				}
			}
		})
		b.Run(c.name+"/interned", func(b *testing.B) {
			in := NewInterner()
			compiled, ls := in.Compile(s), in.LabelSet(c.labels)
			b.ReportAllocs()
			for b.Loop() {
				if !compiled.Evaluate(ls) {
					b.Fatal("expected a match")
				}
			}
		})
		b.Run(c.name+"/overlay", func(b *testing.B) {
			o := &Overlay{Top: c.labels, Bottom: Map{"team": "x", "region": "eu"}}
			b.ReportAllocs()
			for b.Loop() {
				s.Evaluate(o)
			}
		})
	}
}

func BenchmarkString(b *testing.B) {
	for _, c := range benchSelectors {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				s, _ := Parse(c.sel)
				_ = s.UniqueID()
			}
		})
	}
}

// BenchmarkBuild builds selectors with the typed builder: the mixed6 shape
// above, and 50 alternating && / || levels built one level at a time (each
// level extends the one below in place). The peer is Parse of the same
// selector's canonical form.
func BenchmarkBuild(b *testing.B) {
	mixed := func() Selector {
		return And(Eq("app", "web"), In("env", "prod", "staging"), Not(Has("quarantine")), Ne("tier", "db"),
			Or(StartsWith("team", "pay"), Contains("owner", "ops")))
	}
	deep := func() Selector {
		x := Eq("z", "1")
		for i := range 50 {
			if i%2 == 0 {
				x = And(Eq("a", "x"), x.Or(Has("b")))
			} else {
				x = Or(Eq("a", "y"), x)
			}
		}
		return x
	}
	for _, c := range []struct {
		name  string
		build func() Selector
	}{{"mixed6", mixed}, {"deep50", deep}} {
		b.Run(c.name+"/builder", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if err := c.build().Err(); err != nil {
					b.Fatal(err)
				}
			}
		})
		text := c.build().String()
		b.Run(c.name+"/parse", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Parse(text); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
