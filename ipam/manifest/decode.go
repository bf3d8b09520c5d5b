package manifest

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v2"

	"github.com/tabbynet/tabby/ipam"
	"github.com/tabbynet/tabby/selector"
)

// The apiVersion and kinds DecodePools reads.
const (
	APIVersion     = "projectcalico.org/v3"
	KindIPPool     = "IPPool"
	KindIPPoolList = "IPPoolList"
	// KindList with apiVersion v1 is the generic list kubectl prints;
	// its items must each say apiVersion projectcalico.org/v3, kind IPPool.
	KindList = "List"
)

var (
	// ErrDecode: the input is not a well-formed IPPool manifest: malformed
	// YAML or JSON, a duplicate key, a wrong apiVersion or kind, an unknown
	// field, a value of the wrong type, a missing metadata.name or
	// spec.cidr.
	ErrDecode = errors.New("malformed IPPool manifest")
	// ErrUnsupported: a Calico setting tabby does not implement and
	// cannot ignore, because ignoring it would change which addresses are
	// handed out or how they are routed (spec.assignmentMode Manual,
	// spec.disableBGPExport true, a spec.namespaceSelector, the
	// LoadBalancer use), or a deprecated field Calico refuses too.
	ErrUnsupported = errors.New("not supported by tabby")
	// ErrDuplicate: two documents (or list items) define the same pool
	// name.
	ErrDuplicate = errors.New("duplicate pool name")
)

// FieldError is one problem found by DecodePools. errors.Is matches
// ipam.ErrInvalid and Err.
type FieldError struct {
	// Document is the position of the YAML document in the stream,
	// counting from 1 as YAML numbers them (an empty document between two
	// "---" lines counts).
	Document int
	// Name is the pool's metadata.name; "" when not known.
	Name string
	// Field is the path from the document's root, such as spec.cidr or
	// items[2].metadata.name; "" for the whole document.
	Field string
	// Detail says what is wrong.
	Detail string
	// Err is ErrDecode, ErrUnsupported or ErrDuplicate; or the
	// *ipam.PoolFieldError of ipam's own checks (matching ipam.ErrInvalid,
	// or ipam.ErrOverlap for overlapping pools), or the
	// *selector.ParseError of a bad selector.
	Err error
}

// Error reads `document 2: IPPool "p": spec.assignmentMode: Manual is not
// supported by tabby ...`, leaving out the parts that are not known.
func (e *FieldError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "document %d", e.Document)
	if e.Name != "" {
		fmt.Fprintf(&b, ": IPPool %q", e.Name)
	}
	if e.Field != "" {
		b.WriteString(": " + e.Field)
	}
	b.WriteString(": " + e.Detail)
	return b.String()
}

// Unwrap returns ipam.ErrInvalid and Err.
func (e *FieldError) Unwrap() []error { return []error{ipam.ErrInvalid, e.Err} }

// DecodeError is DecodePools' error: every problem of every document, in
// document order. errors.Is matches what any of them matches.
type DecodeError struct {
	Errors []*FieldError
}

func (e *DecodeError) Error() string {
	if len(e.Errors) == 1 {
		return e.Errors[0].Error()
	}
	lines := make([]string, len(e.Errors))
	for i, f := range e.Errors {
		lines[i] = f.Error()
	}
	return fmt.Sprintf("%d problems:\n%s", len(e.Errors), strings.Join(lines, "\n"))
}

// Unwrap returns the FieldErrors.
func (e *DecodeError) Unwrap() []error {
	out := make([]error, len(e.Errors))
	for i, f := range e.Errors {
		out[i] = f
	}
	return out
}

// DecodePools reads a stream of YAML documents separated by "---" (or one
// JSON document) holding Calico projectcalico.org/v3 IPPool resources,
// IPPoolLists, or kubectl's v1 Lists of them, and returns the pools in
// input order with Calico's defaults filled in and checked as
// ipam.CreatePool checks them (IPPool.WithDefaults, IPPool.Validate), and
// against each other (IPPool.Conflict: no two with one name, no
// overlapping CIDRs). Empty documents are skipped.
//
// On any problem it returns no pools and a *DecodeError listing every
// problem found; see the package documentation for the fields read,
// ignored and refused.
func DecodePools(r io.Reader) ([]ipam.IPPool, error) {
	var read bytes.Buffer // what the decoder has read, to point at a tab
	dec := yaml.NewDecoder(io.TeeReader(r, &read))
	dec.SetStrict(true) // a duplicate key is an error
	var pools []decoded
	var problems []*FieldError
	for n := 1; ; n++ {
		var v any
		err := dec.Decode(&v)
		if err == io.EOF {
			break
		}
		var dup *yaml.TypeError
		if errors.As(err, &dup) {
			// Strict mode's duplicate keys: the document was parsed, so
			// the next one can be read. The decoder's message spans lines
			// ("yaml: unmarshal errors:\n  line 7: key ..."); one line each.
			problems = append(problems, &FieldError{Document: n, Detail: "malformed YAML: " + strings.Join(dup.Errors, "; "), Err: ErrDecode})
			continue
		}
		if err != nil {
			problems = append(problems, &FieldError{Document: n, Detail: "malformed YAML: " + err.Error() + tabHint(err, read.Bytes()), Err: ErrDecode})
			break // the parser cannot go on
		}
		d := &docDecoder{n: n}
		if v != nil {
			pools = append(pools, d.document(v)...)
		}
		problems = append(problems, d.problems...)
	}
	problems = append(problems, conflicts(pools)...)
	if len(problems) > 0 {
		return nil, &DecodeError{Errors: problems}
	}
	out := make([]ipam.IPPool, len(pools))
	for i, p := range pools {
		out[i] = p.pool
	}
	return out, nil
}

// yamlErrorLine finds the line number in the YAML parser's messages
// ("yaml: line 4: found character that cannot start any token").
var yamlErrorLine = regexp.MustCompile(`^yaml: line (\d+):`)

// tabHint says so when the line a YAML syntax error points at holds a tab,
// the usual cause of "found character that cannot start any token": YAML
// indents with spaces only. in is the input read so far (the parser's line
// numbers count from the start of the stream).
func tabHint(err error, in []byte) string {
	m := yamlErrorLine.FindStringSubmatch(err.Error())
	if m == nil {
		return ""
	}
	n, _ := strconv.Atoi(m[1])
	lines := bytes.Split(in, []byte("\n"))
	if n < 1 || n > len(lines) || !bytes.Contains(lines[n-1], []byte("\t")) {
		return ""
	}
	return fmt.Sprintf(" (line %d holds a tab: YAML indents with spaces only)", n)
}

// decoded is a pool and where it came from.
type decoded struct {
	pool   ipam.IPPool
	doc    int
	prefix string // "" or items[i].
}

// conflicts checks every pair of pools as CreatePool checks a new pool
// against the stored ones.
func conflicts(pools []decoded) []*FieldError {
	var out []*FieldError
	for i, p := range pools {
		for _, q := range pools[:i] {
			err := p.pool.Conflict(q.pool)
			var pe *ipam.PoolFieldError
			if !errors.As(err, &pe) {
				continue
			}
			where := fmt.Sprintf("document %d", q.doc)
			if q.prefix != "" {
				where += " " + strings.TrimSuffix(q.prefix, ".")
			}
			f := &FieldError{Document: p.doc, Name: p.pool.Name}
			if pe.Field == "name" {
				f.Field, f.Detail, f.Err = p.prefix+"metadata.name", "also defined in "+where, ErrDuplicate
			} else {
				f.Field, f.Detail, f.Err = p.prefix+"spec.cidr", pe.Detail+" from "+where, err
			}
			out = append(out, f)
			break
		}
	}
	return out
}

// docDecoder collects one document's problems.
type docDecoder struct {
	n        int
	name     string // of the pool being decoded
	problems []*FieldError
}

func (d *docDecoder) fail(field string, err error, format string, args ...any) {
	d.problems = append(d.problems, &FieldError{Document: d.n, Name: d.name, Field: field, Detail: fmt.Sprintf(format, args...), Err: err})
}

// document decodes an IPPool or a list of them.
func (d *docDecoder) document(v any) []decoded {
	m, ok := d.mapping("", v)
	if !ok {
		return nil
	}
	apiVersion, _ := d.str("apiVersion", m["apiVersion"])
	kind, _ := d.str("kind", m["kind"])
	switch {
	case kind == KindIPPool:
		if d.apiVersion("apiVersion", apiVersion, APIVersion) {
			return d.pool(m, "")
		}
		return nil
	case kind == KindIPPoolList && !d.apiVersion("apiVersion", apiVersion, APIVersion),
		kind == KindList && !d.apiVersion("apiVersion", apiVersion, "v1"):
		return nil
	case kind != KindIPPoolList && kind != KindList:
		d.fail("kind", ErrDecode, "must be %s, %s or %s, got %q", KindIPPool, KindIPPoolList, KindList, kind)
		return nil
	}
	d.unknown("", m, "apiVersion", "kind", "metadata", "items")
	d.mapping("metadata", m["metadata"]) // list metadata (resourceVersion, continue) is ignored
	items, ok := m["items"].([]any)
	if !ok && m["items"] != nil {
		d.fail("items", ErrDecode, "must be a list, got %s", kindOf(m["items"]))
	}
	var out []decoded
	for i, it := range items {
		prefix := "items[" + strconv.Itoa(i) + "]."
		im, ok := d.mapping(prefix[:len(prefix)-1], it)
		if !ok {
			continue
		}
		// An IPPoolList's items may leave apiVersion and kind out.
		if _, has := im["apiVersion"]; has || kind == KindList {
			s, _ := d.str(prefix+"apiVersion", im["apiVersion"])
			d.apiVersion(prefix+"apiVersion", s, APIVersion)
		}
		if _, has := im["kind"]; has || kind == KindList {
			if s, ok := d.str(prefix+"kind", im["kind"]); ok && s != KindIPPool {
				d.fail(prefix+"kind", ErrDecode, "must be %s, got %q", KindIPPool, s)
			}
		}
		out = append(out, d.pool(im, prefix)...)
	}
	return out
}

func (d *docDecoder) apiVersion(field, got, want string) bool {
	if got != want {
		d.fail(field, ErrDecode, "must be %s, got %q", want, got)
		return false
	}
	return true
}

// ignoredMetadata are the ObjectMeta fields calicoctl and kubectl print
// that say nothing about the pool's addresses.
var ignoredMetadata = []string{"annotations", "creationTimestamp", "finalizers", "generateName", "generation",
	"labels", "managedFields", "ownerReferences", "resourceVersion", "uid"}

// pool decodes one IPPool resource (apiVersion and kind already checked)
// at prefix; it returns nothing when the pool has a problem.
func (d *docDecoder) pool(m map[string]any, prefix string) []decoded {
	before := len(d.problems)
	d.name = ""
	var p ipam.IPPool
	named := false
	if md, ok := d.mapping(prefix+"metadata", m["metadata"]); ok {
		d.unknown(prefix+"metadata.", md, append([]string{"name", "namespace"}, ignoredMetadata...)...)
		var ok bool
		p.Name, ok = d.str(prefix+"metadata.name", md["name"])
		if !ok {
			named = true // of the wrong type, already reported
		}
		d.name = p.Name
		if ns, _ := d.str(prefix+"metadata.namespace", md["namespace"]); ns != "" {
			d.fail(prefix+"metadata.namespace", ErrDecode, "must be empty: an IPPool is cluster-scoped, got %q", ns)
		}
	}
	if p.Name == "" && !named {
		d.fail(prefix+"metadata.name", ErrDecode, "required")
	}
	d.unknown(prefix, m, "apiVersion", "kind", "metadata", "spec")
	spec, ok := d.mapping(prefix+"spec", m["spec"])
	if !ok || m["spec"] == nil {
		if ok {
			d.fail(prefix+"spec", ErrDecode, "required")
		}
		return nil
	}
	d.spec(&p, spec, prefix+"spec.")
	if len(d.problems) > before {
		return nil
	}
	p = p.WithDefaults()
	if err := p.Validate(); err != nil {
		var pe *ipam.PoolFieldError
		field := prefix + "spec"
		if errors.As(err, &pe) && pe.Field == "name" {
			field = prefix + "metadata.name"
		} else if pe != nil {
			field = prefix + "spec." + pe.Field
		}
		detail := err.Error()
		if pe != nil {
			detail = pe.Detail
			if pe.Err != ipam.ErrInvalid && pe.Err != nil {
				detail = strings.TrimPrefix(detail+": "+pe.Err.Error(), ": ")
			}
		}
		d.fail(field, err, "%s", detail)
		return nil
	}
	return []decoded{{pool: p, doc: d.n, prefix: prefix}}
}

// spec decodes an IPPool's spec into p; at is "spec." or "items[i].spec.".
func (d *docDecoder) spec(p *ipam.IPPool, s map[string]any, at string) {
	d.unknown(at, s, "cidr", "blockSize", "ipipMode", "vxlanMode", "natOutgoing", "disabled", "nodeSelector",
		"allowedUses", "priority", "disableBGPExport", "assignmentMode", "namespaceSelector", "ipip", "nat-outgoing")
	if cidr, ok := d.str(at+"cidr", s["cidr"]); ok {
		if cidr == "" {
			d.fail(at+"cidr", ErrDecode, "required")
		} else if pfx, err := netip.ParsePrefix(cidr); err != nil {
			d.fail(at+"cidr", ErrDecode, "%q is not a CIDR", cidr)
		} else {
			p.CIDR = pfx
		}
	}
	p.BlockSize, _ = d.integer(at+"blockSize", s["blockSize"])
	p.Priority, _ = d.integer(at+"priority", s["priority"])
	ipip, _ := d.str(at+"ipipMode", s["ipipMode"])
	vxlan, _ := d.str(at+"vxlanMode", s["vxlanMode"])
	p.IPIPMode, p.VXLANMode = ipam.EncapMode(ipip), ipam.EncapMode(vxlan)
	p.NATOutgoing, _ = d.boolean(at+"natOutgoing", s["natOutgoing"])
	p.Disabled, _ = d.boolean(at+"disabled", s["disabled"])
	p.NodeSelector, _ = d.str(at+"nodeSelector", s["nodeSelector"])
	if uses, ok := s["allowedUses"].([]any); ok {
		for i, u := range uses {
			field := fmt.Sprintf("%sallowedUses[%d]", at, i)
			if use, ok := d.str(field, u); ok {
				if use == "LoadBalancer" {
					d.fail(field, ErrUnsupported, "LoadBalancer is not supported: tabby's IPAM assigns no service load-balancer addresses")
				}
				p.AllowedUses = append(p.AllowedUses, ipam.Use(use))
			}
		}
	} else if s["allowedUses"] != nil {
		d.fail(at+"allowedUses", ErrDecode, "must be a list, got %s", kindOf(s["allowedUses"]))
	}

	// Calico fields tabby does not model: accepted only where ignoring
	// them changes nothing.
	if b, _ := d.boolean(at+"disableBGPExport", s["disableBGPExport"]); b {
		d.fail(at+"disableBGPExport", ErrUnsupported, "true is not supported: an ipam.IPPool cannot keep its blocks out of BGP (a node agent advertises all its affine blocks)")
	}
	if mode, ok := d.str(at+"assignmentMode", s["assignmentMode"]); ok {
		switch mode {
		case "", "Automatic":
		case "Manual":
			d.fail(at+"assignmentMode", ErrUnsupported,
				"Manual is not supported: tabby assigns from every enabled pool that selects the node (disable the pool, or give it a nodeSelector)")
		default:
			d.fail(at+"assignmentMode", ErrDecode, "must be Automatic or Manual, got %q", mode)
		}
	}
	if ns, ok := d.str(at+"namespaceSelector", s["namespaceSelector"]); ok && ns != "" {
		sel, err := selector.Parse(ns)
		switch {
		case err != nil:
			d.fail(at+"namespaceSelector", err, "%v", err)
		case sel.String() != "all()":
			d.fail(at+"namespaceSelector", ErrUnsupported, "%q is not supported: tabby's pools select nodes only", ns)
		}
	}
	if s["ipip"] != nil {
		d.fail(at+"ipip", ErrUnsupported, "the deprecated v1 form is refused, as Calico refuses it: use ipipMode")
	}
	if b, _ := d.boolean(at+"nat-outgoing", s["nat-outgoing"]); b {
		d.fail(at+"nat-outgoing", ErrUnsupported, "the deprecated v1 form is refused, as Calico refuses it: use natOutgoing")
	}
}

// unknown reports the keys of m not in known; at is the path prefix.
func (d *docDecoder) unknown(at string, m map[string]any, known ...string) {
	var bad []string
	for k := range m {
		if !slices.Contains(known, k) {
			bad = append(bad, k)
		}
	}
	slices.Sort(bad)
	for _, k := range bad {
		d.fail(at+k, ErrDecode, "unknown field")
	}
}

// The value readers below take what the YAML decoder gives (nil,
// map[any]any, []any, string, bool, int, int64, uint64, float64) and
// treat null as absent, as Kubernetes does.

func (d *docDecoder) mapping(field string, v any) (map[string]any, bool) {
	if v == nil {
		return nil, true
	}
	raw, ok := v.(map[any]any)
	if !ok {
		d.fail(field, ErrDecode, "must be a mapping, got %s", kindOf(v))
		return nil, false
	}
	m := make(map[string]any, len(raw))
	for k, x := range raw {
		s, ok := k.(string)
		if !ok {
			s = fmt.Sprint(k) // reported as an unknown field
		}
		m[s] = x
	}
	return m, true
}

func (d *docDecoder) str(field string, v any) (string, bool) {
	if v == nil {
		return "", true
	}
	s, ok := v.(string)
	switch {
	case ok:
	case isBool(v):
		// name: y, mode: on: YAML 1.1 (what calicoctl and kubectl read)
		// turns these unquoted words into booleans.
		d.fail(field, ErrDecode, "must be a string, got %s (YAML 1.1 reads unquoted y, yes, on, n, no, off, true and false as booleans: quote the value)", kindOf(v))
	default:
		d.fail(field, ErrDecode, "must be a string, got %s", kindOf(v))
	}
	return s, ok
}

func (d *docDecoder) boolean(field string, v any) (bool, bool) {
	if v == nil {
		return false, true
	}
	b, ok := v.(bool)
	if !ok {
		d.fail(field, ErrDecode, "must be true or false, got %s", kindOf(v))
	}
	return b, ok
}

func (d *docDecoder) integer(field string, v any) (int, bool) {
	switch n := v.(type) {
	case nil:
		return 0, true
	case int:
		return n, true
	case int64:
		if n == int64(int(n)) {
			return int(n), true
		}
	case uint64:
		if n <= uint64(math.MaxInt) {
			return int(n), true
		}
	case float64:
		// blockSize: 26.0 is 26 to calicoctl and kubectl, which turn YAML
		// into JSON before reading it into an integer field.
		if n != math.Trunc(n) || math.IsInf(n, 0) {
			d.fail(field, ErrDecode, "must be an integer, got %s", kindOf(v))
			return 0, false
		}
		if n >= math.MinInt64 && n < math.MaxInt64 && int64(n) == int64(int(n)) {
			return int(n), true
		}
	default:
		d.fail(field, ErrDecode, "must be an integer, got %s", kindOf(v))
		return 0, false
	}
	d.fail(field, ErrDecode, "%v is out of range", v)
	return 0, false
}

func isBool(v any) bool {
	_, ok := v.(bool)
	return ok
}

func kindOf(v any) string {
	switch x := v.(type) {
	case nil:
		return "null"
	case map[any]any:
		return "a mapping"
	case []any:
		return "a list"
	case string:
		return fmt.Sprintf("the string %q", x)
	case bool:
		return fmt.Sprintf("the boolean %t", x)
	case int, int64, uint64:
		return fmt.Sprintf("the integer %v", x)
	case float64:
		return "the number " + strconv.FormatFloat(x, 'g', -1, 64)
	}
	return fmt.Sprintf("%T", v)
}
