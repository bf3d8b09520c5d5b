package policy

import (
	"bytes"
	"encoding"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"

	networkingv1 "k8s.io/api/networking/v1"
	"sigs.k8s.io/yaml"
)

// Decode reads one or more YAML (or JSON) documents separated by "---" and
// returns the resources in order (*Tier, *NetworkPolicy,
// *GlobalNetworkPolicy, *NetworkSet, *GlobalNetworkSet), each validated. Unknown fields, values of
// the wrong type and invalid values are errors naming the document and the
// field path (spec.ingress[2].source.selector: ...). On any error nothing is
// returned. Besides the Calico kinds (apiVersion projectcalico.org/v3),
// Kubernetes networking.k8s.io/v1 NetworkPolicy documents are accepted and
// converted with FromK8s, and lists (kind: List, or a typed list such as
// NetworkPolicyList, as kubectl and calicoctl print them) are decoded item by
// item.
func Decode(data []byte) ([]Resource, error) {
	var out []Resource
	var problems []string
	for i, doc := range splitDocuments(data) {
		objs, err := decodeOne(doc)
		if err != nil {
			problems = append(problems, fmt.Sprintf("document %d: %v", i+1, err))
			continue
		}
		out = append(out, objs...)
	}
	if len(problems) > 0 {
		return nil, fmt.Errorf("%w: %s", ErrDecode, strings.Join(problems, "; "))
	}
	return out, nil
}

// Add appends resources (what Decode returns, and Endpoints, Namespaces and
// ServiceEndpoints) to the lists they belong to. Nil resources are skipped.
func (r *Resources) Add(objs ...Resource) {
	for _, o := range objs {
		switch v := o.(type) {
		case *Tier:
			r.Tiers = append(r.Tiers, v)
		case *NetworkPolicy:
			r.NetworkPolicies = append(r.NetworkPolicies, v)
		case *GlobalNetworkPolicy:
			r.GlobalNetworkPolicies = append(r.GlobalNetworkPolicies, v)
		case *NetworkSet:
			r.NetworkSets = append(r.NetworkSets, v)
		case *GlobalNetworkSet:
			r.GlobalNetworkSets = append(r.GlobalNetworkSets, v)
		case *Endpoint:
			r.Endpoints = append(r.Endpoints, v)
		case *Namespace:
			r.Namespaces = append(r.Namespaces, v)
		case *ServiceEndpoints:
			r.ServiceEndpoints = append(r.ServiceEndpoints, v)
		}
	}
}

func splitDocuments(data []byte) [][]byte {
	var docs [][]byte
	var cur bytes.Buffer
	flush := func() {
		if len(bytes.TrimSpace(cur.Bytes())) > 0 {
			docs = append(docs, bytes.Clone(cur.Bytes()))
		} else {
			docs = append(docs, nil)
		}
		cur.Reset()
	}
	for _, line := range bytes.SplitAfter(data, []byte("\n")) {
		t := bytes.TrimRight(line, " \t\r\n")
		if bytes.Equal(t, []byte("---")) || bytes.HasPrefix(t, []byte("--- ")) {
			flush()
			continue
		}
		cur.Write(line)
	}
	flush()
	// Empty documents stay in the list (decodeOne skips them) so that error
	// messages number documents as they appear in the input.
	return docs
}

func decodeOne(doc []byte) ([]Resource, error) {
	if len(bytes.TrimSpace(doc)) == 0 {
		return nil, nil
	}
	js, err := yaml.YAMLToJSON(doc)
	if err != nil {
		return nil, fmt.Errorf("malformed YAML: %v", err)
	}
	var generic any
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.UseNumber()
	if err := dec.Decode(&generic); err != nil {
		return nil, fmt.Errorf("malformed document: %v", err)
	}
	if generic == nil {
		return nil, nil
	}
	m, ok := generic.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("a resource must be a mapping, got %s", jsonKind(generic))
	}
	kind, _ := m["kind"].(string)
	if kind != "List" && !strings.HasSuffix(kind, "List") {
		obj, err := decodeResource(m)
		if err != nil {
			return nil, err
		}
		return []Resource{obj}, nil
	}
	// A list (kind: List, or NetworkPolicyList and the like) as kubectl and
	// calicoctl print them: decode every item.
	items, ok := m["items"].([]any)
	if !ok && m["items"] != nil {
		return nil, fmt.Errorf("items: must be a list, got %s", jsonKind(m["items"]))
	}
	var out []Resource
	var problems []string
	for i, it := range items {
		im, ok := it.(map[string]any)
		if !ok {
			problems = append(problems, fmt.Sprintf("items[%d]: a resource must be a mapping, got %s", i, jsonKind(it)))
			continue
		}
		if _, ok := im["apiVersion"]; !ok && strings.HasSuffix(kind, "List") && kind != "List" {
			// Typed lists may leave apiVersion and kind out of their items.
			im["apiVersion"], im["kind"] = m["apiVersion"], strings.TrimSuffix(kind, "List")
		}
		obj, err := decodeResource(im)
		if err != nil {
			problems = append(problems, fmt.Sprintf("items[%d]: %v", i, err))
			continue
		}
		out = append(out, obj)
	}
	if len(problems) > 0 {
		return nil, errors.New(strings.Join(problems, "; "))
	}
	return out, nil
}

// decodeResource decodes one resource from its generic JSON form.
func decodeResource(m map[string]any) (Resource, error) {
	apiVersion, _ := m["apiVersion"].(string)
	kind, _ := m["kind"].(string)
	var obj any
	switch {
	case apiVersion == "networking.k8s.io/v1" && kind == "NetworkPolicy":
		obj = &networkingv1.NetworkPolicy{}
	case apiVersion != APIVersion:
		return nil, fmt.Errorf("apiVersion: must be %s (or networking.k8s.io/v1 for a Kubernetes NetworkPolicy), got %q", APIVersion, apiVersion)
	case kind == KindTier:
		obj = &Tier{}
	case kind == KindNetworkPolicy:
		obj = &NetworkPolicy{}
	case kind == KindGlobalNetworkPolicy:
		obj = &GlobalNetworkPolicy{}
	case kind == KindNetworkSet:
		obj = &NetworkSet{}
	case kind == KindGlobalNetworkSet:
		obj = &GlobalNetworkSet{}
	default:
		return nil, fmt.Errorf("kind: unknown kind %q", kind)
	}
	var e errs
	checkShape(reflect.TypeOf(obj).Elem(), any(m), nil, &e)
	if len(e.list) > 0 {
		return nil, e.result(kind, docName(m))
	}
	js, err := json.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %v", kind, docName(m), err)
	}
	if err := json.Unmarshal(js, obj); err != nil {
		return nil, fmt.Errorf("%s %s: %v", kind, docName(m), err)
	}
	switch v := obj.(type) {
	case *networkingv1.NetworkPolicy:
		return FromK8s(v)
	case Resource:
		if err := v.Validate(); err != nil {
			return nil, err
		}
		return v, nil
	}
	return nil, fmt.Errorf("kind: unknown kind %q", kind) // not reached: every kind above is a Resource
}

func docName(m map[string]any) string {
	md, _ := m["metadata"].(map[string]any)
	name, _ := md["name"].(string)
	if ns, _ := md["namespace"].(string); ns != "" {
		return ns + "/" + name
	}
	return name
}

func jsonKind(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case map[string]any:
		return "a mapping"
	case []any:
		return "a list"
	case string:
		return "a string"
	case bool:
		return "a boolean"
	case json.Number:
		return "a number"
	}
	return fmt.Sprintf("%T", v)
}

var (
	jsonUnmarshaler = reflect.TypeFor[json.Unmarshaler]()
	textUnmarshaler = reflect.TypeFor[encoding.TextUnmarshaler]()
)

// checkShape walks a generic JSON value against the Go type it will be
// decoded into and reports unknown fields and wrongly-typed values by path,
// so that the later json.Unmarshal cannot fail without saying where.
func checkShape(t reflect.Type, v any, p *path, e *errs) {
	at := func() *path {
		if p == nil {
			return root("(document)")
		}
		return p
	}
	if v == nil {
		return // null is the zero value for anything
	}
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if reflect.PointerTo(t).Implements(jsonUnmarshaler) {
		raw, _ := json.Marshal(v)
		if err := reflect.New(t).Interface().(json.Unmarshaler).UnmarshalJSON(raw); err != nil {
			e.add(at(), err.Error())
		}
		return
	}
	if reflect.PointerTo(t).Implements(textUnmarshaler) {
		s, ok := v.(string)
		if !ok {
			e.add(at(), "must be a string, got "+jsonKind(v))
			return
		}
		if err := reflect.New(t).Interface().(encoding.TextUnmarshaler).UnmarshalText([]byte(s)); err != nil {
			e.add(at(), err.Error())
		}
		return
	}
	switch t.Kind() {
	case reflect.Struct:
		m, ok := v.(map[string]any)
		if !ok {
			e.add(at(), "must be a mapping, got "+jsonKind(v))
			return
		}
		fields := jsonFields(t)
		for k, sub := range m {
			ft, ok := fields[k]
			child := root(k)
			if p != nil {
				child = p.field(k)
			}
			if !ok {
				e.add(child, "unknown field")
				continue
			}
			checkShape(ft, sub, child, e)
		}
	case reflect.Slice:
		if t.Elem().Kind() == reflect.Uint8 {
			if _, ok := v.(string); !ok {
				e.add(at(), "must be a base64 string, got "+jsonKind(v))
			}
			return
		}
		l, ok := v.([]any)
		if !ok {
			e.add(at(), "must be a list, got "+jsonKind(v))
			return
		}
		for i, sub := range l {
			checkShape(t.Elem(), sub, at().at(i), e)
		}
	case reflect.Map:
		m, ok := v.(map[string]any)
		if !ok {
			e.add(at(), "must be a mapping, got "+jsonKind(v))
			return
		}
		for k, sub := range m {
			checkShape(t.Elem(), sub, at().field(k), e)
		}
	case reflect.String:
		if _, ok := v.(string); !ok {
			e.add(at(), "must be a string, got "+jsonKind(v))
		}
	case reflect.Bool:
		if _, ok := v.(bool); !ok {
			e.add(at(), "must be true or false, got "+jsonKind(v))
		}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64,
		reflect.Float32, reflect.Float64:
		n, ok := v.(json.Number)
		if !ok {
			e.add(at(), "must be a number, got "+jsonKind(v))
			return
		}
		if err := json.Unmarshal([]byte(n.String()), reflect.New(t).Interface()); err != nil {
			e.add(at(), fmt.Sprintf("%s is not a valid %s", n, t.Kind()))
		}
	case reflect.Interface:
		// anything goes
	}
}

// jsonFields maps JSON names to field types, following inline and embedded
// structs.
func jsonFields(t reflect.Type) map[string]reflect.Type {
	out := map[string]reflect.Type{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		tag := f.Tag.Get("json")
		if tag == "-" {
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		inline := strings.Contains(opts, "inline") || (f.Anonymous && name == "")
		if inline {
			ft := f.Type
			if ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct {
				for k, v := range jsonFields(ft) {
					out[k] = v
				}
				continue
			}
		}
		if name == "" {
			name = f.Name
		}
		out[name] = f.Type
	}
	return out
}
