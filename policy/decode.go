package policy

import (
	"bytes"
	"encoding"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"

	networkingv1 "k8s.io/api/networking/v1"
	"sigs.k8s.io/yaml"
)

// Decode reads one or more YAML (or JSON) documents separated by "---" and
// returns the resources in order: *Tier, *NetworkPolicy,
// *GlobalNetworkPolicy, *NetworkSet and *GlobalNetworkSet (apiVersion
// projectcalico.org/v3), each validated. Kubernetes networking.k8s.io/v1
// NetworkPolicy documents are accepted and converted with FromK8s, and lists
// (kind: List, or a typed list such as NetworkPolicyList, as kubectl and
// calicoctl print them) are decoded item by item.
//
// Decoding is strict and reports every problem of every document at once as
// one *ValidationError wrapping ErrInvalid: each FieldError gives the
// document's position (from 1), the resource's kind and name, the field path
// from the document's root and what is wrong. Problems with the form of the
// input (malformed YAML, an unknown apiVersion, kind or field, a value of the
// wrong type) also wrap ErrDecode; a value of the wrong type is left out
// before validation, so it is reported once. A bad selector keeps its
// *selector.ParseError. On any error no resource is returned.
func Decode(data []byte) ([]Resource, error) {
	var out []Resource
	var all []*FieldError
	for i, doc := range splitDocuments(data) {
		objs, problems := decodeOne(doc)
		for _, f := range problems {
			f.Document = i + 1
		}
		all = append(all, problems...)
		out = append(out, objs...)
	}
	if len(all) > 0 {
		return nil, &ValidationError{Errors: all}
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

// decodeOne decodes one document: a resource or a list of them.
func decodeOne(doc []byte) ([]Resource, []*FieldError) {
	if len(bytes.TrimSpace(doc)) == 0 {
		return nil, nil
	}
	js, err := yaml.YAMLToJSON(doc)
	if err != nil {
		return nil, []*FieldError{formError("", "", "", fmt.Sprintf("malformed YAML: %v", err))}
	}
	var generic any
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.UseNumber()
	if err := dec.Decode(&generic); err != nil {
		return nil, []*FieldError{formError("", "", "", fmt.Sprintf("malformed document: %v", err))}
	}
	if generic == nil {
		return nil, nil
	}
	m, ok := generic.(map[string]any)
	if !ok {
		return nil, []*FieldError{formError("", "", "", "a resource must be a mapping, got "+jsonKind(generic))}
	}
	kind, _ := m["kind"].(string)
	if kind != "List" && !strings.HasSuffix(kind, "List") {
		obj, problems := decodeResource(m, "")
		if obj == nil {
			return nil, problems
		}
		return []Resource{obj}, problems
	}
	// A list (kind: List, or NetworkPolicyList and the like) as kubectl and
	// calicoctl print them: decode every item.
	items, ok := m["items"].([]any)
	if !ok && m["items"] != nil {
		return nil, []*FieldError{formError(kind, "", "items", "must be a list, got "+jsonKind(m["items"]))}
	}
	var out []Resource
	var problems []*FieldError
	for i, it := range items {
		prefix := root("items").at(i).String()
		im, ok := it.(map[string]any)
		if !ok {
			problems = append(problems, formError("", "", prefix, "a resource must be a mapping, got "+jsonKind(it)))
			continue
		}
		if _, ok := im["apiVersion"]; !ok && strings.HasSuffix(kind, "List") && kind != "List" {
			// Typed lists may leave apiVersion and kind out of their items.
			im["apiVersion"], im["kind"] = m["apiVersion"], strings.TrimSuffix(kind, "List")
		}
		obj, p := decodeResource(im, prefix)
		problems = append(problems, p...)
		if obj != nil {
			out = append(out, obj)
		}
	}
	return out, problems
}

// formError is a problem with the form of a document.
func formError(kind, name, field, detail string) *FieldError {
	return &FieldError{Kind: kind, Name: name, Field: field, Detail: detail, Err: ErrDecode}
}

// decodeResource decodes one resource from its generic JSON form; prefix is
// its path in the document ("" at the root, items[i] in a list). Values of
// the wrong type are reported and left out, then the rest is validated, so
// every problem is reported in one pass. It returns the resource when it
// could be built (even with problems), and the problems.
func decodeResource(m map[string]any, prefix string) (Resource, []*FieldError) {
	apiVersion, _ := m["apiVersion"].(string)
	kind, _ := m["kind"].(string)
	name := docName(m)
	var obj any
	reportKind := kind
	switch {
	case apiVersion == "networking.k8s.io/v1" && kind == "NetworkPolicy":
		obj = &networkingv1.NetworkPolicy{}
		reportKind = KindKubernetesNetworkPolicy
	case apiVersion != APIVersion:
		return nil, []*FieldError{formError(kind, name, joinPath(prefix, "apiVersion"),
			fmt.Sprintf("must be %s (or networking.k8s.io/v1 for a Kubernetes NetworkPolicy), got %q", APIVersion, apiVersion))}
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
		return nil, []*FieldError{formError(kind, name, joinPath(prefix, "kind"), fmt.Sprintf("unknown kind %q", kind))}
	}
	var shape errs
	checkShape(reflect.TypeOf(obj).Elem(), any(m), path{}, &shape)
	slices.SortStableFunc(shape.list, func(a, b *FieldError) int { return strings.Compare(a.Field, b.Field) })
	var problems []*FieldError
	left := make([]string, 0, len(shape.list))
	for _, f := range shape.list {
		left = append(left, f.Field)
		problems = append(problems, formError(reportKind, name, joinPath(prefix, f.Field), f.Detail))
	}
	js, err := json.Marshal(m)
	if err == nil {
		err = json.Unmarshal(js, obj)
	}
	if err != nil {
		// checkShape should have caught it; report without a field.
		return nil, append(problems, formError(reportKind, name, prefix, err.Error()))
	}
	var res Resource
	switch v := obj.(type) {
	case *networkingv1.NetworkPolicy:
		res, err = FromK8s(v)
	case Resource:
		res, err = v, v.Validate()
	}
	var ve *ValidationError
	if errors.As(err, &ve) {
		for _, f := range ve.Errors {
			if f.Kind == reportKind && isUnder(f.Field, left) {
				continue // follows from a value already reported and left out
			}
			if f.Kind == reportKind || f.Kind == KindKubernetesNetworkPolicy {
				f.Field = joinPath(prefix, f.Field)
			}
			problems = append(problems, f)
		}
	} else if err != nil {
		problems = append(problems, &FieldError{Kind: reportKind, Name: name, Field: prefix, Detail: err.Error(), Err: err})
	}
	if err != nil {
		res = nil
	}
	return res, problems
}

// joinPath puts a resource's field path under its path in the document.
func joinPath(prefix, field string) string {
	switch {
	case prefix == "":
		return field
	case field == "":
		return prefix
	default:
		return prefix + "." + field
	}
}

// isUnder reports whether field is one of paths or inside one of them.
func isUnder(field string, paths []string) bool {
	for _, p := range paths {
		if field == p || strings.HasPrefix(field, p+".") || strings.HasPrefix(field, p+"[") {
			return true
		}
	}
	return false
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
// so that the later json.Unmarshal cannot fail without saying where. It
// removes what it reports from v (an unknown field is deleted, a bad value
// becomes null, the zero value), so the rest can still be decoded and
// validated; it returns false when v itself is bad and its container must
// drop it.
func checkShape(t reflect.Type, v any, p path, e *errs) bool {
	at := func() path {
		if p.isZero() {
			return root("(document)")
		}
		return p
	}
	bad := func(detail string) bool {
		e.add(at(), detail)
		return false
	}
	if v == nil {
		return true // null is the zero value for anything
	}
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if reflect.PointerTo(t).Implements(jsonUnmarshaler) {
		raw, _ := json.Marshal(v)
		if err := reflect.New(t).Interface().(json.Unmarshaler).UnmarshalJSON(raw); err != nil {
			return bad(err.Error())
		}
		return true
	}
	if reflect.PointerTo(t).Implements(textUnmarshaler) {
		s, ok := v.(string)
		if !ok {
			return bad("must be a string, got " + jsonKind(v))
		}
		if err := reflect.New(t).Interface().(encoding.TextUnmarshaler).UnmarshalText([]byte(s)); err != nil {
			return bad(err.Error())
		}
		return true
	}
	switch t.Kind() {
	case reflect.Struct:
		m, ok := v.(map[string]any)
		if !ok {
			return bad("must be a mapping, got " + jsonKind(v))
		}
		fields := jsonFields(t)
		for k, sub := range m {
			ft, ok := fields[k]
			child := root(k)
			if !p.isZero() {
				child = p.field(k)
			}
			if !ok {
				e.add(child, "unknown field")
				delete(m, k)
				continue
			}
			if !checkShape(ft, sub, child, e) {
				m[k] = nil
			}
		}
	case reflect.Slice:
		if t.Elem().Kind() == reflect.Uint8 {
			if _, ok := v.(string); !ok {
				return bad("must be a base64 string, got " + jsonKind(v))
			}
			return true
		}
		l, ok := v.([]any)
		if !ok {
			return bad("must be a list, got " + jsonKind(v))
		}
		for i, sub := range l {
			if !checkShape(t.Elem(), sub, at().at(i), e) {
				l[i] = nil
			}
		}
	case reflect.Map:
		m, ok := v.(map[string]any)
		if !ok {
			return bad("must be a mapping, got " + jsonKind(v))
		}
		for k, sub := range m {
			if !checkShape(t.Elem(), sub, at().field(k), e) {
				m[k] = nil
			}
		}
	case reflect.String:
		if _, ok := v.(string); !ok {
			return bad("must be a string, got " + jsonKind(v))
		}
	case reflect.Bool:
		if _, ok := v.(bool); !ok {
			return bad("must be true or false, got " + jsonKind(v))
		}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64,
		reflect.Float32, reflect.Float64:
		n, ok := v.(json.Number)
		if !ok {
			return bad("must be a number, got " + jsonKind(v))
		}
		if err := json.Unmarshal([]byte(n.String()), reflect.New(t).Interface()); err != nil {
			return bad(fmt.Sprintf("%s is not a valid %s", n, t.Kind()))
		}
	case reflect.Interface:
		// anything goes
	}
	return true
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
