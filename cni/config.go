package cni

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/containernetworking/cni/pkg/types"
	"github.com/containernetworking/cni/pkg/utils"
	"github.com/containernetworking/cni/pkg/version"
)

// Plugin type names, as in a network configuration's "type" and
// "ipam.type".
const (
	PluginType     = "tabby"
	IPAMPluginType = "tabby-ipam"
)

// Defaults applied by ParseConfig and ParseIPAMConfig.
const (
	// DefaultDatastorePath is the bbolt file used when the IPAM section names
	// neither a path nor etcd endpoints.
	DefaultDatastorePath = "/var/lib/tabby/ipam.db"
	// DefaultStateDir holds the delegated-IPAM records (NetConf.StateDir).
	DefaultStateDir = "/var/lib/tabby/cni"
	// DefaultTimeout bounds every verb (datastore, kernel), so a stuck
	// datastore gives an error (code 11) instead of a hung runtime.
	DefaultTimeout = 20 * time.Second
	// DefaultGCGrace protects allocations younger than this from GC, so an
	// ADD racing the runtime's list of valid attachments is never undone.
	DefaultGCGrace = time.Minute
)

// Supported lists the CNI spec versions both plugins speak: 0.3.0 through
// 1.1.0. The result comes back in the version the configuration asked for.
var Supported = version.PluginSupports("0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0")

// NetConf is the network configuration of the tabby plugin (stdin of every
// verb). Unknown keys are ignored, as the CNI spec asks.
type NetConf struct {
	types.PluginConf
	// runtimeMAC is runtimeConfig.mac (the "mac" capability), nil when
	// not given or refused; runtimeMACErr says why it was refused. Only
	// ADD and CHECK use the MAC, so only they fail on a bad one: DEL
	// after the failed ADD must still succeed.
	runtimeMAC    net.HardwareAddr
	runtimeMACErr error
	// Nodename is the node the addresses are assigned for; "" means the
	// host name.
	Nodename string `json:"nodename,omitempty"`
	// MTU of both veth ends; 0 means 1500.
	MTU int `json:"mtu,omitempty"`
	// TimeoutSeconds bounds each verb; 0 means DefaultTimeout.
	TimeoutSeconds int `json:"timeout_seconds,omitempty"`
	// Kubernetes, when set, makes ADD read the pod's and namespace's
	// annotations from the API server.
	Kubernetes *KubernetesConf `json:"kubernetes,omitempty"`
	// Annotations, when set, are the static annotations (no cluster).
	Annotations *StaticAnnotations `json:"annotations,omitempty"`
	// AnnotationsFile names a JSON file holding StaticAnnotations.
	AnnotationsFile string `json:"annotations_file,omitempty"`
	// StateDir keeps, per container, the addresses a delegated IPAM plugin
	// gave, so a retried ADD reuses them (host-local refuses a second
	// allocation for the same container); "" means DefaultStateDir.
	StateDir string `json:"state_dir,omitempty"`
	// FeatureControl enables features that are off by default, as in
	// Calico's CNI configuration.
	FeatureControl FeatureControl `json:"feature_control,omitzero"`
	// IPAMLockFile is the host-wide IPAM lock file, where Calico has it
	// (top level); ipam.ipam_lock_file wins (IPAMConf.IPAMLockFile).
	IPAMLockFile string `json:"ipam_lock_file,omitempty"`

	// IPAMConf is the parsed "ipam" section when its type is tabby-ipam
	// (nil when another IPAM plugin is delegated to).
	IPAMConf *IPAMConf `json:"-"`
}

// FeatureControl is the "feature_control" section (Calico's names).
type FeatureControl struct {
	// IPAddrsNoIPAM lets a pod's cni.projectcalico.org/ipAddrsNoIpam
	// annotation give its addresses (at most one IPv4 and one IPv6)
	// without IPAM: nothing is allocated or released for them, and they
	// need not be in any pool; routing them beyond the node is the
	// operator's business. Off by default, as in Calico, because a pod
	// that may choose its address may spoof another's (admission control
	// should restrict the annotation). Only with tabby-ipam.
	IPAddrsNoIPAM bool `json:"ip_addrs_no_ipam,omitempty"`
}

// KubernetesConf locates the API server.
type KubernetesConf struct {
	// Kubeconfig is the path of a kubeconfig file.
	Kubeconfig string `json:"kubeconfig"`
}

// IPAMConf is the "ipam" section for type tabby-ipam, read by the tabby
// plugin (in process) and by the tabby-ipam plugin.
type IPAMConf struct {
	Type string `json:"type"`
	// Nodename is the node the addresses are assigned for; "" means the
	// plugin's Nodename, then the host name.
	Nodename string `json:"nodename,omitempty"`
	// DatastorePath is the bbolt file (one machine); "" means
	// DefaultDatastorePath unless EtcdEndpoints is set.
	DatastorePath string `json:"datastore_path,omitempty"`
	// EtcdEndpoints selects the etcd v3 datastore (a cluster).
	EtcdEndpoints []string `json:"etcd_endpoints,omitempty"`
	// EtcdPrefix is the key prefix in etcd, put in front of every key as
	// it is (end it with "/"); "" means the store's default, "/tabby/".
	EtcdPrefix string `json:"etcd_prefix,omitempty"`
	// IPAMLockFile is the host-wide lock file taken around the IPAM work
	// of ADD and DEL with the etcd datastore, so concurrent ADDs on one
	// node do not each claim a new block (Calico's ipam_lock_file, best
	// effort); "" means the configuration's top-level ipam_lock_file, then
	// DefaultIPAMLockFile. Not used with bbolt, whose file lock serialises.
	IPAMLockFile string `json:"ipam_lock_file,omitempty"`
	// Pools are created when missing (by name), so a configuration works on
	// a fresh machine. A pool's Gateway is reserved and returned in results
	// (with the pool's prefix length), as plugins such as ptp need.
	Pools []PoolConf `json:"pools,omitempty"`
	// IPv4Pools and IPv6Pools restrict the pools (names or CIDRs), tried
	// in the order listed, as Calico's CNI plugin does (ipam.AssignArgs);
	// empty means the pools IPAM would choose for the node.
	IPv4Pools []string `json:"ipv4_pools,omitempty"`
	IPv6Pools []string `json:"ipv6_pools,omitempty"`
	// AssignIPv4 (default true) and AssignIPv6 (default false) say which
	// families to assign.
	AssignIPv4 *bool `json:"assign_ipv4,omitempty"`
	AssignIPv6 *bool `json:"assign_ipv6,omitempty"`
	// Routes are added to the tabby-ipam result (for plugins such as ptp).
	Routes []*types.Route `json:"routes,omitempty"`
	// GCGraceSeconds overrides DefaultGCGrace; negative means none.
	GCGraceSeconds int `json:"gc_grace_seconds,omitempty"`
	// TimeoutSeconds bounds each verb of tabby-ipam; 0 means DefaultTimeout.
	TimeoutSeconds int `json:"timeout_seconds,omitempty"`

	// runtimeIPs are the addresses of the configuration's
	// runtimeConfig.ips (runtimeIPs).
	runtimeIPs []netip.Addr
}

// PoolConf declares an IP pool (ipam.IPPool's main fields).
type PoolConf struct {
	Name      string       `json:"name"`
	CIDR      netip.Prefix `json:"cidr"`
	BlockSize int          `json:"blockSize,omitempty"`
	// Gateway, when valid, is reserved in the pool and reported as the
	// gateway of its addresses by tabby-ipam.
	Gateway netip.Addr `json:"gateway,omitzero"`
}

// ErrInvalidConfig: the network configuration is malformed or inconsistent
// (CNI code 7; code 6 when it is not JSON at all).
var ErrInvalidConfig = errors.New("invalid network configuration")

// ParseConfig decodes and validates the tabby plugin's configuration,
// including prevResult when present. It never panics; errors wrap
// ErrInvalidConfig, or a *json.SyntaxError / *json.UnmarshalTypeError for
// input that is not the expected JSON. A bad runtimeConfig.mac is not its
// error: ADD and CHECK refuse it (code 7), DEL, GC and STATUS ignore it.
func ParseConfig(data []byte) (*NetConf, error) {
	conf := &NetConf{}
	if err := json.Unmarshal(data, conf); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	if err := checkNameVersion(&conf.PluginConf); err != nil {
		return nil, err
	}
	if conf.MTU != 0 && (conf.MTU < 68 || conf.MTU > 65535) {
		return nil, fmt.Errorf("%w: mtu %d out of range 68..65535", ErrInvalidConfig, conf.MTU)
	}
	if conf.TimeoutSeconds < 0 {
		return nil, fmt.Errorf("%w: negative timeout_seconds", ErrInvalidConfig)
	}
	if conf.Kubernetes != nil && conf.Kubernetes.Kubeconfig == "" {
		return nil, fmt.Errorf("%w: kubernetes.kubeconfig is empty", ErrInvalidConfig)
	}
	if conf.IPAM.Type == "" {
		return nil, fmt.Errorf("%w: missing ipam.type", ErrInvalidConfig)
	}
	if conf.IPAM.Type == PluginType || conf.IPAM.Type == conf.Type {
		// Delegating IPAM to the plugin itself would start a process that
		// delegates again, and so on until the timeout.
		return nil, fmt.Errorf("%w: ipam.type %q is the plugin itself (the IPAM plugin is %q)", ErrInvalidConfig, conf.IPAM.Type, IPAMPluginType)
	}
	if conf.StateDir == "" {
		conf.StateDir = DefaultStateDir
	}
	conf.runtimeMAC, conf.runtimeMACErr = runtimeMAC(data)
	if conf.IPAM.Type == IPAMPluginType {
		var outer struct {
			IPAM json.RawMessage `json:"ipam"`
		}
		if err := json.Unmarshal(data, &outer); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
		}
		ic, err := parseIPAMSection(outer.IPAM)
		if err != nil {
			return nil, err
		}
		if ic.Nodename == "" {
			ic.Nodename = conf.Nodename
		}
		if ic.IPAMLockFile == "" {
			ic.IPAMLockFile = conf.IPAMLockFile
		}
		if ic.runtimeIPs, err = runtimeIPs(data); err != nil {
			return nil, err
		}
		conf.IPAMConf = ic
	}
	if err := parsePrevResult(&conf.PluginConf); err != nil {
		return nil, err
	}
	return conf, nil
}

// ParseIPAMConfig decodes and validates the configuration given to the
// tabby-ipam plugin: the whole network configuration, whose "ipam" section
// is an IPAMConf. It returns the outer configuration too (name, version,
// prevResult, valid attachments).
func ParseIPAMConfig(data []byte) (*types.PluginConf, *IPAMConf, error) {
	var outer struct {
		types.PluginConf
		IPAM         json.RawMessage `json:"ipam"`
		Nodename     string          `json:"nodename,omitempty"`
		IPAMLockFile string          `json:"ipam_lock_file,omitempty"`
	}
	if err := json.Unmarshal(data, &outer); err != nil {
		return nil, nil, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	if err := checkNameVersion(&outer.PluginConf); err != nil {
		return nil, nil, err
	}
	if len(outer.IPAM) == 0 {
		return nil, nil, fmt.Errorf("%w: missing ipam section", ErrInvalidConfig)
	}
	ic, err := parseIPAMSection(outer.IPAM)
	if err != nil {
		return nil, nil, err
	}
	if ic.Nodename == "" {
		ic.Nodename = outer.Nodename
	}
	if ic.IPAMLockFile == "" {
		ic.IPAMLockFile = outer.IPAMLockFile
	}
	if ic.runtimeIPs, err = runtimeIPs(data); err != nil {
		return nil, nil, err
	}
	pc := outer.PluginConf
	if err := parsePrevResult(&pc); err != nil {
		return nil, nil, err
	}
	return &pc, ic, nil
}

func checkNameVersion(c *types.PluginConf) error {
	if c.Name == "" {
		return fmt.Errorf("%w: missing network name", ErrInvalidConfig)
	}
	// The name is part of every handle, and a handle names a file under
	// state_dir: the CNI spec's characters only, as skel checks for the
	// binaries (libcni's utils.ValidateNetworkName).
	if err := utils.ValidateNetworkName(c.Name); err != nil {
		return fmt.Errorf("%w: network name %q: %s", ErrInvalidConfig, c.Name, err.Msg)
	}
	if !slices.Contains(Supported.SupportedVersions(), c.CNIVersion) {
		return fmt.Errorf("%w: %w: cniVersion %q not supported (want one of %v)", ErrInvalidConfig, ErrIncompatibleVersion,
			c.CNIVersion, Supported.SupportedVersions())
	}
	return nil
}

// needVersion returns ErrIncompatibleVersion (code 1) when the
// configuration's cniVersion is older than the first version with verb
// (CHECK 0.4.0; GC and STATUS 1.1.0), as skel checks for the binaries.
func needVersion(c *types.PluginConf, verb, first string) error {
	if ok, err := version.GreaterThanOrEqualTo(c.CNIVersion, first); err != nil || !ok {
		return fmt.Errorf("%w: cniVersion %q has no %s (since %s)", ErrIncompatibleVersion, c.CNIVersion, verb, first)
	}
	return nil
}

func parseIPAMSection(raw json.RawMessage) (*IPAMConf, error) {
	if err := checkPoolsJSON(raw); err != nil {
		return nil, err
	}
	ic := &IPAMConf{}
	if err := json.Unmarshal(raw, ic); err != nil {
		return nil, fmt.Errorf("%w: ipam: %w", ErrInvalidConfig, err)
	}
	if ic.DatastorePath != "" && len(ic.EtcdEndpoints) > 0 {
		return nil, fmt.Errorf("%w: ipam: datastore_path and etcd_endpoints are exclusive", ErrInvalidConfig)
	}
	if ic.DatastorePath == "" && len(ic.EtcdEndpoints) == 0 {
		ic.DatastorePath = DefaultDatastorePath
	}
	if ic.TimeoutSeconds < 0 {
		return nil, fmt.Errorf("%w: ipam: negative timeout_seconds", ErrInvalidConfig)
	}
	if !ic.assign4() && !ic.assign6() {
		return nil, fmt.Errorf("%w: ipam: assign_ipv4 and assign_ipv6 are both false", ErrInvalidConfig)
	}
	names := map[string]bool{}
	for _, p := range ic.Pools {
		switch {
		case p.Name == "":
			return nil, fmt.Errorf("%w: ipam: pool without a name", ErrInvalidConfig)
		case names[p.Name]:
			return nil, fmt.Errorf("%w: ipam: pool %q declared twice", ErrInvalidConfig, p.Name)
		case !p.CIDR.IsValid() || p.CIDR != p.CIDR.Masked():
			return nil, fmt.Errorf("%w: ipam: pool %q: bad cidr %s", ErrInvalidConfig, p.Name, p.CIDR)
		case p.Gateway.IsValid() && !p.CIDR.Contains(p.Gateway):
			return nil, fmt.Errorf("%w: ipam: pool %q: gateway %s outside %s", ErrInvalidConfig, p.Name, p.Gateway, p.CIDR)
		}
		names[p.Name] = true
	}
	for _, r := range ic.Routes {
		if r == nil || r.Dst.IP == nil {
			return nil, fmt.Errorf("%w: ipam: route without dst", ErrInvalidConfig)
		}
	}
	return ic, nil
}

// runtimeIPs reads runtimeConfig.ips, which a runtime passes when the
// configuration declares the "ips" capability (CNI CONVENTIONS.md): the
// addresses to assign, each an IP or a CIDR whose prefix length is
// ignored (tabby-ipam's addresses are /32 and /128, or take their pool's
// prefix). They are assigned exactly, and win over IP= in CNI_ARGS and the
// ipAddrs annotation, as host-local's runtimeConfig.ips win over its
// CNI_ARGS. A value that is not an address is ErrInvalidConfig.
func runtimeIPs(data []byte) ([]netip.Addr, error) {
	var c struct {
		RuntimeConfig struct {
			IPs []string `json:"ips"`
		} `json:"runtimeConfig"`
	}
	if err := json.Unmarshal(data, &c); err != nil {
		return nil, fmt.Errorf("%w: runtimeConfig: %w", ErrInvalidConfig, err)
	}
	var out []netip.Addr
	for _, s := range c.RuntimeConfig.IPs {
		a, err := netip.ParseAddr(s)
		if err != nil {
			p, perr := netip.ParsePrefix(s)
			if perr != nil {
				return nil, fmt.Errorf("%w: runtimeConfig.ips: %q is neither an IP nor a CIDR", ErrInvalidConfig, s)
			}
			a = p.Addr()
		}
		out = append(out, a.Unmap())
	}
	return out, nil
}

// checkPoolsJSON decodes the "pools" of an ipam section one by one, so a
// pool that does not decode (a bad "cidr" or "gateway") is named by its
// index and name rather than by the decoder's message alone.
func checkPoolsJSON(raw json.RawMessage) error {
	var section struct {
		Pools []json.RawMessage `json:"pools"`
	}
	if json.Unmarshal(raw, &section) != nil {
		return nil // not this part: the whole section's decoding says what
	}
	for i, rp := range section.Pools {
		var p PoolConf
		if err := json.Unmarshal(rp, &p); err != nil {
			var named struct {
				Name string `json:"name"`
			}
			_ = json.Unmarshal(rp, &named)
			return fmt.Errorf("%w: ipam.pools[%d] (%q): %w", ErrInvalidConfig, i, named.Name, err)
		}
	}
	return nil
}

func (c *IPAMConf) assign4() bool { return c.AssignIPv4 == nil || *c.AssignIPv4 }
func (c *IPAMConf) assign6() bool { return c.AssignIPv6 != nil && *c.AssignIPv6 }

func (c *IPAMConf) gcGrace() time.Duration {
	switch {
	case c.GCGraceSeconds < 0:
		return 0
	case c.GCGraceSeconds == 0:
		return DefaultGCGrace
	}
	return time.Duration(c.GCGraceSeconds) * time.Second
}

func timeout(seconds int) time.Duration {
	if seconds <= 0 {
		return DefaultTimeout
	}
	return time.Duration(seconds) * time.Second
}

// parsePrevResult decodes RawPrevResult into PrevResult (the version of the
// configuration decides the result format).
func parsePrevResult(c *types.PluginConf) error {
	if c.RawPrevResult == nil {
		return nil
	}
	raw, err := json.Marshal(c.RawPrevResult)
	if err != nil {
		return fmt.Errorf("%w: prevResult: %w", ErrInvalidConfig, err)
	}
	if err := noNullEntries(raw); err != nil {
		return err
	}
	v := c.CNIVersion
	if v == "" {
		v = "0.1.0"
	}
	res, err := version.NewResult(v, raw)
	if err != nil {
		return fmt.Errorf("%w: prevResult: %w", ErrInvalidConfig, err)
	}
	c.PrevResult = res
	return nil
}

// noNullEntries refuses (ErrInvalidConfig) a prevResult whose
// interfaces, ips or routes list holds a null: libcni's result types
// keep it as a nil pointer, which their version conversions and the
// verbs would dereference.
func noNullEntries(raw []byte) error {
	var lists struct {
		Interfaces []json.RawMessage `json:"interfaces"`
		IPs        []json.RawMessage `json:"ips"`
		Routes     []json.RawMessage `json:"routes"`
	}
	if json.Unmarshal(raw, &lists) != nil {
		return nil // version.NewResult says what is wrong
	}
	for key, l := range map[string][]json.RawMessage{"interfaces": lists.Interfaces, "ips": lists.IPs, "routes": lists.Routes} {
		for i, e := range l {
			if string(bytes.TrimSpace(e)) == "null" {
				return fmt.Errorf("%w: prevResult: %s[%d] is null", ErrInvalidConfig, key, i)
			}
		}
	}
	return nil
}

// K8sArgs are the Kubernetes keys a runtime puts in CNI_ARGS.
type K8sArgs struct {
	types.CommonArgs
	IP                         types.UnmarshallableString
	K8S_POD_NAME               types.UnmarshallableString //nolint:revive // CNI_ARGS key
	K8S_POD_NAMESPACE          types.UnmarshallableString //nolint:revive // CNI_ARGS key
	K8S_POD_INFRA_CONTAINER_ID types.UnmarshallableString //nolint:revive // CNI_ARGS key
	K8S_POD_UID                types.UnmarshallableString //nolint:revive // CNI_ARGS key
}

// isPod reports whether CNI_ARGS name a Kubernetes pod: both
// K8S_POD_NAMESPACE and K8S_POD_NAME, as Calico requires before it reads
// annotations. With either missing the container is not a pod to the
// plugin and no annotations are read (a lookup under an empty namespace
// or name would be meaningless).
func (a K8sArgs) isPod() bool { return a.K8S_POD_NAMESPACE != "" && a.K8S_POD_NAME != "" }

// ParseArgs reads CNI_ARGS ("K1=V1;K2=V2"); unknown keys are ignored
// unless CNI_ARGS itself says IgnoreUnknown=0 (or false), which makes them
// an error, as in libcni's types.LoadArgs. Errors wrap ErrInvalidArgs.
func ParseArgs(s string) (K8sArgs, error) {
	var a K8sArgs
	a.IgnoreUnknown = true
	if strings.TrimSpace(s) == "" {
		return a, nil
	}
	if err := types.LoadArgs(s, &a); err != nil {
		return K8sArgs{}, fmt.Errorf("%w: %w", ErrInvalidArgs, err)
	}
	return a, nil
}

// ErrInvalidArgs: CNI_ARGS or another CNI_ variable is malformed (CNI code 4).
var ErrInvalidArgs = errors.New("invalid CNI arguments")
